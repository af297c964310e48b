#!/usr/bin/env bash
# `make test`: install what is missing, check formatting and lints, build, then run every test:
# Rust unit and integration tests on SQLite and PostgreSQL, and the browser tests in Chromium.
# PostgreSQL: DATABASE_URL when set (a server this user may CREATE DATABASE on), otherwise a
# throwaway cluster started here and removed afterwards. The PostgreSQL tests never skip: without
# a server they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
started=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

step "setup"
bash scripts/setup.sh

step "format and lints"
bash scripts/lint.sh

step "build (dev)"
bash scripts/build.sh dev

step "PostgreSQL"
PG_DIR=""
cleanup() { if [ -n "$PG_DIR" ]; then bash scripts/test-postgres.sh stop "$PG_DIR"; fi; }
trap cleanup EXIT
if [ -n "${DATABASE_URL:-}" ]; then
  export PORTCULLIS_TEST_DATABASE_URL=$DATABASE_URL
  echo "using DATABASE_URL"
else
  out=$(bash scripts/test-postgres.sh start)
  PG_DIR=$(echo "$out" | sed -n 1p)
  export PORTCULLIS_TEST_DATABASE_URL=$(echo "$out" | sed -n 2p)
  echo "throwaway cluster at ${PORTCULLIS_TEST_DATABASE_URL#postgres://postgres@}"
fi

step "Rust tests (SQLite and PostgreSQL)"
cargo test -p server

step "browser tests (Chromium)"
bash end2end/run.sh dev

step "all tests passed"
