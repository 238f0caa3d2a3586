#!/usr/bin/env bash
# setup-wasm-toolchain.sh - idempotent setup of a Rust -> wasm32-unknown-unknown toolchain
# (cargo build / wasm-bindgen / wasm-pack / wasm-opt / headless Chromium tests) on Debian 12
# machines that reach only crates.io, PyPI, npm and Debian's apt repositories.
#
#   usage: setup-wasm-toolchain.sh [PROJECT_DIR]     (default: current directory)
#
# Route selection:
#   * normal route : the active rustup toolchain already has lib/rustlib/wasm32-unknown-unknown
#                    (detected via `rustc --print sysroot`) -> use it unchanged.
#   * offline route: otherwise. Debian's rustc-web 1.96 (bookworm-security; its LLVM 22 has the
#                    WebAssembly backend) + rust-web-src (matching std sources) + lld-NN (wasm linker).
#                    The wasm32 std is compiled ONCE with -Z build-std (std deps come from crates.io)
#                    and installed as a normal sysroot in /usr/lib/rustlib/wasm32-unknown-unknown/lib,
#                    then /usr is linked as rustup toolchain "rust-web". After that plain
#                    `cargo build --target wasm32-unknown-unknown` and `wasm-pack` work, no -Z flags.
# Then: wasm-bindgen-cli (exact version from PROJECT_DIR/Cargo.lock), wasm-pack, a modern wasm-opt
# (npm `binaryen`; Debian's binaryen 108 miscompiles wasm-bindgen >= 0.2.10x output), terser (npm;
# minifies wasm-bindgen's JS glue, which counts against the client's size budget), chromium +
# chromium-driver. Finally an env file is written; source it before wasm commands.
#
# Knobs (env): WITH_WASM_PACK=1 (0 skips it: the tests alone do not need it)
#   WITH_WASM_OPT=1 WITH_TERSER=1 WITH_BROWSER=1 (set 0 to skip)
#   WASM_PACK_VERSION=0.15.1  BINARYEN_NPM_VERSION=132.0.0  TERSER_NPM_VERSION=5.51.4
#   WASM_BINDGEN_VERSION=<from Cargo.lock>
#   WASM_TOOLS_PREFIX=/opt/wasm-tools  WASM_ENV_FILE=$WASM_TOOLS_PREFIX/wasm-toolchain.env
#   WASM_FORCE_OFFLINE=1 (use the offline route even if rustup has the target)
#   WASM_TRY_RUSTUP=1 (first try `timeout 120 rustup target add wasm32-unknown-unknown`; off by default
#                      because that download host is not one of the reachable registries)
set -euo pipefail

PROJECT_DIR=$(cd "${1:-.}" && pwd)
WITH_WASM_PACK=${WITH_WASM_PACK:-1}   # scripts/build-wasm.sh builds the bundle with it
WITH_WASM_OPT=${WITH_WASM_OPT:-1}
WITH_TERSER=${WITH_TERSER:-1}
WITH_BROWSER=${WITH_BROWSER:-1}
WASM_PACK_VERSION=${WASM_PACK_VERSION:-0.15.1}
BINARYEN_NPM_VERSION=${BINARYEN_NPM_VERSION:-132.0.0}
TERSER_NPM_VERSION=${TERSER_NPM_VERSION:-5.51.4}
WASM_TOOLS_PREFIX=${WASM_TOOLS_PREFIX:-/opt/wasm-tools}
WASM_ENV_FILE=${WASM_ENV_FILE:-$WASM_TOOLS_PREFIX/wasm-toolchain.env}
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
TARGET=wasm32-unknown-unknown
SYSROOT_BUILDER_REV=1          # bump to force a sysroot rebuild
export PATH="$CARGO_BIN:$PATH"

log() { printf '[wasm-setup %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
APT_UPDATED=0
apt_install() {   # apt_install pkg... : installs only the missing ones
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$APT_UPDATED" = 0 ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  log "apt-get install ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
    --no-install-recommends "${missing[@]}" >/dev/null
}
cargo_install() { # cargo_install crate version binary
  local crate=$1 ver=$2 bin=$3
  if [ -x "$CARGO_BIN/$bin" ] && [ "$("$CARGO_BIN/$bin" --version 2>/dev/null | awk '{print $2}')" = "$ver" ]; then
    log "$crate $ver already installed"; return 0
  fi
  log "cargo install $crate $ver (several minutes on 2 cores)"
  # run outside the project so its rust-toolchain.toml / .cargo/config.toml cannot interfere;
  # --locked first; fall back to fresh resolution when the lock names a version the registry lacks
  (cd / && env -u RUSTUP_TOOLCHAIN cargo install --quiet --locked "$crate" --version "=$ver") ||
  (cd / && env -u RUSTUP_TOOLCHAIN cargo install --quiet "$crate" --version "=$ver")
}

# ---------------------------------------------------------------- 1. rustc with wasm32 std
WASM_TOOLCHAIN=
if command -v rustup >/dev/null 2>&1 && [ "${WASM_FORCE_OFFLINE:-0}" != 1 ]; then
  active=$(cd "$PROJECT_DIR" && rustup show active-toolchain 2>/dev/null | awk '{print $1}')
  sysroot=$(cd "$PROJECT_DIR" && rustc --print sysroot)
  if [ ! -d "$sysroot/lib/rustlib/$TARGET/lib" ] && [ "${WASM_TRY_RUSTUP:-0}" = 1 ]; then
    (cd "$PROJECT_DIR" && timeout 120 rustup target add "$TARGET") || log "rustup target add failed/timed out"
  fi
  if [ "$sysroot" != /usr ] && ls "$sysroot/lib/rustlib/$TARGET/lib"/libstd-*.rlib >/dev/null 2>&1; then
    WASM_TOOLCHAIN=$active
    log "normal route: rustup toolchain '$active' already has $TARGET"
  fi
fi

if [ -z "$WASM_TOOLCHAIN" ]; then
  log "offline route: Debian rustc-web + self-built $TARGET sysroot"
  apt_install rustc-web cargo-web rust-web-src
  LLVM_MAJOR=$(/usr/bin/rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
  apt_install "lld-$LLVM_MAJOR"
  # rustc's wasm targets link with `rust-lld -flavor wasm`; rustc-web looks for it in its sysroot
  # tool dir (what Debian's rust-web-llvm does, without pulling in the 90 MB llvm-NN package).
  HOST_BIN=/usr/lib/rustlib/x86_64-unknown-linux-gnu/bin
  if [ "$(readlink "$HOST_BIN/rust-lld" 2>/dev/null)" != "/usr/lib/llvm-$LLVM_MAJOR/bin/lld" ]; then
    $SUDO mkdir -p "$HOST_BIN" && $SUDO ln -sfn "/usr/lib/llvm-$LLVM_MAJOR/bin/lld" "$HOST_BIN/rust-lld"
  fi
  [ -d /usr/lib/rustlib/src/rust/library/std ] || die "rust-web-src did not provide /usr/lib/rustlib/src/rust/library"

  SYSROOT_LIB=/usr/lib/rustlib/$TARGET/lib
  STAMP=/usr/lib/rustlib/$TARGET/.sysroot-stamp
  want_stamp="rev=$SYSROOT_BUILDER_REV $(/usr/bin/rustc -vV | tr '\n' ' ')"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] && ls "$SYSROOT_LIB"/libstd-*.rlib >/dev/null 2>&1; then
    log "$TARGET sysroot for $(/usr/bin/rustc -V) already built"
  else
    log "building $TARGET std with -Z build-std (~1-1.5 min on 2 cores)"
    tmp=$(mktemp -d)
    mkdir -p "$tmp/src"; : > "$tmp/src/lib.rs"
    cat > "$tmp/Cargo.toml" <<'EOF'
[package]
name = "wasm-sysroot-builder"
version = "0.0.0"
edition = "2021"
publish = false
[lib]
crate-type = ["rlib"]
[profile.release]
opt-level = 3
debug = 0
panic = "abort"
EOF
    # -Cembed-bitcode=yes: keep LLVM bitcode in the rlibs (like rustup's rust-std) so lto=true works.
    (cd "$tmp" && env -u RUSTUP_TOOLCHAIN -u RUSTC_WRAPPER -u CARGO_BUILD_RUSTC_WRAPPER \
        -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_TARGET_DIR -u CARGO_TARGET_DIR \
        RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 RUSTFLAGS=-Cembed-bitcode=yes \
        /usr/bin/cargo build --quiet --release --target "$TARGET" \
          -Z build-std=std,panic_abort,panic_unwind,proc_macro,test)
    deps=$tmp/target/$TARGET/release/deps
    ls "$deps"/libstd-*.rlib >/dev/null || die "sysroot build produced no libstd"
    $SUDO rm -rf "$SYSROOT_LIB.new"; $SUDO mkdir -p "$SYSROOT_LIB.new"
    for f in "$deps"/*.rlib; do
      case $(basename "$f") in libwasm_sysroot_builder-*) ;; *) $SUDO cp "$f" "$SYSROOT_LIB.new/";; esac
    done
    $SUDO rm -rf "$SYSROOT_LIB"; $SUDO mv "$SYSROOT_LIB.new" "$SYSROOT_LIB"
    echo "$want_stamp" | $SUDO tee "$STAMP" >/dev/null
    rm -rf "$tmp"
  fi
  if command -v rustup >/dev/null 2>&1; then
    rustup toolchain list | grep -q '^rust-web' || rustup toolchain link rust-web /usr
    WASM_TOOLCHAIN=rust-web
  fi   # without rustup, /usr/bin/cargo and /usr/bin/rustc are used directly
fi

# ---------------------------------------------------------------- 2. wasm-bindgen-cli (exact version)
if [ -z "${WASM_BINDGEN_VERSION:-}" ]; then
  if [ ! -f "$PROJECT_DIR/Cargo.lock" ]; then
    (cd "$PROJECT_DIR" && if [ -n "$WASM_TOOLCHAIN" ]; then export RUSTUP_TOOLCHAIN=$WASM_TOOLCHAIN; fi
     cargo generate-lockfile)
  fi
  WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print; exit}' "$PROJECT_DIR/Cargo.lock")
fi
[ -n "$WASM_BINDGEN_VERSION" ] || die "no wasm-bindgen in $PROJECT_DIR/Cargo.lock and WASM_BINDGEN_VERSION unset"
cargo_install wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen

# ---------------------------------------------------------------- 3. wasm-pack
[ "$WITH_WASM_PACK" = 1 ] && cargo_install wasm-pack "$WASM_PACK_VERSION" wasm-pack

# ---------------------------------------------------------------- 4. npm tools: wasm-opt, terser
# npm_tool NAME VERSION BIN_IN_PACKAGE VERSION_PATTERN: installs NAME@VERSION under
# $WASM_TOOLS_PREFIX/NAME and links its binary into $WASM_TOOLS_PREFIX/bin, unless the
# linked binary's `--version` already matches VERSION_PATTERN (grep -E).
npm_tool() {
  local name=$1 ver=$2 bin=$3 pattern=$4 tool
  tool=$(basename "$bin")
  if "$WASM_TOOLS_PREFIX/bin/$tool" --version 2>/dev/null | grep -Eq "$pattern"; then
    log "$tool ($name $ver) already installed"; return 0
  fi
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  log "npm install $name@$ver"
  $SUDO mkdir -p "$WASM_TOOLS_PREFIX/bin"
  $SUDO npm install --silent --no-audit --no-fund --prefix "$WASM_TOOLS_PREFIX/$name" "$name@$ver"
  $SUDO ln -sfn "$WASM_TOOLS_PREFIX/$name/node_modules/$bin" "$WASM_TOOLS_PREFIX/bin/$tool"
}
# binaryen: never Debian's (108 miscompiles wasm-bindgen output); `wasm-opt --version` says "version 132 (...)".
[ "$WITH_WASM_OPT" = 1 ] && npm_tool binaryen "$BINARYEN_NPM_VERSION" binaryen/bin/wasm-opt "version ${BINARYEN_NPM_VERSION%%.*} "
[ "$WITH_TERSER" = 1 ] && npm_tool terser "$TERSER_NPM_VERSION" .bin/terser "^terser ${TERSER_NPM_VERSION//./\\.}\$"

# ---------------------------------------------------------------- 5. browser for tests
[ "$WITH_BROWSER" = 1 ] && apt_install chromium chromium-driver

# ---------------------------------------------------------------- 6. env file
$SUDO mkdir -p "$(dirname "$WASM_ENV_FILE")"
$SUDO tee "$WASM_ENV_FILE" >/dev/null <<EOF
# generated by setup-wasm-toolchain.sh - source before wasm builds/tests
export WASM_TOOLCHAIN=${WASM_TOOLCHAIN}
${WASM_TOOLCHAIN:+export RUSTUP_TOOLCHAIN=$WASM_TOOLCHAIN}
export PATH="$WASM_TOOLS_PREFIX/bin:$CARGO_BIN:\$PATH"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export CHROMEDRIVER=/usr/bin/chromedriver
EOF
log "done: toolchain=${WASM_TOOLCHAIN:-/usr/bin (no rustup)} wasm-bindgen=$WASM_BINDGEN_VERSION env=$WASM_ENV_FILE"
