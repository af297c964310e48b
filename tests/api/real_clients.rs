//! Real MCP clients and servers through the gateway: the MCP Inspector CLI (v2, node 22) and
//! the official Python SDK against the fixture, and `@modelcontextprotocol/server-everything`
//! run by the gateway over stdio, including a tool that reports progress and one that asks the
//! client for sampling.

use crate::conformance::{fixture, node22, tools_dir};
use crate::gateway::{add_server, fixture_path, python, run_client, user_token};
use crate::gateway_sessions::{stdio_fixture, tenant_with_server};
use crate::helpers::{spawn_app_with, Engine, TestApp};
use portcullis::config::ServeArgs;
use serde_json::{json, Value};
use std::time::Duration;

async fn app_on_loopback() -> TestApp {
    spawn_app_with(
        Engine::Sqlite,
        ServeArgs {
            loopback_tenant: Some("acme".into()),
            ..Default::default()
        },
    )
    .await
}

async fn inspector(app: &TestApp, server: &str, token: &str, args: &[&str]) -> Value {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(node22())
            .arg(tools_dir().join(
                "node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js",
            ))
            .arg("--cli")
            .arg(format!("http://127.0.0.1:{}/mcp/{server}", app.port))
            .args(["--transport", "http", "--header"])
            .arg(format!("Authorization: Bearer {token}"))
            .args(args)
            .output(),
    )
    .await
    .expect("the Inspector finishes")
    .unwrap();
    assert!(
        out.status.success(),
        "inspector {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "inspector printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_cli_lists_calls_reads_and_gets_through_the_gateway() {
    let app = app_on_loopback().await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (_, token) = tenant_with_server(&app, "fx", stdio_fixture(&tag)).await;
    let tools = inspector(&app, "fx", &token, &["--method", "tools/list"]).await;
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"test_simple_text"),
        "{names:?}"
    );
    let sum = inspector(
        &app,
        "fx",
        &token,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "add",
            "--tool-arg",
            "a=2",
            "--tool-arg",
            "b=40",
        ],
    )
    .await;
    assert_eq!(sum["content"][0]["text"], "42");
    let read = inspector(
        &app,
        "fx",
        &token,
        &["--method", "resources/read", "--uri", "test://static-text"],
    )
    .await;
    assert_eq!(
        read["contents"][0]["text"],
        "This is the content of the static text resource."
    );
    let prompt = inspector(
        &app,
        "fx",
        &token,
        &[
            "--method",
            "prompts/get",
            "--prompt-name",
            "test_prompt_with_arguments",
            "--prompt-args",
            "arg1=x",
            "--prompt-args",
            "arg2=y",
        ],
    )
    .await;
    assert_eq!(
        prompt["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='x', arg2='y'"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_over_stdio_reports_progress_and_asks_for_sampling() {
    let app = app_on_loopback().await;
    let acme = app.create_tenant("acme").await;
    let everything =
        tools_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    add_server(
        &app,
        "acme",
        &acme.admin_token,
        "everything",
        json!({"transport": "stdio", "command": node22(), "args": [everything, "stdio"]}),
    )
    .await;
    let token = user_token(&app, "acme", &acme.admin_token, "dev@acme.example").await;
    // legacy: the session era end to end (sampling is a request to the client on the call's
    // stream); auto: the stateless era in front of it (sampling becomes an input_required
    // result, and the client's retry completes the call).
    for (mode, protocol) in [("legacy", "2025-11-25"), ("auto", "2026-07-28")] {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new(python())
                .arg(fixture_path("everything_client.py"))
                .arg(app.url("/mcp/everything"))
                .arg(&token)
                .arg("")
                .arg(mode)
                .output(),
        )
        .await
        .expect("the client finishes")
        .unwrap();
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(seen["protocol"], protocol);
        assert_eq!(
            seen["progress"],
            json!([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]]),
            "{mode}"
        );
        assert_eq!(
            seen["long"],
            json!(["Long running operation completed. Duration: 1 seconds, Steps: 3."])
        );
        // server-everything asked the client (through the gateway) for a completion, and the
        // client's answer went back to it.
        assert_eq!(
            seen["sampled"],
            json!(["Resource trigger-sampling-request context: hello from the test"]),
            "{mode}"
        );
        assert!(
            seen["sample"][0]
                .as_str()
                .unwrap()
                .contains("sampled by the test client"),
            "{seen}"
        );
        assert_eq!(seen["echo"], json!(["Echo: through the gateway"]));
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_reach_a_legacy_sse_server_through_the_gateway() {
    let sse = fixture("sse").await;
    let app = app_on_loopback().await;
    let (_, token) =
        tenant_with_server(&app, "old", json!({"transport": "sse", "url": sse.url})).await;
    for mode in ["auto", "legacy"] {
        let seen = run_client(&app, "acme", "old", mode, &token).await;
        let expected = if mode == "auto" {
            "2026-07-28"
        } else {
            "2025-11-25"
        };
        assert_eq!(seen["protocol"], expected);
        assert_eq!(seen["add"], json!(["42"]));
        assert_eq!(
            seen["prompt"],
            json!(["Prompt with arguments: arg1='x', arg2='y'"])
        );
    }
    app.stop().await;
}

/// A private CA and a certificate it signed for 127.0.0.1, made with the openssl CLI.
pub(crate) fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Portcullis Test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("leaf.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_reached_with_a_verified_certificate() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let plain = fixture("http").await;
    let origin = plain.url.trim_end_matches("/mcp").to_owned();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(fixture_path("tls_proxy.mjs"))
        .arg(certs.path().join("leaf.pem"))
        .arg(certs.path().join("leaf.key"))
        .arg(&origin);
    let tls = crate::conformance::start_listening(cmd).await;
    let upstream = json!({"transport": "streamable_http", "url": format!("{}/mcp", tls.url)});

    // Trusting the private CA: real clients work through the gateway.
    let app = spawn_app_with(
        Engine::Sqlite,
        ServeArgs {
            upstream_ca_file: Some(certs.path().join("ca.pem")),
            ..Default::default()
        },
    )
    .await;
    let (_, token) = tenant_with_server(&app, "secure", upstream.clone()).await;
    let seen = run_client(&app, "acme", "secure", "legacy", &token).await;
    assert_eq!(seen["add"], json!(["42"]));
    app.stop().await;

    // Without that CA the certificate is not trusted: test connection says the server is
    // unreachable, and the gateway answers clients with an error instead of talking to it.
    let app = spawn_app_with(Engine::Sqlite, ServeArgs::default()).await;
    let (admin, _) = tenant_with_server(&app, "secure", upstream).await;
    let res = app
        .client
        .post(app.url("/api/v1/servers/secure/test"))
        .header(reqwest::header::HOST, app.host(Some("acme")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["ok"], false, "{v}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_sse_upstream_is_reconnected_and_the_session_lives_on() {
    use crate::gateway_sessions::Mcp;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sse = crate::conformance::fixture_on("sse", port).await;
    let app = app_on_loopback().await;
    let (_, token) =
        tenant_with_server(&app, "old", json!({"transport": "sse", "url": sse.url})).await;
    let mut m = Mcp::new(&app, "acme", "old", &token);
    m.initialize().await;
    assert_eq!(
        m.call_text(1, "echo", json!({"message": "a"})).await,
        "Echo: a"
    );
    // The upstream goes away (its SSE connection with it), then comes back on the same port.
    drop(sse);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let down = m.call_text(2, "echo", json!({"message": "b"})).await;
    assert!(down.starts_with("error: the upstream MCP server"), "{down}");
    let _back = crate::conformance::fixture_on("sse", port).await;
    // The same client session works again over a new upstream session.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut n = 3;
    loop {
        let text = m.call_text(n, "echo", json!({"message": "c"})).await;
        if text == "Echo: c" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not re-established: {text}"
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    app.stop().await;
}
