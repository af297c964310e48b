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
