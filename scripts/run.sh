#!/usr/bin/env bash
# `make run`: install what is missing, build (release), start on the embedded SQLite default in
# ./data with a demo tenant, and print the console URL and how to sign in.
# Extra flags go to `portcullis serve`, e.g. `make run ARGS=...` is not needed: set
# PORTCULLIS_BIND / PORTCULLIS_BASE_DOMAIN / DATABASE_URL in the environment instead.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh
bash scripts/build.sh release
# Local MCP clients that cannot resolve demo.localhost reach the demo tenant at 127.0.0.1.
export PORTCULLIS_LOOPBACK_TENANT="${PORTCULLIS_LOOPBACK_TENANT:-demo}"
exec "$CARGO_TARGET_DIR/release/portcullis" serve --demo --data-dir "${PORTCULLIS_DATA_DIR:-./data}"
