# Shared settings for the project's scripts (sourced, not run).
# One cargo target dir and one npm tools dir under $HOME, shared by every checkout and CI run on this
# machine, so a CI run after the first rebuilds only what changed.
export PORTCULLIS_CACHE="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PORTCULLIS_CACHE/target}"
export PORTCULLIS_TOOLS="${PORTCULLIS_TOOLS:-$PORTCULLIS_CACHE/tools}"
export PATH="$HOME/.cargo/bin:$PATH"
# Python with the official MCP SDK, for the real MCP server and client the gateway tests use.
export PORTCULLIS_VENV="${PORTCULLIS_VENV:-$PORTCULLIS_CACHE/venv}"
export PORTCULLIS_PYTHON="${PORTCULLIS_PYTHON:-$PORTCULLIS_VENV/bin/python}"

# The target dir is shared by every checkout on this machine (CI clones included). Cargo records
# files outside a package (the server's ../tests, ../migrations, ../docs) by absolute path, so
# after a build in another checkout it would judge the server "fresh" from the other checkout's
# files. When the checkout changes, rebuild the server and front-end packages (dependencies stay
# cached).
portcullis_checkout_guard() {
  local here marker
  here=$(pwd -P)
  marker="$CARGO_TARGET_DIR/.portcullis-checkout"
  mkdir -p "$CARGO_TARGET_DIR"
  if [ "$(cat "$marker" 2>/dev/null)" != "$here" ]; then
    if [ -f "$marker" ]; then
      echo "[env] target dir last used by $(cat "$marker"); rebuilding the server and front-end packages for $here"
      # `app` too, for the host: it defines the server functions, and its artifacts are shared
      # by every checkout (cargo's fingerprint still points at the other checkout's files).
      cargo clean -q -p server -p app 2>/dev/null || true
      # The front end too: Leptos names server functions with a hash that includes the source
      # path, and a wasm built in another checkout (uplifted last into frontend.wasm) would
      # call server functions this checkout's server does not have.
      for t in front front-deb; do
        if [ -d "$CARGO_TARGET_DIR/$t" ]; then
          cargo clean -q -p frontend -p app --target-dir "$CARGO_TARGET_DIR/$t" \
            --target wasm32-unknown-unknown 2>/dev/null || true
        fi
      done
    fi
    printf '%s\n' "$here" > "$marker"
  fi
}
portcullis_checkout_guard
