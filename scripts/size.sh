#!/usr/bin/env bash
# size.sh - raw and gzip -9 size of each file of the browser bundle, and the total
# (the budget: at most 10 KB = 10240 bytes gzip -9 for all of them together).
#
#   usage: scripts/size.sh [--check]
#
# --check: exit 1 when over budget, or when the bundle has an allocator in it: the
# glue calls __wbindgen_malloc/realloc/free or __externref_table_alloc, or the wasm
# contains memory.grow (needs wasm-opt, from the toolchain's env file; the full
# check, with function names, runs in scripts/build-wasm.sh).
#
# The bundle is what a page downloads to run the client: the wasm, wasm-bindgen's
# JS glue, and the service module. Build it first (scripts/build-wasm.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUDGET=${SIZE_BUDGET_GZIP:-10240}
FILES=(
  www/pkg/session_timeout_client_bg.wasm
  www/pkg/session_timeout_client.js
  www/session_timeout_service.js
)

cd "$ROOT"
total_raw=0 total_gz=0
printf '%-45s %9s %9s\n' file raw gzip-9
for f in "${FILES[@]}"; do
  if [ ! -f "$f" ]; then
    echo "size.sh: $f is missing; run scripts/build-wasm.sh first" >&2
    exit 1
  fi
  raw=$(wc -c < "$f")
  gz=$(gzip -9 -c "$f" | wc -c)
  total_raw=$((total_raw + raw)); total_gz=$((total_gz + gz))
  printf '%-45s %9d %9d\n' "$f" "$raw" "$gz"
done
printf '%-45s %9d %9d   (budget %d gzip)\n' total "$total_raw" "$total_gz" "$BUDGET"
[ "${1:-}" = --check ] || exit 0
status=0
if [ "$total_gz" -gt "$BUDGET" ]; then
  echo "size.sh: over budget by $((total_gz - BUDGET)) bytes gzip" >&2
  status=1
fi
"$ROOT/scripts/check-no-allocator.sh" "${FILES[1]}" "${FILES[0]}" || status=1
exit $status
