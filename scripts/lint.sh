#!/usr/bin/env bash
# lint.sh - rustfmt and clippy over the workspace, warnings as errors.
#
#   usage: scripts/lint.sh            (make lint; make test runs it first)
#
# The components come with rustup's default profile. When one is missing it
# is added with rustup; if that cannot be done here (rustup's download host
# is not reachable from every machine), the lint prints SKIPPED and passes,
# except with CI=true, where it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH

have() { cargo "$1" --version >/dev/null 2>&1; }
for c in fmt:rustfmt clippy:clippy; do
  sub=${c%%:*} comp=${c##*:}
  if ! have "$sub"; then
    echo "[lint] rustup component add $comp" >&2
    rustup component add "$comp" >/dev/null 2>&1 || true
  fi
  if ! have "$sub"; then
    if [ "${CI:-}" = true ]; then
      echo "lint.sh: cargo $sub is not available and could not be installed (rustup component add $comp)" >&2
      exit 1
    fi
    echo "SKIPPED: lint (cargo $sub is not available and could not be installed)"
    exit 0
  fi
done
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "lint: rustfmt and clippy clean"
