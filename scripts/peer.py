"""Runs a *peer* MCP gateway in front of one upstream MCP server, for the benchmark that compares
Portcullis with other gateways. Started by scripts/peer.sh (which makes the venv), in that venv:

    python scripts/peer.py {fastmcp|contextforge} UPSTREAM_URL WORKDIR

- fastmcp: FastMCP's proxy (`fastmcp.server.create_proxy(UPSTREAM_URL)`) served over Streamable HTTP
  at /mcp, stateful sessions, no auth.
- contextforge: IBM ContextForge (mcpgateway) with a SQLite db in WORKDIR, its UI and admin API off;
  the upstream is registered as a gateway over the REST API, a virtual server bundles its tools, and
  the MCP endpoint is that server's /v1/virtual-servers/<id>/mcp. Auth stays on (ContextForge's
  default): a JWT minted the way ContextForge documents (`create_jwt_token --username <admin>`).

The peer runs in this process (uvicorn, one worker) on a port of 127.0.0.1 bound here (port 0).
A thread waits for it, sets it up, and checks an MCP initialize + notifications/initialized +
tools/call add {a:1,b:2} (must answer "3") through it; then it prints the one stdout line
    READY <mcp_url> <authorization header value, or ->
and the peer serves until SIGTERM/SIGINT. Everything else goes to WORKDIR/peer.log; fatal errors
also to stderr. Not ready within PEER_READY_TIMEOUT seconds (120): error, exit non-zero.
"""

import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.request

KIND, UPSTREAM, WORKDIR = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
DEADLINE = time.monotonic() + float(os.environ.get("PEER_READY_TIMEOUT", "120"))
PROTOCOL = os.environ.get("PEER_PROTOCOL_VERSION", "2025-11-25")

# stdout carries only the READY line, stderr only fatal errors: keep private copies of both and point
# fds 1 and 2 (every library's prints and logs) at WORKDIR/peer.log.
READY_OUT = os.fdopen(os.dup(1), "w")
ERR_OUT = os.fdopen(os.dup(2), "w")
_log = os.open(os.path.join(WORKDIR, "peer.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.dup2(_log, 1)
os.dup2(_log, 2)

# The listening socket, bound here so that the port is known before the server starts.
SOCK = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
SOCK.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
SOCK.bind(("127.0.0.1", 0))
SOCK.listen(1024)
PORT = SOCK.getsockname()[1]
BASE = f"http://127.0.0.1:{PORT}"


READY = threading.Event()
FAILED = threading.Event()


def on_sigterm(signum, _frame):
    """uvicorn handles SIGTERM (graceful stop, 2 s at most), then raises it again here: exit 1 when
    the peer stopped itself because it was not ready, 143 otherwise."""
    sys.exit(1 if FAILED.is_set() else 128 + signum)


signal.signal(signal.SIGTERM, on_sigterm)


def fail(msg):
    """Reports a fatal error and stops the server: uvicorn's SIGTERM handler, else a hard exit in 10 s."""
    print(f"peer.sh {KIND}: {msg} (log: {WORKDIR}/peer.log)", file=ERR_OUT, flush=True)
    print(f"FATAL: {msg}", file=sys.stderr, flush=True)
    FAILED.set()
    threading.Timer(10, os._exit, (1,)).start()
    os.kill(os.getpid(), signal.SIGTERM)


def remaining():
    """Seconds left before the deadline: the timeout of each request made while waiting. The socket
    listens from the start, so a request made before the server serves waits in its backlog."""
    left = DEADLINE - time.monotonic()
    if left <= 0:
        raise RuntimeError(f"not ready within {os.environ.get('PEER_READY_TIMEOUT', '120')} s")
    return left


def http(method, url, body=None, headers=None, timeout=30):
    """One HTTP request; returns (status, headers, body text). HTTP errors raise with the body."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {url}: HTTP {e.code}: {e.read().decode()[:500]}") from None


def mcp_check(url, auth):
    """The benchmark's own sequence: initialize, notifications/initialized, tools/call add {a:1,b:2}."""
    h = {"accept": "application/json, text/event-stream", "mcp-protocol-version": PROTOCOL}
    if auth:
        h["authorization"] = auth

    def rpc(msg):
        _, hdrs, text = http("POST", url, msg, h, timeout=remaining())
        if hdrs.get("mcp-session-id"):
            h["mcp-session-id"] = hdrs["mcp-session-id"]
        if "id" not in msg:
            return None
        # A JSON body, or an SSE stream whose data lines carry JSON-RPC messages.
        lines = [ln[5:] for ln in text.splitlines() if ln.startswith("data:")] if "event-stream" in hdrs.get("content-type", "") else [text]
        for ln in lines:
            m = json.loads(ln) if ln.strip() else {}
            if m.get("id") == msg["id"]:
                if "error" in m:
                    raise RuntimeError(f"{msg['method']}: {m['error']}")
                return m["result"]
        raise RuntimeError(f"{msg['method']}: no response in {text[:300]!r}")

    init = rpc({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "peer-check", "version": "1"}}})
    rpc({"jsonrpc": "2.0", "method": "notifications/initialized"})
    res = rpc({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}})
    if res.get("content", [{}])[0].get("text") != "3":
        raise RuntimeError(f"tools/call add returned {res}")
    print(f"check ok: protocol {init.get('protocolVersion')}, session {h.get('mcp-session-id', '(none)')}", file=sys.stderr, flush=True)
    if "mcp-session-id" in h:  # end the check's session; the benchmark makes its own
        try:
            http("DELETE", url, headers=h)
        except Exception:  # noqa: BLE001 - optional in the spec
            pass


def in_background(setup):
    """Runs setup() -> (mcp_url, auth) in a thread, then the check, then prints READY."""

    def run():
        try:
            url, auth = setup()
            mcp_check(url, auth)
            print(f"READY {url} {auth or '-'}", file=READY_OUT, flush=True)
            READY.set()
        except Exception as e:  # noqa: BLE001
            fail(f"not ready: {e}")

    threading.Thread(target=run, daemon=True).start()


def run_fastmcp():
    os.environ.setdefault("FASTMCP_CHECK_FOR_UPDATES", "off")  # no PyPI look-up at start
    os.environ.setdefault("FASTMCP_LOG_LEVEL", "WARNING")
    from fastmcp.server import create_proxy

    # A URL target: FastMCP's documented default, a fresh backend session per proxied request.
    proxy = create_proxy(UPSTREAM, name="fastmcp-peer")

    in_background(lambda: (f"{BASE}/mcp", None))
    proxy.run(transport="http", host="127.0.0.1", port=PORT, path="/mcp", sockets=[SOCK], show_banner=False,
              stateless_http=False, uvicorn_config={"access_log": False, "timeout_graceful_shutdown": 2})


def run_contextforge():
    admin = "admin@example.com"
    forced = {  # per-run values; these always win
        "HOST": "127.0.0.1",
        "PORT": str(PORT),  # its in-process loopback calls use settings.port
        "DATABASE_URL": f"sqlite:///{WORKDIR}/contextforge.db",
        # Required since 1.0: strong random secrets (placeholders and weak values are refused at start).
        "JWT_SECRET_KEY": secrets.token_hex(32),
        "AUTH_ENCRYPTION_SECRET": secrets.token_hex(32),
        "PLATFORM_ADMIN_EMAIL": admin,  # bootstrapped into the db at start; the token's user
        "PLATFORM_ADMIN_PASSWORD": "Pw-" + secrets.token_hex(12),
        "DEFAULT_USER_PASSWORD": "Pw-" + secrets.token_hex(12),
    }
    defaults = {  # the benchmark's choices; the caller's environment may override any of them
        "MCPGATEWAY_UI_ENABLED": "false",
        "MCPGATEWAY_ADMIN_API_ENABLED": "false",
        "SSRF_ALLOW_LOCALHOST": "true",  # the upstream is on 127.0.0.1, refused by default
        "RATE_LIMITING_ENABLED": "false",  # default: 100 MCP requests/min per client, then lockouts
        # Default false (stateless: no mcp-session-id, and about 3x slower per tools/call here);
        # stateful like the FastMCP peer and Portcullis.
        "USE_STATEFUL_SESSIONS": "true",
        "CACHE_TYPE": "memory",  # one worker: no Redis; the default "database" caches in SQLite
        "JQ_FILTER_WORKERS": "1",  # forked sandbox processes (default 2 each), 1 is the minimum
        "REGEX_WORKERS": "1",
    }
    os.environ.update(forced)
    for k, v in defaults.items():
        os.environ.setdefault(k, v)
    os.chdir(WORKDIR)  # its settings read ./.env: make sure no stray one is picked up
    import uvicorn

    # What the `mcpgateway` console script runs (uvicorn, one process), given our socket.
    server = uvicorn.Server(uvicorn.Config("mcpgateway.main:app", host="127.0.0.1", port=PORT, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=2))

    def setup():
        http("GET", f"{BASE}/health", timeout=remaining())  # answers once its startup is done
        from mcpgateway.utils.create_jwt_token import _create_jwt_token

        # As `python -m mcpgateway.utils.create_jwt_token --username <admin> --exp 10080 --secret KEY`.
        auth = "Bearer " + _create_jwt_token({"username": admin}, 10080, os.environ["JWT_SECRET_KEY"])
        h = {"authorization": auth}
        _, _, gw = http("POST", f"{BASE}/v1/gateways", {"name": "upstream", "url": UPSTREAM, "transport": "STREAMABLEHTTP"}, h)
        gw_id = json.loads(gw)["id"]
        tools = json.loads(http("GET", f"{BASE}/v1/tools?limit=0", headers=h)[2])
        tools = tools if isinstance(tools, list) else tools.get("items") or tools.get("tools") or []
        ids = [t["id"] for t in tools if t.get("gatewayId") == gw_id]
        if not ids:
            raise RuntimeError(f"no tools registered from {UPSTREAM}")
        body = {"server": {"name": "bench", "description": "benchmark peer", "associated_tools": ids}, "visibility": "public"}
        sid = json.loads(http("POST", f"{BASE}/v1/virtual-servers", body, h)[2])["id"]
        print(f"gateway {gw_id}, virtual server {sid}, {len(ids)} tools", file=sys.stderr, flush=True)
        return f"{BASE}/v1/virtual-servers/{sid}/mcp", auth

    in_background(setup)
    server.run(sockets=[SOCK])


if __name__ == "__main__":
    {"fastmcp": run_fastmcp, "contextforge": run_contextforge}[KIND]()
    if not READY.is_set():  # the server stopped (or failed to start) before the check passed
        print(f"peer.sh {KIND}: the server stopped before it was ready (log: {WORKDIR}/peer.log)", file=ERR_OUT, flush=True)
        sys.exit(1)
