//! The gateway as an MCP client of one upstream, on behalf of a principal that is not an MCP
//! session of its own (an agent endpoint fans one client request out to several servers).
//!
//! - **stdio and legacy SSE**: the server's link (`link.rs`): the shared process, or the
//!   principal's own instance / connection (`per_user` servers, SSE), keyed by the principal.
//! - **Streamable HTTP**: one upstream session per (tenant, server, principal), opened with
//!   `initialize` on first use and kept for an hour unused; a session the upstream has ended
//!   (404) is opened again once. JSON and SSE answers are read; a request the upstream makes
//!   mid-call (sampling, elicitation, roots) is answered with an error at once: a headless
//!   principal has nobody to ask.
//!
//! Never a client credential upstream: the requests carry only protocol headers.

use super::link::{HANDSHAKE_TIMEOUT, UPSTREAM_PROTOCOL};
use super::{lock, Gateway};
use crate::domain::ServerTransport;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an unused upstream session is kept.
const IDLE: Duration = Duration::from_secs(3600);
/// The largest answer read from an upstream (the gateway's own limit for recorded answers).
const MAX_ANSWER: usize = 32 * 1024 * 1024;

/// Why there is no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The upstream could not be reached, or answered something that is not MCP.
    Unreachable(String),
    /// No answer in time (the request was cancelled upstream where the transport allows).
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(why) => write!(f, "{why}"),
            Failure::Timeout => write!(f, "no answer in time"),
        }
    }
}

#[derive(Debug, Clone)]
struct HttpSession {
    id: Option<String>,
    version: String,
    used: Instant,
    /// The server's credential from the vault (a sensitive header value), sent on every
    /// request of the session.
    credential: Option<(http::HeaderName, http::HeaderValue)>,
}

/// Upstream sessions of principals (per replica, in memory).
#[derive(Debug, Default)]
pub struct Upstreams {
    http: Mutex<HashMap<String, HttpSession>>,
    next_id: AtomicU64,
}

/// What a POST got back.
enum Answer {
    Message(Value),
    /// 404 for a session id: the upstream ended the session.
    SessionGone,
}

impl Upstreams {
    /// Forgets sessions unused for an hour.
    pub fn sweep(&self) {
        lock(&self.http).retain(|_, s| s.used.elapsed() < IDLE);
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// One request to `server` for `principal`: the upstream's whole JSON-RPC response (its id is
/// the gateway's; the caller puts the client's back).
#[allow(clippy::too_many_arguments)]
pub async fn request(
    state: &crate::state::AppState,
    tenant_id: &str,
    principal: &str,
    // The user whose own upstream account a per-user server uses (the agent's owner).
    owner: Option<(&str, &str)>,
    server: &str,
    transport: &Arc<ServerTransport>,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, Failure> {
    let gw: &Gateway = &state.gateway;
    match transport.as_ref() {
        ServerTransport::StreamableHttp { url } => {
            let url = url.as_str().to_owned();
            // The URL is part of the key: a server moved elsewhere gets a fresh session.
            let key = format!("{tenant_id}/{server}/{principal}/{url}");
            let credential = match gw.per_user(tenant_id, server) {
                Some(pu) => {
                    let Some((user_id, email)) = owner else {
                        return Err(Failure::Unreachable(format!(
                            "{server} uses each user's own account, and this agent belongs to the tenant"
                        )));
                    };
                    match crate::connections::credential(state, tenant_id, &pu, user_id, email)
                        .await
                    {
                        Ok(c) => Some(Arc::new(c)),
                        Err(u) => {
                            return Err(Failure::Unreachable(
                                u.message(server, "the portal (/connect/…)"),
                            ))
                        }
                    }
                }
                None => gw.credential(tenant_id, server),
            };
            tokio::time::timeout(
                timeout,
                http_request(
                    gw,
                    &key,
                    &url,
                    credential.as_deref(),
                    method,
                    params,
                    timeout,
                ),
            )
            .await
            .unwrap_or(Err(Failure::Timeout))
        }
        ServerTransport::Stdio { .. } | ServerTransport::Sse { .. } => {
            let target = super::session::Target {
                tenant_id,
                user_id: principal,
                server,
                transport,
                filter: None,
                env: gw.env_secret(tenant_id, server),
                header: gw.credential(tenant_id, server),
            };
            let (link, own) = gw.hub.link_for(&target, gw.client(), true);
            link.touch();
            let result = async {
                link.wait_ready(HANDSHAKE_TIMEOUT)
                    .await
                    .map_err(Failure::Unreachable)?;
                link.internal_message(method, params, timeout)
                    .await
                    .map_err(|e| {
                        if e.contains("no answer") {
                            Failure::Timeout
                        } else {
                            Failure::Unreachable(e)
                        }
                    })
            }
            .await;
            if own {
                link.shutdown();
            }
            result
        }
    }
}

async fn http_request(
    gw: &Gateway,
    key: &str,
    url: &str,
    credential: Option<&super::Credential>,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, Failure> {
    let ups = &gw.upstreams;
    for attempt in 0..2 {
        let cached = lock(&ups.http).get(key).cloned();
        let session = match cached {
            // The credential of now (a refreshed or changed one), not the session's first.
            Some(mut s) => {
                s.credential = credential.map(|c| (c.header.clone(), c.value.clone()));
                s
            }
            None => {
                let s = http_initialize(gw, url, credential, timeout).await?;
                lock(&ups.http).insert(key.to_owned(), s.clone());
                s
            }
        };
        let id = ups.id();
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        match http_post(gw, url, &session, &body, Some(id), timeout).await? {
            Answer::Message(m) => {
                if let Some(s) = lock(&ups.http).get_mut(key) {
                    s.used = Instant::now();
                }
                return Ok(m);
            }
            Answer::SessionGone if attempt == 0 => {
                lock(&ups.http).remove(key);
            }
            Answer::SessionGone => break,
        }
    }
    Err(Failure::Unreachable(
        "the upstream keeps refusing its session".into(),
    ))
}

/// Opens an upstream session: `initialize`, then `notifications/initialized`.
async fn http_initialize(
    gw: &Gateway,
    url: &str,
    credential: Option<&super::Credential>,
    timeout: Duration,
) -> Result<HttpSession, Failure> {
    let id = gw.upstreams.id();
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": UPSTREAM_PROTOCOL,
        "capabilities": {},
        "clientInfo": {"name": "portcullis-agent", "version": env!("CARGO_PKG_VERSION")},
    }});
    let fresh = HttpSession {
        id: None,
        version: UPSTREAM_PROTOCOL.to_owned(),
        used: Instant::now(),
        credential: credential.map(|c| (c.header.clone(), c.value.clone())),
    };
    let res = send(gw, url, &fresh, &body, timeout).await?;
    let session_id = res
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let msg = match read_answer(gw, url, &fresh, res, Some(id), timeout).await? {
        Answer::Message(m) => m,
        Answer::SessionGone => {
            return Err(Failure::Unreachable(
                "initialize: the upstream answered 404".into(),
            ))
        }
    };
    if let Some(e) = msg.get("error") {
        return Err(Failure::Unreachable(format!(
            "initialize: {}",
            e.get("message").and_then(Value::as_str).unwrap_or("error")
        )));
    }
    let version = msg
        .pointer("/result/protocolVersion")
        .and_then(Value::as_str)
        .filter(|v| super::KNOWN_VERSIONS.contains(v))
        .ok_or_else(|| {
            Failure::Unreachable("initialize: no protocol version the gateway speaks".into())
        })?
        .to_owned();
    let session = HttpSession {
        id: session_id,
        version,
        used: Instant::now(),
        credential: fresh.credential.clone(),
    };
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let _ = send(gw, url, &session, &note, timeout).await?;
    Ok(session)
}

async fn send(
    gw: &Gateway,
    url: &str,
    s: &HttpSession,
    body: &Value,
    timeout: Duration,
) -> Result<reqwest::Response, Failure> {
    let mut r = gw
        .client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", &s.version)
        .timeout(timeout)
        .body(body.to_string());
    if let Some(id) = &s.id {
        r = r.header("mcp-session-id", id);
    }
    if let Some((name, value)) = &s.credential {
        r = r.header(name.clone(), value.clone());
    }
    r.send()
        .await
        .map_err(|e| Failure::Unreachable(format!("cannot reach the server ({e})")))
}

async fn http_post(
    gw: &Gateway,
    url: &str,
    s: &HttpSession,
    body: &Value,
    id: Option<u64>,
    timeout: Duration,
) -> Result<Answer, Failure> {
    let res = send(gw, url, s, body, timeout).await?;
    read_answer(gw, url, s, res, id, timeout).await
}

/// Reads the response to request `id`: a JSON body, or the SSE stream until the event that
/// answers it (requests the upstream makes meanwhile get an error at once).
async fn read_answer(
    gw: &Gateway,
    url: &str,
    s: &HttpSession,
    res: reqwest::Response,
    id: Option<u64>,
    timeout: Duration,
) -> Result<Answer, Failure> {
    let status = res.status();
    if status == http::StatusCode::NOT_FOUND && s.id.is_some() {
        return Ok(Answer::SessionGone);
    }
    let is_sse = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let answers = |m: &Value| {
        (m.get("result").is_some() || m.get("error").is_some())
            && m.get("id").and_then(Value::as_u64) == id
    };
    if !is_sse {
        let bytes = res
            .bytes()
            .await
            .map_err(|e| Failure::Unreachable(format!("reading the answer: {e}")))?;
        if bytes.len() > MAX_ANSWER {
            return Err(Failure::Unreachable("the answer is too large".into()));
        }
        if let Ok(m) = serde_json::from_slice::<Value>(&bytes) {
            if answers(&m) {
                return Ok(Answer::Message(m));
            }
        }
        if id.is_none() || status.is_success() && bytes.is_empty() {
            return Ok(Answer::Message(Value::Null));
        }
        return Err(Failure::Unreachable(format!(
            "the server answered HTTP {status} without a JSON-RPC response"
        )));
    }
    let mut stream = res.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Failure::Unreachable(format!("reading the stream: {e}")))?;
        seen += chunk.len();
        if seen > MAX_ANSWER {
            return Err(Failure::Unreachable("the answer is too large".into()));
        }
        buf.extend_from_slice(&chunk);
        while let Some((event, rest)) = split_event(&buf) {
            buf = rest;
            let Ok(m) = serde_json::from_str::<Value>(&event) else {
                continue;
            };
            if answers(&m) {
                return Ok(Answer::Message(m));
            }
            if let (Some(_), Some(req_id)) = (m.get("method"), m.get("id")) {
                let refusal = json!({"jsonrpc": "2.0", "id": req_id, "error": {
                    "code": -32601,
                    "message": "the client is an agent behind Portcullis: there is nobody to ask",
                }});
                let _ = send(gw, url, s, &refusal, timeout).await;
            }
        }
    }
    Err(Failure::Unreachable(
        "the stream ended without an answer".into(),
    ))
}

/// The data of the first complete SSE event in `buf`, and what follows it.
fn split_event(buf: &[u8]) -> Option<(String, Vec<u8>)> {
    let text = std::str::from_utf8(buf)
        .ok()
        .map(str::to_owned)
        .or_else(|| {
            // A chunk may end inside a UTF-8 sequence: look only at the valid prefix.
            let valid = std::str::from_utf8(buf)
                .err()
                .map(|e| e.valid_up_to())
                .unwrap_or(0);
            std::str::from_utf8(&buf[..valid]).ok().map(str::to_owned)
        })?;
    let normalized = text.replace("\r\n", "\n");
    let end = normalized.find("\n\n")?;
    let event = &normalized[..end];
    let data: Vec<&str> = event
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    // The rest, from the original bytes: what the normalized prefix consumed.
    let consumed_normalized = end + 2;
    let mut consumed = 0;
    let mut n = 0;
    let bytes = text.as_bytes();
    while n < consumed_normalized && consumed < bytes.len() {
        if bytes[consumed] == b'\r' && bytes.get(consumed + 1) == Some(&b'\n') {
            consumed += 2;
        } else {
            consumed += 1;
        }
        n += 1;
    }
    Some((data.join("\n"), buf[consumed..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::split_event;

    #[test]
    fn sse_events_split_on_blank_lines_with_either_line_ending() {
        let buf = b"id: 1\nevent: message\ndata: {\"a\":1}\n\ndata: {\"b\"";
        let (event, rest) = split_event(buf).expect("one event");
        assert_eq!(event, "{\"a\":1}");
        assert_eq!(rest, b"data: {\"b\"");
        assert!(split_event(&rest).is_none());
        let crlf = b"data: x\r\ndata: y\r\n\r\nmore";
        let (event, rest) = split_event(crlf).expect("one event");
        assert_eq!(event, "x\ny");
        assert_eq!(rest, b"more");
    }
}
