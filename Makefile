# Auto Session Timeout. `make run` starts the demo, `make test` runs every test.
# Each target provisions what it needs (apt packages, the wasm toolchain, npm
# packages) and skips what is already there; the logic lives in scripts/.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

BIN      := target/release/session-timeout
BIND     ?= 127.0.0.1:8080
TIMEOUT  ?= 60
DB       ?= data/demo.db

.PHONY: all build server wasm addon run run-pg test test-server test-client test-wasm test-e2e test-odoo test-size size bench soak fuzz tools lint clean

all: build

## build: the server binary and the wasm bundle under www/pkg/
build: server wasm

server:
	cargo build --release --locked -p session-timeout-server

wasm:
	scripts/build-wasm.sh

## addon: the Odoo addon for 17.0 and 18.0 with the fresh client inside (dist/addons/<series>/, dist/*.zip)
addon: wasm
	scripts/build-addon.sh

## run: build, then start the demo ERP with the sidecar on an embedded SQLite file
run: build
	@mkdir -p data
	$(BIN) demo --bind $(BIND) --db $(DB) --timeout $(TIMEOUT) --www www

## run-pg: the same demo on a throwaway PostgreSQL cluster in data/pg (started if needed; PG_PORT)
PG_PORT ?= 55432
run-pg: build
	scripts/ensure-tools.sh postgres
	@mkdir -p data
	url=$$(scripts/pg-throwaway.sh start data/pg $(PG_PORT)) && \
	  echo "PostgreSQL: $$url (stop it with: scripts/pg-throwaway.sh stop data/pg)" && \
	  $(BIN) demo --bind $(BIND) --database-url "$$url" --secret-file data/pg-demo.secret --timeout $(TIMEOUT) --www www

## test: every test, browser tests included
test: tools lint build test-size test-server test-client test-wasm test-e2e test-odoo

test-size: wasm
	scripts/size.sh --check

test-server:
	cargo test --locked -p session-timeout-server

test-client:
	cargo test --locked -p session-timeout-client

test-wasm:
	scripts/test-wasm.sh

test-e2e: tools build
	cd tests/e2e && node --test --test-concurrency=1 --test-reporter=spec client.test.mjs proxy.test.mjs replicas.test.mjs

## test-odoo: the addon in real Odoo 17.0 and 18.0 (SKIPPED without an Odoo tree, failed instead with CI=true)
test-odoo: tools build addon
	cd tests/e2e && node --test --test-concurrency=1 --test-reporter=spec odoo.test.mjs

## bench: measures the sidecar and the client against baselines, rewrites BENCHMARKS.md (not part of test)
bench: tools build
	cargo build --release --locked -p session-timeout-server --examples
	python3 bench/bench.py

## soak: 10 minutes of mixed traffic (SOAK_SECONDS), then 20 kill -9 rounds under load (long; not in test)
soak: server
	python3 tests/soak/soak.py
	CRASH_ROUNDS=20 cargo test --locked -p session-timeout-server --test api crash -- --nocapture

## fuzz: the property tests over requests and configuration with many more cases (long; not in test)
fuzz:
	PROPTEST_CASES=$${PROPTEST_CASES:-200000} cargo test --locked --release -p session-timeout-server --test api fuzz

## lint: rustfmt and clippy, warnings as errors (SKIPPED without the components, failed with CI=true)
lint:
	scripts/lint.sh

## size: raw and gzip -9 sizes of the browser bundle
size: wasm
	scripts/size.sh

tools:
	scripts/ensure-tools.sh

clean:
	cargo clean
	rm -rf www/pkg
