#!/usr/bin/env bash
# check-no-allocator.sh - fails when the browser bundle has an allocator in it.
#
#   usage: scripts/check-no-allocator.sh GLUE.js BUNDLE.wasm
#
# The client allocates nothing (client-wasm/src/tiny.rs says how), so:
# (1) the JS glue must not call __wbindgen_malloc/realloc/free or
#     __externref_table_alloc (JS would hand the wasm something to allocate for);
# (2) the wasm must not contain memory.grow (an allocator is the only thing that
#     would grow memory; this holds even if one were inlined out of sight) nor
#     export an allocation entry point.
# Used by scripts/build-wasm.sh on every build (which also checks function
# names in a build that keeps them) and by scripts/size.sh --check.
set -euo pipefail
glue=$1 wasm=$2
ENV_FILE=${WASM_ENV_FILE:-/opt/wasm-tools/wasm-toolchain.env}
# shellcheck disable=SC1090
command -v wasm-opt >/dev/null || { [ -f "$ENV_FILE" ] && . "$ENV_FILE"; } || true
status=0
if grep -Eo '__wbindgen_(malloc|realloc|free)|__externref_table_alloc' "$glue" | sort -u | grep .; then
  echo "check-no-allocator.sh: the JS glue above makes the wasm allocate; the client must not (see client-wasm/src/tiny.rs)" >&2
  status=1
fi
if ! command -v wasm-opt >/dev/null; then
  echo "check-no-allocator.sh: no wasm-opt, memory.grow not checked" >&2
  exit $status
fi
wat=$(wasm-opt --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  --enable-reference-types --enable-multivalue --print "$wasm")
if grep -q 'memory\.grow' <<<"$wat"; then
  echo "check-no-allocator.sh: the wasm grows its memory: an allocator is in it; the client must not allocate" >&2
  status=1
fi
if grep -Eo '^ *\(export "[^"]+"' <<<"$wat" | grep -E '__wbindgen_(malloc|realloc|free)|__externref_table_alloc'; then
  echo "check-no-allocator.sh: the wasm exports an allocation entry point (above); the client must not allocate" >&2
  status=1
fi
exit $status
