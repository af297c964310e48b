//! Rate limits and quotas at the gateway: requests per minute per user, concurrent calls of a
//! tool, a daily quota on a server; over a limit the call gets 429 with Retry-After and a
//! JSON-RPC error saying when to retry, and the throttle is on the record.

use crate::access::api;
use crate::gateway::user_token;
use crate::gateway_sessions::Mcp;
use crate::helpers::{spawn_app, Engine};
use crate::on_both_engines;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_engines!(calls_over_a_limit_are_refused_with_when_to_retry);

/// Two replicas on one PostgreSQL database share their counts: a daily quota of 4 holds across
/// both (within about a second of each other's counting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_replicas() {
    let a = crate::helpers::spawn_app(Engine::Postgres).await;
    let admin = crate::gateway_sessions::acme_with_fixtures(&a, &["fx"]).await;
    let b = a.replica().await;
    let (s, v) = api(
        &a,
        &admin,
        Method::POST,
        "/api/v1/limits",
        Some(json!({"subject": "tool", "value": "add", "per_day": 4})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let dev = user_token(&a, "acme", &admin, "dev@acme.example").await;
    // Both replicas' snapshots have the rule and the token (the change counters, ≤ 1 s).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut on_a = Mcp::new(&a, "acme", "fx", &dev);
    on_a.initialize().await;
    let mut on_b = Mcp::new(&b, "acme", "fx", &dev);
    on_b.initialize().await;
    let args = json!({"a": 1, "b": 1});
    assert_eq!(on_a.call_text(1, "add", args.clone()).await, "2");
    assert_eq!(on_a.call_text(2, "add", args.clone()).await, "2");
    // The counts are shared within about a second.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(on_b.call_text(3, "add", args.clone()).await, "2");
    assert_eq!(on_b.call_text(4, "add", args.clone()).await, "2");
    let over = |m: &Mcp<'_>, id: i64| {
        m.post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 1, "b": 1}}}))
            .send()
    };
    let res = over(&on_b, 5).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "b counted a's two calls"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let res = over(&on_a, 6).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a counted b's two calls"
    );
    b.stop().await;
    a.stop().await;
}

async fn calls_over_a_limit_are_refused_with_when_to_retry(engine: Engine) {
    let app = spawn_app(engine).await;
    let admin = crate::gateway_sessions::acme_with_fixtures(&app, &["fx", "fy"]).await;
    let admin = admin.as_str();
    // Bad rules are refused and change nothing.
    for bad in [
        json!({"subject": "planet", "requests_per_minute": 1}),
        json!({"subject": "user"}),
        json!({"subject": "user", "requests_per_minute": 0}),
        json!({"subject": "user", "value": "", "per_day": 5}),
    ] {
        let (s, v) = api(
            &app,
            admin,
            Method::POST,
            "/api/v1/limits",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    let mut ids = Vec::new();
    for rule in [
        json!({"subject": "user", "value": "*", "requests_per_minute": 4}),
        json!({"subject": "tool", "value": "sleep", "concurrent": 1}),
        json!({"subject": "server", "value": "fy", "per_day": 2}),
    ] {
        let (s, v) = api(&app, admin, Method::POST, "/api/v1/limits", Some(rule)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        ids.push(v["limit_id"].as_str().unwrap().to_owned());
    }
    let (_, v) = api(&app, admin, Method::GET, "/api/v1/limits", None).await;
    assert_eq!(v["limits"].as_array().unwrap().len(), 3);

    // The per-minute and per-day windows are fixed (UTC): start early in a minute so that the
    // counting below cannot straddle a boundary.
    let into_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if into_minute > 40 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - into_minute)).await;
    }
    let dev = user_token(&app, "acme", admin, "dev@acme.example").await;
    let ops = user_token(&app, "acme", admin, "ops@acme.example").await;
    // Concurrency: while one `sleep` runs, a second is refused at once; echo is not concerned.
    let mut d = Mcp::new(&app, "acme", "fx", &dev);
    d.initialize().await; // 1 (dev's per-minute budget counts requests, not notifications)
    let slow = {
        let req = d.post(&json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call",
            "params": {"name": "sleep", "arguments": {"ms": 1500}}}));
        tokio::spawn(async move { req.send().await.unwrap().status() })
    }; // 2
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let mut o = Mcp::new(&app, "acme", "fx", &ops);
    o.initialize().await;
    let res = o
        .post(&json!({"jsonrpc": "2.0", "id": 11, "method": "tools/call",
            "params": {"name": "sleep", "arguments": {"ms": 10}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("concurrency limit: 1 calls at once for tool sleep"),
        "{body}"
    );
    assert_eq!(body["id"], 11);
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
    assert_eq!(
        o.call_text(12, "sleep", json!({"ms": 1})).await,
        "slept 1",
        "released after the answer"
    );

    // Per minute, per user: dev has used 2 of 4; two more pass, the fifth is refused.
    assert_eq!(
        d.call_text(3, "echo", json!({"message": "a"})).await,
        "Echo: a"
    );
    assert_eq!(
        d.call_text(4, "echo", json!({"message": "b"})).await,
        "Echo: b"
    );
    let res = d
        .post(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "c"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: i64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["data"]["retry_after"], retry);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("4 requests per minute for user dev@acme.example"));
    // ops has a budget of their own.
    assert_eq!(
        o.call_text(13, "echo", json!({"message": "x"})).await,
        "Echo: x"
    );

    // A daily quota on a server (a third user, whose per-minute budget is untouched:
    // initialize + one call, then refused).
    let qa = user_token(&app, "acme", admin, "qa@acme.example").await;
    let mut y = Mcp::new(&app, "acme", "fy", &qa);
    y.initialize().await;
    assert_eq!(
        y.call_text(2, "echo", json!({"message": "q"})).await,
        "Echo: q"
    );
    let res = y
        .post(&json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("daily quota: 2 requests per day for server fy"));

    // Every throttle is on the record, naming its rule.
    let (_, v) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/audit?outcome=throttled&limit=100",
        None,
    )
    .await;
    let throttled = v["events"].as_array().unwrap();
    assert_eq!(throttled.len(), 3, "{v}");
    assert!(throttled
        .iter()
        .all(|e| ids.contains(&e["detail"]["limit"].as_str().unwrap().to_owned())));
    // Removing a rule lifts it at once.
    let (s, _) = api(
        &app,
        admin,
        Method::DELETE,
        &format!("/api/v1/limits/{}", ids[0]),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        d.call_text(6, "echo", json!({"message": "again"})).await,
        "Echo: again"
    );
    let (s, _) = api(
        &app,
        admin,
        Method::DELETE,
        &format!("/api/v1/limits/{}", ids[0]),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}
