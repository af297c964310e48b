//! Access policy end to end: registries granted to subjects with tool-level rules, enforced by
//! the gateway on both upstream paths (its own session layer over stdio, and the proxy to a
//! Streamable HTTP server), explained by the simulator (API and CLI).

use crate::gateway::{add_server_ungranted, start_fixture, user_token};
use crate::gateway_sessions::{stdio_fixture, Mcp};
use crate::helpers::{spawn_app, Engine, TestApp};
use crate::on_both_engines;
use reqwest::header::HOST;
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_engines!(
    nothing_is_reachable_until_a_registry_grants_it_and_rules_narrow_what_is,
    rules_filter_a_proxied_streamable_http_server_and_argument_conditions_hold,
    bad_registries_are_refused_and_change_nothing,
    a_server_can_deny_tools_outside_its_reviewed_catalog,
);

/// One tenant API call as the acme admin: the status and the JSON body (null if none).
pub(crate) async fn api(
    app: &TestApp,
    admin: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .request(method, app.url(path))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(admin);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn names(list: &[Value], field: &str) -> Vec<String> {
    let mut v: Vec<String> = list.last().unwrap()["result"][field]
        .as_array()
        .unwrap_or_else(|| panic!("{list:?}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

async fn nothing_is_reachable_until_a_registry_grants_it_and_rules_narrow_what_is(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    let tag = uuid::Uuid::new_v4().to_string();
    add_server_ungranted(&app, "acme", admin, "fx", stdio_fixture(&tag)).await;
    let dev = user_token(&app, "acme", admin, "dev@acme.example").await;
    let ops = user_token(&app, "acme", admin, "ops@acme.example").await;

    // A new tenant grants nothing: the server looks like it does not exist.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let res = Mcp::new(&app, "acme", "fx", &dev)
        .post(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let (_, v) = api(
        &app,
        admin,
        reqwest::Method::POST,
        "/api/v1/policy/explain",
        Some(json!({"user": "dev@acme.example", "server": "fx", "tool": "echo"})),
    )
    .await;
    assert_eq!(v["decision"], "deny", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("no registry"), "{v}");

    // A registry grants the server to dev, without destructive tools and without `sleep`.
    let (status, reg) = api(
        &app,
        admin,
        reqwest::Method::POST,
        "/api/v1/registries",
        Some(json!({
            "slug": "eng-tools", "name": "Engineering tools", "servers": ["fx"],
            "grants": [{"subject": "user:dev@acme.example", "rules": [
                {"effect": "deny", "annotations": {"destructive": true}},
                {"effect": "deny", "match": "sleep"}
            ]}]
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    assert_eq!(reg["grants"][0]["subject"], "user:dev@acme.example");
    assert_eq!(reg["grants"][0]["rules_text"][1], "deny tool \"sleep\"");

    let mut mcp = Mcp::new(&app, "acme", "fx", &dev);
    mcp.initialize().await;
    let tools = names(
        &mcp.request(json!(1), "tools/list", json!({})).await,
        "tools",
    );
    assert!(tools.contains(&"echo".to_owned()), "{tools:?}");
    for hidden in ["crash", "sleep"] {
        assert!(
            !tools.contains(&hidden.to_owned()),
            "{hidden} listed: {tools:?}"
        );
    }
    assert_eq!(
        mcp.call_text(2, "echo", json!({"message": "hi"})).await,
        "Echo: hi"
    );
    // Refused calls look exactly like calls to tools that do not exist.
    assert_eq!(
        mcp.call_text(3, "crash", json!({})).await,
        "error: Unknown tool: crash"
    );
    assert_eq!(
        mcp.call_text(4, "sleep", json!({"ms": 1})).await,
        "error: Unknown tool: sleep"
    );
    // Another user of the tenant still reaches nothing.
    let res = Mcp::new(&app, "acme", "fx", &ops)
        .post(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // The simulator agrees, with the rule and the chain that decided.
    let (_, v) = api(
        &app,
        admin,
        reqwest::Method::POST,
        "/api/v1/policy/explain",
        Some(json!({"user": "dev@acme.example", "server": "fx", "tool": "crash"})),
    )
    .await;
    assert_eq!(v["decision"], "deny", "{v}");
    assert_eq!(v["rule"]["number"], 1, "{v}");
    assert_eq!(v["rule"]["registry"], "eng-tools", "{v}");
    assert!(
        v["chain"][0]
            .as_str()
            .unwrap()
            .contains("registry eng-tools"),
        "{v}"
    );
    let (_, v) = api(
        &app,
        admin,
        reqwest::Method::GET,
        "/api/v1/policy/who-can?server=fx&tool=echo",
        None,
    )
    .await;
    let users = v["users"].as_array().unwrap();
    let allowed: Vec<&str> = users
        .iter()
        .filter(|u| u["allowed"] == true)
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(allowed, ["dev@acme.example"], "{v}");
    let (status, v) = api(
        &app,
        admin,
        reqwest::Method::GET,
        "/api/v1/policy/reach?user=dev@acme.example",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["servers"][0]["server"], "fx", "{v}");
    // The CLI reads the same policy from the database; it knows the tools' annotations from the
    // reviewed catalog only (the server also uses those it saw in tools/list), so record it.
    let (status, _) = api(
        &app,
        admin,
        reqwest::Method::POST,
        "/api/v1/servers/fx/catalog",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let out = app.cli(&[
        "policy",
        "explain",
        "--tenant",
        "acme",
        "--user",
        "dev@acme.example",
        "--server",
        "fx",
        "--tool",
        "echo",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(
        v["rule"],
        Value::Null,
        "allowed by a grant without allow rules: {v}"
    );
    assert!(v["reason"].as_str().unwrap().contains("eng-tools"), "{v}");

    // Removing the registry ends access at once, open session included.
    let (status, _) = api(
        &app,
        admin,
        reqwest::Method::DELETE,
        "/api/v1/registries/eng-tools",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let res = mcp
        .post(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn rules_filter_a_proxied_streamable_http_server_and_argument_conditions_hold(
    engine: Engine,
) {
    let fixture = start_fixture().await;
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    let url = format!("http://127.0.0.1:{}/mcp", fixture.port);
    add_server_ungranted(
        &app,
        "acme",
        admin,
        "py",
        json!({"transport": "streamable_http", "url": url}),
    )
    .await;
    let dev = user_token(&app, "acme", admin, "dev@acme.example").await;
    // Made with the CLI: everyone may use `add` with a <= 10, and `whoami`.
    let rules = r#"[{"effect": "allow", "match": "add", "arguments": [{"pointer": "/a", "max": 10}]},
                    {"effect": "allow", "match": "who*"}]"#;
    let out = app.cli(&[
        "registry", "add", "--tenant", "acme", "--slug", "math", "--server", "py", "--grant",
        "everyone", "--rules", rules, "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["registry"]["grants"][0]["subject"], "everyone", "{v}");
    // The CLI wrote the database; the running gateway follows the change counter.
    let mut mcp = Mcp::new(&app, "acme", "py", &dev);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    while mcp.post(&init).send().await.unwrap().status() == StatusCode::NOT_FOUND {
        assert!(
            std::time::Instant::now() < deadline,
            "the grant never reached the gateway"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    mcp.initialize().await;
    let tools = names(
        &mcp.request(json!(1), "tools/list", json!({})).await,
        "tools",
    );
    assert_eq!(
        tools,
        ["add", "whoami"],
        "the list is filtered on the proxied path"
    );
    assert_eq!(mcp.call_text(2, "add", json!({"a": 3, "b": 4})).await, "7");
    assert_eq!(
        mcp.call_text(3, "add", json!({"a": 50, "b": 4})).await,
        "error: Unknown tool: add"
    );
    assert_eq!(
        mcp.call_text(4, "test_simple_text", json!({})).await,
        "error: Unknown tool: test_simple_text"
    );
    // Prompts and resources are untouched by tool rules.
    let prompts = names(
        &mcp.request(json!(5), "prompts/list", json!({})).await,
        "prompts",
    );
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    app.stop().await;
}

async fn bad_registries_are_refused_and_change_nothing(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    add_server_ungranted(
        &app,
        "acme",
        admin,
        "crm",
        json!({"transport": "streamable_http", "url": "http://127.0.0.1:9/mcp"}),
    )
    .await;
    let post = |body: Value| {
        api(
            &app,
            admin,
            reqwest::Method::POST,
            "/api/v1/registries",
            Some(body),
        )
    };
    let cases = [
        (
            json!({"slug": "Bad Slug", "servers": ["crm"]}),
            "registry slug",
        ),
        (
            json!({"slug": "r", "servers": ["nope"]}),
            "no server \"nope\"",
        ),
        (
            json!({"slug": "r", "servers": ["crm"], "grants": [{"subject": "people"}]}),
            "everyone, group:NAME or user:EMAIL",
        ),
        (
            json!({"slug": "r", "servers": ["crm"], "grants": [{"subject": "group:sales", "rules": [{"effect": "allow", "match": "a[b"}]}]}),
            "rule 1",
        ),
        (
            json!({"slug": "r", "servers": ["crm"], "grants": [{"subject": "everyone", "rules": [{"effect": "allow", "arguments": [{"pointer": "/a", "max": 1, "equals": 2}]}]}]}),
            "exactly one",
        ),
    ];
    for (body, want) in cases {
        let (status, v) = post(body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(want),
            "{v} (wanted {want})"
        );
    }
    let (status, v) = post(json!({"slug": "r", "servers": ["crm"], "unknown": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    // Nothing was created on the way: no registry, and no group for the refused rule.
    let (_, v) = api(
        &app,
        admin,
        reqwest::Method::GET,
        "/api/v1/registries",
        None,
    )
    .await;
    assert_eq!(v["registries"], json!([]));
    let (_, v) = api(&app, admin, reqwest::Method::GET, "/api/v1/groups", None).await;
    assert_eq!(v["groups"], json!([]), "{v}");
    let (status, _) = post(json!({"slug": "r", "servers": ["crm"]})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = post(json!({"slug": "r", "servers": ["crm"]})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Changing a registry: an unknown server is refused and nothing changes; a good change
    // replaces the server list.
    let patch = |body: Value| {
        api(
            &app,
            admin,
            reqwest::Method::PATCH,
            "/api/v1/registries/r",
            Some(body),
        )
    };
    let (status, v) = patch(json!({"servers": ["crm", "nope"], "name": "Renamed"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (_, v) = api(
        &app,
        admin,
        reqwest::Method::GET,
        "/api/v1/registries/r",
        None,
    )
    .await;
    assert_eq!(
        (v["servers"].clone(), v["name"].clone()),
        (json!(["crm"]), json!("r"))
    );
    let (status, v) = patch(json!({"servers": [], "name": "Renamed"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["servers"].clone(), v["name"].clone()),
        (json!([]), json!("Renamed"))
    );
    let (status, _) = patch(json!({"servers": ["crm"]})).await;
    assert_eq!(status, StatusCode::OK);
    // Grants: a bad one is refused, a good one listed, replaced and removed.
    let (status, _) = api(
        &app,
        admin,
        reqwest::Method::POST,
        "/api/v1/registries/r/grants",
        Some(json!({"subject": "group:sales", "rules": [{"effect": "sometimes"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, g) = api(
        &app,
        admin,
        reqwest::Method::POST,
        "/api/v1/registries/r/grants",
        Some(json!({"subject": "group:sales"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{g}");
    let path = format!("/api/v1/registries/r/grants/{}", g["id"].as_str().unwrap());
    let (status, g2) = api(
        &app,
        admin,
        reqwest::Method::PUT,
        &path,
        Some(json!({"rules": [{"effect": "deny", "match": "*delete*"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{g2}");
    assert_eq!(g2["rules_text"][0], "deny tool \"*delete*\"");
    let (status, _) = api(
        &app,
        admin,
        reqwest::Method::POST,
        "/api/v1/registries/r/grants",
        Some(json!({"subject": "group:sales"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "one grant per subject and registry"
    );
    let (status, _) = api(&app, admin, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api(&app, admin, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another tenant sees none of it.
    let other = app.create_tenant("other").await;
    let res = app
        .get(&app.host(Some("other")), "/api/v1/registries/r")
        .bearer_auth(&other.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn a_server_can_deny_tools_outside_its_reviewed_catalog(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    let tag = uuid::Uuid::new_v4().to_string();
    add_server_ungranted(&app, "acme", admin, "fx", stdio_fixture(&tag)).await;
    let dev = user_token(&app, "acme", admin, "dev@acme.example").await;
    let (status, _) = api(
        &app,
        admin,
        reqwest::Method::POST,
        "/api/v1/registries",
        Some(json!({"slug": "all", "servers": ["fx"], "grants": [{"subject": "everyone"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, v) = api(
        &app,
        admin,
        reqwest::Method::PATCH,
        "/api/v1/servers/fx",
        Some(json!({"new_tools": "deny"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, _) = api(
        &app,
        admin,
        reqwest::Method::PATCH,
        "/api/v1/servers/fx",
        Some(json!({"new_tools": "sometimes"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut mcp = Mcp::new(&app, "acme", "fx", &dev);
    mcp.initialize().await;
    // No reviewed catalog yet: every tool is new, so none is usable.
    assert_eq!(
        mcp.call_text(1, "echo", json!({"message": "x"})).await,
        "error: Unknown tool: echo"
    );
    let (status, v) = api(
        &app,
        admin,
        reqwest::Method::POST,
        "/api/v1/servers/fx/catalog",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(
        v["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "echo"),
        "{v}"
    );
    assert_eq!(
        mcp.call_text(2, "echo", json!({"message": "x"})).await,
        "Echo: x"
    );
    app.stop().await;
}
