//! Replicas act as one: three servers on one database; a policy change, a revocation and a
//! deactivation made through one replica hold on the others within a second (NOTIFY on
//! PostgreSQL, the counter poll on SQLite), with the full periodic rebuild behind both.

use crate::access::api;
use crate::gateway::{add_server, start_fixture, user_token};
use crate::gateway_sessions::{processes_tagged, stdio_fixture, Mcp};
use crate::helpers::{spawn_app, Engine, TestApp};
use crate::on_both_engines;
use reqwest::header::HOST;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

on_both_engines!(
    changes_made_on_one_replica_hold_on_every_other_within_a_second,
    a_session_goes_on_through_another_replica,
    a_session_of_the_gateways_own_goes_on_through_another_replica,
);

/// The HTTP status of an `initialize` by `token` on `app`.
async fn status_on(app: &TestApp, token: &str) -> StatusCode {
    app.client
        .post(app.url("/mcp/crm"))
        .header(HOST, app.host(Some("acme")))
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(token)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "rust-test", "version": "0"}}}))
        .send()
        .await
        .unwrap()
        .status()
}

/// Waits until `ok(i)` holds for every replica `i` in `0..n`; how long that took. Fails after
/// 5 s (the bound claimed is one second; the margin is for a loaded machine).
async fn on_every_replica<F, Fut>(n: usize, ok: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let mut pending: Vec<usize> = (0..n).collect();
    loop {
        let mut still = Vec::new();
        for i in pending {
            if !ok(i).await {
                still.push(i);
            }
        }
        pending = still;
        if pending.is_empty() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "replicas {pending:?} did not follow within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn changes_made_on_one_replica_hold_on_every_other_within_a_second(engine: Engine) {
    let py = start_fixture().await;
    let a = spawn_app(engine).await;
    let acme = a.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    add_server(
        &a,
        "acme",
        admin,
        "crm",
        json!({"transport": "streamable_http", "url": format!("http://127.0.0.1:{}/mcp", py.port)}),
    )
    .await;
    let dev = user_token(&a, "acme", admin, "dev@acme.example").await;
    let ops = user_token(&a, "acme", admin, "ops@acme.example").await;
    let b = a.replica().await;
    let c = a.replica().await;
    let others = [&b, &c];

    // Everything made on `a` before they started is there on the others: a session on each.
    let mut sessions = Vec::new();
    for r in others {
        let mut m = Mcp::new(r, "acme", "crm", &dev);
        m.initialize().await;
        assert_eq!(m.call_text(2, "add", json!({"a": 2, "b": 3})).await, "5");
        sessions.push(m);
    }

    // A policy change on `a`: a rule denying `add`.
    let (_, reg) = api(&a, admin, Method::GET, "/api/v1/registries/all-crm", None).await;
    let grant = reg["grants"][0]["id"].as_str().unwrap().to_owned();
    let (s, v) = api(
        &a,
        admin,
        Method::PUT,
        &format!("/api/v1/registries/all-crm/grants/{grant}"),
        Some(json!({"rules": [{"effect": "deny", "match": "add"}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let policy = on_every_replica(others.len(), |i| {
        let m = &sessions[i];
        async move {
            m.call_text(3, "add", json!({"a": 1, "b": 1}))
                .await
                .starts_with("error: Unknown tool")
        }
    })
    .await;

    // A revocation on `a`: dev's token is refused everywhere.
    let (s, v) = api(
        &a,
        admin,
        Method::POST,
        "/api/v1/tokens/revoke",
        Some(json!({ "token": dev })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let revocation = on_every_replica(others.len(), |i| {
        let (r, dev) = (others[i], dev.clone());
        async move { status_on(r, &dev).await == StatusCode::UNAUTHORIZED }
    })
    .await;

    // A deactivation on `a`: ops is refused everywhere.
    let (_, users) = api(&a, admin, Method::GET, "/api/v1/users", None).await;
    let ops_id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "ops@acme.example")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = api(
        &a,
        admin,
        Method::PATCH,
        &format!("/api/v1/users/{ops_id}"),
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let deactivation = on_every_replica(others.len(), |i| {
        let (r, ops) = (others[i], ops.clone());
        async move { !status_on(r, &ops).await.is_success() }
    })
    .await;
    eprintln!(
        "followed on both other replicas after: policy {policy:?}, revocation {revocation:?}, deactivation {deactivation:?}"
    );
    for (what, took) in [
        ("policy", policy),
        ("revocation", revocation),
        ("deactivation", deactivation),
    ] {
        assert!(
            took < Duration::from_secs(3),
            "{what} took {took:?} to reach every replica"
        );
    }
    b.stop().await;
    c.stop().await;
}

/// A Streamable HTTP session (the session lives at the upstream) opened through one replica
/// goes on through another — also after the first one stopped — without initializing again;
/// another user cannot take it there; once the client ends it, no replica carries it on.
async fn a_session_goes_on_through_another_replica(engine: Engine) {
    let py = start_fixture().await;
    let a = spawn_app(engine).await;
    let acme = a.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    add_server(
        &a,
        "acme",
        admin,
        "crm",
        json!({"transport": "streamable_http", "url": format!("http://127.0.0.1:{}/mcp", py.port)}),
    )
    .await;
    let dev = user_token(&a, "acme", admin, "dev@acme.example").await;
    let ops = user_token(&a, "acme", admin, "ops@acme.example").await;
    let b = a.replica().await;
    let c = a.replica().await;

    // Opened through `b` (the first server, `a`, holds the test's database: it stays).
    let mut on_b = Mcp::new(&b, "acme", "crm", &dev);
    on_b.initialize().await;
    assert_eq!(on_b.call_text(1, "add", json!({"a": 1, "b": 2})).await, "3");
    let on_c = on_b.via(&c, "acme");
    let on_a = on_b.via(&a, "acme");
    drop(on_b);
    assert_eq!(on_c.call_text(2, "add", json!({"a": 2, "b": 2})).await, "4");
    b.stop().await;
    assert_eq!(on_c.call_text(3, "add", json!({"a": 3, "b": 2})).await, "5");
    refused_to_others_and_gone_once_ended(&a, &on_c, &on_a, &ops, "http").await;
    c.stop().await;
}

/// The id alone is not enough: another user's token with it is refused (through `a`); once the
/// client ends the session through `on_c`, `on_a` does not carry it on either.
async fn refused_to_others_and_gone_once_ended(
    a: &TestApp,
    on_c: &Mcp<'_>,
    on_a: &Mcp<'_>,
    other: &str,
    what: &str,
) {
    let mut stolen = on_c.via(a, "acme");
    stolen.set_token(other);
    let res = stolen
        .post(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "{what}");
    let res = on_c.delete().send().await.unwrap();
    assert!(res.status().is_success(), "{what}: {}", res.status());
    let res = on_a
        .post(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "{what}");
}

/// A session of the gateway's own session layer — a stdio upstream it runs, and a legacy SSE
/// upstream it holds a connection to — opened through one replica goes on through another after
/// the first stopped, without initializing again: the other replica starts its own process (or
/// connection) for it. Another user's token with the id is refused; once ended, it is gone.
async fn a_session_of_the_gateways_own_goes_on_through_another_replica(engine: Engine) {
    let sse = crate::conformance::fixture("sse").await;
    let a = spawn_app(engine).await;
    let acme = a.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    let tag = format!("replicas-{}", uuid::Uuid::new_v4().simple());
    add_server(&a, "acme", admin, "local", stdio_fixture(&tag)).await;
    add_server(
        &a,
        "acme",
        admin,
        "old",
        json!({"transport": "sse", "url": sse.url}),
    )
    .await;
    let dev = user_token(&a, "acme", admin, "dev@acme.example").await;
    let ops = user_token(&a, "acme", admin, "ops@acme.example").await;
    let b = a.replica().await;
    let c = a.replica().await;

    let mut sessions = Vec::new();
    for server in ["local", "old"] {
        let mut on_b = Mcp::new(&b, "acme", server, &dev);
        on_b.initialize().await;
        assert_eq!(on_b.call_text(1, "add", json!({"a": 1, "b": 2})).await, "3");
        sessions.push((server, on_b.via(&c, "acme"), on_b.via(&a, "acme")));
    }
    // Only `b` runs the stdio process so far.
    assert_eq!(processes_tagged(&tag).len(), 1, "one process, on b");
    b.stop().await;
    for (server, on_c, _) in &sessions {
        assert_eq!(
            on_c.call_text(2, "add", json!({"a": 2, "b": 2})).await,
            "4",
            "{server} goes on through c"
        );
        let msgs = on_c.request(json!(3), "tools/list", json!({})).await;
        assert!(
            msgs.last().unwrap()["result"]["tools"]
                .as_array()
                .is_some_and(|t| !t.is_empty()),
            "{server}: {msgs:?}"
        );
    }
    // c started its own process; b's ended with b.
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_tagged(&tag).len() != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(processes_tagged(&tag).len(), 1, "one process, on c");

    for (server, on_c, on_a) in &sessions {
        refused_to_others_and_gone_once_ended(&a, on_c, on_a, &ops, server).await;
    }
    c.stop().await;
}
