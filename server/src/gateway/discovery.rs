//! "Test connection": the gateway acts as an MCP client of an upstream and reports what it
//! offers: server info, capabilities, tools (with their annotations), resources and prompts.
//! Like the official SDKs' "auto" mode it first probes the stateless 2026-07-28 era
//! (`server/discover`, then lists carrying `_meta`), and falls back to the session-based
//! 2025-11-25 era (initialize, lists with the session id, DELETE) when the upstream does not
//! answer the probe as a modern server.

use crate::domain::ServerTransport;
use http::HeaderValue;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const PROTOCOL: &str = "2025-11-25";
const MODERN: &str = "2026-07-28";

/// Which protocol era discovery may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Era {
    /// Probe 2026-07-28 first, fall back to 2025-11-25.
    #[default]
    Auto,
    /// Only the session-based 2025-11-25 era.
    Legacy,
}
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Discovery {
    pub protocol_version: String,
    pub server_info: Value,
    pub capabilities: Value,
    pub tools: Vec<DiscoveredTool>,
    pub resources: Vec<Value>,
    pub prompts: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DiscoveredTool {
    pub name: String,
    pub description: String,
    /// The MCP annotations as the server declares them (hints, not guarantees).
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
    /// The SHA-256 of the tool's definition (`crate::pins`): what recording the catalog pins.
    pub digest: String,
    /// The definition itself (name, title, description, schemas, annotations).
    #[serde(skip)]
    pub definition: Value,
}

/// Runs discovery against an upstream. The error says, for an admin, what went wrong.
pub async fn discover(
    gateway: &super::Gateway,
    upstream: &ServerTransport,
    era: Era,
    credential: Option<&super::Credential>,
    env: Option<Arc<super::EnvSecret>>,
) -> Result<Discovery, String> {
    let client = gateway.client();
    let url = match upstream {
        ServerTransport::StreamableHttp { url } => url.as_str(),
        ServerTransport::Stdio { .. } | ServerTransport::Sse { .. } => {
            return discover_via_link(
                gateway,
                upstream,
                env,
                credential.map(|c| Arc::new(c.clone())),
            )
            .await
        }
    };
    if era == Era::Auto {
        let mut s = Session::new(client, url, true, credential);
        if let Ok(found) = s.request("server/discover", json!({})).await {
            let modern = found
                .get("supportedVersions")
                .and_then(Value::as_array)
                .is_some_and(|v| v.iter().any(|x| x == MODERN));
            if modern {
                return s.finish(found, MODERN.to_owned()).await;
            }
        }
    }
    let mut s = Session::new(client, url, false, credential);
    let init = s
        .request(
            "initialize",
            json!({
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "portcullis-discovery", "version": env!("CARGO_PKG_VERSION")},
            }),
        )
        .await?;
    s.notify("notifications/initialized").await?;
    let version = init
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    s.finish(init, version).await
}

/// Discovery of a stdio or legacy SSE server: a link of its own (a separate process, or a
/// separate connection), initialized like the gateway initializes every upstream, then stopped.
async fn discover_via_link(
    gateway: &super::Gateway,
    upstream: &ServerTransport,
    env: Option<Arc<super::EnvSecret>>,
    header: Option<Arc<super::Credential>>,
) -> Result<Discovery, String> {
    use super::link::HANDSHAKE_TIMEOUT;
    let link = gateway.hub.start_link(
        "test connection".into(),
        upstream,
        gateway.client(),
        env,
        header,
    );
    let result = async {
        let init = link.wait_ready(HANDSHAKE_TIMEOUT).await?;
        let capabilities = init.get("capabilities").cloned().unwrap_or(Value::Null);
        let mut lists = Vec::new();
        for (cap, method) in [
            ("tools", "tools/list"),
            ("resources", "resources/list"),
            ("prompts", "prompts/list"),
        ] {
            let items = if capabilities.get(cap).is_some() {
                link.list_all(method, cap, STEP_TIMEOUT).await?
            } else {
                Vec::new()
            };
            lists.push(items);
        }
        let prompts = lists.pop().unwrap_or_default();
        let resources = lists.pop().unwrap_or_default();
        let tools = lists.pop().unwrap_or_default();
        Ok(report(
            init.get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            init.get("serverInfo").cloned().unwrap_or(Value::Null),
            capabilities,
            tools,
            resources,
            prompts,
        ))
    }
    .await;
    link.shutdown();
    result
}

impl<'a> Session<'a> {
    fn new(
        client: &'a reqwest::Client,
        url: &'a str,
        modern: bool,
        credential: Option<&'a super::Credential>,
    ) -> Self {
        Self {
            client,
            url,
            session: None,
            next_id: 1,
            modern,
            credential,
        }
    }

    /// Lists what the server's capabilities announce, ends the session, and assembles the
    /// report. `hello` is the initialize or server/discover result.
    async fn finish(mut self, hello: Value, protocol_version: String) -> Result<Discovery, String> {
        let capabilities = hello.get("capabilities").cloned().unwrap_or(Value::Null);
        let has = |cap: &str| capabilities.get(cap).is_some();
        let mut lists = Vec::new();
        for (cap, method) in [
            ("tools", "tools/list"),
            ("resources", "resources/list"),
            ("prompts", "prompts/list"),
        ] {
            let items = if has(cap) {
                match self.list(method, cap).await {
                    Ok(items) => items,
                    Err(e) => {
                        self.close().await;
                        return Err(e);
                    }
                }
            } else {
                Vec::new()
            };
            lists.push(items);
        }
        self.close().await;
        let prompts = lists.pop().unwrap_or_default();
        let resources = lists.pop().unwrap_or_default();
        let tools = lists.pop().unwrap_or_default();
        let server_info = hello
            .get("serverInfo")
            .or_else(|| {
                hello
                    .get("_meta")
                    .and_then(|m| m.get("io.modelcontextprotocol/serverInfo"))
            })
            .cloned()
            .unwrap_or(Value::Null);
        Ok(report(
            protocol_version,
            server_info,
            capabilities,
            tools,
            resources,
            prompts,
        ))
    }
}

fn report(
    protocol_version: String,
    server_info: Value,
    capabilities: Value,
    tools: Vec<Value>,
    resources: Vec<Value>,
    prompts: Vec<Value>,
) -> Discovery {
    let hint = |t: &Value, k: &str| {
        t.get("annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_bool)
    };
    Discovery {
        protocol_version,
        server_info,
        capabilities,
        tools: tools
            .iter()
            .map(|t| DiscoveredTool {
                name: t
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                description: t
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                read_only: hint(t, "readOnlyHint"),
                destructive: hint(t, "destructiveHint"),
                idempotent: hint(t, "idempotentHint"),
                open_world: hint(t, "openWorldHint"),
                digest: crate::pins::tool_digest(t),
                definition: crate::pins::definition(t),
            })
            .collect(),
        resources,
        prompts,
    }
}

struct Session<'a> {
    client: &'a reqwest::Client,
    url: &'a str,
    session: Option<HeaderValue>,
    next_id: i64,
    /// 2026-07-28: no session; every request carries `_meta` and the routing headers.
    modern: bool,
    /// The server's credential from the vault, sent on every request.
    credential: Option<&'a super::Credential>,
}

impl Session<'_> {
    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut r = self
            .client
            .post(self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header(
                "mcp-protocol-version",
                if self.modern { MODERN } else { PROTOCOL },
            )
            .timeout(STEP_TIMEOUT)
            .body(body.to_string());
        if self.modern {
            if let Some(m) = body.get("method").and_then(Value::as_str) {
                r = r.header("mcp-method", m);
            }
        }
        if let Some(s) = &self.session {
            r = r.header("mcp-session-id", s.clone());
        }
        if let Some(c) = self.credential {
            r = r.header(c.header.clone(), c.value.clone());
        }
        r
    }

    async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut params = params;
        if self.modern {
            if let Some(p) = params.as_object_mut() {
                p.insert(
                    "_meta".into(),
                    json!({
                        "io.modelcontextprotocol/protocolVersion": MODERN,
                        "io.modelcontextprotocol/clientCapabilities": {},
                        "io.modelcontextprotocol/clientInfo":
                            {"name": "portcullis-discovery", "version": env!("CARGO_PKG_VERSION")},
                    }),
                );
            }
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let res = self
            .post(&body)
            .send()
            .await
            .map_err(|e| format!("{method}: cannot reach the server ({e})"))?;
        if let Some(sid) = res.headers().get("mcp-session-id") {
            self.session = Some(sid.clone());
        }
        let status = res.status();
        let is_sse = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let text = res.text().await.map_err(|e| format!("{method}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{method}: the server answered HTTP {status}"));
        }
        let messages: Vec<Value> = if is_sse {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str(d.trim()).ok())
                .collect()
        } else {
            vec![serde_json::from_str(&text)
                .map_err(|_| format!("{method}: the answer is not JSON"))?]
        };
        let reply = messages
            .into_iter()
            .find(|m| m.get("id").and_then(Value::as_i64) == Some(id))
            .ok_or_else(|| format!("{method}: no answer to the request"))?;
        if let Some(err) = reply.get("error") {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error");
            return Err(format!("{method}: {msg}"));
        }
        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    }

    async fn notify(&self, method: &str) -> Result<(), String> {
        let body = json!({"jsonrpc": "2.0", "method": method});
        self.post(&body)
            .send()
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        Ok(())
    }

    /// Follows `nextCursor` pages (at most 50) and returns every item.
    async fn list(&mut self, method: &str, key: &str) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..50 {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let page = self.request(method, params).await?;
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

    /// Ends the upstream session (best effort).
    async fn close(self) {
        if let Some(s) = self.session {
            let mut r = self.client.delete(self.url).header("mcp-session-id", s);
            if let Some(c) = self.credential {
                r = r.header(c.header.clone(), c.value.clone());
            }
            let _ = r
                .header("mcp-protocol-version", PROTOCOL)
                .timeout(STEP_TIMEOUT)
                .send()
                .await;
        }
    }
}
