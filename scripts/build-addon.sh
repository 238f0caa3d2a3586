#!/usr/bin/env bash
# build-addon.sh - the installable Odoo addon for 17.0 and 18.0, from one source.
#
#   usage: scripts/build-addon.sh            (after scripts/build-wasm.sh; `make addon` runs both)
#
# Writes, for each series:
#   dist/addons/<series>/session_timeout/      a folder to copy into Odoo's addons path
#   dist/session_timeout-<series>.zip          the same folder, zipped (Apps > Import Module)
# from addons/session_timeout/ with
#   - the manifest's version prefixed by the series ("17.0.1.0.0"): Odoo refuses
#     a version of another series, and the module would not even be listed;
#   - the browser client (www/session_timeout_service.js and www/pkg/) under
#     static/lib/<hash>/, where <hash> is the first 12 hex digits of the sha256
#     of those files: Odoo serves /static/ with a one-week cache and no content
#     hash of its own, so a new build must have new URLs. The service under
#     static/src/ gets that folder name in place of @@BUNDLE@@;
#   - for 17.0, list views and view modes in 17.0's word ("tree" for "list").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=$ROOT/addons/session_timeout
DIST=$ROOT/dist
CLIENT=(www/session_timeout_service.js www/pkg/session_timeout_client.js www/pkg/session_timeout_client_bg.wasm)
SERIES=(17.0 18.0)

cd "$ROOT"
for f in "${CLIENT[@]}"; do
  [ -f "$f" ] || { echo "build-addon.sh: $f is missing; run scripts/build-wasm.sh (make wasm) first" >&2; exit 1; }
done
hash=$(cat "${CLIENT[@]}" | sha256sum | cut -c1-12)
version=$(python3 -c 'import ast,sys; print(ast.literal_eval(open(sys.argv[1]).read())["version"])' "$SRC/__manifest__.py")
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "build-addon.sh: manifest version '$version' must be x.y.z (the series is added here)" >&2; exit 1; }

mkdir -p "$DIST/addons"
for series in "${SERIES[@]}"; do
  out=$DIST/addons/$series/session_timeout
  rm -rf "$out" "$DIST/session_timeout-$series.zip"
  mkdir -p "$(dirname "$out")"
  # No bytecode or editor leftovers in what admins install.
  (cd "$SRC/.." && tar --exclude='__pycache__' --exclude='*.pyc' --exclude='*~' -cf - session_timeout) | tar -xf - -C "$(dirname "$out")"
  lib=$out/static/lib/$hash
  mkdir -p "$lib/pkg"
  cp www/session_timeout_service.js "$lib/"
  cp www/pkg/session_timeout_client.js www/pkg/session_timeout_client_bg.wasm "$lib/pkg/"
  python3 - "$out" "$series" "$version" "$hash" <<'PY'
import ast, pathlib, sys
out, series, version, bundle = sys.argv[1:]
manifest = pathlib.Path(out, "__manifest__.py")
text = manifest.read_text()
old = f'"version": "{version}"'
if text.count(old) != 1:
    sys.exit(f"build-addon.sh: expected {old} once in the manifest")
text = text.replace(old, f'"version": "{series}.{version}"')
assert ast.literal_eval(text)["version"] == f"{series}.{version}"
manifest.write_text(text)
service = pathlib.Path(out, "static/src/session_timeout_service.js")
js = service.read_text()
if js.count("@@BUNDLE@@") != 1:
    sys.exit("build-addon.sh: expected @@BUNDLE@@ once in static/src/session_timeout_service.js")
service.write_text(js.replace("@@BUNDLE@@", bundle))
# List views are written as 18.0 has them; 17.0 knows only <tree> and the
# view mode "tree" (and 18.0 only <list> and "list").
if series == "17.0":
    for xml in pathlib.Path(out, "views").glob("*.xml"):
        text = xml.read_text()
        new = (text.replace("<list ", "<tree ").replace("<list>", "<tree>").replace("</list>", "</tree>")
               .replace('<field name="view_mode">list,', '<field name="view_mode">tree,'))
        if new != text:
            xml.write_text(new)
    assert "<list" not in "".join(x.read_text() for x in pathlib.Path(out, "views").glob("*.xml"))
PY
  (cd "$(dirname "$out")" && python3 -m zipfile -c "$DIST/session_timeout-$series.zip" session_timeout)
  echo "built dist/addons/$series/session_timeout (version $series.$version, client $hash) and dist/session_timeout-$series.zip"
done
