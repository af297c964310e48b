//! The stateless 2026-07-28 era in front of stdio and SSE upstreams (which speak 2025-11-25).
//!
//! A request whose `MCP-Protocol-Version` is 2026-07-28 needs no session: the gateway answers
//! `server/discover` from the upstream's InitializeResult, and forwards every other request over
//! the server's link as a one-request session of its own, adding what the modern era requires
//! (`resultType`; `ttlMs` and `cacheScope` on list and read results; the server's identity in
//! `_meta`). Progress (and log messages, when the client asked for a log level) stream back on
//! the request's own SSE stream.
//!
//! Requests the upstream makes of the client in the middle of a call (sampling, elicitation,
//! roots) become an `input_required` result: the gateway parks the upstream call, hands the
//! client the request under a key, and an unguessable `requestState` bound to the user and the
//! server. The client's retry, carrying `inputResponses` and that `requestState`, answers the
//! upstream and picks the parked call up where it stopped. A parked call nobody resumes is
//! cancelled after `PARK_TIMEOUT`. Closing the response stream (or dropping the connection)
//! cancels the call upstream, as the era specifies.
//!
//! `subscriptions/listen` holds a stream open that carries the list changes and resource
//! updates the client opted into, each tagged with the subscription id.

use super::link::HANDSHAKE_TIMEOUT;
use super::lock;
use super::rpc_error;
use super::session::{
    accepts_sse, json_response, random_id, rpc_err_with_id, Hub, Session, Target,
};
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const MODERN: &str = "2026-07-28";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPS: &str = "io.modelcontextprotocol/clientCapabilities";
const META_INFO: &str = "io.modelcontextprotocol/clientInfo";
const META_LOG: &str = "io.modelcontextprotocol/logLevel";
const META_SERVER: &str = "io.modelcontextprotocol/serverInfo";
const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";
/// How long a call waiting for the client's input is kept.
const PARK_TIMEOUT: Duration = Duration::from_secs(300);
/// Calls one user may have waiting for input on one server; beyond it the oldest is cancelled.
const MAX_PARKED_PER_USER: usize = 64;

/// Methods of the 2026-07-28 era the gateway forwards.
const FORWARDED: &[&str] = &[
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
];
/// Results that carry the caching fields.
const CACHEABLE: &[&str] = &[
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
];
/// Methods whose result may be `input_required`.
const MAY_ASK: &[&str] = &["tools/call", "prompts/get", "resources/read"];

/// A call waiting for the client's input.
struct ParkedCall {
    call: Call,
    created: Instant,
}

/// The calls waiting for input, by `requestState`.
#[derive(Default, Clone)]
pub struct Parked(Arc<Mutex<HashMap<String, ParkedCall>>>);

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked").finish()
    }
}

impl Parked {
    /// Cancels calls nobody resumed in time.
    pub fn sweep(&self) {
        let expired: Vec<ParkedCall> = {
            let mut map = lock(&self.0);
            let keys: Vec<String> = map
                .iter()
                .filter(|(_, p)| p.created.elapsed() > PARK_TIMEOUT)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for p in expired {
            p.call.session.close();
        }
    }

    fn clear(&self) {
        let all: Vec<ParkedCall> = lock(&self.0).drain().map(|(_, p)| p).collect();
        for p in all {
            p.call.session.close();
        }
    }
}

/// One stateless call in progress: its one-request session and where its reading stands.
struct Call {
    session: Arc<Session>,
    stream: u64,
    after: u64,
    method: String,
    client_id: Value,
    capabilities: Value,
    log: bool,
    server_info: Value,
    /// Input requests handed to the client and not answered yet: key -> {method, params}.
    inputs: Map<String, Value>,
    /// Steps read ahead (notifications that came with input requests).
    queue: std::collections::VecDeque<Step>,
}

/// How long to wait for more requests from the upstream once it has asked for one, so that
/// requests it makes together reach the client together.
const ASK_GRACE: Duration = Duration::from_millis(50);

/// What the next step of a call produced.
enum Step {
    /// A notification for the client's SSE stream.
    Note(Value),
    /// The last message, with its HTTP status.
    Last(Value, StatusCode),
}

fn modern_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    rpc_err_with_id(status, id, code, message)
}

/// HTTP status for a JSON-RPC error code in the 2026-07-28 era.
fn status_for(code: i64) -> StatusCode {
    match code {
        -32601 => StatusCode::NOT_FOUND,
        -32700 | -32600 | -32602 | -32020 | -32021 | -32022 => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// Whether `headers` make this a 2026-07-28 request.
pub fn is_modern(headers: &HeaderMap) -> bool {
    headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        == Some(MODERN)
}

impl Call {
    /// Reads the call's stream to the next thing for the client.
    async fn step(&mut self, parked: &Parked, shutdown: &mut watch::Receiver<bool>) -> Step {
        if let Some(step) = self.queue.pop_front() {
            return step;
        }
        if !self.inputs.is_empty() {
            // The client's retry left input requests unanswered: ask again.
            return self.park(parked);
        }
        loop {
            let Some((seq, data, last)) = self
                .session
                .next_event(self.stream, self.after, shutdown)
                .await
            else {
                return Step::Last(
                    json!({"jsonrpc": "2.0", "id": self.client_id,
                        "error": {"code": -32603, "message": "the gateway is shutting down"}}),
                    StatusCode::SERVICE_UNAVAILABLE,
                );
            };
            self.after = seq;
            let Ok(msg) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            if last {
                return self.finish(msg);
            }
            if msg.get("id").is_some() {
                // A request of the upstream's: an input request for the client, if it may
                // have one. Requests made together are collected for one input_required.
                if self.ask(&msg) {
                    self.gather(shutdown).await;
                    return self.park(parked);
                }
                continue;
            }
            if let Some(note) = self.note(msg) {
                return note;
            }
        }
    }

    /// A notification the client gets on this request's stream, if any.
    fn note(&self, msg: Value) -> Option<Step> {
        match msg.get("method").and_then(Value::as_str) {
            Some("notifications/progress") => Some(Step::Note(msg)),
            Some("notifications/message") if self.log => Some(Step::Note(msg)),
            _ => None, // not related to this request in the 2026-07-28 sense
        }
    }

    /// After a first input request: what else the upstream sends within `ASK_GRACE`.
    async fn gather(&mut self, shutdown: &mut watch::Receiver<bool>) {
        let deadline = tokio::time::Instant::now() + ASK_GRACE;
        while let Ok(Some((seq, data, last))) = tokio::time::timeout_at(
            deadline,
            self.session.next_event(self.stream, self.after, shutdown),
        )
        .await
        {
            if last {
                // Answered without waiting for the client after all: leave it to be read.
                break;
            }
            self.after = seq;
            let Ok(msg) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            if msg.get("id").is_some() {
                self.ask(&msg);
            } else if let Some(note) = self.note(msg) {
                self.queue.push_back(note);
            }
        }
    }

    /// The upstream asks the client for something: an input request to hand over (true), or
    /// refused upstream at once when the client cannot answer it (false).
    fn ask(&mut self, msg: &Value) -> bool {
        let key = msg.get("id").cloned().unwrap_or(Value::Null);
        let method = msg
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let needs = match method {
            "sampling/createMessage" => Some("sampling"),
            "elicitation/create" => Some("elicitation"),
            "roots/list" => Some("roots"),
            _ => None,
        };
        let refusal = match needs {
            _ if method == "ping" => Some(json!({"jsonrpc": "2.0", "result": {}})),
            Some(_) if !MAY_ASK.contains(&self.method.as_str()) => Some(json!({"jsonrpc": "2.0",
                "error": {"code": -32601, "message": format!("{method} cannot be asked of the client on {}", self.method)}})),
            // MissingRequiredClientCapability: the client did not declare what this needs.
            Some(cap) if self.capabilities.get(cap).is_none() => Some(json!({"jsonrpc": "2.0",
                "error": {"code": -32021, "message": format!("the client did not declare the {cap} capability"),
                          "data": {"requiredCapabilities": {cap: {}}}}})),
            Some(_) => None,
            None => Some(json!({"jsonrpc": "2.0",
                "error": {"code": -32601, "message": format!("{method} is not a request a client answers")}})),
        };
        match refusal {
            Some(reply) => {
                if let Some(upstream_id) = self.session.take_server_request(&key) {
                    self.session.link.respond(reply, upstream_id);
                }
                false
            }
            None => {
                let key = key.as_str().unwrap_or_default().to_owned();
                self.inputs.insert(
                    key,
                    json!({"method": method, "params": msg.get("params").cloned().unwrap_or(json!({}))}),
                );
                true
            }
        }
    }

    /// Parks the call and returns the `input_required` result naming every open input request.
    fn park(&mut self, parked: &Parked) -> Step {
        let state = random_id();
        let result = json!({
            "resultType": "input_required",
            "inputRequests": self.inputs.clone(),
            "requestState": state,
        });
        let last = json!({"jsonrpc": "2.0", "id": self.client_id, "result": result});
        let stand_in = self.placeholder();
        let call = std::mem::replace(self, stand_in);
        let evicted = {
            let mut map = lock(&parked.0);
            let same = |p: &ParkedCall| {
                let (a, b) = (&p.call.session, &call.session);
                a.tenant_id == b.tenant_id && a.user_id == b.user_id && a.server == b.server
            };
            let oldest = (map.values().filter(|p| same(p)).count() >= MAX_PARKED_PER_USER)
                .then(|| {
                    map.iter()
                        .filter(|(_, p)| same(p))
                        .min_by_key(|(_, p)| p.created)
                        .map(|(k, _)| k.clone())
                })
                .flatten();
            let evicted = oldest.and_then(|k| map.remove(&k));
            map.insert(
                state,
                ParkedCall {
                    call,
                    created: Instant::now(),
                },
            );
            evicted
        };
        if let Some(old) = evicted {
            old.call.session.close();
        }
        Step::Last(last, StatusCode::OK)
    }

    /// A stand-in left behind when the real call is parked (it is never read again).
    fn placeholder(&self) -> Call {
        Call {
            session: self.session.clone(),
            stream: self.stream,
            after: self.after,
            method: String::new(),
            client_id: Value::Null,
            capabilities: Value::Null,
            log: false,
            server_info: Value::Null,
            inputs: Map::new(),
            queue: std::collections::VecDeque::new(),
        }
    }

    /// The upstream's response, dressed for the 2026-07-28 era.
    fn finish(&mut self, mut msg: Value) -> Step {
        msg["id"] = self.client_id.clone();
        if let Some(code) = msg.pointer("/error/code").and_then(Value::as_i64) {
            // 2026-07-28: a resource that does not exist is -32602 (it was -32002).
            let code = if code == -32002 && self.method == "resources/read" {
                msg["error"]["code"] = json!(-32602);
                -32602
            } else {
                code
            };
            return Step::Last(msg, status_for(code));
        }
        if let Some(result) = msg.get_mut("result").and_then(Value::as_object_mut) {
            result
                .entry("resultType")
                .or_insert_with(|| json!("complete"));
            if CACHEABLE.contains(&self.method.as_str()) {
                result.entry("ttlMs").or_insert_with(|| json!(0));
                result
                    .entry("cacheScope")
                    .or_insert_with(|| json!("private"));
            }
            let meta = result.entry("_meta").or_insert_with(|| json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.insert(META_SERVER.into(), self.server_info.clone());
            }
        }
        Step::Last(msg, StatusCode::OK)
    }
}

/// Ends a call's one-request session when its answer is dropped before the end (the client
/// closed the stream: cancellation) or after it.
struct CallGuard {
    session: Option<Arc<Session>>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            s.close();
        }
    }
}

impl Hub {
    /// A 2026-07-28 request to a stdio or SSE server.
    pub(super) async fn modern(
        &self,
        t: Target<'_>,
        client: &reqwest::Client,
        msg: Value,
        headers: &HeaderMap,
    ) -> Response {
        let Some(method) = msg.get("method").and_then(Value::as_str).map(str::to_owned) else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "the 2026-07-28 era takes requests only",
            );
        };
        let Some(id) = msg.get("id").cloned() else {
            // No client notification is defined for HTTP in this era: accepted, nothing to do.
            return StatusCode::ACCEPTED.into_response();
        };
        // The routing headers are required, and must match the body (mod.rs checked the match).
        let needs_name = ["tools/call", "resources/read", "prompts/get"].contains(&method.as_str());
        if headers.get("mcp-method").is_none() || (needs_name && headers.get("mcp-name").is_none())
        {
            return modern_error(
                StatusCode::BAD_REQUEST,
                &id,
                -32020,
                "header mismatch: Mcp-Method (and Mcp-Name for this method) are required",
            );
        }
        let meta = msg.pointer("/params/_meta").cloned().unwrap_or(Value::Null);
        match meta.get(META_VERSION).and_then(Value::as_str) {
            Some(MODERN) => {}
            Some(_) => {
                return modern_error(
                    StatusCode::BAD_REQUEST,
                    &id,
                    -32020,
                    "header mismatch: MCP-Protocol-Version does not match _meta",
                )
            }
            None => {
                return modern_error(
                    StatusCode::BAD_REQUEST,
                    &id,
                    -32602,
                    "params._meta needs io.modelcontextprotocol/protocolVersion",
                )
            }
        }
        let Some(capabilities) = meta.get(META_CAPS).filter(|c| c.is_object()).cloned() else {
            return modern_error(
                StatusCode::BAD_REQUEST,
                &id,
                -32602,
                "params._meta needs io.modelcontextprotocol/clientCapabilities",
            );
        };
        let (link, _) = self.link_for(&t, client, true);
        if method == "tools/call" {
            let name = msg
                .pointer("/params/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let args = msg
                .pointer("/params/arguments")
                .cloned()
                .unwrap_or(json!({}));
            if let Some(schema) = link.tool_schema(name) {
                if let Err(why) = check_param_headers(&schema, &args, headers) {
                    return modern_error(
                        StatusCode::BAD_REQUEST,
                        &id,
                        -32020,
                        &format!("header mismatch: {why}"),
                    );
                }
            }
        }
        let init = match link.wait_ready(HANDSHAKE_TIMEOUT).await {
            Ok(init) => init,
            Err(reason) => {
                return modern_error(
                    StatusCode::OK,
                    &id,
                    -32603,
                    &format!("the upstream MCP server is unavailable: {reason}"),
                )
            }
        };
        let server_info = init.get("serverInfo").cloned().unwrap_or(Value::Null);
        let sse = accepts_sse(headers);
        match method.as_str() {
            "server/discover" => {
                let mut result = json!({
                    "resultType": "complete",
                    "supportedVersions": super::KNOWN_VERSIONS,
                    "capabilities": init.get("capabilities").cloned().unwrap_or(json!({})),
                    "ttlMs": 0,
                    "cacheScope": "private",
                    "_meta": { META_SERVER: server_info },
                });
                if let Some(i) = init.get("instructions") {
                    result["instructions"] = i.clone();
                }
                json_response(
                    StatusCode::OK,
                    &json!({"jsonrpc": "2.0", "id": id, "result": result}),
                )
            }
            "subscriptions/listen" => self.listen(t, link, msg, id, init.as_ref(), sse),
            m if FORWARDED.contains(&m) => {
                let state = msg
                    .pointer("/params/requestState")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let call = match state {
                    Some(state) => match self.resume(&t, &state, &msg, &id, &method) {
                        Ok(call) => call,
                        Err(res) => return *res,
                    },
                    None => {
                        let session = Session::new(&t, MODERN, link.clone(), false);
                        let stream = session.new_stream();
                        session.filter_stream(stream, t.filter.clone());
                        let mut up = msg.clone();
                        if let Some(m) = up
                            .pointer_mut("/params/_meta")
                            .and_then(Value::as_object_mut)
                        {
                            // The era's own keys are for the gateway; the upstream speaks 2025-11-25.
                            for k in [META_VERSION, META_CAPS, META_INFO, META_LOG] {
                                m.remove(k);
                            }
                        }
                        if !link.request(&session, stream, up) {
                            return modern_error(
                                StatusCode::OK,
                                &id,
                                -32603,
                                "the upstream MCP server is restarting; try again",
                            );
                        }
                        Call {
                            session,
                            stream,
                            after: 0,
                            method: method.clone(),
                            client_id: id.clone(),
                            capabilities,
                            log: meta.get(META_LOG).is_some(),
                            server_info,
                            inputs: Map::new(),
                            queue: std::collections::VecDeque::new(),
                        }
                    }
                };
                self.answer_call(call, sse).await
            }
            _ => modern_error(
                StatusCode::NOT_FOUND,
                &id,
                -32601,
                &format!("method not found in the 2026-07-28 era: {method}"),
            ),
        }
    }

    /// Picks a parked call up: the client's `inputResponses` go to the upstream.
    fn resume(
        &self,
        t: &Target<'_>,
        state: &str,
        msg: &Value,
        id: &Value,
        method: &str,
    ) -> Result<Call, Box<Response>> {
        let parked = lock(&self.parked.0).remove(state);
        let Some(ParkedCall { mut call, .. }) = parked else {
            return Err(Box::new(modern_error(
                StatusCode::BAD_REQUEST,
                id,
                -32602,
                "unknown or expired requestState",
            )));
        };
        let s = &call.session;
        if s.tenant_id != t.tenant_id
            || s.user_id != t.user_id
            || s.server != t.server
            || call.method != method
        {
            // Not this caller's call: put it back untouched.
            lock(&self.parked.0).insert(
                state.to_owned(),
                ParkedCall {
                    call,
                    created: Instant::now(),
                },
            );
            return Err(Box::new(modern_error(
                StatusCode::BAD_REQUEST,
                id,
                -32602,
                "unknown or expired requestState",
            )));
        }
        let responses = msg
            .pointer("/params/inputResponses")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (key, response) in responses {
            if call.inputs.remove(&key).is_none() {
                continue; // not a request this call is waiting on
            }
            if let Some(upstream_id) = s.take_server_request(&json!(key)) {
                s.link
                    .respond(json!({"jsonrpc": "2.0", "result": response}), upstream_id);
            }
        }
        call.client_id = id.clone();
        Ok(call)
    }

    async fn answer_call(&self, mut call: Call, sse: bool) -> Response {
        let mut guard = CallGuard {
            session: Some(call.session.clone()),
        };
        let mut shutdown = self.shutdown.subscribe();
        let parked = self.parked.clone();
        let first = call.step(&parked, &mut shutdown).await;
        let first = match first {
            Step::Last(msg, status) => {
                if is_input_required(&msg) {
                    guard.session = None; // parked: the session lives on
                }
                return json_response(status, &msg);
            }
            Step::Note(n) if sse => n,
            Step::Note(_) => {
                // A JSON-only client: notifications cannot reach it; read on to the answer.
                loop {
                    match call.step(&parked, &mut shutdown).await {
                        Step::Last(msg, status) => {
                            if is_input_required(&msg) {
                                guard.session = None;
                            }
                            return json_response(status, &msg);
                        }
                        Step::Note(_) => {}
                    }
                }
            }
        };
        struct State {
            call: Call,
            parked: Parked,
            shutdown: watch::Receiver<bool>,
            guard: CallGuard,
            first: Option<Value>,
            done: bool,
        }
        let state = State {
            call,
            parked,
            shutdown,
            guard,
            first: Some(first),
            done: false,
        };
        let body = futures_util::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            let msg = match st.first.take() {
                Some(m) => m,
                None => match st.call.step(&st.parked, &mut st.shutdown).await {
                    Step::Note(n) => n,
                    Step::Last(msg, _) => {
                        st.done = true;
                        if is_input_required(&msg) {
                            st.guard.session = None;
                        }
                        msg
                    }
                },
            };
            let frame = Bytes::from(format!("event: message\ndata: {msg}\n\n"));
            Some((Ok::<_, std::convert::Infallible>(frame), st))
        });
        sse_response(Body::from_stream(body))
    }

    /// `subscriptions/listen`: a long-lived stream of what the client opted into.
    fn listen(
        &self,
        t: Target<'_>,
        link: Arc<super::link::Link>,
        msg: Value,
        id: Value,
        init: &Value,
        sse: bool,
    ) -> Response {
        if !sse {
            return modern_error(
                StatusCode::NOT_ACCEPTABLE,
                &id,
                -32600,
                "subscriptions/listen answers with an SSE stream: accept text/event-stream",
            );
        }
        let wanted = msg
            .pointer("/params/notifications")
            .cloned()
            .unwrap_or(json!({}));
        let caps = init.get("capabilities").cloned().unwrap_or(json!({}));
        let can = |path: &str| caps.pointer(path).and_then(Value::as_bool) == Some(true);
        let on = |k: &str| wanted.get(k).and_then(Value::as_bool) == Some(true);
        let mut honored = Map::new();
        for (key, cap) in [
            ("toolsListChanged", "/tools/listChanged"),
            ("promptsListChanged", "/prompts/listChanged"),
            ("resourcesListChanged", "/resources/listChanged"),
        ] {
            if on(key) && can(cap) {
                honored.insert(key.into(), json!(true));
            }
        }
        let uris: Vec<String> = if can("/resources/subscribe") {
            wanted
                .get("resourceSubscriptions")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        if !uris.is_empty() {
            honored.insert("resourceSubscriptions".into(), json!(uris));
        }
        let session = Session::new(&t, MODERN, link.clone(), false);
        link.attach(&session);
        lock(&self.listeners).push(Arc::downgrade(&session));
        for uri in &uris {
            link.subscribe(&session.id, uri);
            link.subscribe_upstream(uri);
        }
        let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
            "params": {"_meta": {META_SUBSCRIPTION: id}, "notifications": honored}});
        struct State {
            session: Arc<Session>,
            _guard: CallGuard,
            shutdown: watch::Receiver<bool>,
            ack: Option<Value>,
            after: u64,
            honored: Map<String, Value>,
            id: Value,
        }
        let state = State {
            session: session.clone(),
            _guard: CallGuard {
                session: Some(session),
            },
            shutdown: self.shutdown.subscribe(),
            ack: Some(ack),
            after: 0,
            honored,
            id,
        };
        let body = futures_util::stream::unfold(state, |mut st| async move {
            if let Some(ack) = st.ack.take() {
                let frame = Bytes::from(format!("event: message\ndata: {ack}\n\n"));
                return Some((Ok::<_, std::convert::Infallible>(frame), st));
            }
            loop {
                let (seq, data, _) = st.session.next_event(0, st.after, &mut st.shutdown).await?;
                st.after = seq;
                let Ok(mut msg) = serde_json::from_str::<Value>(&data) else {
                    continue;
                };
                let method = msg
                    .get("method")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let wanted = match method {
                    "notifications/tools/list_changed" => {
                        st.honored.contains_key("toolsListChanged")
                    }
                    "notifications/prompts/list_changed" => {
                        st.honored.contains_key("promptsListChanged")
                    }
                    "notifications/resources/list_changed" => {
                        st.honored.contains_key("resourcesListChanged")
                    }
                    "notifications/resources/updated" => true, // routed by subscription already
                    _ => false,
                };
                if !wanted {
                    continue;
                }
                if !msg.get("params").is_some_and(Value::is_object) {
                    msg["params"] = json!({});
                }
                if !msg["params"].get("_meta").is_some_and(Value::is_object) {
                    msg["params"]["_meta"] = json!({});
                }
                msg["params"]["_meta"][META_SUBSCRIPTION] = st.id.clone();
                let frame = Bytes::from(format!("event: message\ndata: {msg}\n\n"));
                return Some((Ok(frame), st));
            }
        });
        sse_response(Body::from_stream(body))
    }

    /// Parked calls: expire the old ones (from the sweeper) or all (shutdown).
    pub(super) fn sweep_parked(&self, all: bool) {
        if all {
            self.parked.clear();
        } else {
            self.parked.sweep();
        }
    }
}

/// 2026-07-28: tool arguments whose schema names an `x-mcp-header` are mirrored in
/// `Mcp-Param-{Name}` (plain, or `=?base64?…?=`); the header must be there when the argument is,
/// decode cleanly, and equal the argument.
fn check_param_headers(schema: &Value, args: &Value, headers: &HeaderMap) -> Result<(), String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (param, prop) in props {
        let Some(header) = prop.get("x-mcp-header").and_then(Value::as_str) else {
            continue;
        };
        let name = format!("mcp-param-{}", header.to_ascii_lowercase());
        let sent = headers.get(name.as_str());
        let value = args.get(param).filter(|v| !v.is_null());
        match (sent, value) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(format!(
                    "Mcp-Param-{header} is missing (the body has {param})"
                ))
            }
            (Some(_), None) => {
                return Err(format!("Mcp-Param-{header} names no argument in the body"))
            }
            (Some(h), Some(v)) => {
                let decoded = h
                    .to_str()
                    .ok()
                    .and_then(super::decode_header_value)
                    .ok_or_else(|| format!("Mcp-Param-{header} does not decode"))?;
                let expected = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if decoded != expected {
                    return Err(format!("Mcp-Param-{header} does not match {param}"));
                }
            }
        }
    }
    Ok(())
}

fn is_input_required(msg: &Value) -> bool {
    msg.pointer("/result/resultType").and_then(Value::as_str) == Some("input_required")
}

/// A `text/event-stream` response (not cached, not buffered by proxies).
pub(super) fn sse_response(body: Body) -> Response {
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_tool_arguments_must_be_present_decodable_and_equal() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "count": {"type": "integer", "x-mcp-header": "Count"},
            "note": {"type": "string"}}});
        let check = |args: Value, hs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in hs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            check_param_headers(&schema, &args, &h)
        };
        assert!(check(json!({"note": "x"}), &[]).is_ok());
        assert!(check(json!({"region": "eu"}), &[("mcp-param-region", "eu")]).is_ok());
        // "Hello" is SGVsbG8= (the padding is required).
        assert!(check(
            json!({"region": "Hello"}),
            &[("mcp-param-region", "=?base64?SGVsbG8=?=")]
        )
        .is_ok());
        assert!(check(json!({"count": 3}), &[("mcp-param-count", "3")]).is_ok());
        assert!(check(json!({"region": "eu"}), &[]).is_err(), "missing");
        assert!(
            check(json!({}), &[("mcp-param-region", "eu")]).is_err(),
            "no such argument"
        );
        assert!(check(json!({"region": "eu"}), &[("mcp-param-region", "us")]).is_err());
        assert!(check(
            json!({"region": "Hello"}),
            &[("mcp-param-region", "=?base64?SGVsbG8?=")]
        )
        .is_err());
        assert!(check(
            json!({"region": "Hello"}),
            &[("mcp-param-region", "=?base64?SGVs!!!bG8=?=")]
        )
        .is_err());
    }

    #[test]
    fn error_codes_map_to_the_statuses_of_the_era() {
        assert_eq!(status_for(-32601), StatusCode::NOT_FOUND);
        for c in [-32700, -32600, -32602, -32020, -32021, -32022] {
            assert_eq!(status_for(c), StatusCode::BAD_REQUEST);
        }
        assert_eq!(status_for(-32603), StatusCode::OK);
    }
}
