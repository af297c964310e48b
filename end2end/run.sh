#!/usr/bin/env bash
# Starts the built server (demo mode, fresh data dir, a free port), runs the browser tests
# against it, stops it.   end2end/run.sh [dev|release]   (default dev)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
case "${1:-dev}" in dev) DIR=debug ;; release) DIR=release ;; *) echo "usage: $0 [dev|release]" >&2; exit 2 ;; esac
BIN=$CARGO_TARGET_DIR/$DIR/portcullis
[ -x "$BIN" ] || { echo "$BIN missing: run scripts/build.sh ${1:-dev}" >&2; exit 1; }
[ -d "$PORTCULLIS_TOOLS/node_modules/playwright-core" ] || { echo "playwright-core missing: run scripts/setup.sh" >&2; exit 1; }
ln -sfn "$PORTCULLIS_TOOLS/node_modules" end2end/node_modules

DATA=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-e2e.XXXXXX")
SHOT_DIR=${SHOT_DIR:-end2end/screenshots}
mkdir -p "$SHOT_DIR"
# The files exist before the background jobs open them: the loops below read them at once.
touch "$DATA/stdout" "$DATA/stderr" "$DATA/idp.out" "$DATA/idp.err"
"$BIN" serve --bind 127.0.0.1:0 --data-dir "$DATA" --demo >"$DATA/stdout" 2>"$DATA/stderr" &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
PORT=""
for _ in $(seq 150); do
  PORT=$(sed -n 's/^Portcullis is listening on port \([0-9]*\)$/\1/p' "$DATA/stdout")
  [ -n "$PORT" ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$DATA/stderr" >&2; echo "server exited" >&2; exit 1; }
  sleep 0.2
done
[ -n "$PORT" ] || { cat "$DATA/stderr" >&2; echo "server did not start" >&2; exit 1; }
# A real OpenID Provider (panva's oidc-provider) for the SSO sign-in through the browser.
NODE22=$PORTCULLIS_TOOLS/node_modules/node/bin/node
IDP_REDIRECT_URIS="http://demo.localhost:$PORT/auth/callback" IDP_WATCH_STDIN=0 \
  "$NODE22" tests/fixtures/idp.mjs </dev/null >"$DATA/idp.out" 2>"$DATA/idp.err" &
IDP_PID=$!
cleanup() { kill "$PID" "$IDP_PID" 2>/dev/null || true; wait "$PID" "$IDP_PID" 2>/dev/null || true; rm -rf "$DATA"; }
IDP_URL=""
for _ in $(seq 150); do
  IDP_URL=$(sed -n 's/^LISTENING \(.*\)$/\1/p' "$DATA/idp.out")
  [ -n "$IDP_URL" ] && break
  kill -0 "$IDP_PID" 2>/dev/null || { cat "$DATA/idp.err" >&2; echo "the IdP exited" >&2; exit 1; }
  sleep 0.2
done
[ -n "$IDP_URL" ] || { cat "$DATA/idp.err" >&2; echo "the IdP did not start" >&2; exit 1; }
# An OAuth-protected upstream: oidc-provider as its authorization server (short-lived access
# tokens, so the browser test sees a refresh) and the MCP fixture that validates its tokens.
OAS_ACCESS_TTL=3 OAS_WATCH_STDIN=0 "$NODE22" tests/fixtures/oauth_as.mjs </dev/null >"$DATA/oas.out" 2>"$DATA/oas.err" &
OAS_PID=$!
cleanup() { kill "$PID" "$IDP_PID" "$OAS_PID" ${UP_PID:-} 2>/dev/null || true; wait "$PID" "$IDP_PID" "$OAS_PID" ${UP_PID:-} 2>/dev/null || true; rm -rf "$DATA"; }
OAS_URL=""
for _ in $(seq 150); do
  OAS_URL=$(sed -n 's/^LISTENING \(.*\)$/\1/p' "$DATA/oas.out")
  [ -n "$OAS_URL" ] && break
  kill -0 "$OAS_PID" 2>/dev/null || { cat "$DATA/oas.err" >&2; echo "the upstream's authorization server exited" >&2; exit 1; }
  sleep 0.2
done
[ -n "$OAS_URL" ] || { cat "$DATA/oas.err" >&2; echo "the upstream's authorization server did not start" >&2; exit 1; }
"$NODE22" tests/fixtures/everything_fixture.mjs http --port 0 --oauth-issuer "$OAS_URL" </dev/null >"$DATA/up.out" 2>"$DATA/up.err" &
UP_PID=$!
UP_URL=""
for _ in $(seq 150); do
  UP_URL=$(sed -n 's/^LISTENING \(.*\)$/\1/p' "$DATA/up.out")
  [ -n "$UP_URL" ] && break
  kill -0 "$UP_PID" 2>/dev/null || { cat "$DATA/up.err" >&2; echo "the OAuth-protected upstream exited" >&2; exit 1; }
  sleep 0.2
done
[ -n "$UP_URL" ] || { cat "$DATA/up.err" >&2; echo "the OAuth-protected upstream did not start" >&2; exit 1; }
set +e
OAS_URL=$OAS_URL UPSTREAM_OAUTH_MCP=$UP_URL \
PORT=$PORT DEMO_TOKEN=$(cat "$DATA/demo-admin-token") PLATFORM_TOKEN=$(cat "$DATA/platform-admin-token") \
  IDP_URL=$IDP_URL SHOT_DIR=$SHOT_DIR node end2end/test.mjs
rc=$?
set -e
if [ $rc -ne 0 ]; then echo "--- server log ---" >&2; tail -50 "$DATA/stderr" >&2; fi
exit $rc
