//! The gateway's own session layer, in front of stdio and legacy SSE upstreams: the fixture MCP
//! server on the official TypeScript SDK (`tests/fixtures/everything_fixture.mjs`) run by the
//! gateway as a real process, reached by a raw HTTP client (to see every header and status) and
//! by real MCP clients (the official Python SDK, the MCP Inspector CLI).

use crate::gateway::{add_server, fixture_path, run_client, user_token};
use crate::helpers::{spawn_app, spawn_app_with, Engine, TestApp};
use crate::on_both_engines;
use portcullis::config::ServeArgs;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HOST};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

on_both_engines!(python_clients_reach_a_stdio_server_through_the_gateway,);

/// The stdio upstream definition of the fixture, tagged so that the test can find its processes.
pub fn stdio_fixture(tag: &str) -> Value {
    json!({"transport": "stdio", "command": "node",
           "args": [fixture_path("everything_fixture.mjs"), "stdio", "--tag", tag]})
}

/// PIDs of running processes whose command line contains `tag`.
pub fn processes_tagged(tag: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            // The fixture itself (node …), not a sandbox wrapper or this test's shell.
            if cmd.contains(tag)
                && cmd.contains("everything_fixture.mjs stdio")
                && !cmd.starts_with("bwrap")
            {
                pids.push(pid);
            }
        }
    }
    pids
}

/// A raw MCP client of one gateway endpoint: every message, status and header visible.
pub struct Mcp<'a> {
    app: &'a TestApp,
    host: String,
    path: String,
    token: String,
    pub sid: Option<String>,
}

/// The JSON-RPC messages of a response: one JSON object, or the `data:` of each SSE event.
pub fn messages(content_type: &str, body: &str) -> Vec<Value> {
    if content_type.starts_with("text/event-stream") {
        body.split("\n\n")
            .filter_map(|ev| {
                let data: Vec<&str> = ev
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                (!data.is_empty()).then(|| data.join("\n"))
            })
            .filter(|d| !d.is_empty())
            .map(|d| serde_json::from_str(&d).unwrap())
            .collect()
    } else if body.trim().is_empty() {
        Vec::new()
    } else {
        vec![serde_json::from_str(body).unwrap()]
    }
}

impl<'a> Mcp<'a> {
    pub fn new(app: &'a TestApp, tenant: &str, server: &str, token: &str) -> Self {
        Self {
            app,
            host: app.host(Some(tenant)),
            path: format!("/mcp/{server}"),
            token: token.to_owned(),
            sid: None,
        }
    }

    /// The same session (its id, token and server) through another replica.
    pub fn via<'b>(&self, app: &'b TestApp, tenant: &str) -> Mcp<'b> {
        Mcp {
            app,
            host: app.host(Some(tenant)),
            path: self.path.clone(),
            token: self.token.clone(),
            sid: self.sid.clone(),
        }
    }

    /// Presents another token (the same session id).
    pub fn set_token(&mut self, token: &str) {
        self.token = token.to_owned();
    }

    /// A DELETE of the session (the client ends it).
    pub fn delete(&self) -> reqwest::RequestBuilder {
        let mut r = self
            .app
            .client
            .delete(self.app.url(&self.path))
            .header(HOST, &self.host)
            .bearer_auth(&self.token);
        if let Some(s) = &self.sid {
            r = r.header("mcp-session-id", s);
        }
        r
    }

    pub fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut r = self
            .app
            .client
            .post(self.app.url(&self.path))
            .header(HOST, &self.host)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .bearer_auth(&self.token)
            .body(body.to_string());
        if let Some(s) = &self.sid {
            r = r.header("mcp-session-id", s);
        }
        r
    }

    pub fn get(&self) -> reqwest::RequestBuilder {
        let mut r = self
            .app
            .client
            .get(self.app.url(&self.path))
            .header(HOST, &self.host)
            .header(ACCEPT, "text/event-stream")
            .bearer_auth(&self.token);
        if let Some(s) = &self.sid {
            r = r.header("mcp-session-id", s);
        }
        r
    }

    pub async fn initialize(&mut self) -> Value {
        let res = self
            .post(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {"sampling": {}},
                "clientInfo": {"name": "rust-test", "version": "0"}}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let Some(sid) = res.headers().get("mcp-session-id") else {
            panic!("no session: {}", res.text().await.unwrap());
        };
        let sid = sid.to_str().unwrap().to_owned();
        assert!(sid.len() >= 32 && sid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        self.sid = Some(sid);
        // JSON from the gateway's own session layer, SSE from some upstreams it proxies.
        let ct = res.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
        let init = messages(&ct, &res.text().await.unwrap()).pop().unwrap();
        let res = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        init
    }

    /// Sends a request and returns every message of the answer (the response last).
    pub async fn request(&self, id: Value, method: &str, params: Value) -> Vec<Value> {
        let res = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{method}");
        let ct = res.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
        messages(&ct, &res.text().await.unwrap())
    }

    /// A tool call's text, or the JSON-RPC error message prefixed with `error: `.
    pub async fn call_text(&self, id: i64, tool: &str, args: Value) -> String {
        let msgs = self
            .request(
                json!(id),
                "tools/call",
                json!({"name": tool, "arguments": args}),
            )
            .await;
        let last = msgs.last().unwrap();
        assert_eq!(last["id"], json!(id), "{last}");
        match last.get("error") {
            Some(e) => format!("error: {}", e["message"].as_str().unwrap()),
            None => last["result"]["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

/// Tenant `acme` with one server `slug`: its admin token and a user's gateway token.
pub async fn tenant_with_server(app: &TestApp, slug: &str, upstream: Value) -> (String, String) {
    let acme = app.create_tenant("acme").await;
    add_server(app, "acme", &acme.admin_token, slug, upstream).await;
    let token = user_token(app, "acme", &acme.admin_token, "dev@acme.example").await;
    (acme.admin_token, token)
}

async fn tenant_with_stdio_fixture(app: &TestApp, tag: &str) -> (String, String) {
    tenant_with_server(app, "fx", stdio_fixture(tag)).await
}

async fn python_clients_reach_a_stdio_server_through_the_gateway(engine: Engine) {
    let app = spawn_app(engine).await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (_, token) = tenant_with_stdio_fixture(&app, &tag).await;
    // The upstream speaks the session era; the gateway serves both eras in front of it.
    for mode in ["auto", "legacy"] {
        let seen = run_client(&app, "acme", "fx", mode, &token).await;
        // auto: the stateless era, served by the gateway in front of the session-era server.
        let expected = if mode == "auto" {
            "2026-07-28"
        } else {
            "2025-11-25"
        };
        assert_eq!(seen["protocol"], expected);
        let tools: Vec<&str> = seen["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for t in ["add", "echo", "test_simple_text", "whoami", "crash"] {
            assert!(tools.contains(&t), "{t} in {tools:?}");
        }
        assert_eq!(seen["add"], json!(["42"]));
        assert_eq!(
            seen["resource"],
            json!(["This is the content of the static text resource."])
        );
        assert_eq!(
            seen["prompt"],
            json!(["Prompt with arguments: arg1='x', arg2='y'"])
        );
    }
    // One shared process served both clients.
    assert_eq!(processes_tagged(&tag).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_on_a_shared_stdio_server_get_only_their_own_answers() {
    let app = spawn_app(Engine::Sqlite).await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (_, token) = tenant_with_stdio_fixture(&app, &tag).await;
    let mut sessions = Vec::new();
    for _ in 0..8 {
        let mut m = Mcp::new(&app, "acme", "fx", &token);
        m.initialize().await;
        sessions.push(m);
    }
    // Every session uses the same request ids 1..=15 and the same progress token, all at once.
    let calls = sessions.iter().enumerate().flat_map(|(s, m)| {
        (1..=15).map(move |r| async move {
            if r % 5 == 0 {
                let msgs = m
                    .request(
                        json!(r),
                        "tools/call",
                        json!({"name": "progress_steps", "arguments": {"steps": 4},
                               "_meta": {"progressToken": "same-token"}}),
                    )
                    .await;
                let progress: Vec<i64> = msgs
                    .iter()
                    .filter(|m| m["method"] == "notifications/progress")
                    .map(|m| {
                        assert_eq!(m["params"]["progressToken"], "same-token");
                        m["params"]["progress"].as_i64().unwrap()
                    })
                    .collect();
                assert_eq!(progress, vec![1, 2, 3, 4], "session {s} request {r}");
                let last = msgs.last().unwrap();
                assert_eq!(last["id"], json!(r));
                assert_eq!(last["result"]["content"][0]["text"], "done 4");
            } else {
                let text = m
                    .call_text(r, "echo", json!({"message": format!("s{s}-r{r}")}))
                    .await;
                assert_eq!(text, format!("Echo: s{s}-r{r}"));
            }
        })
    });
    futures_util::future::join_all(calls).await;
    assert_eq!(processes_tagged(&tag).len(), 1, "one shared process");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_layer_refuses_what_it_must() {
    let app = spawn_app(Engine::Sqlite).await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (admin, token) = tenant_with_stdio_fixture(&app, &tag).await;
    let other = user_token(&app, "acme", &admin, "other@acme.example").await;
    let mut m = Mcp::new(&app, "acme", "fx", &token);
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    // No session: 400; an unknown one: 404.
    let res = m.post(&ping).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    m.sid = Some("not-a-session".into());
    assert_eq!(
        m.post(&ping).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    m.sid = None;
    // initialize needs a protocol version.
    let res = m
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let init = m.initialize().await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(
        init["result"]["serverInfo"]["name"],
        "portcullis-everything-fixture"
    );
    assert_eq!(
        m.request(json!(2), "ping", json!({})).await[0]["result"],
        json!({})
    );
    // Another user's token with this session id: the same 404 as an unknown session.
    let mut thief = Mcp::new(&app, "acme", "fx", &other);
    thief.sid = m.sid.clone();
    assert_eq!(
        thief.post(&ping).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // Re-initializing, batches, unknown versions, stray responses: 400.
    let again = m
        .post(&json!({"jsonrpc": "2.0", "id": 3, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let batch = m.post(&json!([ping.clone()])).send().await.unwrap();
    assert_eq!(batch.status(), StatusCode::BAD_REQUEST);
    let old = m
        .post(&ping)
        .header("mcp-protocol-version", "2026-07-28")
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::BAD_REQUEST);
    let stray = m
        .post(&json!({"jsonrpc": "2.0", "id": "pc-999", "result": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(stray.status(), StatusCode::BAD_REQUEST);
    // An unknown method is the upstream's -32601, passed through.
    let unknown = m.request(json!(4), "no/such_method", json!({})).await;
    assert_eq!(unknown[0]["error"]["code"], -32601);
    // One standalone GET stream at a time; it needs Accept: text/event-stream.
    let first = m.get().send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()[CONTENT_TYPE], "text/event-stream");
    assert_eq!(m.get().send().await.unwrap().status(), StatusCode::CONFLICT);
    let json_only = app
        .client
        .get(app.url("/mcp/fx"))
        .header(HOST, app.host(Some("acme")))
        .header(ACCEPT, "application/json")
        .header("mcp-session-id", m.sid.clone().unwrap())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(json_only.status(), StatusCode::NOT_ACCEPTABLE);
    drop(first);
    // DELETE ends the session: then 404.
    let del = app
        .client
        .delete(app.url("/mcp/fx"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(&token)
        .header("mcp-session-id", m.sid.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::OK);
    assert_eq!(
        m.post(&ping).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_survive_a_dropped_stream_and_replay_with_last_event_id() {
    let app = spawn_app(Engine::Sqlite).await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (_, token) = tenant_with_stdio_fixture(&app, &tag).await;
    let mut m = Mcp::new(&app, "acme", "fx", &token);
    m.initialize().await;
    // A call with progress answers as an SSE stream; read only its first event, then hang up.
    let res = m
        .post(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "progress_steps", "arguments": {"steps": 3}, "_meta": {"progressToken": 1}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()[CONTENT_TYPE], "text/event-stream");
    let mut stream = res.bytes_stream();
    use futures_util::StreamExt;
    let first = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    let id = first
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_owned();
    drop(stream);
    // Disconnecting cancelled nothing: resuming after that event replays the rest of that
    // stream, response included.
    let resumed = m.get().header("last-event-id", &id).send().await.unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    let msgs = messages("text/event-stream", &resumed.text().await.unwrap());
    let last = msgs.last().unwrap();
    assert_eq!(last["id"], 7, "{msgs:?}");
    assert_eq!(last["result"]["content"][0]["text"], "done 3");
    assert!(
        msgs.iter().all(|m| m["params"]["progress"] != 1),
        "no replay of what was read"
    );
    let bogus = m
        .get()
        .header("last-event-id", "99_1")
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_stdio_server_is_restarted_and_its_sessions_live_on() {
    let app = spawn_app(Engine::Sqlite).await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (_, token) = tenant_with_stdio_fixture(&app, &tag).await;
    let mut m = Mcp::new(&app, "acme", "fx", &token);
    m.initialize().await;
    let before = processes_tagged(&tag);
    assert_eq!(before.len(), 1);
    let crashed = m.call_text(1, "crash", json!({})).await;
    assert!(
        crashed.starts_with("error: the upstream MCP server stopped before answering"),
        "{crashed}"
    );
    // The same session works again once the supervisor has restarted the process.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 2;
    loop {
        let text = m.call_text(n, "echo", json!({"message": "back"})).await;
        if text == "Echo: back" {
            break;
        }
        assert!(Instant::now() < deadline, "not restarted: {text}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = processes_tagged(&tag);
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "a new process");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_outlives_the_upstream_timeout_gets_an_error_that_says_so() {
    let app = spawn_app_with(
        Engine::Sqlite,
        ServeArgs {
            upstream_timeout: Some(1),
            ..Default::default()
        },
    )
    .await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (_, token) = tenant_with_stdio_fixture(&app, &tag).await;
    let mut m = Mcp::new(&app, "acme", "fx", &token);
    m.initialize().await;
    let slow = m.call_text(1, "sleep", json!({"ms": 4000})).await;
    assert_eq!(
        slow,
        "error: the upstream MCP server did not answer within 1s"
    );
    assert_eq!(
        m.call_text(2, "echo", json!({"message": "ok"})).await,
        "Echo: ok"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_servers_get_a_scrubbed_environment_and_stop_with_the_gateway() {
    let app = spawn_app(Engine::Sqlite).await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (_, token) = tenant_with_stdio_fixture(&app, &tag).await;
    let mut m = Mcp::new(&app, "acme", "fx", &token);
    m.initialize().await;
    // This test process has DATABASE-ish and PORTCULLIS_* variables; none reach the server.
    let names: Vec<String> =
        serde_json::from_str(&m.call_text(1, "env_names", json!({})).await).unwrap();
    assert_eq!(names, ["HOME", "LANG", "PATH", "TMPDIR"]);
    assert_eq!(processes_tagged(&tag).len(), 1);
    app.stop().await;
    // Stopping the gateway stopped the process (stdin closed; SIGTERM/SIGKILL if it lingers).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_tagged(&tag).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the stdio server outlived the gateway"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_instances_run_one_process_for_each_user() {
    let app = spawn_app(Engine::Sqlite).await;
    let acme = app.create_tenant("acme").await;
    let tag = uuid::Uuid::new_v4().to_string();
    let mut upstream = stdio_fixture(&tag);
    upstream["instance"] = json!("per_user");
    add_server(&app, "acme", &acme.admin_token, "fx", upstream).await;
    let alice = user_token(&app, "acme", &acme.admin_token, "alice@acme.example").await;
    let bob = user_token(&app, "acme", &acme.admin_token, "bob@acme.example").await;
    for t in [&alice, &alice, &bob] {
        let mut m = Mcp::new(&app, "acme", "fx", t);
        m.initialize().await;
        assert_eq!(
            m.call_text(1, "echo", json!({"message": "x"})).await,
            "Echo: x"
        );
    }
    assert_eq!(
        processes_tagged(&tag).len(),
        2,
        "one for alice (two sessions), one for bob"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stdio_command_gets_a_clear_error_and_nothing_hangs() {
    let app = spawn_app(Engine::Sqlite).await;
    let acme = app.create_tenant("acme").await;
    add_server(
        &app,
        "acme",
        &acme.admin_token,
        "nope",
        json!({"transport": "stdio", "command": "/nonexistent/mcp-server"}),
    )
    .await;
    let token = user_token(&app, "acme", &acme.admin_token, "dev@acme.example").await;
    let m = Mcp::new(&app, "acme", "nope", &token);
    let res = m
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("mcp-session-id").is_none());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], 1);
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("unavailable") && msg.contains("cannot start `/nonexistent/mcp-server`"),
        "{msg}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_runs_a_stdio_server_and_reports_what_it_offers() {
    let app = spawn_app(Engine::Sqlite).await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (admin, _) = tenant_with_stdio_fixture(&app, &tag).await;
    let res = app
        .client
        .post(app.url("/api/v1/servers/fx/test"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let d = &v["discovery"];
    assert_eq!(d["protocol_version"], "2025-11-25");
    assert_eq!(d["server_info"]["name"], "portcullis-everything-fixture");
    let tools = d["tools"].as_array().unwrap();
    let echo = tools.iter().find(|t| t["name"] == "echo").unwrap();
    assert_eq!(echo["read_only"], true);
    let crash = tools.iter().find(|t| t["name"] == "crash").unwrap();
    assert_eq!(crash["destructive"], true);
    assert!(d["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["uri"] == "test://static-text"));
    assert!(d["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "test_simple_prompt"));
    // The discovery process is stopped afterwards.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_tagged(&tag).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the test-connection process lingers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_stdio_server_sees_a_read_only_system_and_not_the_data_dir() {
    // scripts/setup.sh installs bubblewrap; a machine where it cannot run fails here, loudly.
    assert!(
        portcullis::gateway::stdio::sandbox_available(),
        "bubblewrap (bwrap) cannot run a sandbox on this machine"
    );
    // The sandbox gives the server a private /tmp: the fixture's SDK (the npm tools dir) must
    // live elsewhere, as it does by default (~/.cache/portcullis/tools).
    let tools = crate::conformance::tools_dir();
    assert!(
        !tools.starts_with("/tmp"),
        "PORTCULLIS_TOOLS={} is under /tmp, which the sandbox hides; use a directory elsewhere",
        tools.display()
    );
    // A data directory outside /tmp, so that only the sandbox's own rule can hide it.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let app = crate::helpers::spawn_app_in(Engine::Sqlite, ServeArgs::default(), dir).await;
    let acme = app.create_tenant("acme").await;
    let fixtures = fixture_path("");
    for (slug, sandbox) in [("boxed", true), ("open", false)] {
        let mut upstream = stdio_fixture(slug);
        upstream["sandbox"] = json!(sandbox);
        upstream["cwd"] = json!(std::fs::canonicalize(&fixtures).unwrap());
        add_server(&app, "acme", &acme.admin_token, slug, upstream).await;
    }
    let token = user_token(&app, "acme", &acme.admin_token, "dev@acme.example").await;
    let db = app.data_dir.join("portcullis.db");
    let db = db.to_str().unwrap();
    let probe = |write: bool, path: &str| json!({"path": path, "write": write});
    let host_tmp = format!("/tmp/portcullis-probe-{}", uuid::Uuid::new_v4());

    let mut open = Mcp::new(&app, "acme", "open", &token);
    open.initialize().await;
    let seen = open.call_text(1, "probe_path", probe(false, db)).await;
    assert!(
        seen.starts_with("read "),
        "unsandboxed, the probe reads the database: {seen}"
    );

    let mut boxed = Mcp::new(&app, "acme", "boxed", &token);
    boxed.initialize().await;
    assert_eq!(
        boxed.call_text(1, "probe_path", probe(false, db)).await,
        "error ENOENT"
    );
    assert_eq!(
        boxed
            .call_text(2, "probe_path", probe(true, "/etc/portcullis-probe"))
            .await,
        "error EROFS"
    );
    assert_eq!(
        boxed
            .call_text(3, "probe_path", probe(true, &host_tmp))
            .await,
        "wrote"
    );
    assert!(
        !std::path::Path::new(&host_tmp).exists(),
        "the sandbox's /tmp is its own"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_body_limit_is_configurable_and_answered_with_413() {
    let app = spawn_app_with(
        Engine::Sqlite,
        ServeArgs {
            gateway_max_body: Some(4096),
            ..Default::default()
        },
    )
    .await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (_, token) = tenant_with_stdio_fixture(&app, &tag).await;
    let mut m = Mcp::new(&app, "acme", "fx", &token);
    m.initialize().await;
    let fits = "a".repeat(3000);
    assert_eq!(
        m.call_text(1, "echo", json!({"message": fits})).await,
        format!("Echo: {fits}")
    );
    let big = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "a".repeat(5000)}}});
    let res = m.post(&big).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32600);
    // The session is unharmed.
    assert_eq!(
        m.call_text(3, "echo", json!({"message": "ok"})).await,
        "Echo: ok"
    );
    app.stop().await;

    // The default (4 MiB) takes messages larger than the JSON API's 1 MiB.
    let app = spawn_app(Engine::Sqlite).await;
    let (_, token) = tenant_with_stdio_fixture(&app, &tag).await;
    let mut m = Mcp::new(&app, "acme", "fx", &token);
    m.initialize().await;
    let large = "b".repeat(2 * 1024 * 1024);
    let echoed = m.call_text(1, "echo", json!({"message": large})).await;
    assert_eq!(echoed.len(), large.len() + "Echo: ".len());
    app.stop().await;
}

/// A 2026-07-28 request: `_meta` and routing headers as a modern client sends them.
fn modern_request(
    m: &Mcp<'_>,
    id: i64,
    method: &str,
    mut params: Value,
    capabilities: Value,
) -> reqwest::RequestBuilder {
    params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2026-07-28");
    params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = capabilities;
    params["_meta"]["io.modelcontextprotocol/clientInfo"] =
        json!({"name": "rust-test", "version": "0"});
    let mut r = m
        .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = params
        .get("name")
        .or_else(|| params.get("uri"))
        .and_then(Value::as_str)
    {
        r = r.header("mcp-name", name);
    }
    r
}

async fn modern_json(r: reqwest::RequestBuilder) -> (StatusCode, Vec<Value>) {
    let res = r.send().await.unwrap();
    let status = res.status();
    let ct = res.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
    (status, messages(&ct, &res.text().await.unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stateless_era_is_served_in_front_of_a_stdio_server() {
    let app = spawn_app(Engine::Sqlite).await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (admin, token) = tenant_with_stdio_fixture(&app, &tag).await;
    let m = Mcp::new(&app, "acme", "fx", &token);
    let none = json!({});

    let (status, msgs) = modern_json(modern_request(
        &m,
        1,
        "server/discover",
        json!({}),
        none.clone(),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    let d = &msgs[0]["result"];
    assert_eq!(d["resultType"], "complete");
    assert!(d["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("2026-07-28")));
    assert!(d["capabilities"]["tools"].is_object());
    assert_eq!(
        d["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "portcullis-everything-fixture"
    );
    assert_eq!(
        (d["ttlMs"].clone(), d["cacheScope"].clone()),
        (json!(0), json!("private"))
    );

    let (_, msgs) = modern_json(modern_request(&m, 2, "tools/list", json!({}), none.clone())).await;
    let r = &msgs[0]["result"];
    assert_eq!(
        (
            r["resultType"].clone(),
            r["ttlMs"].clone(),
            r["cacheScope"].clone()
        ),
        (json!("complete"), json!(0), json!("private"))
    );
    assert!(r["tools"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "echo"));
    let (_, msgs) = modern_json(modern_request(
        &m,
        3,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "now"}}),
        none.clone(),
    ))
    .await;
    assert_eq!(msgs[0]["id"], 3);
    assert_eq!(msgs[0]["result"]["resultType"], "complete");
    assert_eq!(msgs[0]["result"]["content"][0]["text"], "Echo: now");
    assert!(
        msgs[0]["result"].get("ttlMs").is_none(),
        "tool results are not cacheable"
    );

    // Progress streams back on the request's own SSE stream, then the result.
    let (_, msgs) = modern_json(modern_request(&m, 4, "tools/call",
        json!({"name": "progress_steps", "arguments": {"steps": 2}, "_meta": {"progressToken": "p"}}),
        none.clone())).await;
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert_eq!(msgs[1]["params"]["progressToken"], "p");
    assert_eq!(msgs[2]["result"]["content"][0]["text"], "done 2");

    // What the era requires of requests, with the request's id in every error.
    let bare = m
        .post(
            &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}}),
        )
        .header("mcp-protocol-version", "2026-07-28");
    let (status, msgs) = modern_json(bare).await;
    assert_eq!(
        (
            status,
            msgs[0]["error"]["code"].clone(),
            msgs[0]["id"].clone()
        ),
        (StatusCode::BAD_REQUEST, json!(-32020), json!(5))
    );
    let no_caps = m
        .post(
            &json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}),
        )
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list");
    let (status, msgs) = modern_json(no_caps).await;
    assert_eq!(
        (status, msgs[0]["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(-32602))
    );
    for removed in [
        "ping",
        "initialize",
        "logging/setLevel",
        "resources/subscribe",
    ] {
        let (status, msgs) =
            modern_json(modern_request(&m, 7, removed, json!({}), none.clone())).await;
        assert_eq!(
            (status, msgs[0]["error"]["code"].clone()),
            (StatusCode::NOT_FOUND, json!(-32601)),
            "{removed}"
        );
    }
    let unsupported = m
        .post(&json!({"jsonrpc": "2.0", "id": 8, "method": "server/discover", "params": {}}))
        .header("mcp-protocol-version", "v999");
    let (status, msgs) = modern_json(unsupported).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(msgs[0]["id"], 8);
    assert_eq!(msgs[0]["error"]["code"], -32022);
    assert_eq!(msgs[0]["error"]["data"]["requested"], "v999");
    let get = m
        .get()
        .header("mcp-protocol-version", "2026-07-28")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.headers()["allow"], "POST");

    // A tool that asks the client for sampling: without the capability the client is never
    // asked; with it, an input_required result, then the retry completes the call.
    let ask = json!({"name": "test_sampling", "arguments": {"prompt": "2+2?"}});
    let (_, msgs) = modern_json(modern_request(
        &m,
        9,
        "tools/call",
        ask.clone(),
        none.clone(),
    ))
    .await;
    assert_ne!(
        msgs.last().unwrap()["result"]["resultType"],
        "input_required",
        "{msgs:?}"
    );
    let sampling = json!({"sampling": {}});
    let (_, msgs) = modern_json(modern_request(
        &m,
        10,
        "tools/call",
        ask.clone(),
        sampling.clone(),
    ))
    .await;
    let r = &msgs.last().unwrap()["result"];
    assert_eq!(r["resultType"], "input_required", "{msgs:?}");
    let state = r["requestState"].as_str().unwrap().to_owned();
    let (key, input) = r["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(input["method"], "sampling/createMessage");
    assert_eq!(input["params"]["messages"][0]["content"]["text"], "2+2?");
    let mut retry = ask.clone();
    retry["requestState"] = json!(state);
    retry["inputResponses"] = json!({ key.clone(): {"role": "assistant", "model": "m",
        "content": {"type": "text", "text": "4"}, "stopReason": "endTurn"}});
    // Another user cannot pick the call up.
    let other = user_token(&app, "acme", &admin, "other@acme.example").await;
    let thief = Mcp::new(&app, "acme", "fx", &other);
    let (status, msgs) = modern_json(modern_request(
        &thief,
        11,
        "tools/call",
        retry.clone(),
        sampling.clone(),
    ))
    .await;
    assert_eq!(
        (status, msgs[0]["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(-32602))
    );
    let (_, msgs) = modern_json(modern_request(
        &m,
        12,
        "tools/call",
        retry.clone(),
        sampling.clone(),
    ))
    .await;
    let done = msgs.last().unwrap();
    assert_eq!(done["id"], 12);
    assert_eq!(done["result"]["resultType"], "complete");
    assert_eq!(done["result"]["content"][0]["text"], "LLM response: 4");
    // A requestState is good once.
    let (status, _) = modern_json(modern_request(&m, 13, "tools/call", retry, sampling)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_listen_streams_resource_updates_with_the_subscription_id() {
    use futures_util::StreamExt;
    let app = spawn_app(Engine::Sqlite).await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (_, token) = tenant_with_stdio_fixture(&app, &tag).await;
    let m = Mcp::new(&app, "acme", "fx", &token);
    let res = modern_request(
        &m,
        41,
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true,
                                 "resourceSubscriptions": ["test://watched-resource"]}}),
        json!({}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[CONTENT_TYPE], "text/event-stream");
    let mut body = res.bytes_stream();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen: Vec<Value> = Vec::new();
    while !seen
        .iter()
        .any(|m| m["method"] == "notifications/resources/updated")
    {
        let chunk = tokio::time::timeout_at(deadline.into(), body.next())
            .await
            .expect("a resource update within 15 s")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            seen.extend(messages("text/event-stream", &event));
        }
    }
    assert_eq!(
        seen[0]["method"],
        "notifications/subscriptions/acknowledged"
    );
    assert_eq!(
        seen[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        41
    );
    assert_eq!(
        seen[0]["params"]["notifications"],
        json!({"toolsListChanged": true, "resourceSubscriptions": ["test://watched-resource"]})
    );
    // Then what the client opted into (the fixture adds a tool two seconds after it starts,
    // and updates the watched resource every three), each tagged with the subscription.
    for m in &seen[1..] {
        assert!(
            m["method"] == "notifications/resources/updated"
                || m["method"] == "notifications/tools/list_changed",
            "{m}"
        );
        assert_eq!(
            m["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
            41
        );
    }
    assert_eq!(
        seen.last().unwrap()["params"]["uri"],
        "test://watched-resource"
    );
    drop(body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_request_is_cancelled_upstream_and_its_stream_ends() {
    let app = spawn_app(Engine::Sqlite).await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (_, token) = tenant_with_stdio_fixture(&app, &tag).await;
    let mut m = Mcp::new(&app, "acme", "fx", &token);
    m.initialize().await;
    let slow = m
        .post(
            &json!({"jsonrpc": "2.0", "id": "slow-1", "method": "tools/call",
            "params": {"name": "sleep", "arguments": {"ms": 30000}}}),
        )
        .send();
    let slow = tokio::spawn(slow);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let res = m
        .post(
            &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": "slow-1", "reason": "user pressed stop"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // The waiting POST ends now, not after 30 s (its answer, if read, is a cancellation).
    let answer = slow.await.unwrap().unwrap();
    let ct = answer.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
    let msgs = messages(&ct, &answer.text().await.unwrap());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(msgs.last().unwrap()["error"]["code"], -32800);
    // The upstream got the cancellation under its own id for the request.
    assert_eq!(m.call_text(2, "cancelled_sleeps", json!({})).await, "1");
    // Cancelling something already answered changes nothing.
    let res = m
        .post(
            &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 2}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(
        m.call_text(3, "echo", json!({"message": "still here"}))
            .await,
        "Echo: still here"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_clients_negotiate_their_own_revision() {
    let app = spawn_app(Engine::Sqlite).await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (_, token) = tenant_with_stdio_fixture(&app, &tag).await;
    for (asked, agreed) in [
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2024-11-05", "2024-11-05"),
        ("2099-01-01", "2025-11-25"),
    ] {
        let mut m = Mcp::new(&app, "acme", "fx", &token);
        let res = m
            .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "old", "version": "0"}}}))
            .send()
            .await
            .unwrap();
        m.sid = Some(res.headers()["mcp-session-id"].to_str().unwrap().to_owned());
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["result"]["protocolVersion"], agreed, "{asked}");
        // 2025-03-26 clients send no MCP-Protocol-Version header; that is fine.
        assert_eq!(m.call_text(2, "add", json!({"a": 1, "b": 2})).await, "3");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_cannot_open_sessions_without_bound() {
    use portcullis::gateway::session::MAX_SESSIONS_PER_USER;
    let app = spawn_app(Engine::Sqlite).await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (admin, token) = tenant_with_stdio_fixture(&app, &tag).await;
    let mut first = None;
    for _ in 0..MAX_SESSIONS_PER_USER {
        let mut m = Mcp::new(&app, "acme", "fx", &token);
        m.initialize().await;
        first.get_or_insert(m.sid.clone());
    }
    let init = json!({"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let m = Mcp::new(&app, "acme", "fx", &token);
    let res = m.post(&init).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another user is not affected; ending a session makes room again.
    let other = user_token(&app, "acme", &admin, "other@acme.example").await;
    Mcp::new(&app, "acme", "fx", &other).initialize().await;
    let del = app
        .client
        .delete(app.url("/mcp/fx"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(&token)
        .header("mcp-session-id", first.flatten().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::OK);
    Mcp::new(&app, "acme", "fx", &token).initialize().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_working_directory_cannot_bring_the_data_dir_back() {
    assert!(portcullis::gateway::stdio::sandbox_available());
    // The data directory inside the server's working directory (the fixtures dir, which the
    // sandbox binds read-only so that the fixture can run from a checkout under /tmp too).
    let fixtures = std::fs::canonicalize(fixture_path("")).unwrap();
    let dir = tempfile::Builder::new()
        .prefix(".pc-test-data-")
        .tempdir_in(&fixtures)
        .unwrap();
    let app = crate::helpers::spawn_app_in(Engine::Sqlite, ServeArgs::default(), dir).await;
    let acme = app.create_tenant("acme").await;
    let tag = uuid::Uuid::new_v4().to_string();
    let mut upstream = stdio_fixture(&tag);
    upstream["sandbox"] = json!(true);
    upstream["cwd"] = json!(fixtures);
    add_server(&app, "acme", &acme.admin_token, "boxed", upstream).await;
    let token = user_token(&app, "acme", &acme.admin_token, "dev@acme.example").await;
    let mut m = Mcp::new(&app, "acme", "boxed", &token);
    m.initialize().await;
    let db = app.data_dir.join("portcullis.db");
    let seen = m
        .call_text(1, "probe_path", json!({"path": db.to_str().unwrap()}))
        .await;
    assert_eq!(seen, "error ENOENT");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamable_http_upstream_session_belongs_to_the_user_who_opened_it() {
    let upstream = crate::conformance::fixture("http").await;
    let app = spawn_app(Engine::Sqlite).await;
    let acme = app.create_tenant("acme").await;
    add_server(
        &app,
        "acme",
        &acme.admin_token,
        "remote",
        json!({"transport": "streamable_http", "url": upstream.url}),
    )
    .await;
    let alice = user_token(&app, "acme", &acme.admin_token, "alice@acme.example").await;
    let bob = user_token(&app, "acme", &acme.admin_token, "bob@acme.example").await;
    let mut a = Mcp::new(&app, "acme", "remote", &alice);
    a.initialize().await;
    assert_eq!(
        a.call_text(1, "echo", json!({"message": "mine"})).await,
        "Echo: mine"
    );
    // Bob presents Alice's upstream session id: the gateway never lets it through.
    let mut b = Mcp::new(&app, "acme", "remote", &bob);
    b.sid = a.sid.clone();
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    assert_eq!(
        b.post(&ping).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // An id the gateway never handed out: 404 as well.
    b.sid = Some("made-up".into());
    assert_eq!(
        b.post(&ping).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // Alice goes on; after her DELETE the id is gone for her too.
    assert_eq!(
        a.call_text(3, "echo", json!({"message": "still"})).await,
        "Echo: still"
    );
    let del = app
        .client
        .delete(app.url("/mcp/remote"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(&alice)
        .header("mcp-session-id", a.sid.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert!(del.status().is_success());
    assert_eq!(
        a.post(&ping).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

/// Tenant `acme` with one stdio fixture server per slug, all granted to everyone (registry
/// `all`): its admin token.
pub async fn acme_with_fixtures(app: &TestApp, slugs: &[&str]) -> String {
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.clone();
    for slug in slugs {
        let tag = uuid::Uuid::new_v4().to_string();
        crate::gateway::add_server_ungranted(app, "acme", &admin, slug, stdio_fixture(&tag)).await;
    }
    let (s, v) = crate::access::api(
        app,
        &admin,
        reqwest::Method::POST,
        "/api/v1/registries",
        Some(json!({"slug": "all", "servers": slugs, "grants": [{"subject": "everyone"}]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    admin
}
