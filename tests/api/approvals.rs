//! Human approval for tool calls: a covered call waits until an approver decides (API here,
//! the console in the browser tests); no decision in time is a denial; everything is recorded.

use crate::access::api;
use crate::gateway::user_token;
use crate::gateway_sessions::Mcp;
use crate::helpers::{spawn_app, Engine, TestApp};
use crate::on_both_engines;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_engines!(
    covered_calls_wait_for_an_approver_and_time_out_denied,
    clients_that_can_be_asked_decide_through_elicitation,
);

async fn pending(app: &TestApp, admin: &str) -> Vec<Value> {
    let (_, v) = api(app, admin, Method::GET, "/api/v1/approvals", None).await;
    v["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "pending")
        .cloned()
        .collect()
}

async fn covered_calls_wait_for_an_approver_and_time_out_denied(engine: Engine) {
    let app = spawn_app(engine).await;
    let admin = crate::gateway_sessions::acme_with_fixtures(&app, &["fx"]).await;
    let admin = admin.as_str();
    for bad in [
        json!({"applies": "sometimes"}),
        json!({"timeout_secs": 0}),
        json!({"tool": "[unclosed"}),
    ] {
        let (s, v) = api(
            &app,
            admin,
            Method::POST,
            "/api/v1/approvals/rules",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    let (s, rule) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/approvals/rules",
        Some(json!({"server": "fx", "tool": "ech*", "applies": "always", "timeout_secs": 2})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{rule}");

    let dev = user_token(&app, "acme", admin, "dev@acme.example").await;
    let mut m = Mcp::new(&app, "acme", "fx", &dev);
    m.initialize().await;
    // Not covered: answered at once.
    assert_eq!(m.call_text(2, "add", json!({"a": 1, "b": 2})).await, "3");

    // Covered: waits; the approver approves; the call completes.
    let call = {
        let req = m.post(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "approved"}}}));
        tokio::spawn(async move { req.send().await.unwrap().text().await.unwrap() })
    };
    let mut waiting = Vec::new();
    for _ in 0..40 {
        waiting = pending(&app, admin).await;
        if !waiting.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(waiting.len(), 1, "one pending request");
    assert_eq!(waiting[0]["tool"], "echo");
    assert_eq!(waiting[0]["user"], "dev@acme.example");
    assert!(!call.is_finished(), "the call waits for the decision");
    let id = waiting[0]["id"].as_str().unwrap();
    let (s, _) = api(
        &app,
        admin,
        Method::POST,
        &format!("/api/v1/approvals/{id}/approve"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let answer = call.await.unwrap();
    assert!(answer.contains("Echo: approved"), "{answer}");
    let (s, _) = api(
        &app,
        admin,
        Method::POST,
        &format!("/api/v1/approvals/{id}/deny"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "already decided");

    // Denied by the approver.
    let call = {
        let req = m.post(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "no"}}}));
        tokio::spawn(async move { req.send().await.unwrap().json::<Value>().await.unwrap() })
    };
    let mut waiting = Vec::new();
    for _ in 0..40 {
        waiting = pending(&app, admin).await;
        if !waiting.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let id = waiting[0]["id"].as_str().unwrap();
    api(
        &app,
        admin,
        Method::POST,
        &format!("/api/v1/approvals/{id}/deny"),
        None,
    )
    .await;
    let answer = call.await.unwrap();
    assert_eq!(answer["id"], 4);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("denied by"),
        "{answer}"
    );

    // Nobody decides: denied after the rule's timeout.
    let started = std::time::Instant::now();
    let text = m.call_text(5, "echo", json!({"message": "late"})).await;
    assert!(text.contains("not approved within 2 s"), "{text}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));

    // On the record: each request and decision, and the calls' fate.
    let (_, v) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/audit?action=approval.*&limit=100",
        None,
    )
    .await;
    let actions: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "approval.request",
        "approval.approve",
        "approval.deny",
        "approval.expire",
        "approval.decide",
    ] {
        assert!(actions.contains(&a), "{a}: {actions:?}");
    }
    let (_, v) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/audit?method=tools/call&limit=100",
        None,
    )
    .await;
    let outcomes: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.contains(&"approval_denied") && outcomes.contains(&"approval_timeout"),
        "{outcomes:?}"
    );
    let (s, _) = api(
        &app,
        admin,
        Method::DELETE,
        &format!(
            "/api/v1/approvals/rules/{}",
            rule["rule_id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        m.call_text(6, "echo", json!({"message": "free"})).await,
        "Echo: free"
    );
    app.stop().await;
}

/// An MCP session whose client declares elicitation (raw HTTP, every message visible).
async fn eliciting_session<'a>(app: &'a TestApp, server: &str, token: &str) -> Mcp<'a> {
    let mut m = Mcp::new(app, "acme", server, token);
    let res = m
        .post(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {"form": {}}},
            "clientInfo": {"name": "asking-client", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    m.sid = Some(res.headers()["mcp-session-id"].to_str().unwrap().to_owned());
    let _ = res.text().await;
    let res = m
        .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    m
}

/// Reads SSE events from `stream` until one satisfies `want`.
async fn next_event(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin),
    buf: &mut String,
    want: impl Fn(&Value) -> bool,
) -> Value {
    use futures_util::StreamExt;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .collect();
            if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
                if want(&v) {
                    return v;
                }
            }
        }
        assert!(std::time::Instant::now() < deadline, "no such event: {buf}");
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), stream.next())
            .await
            .expect("the stream goes on")
            .expect("the stream is not over")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// One covered call through a client that can be asked: the question arrives on the call's
/// stream, `answer` is posted back, and the call's final message is returned.
async fn asked_call(
    m: &Mcp<'_>,
    id: i64,
    tool: &str,
    args: Value,
    answer: Value,
) -> (Value, Value) {
    let res = m
        .post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": args}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = res.bytes_stream();
    let mut buf = String::new();
    let question = next_event(&mut stream, &mut buf, |v| {
        v["method"] == "elicitation/create"
    })
    .await;
    let qid = question["id"].as_str().unwrap().to_owned();
    assert!(qid.starts_with("portcullis-approval-"), "{question}");
    let reply = m
        .post(&json!({"jsonrpc": "2.0", "id": qid, "result": answer}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::ACCEPTED);
    let last = next_event(&mut stream, &mut buf, |v| v["id"] == json!(id)).await;
    (question, last)
}

async fn clients_that_can_be_asked_decide_through_elicitation(engine: Engine) {
    let py = crate::gateway::start_fixture().await;
    let app = spawn_app(engine).await;
    let admin = crate::gateway_sessions::acme_with_fixtures(&app, &["fx"]).await;
    let admin = admin.as_str();
    crate::gateway::add_server(
        &app,
        "acme",
        admin,
        "py",
        json!({"transport": "streamable_http", "url": format!("http://127.0.0.1:{}/mcp", py.port)}),
    )
    .await;
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/approvals/rules",
        Some(json!({"server": "*", "tool": "echo", "applies": "always", "timeout_secs": 30})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/approvals/rules",
        Some(json!({"server": "py", "tool": "add", "applies": "always", "timeout_secs": 30})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let dev = user_token(&app, "acme", admin, "dev@acme.example").await;
    let eve = user_token(&app, "acme", admin, "eve@acme.example").await;

    // The gateway's own session layer (a stdio server): approved in the client.
    let m = eliciting_session(&app, "fx", &dev).await;
    let (question, last) = asked_call(
        &m,
        1,
        "echo",
        json!({"message": "asked"}),
        json!({"action": "accept", "content": {"approve": true}}),
    )
    .await;
    let text = question["params"]["message"].as_str().unwrap();
    assert!(text.contains("echo on fx"), "{text}");
    assert_eq!(
        question["params"]["requestedSchema"]["properties"]["approve"]["type"],
        "boolean"
    );
    assert_eq!(
        last["result"]["content"][0]["text"], "Echo: asked",
        "{last}"
    );
    // Declined in the client: denied.
    let (_, last) = asked_call(
        &m,
        2,
        "echo",
        json!({"message": "no"}),
        json!({"action": "decline"}),
    )
    .await;
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("denied by dev@acme.example (in their MCP client)"),
        "{last}"
    );

    // A proxied Streamable HTTP server: approved in the client, the upstream's answer follows.
    let p = eliciting_session(&app, "py", &dev).await;
    let (_, last) = asked_call(
        &p,
        3,
        "add",
        json!({"a": 20, "b": 22}),
        json!({"action": "accept", "content": {"approve": true}}),
    )
    .await;
    assert_eq!(last["result"]["content"][0]["text"], "42", "{last}");

    // Someone else cannot answer dev's question.
    let res = m
        .post(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "eve tries"}}}))
        .send()
        .await
        .unwrap();
    let mut stream = res.bytes_stream();
    let mut buf = String::new();
    let question = next_event(&mut stream, &mut buf, |v| {
        v["method"] == "elicitation/create"
    })
    .await;
    let e = Mcp::new(&app, "acme", "fx", &eve);
    let res = e
        .post(&json!({"jsonrpc": "2.0", "id": question["id"],
            "result": {"action": "accept", "content": {"approve": true}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // The console's approver may still decide it.
    let (_, v) = api(&app, admin, Method::GET, "/api/v1/approvals", None).await;
    let id = v["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["status"] == "pending")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = api(
        &app,
        admin,
        Method::POST,
        &format!("/api/v1/approvals/{id}/approve"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let last = next_event(&mut stream, &mut buf, |v| v["id"] == json!(9)).await;
    assert_eq!(last["result"]["content"][0]["text"], "Echo: eve tries");

    // A real client (the official Python SDK) with an elicitation handler approves its call.
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(crate::gateway::python())
            .arg(crate::gateway::fixture_path("approving_client.py"))
            .arg(app.url("/mcp/fx"))
            .arg(&dev)
            .arg(app.host(Some("acme")))
            .arg("echo")
            .arg(r#"{"message": "sdk approved"}"#)
            .output(),
    )
    .await
    .expect("the client finishes")
    .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        seen["asked"][0].as_str().unwrap().contains("echo on fx"),
        "{seen}"
    );
    assert_eq!(seen["content"], json!(["Echo: sdk approved"]), "{seen}");

    // On the record: approved in the client, by whom.
    let (_, v) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/audit?action=approval.approve&limit=100",
        None,
    )
    .await;
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"]["decided_by"] == "dev@acme.example (in their MCP client)"),
        "{v}"
    );
    app.stop().await;
}
