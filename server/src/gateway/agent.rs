//! `/mcp/agents/{agent}`: one MCP server made of an agent's tool set across several upstream
//! servers. The gateway is the MCP server here (Streamable HTTP, 2025-11-25 negotiating down
//! to 2025-03-26, JSON answers) and an MCP client of each upstream (`upstream.rs`).
//!
//! - Tools are listed and called as `{server}__{tool}`, prompts as `{server}__{prompt}`,
//!   resources as `portcullis://{server}/{uri}`; lists fan out to every server of the set
//!   (an upstream that fails is left out of the answer and named in its record).
//! - Only the agent's own tokens (`pct_agent_…`) are accepted, and only at its endpoint. Each
//!   call is decided against the agent's tool set intersected with its owner's rights now
//!   (`agents::Agent`); a disabled agent or one whose owner is deactivated gets 403.
//! - Every request passes the same seams as `/mcp/{server}`: one audit record (the agent as
//!   `agent`, its owner as the actor), rate limits (subject `agent` = the slug), approvals,
//!   and the answer is released only after its record is durable.
//! - Stateless: `initialize` hands out a session id only to tie the client's name to later
//!   records; requests without one, or with one this replica does not know, are served alike.
//!   No standalone GET stream (405); list changes are not pushed.

use super::record::{self, Recorder};
use super::upstream::{self, Failure};
use super::{limits, lock, rpc_error, AppState};
use crate::agents::{join_name, join_uri, split_name, split_uri, Agent};
use crate::audit::{Category, Event};
use crate::domain::{ServerTransport, TokenHash, TokenKind};
use crate::policy::{Hints, Kind, TenantPolicy};
use crate::store::now_micros;
use crate::tenancy::Host;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// The protocol revisions the agent endpoint negotiates (newest first).
const VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// What the snapshot knows of an agent token.
#[derive(Debug, Clone)]
pub struct AgentCredential {
    pub slug: String,
    pub label: String,
    pub expires_at: Option<i64>,
}

/// A request being served: who, for the records.
struct Call<'a> {
    state: &'a AppState,
    tenant_id: &'a str,
    agent: &'a Agent,
    policy: &'a TenantPolicy,
    servers: &'a std::collections::HashMap<String, Arc<ServerTransport>>,
    client: Option<String>,
    /// The label of the agent token presented.
    credential: String,
    ip: Option<String>,
    session_id: Option<String>,
    user_agent: Option<String>,
    arrived: Instant,
}

fn json_rpc(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn json_err(id: &Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

fn unauthorized(presented: bool) -> Response {
    let mut res = rpc_error(
        StatusCode::UNAUTHORIZED,
        -32001,
        "a valid token of this agent is required",
    );
    let challenge = if presented {
        "Bearer realm=\"portcullis\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"portcullis\""
    };
    res.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    res
}

pub async fn endpoint(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    req: Request,
) -> Response {
    let arrived = Instant::now();
    let Some(Host::Tenant(tenant)) = req.extensions().get::<Host>().cloned() else {
        return crate::tenancy::not_found();
    };
    if !super::origin_ok(req.headers()) {
        return rpc_error(
            StatusCode::FORBIDDEN,
            -32600,
            "cross-origin request refused",
        );
    }
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(hash) = presented.and_then(|t| TokenHash::of_presented(TokenKind::Agent, t)) else {
        return unauthorized(presented.is_some());
    };
    let snapshot = state.gateway.tenants.load();
    let Some(tg) = snapshot.get(&tenant.tenant_id) else {
        return unauthorized(true);
    };
    // A token of another agent is not valid here: the same answer as an unknown one.
    let Some(cred) = tg
        .agent_tokens
        .get(hash.as_str())
        .filter(|c| c.slug == slug && c.expires_at.is_none_or(|e| e > now_micros()))
    else {
        return unauthorized(true);
    };
    let Some(agent) = tg.agents.get(&slug).cloned() else {
        return unauthorized(true);
    };
    if !agent.enabled {
        return rpc_error(
            StatusCode::FORBIDDEN,
            -32001,
            "this agent is disabled, or its owner is deactivated",
        );
    }
    let now = now_micros();
    lock(&state.gateway.tokens_seen)
        .insert((tenant.tenant_id.clone(), hash.as_str().to_owned()), now);
    let credential = cred.label.clone();
    match *req.method() {
        Method::POST => {}
        Method::DELETE => {
            if let Some(sid) = req
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            {
                lock(&state.gateway.clients).remove(sid);
            }
            return StatusCode::NO_CONTENT.into_response();
        }
        _ => {
            let mut res = rpc_error(
                StatusCode::METHOD_NOT_ALLOWED,
                -32600,
                "this endpoint has no stream to GET: use POST",
            );
            res.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_static("POST, DELETE"),
            );
            return res;
        }
    }
    let headers = req.headers().clone();
    if let Some(v) = headers.get("mcp-protocol-version") {
        if !v.to_str().is_ok_and(|v| VERSIONS.contains(&v)) {
            let body = json!({"jsonrpc": "2.0", "id": null, "error": {
                "code": -32022, "message": "unsupported MCP-Protocol-Version",
                "data": {"supported": VERSIONS, "requested": String::from_utf8_lossy(v.as_bytes())},
            }});
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    }
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let user_agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect::<String>());
    let body = match axum::body::to_bytes(req.into_body(), state.gateway.hub.options.max_body).await
    {
        Ok(b) => b,
        Err(_) => {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                -32600,
                "request body too large",
            )
        }
    };
    if let Err((code, message)) = super::check_message(&body, &headers) {
        return rpc_error(StatusCode::BAD_REQUEST, code, &message);
    }
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return rpc_error(StatusCode::BAD_REQUEST, -32700, "parse error");
    };
    if msg.is_array() {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "batches are not supported here (protocol 2025-06-18 and later)",
        );
    }
    let (Some(method), Some(id)) = (
        msg.get("method").and_then(Value::as_str).map(str::to_owned),
        msg.get("id").cloned(),
    ) else {
        // A notification or a response: nothing here waits for one.
        return StatusCode::ACCEPTED.into_response();
    };
    let session_id = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let client = super::client_label(Some(&msg)).or_else(|| {
        session_id.as_ref().and_then(|sid| {
            lock(&state.gateway.clients)
                .get(sid)
                .map(|(c, _)| c.clone())
        })
    });
    let policy = tg.policy.clone();
    let servers = tg.servers.clone();
    drop(snapshot);
    let call = Call {
        state: &state,
        tenant_id: &tenant.tenant_id,
        agent: &agent,
        policy: &policy,
        servers: &servers,
        client,
        credential,
        ip,
        session_id,
        user_agent,
        arrived,
    };
    let params = msg.get("params").cloned().unwrap_or_else(|| json!({}));
    match method.as_str() {
        "initialize" => call.initialize(&id, &params).await,
        "ping" => call.local(&id, &method, json!({})).await,
        "logging/setLevel" => call.local(&id, &method, json!({})).await,
        "tools/list" => call.list(&id, Kind::Tool, "tools/list", "tools").await,
        "prompts/list" => {
            call.list(&id, Kind::Prompt, "prompts/list", "prompts")
                .await
        }
        "resources/list" => {
            call.list(&id, Kind::Resource, "resources/list", "resources")
                .await
        }
        "resources/templates/list" => {
            call.list(
                &id,
                Kind::Resource,
                "resources/templates/list",
                "resourceTemplates",
            )
            .await
        }
        "tools/call" | "prompts/get" | "resources/read" | "completion/complete" => {
            call.routed(&id, &method, params).await
        }
        _ => {
            call.refuse(
                &id,
                &method,
                None,
                None,
                -32601,
                "Method not found",
                "error",
            )
            .await
        }
    }
}

impl Call<'_> {
    /// The record of a request to this endpoint, before its outcome.
    fn event(&self, method: &str, server: Option<&str>, target: Option<&str>) -> Event {
        let (actor_id, actor) = self.agent.actor();
        let mut e = Event::new(self.tenant_id, Category::Mcp, method, "ok")
            .by(&actor_id, &actor)
            .detail(json!({"agent_endpoint": self.agent.slug, "credential": self.credential}));
        e.agent = Some(self.agent.slug.clone());
        e.client = self.client.clone();
        e.ip = self.ip.clone();
        e.session_id = self.session_id.clone();
        e.server = server.map(str::to_owned);
        e.target = target.map(str::to_owned);
        if let Some((uid, _)) = &self.agent.owner {
            e.groups = self.policy.group_names(uid);
        }
        if let Some(ua) = &self.user_agent {
            e.detail["user_agent"] = json!(ua);
        }
        e
    }

    fn elapsed(&self) -> i64 {
        i64::try_from(self.arrived.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    /// Records `e` (completed) and answers `answer`; withheld when the record cannot be
    /// written.
    async fn respond(
        &self,
        mut e: Event,
        answer: Value,
        headers: Option<(&str, String)>,
    ) -> Response {
        let id = answer.get("id").cloned().unwrap_or(Value::Null);
        let (outcome, code) = record::outcome_of(&answer);
        if e.outcome == "ok" {
            e.outcome = outcome.to_owned();
        }
        if let Some(code) = code {
            e.detail["error_code"] = json!(code);
        }
        e.latency_us = Some(self.elapsed());
        if self.state.audit.record(e).await.is_err() {
            return record::withheld(&id);
        }
        let mut res = (StatusCode::OK, axum::Json(answer)).into_response();
        if let Some((name, value)) = headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                if let Ok(n) = http::HeaderName::from_bytes(name.as_bytes()) {
                    res.headers_mut().insert(n, v);
                }
            }
        }
        res
    }

    #[allow(clippy::too_many_arguments)]
    async fn refuse(
        &self,
        id: &Value,
        method: &str,
        server: Option<&str>,
        target: Option<&str>,
        code: i64,
        message: &str,
        outcome: &str,
    ) -> Response {
        let mut e = self.event(method, server, target);
        e.outcome = outcome.to_owned();
        if outcome == "denied" {
            e.decision = Some("deny".into());
        }
        self.respond(e, json_err(id, code, message), None).await
    }

    async fn local(&self, id: &Value, method: &str, result: Value) -> Response {
        let e = self.event(method, None, None);
        self.respond(e, json_rpc(id, result), None).await
    }

    async fn initialize(&self, id: &Value, params: &Value) -> Response {
        let asked = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let version = if VERSIONS.contains(&asked) {
            asked
        } else {
            VERSIONS[0]
        };
        let servers: Vec<&str> = self.agent.tools.servers().collect();
        let result = json!({
            "protocolVersion": version,
            "capabilities": {"tools": {}, "prompts": {}, "resources": {}, "completions": {}, "logging": {}},
            "serverInfo": {
                "name": format!("portcullis-agent-{}", self.agent.slug),
                "title": self.agent.name,
                "version": env!("CARGO_PKG_VERSION"),
            },
            "instructions": format!(
                "The tools of agent {} across {}. Names are server{}tool; resources are {}server/uri.",
                self.agent.name, servers.join(", "), crate::agents::NAME_SEPARATOR,
                crate::agents::RESOURCE_PREFIX
            ),
        });
        let sid = super::session::random_id();
        if let Some(c) = &self.client {
            let mut clients = lock(&self.state.gateway.clients);
            if clients.len() < 100_000 {
                clients.insert(sid.clone(), (c.clone(), Instant::now()));
            }
        }
        let mut e = self.event("initialize", None, None);
        e.session_id = Some(sid.clone());
        self.respond(e, json_rpc(id, result), Some(("mcp-session-id", sid)))
            .await
    }

    fn timeout(&self) -> std::time::Duration {
        self.state.gateway.hub.options.upstream_timeout
    }

    /// The agent's owner (user id, email), whose own upstream accounts it uses.
    fn owner(&self) -> Option<(&str, &str)> {
        self.agent
            .owner
            .as_ref()
            .map(|(id, email)| (id.as_str(), email.as_str()))
    }

    fn principal(&self) -> String {
        format!("agent:{}", self.agent.id)
    }

    /// Every item of a list from one server (all pages, at most 50).
    async fn list_one(
        &self,
        server: &str,
        transport: &Arc<ServerTransport>,
        method: &str,
        key: &str,
    ) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..50 {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let msg = upstream::request(
                self.state,
                self.tenant_id,
                &self.principal(),
                self.owner(),
                server,
                transport,
                method,
                params,
                self.timeout(),
            )
            .await
            .map_err(|f| f.to_string())?;
            if let Some(e) = msg.get("error") {
                // A server without the capability answers -32601: nothing to list.
                if e.get("code").and_then(Value::as_i64) == Some(-32601) {
                    return Ok(items);
                }
                return Err(e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_owned());
            }
            if let Some(list) = msg
                .pointer("/result")
                .and_then(|r| r.get(key))
                .and_then(Value::as_array)
            {
                items.extend(list.iter().cloned());
            }
            cursor = msg
                .pointer("/result/nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok(items)
    }

    /// A list across the servers of the set: fetched concurrently, filtered by the agent's
    /// rights, renamed into the endpoint's namespace.
    async fn list(&self, id: &Value, kind: Kind, method: &str, key: &str) -> Response {
        let servers: Vec<(String, Arc<ServerTransport>)> = self
            .agent
            .tools
            .servers()
            .filter(|s| self.agent.reaches(self.policy, s))
            .filter_map(|s| self.servers.get(s).map(|t| (s.to_owned(), t.clone())))
            .collect();
        let fetched = futures_util::future::join_all(
            servers
                .iter()
                .map(|(s, t)| self.list_one(s, t, method, key)),
        )
        .await;
        let mut out = Vec::new();
        let mut failed = Vec::new();
        for ((server, _), got) in servers.iter().zip(fetched) {
            let items = match got {
                Ok(items) => items,
                Err(why) => {
                    tracing::warn!(agent = %self.agent.slug, server.slug = %server, error = %why, "an agent list left a server out");
                    failed.push(json!({"server": server, "error": why}));
                    continue;
                }
            };
            if kind == Kind::Tool {
                self.state
                    .gateway
                    .observed
                    .record(self.tenant_id, server, &items);
                self.state
                    .gateway
                    .pins
                    .observe(self.policy, self.tenant_id, server, &items);
            }
            let mut items = items;
            if let Some(p) = self.state.gateway.filter_policy(self.tenant_id, server) {
                super::policy::screen_listed(
                    &self.state.gateway.pins,
                    Some(&p),
                    self.tenant_id,
                    server,
                    &mut items,
                );
            }
            for mut item in items {
                if !self.visible(server, kind, &item) {
                    continue;
                }
                match kind {
                    Kind::Tool | Kind::Prompt => {
                        if let Some(n) = item.get("name").and_then(Value::as_str) {
                            item["name"] = json!(join_name(server, n));
                        }
                    }
                    Kind::Resource => {
                        for field in ["uri", "uriTemplate"] {
                            if let Some(u) = item.get(field).and_then(Value::as_str) {
                                item[field] = json!(join_uri(server, u));
                            }
                        }
                    }
                }
                out.push(item);
            }
        }
        let mut e = self.event(method, None, None);
        e.detail["servers"] = json!(servers.iter().map(|(s, _)| s).collect::<Vec<_>>());
        if !failed.is_empty() {
            e.detail["failed"] = json!(failed);
        }
        e.decision = Some("allow".into());
        self.respond(e, json_rpc(id, json!({ key: out })), None)
            .await
    }

    /// Whether a listed item is the agent's to see.
    fn visible(&self, server: &str, kind: Kind, item: &Value) -> bool {
        if kind == Kind::Tool {
            let Some(name) = item.get("name").and_then(Value::as_str) else {
                return false;
            };
            // Listed with another definition than the reviewed one: hidden (crate::pins).
            if let Some(pin) = self.policy.pin(server, name) {
                if crate::pins::tool_digest(item) != pin {
                    return false;
                }
            }
            let hints = self.policy.hints(
                server,
                name,
                Some(Hints::from_annotations(item.get("annotations"))),
            );
            return self.agent.may_call(self.policy, server, name, hints, None);
        }
        match &self.agent.owner {
            Some((uid, _)) => {
                crate::policy::list_item_visible(self.policy, uid, server, kind, item)
            }
            None => true,
        }
    }

    /// A request for one server's tool, prompt or resource: decided, limited, approved,
    /// forwarded under the server's own name, recorded.
    async fn routed(&self, id: &Value, method: &str, mut params: Value) -> Response {
        // Where it goes, and the name the server knows.
        let (kind, field) = match method {
            "tools/call" => (Kind::Tool, "/name"),
            "prompts/get" => (Kind::Prompt, "/name"),
            "resources/read" => (Kind::Resource, "/uri"),
            _ => match params.pointer("/ref/type").and_then(Value::as_str) {
                Some("ref/prompt") => (Kind::Prompt, "/ref/name"),
                Some("ref/resource") => (Kind::Resource, "/ref/uri"),
                _ => {
                    return self
                        .refuse(
                            id,
                            method,
                            None,
                            None,
                            -32602,
                            "Invalid params: ref",
                            "error",
                        )
                        .await
                }
            },
        };
        let shown = params
            .pointer(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let split = match kind {
            Kind::Resource => split_uri(&shown),
            _ => split_name(&shown),
        };
        let not_found = |k: Kind| match k {
            Kind::Tool => (-32602, format!("Unknown tool: {shown}")),
            Kind::Prompt => (-32602, format!("Unknown prompt: {shown}")),
            Kind::Resource => (-32002, "Resource not found".to_owned()),
        };
        let Some((server, inner)) = split.map(|(s, i)| (s.to_owned(), i.to_owned())) else {
            let (code, message) = not_found(kind);
            return self
                .refuse(id, method, None, Some(&shown), code, &message, "denied")
                .await;
        };
        let transport = self.servers.get(&server).cloned();
        if let Some(p) = params.pointer_mut(field) {
            *p = json!(inner);
        }
        let arguments = params.pointer("/arguments").cloned();
        let allowed = transport.is_some()
            && match kind {
                Kind::Tool => {
                    let hints = self.policy.hints(
                        &server,
                        &inner,
                        self.state
                            .gateway
                            .observed_hints(self.tenant_id, &server, &inner),
                    );
                    !self
                        .state
                        .gateway
                        .pins
                        .just_changed(self.tenant_id, &server, &inner)
                        && self.agent.may_call(
                            self.policy,
                            &server,
                            &inner,
                            hints,
                            Some(arguments.as_ref().unwrap_or(&json!({}))),
                        )
                }
                _ => self.agent.may_use(self.policy, &server, kind, &inner),
            };
        let mut e = self.event(method, Some(&server), Some(&inner));
        let tenant_args = self.state.gateway.arguments(self.tenant_id);
        if let Some(a) = &arguments {
            tenant_args.apply(a, &mut e.detail);
        }
        e.detail["jsonrpc_id"] = id.clone();
        e.detail["rule"] = json!(if self.agent.owner.is_some() {
            "agent tool set and owner's grants"
        } else {
            "agent tool set"
        });
        let Some(transport) = transport.filter(|_| allowed) else {
            let (code, message) = not_found(kind);
            e.outcome = "denied".into();
            e.decision = Some("deny".into());
            return self.respond(e, json_err(id, code, message), None).await;
        };
        e.decision = Some("allow".into());
        e.outcome = "forwarded".into();
        // Rate limits and quotas.
        let limits = self.state.gateway.limits(self.tenant_id);
        let mut permits = Vec::new();
        if !limits.is_empty() {
            let owner_email = self
                .agent
                .owner
                .as_ref()
                .map(|(_, m)| m.as_str())
                .unwrap_or_default();
            let subject = limits::Subject {
                user: owner_email,
                agent: &self.agent.slug,
                client: self.client.as_deref().unwrap_or_default(),
                server: &server,
                tool: (kind == Kind::Tool).then_some(inner.as_str()),
            };
            match self
                .state
                .gateway
                .limiter
                .admit(self.tenant_id, &limits, &subject, now_micros())
            {
                Ok(Some(p)) => permits.push(p),
                Ok(None) => {}
                Err(t) => {
                    e.outcome = "throttled".into();
                    e.detail["limit"] = json!(t.limit_id);
                    e.detail["retry_after_s"] = json!(t.retry_after_secs);
                    let answer = json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": -32000,
                        "message": format!("{}: retry in {} s", t.message, t.retry_after_secs),
                        "data": {"retry_after": t.retry_after_secs},
                    }});
                    let mut res = self
                        .respond(
                            e,
                            answer,
                            Some(("retry-after", t.retry_after_secs.to_string())),
                        )
                        .await;
                    if res.status() == StatusCode::OK {
                        *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                    }
                    return res;
                }
            }
        }
        if !self.state.audit.healthy() {
            e.outcome = "refused".into();
            let _ = self.state.audit.record(e).await;
            return record::withheld(id);
        }
        // Human approval (tools only), before anything goes upstream.
        let mut pending = vec![(id.clone(), e)];
        let rules = self.state.gateway.approval_rules(self.tenant_id);
        if kind == Kind::Tool && !rules.is_empty() {
            let (actor_id, actor) = self.agent.actor();
            if let Some((_, outcome, message)) = super::approvals::gate(
                self.state,
                super::approvals::Asker {
                    tenant_id: self.tenant_id,
                    user_id: &actor_id,
                    email: &actor,
                    server: &server,
                },
                &rules,
                self.policy,
                &mut pending,
            )
            .await
            {
                let Some((_, mut e)) = pending.pop() else {
                    return record::withheld(id);
                };
                e.outcome = outcome.into();
                return self.respond(e, json_err(id, -32000, message), None).await;
            }
        }
        let rec = Recorder::new(self.state.audit.clone(), self.arrived, pending);
        rec.hold(permits);
        rec.filter_with(self.state.gateway.filter_policy(self.tenant_id, &server));
        rec.count_into(
            self.state.gateway.inventory.clone(),
            self.tenant_id,
            &server,
        );
        let tenant_slug = self
            .state
            .tenancy
            .tenant_by_id(self.tenant_id)
            .map(|t| t.slug.clone())
            .unwrap_or_default();
        rec.hook_with(
            self.state.gateway.filter_hooks(self.tenant_id, &server),
            self.state.gateway.client().clone(),
            &tenant_slug,
            &server,
        );
        rec.forwarded();
        let got = upstream::request(
            self.state,
            self.tenant_id,
            &self.principal(),
            self.owner(),
            &server,
            &transport,
            method,
            params,
            self.timeout(),
        )
        .await;
        match got {
            Ok(mut msg) => {
                msg["id"] = id.clone();
                if kind == Kind::Resource && method == "resources/read" {
                    if let Some(contents) = msg
                        .pointer_mut("/result/contents")
                        .and_then(Value::as_array_mut)
                    {
                        for c in contents {
                            if let Some(u) = c.get("uri").and_then(Value::as_str) {
                                c["uri"] = json!(join_uri(&server, u));
                            }
                        }
                    }
                }
                if rec.answer(&mut msg).await.is_err() {
                    return record::withheld(id);
                }
                (StatusCode::OK, axum::Json(msg)).into_response()
            }
            Err(f) => {
                let outcome = match f {
                    Failure::Timeout => "timeout",
                    Failure::Unreachable(_) => "unreachable",
                };
                tracing::warn!(agent = %self.agent.slug, server.slug = %server, error = %f, "an agent call failed upstream");
                if rec.finish(outcome, None).await.is_err() {
                    return record::withheld(id);
                }
                let answer = json_err(
                    id,
                    -32603,
                    format!("the upstream MCP server {server} failed: {f}"),
                );
                (StatusCode::OK, axum::Json(answer)).into_response()
            }
        }
    }
}
