#!/usr/bin/env bash
# Builds Portcullis: the wasm front end, its JS glue and CSS, and the server binary.
#   scripts/build.sh [release|dev]        (default: release)
#   WASM_TOOLCHAIN=rustup|debian          (default: rustup when its wasm32 target is installed)
# Output: $CARGO_TARGET_DIR/{release,debug}/portcullis and, next to it, site/pkg/portcullis.{js,wasm,css};
# the server finds site/ next to its own binary.
# Server and wasm are built in the same mode and never with `--cfg erase_components`, so the
# server shares its compiled dependencies with `cargo test` (see TOOLCHAIN.md pitfall 7).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
MODE=${1:-release}
NAME=portcullis                      # same as LEPTOS_OUTPUT_NAME in .cargo/config.toml

if [ -z "${WASM_TOOLCHAIN:-}" ]; then
  if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    WASM_TOOLCHAIN=rustup; else WASM_TOOLCHAIN=debian; fi
fi
case "$MODE" in
  release) WASM_PROFILE=wasm-release; WASM_DIR=wasm-release; SERVER_FLAGS=(--release); SERVER_DIR=release ;;
  dev)     WASM_PROFILE=dev;          WASM_DIR=debug;        SERVER_FLAGS=();          SERVER_DIR=debug ;;
  *) echo "usage: $0 [release|dev]" >&2; exit 2 ;;
esac

WB=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WB" ]; then
  echo "need wasm-bindgen-cli $WB: run scripts/setup.sh" >&2; exit 1
fi

# 1. Front end (wasm), in target dirs of its own: the two toolchains must not share one.
if [ "$WASM_TOOLCHAIN" = debian ]; then
  FRONT_TARGET=$CARGO_TARGET_DIR/front-deb
  # RUSTC: /usr/bin/cargo would otherwise pick rustup's rustc from PATH.
  # RUSTC_BOOTSTRAP=1: allows -Zbuild-std on this stable compiler.
  env RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
    /usr/bin/cargo build -p frontend --lib --target wasm32-unknown-unknown \
      --profile "$WASM_PROFILE" -Zbuild-std=std,panic_abort --target-dir "$FRONT_TARGET"
else
  FRONT_TARGET=$CARGO_TARGET_DIR/front
  cargo build -p frontend --lib --target wasm32-unknown-unknown \
    --profile "$WASM_PROFILE" --target-dir "$FRONT_TARGET"
fi
WASM_IN=$FRONT_TARGET/wasm32-unknown-unknown/$WASM_DIR/frontend.wasm

# 2. Server.
cargo build -p server --bin portcullis "${SERVER_FLAGS[@]}"

# 3. JS glue, optimised wasm and CSS next to the binary. Leptos asks for /pkg/$NAME.js and
#    /pkg/$NAME.wasm (no _bg suffix, since LEPTOS_OUTPUT_NAME is set at compile time).
SITE=$CARGO_TARGET_DIR/$SERVER_DIR/site
PKG=$SITE/pkg
STAGE=$(mktemp -d "$CARGO_TARGET_DIR/.site-XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
chmod 755 "$STAGE"
mkdir -p "$STAGE/pkg"
wasm-bindgen --target web --out-dir "$STAGE/pkg" --out-name "$NAME" --no-typescript "$WASM_IN"
mv "$STAGE/pkg/${NAME}_bg.wasm" "$STAGE/pkg/$NAME.wasm"
if [ "$MODE" = release ]; then
  # Binaryen from npm; Debian's wasm-opt 108 produces a wasm that never hydrates.
  "$PORTCULLIS_TOOLS/node_modules/.bin/wasm-opt" -Oz \
    "$STAGE/pkg/$NAME.wasm" -o "$STAGE/pkg/$NAME.wasm"
fi
cp style/main.css "$STAGE/pkg/$NAME.css"
cp style/favicon.svg "$STAGE/pkg/favicon.svg"
# Swap the finished site in at once, so a running server never sees half of it.
rm -rf "$SITE.old"; [ -d "$SITE" ] && mv "$SITE" "$SITE.old"
mv "$STAGE" "$SITE"; rm -rf "$SITE.old"
trap - EXIT
echo "built $CARGO_TARGET_DIR/$SERVER_DIR/portcullis and $PKG ($WASM_TOOLCHAIN wasm, $MODE)"
