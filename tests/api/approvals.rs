//! Human approval for tool calls: a covered call waits until an approver decides (API here,
//! the console in the browser tests); no decision in time is a denial; everything is recorded.

use crate::access::api;
use crate::gateway::user_token;
use crate::gateway_sessions::Mcp;
use crate::helpers::{spawn_app, Engine, TestApp};
use crate::on_both_engines;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_engines!(covered_calls_wait_for_an_approver_and_time_out_denied);

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
