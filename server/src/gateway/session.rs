//! The gateway's own Streamable HTTP session layer (2025-11-25 era, with 2025-06-18,
//! 2025-03-26 and 2024-11-05 clients), for upstreams reached through a `Link`: stdio processes
//! and legacy HTTP+SSE servers. (Streamable HTTP upstreams keep their own sessions: the gateway
//! forwards those 1:1, see `mod.rs`.)
//!
//! A session is created by `initialize` and named by a secure random `Mcp-Session-Id`; it is
//! bound to the user who created it (another user's token gets 404, as an unknown id does).
//! Every message for a client goes into the session's event log, tagged with the stream it
//! belongs to: stream 0 is the standalone GET stream, every POSTed request gets its own. A POST
//! answers with JSON when the response is the first thing on its stream, otherwise with an SSE
//! stream that carries the related notifications and requests and ends with the response.
//! Event ids (`{stream}_{seq}`) are unique in the session; `GET` with `Last-Event-ID` replays the
//! rest of that one stream and follows it if it is still open. A dropped connection does not
//! cancel anything: the answer waits in the log.

use super::link::{Link, Readiness, HANDSHAKE_TIMEOUT};
use super::{lock, rpc_error};
use crate::domain::{ServerTransport, StdioInstance};
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Revisions a client may negotiate in `initialize` on a gateway session.
pub const SESSION_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// Events a session keeps for replay and for streams not yet read.
const LOG_CAPACITY: usize = 4096;
/// Bytes a session's event log may hold; the oldest events go first (a client that never reads
/// its answers cannot make the gateway hold them without bound).
const LOG_BYTES: usize = 32 * 1024 * 1024;
/// Open sessions one user may have on one server; `initialize` beyond it gets 429.
pub const MAX_SESSIONS_PER_USER: usize = 64;
/// A session nobody has used for this long is ended.
const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// A shared or per-user upstream with no session for this long is stopped.
const LINK_LINGER: Duration = Duration::from_secs(120);

#[derive(Debug)]
struct Event {
    stream: u64,
    seq: u64,
    data: Arc<str>,
    last: bool,
}

#[derive(Debug, Default)]
struct EventLog {
    events: VecDeque<Event>,
    next_seq: u64,
    /// Bytes of message data held in `events`.
    bytes: usize,
    /// Request streams whose response has not been logged yet (every other stream below
    /// `next_stream` is over). Only in-flight requests are held, so a long session does not
    /// grow this.
    open: std::collections::HashSet<u64>,
    /// How far the GET stream has been read.
    get_delivered: u64,
    /// Ids this gateway gave requests the upstream made -> the upstream's ids.
    server_requests: HashMap<String, (Value, u64)>,
}

pub struct Session {
    pub id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub server: String,
    pub protocol_version: String,
    transport: Arc<ServerTransport>,
    /// The version of the server's environment credential the session started with (0: none).
    env_version: i64,
    pub link: Arc<Link>,
    /// The link belongs to this session alone (SSE upstreams): stop it when the session ends.
    own_link: bool,
    log: Mutex<EventLog>,
    tick: watch::Sender<u64>,
    next_stream: AtomicU64,
    next_server_request: AtomicU64,
    get_open: AtomicBool,
    closed: AtomicBool,
    last_active: Mutex<Instant>,
    /// Policy filters for the responses of list requests (tools/list…), by stream.
    filters: Mutex<HashMap<u64, super::policy::ResponseFilter>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("server", &self.server)
            .finish()
    }
}

impl Session {
    pub(super) fn new(t: &Target<'_>, version: &str, link: Arc<Link>, own_link: bool) -> Arc<Self> {
        Self::with_id(random_id(), t, version, link, own_link)
    }

    fn with_id(
        id: String,
        t: &Target<'_>,
        version: &str,
        link: Arc<Link>,
        own_link: bool,
    ) -> Arc<Self> {
        Arc::new(Session {
            id,
            tenant_id: t.tenant_id.to_owned(),
            user_id: t.user_id.to_owned(),
            server: t.server.to_owned(),
            protocol_version: version.to_owned(),
            transport: t.transport.clone(),
            env_version: super::link_secret_version(t.env.as_deref(), t.header.as_deref()),
            link,
            own_link,
            log: Mutex::new(EventLog::default()),
            tick: watch::channel(0).0,
            next_stream: AtomicU64::new(1),
            next_server_request: AtomicU64::new(1),
            get_open: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            last_active: Mutex::new(Instant::now()),
            filters: Mutex::new(HashMap::new()),
        })
    }

    /// The response that ends `stream` passes through `filter` before it is logged.
    pub(super) fn filter_stream(&self, stream: u64, filter: Option<super::policy::ResponseFilter>) {
        if let Some(f) = filter {
            lock(&self.filters).insert(stream, f);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn touch(&self) {
        *lock(&self.last_active) = Instant::now();
    }

    pub(super) fn new_stream(&self) -> u64 {
        let mut log = lock(&self.log);
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        log.open.insert(stream);
        stream
    }

    /// A request stream that will get no response through the log (answered directly).
    fn drop_stream(&self, stream: u64) {
        lock(&self.log).open.remove(&stream);
    }

    /// Logs a message for the client on `stream` (`last`: the response that ends it). A message
    /// for a stream that has already ended goes to the GET stream.
    pub fn push(&self, stream: u64, msg: &Value, last: bool) {
        let filtered;
        let msg = match last.then(|| lock(&self.filters).remove(&stream)).flatten() {
            Some(filter) => {
                let mut m = msg.clone();
                filter(&mut m);
                filtered = m;
                &filtered
            }
            None => msg,
        };
        {
            let mut log = lock(&self.log);
            let stream = if stream != 0 && !log.open.contains(&stream) {
                0
            } else {
                stream
            };
            log.next_seq += 1;
            let seq = log.next_seq;
            if last && stream != 0 {
                log.open.remove(&stream);
            }
            let data: Arc<str> = Arc::from(msg.to_string());
            log.bytes += data.len();
            log.events.push_back(Event {
                stream,
                seq,
                data,
                last: last && stream != 0,
            });
            while log.events.len() > LOG_CAPACITY || (log.bytes > LOG_BYTES && log.events.len() > 1)
            {
                if let Some(old) = log.events.pop_front() {
                    log.bytes -= old.data.len();
                }
            }
        }
        self.tick.send_modify(|t| *t += 1);
    }

    /// A request the upstream makes of this client: it gets an id of this session's own.
    pub fn server_request(&self, stream: u64, mut msg: Value, upstream_id: (Value, u64)) {
        let n = self.next_server_request.fetch_add(1, Ordering::Relaxed);
        let id = format!("pc-{n}");
        lock(&self.log)
            .server_requests
            .insert(id.clone(), upstream_id);
        msg["id"] = json!(id);
        self.push(stream, &msg, false);
    }

    pub(super) fn take_server_request(&self, id: &Value) -> Option<(Value, u64)> {
        let key = id.as_str()?;
        lock(&self.log).server_requests.remove(key)
    }

    pub fn take_server_request_by_upstream(&self, upstream_id: &Value) -> Option<Value> {
        let mut log = lock(&self.log);
        let key = log
            .server_requests
            .iter()
            .find(|(_, (v, _))| v == upstream_id)
            .map(|(k, _)| k.clone())?;
        log.server_requests.remove(&key);
        Some(json!(key))
    }

    pub(super) fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.link.detach(&self.id);
            if self.own_link {
                self.link.shutdown();
            }
            self.tick.send_modify(|t| *t += 1);
        }
    }

    /// The next event of `stream` after `after`, waiting for it. `None` when the stream is over
    /// (its response was read), the session closed, or the gateway is shutting down.
    pub(super) async fn next_event(
        &self,
        stream: u64,
        after: u64,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<(u64, Arc<str>, bool)> {
        let mut rx = self.tick.subscribe();
        loop {
            {
                let log = lock(&self.log);
                if let Some(e) = log
                    .events
                    .iter()
                    .find(|e| e.stream == stream && e.seq > after)
                {
                    return Some((e.seq, e.data.clone(), e.last));
                }
                if stream != 0 && !log.open.contains(&stream) {
                    return None;
                }
            }
            if self.is_closed() || *shutdown.borrow() {
                return None;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return None },
                _ = shutdown.changed() => {},
            }
        }
    }
}

/// Options the hub takes from the server's settings.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// The data directory: hidden from sandboxed stdio servers.
    pub data_dir: PathBuf,
    /// The longest a request may wait for its upstream.
    pub upstream_timeout: Duration,
    /// The largest request body the gateway endpoint accepts.
    pub max_body: usize,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            upstream_timeout: Duration::from_secs(300),
            max_body: 4 * 1024 * 1024,
        }
    }
}

/// The gateway's sessions and links (in memory, per replica).
pub struct Hub {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    links: Mutex<HashMap<String, Arc<Link>>>,
    runners: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub options: HubOptions,
    pub(super) shutdown: watch::Sender<bool>,
    /// Open `subscriptions/listen` streams (ended like sessions when their server changes).
    pub(super) listeners: Mutex<Vec<std::sync::Weak<Session>>>,
    /// `initialize`s under way per tenant/user/server (they count against the session cap).
    starting: Mutex<HashMap<String, usize>>,
    /// Stateless (2026-07-28) calls waiting for the client's input (modern.rs).
    pub(super) parked: super::modern::Parked,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish()
    }
}

/// Who asks, for which server.
pub struct Target<'a> {
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub server: &'a str,
    pub transport: &'a Arc<ServerTransport>,
    /// Applied to the response of this request (a policy-filtered list).
    pub filter: Option<super::policy::ResponseFilter>,
    /// The server's credential as an environment variable (stdio servers).
    pub env: Option<Arc<super::EnvSecret>>,
    /// The server's credential as a request header (SSE servers).
    pub header: Option<Arc<super::Credential>>,
}

pub(super) fn random_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, axum::Json(body)).into_response()
}

pub(super) fn rpc_err_with_id(
    status: StatusCode,
    id: &Value,
    code: i64,
    message: &str,
) -> Response {
    json_response(
        status,
        &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
    )
}

pub(super) fn accepts_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream") || v.contains("*/*"))
}

fn sse_frame(stream: u64, seq: u64, data: &str) -> Bytes {
    Bytes::from(format!(
        "id: {stream}_{seq}\nevent: message\ndata: {data}\n\n"
    ))
}

impl Hub {
    pub fn new(options: HubOptions) -> Self {
        let (shutdown, _) = watch::channel(false);
        Self {
            sessions: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            runners: Mutex::new(Vec::new()),
            options,
            shutdown,
            starting: Mutex::new(HashMap::new()),
            listeners: Mutex::new(Vec::new()),
            parked: super::modern::Parked::default(),
        }
    }

    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// The protocol version of a live session of this replica, if it has one by that id.
    pub fn session_version(&self, id: &str) -> Option<String> {
        lock(&self.sessions)
            .get(id)
            .filter(|s| !s.is_closed())
            .map(|s| s.protocol_version.clone())
    }

    /// Carries on a session another replica opened (the caller checked in the database that
    /// `t`'s user opened it through `t`'s server, in `version`): a session by the same id on this
    /// replica's link for the server — its shared or per-user process, started when not
    /// running, or a new upstream connection of its own — whose initialize has been answered.
    /// What the old replica held in memory is not carried: its unanswered requests, its event
    /// log (a stream cannot be resumed here) and requests the upstream had sent the client.
    pub async fn adopt(
        &self,
        t: &Target<'_>,
        client: &reqwest::Client,
        id: &str,
        version: &str,
    ) -> Result<(), String> {
        if !SESSION_VERSIONS.contains(&version) {
            return Err(format!("unknown protocol version {version}"));
        }
        let (link, own) = self.link_for(t, client, false);
        // A connection of its own is stopped however this ends, unless the session takes it.
        let mut guard = StartGuard {
            starting: &self.starting,
            key: String::new(),
            link: own.then(|| link.clone()),
        };
        link.wait_ready(HANDSHAKE_TIMEOUT).await?;
        let session = Session::with_id(id.to_owned(), t, version, link.clone(), own);
        let mut sessions = lock(&self.sessions);
        if sessions.get(id).is_some_and(|s| !s.is_closed()) {
            // Another request of the same client adopted it first.
            return Ok(());
        }
        guard.link = None;
        link.attach(&session);
        sessions.insert(session.id.clone(), session);
        Ok(())
    }

    /// Starts a link for `transport`, with its runner.
    pub fn start_link(
        &self,
        label: String,
        transport: &ServerTransport,
        client: &reqwest::Client,
        env: Option<Arc<super::EnvSecret>>,
        header: Option<Arc<super::Credential>>,
    ) -> Arc<Link> {
        let link = Link::new(label);
        let handle = match transport {
            ServerTransport::Stdio {
                command,
                args,
                cwd,
                sandbox,
                ..
            } => {
                let spec = super::stdio::Spec {
                    command: command.clone(),
                    args: args.clone(),
                    cwd: cwd.clone(),
                    sandbox: *sandbox,
                    data_dir: self.options.data_dir.clone(),
                    env,
                };
                tokio::spawn(super::stdio::run(link.clone(), spec))
            }
            ServerTransport::Sse { url } => tokio::spawn(super::sse::run(
                link.clone(),
                url.as_str().to_owned(),
                client.clone(),
                header,
            )),
            ServerTransport::StreamableHttp { .. } => {
                // Not a link transport: the caller never asks for one.
                link.went_down(0, "not a message transport");
                tokio::spawn(async {})
            }
        };
        let mut runners = lock(&self.runners);
        runners.retain(|h| !h.is_finished());
        runners.push(handle);
        link
    }

    /// The link a new session of `t` uses: the shared or per-user process (started when not
    /// running), or a fresh connection of its own.
    /// `shared_sse`: an SSE upstream connection shared by a user's stateless (2026-07-28)
    /// requests, instead of one for a session.
    pub(super) fn link_for(
        &self,
        t: &Target<'_>,
        client: &reqwest::Client,
        shared_sse: bool,
    ) -> (Arc<Link>, bool) {
        // A changed credential is a different process (its environment differs).
        let fingerprint = format!(
            "{}#{}",
            serde_json::to_string(t.transport.as_ref()).unwrap_or_default(),
            super::link_secret_version(t.env.as_deref(), t.header.as_deref())
        );
        let key = match t.transport.as_ref() {
            ServerTransport::Sse { .. } if shared_sse => {
                format!(
                    "{}/{}/{}/sse-user:{}",
                    t.tenant_id, t.server, fingerprint, t.user_id
                )
            }
            ServerTransport::Stdio {
                instance: StdioInstance::PerUser,
                ..
            } => format!(
                "{}/{}/{}/user:{}",
                t.tenant_id, t.server, fingerprint, t.user_id
            ),
            ServerTransport::Stdio { .. } => {
                format!("{}/{}/{}", t.tenant_id, t.server, fingerprint)
            }
            _ => {
                let label = format!("{}/{} (session)", t.tenant_id, t.server);
                return (
                    self.start_link(label, t.transport, client, t.env.clone(), t.header.clone()),
                    true,
                );
            }
        };
        let mut links = lock(&self.links);
        if let Some(l) = links.get(&key) {
            if !l.stopping() {
                l.touch();
                return (l.clone(), false);
            }
        }
        let label = match t.transport.as_ref() {
            ServerTransport::Stdio {
                instance: StdioInstance::PerUser,
                ..
            }
            | ServerTransport::Sse { .. } => {
                format!("{}/{} user {}", t.tenant_id, t.server, t.user_id)
            }
            _ => format!("{}/{}", t.tenant_id, t.server),
        };
        let link = self.start_link(label, t.transport, client, t.env.clone(), t.header.clone());
        links.insert(key, link.clone());
        (link, false)
    }

    /// One HTTP request to `/mcp/{server}` for a link-backed server.
    pub async fn handle(
        &self,
        t: Target<'_>,
        client: &reqwest::Client,
        method: &Method,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let session_id = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The stateless 2026-07-28 era: no session (an Mcp-Session-Id is ignored), POST only.
        if super::modern::is_modern(headers) {
            if *method != Method::POST {
                let mut res = rpc_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    -32600,
                    "the 2026-07-28 era uses POST only",
                );
                res.headers_mut()
                    .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
                return res;
            }
            let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
                return rpc_error(StatusCode::BAD_REQUEST, -32700, "parse error");
            };
            // initialize included: removed in this era, so it is a -32601 there.
            return self.modern(t, client, msg, headers).await;
        }
        let session = match &session_id {
            Some(id) => {
                let s = lock(&self.sessions).get(id).cloned();
                match s {
                    // Bound to its user and server: anyone else gets the same 404 as for a
                    // session that never existed.
                    Some(s)
                        if s.user_id == t.user_id
                            && s.tenant_id == t.tenant_id
                            && s.server == t.server
                            && !s.is_closed() =>
                    {
                        s.touch();
                        Some(s)
                    }
                    _ => {
                        return rpc_error(
                            StatusCode::NOT_FOUND,
                            -32001,
                            "session not found (it ended or never existed): initialize again",
                        )
                    }
                }
            }
            None => None,
        };
        match *method {
            Method::POST => self.post(t, client, session, headers, body).await,
            Method::GET => {
                let Some(session) = session else {
                    return rpc_error(
                        StatusCode::BAD_REQUEST,
                        -32600,
                        "missing Mcp-Session-Id header",
                    );
                };
                self.get(session, headers)
            }
            Method::DELETE => {
                let Some(session) = session else {
                    return rpc_error(
                        StatusCode::BAD_REQUEST,
                        -32600,
                        "missing Mcp-Session-Id header",
                    );
                };
                lock(&self.sessions).remove(&session.id);
                session.close();
                StatusCode::OK.into_response()
            }
            _ => rpc_error(
                StatusCode::METHOD_NOT_ALLOWED,
                -32600,
                "use POST, GET or DELETE",
            ),
        }
    }

    async fn post(
        &self,
        t: Target<'_>,
        client: &reqwest::Client,
        session: Option<Arc<Session>>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
            return rpc_error(StatusCode::BAD_REQUEST, -32700, "parse error");
        };
        if msg.is_array() {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "JSON-RPC batches are not supported: send one message per request",
            );
        }
        let method = msg.get("method").and_then(Value::as_str).map(str::to_owned);
        let id = msg.get("id").cloned();
        let Some(session) = session else {
            if method.as_deref() == Some("initialize") {
                return self
                    .initialize(t, client, msg, id.unwrap_or(Value::Null))
                    .await;
            }
            // 2025-11-25: a request without a session (other than initialize) is a 400. Not a
            // modern-era error code either, so dual-era clients fall back to initialize.
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "missing Mcp-Session-Id header: this server speaks the session era, send initialize first",
            );
        };
        if let Some(v) = headers.get("mcp-protocol-version") {
            if !v.to_str().is_ok_and(|v| SESSION_VERSIONS.contains(&v)) {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    -32600,
                    "unsupported MCP-Protocol-Version for this session",
                );
            }
        }
        match (method.as_deref(), id) {
            (Some("initialize"), Some(id)) => rpc_err_with_id(
                StatusCode::BAD_REQUEST,
                &id,
                -32600,
                "the session is already initialized",
            ),
            (Some(m), Some(id)) => {
                // Deciding whether the upstream (un)subscribes and sending it happen under one
                // lock, so that another session's subscribe cannot slip between them.
                let link = session.link.clone();
                let subscriptions = (m == "resources/subscribe" || m == "resources/unsubscribe")
                    .then(|| link.subscription_lock());
                if m == "resources/unsubscribe" {
                    let uri = msg
                        .pointer("/params/uri")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !session.link.unsubscribe(&session.id, uri) {
                        // Others still subscribed: the upstream subscription stays.
                        return json_response(
                            StatusCode::OK,
                            &json!({"jsonrpc": "2.0", "id": id, "result": {}}),
                        );
                    }
                }
                if m == "resources/subscribe" {
                    if let Some(uri) = msg.pointer("/params/uri").and_then(Value::as_str) {
                        session.link.subscribe(&session.id, uri);
                    }
                }
                let stream = session.new_stream();
                session.filter_stream(stream, t.filter.clone());
                if !session.link.request(&session, stream, msg) {
                    session.drop_stream(stream);
                    let why = match session.link.readiness() {
                        Readiness::Down { reason, .. } => format!(
                            "the upstream MCP server is not running ({reason}); it is being restarted"
                        ),
                        _ => "the upstream MCP server is starting; try again".to_owned(),
                    };
                    return rpc_err_with_id(StatusCode::OK, &id, -32603, &why);
                }
                drop(subscriptions);
                self.answer(session, stream, accepts_sse(headers)).await
            }
            (Some("notifications/initialized"), None) => StatusCode::ACCEPTED.into_response(),
            (Some(_), None) => {
                session.link.notify_from(&session, msg);
                StatusCode::ACCEPTED.into_response()
            }
            (None, Some(id)) => {
                // The client's answer to a request the upstream made.
                match session.take_server_request(&id) {
                    Some(upstream_id) => {
                        session.link.respond(msg, upstream_id);
                        StatusCode::ACCEPTED.into_response()
                    }
                    None => rpc_error(
                        StatusCode::BAD_REQUEST,
                        -32600,
                        "a response to no pending request",
                    ),
                }
            }
            (None, None) => rpc_error(StatusCode::BAD_REQUEST, -32600, "invalid request"),
        }
    }

    async fn initialize(
        &self,
        t: Target<'_>,
        client: &reqwest::Client,
        msg: Value,
        id: Value,
    ) -> Response {
        let requested = msg
            .pointer("/params/protocolVersion")
            .and_then(Value::as_str);
        let Some(requested) = requested else {
            return rpc_err_with_id(
                StatusCode::BAD_REQUEST,
                &id,
                -32602,
                "initialize needs params.protocolVersion",
            );
        };
        let version = if SESSION_VERSIONS.contains(&requested) {
            requested
        } else {
            SESSION_VERSIONS[0]
        };
        // Open sessions plus initializes under way count against the cap (reserved here, released
        // by the guard however this ends).
        let key = format!("{}/{}/{}", t.tenant_id, t.user_id, t.server);
        let open = lock(&self.sessions)
            .values()
            .filter(|s| {
                s.user_id == t.user_id && s.tenant_id == t.tenant_id && s.server == t.server
            })
            .count();
        let reserved = {
            let mut starting = lock(&self.starting);
            let n = starting.entry(key.clone()).or_insert(0);
            if open + *n >= MAX_SESSIONS_PER_USER {
                None
            } else {
                *n += 1;
                Some(())
            }
        };
        let mut guard = StartGuard {
            starting: &self.starting,
            key,
            link: None,
        };
        if reserved.is_none() {
            guard.key.clear(); // nothing reserved to release
            drop(guard);
            return rpc_err_with_id(
                StatusCode::TOO_MANY_REQUESTS,
                &id,
                -32600,
                &format!(
                    "too many open sessions ({MAX_SESSIONS_PER_USER}) on this server: end unused ones with DELETE"
                ),
            );
        }
        let (link, own) = self.link_for(&t, client, false);
        if own {
            // A client that gives up while the upstream starts must not leave the connection behind.
            guard.link = Some(link.clone());
        }
        let init = match link.wait_ready(HANDSHAKE_TIMEOUT).await {
            Ok(init) => init,
            Err(reason) => {
                tracing::warn!(upstream = %link.label, error = %reason, "upstream unavailable for a new session");
                return rpc_err_with_id(
                    StatusCode::OK,
                    &id,
                    -32603,
                    &format!("the upstream MCP server is unavailable: {reason}"),
                );
            }
        };
        let session = Session::new(&t, version, link.clone(), own);
        link.attach(&session);
        lock(&self.sessions).insert(session.id.clone(), session.clone());
        guard.link = None; // the session owns it now
        let mut result = (*init).clone();
        result["protocolVersion"] = json!(version);
        let mut res = json_response(
            StatusCode::OK,
            &json!({"jsonrpc": "2.0", "id": id, "result": result}),
        );
        if let Ok(v) = HeaderValue::from_str(&session.id) {
            res.headers_mut().insert("mcp-session-id", v);
        }
        res
    }

    /// The answer to a POSTed request: JSON when the response is the first thing on its
    /// stream, else an SSE stream (notifications and requests first, the response last).
    async fn answer(&self, session: Arc<Session>, stream: u64, sse: bool) -> Response {
        let mut shutdown = self.shutdown.subscribe();
        let mut after = 0;
        loop {
            let Some((seq, data, last)) = session.next_event(stream, after, &mut shutdown).await
            else {
                if session.is_closed() {
                    return rpc_error(
                        StatusCode::NOT_FOUND,
                        -32001,
                        "the session ended before the answer came",
                    );
                }
                return rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    -32603,
                    "the gateway is shutting down",
                );
            };
            if last {
                let mut res = Response::new(Body::from(data.to_string()));
                res.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return res;
            }
            if sse {
                let first = sse_frame(stream, seq, &data);
                return self.sse_response(session, stream, seq, Some(first), None);
            }
            // A JSON-only client: what comes before the response cannot reach it here.
            after = seq;
        }
    }

    fn sse_response(
        &self,
        session: Arc<Session>,
        stream: u64,
        after: u64,
        first: Option<Bytes>,
        guard: Option<GetGuard>,
    ) -> Response {
        struct Cursor {
            session: Arc<Session>,
            stream: u64,
            after: u64,
            first: Option<Bytes>,
            shutdown: watch::Receiver<bool>,
            done: bool,
            _guard: Option<GetGuard>,
        }
        let cursor = Cursor {
            session,
            stream,
            after,
            first,
            shutdown: self.shutdown.subscribe(),
            done: false,
            _guard: guard,
        };
        let body = futures_util::stream::unfold(cursor, |mut c| async move {
            if let Some(first) = c.first.take() {
                return Some((Ok::<_, std::convert::Infallible>(first), c));
            }
            if c.done {
                return None;
            }
            let (seq, data, last) = c
                .session
                .next_event(c.stream, c.after, &mut c.shutdown)
                .await?;
            c.after = seq;
            c.done = last;
            if c.stream == 0 {
                let mut log = lock(&c.session.log);
                log.get_delivered = log.get_delivered.max(seq);
            }
            Some((Ok(sse_frame(c.stream, seq, &data)), c))
        });
        super::modern::sse_response(Body::from_stream(body))
    }

    /// GET: the standalone stream, or the rest of a stream named by `Last-Event-ID`.
    fn get(&self, session: Arc<Session>, headers: &HeaderMap) -> Response {
        if !accepts_sse(headers) {
            return rpc_error(
                StatusCode::NOT_ACCEPTABLE,
                -32600,
                "the GET stream needs Accept: text/event-stream",
            );
        }
        if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
            let parsed = last
                .split_once('_')
                .and_then(|(s, q)| Some((s.parse::<u64>().ok()?, q.parse::<u64>().ok()?)));
            let Some((stream, seq)) = parsed else {
                return rpc_error(StatusCode::BAD_REQUEST, -32600, "unknown Last-Event-ID");
            };
            if stream >= session.next_stream.load(Ordering::Relaxed) {
                return rpc_error(StatusCode::BAD_REQUEST, -32600, "unknown Last-Event-ID");
            }
            let guard = if stream == 0 {
                match GetGuard::take(&session) {
                    Some(g) => Some(g),
                    None => return conflict(),
                }
            } else {
                None
            };
            return self.sse_response(session, stream, seq, None, guard);
        }
        let Some(guard) = GetGuard::take(&session) else {
            return conflict();
        };
        let after = lock(&session.log).get_delivered;
        self.sse_response(session, 0, after, None, Some(guard))
    }

    /// Ends idle sessions and sessions of servers that were removed or changed, answers
    /// requests that waited too long, and stops upstreams nobody uses.
    /// `current(tenant, user, server)`: the server's transport as the snapshot has it now, if
    /// the user still reaches it (else their sessions end).
    pub fn sweep(&self, current: impl Fn(&str, &str, &str) -> Option<(Arc<ServerTransport>, i64)>) {
        let ended: Vec<Arc<Session>> = {
            let mut sessions = lock(&self.sessions);
            let ended: Vec<String> = sessions
                .values()
                .filter(|s| {
                    s.is_closed()
                        || (lock(&s.last_active).elapsed() > SESSION_IDLE
                            && !s.get_open.load(Ordering::Relaxed))
                        || current(&s.tenant_id, &s.user_id, &s.server)
                            .is_none_or(|(t, v)| t != s.transport || v != s.env_version)
                })
                .map(|s| s.id.clone())
                .collect();
            ended.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for s in ended {
            s.close();
        }
        let gone: Vec<Arc<Session>> = {
            let mut listeners = lock(&self.listeners);
            let mut gone = Vec::new();
            listeners.retain(|w| match w.upgrade() {
                Some(s) if s.is_closed() => false,
                Some(s)
                    if current(&s.tenant_id, &s.user_id, &s.server)
                        .is_none_or(|(t, v)| t != s.transport || v != s.env_version) =>
                {
                    gone.push(s);
                    false
                }
                Some(_) => true,
                None => false,
            });
            gone
        };
        for s in gone {
            s.close();
        }
        self.sweep_parked(false);
        let limit = self.options.upstream_timeout;
        for s in lock(&self.sessions).values() {
            if s.own_link {
                s.link.expire(limit);
            }
        }
        let mut links = lock(&self.links);
        links.retain(|_, l| {
            l.expire(limit);
            if l.idle_for().is_some_and(|d| d > LINK_LINGER) || l.stopping() {
                l.shutdown();
                false
            } else {
                true
            }
        });
    }

    /// Ends every open stream (the answers stay in the logs).
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Ends every stream and session, stops every upstream and waits (bounded) for them.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        self.sweep_parked(true);
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).drain().map(|(_, s)| s).collect();
        for s in sessions {
            s.close();
        }
        for l in lock(&self.links).drain().map(|(_, l)| l) {
            l.shutdown();
        }
        let runners: Vec<_> = lock(&self.runners).drain(..).collect();
        let _ = tokio::time::timeout(
            Duration::from_secs(8),
            futures_util::future::join_all(runners),
        )
        .await;
    }
}

/// Releases an `initialize`'s reservation, and stops a link of its own that no session took.
struct StartGuard<'a> {
    starting: &'a Mutex<HashMap<String, usize>>,
    key: String,
    link: Option<Arc<Link>>,
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.link.take() {
            l.shutdown();
        }
        if self.key.is_empty() {
            return;
        }
        let mut starting = lock(self.starting);
        if let Some(n) = starting.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                starting.remove(&self.key);
            }
        }
    }
}

fn conflict() -> Response {
    rpc_error(
        StatusCode::CONFLICT,
        -32600,
        "this session already has a GET stream open",
    )
}

/// Holds the session's one standalone GET stream open; released when the response ends.
struct GetGuard(Arc<Session>);

impl GetGuard {
    fn take(session: &Arc<Session>) -> Option<Self> {
        session
            .get_open
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Self(session.clone()))
    }
}

impl Drop for GetGuard {
    fn drop(&mut self) {
        self.0.get_open.store(false, Ordering::Release);
        self.0.touch();
    }
}
