//! A `Link` is one upstream MCP session reached by messages rather than by HTTP requests: a
//! stdio process the gateway runs (shared by every session of a server, or one per user), or a
//! legacy HTTP+SSE connection (one per downstream session). The gateway initializes the
//! upstream itself, once per link, and then multiplexes downstream sessions over it:
//!
//! - every request a client sends gets a fresh upstream id (an integer the link counts), and
//!   its `_meta.progressToken` a fresh token, so concurrent clients never see each other's
//!   responses or progress;
//! - a response is routed back by that id, with the client's own id restored;
//! - requests and notifications the upstream starts (sampling, elicitation, roots, logging) go
//!   to the session whose request is in flight (the newest one when several are); the protocol
//!   does not say which request caused them, so a server that uses them is best run with one
//!   instance per user;
//! - `resources/updated` goes to the sessions subscribed to that URI, list changes to all.
//!
//! The runner (`stdio.rs`, `sse.rs`) owns the transport; it calls `connected`, `on_message` and
//! `went_down`. When the upstream dies, every request in flight gets a JSON-RPC error saying so,
//! the runner starts it again and the link re-initializes and re-subscribes: sessions live on.

use super::lock;
use super::session::Session;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// The protocol revision the gateway speaks to link upstreams.
pub const UPSTREAM_PROTOCOL: &str = "2025-11-25";
/// How long the initialize handshake with an upstream may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a link stands.
#[derive(Debug, Clone)]
pub enum Readiness {
    /// Starting (or restarting) the upstream; `attempt` counts starts.
    Starting { attempt: u64 },
    /// Initialized: the upstream's InitializeResult.
    Ready(Arc<Value>),
    /// Down after `attempt`, with the reason; a restart may follow.
    Down { attempt: u64, reason: String },
}

enum Waiter {
    /// A client's request: answer goes to that session's stream.
    Client {
        session: Arc<Session>,
        downstream_id: Value,
        stream: u64,
        progress: Option<String>,
        sent: Instant,
    },
    /// The gateway's own request (initialize, discovery).
    Internal(oneshot::Sender<Result<Value, String>>),
}

#[derive(Default)]
struct State {
    next_id: u64,
    pending: HashMap<u64, Waiter>,
    /// Upstream progress token -> (session, the client's token, the request's stream).
    progress: HashMap<String, (Weak<Session>, Value, u64)>,
    sessions: HashMap<String, Weak<Session>>,
    /// URI -> ids of the sessions subscribed to it.
    subscriptions: HashMap<String, HashSet<String>>,
    /// When the last session left (for the idle reaper).
    idle_since: Option<Instant>,
}

pub struct Link {
    /// `tenant/server` (and user), for logs.
    pub label: String,
    out: Mutex<Option<mpsc::UnboundedSender<String>>>,
    state: Mutex<State>,
    ready: watch::Sender<Readiness>,
    stop: watch::Sender<bool>,
    /// Asks the runner to restart the upstream (a failed handshake).
    pub(super) restart: tokio::sync::Notify,
    /// The upstream's tools' input schemas by name (for checking 2026-07-28 `Mcp-Param-*`
    /// headers), refreshed after each handshake and on every tools list change.
    tools: Mutex<HashMap<String, Value>>,
    /// Which start of the upstream is current: answers to requests an earlier start made are
    /// dropped (a new process counts its request ids from the beginning again).
    attempt: std::sync::atomic::AtomicU64,
    subscribing: Mutex<()>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("label", &self.label).finish()
    }
}

fn rpc_error_message(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

impl Link {
    pub fn new(label: String) -> Arc<Self> {
        let (ready, _) = watch::channel(Readiness::Starting { attempt: 0 });
        let (stop, _) = watch::channel(false);
        Arc::new(Self {
            label,
            out: Mutex::new(None),
            state: Mutex::new(State {
                idle_since: Some(Instant::now()),
                ..State::default()
            }),
            ready,
            stop,
            restart: tokio::sync::Notify::new(),
            tools: Mutex::new(HashMap::new()),
            attempt: std::sync::atomic::AtomicU64::new(0),
            subscribing: Mutex::new(()),
        })
    }

    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Asks the runner to end the upstream (close stdin, SIGTERM, SIGKILL for a process).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    pub fn readiness(&self) -> Readiness {
        self.ready.borrow().clone()
    }

    /// Waits until the upstream is initialized, or fails: the error names why. Waits through a
    /// restart already under way, up to `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Arc<Value>, String> {
        let mut rx = self.ready.subscribe();
        let wait = async {
            // A Down seen before any start is an earlier failure: wait for the restart.
            let mut saw_start = false;
            loop {
                let current = rx.borrow_and_update().clone();
                match current {
                    Readiness::Ready(init) => return Ok(init),
                    Readiness::Down { reason, .. } if saw_start => return Err(reason),
                    Readiness::Down { .. } => {}
                    Readiness::Starting { .. } => saw_start = true,
                }
                if rx.changed().await.is_err() {
                    return Err("the upstream link was closed".to_owned());
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the upstream MCP server did not become ready within {}s",
                timeout.as_secs()
            )),
        }
    }

    /// The runner has a transport: messages to the upstream go to `out` from now on.
    pub fn connected(&self, out: mpsc::UnboundedSender<String>, attempt: u64) {
        self.attempt
            .store(attempt, std::sync::atomic::Ordering::Release);
        *lock(&self.out) = Some(out);
        let _ = self.ready.send(Readiness::Starting { attempt });
    }

    /// The upstream is gone: fail every request in flight and forget the transport.
    pub fn went_down(&self, attempt: u64, reason: &str) {
        *lock(&self.out) = None;
        let waiters: Vec<Waiter> = {
            let mut st = lock(&self.state);
            st.progress.clear();
            st.pending.drain().map(|(_, w)| w).collect()
        };
        let message = format!("the upstream MCP server stopped before answering: {reason}");
        for w in waiters {
            match w {
                Waiter::Client {
                    session,
                    downstream_id,
                    stream,
                    ..
                } => session.push(
                    stream,
                    &rpc_error_message(&downstream_id, -32603, &message),
                    true,
                ),
                Waiter::Internal(tx) => {
                    let _ = tx.send(Err(message.clone()));
                }
            }
        }
        let _ = self.ready.send(Readiness::Down {
            attempt,
            reason: reason.to_owned(),
        });
    }

    fn send_raw(&self, msg: &Value) -> bool {
        match &*lock(&self.out) {
            Some(tx) => tx.send(msg.to_string()).is_ok(),
            None => false,
        }
    }

    /// The gateway's own request to the upstream: its result, or the error's message.
    pub async fn internal_request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let msg = self.internal_message(method, params, timeout).await?;
        match msg.get("error") {
            Some(e) => Err(e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_owned()),
            None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// The gateway's own request to the upstream: the whole JSON-RPC response (result or
    /// error, as the upstream sent it); `Err` when there was none.
    pub async fn internal_message(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = lock(&self.state);
            st.next_id += 1;
            let id = st.next_id;
            st.pending.insert(id, Waiter::Internal(tx));
            id
        };
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if !self.send_raw(&msg) {
            lock(&self.state).pending.remove(&id);
            return Err("the upstream MCP server is not running".to_owned());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the upstream link was closed".to_owned()),
            Err(_) => {
                lock(&self.state).pending.remove(&id);
                let _ = self.send_raw(
                    &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": id, "reason": "timeout"}}),
                );
                Err(format!(
                    "{method}: no answer from the upstream MCP server within {}s",
                    timeout.as_secs()
                ))
            }
        }
    }

    /// Initializes the upstream (the runner calls this once per start) and re-subscribes the
    /// URIs sessions are subscribed to. On failure the runner restarts the upstream.
    pub async fn handshake(self: &Arc<Self>) {
        let started = self.attempt();
        let params = json!({
            "protocolVersion": UPSTREAM_PROTOCOL,
            "capabilities": {
                "sampling": {},
                "elicitation": {"form": {}, "url": {}},
                "roots": {"listChanged": true},
            },
            "clientInfo": {"name": "portcullis-gateway", "version": env!("CARGO_PKG_VERSION")},
        });
        match self
            .internal_request("initialize", params, HANDSHAKE_TIMEOUT)
            .await
        {
            Ok(result) if result.get("protocolVersion").is_some() => {
                self.send_raw(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
                let uris: Vec<String> = lock(&self.state).subscriptions.keys().cloned().collect();
                for uri in uris {
                    let _ = self.send_raw(
                        &json!({"jsonrpc": "2.0", "id": format!("resubscribe-{uri}"),
                        "method": "resources/subscribe", "params": {"uri": uri}}),
                    );
                }
                let has_tools = result
                    .get("capabilities")
                    .and_then(|c| c.get("tools"))
                    .is_some();
                // Not if this start has died meanwhile (its Down stands).
                if self.attempt() != started || lock(&self.out).is_none() {
                    return;
                }
                let _ = self.ready.send(Readiness::Ready(Arc::new(result)));
                if has_tools {
                    self.refresh_tools();
                }
            }
            Ok(_) => {
                tracing::warn!(upstream = %self.label, "upstream answered initialize without a protocol version");
                if self.attempt() == started {
                    self.restart.notify_one();
                }
            }
            Err(e) => {
                tracing::warn!(upstream = %self.label, error = %e, "upstream initialize failed");
                if self.attempt() == started {
                    self.restart.notify_one();
                }
            }
        }
    }

    /// The input schema of the upstream's tool `name`, as last listed.
    pub fn tool_schema(&self, name: &str) -> Option<Value> {
        lock(&self.tools).get(name).cloned()
    }

    /// Lists the upstream's tools (every page) in the background and keeps their schemas.
    fn refresh_tools(self: &Arc<Self>) {
        let link = self.clone();
        tokio::spawn(async move {
            let Ok(listed) = link
                .list_all("tools/list", "tools", HANDSHAKE_TIMEOUT)
                .await
            else {
                return;
            };
            let tools = listed
                .iter()
                .filter_map(|t| {
                    let name = t.get("name").and_then(Value::as_str)?;
                    Some((name.to_owned(), t.get("inputSchema")?.clone()))
                })
                .collect();
            *lock(&link.tools) = tools;
        });
    }

    /// Every item of a paginated list (`tools/list` → `tools`…), following `nextCursor` for at
    /// most 50 pages.
    pub async fn list_all(
        &self,
        method: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..50 {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let page = self
                .internal_request(method, params, timeout)
                .await
                .map_err(|e| format!("{method}: {e}"))?;
            if let Some(list) = page.get(key).and_then(Value::as_array) {
                items.extend(list.iter().cloned());
            }
            cursor = page
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok(items)
    }

    pub fn attach(&self, session: &Arc<Session>) {
        let mut st = lock(&self.state);
        st.sessions
            .insert(session.id.clone(), Arc::downgrade(session));
        st.idle_since = None;
    }

    /// A session ended: its requests are cancelled upstream, its subscriptions dropped (and
    /// unsubscribed upstream when it was the last subscriber).
    pub fn detach(&self, session_id: &str) {
        let (cancel, unsubscribe) = {
            let mut st = lock(&self.state);
            st.sessions.remove(session_id);
            if st.sessions.is_empty() {
                st.idle_since = Some(Instant::now());
            }
            let cancel: Vec<u64> = st
                .pending
                .iter()
                .filter(|(_, w)| matches!(w, Waiter::Client { session, .. } if session.id == session_id))
                .map(|(id, _)| *id)
                .collect();
            for id in &cancel {
                st.pending.remove(id);
            }
            st.progress
                .retain(|_, (s, _, _)| s.upgrade().is_some_and(|s| s.id != session_id));
            let mut unsubscribe = Vec::new();
            st.subscriptions.retain(|uri, subs| {
                subs.remove(session_id);
                if subs.is_empty() {
                    unsubscribe.push(uri.clone());
                    false
                } else {
                    true
                }
            });
            (cancel, unsubscribe)
        };
        for id in cancel {
            self.send_raw(
                &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": id, "reason": "the client session ended"}}),
            );
        }
        for uri in unsubscribe {
            self.send_raw(
                &json!({"jsonrpc": "2.0", "id": format!("unsubscribe-{uri}"),
                "method": "resources/unsubscribe", "params": {"uri": uri}}),
            );
        }
    }

    /// How long the link has had no session and no request in flight (for the reaper).
    pub fn idle_for(&self) -> Option<Duration> {
        let st = lock(&self.state);
        if !st.pending.is_empty() {
            return None;
        }
        st.idle_since.map(|t| t.elapsed())
    }

    /// Marks the link used now (a stateless request, or a new session about to attach), so the
    /// reaper does not stop it under a caller.
    pub fn touch(&self) {
        let mut st = lock(&self.state);
        if st.idle_since.is_some() {
            st.idle_since = Some(Instant::now());
        }
    }

    fn is_ready(&self) -> bool {
        matches!(*self.ready.borrow(), Readiness::Ready(_))
    }

    /// The current start of the upstream (see `attempt`).
    pub fn attempt(&self) -> u64 {
        self.attempt.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Forwards a client's request: fresh upstream id and progress token, answer routed back to
    /// `stream` of `session`. Returns false when the upstream is not running (the caller answers).
    pub fn request(&self, session: &Arc<Session>, stream: u64, mut msg: Value) -> bool {
        // Nothing but the handshake reaches an upstream before it is initialized.
        if !self.is_ready() {
            return false;
        }
        let downstream_id = msg.get("id").cloned().unwrap_or(Value::Null);
        let id = {
            let mut st = lock(&self.state);
            st.next_id += 1;
            let id = st.next_id;
            let mut progress = None;
            if let Some(meta) = msg
                .get_mut("params")
                .and_then(|p| p.get_mut("_meta"))
                .and_then(Value::as_object_mut)
            {
                if let Some(token) = meta.get("progressToken").cloned() {
                    let upstream_token = format!("p{id}");
                    meta.insert("progressToken".into(), json!(upstream_token));
                    st.progress.insert(
                        upstream_token.clone(),
                        (Arc::downgrade(session), token, stream),
                    );
                    progress = Some(upstream_token);
                }
            }
            if st.idle_since.is_some() {
                st.idle_since = Some(Instant::now());
            }
            st.pending.insert(
                id,
                Waiter::Client {
                    session: session.clone(),
                    downstream_id,
                    stream,
                    progress,
                    sent: Instant::now(),
                },
            );
            id
        };
        msg["id"] = json!(id);
        if self.send_raw(&msg) {
            true
        } else {
            let mut st = lock(&self.state);
            if let Some(Waiter::Client {
                progress: Some(p), ..
            }) = st.pending.remove(&id)
            {
                st.progress.remove(&p);
            }
            false
        }
    }

    /// Forwards a client's notification, mapping the ids it names. A cancelled request is
    /// forgotten here at once (the upstream will not answer it): its stream ends with a
    /// "request cancelled" error, which the client ignores as it must any late answer.
    pub fn notify_from(&self, session: &Session, mut msg: Value) {
        if msg.get("method").and_then(Value::as_str) == Some("notifications/cancelled") {
            let Some(client_id) = msg.pointer("/params/requestId").cloned() else {
                return;
            };
            let found = {
                let mut st = lock(&self.state);
                let upstream = st.pending.iter().find_map(|(id, w)| match w {
                    Waiter::Client {
                        session: s,
                        downstream_id,
                        ..
                    } if s.id == session.id && *downstream_id == client_id => Some(*id),
                    _ => None,
                });
                upstream.and_then(|id| st.pending.remove(&id).map(|w| (id, w)))
            };
            // A request the link no longer knows (answered already): nothing to cancel.
            let Some((upstream, waiter)) = found else {
                return;
            };
            msg["params"]["requestId"] = json!(upstream);
            self.send_raw(&msg);
            if let Waiter::Client {
                session,
                downstream_id,
                stream,
                progress,
                ..
            } = waiter
            {
                if let Some(p) = progress {
                    lock(&self.state).progress.remove(&p);
                }
                session.push(
                    stream,
                    &rpc_error_message(&downstream_id, -32800, "request cancelled by the client"),
                    true,
                );
            }
            return;
        }
        self.send_raw(&msg);
    }

    /// Forwards a client's response to a request the upstream made.
    /// Forwards a client's response to a request the upstream made, unless that request came
    /// from an earlier start of the upstream (its id may name another request now).
    pub fn respond(&self, mut msg: Value, (upstream_id, attempt): (Value, u64)) {
        if attempt != self.attempt() {
            return;
        }
        msg["id"] = upstream_id;
        self.send_raw(&msg);
    }

    pub fn subscribe(&self, session_id: &str, uri: &str) {
        lock(&self.state)
            .subscriptions
            .entry(uri.to_owned())
            .or_default()
            .insert(session_id.to_owned());
    }

    /// Held across deciding and sending a subscribe or unsubscribe (see session.rs).
    pub fn subscription_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.subscribing)
    }

    /// Subscribes the upstream to `uri` (its answer is not awaited).
    pub fn subscribe_upstream(&self, uri: &str) {
        self.send_raw(&json!({"jsonrpc": "2.0", "id": format!("subscribe-{uri}"),
            "method": "resources/subscribe", "params": {"uri": uri}}));
    }

    /// Drops a session's subscription; true when no session is subscribed to `uri` any more.
    pub fn unsubscribe(&self, session_id: &str, uri: &str) -> bool {
        let mut st = lock(&self.state);
        match st.subscriptions.get_mut(uri) {
            Some(subs) => {
                subs.remove(session_id);
                if subs.is_empty() {
                    st.subscriptions.remove(uri);
                    true
                } else {
                    false
                }
            }
            None => true,
        }
    }

    /// Answers requests that have waited longer than `limit` with an error, and cancels them
    /// upstream.
    pub fn expire(&self, limit: Duration) {
        let expired: Vec<(u64, Waiter)> = {
            let mut st = lock(&self.state);
            let ids: Vec<u64> = st
                .pending
                .iter()
                .filter(|(_, w)| matches!(w, Waiter::Client { sent, .. } if sent.elapsed() > limit))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| st.pending.remove(&id).map(|w| (id, w)))
                .collect()
        };
        for (id, w) in expired {
            if let Waiter::Client {
                session,
                downstream_id,
                stream,
                progress,
                ..
            } = w
            {
                if let Some(p) = progress {
                    lock(&self.state).progress.remove(&p);
                }
                session.push(
                    stream,
                    &rpc_error_message(
                        &downstream_id,
                        -32603,
                        &format!(
                            "the upstream MCP server did not answer within {}s",
                            limit.as_secs()
                        ),
                    ),
                    true,
                );
                self.send_raw(
                    &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": id, "reason": "timeout"}}),
                );
            }
        }
    }

    /// The session (and its stream) a message the upstream started belongs to: the newest
    /// request in flight.
    fn current_target(st: &State) -> Option<(Arc<Session>, u64)> {
        st.pending
            .iter()
            .filter_map(|(id, w)| match w {
                Waiter::Client {
                    session, stream, ..
                } if !session.is_closed() => Some((*id, session.clone(), *stream)),
                _ => None,
            })
            .max_by_key(|(id, _, _)| *id)
            .map(|(_, s, stream)| (s, stream))
    }

    fn live_sessions(st: &State) -> Vec<Arc<Session>> {
        st.sessions.values().filter_map(Weak::upgrade).collect()
    }

    /// A message from the upstream.
    pub fn on_message(self: &Arc<Self>, msg: Value) {
        if msg.get("method").and_then(Value::as_str) == Some("notifications/tools/list_changed") {
            self.refresh_tools();
        }
        self.route(msg);
    }

    fn route(&self, msg: Value) {
        let method = msg.get("method").and_then(Value::as_str).map(str::to_owned);
        let id = msg.get("id").cloned();
        match (method, id) {
            // A response to one of our requests.
            (None, Some(id)) => {
                let Some(n) = id.as_u64() else {
                    // Answers to fire-and-forget requests (re-subscribe) carry string ids.
                    return;
                };
                let waiter = lock(&self.state).pending.remove(&n);
                match waiter {
                    Some(Waiter::Client {
                        session,
                        downstream_id,
                        stream,
                        progress,
                        ..
                    }) => {
                        if let Some(p) = progress {
                            lock(&self.state).progress.remove(&p);
                        }
                        let mut msg = msg;
                        msg["id"] = downstream_id;
                        session.push(stream, &msg, true);
                    }
                    Some(Waiter::Internal(tx)) => {
                        // The whole response; `internal_request` reads it.
                        let _ = tx.send(Ok(msg));
                    }
                    None => {} // late answer to a cancelled or expired request
                }
            }
            // A request the upstream makes of the client (sampling, elicitation, roots, ping).
            (Some(method), Some(upstream_id)) => {
                let target = Self::current_target(&lock(&self.state));
                match target {
                    Some((session, stream)) => {
                        session.server_request(stream, msg, (upstream_id, self.attempt()))
                    }
                    None if method == "ping" => {
                        self.send_raw(&json!({"jsonrpc": "2.0", "id": upstream_id, "result": {}}));
                    }
                    None => {
                        self.send_raw(&rpc_error_message(
                            &upstream_id,
                            -32603,
                            "no client request is in flight to route this request to",
                        ));
                    }
                }
            }
            (Some(method), None) => self.route_notification(&method, msg),
            (None, None) => {
                tracing::debug!(upstream = %self.label, "upstream sent a message that is neither request, response nor notification")
            }
        }
    }

    fn route_notification(&self, method: &str, mut msg: Value) {
        let st = lock(&self.state);
        match method {
            "notifications/progress" => {
                let token = msg.pointer("/params/progressToken").and_then(|t| {
                    t.as_str()
                        .map(str::to_owned)
                        .or_else(|| t.as_u64().map(|n| n.to_string()))
                });
                let Some((session, original, stream)) = token
                    .and_then(|t| st.progress.get(&t).cloned())
                    .and_then(|(s, o, stream)| s.upgrade().map(|s| (s, o, stream)))
                else {
                    return; // progress for a request that is over
                };
                drop(st);
                msg["params"]["progressToken"] = original;
                session.push(stream, &msg, false);
            }
            "notifications/resources/updated" => {
                let uri = msg.pointer("/params/uri").and_then(Value::as_str);
                let ids: Vec<String> = uri
                    .and_then(|u| st.subscriptions.get(u))
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                let sessions: Vec<Arc<Session>> = ids
                    .iter()
                    .filter_map(|id| st.sessions.get(id).and_then(Weak::upgrade))
                    .collect();
                drop(st);
                for s in sessions {
                    s.push(0, &msg, false);
                }
            }
            "notifications/cancelled" => {
                // The upstream gave up on a request it made of a client.
                let sessions = Self::live_sessions(&st);
                drop(st);
                if let Some(upstream_id) = msg.pointer("/params/requestId").cloned() {
                    for s in sessions {
                        if let Some(downstream) = s.take_server_request_by_upstream(&upstream_id) {
                            let mut m = msg.clone();
                            m["params"]["requestId"] = downstream;
                            s.push(0, &m, false);
                        }
                    }
                }
            }
            "notifications/message" => {
                // A log message: to the session whose request is running, else to every session.
                match Self::current_target(&st) {
                    Some((s, stream)) => {
                        drop(st);
                        s.push(stream, &msg, false);
                    }
                    None => {
                        let sessions = Self::live_sessions(&st);
                        drop(st);
                        for s in sessions {
                            s.push(0, &msg, false);
                        }
                    }
                }
            }
            _ => {
                // list_changed and anything else server-wide: every session.
                let sessions = Self::live_sessions(&st);
                drop(st);
                for s in sessions {
                    s.push(0, &msg, false);
                }
            }
        }
    }
}

/// Restart pacing for a link's runner: 0.5 s doubling to 30 s between failed starts, from
/// scratch after a start that lasted a minute.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Waits before the next start (or until the link is told to stop).
    pub async fn wait(&mut self, started: Instant, stop: &mut watch::Receiver<bool>) {
        if started.elapsed() > Duration::from_secs(60) {
            self.failures = 0;
        }
        let delay =
            Duration::from_millis(500u64 << self.failures.min(6)).min(Duration::from_secs(30));
        self.failures += 1;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {}
        }
    }
}
