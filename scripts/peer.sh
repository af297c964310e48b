#!/usr/bin/env bash
# Starts a *peer* MCP gateway in front of one upstream MCP server (Streamable HTTP), for the benchmark
# that compares Portcullis with other gateways:
#   bash scripts/peer.sh {fastmcp|contextforge} UPSTREAM_URL WORKDIR
# fastmcp: FastMCP's proxy (create_proxy), stateful Streamable HTTP at /mcp, no auth.
# contextforge: IBM ContextForge, one uvicorn worker, SQLite db in WORKDIR, upstream registered as a
#   gateway and bundled into a virtual server; MCP at /v1/virtual-servers/<id>/mcp with a Bearer JWT.
# When an MCP initialize + tools/call add {a:1,b:2} through the peer works, prints exactly one line:
#   READY <mcp_url> <authorization header value, or ->
# and stays in the foreground as the peer itself (exec): stop it with SIGTERM, or kill its process group.
# Logs go to WORKDIR/peer.log (pip's to WORKDIR/pip.log); errors to stderr; exits non-zero when the peer
# is not ready within PEER_READY_TIMEOUT seconds (default 120, counted after the install). Details,
# settings and gotchas: scripts/peer.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 3 ] || { [ "$1" != fastmcp ] && [ "$1" != contextforge ]; }; then
  echo "usage: $0 {fastmcp|contextforge} UPSTREAM_URL WORKDIR" >&2
  exit 2
fi
mkdir -p "$3"

# The peers' venv, shared by both peers, made once and remade when tools/peers-requirements.txt changes.
# Python: ContextForge 1.1 needs Python >=3.12,<3.14 (1.0.7.post20260921 is the newest for the machine's
# python3, 3.11). Debian 12 packages no python3.12, and `uv python install` downloads interpreters from
# outside the package registries this machine reaches; the machine image's pyenv has CPython 3.12, so
# the venv is made with that (PEERS_PYTHON overrides the choice).
cache="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}"
venv="$cache/peers-venv"
py="${PEERS_PYTHON:-}"
if [ -z "$py" ]; then
  for c in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 \
    python3.13 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13; do
    if "$c" -c 'import sys; assert (3, 12) <= sys.version_info[:2] < (3, 14)' >/dev/null 2>&1; then py="$c"; break; fi
  done
fi
[ -n "$py" ] || { echo "peer.sh: ContextForge needs Python 3.12 or 3.13, none found (set PEERS_PYTHON)" >&2; exit 1; }
stamp="$(sha256sum tools/peers-requirements.txt | cut -d' ' -f1) $("$py" -c 'import sys; print(sys.version.split()[0])')"
mkdir -p "$cache"
(
  flock 9 # two peers started at once on a fresh machine: one installs, the other waits
  if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$stamp" ]; then
    echo "peer.sh: installing the peers into $venv (about half a minute)" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r tools/peers-requirements.txt >"$3/pip.log" 2>&1 \
      || { cat "$3/pip.log" >&2; exit 1; }
    echo "$stamp" >"$venv/.requirements.sha256"
  fi
) 9>"$cache/peers-venv.lock"

exec "$venv/bin/python" scripts/peer.py "$@"
