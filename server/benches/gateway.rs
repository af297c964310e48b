//! Gateway overhead, measured side by side in one run: `tools/call` straight to the fixture MCP
//! server (`tests/fixtures/everything_fixture.mjs`, the official TypeScript SDK, over Streamable
//! HTTP) and through `/mcp/{server}` to the same fixture, once proxied over Streamable HTTP
//! (token check, message checks, audit line, streamed proxy) and once run by the gateway over
//! stdio (the gateway's own session layer, one shared process), at several concurrency levels.
//!
//! Run: `source scripts/env.sh && cargo bench -p server --bench gateway`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis::config::{GlobalArgs, ServeArgs, Settings};
use portcullis::startup::Application;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const CALLS_PER_WORKER: usize = 200;

#[derive(Clone)]
struct Target {
    url: String,
    host: Option<String>,
    token: Option<String>,
}

impl Target {
    fn post(
        &self,
        client: &reqwest::Client,
        session: Option<&str>,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        let mut r = client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string());
        if let Some(h) = &self.host {
            r = r.header("host", h);
        }
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r
    }
}

/// The JSON-RPC reply with this id, from a JSON or SSE body.
fn reply(body: &str, id: i64) -> Value {
    let msgs: Vec<Value> = if body.trim_start().starts_with('{') {
        vec![serde_json::from_str(body).unwrap()]
    } else {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    };
    msgs.into_iter().find(|m| m["id"] == id).expect("a reply")
}

/// One client: opens a session, then calls `add` CALLS_PER_WORKER times; returns latencies.
async fn worker(client: reqwest::Client, target: Target) -> Vec<Duration> {
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}});
    let res = target.post(&client, None, &init).send().await.unwrap();
    let session = res
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    res.text().await.unwrap();
    let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    target
        .post(&client, session.as_deref(), &note)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lat = Vec::with_capacity(CALLS_PER_WORKER);
    for i in 1..=CALLS_PER_WORKER as i64 {
        let call = json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"add","arguments":{"a":i,"b":1}}});
        let t = Instant::now();
        let body = target
            .post(&client, session.as_deref(), &call)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        lat.push(t.elapsed());
        let r = reply(&body, i);
        assert_eq!(
            r["result"]["content"][0]["text"],
            (i + 1).to_string(),
            "{r}"
        );
    }
    lat
}

struct Stats {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(target: &Target, concurrency: usize) -> Stats {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let handles: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(worker(client.clone(), target.clone())))
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize];
    Stats {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("gateway bench: run with `cargo bench -p server --bench gateway`");
        return;
    }
    use tokio::io::AsyncBufReadExt;
    let fixture_js = format!(
        "{}/../tests/fixtures/everything_fixture.mjs",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut fixture = tokio::process::Command::new("node")
        .arg(&fixture_js)
        .arg("http")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(fixture.stdout.take().unwrap()).lines();
    let fixture_url = lines
        .next_line()
        .await
        .unwrap()
        .and_then(|l| l.strip_prefix("LISTENING ").map(str::to_owned))
        .expect("the fixture prints its URL");

    let dir = tempfile::tempdir().unwrap();
    let global = GlobalArgs {
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let serve = ServeArgs {
        bind: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let setup = Application::build(Settings::resolve(&global, &serve, None).unwrap())
        .await
        .unwrap();
    let store = setup.store().clone();
    let t = portcullis::tenants::create(&store, "bench", "Bench", "a@bench.example")
        .await
        .unwrap();
    for (slug, upstream) in [
        (
            "http",
            json!({"transport": "streamable_http", "url": fixture_url}),
        ),
        (
            "stdio",
            json!({"transport": "stdio", "command": "node", "args": [fixture_js, "stdio"]}),
        ),
    ] {
        portcullis::servers::add(
            &store,
            &t.tenant.tenant_id,
            portcullis::servers::NewServer {
                slug: slug.into(),
                name: None,
                description: None,
                upstream,
            },
        )
        .await
        .unwrap();
    }
    // Nothing is granted until a registry maps it: one registry with both servers, for everyone.
    portcullis::access::create_registry(
        &store,
        &t.tenant.tenant_id,
        portcullis::access::NewRegistry {
            slug: "bench".into(),
            name: None,
            description: None,
            servers: vec!["http".into(), "stdio".into()],
            grants: vec![portcullis::access::NewGrant {
                subject: "everyone".into(),
                rules: Vec::new(),
            }],
        },
    )
    .await
    .unwrap();
    let (_, token) = portcullis::servers::create_user_token(
        &store,
        &t.tenant.tenant_id,
        "u@bench.example",
        "bench",
    )
    .await
    .unwrap();
    drop(setup);
    let app = Application::build(Settings::resolve(&global, &serve, None).unwrap())
        .await
        .unwrap();
    let gw_port = app.port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));

    let direct = Target {
        url: fixture_url.clone(),
        host: None,
        token: None,
    };
    let via = |slug: &str| Target {
        url: format!("http://127.0.0.1:{gw_port}/mcp/{slug}"),
        host: Some(format!("bench.localhost:{gw_port}")),
        token: Some(token.expose_secret().to_owned()),
    };
    let (http, stdio) = (via("http"), via("stdio"));
    for t in [&direct, &http, &stdio] {
        run(t, 2).await; // warm-up every path
    }
    println!("tools/call `add`, {CALLS_PER_WORKER} calls per client; upstream = everything_fixture.mjs (official TypeScript SDK)");
    println!(
        "{:>7} | {:>22} | {:>22} | {:>22} | {:>9} | {:>9}",
        "clients",
        "direct req/s p50 p99",
        "gw->http req/s p50 p99",
        "gw->stdio req/s p50 p99",
        "direct/http",
        "direct/stdio"
    );
    for c in [1, 4, 16] {
        let d = run(&direct, c).await;
        let h = run(&http, c).await;
        let s = run(&stdio, c).await;
        let ms = |x: Duration| x.as_secs_f64() * 1e3;
        println!(
            "{c:>7} | {:>7.0} {:>6.2} {:>6.2} | {:>7.0} {:>6.2} {:>6.2} | {:>7.0} {:>6.2} {:>6.2} | {:>8.2}x | {:>8.2}x",
            d.rps,
            ms(d.p50),
            ms(d.p99),
            h.rps,
            ms(h.p50),
            ms(h.p99),
            s.rps,
            ms(s.p50),
            ms(s.p99),
            d.rps / h.rps,
            d.rps / s.rps
        );
    }
    let _ = tx.send(());
    server.await.unwrap().unwrap();
}
