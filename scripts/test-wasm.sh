#!/usr/bin/env bash
# test-wasm.sh - the web layer's tests (client-wasm/tests/web.rs) in headless Chromium.
#
#   usage: scripts/test-wasm.sh
#
# cargo test for wasm32 with wasm-bindgen-test-runner as the target runner and
# chromedriver (both set by the toolchain's env file). The core's rules are tested
# on the host instead: cargo test -p session-timeout-client.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENV_FILE=${WASM_ENV_FILE:-/opt/wasm-tools/wasm-toolchain.env}
if ! { [ -f "$ENV_FILE" ] && [ -x /usr/bin/chromedriver ] &&
       ( . "$ENV_FILE" && command -v wasm-bindgen-test-runner ) >/dev/null 2>&1; }; then
  WITH_WASM_PACK=${WITH_WASM_PACK:-0} "$ROOT/scripts/setup-wasm-toolchain.sh" "$ROOT"
fi
# shellcheck disable=SC1090
. "$ENV_FILE"
export CARGO_TARGET_DIR=$ROOT/target/wasm
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-60}
cd "$ROOT"
cargo test -p session-timeout-client --target wasm32-unknown-unknown --test web "$@"
