//! The official MCP conformance suite (`@modelcontextprotocol/conformance` 0.1.16, on node 22
//! from the npm registry), run against the fixture MCP server directly and through the gateway
//! fronting it over each upstream transport: stdio (the gateway runs the fixture), Streamable
//! HTTP and legacy HTTP+SSE. Every active server scenario must pass, with no expected-failures
//! list. The suite's client cannot send a bearer token, so it talks to the gateway through
//! `tests/fixtures/auth_proxy.mjs`, which adds the header and changes nothing else.
//!
//! The gateway is reached at `http://127.0.0.1:{port}` (the suite's dns-rebinding scenario
//! needs a loopback URL) as the tenant named by `PORTCULLIS_LOOPBACK_TENANT`.

use crate::gateway::{add_server, fixture_path, user_token};
use crate::gateway_sessions::stdio_fixture;
use crate::helpers::{spawn_app_with, Engine, TestApp};
use portcullis::config::ServeArgs;
use serde_json::json;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

pub fn tools_dir() -> PathBuf {
    PathBuf::from(std::env::var("PORTCULLIS_TOOLS").unwrap_or_else(|_| {
        panic!("PORTCULLIS_TOOLS is not set: run `make test` (scripts/setup.sh installs node 22 and the MCP peers)")
    }))
}

/// Node 22 from the npm registry (the machine's node is 20; the suite and Inspector need 22).
pub fn node22() -> PathBuf {
    let node = tools_dir().join("node_modules/node/bin/node");
    assert!(
        node.exists(),
        "{} is missing: run scripts/setup.sh",
        node.display()
    );
    node
}

/// A child process that prints `LISTENING <url>` once ready; killed when dropped.
pub struct Listening {
    pub url: String,
    _child: tokio::process::Child,
}

pub async fn start_listening(mut cmd: tokio::process::Command) -> Listening {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start process");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the process prints LISTENING within 30s")
        .unwrap()
        .expect("a LISTENING line");
    let url = line
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    // Keep draining stdout so that the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Listening { url, _child: child }
}

pub async fn fixture(mode: &str) -> Listening {
    fixture_on(mode, 0).await
}

/// The fixture on a given port (0: any free one).
pub async fn fixture_on(mode: &str, port: u16) -> Listening {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(fixture_path("everything_fixture.mjs"))
        .arg(mode)
        .args(["--port", &port.to_string()]);
    start_listening(cmd).await
}

/// What one run of the suite reported.
#[derive(Debug)]
struct SuiteRun {
    label: String,
    success: bool,
    scenarios: usize,
    failed_scenarios: Vec<String>,
    total: String,
    output: String,
}

async fn run_suite(label: &str, url: &str) -> SuiteRun {
    run_suite_with(label, "@modelcontextprotocol/conformance", url, &[]).await
}

/// `package`: the suite's npm package in the tools dir (`conformance-next` is 0.2.0-alpha.12).
async fn run_suite_with(label: &str, package: &str, url: &str, extra: &[&str]) -> SuiteRun {
    let out_dir = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(node22())
            .arg(tools_dir().join(format!("node_modules/{package}/dist/index.js")))
            .args(["server", "--url", url, "-o"])
            .arg(out_dir.path())
            .args(extra)
            .output(),
    )
    .await
    .expect("the conformance suite finishes within 10 minutes")
    .unwrap();
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let scenario_lines: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with('✓') || l.starts_with('✗'))
        .collect();
    SuiteRun {
        label: label.to_owned(),
        success: out.status.success(),
        scenarios: scenario_lines.len(),
        failed_scenarios: scenario_lines
            .iter()
            .filter(|l| l.starts_with('✗'))
            .map(|l| l.to_string())
            .collect(),
        total: output
            .lines()
            .find(|l| l.starts_with("Total:"))
            .unwrap_or("Total: (none)")
            .to_owned(),
        output,
    }
}

/// The gateway on a loopback tenant `conf` with `servers`, and the token-adding proxy the suite
/// talks to.
async fn gateway_for_the_suite(servers: &[(&str, serde_json::Value)]) -> (TestApp, Listening) {
    let app = spawn_app_with(
        Engine::Sqlite,
        ServeArgs {
            loopback_tenant: Some("conf".into()),
            ..Default::default()
        },
    )
    .await;
    let conf = app.create_tenant("conf").await;
    for (slug, upstream) in servers {
        add_server(&app, "conf", &conf.admin_token, slug, upstream.clone()).await;
    }
    let token = user_token(&app, "conf", &conf.admin_token, "suite@conf.example").await;
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(fixture_path("auth_proxy.mjs"))
        .arg(format!("http://127.0.0.1:{}", app.port))
        .env("TOKEN", &token);
    let proxy = start_listening(cmd).await;
    (app, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_against_the_fixture_and_through_the_gateway() {
    let http = fixture("http").await;
    let sse = fixture("sse").await;
    let tag = uuid::Uuid::new_v4().to_string();
    let (app, proxy) = gateway_for_the_suite(&[
        ("stdio", stdio_fixture(&tag)),
        (
            "http",
            json!({"transport": "streamable_http", "url": http.url}),
        ),
        ("sse", json!({"transport": "sse", "url": sse.url})),
    ])
    .await;
    let runs = futures_util::future::join_all([
        run_suite("fixture directly (Streamable HTTP)", &http.url),
        run_suite(
            "gateway -> stdio upstream",
            &format!("{}/mcp/stdio", proxy.url),
        ),
        run_suite(
            "gateway -> Streamable HTTP upstream",
            &format!("{}/mcp/http", proxy.url),
        ),
        run_suite(
            "gateway -> HTTP+SSE upstream",
            &format!("{}/mcp/sse", proxy.url),
        ),
    ])
    .await;
    // The report, for the log of `make test`.
    for r in &runs {
        println!(
            "conformance 0.1.16, {}: {} scenarios, {}",
            r.label, r.scenarios, r.total
        );
    }
    for r in &runs {
        assert!(
            r.success && r.failed_scenarios.is_empty() && r.scenarios == 30,
            "{}: {:?}\n{}",
            r.label,
            r.failed_scenarios,
            r.output
        );
    }
    app.stop().await;
}

/// The newer suite release (0.2.0-alpha.12) by spec revision, through the gateway in front of
/// the fixture as a stdio server: every scenario 2025-11-25 requires; and the 2026-07-28
/// scenarios, which the gateway serves itself in front of that 2025-11-25 server, except those
/// listed (with reasons) in `tests/fixtures/conformance-2026-07-28-expected-failures.yaml`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newer_suite_passes_through_the_gateway_for_both_revisions() {
    let tag = uuid::Uuid::new_v4().to_string();
    let (app, proxy) = gateway_for_the_suite(&[("stdio", stdio_fixture(&tag))]).await;
    let url = format!("{}/mcp/stdio", proxy.url);
    let expected = fixture_path("conformance-2026-07-28-expected-failures.yaml");
    let runs = [
        run_suite_with(
            "0.2.0-alpha.12 --requirements 2025-11-25, gateway -> stdio upstream",
            "conformance-next",
            &url,
            &["--requirements", "2025-11-25"],
        )
        .await,
        run_suite_with(
            "0.2.0-alpha.12 --requirements 2026-07-28, gateway -> stdio upstream",
            "conformance-next",
            &url,
            &[
                "--requirements",
                "2026-07-28",
                "--expected-failures",
                &expected,
            ],
        )
        .await,
    ];
    for r in &runs {
        println!(
            "conformance {}: {} scenarios, {}",
            r.label, r.scenarios, r.total
        );
    }
    for r in &runs {
        assert!(r.success && r.scenarios > 30, "{}:\n{}", r.label, r.output);
    }
    // Only the listed scenarios failed in the 2026-07-28 run.
    assert_eq!(
        runs[1].failed_scenarios.len(),
        10,
        "{:?}",
        runs[1].failed_scenarios
    );
    assert!(
        runs[0].failed_scenarios.is_empty(),
        "{:?}",
        runs[0].failed_scenarios
    );
    app.stop().await;
}
