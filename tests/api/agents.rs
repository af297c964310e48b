//! Agents end to end: an agent's tool set across a stdio server (the TypeScript fixture) and a
//! Streamable HTTP server (the Python SDK fixture) served at `/mcp/agents/{agent}` with
//! server-prefixed names; its rights are its set intersected with its owner's; its own tokens
//! work only there; its blast radius; its records; revocation through the API and the CLI; a
//! real MCP client (the official Python SDK) through the agent endpoint.

use crate::access::api;
use crate::gateway::{add_server, fixture_path, python, start_fixture, user_token};
use crate::gateway_sessions::Mcp;
use crate::helpers::{spawn_app, Engine, TestApp};
use crate::on_both_engines;
use reqwest::header::HOST;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

on_both_engines!(
    agents_reach_their_tool_set_as_far_as_their_owner_may,
    agent_tokens_are_revoked_by_agent_and_with_their_owner,
);

/// acme with the stdio fixture `fx` and the Python fixture `py`, both granted to everyone, and
/// the user dev@; returns the admin token and dev's gateway token.
async fn setup(app: &TestApp, py_port: u16) -> (String, String) {
    let admin = crate::gateway_sessions::acme_with_fixtures(app, &["fx"]).await;
    add_server(
        app,
        "acme",
        &admin,
        "py",
        json!({"transport": "streamable_http", "url": format!("http://127.0.0.1:{py_port}/mcp")}),
    )
    .await;
    let dev = user_token(app, "acme", &admin, "dev@acme.example").await;
    (admin, dev)
}

async fn create_agent(app: &TestApp, admin: &str) -> String {
    let (s, v) = api(
        app,
        admin,
        Method::POST,
        "/api/v1/agents",
        Some(
            json!({"slug": "research", "name": "Research bot", "owner": "dev@acme.example",
            "tool_set": [{"server": "fx", "tools": ["echo", "crash"]},
                         {"server": "py", "tools": ["add", "test_*"]}]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["endpoint"],
        format!("http://{}/mcp/agents/research", app.host(Some("acme"))),
        "{v}"
    );
    agent_token(app, admin, "research").await
}

async fn agent_token(app: &TestApp, admin: &str, slug: &str) -> String {
    let (s, v) = api(
        app,
        admin,
        Method::POST,
        &format!("/api/v1/agents/{slug}/tokens"),
        Some(json!({"label": "nightly", "expires_in_days": 7})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pct_agent_"), "{token}");
    token
}

fn sorted_names(msgs: &[Value], field: &str, key: &str) -> Vec<String> {
    let mut v: Vec<String> = msgs.last().unwrap()["result"][field]
        .as_array()
        .unwrap_or_else(|| panic!("{msgs:?}"))
        .iter()
        .map(|t| t[key].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

async fn status_of(app: &TestApp, path: &str, token: &str) -> StatusCode {
    app.client
        .post(app.url(path))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap()
        .status()
}

async fn agents_reach_their_tool_set_as_far_as_their_owner_may(engine: Engine) {
    let py = start_fixture().await;
    let app = spawn_app(engine).await;
    let (admin, dev) = setup(&app, py.port).await;
    let admin = admin.as_str();

    // Bad input is refused with the field named, and creates nothing.
    for (bad, says) in [
        (
            json!({"slug": "x", "tool_set": [{"server": "nope", "tools": ["a"]}]}),
            "no server",
        ),
        (
            json!({"slug": "x", "tool_set": [{"server": "fx", "tools": []}]}),
            "lists no tools",
        ),
        (
            json!({"slug": "x", "tool_set": [{"server": "fx", "tools": ["[oops"]}]}),
            "tool_set",
        ),
        (
            json!({"slug": "x", "owner": "ghost@acme.example", "tool_set": []}),
            "owner",
        ),
        (json!({"slug": "Not A Slug", "tool_set": []}), "slug"),
    ] {
        let (s, v) = api(
            &app,
            admin,
            Method::POST,
            "/api/v1/agents",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert!(v.to_string().contains(says), "{bad}: {v}");
    }
    let (_, list) = api(&app, admin, Method::GET, "/api/v1/agents", None).await;
    assert_eq!(list["agents"], json!([]));

    let token = create_agent(&app, admin).await;
    let (s, _) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/agents",
        Some(json!({"slug": "research", "tool_set": []})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // The agent's token works only at its endpoint; a user's token not at all there.
    assert_eq!(
        status_of(&app, "/mcp/fx", &token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status_of(&app, "/mcp/agents/research", &dev).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status_of(&app, "/mcp/agents/other", &token).await,
        StatusCode::UNAUTHORIZED
    );

    let mut m = Mcp::new(&app, "acme", "agents/research", &token);
    let init = m.initialize().await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    assert_eq!(
        init["result"]["serverInfo"]["name"],
        "portcullis-agent-research"
    );
    let tools = m.request(json!(1), "tools/list", json!({})).await;
    assert_eq!(
        sorted_names(&tools, "tools", "name"),
        vec!["fx__crash", "fx__echo", "py__add", "py__test_simple_text"],
        "only the set, server-prefixed"
    );
    assert_eq!(
        m.call_text(2, "fx__echo", json!({"message": "hi"})).await,
        "Echo: hi"
    );
    assert_eq!(
        m.call_text(3, "py__add", json!({"a": 2, "b": 3})).await,
        "5"
    );
    for outside in ["fx__add", "add", "py__whoami", "nope__x"] {
        assert!(
            m.call_text(4, outside, json!({}))
                .await
                .starts_with("error: Unknown tool"),
            "{outside}"
        );
    }
    // Resources and prompts of the set's servers, namespaced.
    let res = m.request(json!(5), "resources/list", json!({})).await;
    let uris = sorted_names(&res, "resources", "uri");
    assert!(
        uris.contains(&"portcullis://py/test://static-text".to_owned()),
        "{uris:?}"
    );
    let read = m
        .request(
            json!(6),
            "resources/read",
            json!({"uri": "portcullis://py/test://static-text"}),
        )
        .await;
    let content = &read.last().unwrap()["result"]["contents"][0];
    assert_eq!(
        content["text"],
        "This is the content of the static text resource."
    );
    assert_eq!(content["uri"], "portcullis://py/test://static-text");
    let prompts = m.request(json!(7), "prompts/list", json!({})).await;
    assert!(
        sorted_names(&prompts, "prompts", "name").contains(&"py__test_simple_prompt".to_owned())
    );
    let got = m
        .request(
            json!(8),
            "prompts/get",
            json!({"name": "py__test_simple_prompt"}),
        )
        .await;
    assert!(
        got.last().unwrap()["result"]["messages"].is_array(),
        "{got:?}"
    );

    // Blast radius: which systems, which tools, which write or destroy.
    let (s, radius) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/agents/research/blast-radius",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{radius}");
    assert_eq!(radius["owner"], "dev@acme.example");
    assert_eq!(radius["totals"]["systems"], 2, "{radius}");
    assert_eq!(radius["totals"]["tools"], 4, "{radius}");
    let fx = radius["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["server"] == "fx")
        .unwrap();
    let crash = fx["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "crash")
        .unwrap();
    assert_eq!(crash["destructive"], true);
    assert_eq!(crash["exposed_as"], "fx__crash");
    let echo = fx["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "echo")
        .unwrap();
    assert_eq!(echo["read_only"], true);
    assert_eq!(echo["destructive"], false);
    // The Python tools carry no annotations: MCP's worst-case defaults count them as writes.
    assert_eq!(radius["totals"]["writes"], 3, "{radius}");

    // The owner's rights bound the agent's: a rule denying the owner `echo` hides it here too.
    let (_, reg) = api(&app, admin, Method::GET, "/api/v1/registries/all", None).await;
    let grant = reg["grants"][0]["id"].as_str().unwrap().to_owned();
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        &format!("/api/v1/registries/all/grants/{grant}"),
        Some(json!({"rules": [{"effect": "deny", "match": "echo"}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let tools = m.request(json!(9), "tools/list", json!({})).await;
    assert!(!sorted_names(&tools, "tools", "name").contains(&"fx__echo".to_owned()));
    assert!(m
        .call_text(10, "fx__echo", json!({"message": "x"}))
        .await
        .starts_with("error: Unknown tool"));

    // An owner deactivated: the agent stops; reactivated: it works again.
    let (_, users) = api(&app, admin, Method::GET, "/api/v1/users", None).await;
    let dev_id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "dev@acme.example")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/users/{dev_id}");
    let (s, _) = api(
        &app,
        admin,
        Method::PATCH,
        &path,
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        status_of(&app, "/mcp/agents/research", &token).await,
        StatusCode::FORBIDDEN
    );
    let (s, _) = api(
        &app,
        admin,
        Method::PATCH,
        &path,
        Some(json!({"active": true})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        m.call_text(11, "py__add", json!({"a": 1, "b": 1})).await,
        "2"
    );

    // The records name the agent, its owner, the server and the tool.
    // The audit writer writes after the answer: poll until the denied call's record is there.
    let mut v = Value::Null;
    for _ in 0..100 {
        let (s, got) = api(
            &app,
            admin,
            Method::GET,
            "/api/v1/audit?agent=research&method=tools/call",
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{got}");
        v = got;
        let events = v["events"].as_array().cloned().unwrap_or_default();
        let has = |target: &str, outcome: &str| {
            events
                .iter()
                .any(|e| e["target"] == target && e["outcome"] == outcome)
        };
        if has("echo", "ok") && has("add", "denied") && has("add", "ok") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = v["events"].as_array().unwrap();
    let echo_ok = events
        .iter()
        .find(|e| e["target"] == "echo" && e["outcome"] == "ok")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(echo_ok["actor"], "dev@acme.example");
    assert_eq!(echo_ok["server"], "fx");
    assert_eq!(echo_ok["decision"], "allow");
    assert_eq!(echo_ok["client"], "rust-test/0");
    assert!(
        events
            .iter()
            .any(|e| e["target"] == "add" && e["server"] == "fx" && e["outcome"] == "denied"),
        "{v}"
    );

    // A limit on the agent: over it, 429 and a JSON-RPC error saying when to retry.
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/limits",
        Some(json!({"subject": "agent", "value": "research", "per_day": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        m.call_text(12, "py__add", json!({"a": 1, "b": 2})).await,
        "3"
    );
    let res = m
        .post(&json!({"jsonrpc": "2.0", "id": 13, "method": "tools/call",
            "params": {"name": "py__add", "arguments": {"a": 1, "b": 2}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_some());
    let (s, _) = api(
        &app,
        admin,
        Method::DELETE,
        &format!("/api/v1/limits/{}", v["limit_id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // A real MCP client (the official Python SDK) through the agent endpoint.
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/agents/research",
        Some(json!({"name": "Research bot", "owner": "dev@acme.example",
            "tool_set": [{"server": "py", "tools": ["*"]}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for mode in ["legacy", "auto"] {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(python())
                .arg(fixture_path("mcp_client.py"))
                .arg(app.url("/mcp/agents/research"))
                .arg(mode)
                .arg(&token)
                .arg(app.host(Some("acme")))
                .arg("py")
                .output(),
        )
        .await
        .expect("the MCP client finishes")
        .unwrap();
        assert!(
            out.status.success(),
            "client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
        // The agent endpoint speaks the session era; the SDK's auto mode falls back to it.
        assert_eq!(seen["protocol"], "2025-11-25", "{mode}: {seen}");
        assert_eq!(
            seen["tools"],
            json!(["py__add", "py__test_simple_text", "py__whoami"])
        );
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
    app.stop().await;
}

async fn agent_tokens_are_revoked_by_agent_and_with_their_owner(engine: Engine) {
    let py = start_fixture().await;
    let app = spawn_app(engine).await;
    let (admin, _) = setup(&app, py.port).await;
    let admin = admin.as_str();
    let first = create_agent(&app, admin).await;
    let second = agent_token(&app, admin, "research").await;
    let mut m = Mcp::new(&app, "acme", "agents/research", &first);
    m.initialize().await;
    assert_eq!(
        m.call_text(1, "py__add", json!({"a": 1, "b": 1})).await,
        "2"
    );

    // One token, through the API: the next request fails; the other token still works.
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/tokens/revoke",
        Some(json!({"token": first})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tokens"][0]["user"], "agent:research", "{v}");
    let res = m
        .post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "py__add", "arguments": {"a": 1, "b": 1}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        status_of(&app, "/mcp/agents/research", &second).await,
        StatusCode::OK
    );
    let (_, tokens) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/agents/research/tokens",
        None,
    )
    .await;
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 1, "{tokens}");
    assert!(!tokens.to_string().contains(&second), "never listed");
    // One token by its listed id: a spare one goes, `second` stays.
    let spare = agent_token(&app, admin, "research").await;
    let (_, tokens) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/agents/research/tokens",
        None,
    )
    .await;
    let spare_id = tokens["tokens"][1]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/agents/research/tokens/{spare_id}");
    let (s, _) = api(&app, admin, Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api(&app, admin, Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "already revoked");
    assert_eq!(
        status_of(&app, "/mcp/agents/research", &spare).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status_of(&app, "/mcp/agents/research", &second).await,
        StatusCode::OK
    );

    // The whole agent, through the CLI (the operators' contract).
    let out = app.cli(&[
        "token", "revoke", "--tenant", "acme", "--agent", "research", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["sessions_ended"], false);
    assert_eq!(v["tokens"][0]["user"], "dev@acme.example", "{v}");
    assert_eq!(v["tokens"][0]["label"], "agent research: nightly", "{v}");
    // Running servers follow within a second (the change counter).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while status_of(&app, "/mcp/agents/research", &second).await != StatusCode::UNAUTHORIZED {
        assert!(
            std::time::Instant::now() < deadline,
            "the CLI's revocation did not bite"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = app.cli(&["token", "revoke", "--tenant", "acme", "--agent", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no agent nope"));

    // Revoking everything the owner holds takes their agents' tokens too.
    let third = agent_token(&app, admin, "research").await;
    assert_eq!(
        status_of(&app, "/mcp/agents/research", &third).await,
        StatusCode::OK
    );
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/tokens/revoke",
        Some(json!({"user_email": "dev@acme.example"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["label"] == "agent research: nightly"),
        "{v}"
    );
    assert_eq!(
        status_of(&app, "/mcp/agents/research", &third).await,
        StatusCode::UNAUTHORIZED
    );

    // A disabled agent stops; deleting it removes its tokens.
    let fourth = agent_token(&app, admin, "research").await;
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/agents/research",
        Some(json!({"owner": "dev@acme.example", "disabled": true,
            "tool_set": [{"server": "py", "tools": ["add"]}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["enabled"], false);
    assert_eq!(
        status_of(&app, "/mcp/agents/research", &fourth).await,
        StatusCode::FORBIDDEN
    );
    let (s, _) = api(&app, admin, Method::DELETE, "/api/v1/agents/research", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        status_of(&app, "/mcp/agents/research", &fourth).await,
        StatusCode::UNAUTHORIZED
    );
    let (s, _) = api(&app, admin, Method::GET, "/api/v1/agents/research", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}
