//! Personal access tokens (scoped to servers, expiring, listed with their use) and one-step
//! revocation (a token; everything a user holds, console sessions included) through the API and
//! the CLI.

use crate::access::api;
use crate::gateway::user_token;
use crate::gateway_sessions::Mcp;
use crate::helpers::{spawn_app, Engine, TestApp};
use crate::on_both_engines;
use reqwest::header::HOST;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_engines!(
    personal_access_tokens_reach_only_their_servers,
    revocation_bites_on_the_next_request,
);

/// Tenant acme with two fixture servers, both granted to everyone.
async fn setup(app: &TestApp) -> String {
    crate::gateway_sessions::acme_with_fixtures(app, &["fx", "fy"]).await
}

/// `initialize` on a server with a token: the HTTP status.
async fn init_status(app: &TestApp, server: &str, token: &str) -> StatusCode {
    app.client
        .post(app.url(&format!("/mcp/{server}")))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "0"}}}))
        .send()
        .await
        .unwrap()
        .status()
}

async fn personal_access_tokens_reach_only_their_servers(engine: Engine) {
    let app = spawn_app(engine).await;
    let admin = setup(&app).await;
    let admin = admin.as_str();
    // Refused, and nothing is issued.
    for bad in [
        json!({"user_email": "dev@acme.example", "servers": ["nope"]}),
        json!({"user_email": "dev@acme.example", "expires_in_days": 0}),
        json!({"user_email": "dev@acme.example", "expires_in_days": 366}),
    ] {
        let (s, v) = api(
            &app,
            admin,
            Method::POST,
            "/api/v1/tokens",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/tokens",
        Some(
            json!({"user_email": "dev@acme.example", "label": "ci-bot", "servers": ["fx"],
                    "expires_in_days": 30}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let pat = v["token"].as_str().unwrap().to_owned();
    let full = user_token(&app, "acme", admin, "dev@acme.example").await;

    assert_eq!(init_status(&app, "fx", &pat).await, StatusCode::OK);
    assert_eq!(
        init_status(&app, "fy", &pat).await,
        StatusCode::FORBIDDEN,
        "outside the token's scope"
    );
    assert_eq!(init_status(&app, "fy", &full).await, StatusCode::OK);
    let mut m = Mcp::new(&app, "acme", "fx", &pat);
    m.initialize().await;
    assert_eq!(
        m.call_text(2, "echo", json!({"message": "pat"})).await,
        "Echo: pat"
    );

    let (s, v) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/tokens?user=dev@acme.example",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{v}");
    let ci = tokens.iter().find(|t| t["label"] == "ci-bot").unwrap();
    assert_eq!(ci["servers"], json!(["fx"]));
    assert!(ci["expires_at"].as_str().is_some(), "{ci}");
    assert!(!v.to_string().contains(&pat), "tokens are never listed");
    let (s, _) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/tokens?user=nobody@acme.example",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The CLI issues the same kind of token.
    let out = app.cli(&[
        "token",
        "create",
        "--tenant",
        "acme",
        "--user",
        "ops@acme.example",
        "--server",
        "fy",
        "--expires-days",
        "7",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cli_pat = v["token"].as_str().unwrap().to_owned();
    // A token made by another process reaches this server within a second or so.
    let mut status = StatusCode::UNAUTHORIZED;
    for _ in 0..50 {
        status = init_status(&app, "fy", &cli_pat).await;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        init_status(&app, "fx", &cli_pat).await,
        StatusCode::FORBIDDEN
    );
    app.stop().await;
}

async fn revocation_bites_on_the_next_request(engine: Engine) {
    let app = spawn_app(engine).await;
    let admin = setup(&app).await;
    let admin = admin.as_str();
    let a = user_token(&app, "acme", admin, "dev@acme.example").await;
    let b = user_token(&app, "acme", admin, "dev@acme.example").await;
    let mut m = Mcp::new(&app, "acme", "fx", &a);
    m.initialize().await;
    assert_eq!(
        m.call_text(2, "echo", json!({"message": "1"})).await,
        "Echo: 1"
    );

    // One token, mid-session: the very next call is refused; the other token still works.
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/tokens/revoke",
        Some(json!({"token": a})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tokens"][0]["user"], "dev@acme.example");
    let res = m
        .post(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"message": "2"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(init_status(&app, "fx", &b).await, StatusCode::OK);
    // Bad requests change nothing.
    for bad in [
        json!({}),
        json!({"token": b, "user_email": "dev@acme.example"}),
    ] {
        let (s, _) = api(
            &app,
            admin,
            Method::POST,
            "/api/v1/tokens/revoke",
            Some(bad),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (s, _) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/tokens/revoke",
        Some(json!({"token": a})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "already revoked");
    assert_eq!(init_status(&app, "fx", &b).await, StatusCode::OK);

    // A user revokes one of their own tokens in the portal (a plain form post).
    let (_, me) = api(&app, admin, Method::GET, "/api/v1/me", None).await;
    let my_email = me["email"].as_str().unwrap().to_owned();
    let mine = user_token(&app, "acme", admin, &my_email).await;
    assert_eq!(init_status(&app, "fx", &mine).await, StatusCode::OK);
    let (_, listed) = api(
        &app,
        admin,
        Method::GET,
        &format!("/api/v1/tokens?user={my_email}"),
        None,
    )
    .await;
    let id = listed["tokens"][0]["id"].as_str().unwrap().to_owned();
    let mut own = app.browser(Some("acme"));
    own.sign_in(admin).await;
    let portal = own.get("/").await;
    let action = portal
        .form_action(&format!("revoke-token-{id}"))
        .expect("the portal lists the token");
    let csrf = portal.input_value("csrf").unwrap();
    own.post_form(
        &action,
        &[
            ("csrf", &csrf),
            ("form[op]", "portal_revoke_token"),
            ("form[grant_id]", &id),
        ],
        "/",
    )
    .await;
    assert_eq!(
        init_status(&app, "fx", &mine).await,
        StatusCode::UNAUTHORIZED
    );

    // Everything a user holds: tokens and console sessions. A second admin signed in to the
    // console loses the session on their next page.
    let out = app.cli(&[
        "tenant",
        "admin-token",
        "acme",
        "--email",
        "second@acme.example",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut browser = app.browser(Some("acme"));
    let page = browser
        .sign_in(second["admin_token"].as_str().unwrap())
        .await;
    assert_eq!(
        page.text_of("signed-in-as").as_deref(),
        Some("second@acme.example")
    );
    let second_gw = user_token(&app, "acme", admin, "second@acme.example").await;
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/tokens/revoke",
        Some(json!({"user_email": "second@acme.example"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["sessions_ended"], true);
    assert_eq!(v["tokens"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        init_status(&app, "fx", &second_gw).await,
        StatusCode::UNAUTHORIZED
    );
    let page = browser.get("/admin").await;
    assert!(
        page.text_of("signed-in-as").is_none(),
        "the console session is over"
    );

    // The CLI: everything dev holds, reported in its JSON; running servers follow within a
    // second (the change notification / poll).
    let out = app.cli(&[
        "token",
        "revoke",
        "--tenant",
        "acme",
        "--user",
        "dev@acme.example",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["tokens"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["sessions_ended"], true);
    let mut status = StatusCode::OK;
    for _ in 0..50 {
        status = init_status(&app, "fx", &b).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let out = app.cli(&[
        "token",
        "revoke",
        "--tenant",
        "acme",
        "--token",
        "pct_user_nothingnothingnothingnothingnothingnothin",
    ]);
    assert!(!out.status.success());
    let out = app.cli(&["token", "revoke", "--tenant", "acme"]);
    assert!(
        !out.status.success(),
        "one of --token or --user is required"
    );
    // Every revocation is on the record.
    let (_, v) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/audit?category=security&limit=1000",
        None,
    )
    .await;
    let actions: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "token.revoke").count(),
        2,
        "API and portal: {actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "access.revoke_user")
            .count(),
        2,
        "{actions:?}"
    );
    app.stop().await;
}
