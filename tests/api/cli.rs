//! The operator CLI, run as the real binary against the same database as a running server.

use crate::helpers::{spawn_app, Engine};
use crate::on_both_engines;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

on_both_engines!(
    tenant_create_prints_the_token_once_and_the_running_server_serves_the_tenant,
    tenant_list_json_has_the_documented_shape,
    bad_cli_input_exits_non_zero_with_a_message_and_changes_nothing,
    migrate_is_idempotent,
    rotating_the_platform_token_ends_the_old_token_and_its_sessions,
);

async fn tenant_create_prints_the_token_once_and_the_running_server_serves_the_tenant(
    engine: Engine,
) {
    let app = spawn_app(engine).await;
    let host = app.host(Some("umbrella"));
    assert_eq!(
        app.get(&host, "/").send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let out = app.cli(&[
        "tenant",
        "create",
        "umbrella",
        "--name",
        "Umbrella Corp",
        "--admin-email",
        "Alice@Umbrella.example",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["tenant"]["slug"], "umbrella");
    assert_eq!(v["tenant"]["name"], "Umbrella Corp");
    assert_eq!(v["admin_email"], "alice@umbrella.example");
    let token = v["admin_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pct_admin_"));

    // The change reaches the running server by the same path replicas use, within a second or
    // so (polled counter on SQLite, LISTEN/NOTIFY on PostgreSQL). Generous deadline: this is a
    // correctness check, not a timing benchmark.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app
            .get(&host, "/api/v1/tenant")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tenant never became visible: {}",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The token is in no listing.
    let out = app.cli(&["tenant", "list", "--json"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&token));
    app.stop().await;
}

async fn tenant_list_json_has_the_documented_shape(engine: Engine) {
    let app = spawn_app(engine).await;
    app.create_tenant("beta").await;
    app.create_tenant("alpha").await;
    let out = app.cli(&["tenant", "list", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v["tenants"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["slug"], "alpha");
    assert_eq!(list[1]["slug"], "beta");
    assert_eq!(list[0]["name"], "alpha Inc");
    assert!(list[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let out = app.cli(&["tenant", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SLUG") && text.contains("alpha") && text.contains("beta"),
        "{text}"
    );
    app.stop().await;
}

async fn bad_cli_input_exits_non_zero_with_a_message_and_changes_nothing(engine: Engine) {
    let app = spawn_app(engine).await;
    for (args, expect) in [
        (
            vec![
                "tenant",
                "create",
                "www",
                "--name",
                "W",
                "--admin-email",
                "a@b.example",
            ],
            "reserved",
        ),
        (
            vec![
                "tenant",
                "create",
                "Bad_Slug",
                "--name",
                "W",
                "--admin-email",
                "a@b.example",
            ],
            "lowercase",
        ),
        (
            vec![
                "tenant",
                "create",
                "okay",
                "--name",
                "W",
                "--admin-email",
                "nope",
            ],
            "email",
        ),
        (
            vec![
                "tenant",
                "create",
                "okay",
                "--name",
                "  ",
                "--admin-email",
                "a@b.example",
            ],
            "empty",
        ),
    ] {
        let out = app.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.contains(expect),
            "{args:?}: {err}"
        );
    }
    app.create_tenant("dupe").await;
    let out = app.cli(&[
        "tenant",
        "create",
        "dupe",
        "--name",
        "D",
        "--admin-email",
        "a@b.example",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = app.cli(&["tenant", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tenants"].as_array().unwrap().len(), 1);

    // A bad setting names itself.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["tenant", "list", "--database-url", "mysql://nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL"));
    app.stop().await;
}

async fn migrate_is_idempotent(engine: Engine) {
    let app = spawn_app(engine).await;
    for _ in 0..2 {
        let out = app.cli(&["migrate"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    }
    app.stop().await;
}

async fn rotating_the_platform_token_ends_the_old_token_and_its_sessions(engine: Engine) {
    let app = spawn_app(engine).await;
    let mut p = app.browser(None);
    let page = p.platform_sign_in(&app.platform_token).await;
    assert!(page.body.contains("Create a tenant"));

    let out = app.cli(&["platform", "rotate-token", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let new_token = v["platform_token"].as_str().unwrap().to_owned();
    assert!(new_token.starts_with("pct_platform_"));
    assert_ne!(new_token, app.platform_token);

    let list = |token: String| {
        let req = app
            .get(&app.host(None), "/api/v1/tenants")
            .bearer_auth(token);
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(
        list(app.platform_token.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(list(new_token.clone()).await, StatusCode::OK);
    // The console session signed in with the old token is over.
    let page = p.get("/").await;
    assert!(!page.body.contains("Create a tenant"));
    assert!(page.body.contains("Platform admin token"));
    app.stop().await;
}
