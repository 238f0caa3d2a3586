#!/usr/bin/env bash
# build-wasm.sh - release build of the browser client into www/pkg/.
#
#   usage: scripts/build-wasm.sh            (from anywhere)
#
# Steps: make sure the wasm toolchain is there (runs setup-wasm-toolchain.sh when
# its env file or a tool is missing), cargo build for wasm32 with the `tiny`
# feature and size-tuned profile settings, wasm-bindgen --target web, wasm-opt -Oz
# (npm binaryen, never Debian's), the no-allocator check (below), terser on the
# generated JS (npm terser), then write www/pkg/session_timeout_client.js and
# www/pkg/session_timeout_client_bg.wasm.
#
# No allocator: the client allocates nothing (client-wasm/src/tiny.rs says how),
# so the shipped wasm must hold no allocator code although dlmalloc is declared
# as the global allocator. The build fails when the optimized wasm, rebuilt with
# its names kept, has a function whose name says allocator (dlmalloc,
# __rust_alloc, __rdl_alloc, alloc::raw_vec, ...), or when
# scripts/check-no-allocator.sh finds one in the glue or the shipped wasm.
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
    . "$ENV_FILE" && command -v wasm-bindgen && command -v wasm-opt && command -v terser &&
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
cargo build --quiet -p session-timeout-client --lib --release --target wasm32-unknown-unknown --features tiny
RAW=$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/$NAME.wasm

if [ -f "$OUT/$NAME.js" ] && [ -f "$OUT/${NAME}_bg.wasm" ] && [ "$OUT/${NAME}_bg.wasm" -nt "$RAW" ] &&
   [ "$OUT/${NAME}_bg.wasm" -nt "$0" ]; then
  echo "www/pkg is up to date"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# --omit-default-module-path: the default wasm URL would use import.meta.url, a
# syntax error once Odoo's asset bundler turns the module into a classic script.
# Callers pass the URL explicitly (www/session_timeout_service.js does).
wasm-bindgen --target web --no-typescript --omit-default-module-path --out-dir "$tmp" "$RAW"
if grep -q 'import\.meta' "$tmp/$NAME.js"; then
  echo "build-wasm.sh: the generated JS uses import.meta; Odoo's bundler cannot take it" >&2
  exit 1
fi
# initSync (synchronous instantiation) is not used; unexported, terser drops it.
sed -i 's/^export { initSync, __wbg_init as default };$/export { __wbg_init as default };/' "$tmp/$NAME.js"
FEATURES=(--enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals
  --enable-reference-types --enable-multivalue)
wasm-opt -Oz --strip-debug --strip-producers "${FEATURES[@]}" -o "$tmp/${NAME}_bg.opt.wasm" "$tmp/${NAME}_bg.wasm"
# The same optimization with the function names kept (-g), for the check only.
wasm-opt -Oz -g "${FEATURES[@]}" -o "$tmp/named.wasm" "$tmp/${NAME}_bg.wasm"
ALLOC_NAMES='dlmalloc|lol_alloc|wee_alloc|talc|__rust_(alloc|dealloc|realloc|alloc_zeroed)|__r[dg]l?_(alloc|dealloc|realloc)|__rust_alloc_error_handler|alloc::(alloc|raw_vec|vec|boxed|rc|sync)::|GlobalAlloc|__wbindgen_(malloc|realloc|free)|__externref_table_(alloc|dealloc)'
if wasm-opt "${FEATURES[@]}" --print "$tmp/named.wasm" | grep -Eo '^ *\(func \$[^ ]+' | grep -E "$ALLOC_NAMES"; then
  echo "build-wasm.sh: allocator code in the wasm (functions above); the client must not allocate" >&2
  exit 1
fi
"$ROOT/scripts/check-no-allocator.sh" "$tmp/$NAME.js" "$tmp/${NAME}_bg.opt.wasm"
# The glue counts against the size budget: minified it is about 1 KB gzip less.
terser "$tmp/$NAME.js" --module --ecma 2020 --compress passes=2 --mangle -o "$tmp/$NAME.min.js"
mkdir -p "$OUT"
mv "$tmp/$NAME.min.js" "$OUT/$NAME.js"
mv "$tmp/${NAME}_bg.opt.wasm" "$OUT/${NAME}_bg.wasm"
echo "built www/pkg/$NAME.js and www/pkg/${NAME}_bg.wasm"
