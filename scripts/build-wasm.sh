#!/usr/bin/env bash
# build-wasm.sh - release build of the browser client into www/pkg/.
#
#   usage: scripts/build-wasm.sh            (from anywhere)
#
# Steps: make sure the wasm toolchain is there (runs setup-wasm-toolchain.sh when
# its env file or a tool is missing), `wasm-pack build --target web --mode no-install`
# with size-tuned profile settings (wasm-pack uses the wasm-bindgen installed on PATH,
# the version of Cargo.lock, and never downloads one: --mode no-install; its own
# wasm-opt step is off in client-wasm/Cargo.toml, because it would download binaryen),
# then the installed wasm-opt -Oz (npm binaryen, never Debian's) and terser on the
# generated JS (npm terser), and write www/pkg/session_timeout_client.js and
# www/pkg/session_timeout_client_bg.wasm.
# Re-running with no change takes about a second: cargo is incremental and the
# last steps are skipped when www/pkg is newer than cargo's output and this script.
#
# Profile settings are passed as CARGO_PROFILE_RELEASE_* variables because the
# workspace root's [profile.release] is tuned for the server (and only the root's
# is honoured). They differ from the server's, so the wasm build keeps its own
# target dir (target/wasm), which also keeps it off the server build's lock.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENV_FILE=${WASM_ENV_FILE:-/opt/wasm-tools/wasm-toolchain.env}
OUT=$ROOT/www/pkg
NAME=session_timeout_client

tools_ok() {
  [ -f "$ENV_FILE" ] && (
    # shellcheck disable=SC1090
    . "$ENV_FILE" && command -v wasm-pack && command -v wasm-bindgen && command -v wasm-opt && command -v terser &&
      rustc --print target-libdir --target wasm32-unknown-unknown | xargs test -d
  ) >/dev/null 2>&1
}
# The browser is for tests only (scripts/test-wasm.sh installs it when missing).
tools_ok || WITH_BROWSER=${WITH_BROWSER:-0} "$ROOT/scripts/setup-wasm-toolchain.sh" "$ROOT"
# shellcheck disable=SC1090
. "$ENV_FILE"

export CARGO_TARGET_DIR=$ROOT/target/wasm
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z
export CARGO_PROFILE_RELEASE_LTO=true
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_PANIC=abort
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_PROFILE_RELEASE_INCREMENTAL=false

cd "$ROOT"
# cargo decides what is stale (a no-op when nothing changed); wasm-pack's own
# cargo build below then finds it done.
cargo build --quiet -p session-timeout-client --lib --release --target wasm32-unknown-unknown
RAW=$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/$NAME.wasm
if [ -f "$OUT/$NAME.js" ] && [ -f "$OUT/${NAME}_bg.wasm" ] && [ "$OUT/${NAME}_bg.wasm" -nt "$RAW" ] &&
   [ "$OUT/${NAME}_bg.wasm" -nt "$0" ]; then
  echo "www/pkg is up to date"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# omit-default-module-path (client-wasm/Cargo.toml): the default wasm URL would use
# import.meta.url, a syntax error once Odoo's asset bundler turns the module into a
# classic script. Callers pass the URL explicitly (www/session_timeout_service.js does).
wasm-pack --quiet build client-wasm --release --target web --mode no-install --no-typescript --no-pack \
  --out-dir "$tmp" --out-name "$NAME"
if grep -q 'import\.meta' "$tmp/$NAME.js"; then
  echo "build-wasm.sh: the generated JS uses import.meta; Odoo's bundler cannot take it" >&2
  exit 1
fi
# initSync (synchronous instantiation) is not used; unexported, terser drops it.
sed -i 's/^export { initSync, __wbg_init as default };$/export { __wbg_init as default };/' "$tmp/$NAME.js"
FEATURES=(--enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals
  --enable-reference-types --enable-multivalue)
wasm-opt -Oz --strip-debug --strip-producers "${FEATURES[@]}" -o "$tmp/${NAME}_bg.opt.wasm" "$tmp/${NAME}_bg.wasm"
# The glue counts against the size budget: minified it is about 1 KB gzip less.
terser "$tmp/$NAME.js" --module --ecma 2020 --compress passes=2 --mangle -o "$tmp/$NAME.min.js"
mkdir -p "$OUT"
mv "$tmp/$NAME.min.js" "$OUT/$NAME.js"
mv "$tmp/${NAME}_bg.opt.wasm" "$OUT/${NAME}_bg.wasm"
echo "built www/pkg/$NAME.js and www/pkg/${NAME}_bg.wasm"
