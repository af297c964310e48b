#!/usr/bin/env bash
# Installs everything Portcullis needs to build, run and test, idempotently:
#   - Debian packages: chromium (browser tests and the review pack's PDF), postgresql (throwaway
#     test cluster), bubblewrap, poppler-utils (pdftoppm)
#   - the wasm32 toolchain: rustup's target, or Debian's rustc-web + build-std where rustup cannot download
#   - wasm-bindgen-cli at exactly the version in Cargo.lock
#   - npm packages (binaryen for wasm-opt, playwright-core, node 22, the MCP SDK, conformance suite,
#     server-everything and Inspector) in a shared tools dir under $HOME
#   - a Python venv with the official MCP SDK (tests' real MCP server and client), under $HOME
# Every step checks first and does nothing when its tool is already there, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
export DEBIAN_FRONTEND=noninteractive

log() { printf '[setup] %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# 1. Debian packages. apt-get update only when something is missing.
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v node >/dev/null || need+=(nodejs npm)
# bubblewrap: the optional sandbox for stdio MCP servers (tests prove it where it can run).
command -v bwrap >/dev/null || need+=(bubblewrap)
# rsyslog + its gtls driver: a real syslog receiver for the audit SIEM tests (tests/fixtures/rsyslog.py).
[ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
[ -f /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || need+=(rsyslog-gnutls)
# poppler-utils: pdftoppm renders the review pack's PDF pages to PNG in the browser test.
command -v pdftoppm >/dev/null || need+=(poppler-utils)
# nginx and haproxy: the load balancers of the deployment guide (deploy/), run by the tests in
# front of several replicas; openssl makes the tests' certificates.
[ -x /usr/sbin/nginx ] || need+=(nginx)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  log "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  # Packages that ship a service (nginx, haproxy) must not start it: the tests run their own.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$made_policy" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
fi

# 2. wasm32-unknown-unknown: rustup first, Debian's rustc-web with build-std as the fallback.
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  :
elif timeout 300 rustup target add wasm32-unknown-unknown; then
  log "wasm toolchain: rustup"
else
  # Debian's plain `rustc` (1.63) cannot build this; the -web packages are Rust 1.96 with std sources.
  if ! dpkg -s rustc-web cargo-web rust-web-src rust-web-llvm lld-22 >/dev/null 2>&1; then
    log "rustup cannot download the wasm target: installing Debian's rustc-web"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq rustc-web cargo-web rust-web-src rust-web-llvm lld-22 >/dev/null
  fi
  log "wasm toolchain: debian $(/usr/bin/rustc --version)"
fi

# 3. wasm-bindgen CLI: must equal the wasm-bindgen crate version in Cargo.lock.
WB=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WB" ]; then
  log "installing wasm-bindgen-cli $WB"
  if ! cargo install wasm-bindgen-cli --version "$WB" --locked; then
    # The published Cargo.lock can pin a crate version the registry no longer serves
    # (0.2.130 pins webpki-roots 1.0.11). Re-lock just those crates and install from source.
    src=$(mktemp -d)
    tar -xzf ~/.cargo/registry/cache/*/wasm-bindgen-cli-"$WB".crate -C "$src"
    pushd "$src/wasm-bindgen-cli-$WB" >/dev/null
    for _ in 1 2 3 4 5 6; do
      err=$(cargo fetch --locked 2>&1) && break
      bad=$(printf '%s\n' "$err" | sed -n 's/.*requirement `\([A-Za-z0-9_-]*\) = .*locked to.*/\1/p' | head -1)
      [ -n "$bad" ] || { printf '%s\n' "$err"; exit 1; }
      cargo update -p "$bad"
    done
    cargo install --path . --locked
    popd >/dev/null
    rm -rf "$src"
  fi
fi

# 4. npm tools, shared between checkouts: wasm-opt (never Debian's binaryen 108: it breaks hydration),
#    playwright-core (drives Debian's /usr/bin/chromium; it never downloads a browser), node 22 from
#    the npm registry (the conformance suite and the Inspector need it; the machine's node is 20),
#    and the MCP peers: the official TypeScript SDK (our fixture server), the conformance suite,
#    server-everything and the Inspector CLI. Reinstalled when tools/package.json changes.
mkdir -p "$PORTCULLIS_TOOLS"
stamp=$(cat tools/package.json tools/package-lock.json | sha256sum | cut -d' ' -f1)
if [ "$(cat "$PORTCULLIS_TOOLS/.stamp" 2>/dev/null)" != "$stamp" ] || ! [ -x "$PORTCULLIS_TOOLS/node_modules/node/bin/node" ]; then
  log "installing npm tools into $PORTCULLIS_TOOLS"
  cp tools/package.json tools/package-lock.json "$PORTCULLIS_TOOLS/"
  (cd "$PORTCULLIS_TOOLS" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  printf '%s\n' "$stamp" > "$PORTCULLIS_TOOLS/.stamp"
fi
# The fixture MCP server (tests/fixtures/everything_fixture.mjs) imports the SDK from there.
if [ "$(readlink tests/fixtures/node_modules 2>/dev/null)" != "$PORTCULLIS_TOOLS/node_modules" ]; then
  rm -rf tests/fixtures/node_modules
  ln -s "$PORTCULLIS_TOOLS/node_modules" tests/fixtures/node_modules
fi
# 5. Python venv with the official MCP SDK (a real MCP server and client for the gateway tests)
#    and the SCIM compliance checker; reinstalled when tools/requirements.txt changes.
req_sum=$(sha256sum tools/requirements.txt | cut -d' ' -f1)
if ! "$PORTCULLIS_PYTHON" -c 'import mcp, httpx2' >/dev/null 2>&1 \
  || [ "$(cat "$PORTCULLIS_VENV/.requirements.sha256" 2>/dev/null)" != "$req_sum" ]; then
  log "installing the Python test tools (MCP SDK, scim2-cli) into $PORTCULLIS_VENV"
  [ -x "$PORTCULLIS_VENV/bin/pip" ] || python3 -m venv "$PORTCULLIS_VENV"
  "$PORTCULLIS_VENV/bin/pip" install -q --disable-pip-version-check -r tools/requirements.txt
  echo "$req_sum" > "$PORTCULLIS_VENV/.requirements.sha256"
fi
log "ready"
