#!/usr/bin/env bash
# ensure-tools.sh - installs what the tests need and is not there yet, and
# skips what is: Debian packages (Chromium and its driver, Node.js and npm,
# nginx, Caddy, wrk, curl, strace for the benchmarks, the PostgreSQL server the
# replica tests start throwaway clusters of) and the end-to-end tests' npm packages.
#
#   usage: scripts/ensure-tools.sh [apt|npm|postgres|all]    (default: all;
#          postgres: only the PostgreSQL server, for `make run-pg`)
#
# Runs as root on CI (a fresh Debian 12 machine); uses sudo otherwise.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
log() { printf '[ensure-tools] %s\n' "$*" >&2; }

if [ "$what" = postgres ]; then
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    log "apt-get install postgresql"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
      --no-install-recommends postgresql >/dev/null
  fi
  exit 0
fi

if [ "$what" = apt ] || [ "$what" = all ]; then
  # package:command pairs; a command already on PATH counts as installed.
  missing=()
  for pair in chromium:chromium chromium-driver:chromedriver nodejs:node npm:npm nginx-light:nginx caddy:caddy wrk:wrk curl:curl strace:strace; do
    pkg=${pair%%:*} cmd=${pair##*:}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
  done
  # The server binaries are not on PATH: look where Debian puts them.
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
      --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The Debian nginx package starts a server on port 80; the tests run their own.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now nginx caddy >/dev/null 2>&1 || true; fi
fi

if [ "$what" = npm ] || [ "$what" = all ]; then
  cd "$ROOT/tests/e2e"
  if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "npm ci in tests/e2e"
    npm ci --silent --no-audit --no-fund
  fi
fi
