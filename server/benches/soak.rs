//! Soak: one `portcullis serve` process (the release binary, embedded SQLite, durable audit on
//! every call, a filter policy on) under steady `tools/call` load from 16 MCP clients for
//! `SOAK_SECONDS` (default 600), its resident memory and open file descriptors sampled every
//! 10 s from /proc. Printed: throughput, failures, and the samples, with the first and the last
//! minute compared (stable = no growth beyond noise once warm).
//!
//! Run: `source scripts/env.sh && cargo bench -p server --bench soak` (needs the Python fixture
//! server: `scripts/setup.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;

#[path = "common/mod.rs"]
mod common;
use common::{free_port, Server};

/// (resident KiB, open descriptors) of a process.
fn sample(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss, fds)
}

fn answer_text(body: &str) -> Option<String> {
    let json = body
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or(body)
        .trim();
    let v: Value = serde_json::from_str(json).ok()?;
    v["result"]["content"][0]["text"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let python = std::env::var("PORTCULLIS_PYTHON").expect("source scripts/env.sh first");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/mcp_fixture.py"
    );
    let up_port = free_port();
    let _upstream = tokio::process::Command::new(python)
        .arg(fixture)
        .arg(up_port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path()).await;
    let pid = server.child.id().unwrap();
    server
        .configure(vec![
            (
                reqwest::Method::POST,
                "/api/v1/servers",
                json!({"slug": "crm", "upstream": {"transport": "streamable_http",
                    "url": format!("http://127.0.0.1:{up_port}/mcp")}}),
            ),
            (
                reqwest::Method::POST,
                "/api/v1/registries",
                json!({"slug": "all", "servers": ["crm"], "grants": [{"subject": "everyone"}]}),
            ),
            (
                reqwest::Method::PUT,
                "/api/v1/filters",
                json!({"pii": "redact", "secrets": "redact", "injection": "flag"}),
            ),
        ])
        .await;
    let token = server.user_token("dev@acme.example").await;
    let http = reqwest::Client::new();
    let (base, host) = (server.base.clone(), server.host.clone());
    // The upstream needs a moment to listen.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for me in 0..CLIENTS {
        let (http, base, host, token) = (http.clone(), base.clone(), host.clone(), token.clone());
        let (ok, failed) = (ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            // A new session every 500 calls, so that session set-up and teardown soak too.
            let mut n: i64 = 0;
            while Instant::now() < until {
                let init = http
                    .post(format!("{base}/mcp/crm"))
                    .header("host", &host)
                    .header("accept", "application/json, text/event-stream")
                    .bearer_auth(&token)
                    .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                   "clientInfo": {"name": "soak", "version": "0"}}}))
                    .send()
                    .await;
                let Ok(init) = init else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let Some(sid) = init
                    .headers()
                    .get("mcp-session-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let _ = init.text().await;
                for _ in 0..500 {
                    if Instant::now() >= until {
                        break;
                    }
                    n += 1;
                    let res = http
                        .post(format!("{base}/mcp/crm"))
                        .header("host", &host)
                        .header("accept", "application/json, text/event-stream")
                        .header("mcp-session-id", &sid)
                        .bearer_auth(&token)
                        .json(&json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                            "params": {"name": "whoami",
                                       "arguments": {"note": format!("client {me} call {n}, mail jane.doe@example.com")}}}))
                        .send()
                        .await;
                    let good = match res {
                        Ok(r) => r
                            .text()
                            .await
                            .ok()
                            .and_then(|b| answer_text(&b))
                            .is_some_and(|t| t.contains("[REDACTED:EMAIL]")),
                        Err(_) => false,
                    };
                    if good {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let _ = http
                    .delete(format!("{base}/mcp/crm"))
                    .header("host", &host)
                    .header("mcp-session-id", &sid)
                    .bearer_auth(&token)
                    .send()
                    .await;
            }
        }));
    }
    let mut samples = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (rss, fds) = sample(pid);
        samples.push((
            start.elapsed().as_secs(),
            rss,
            fds,
            ok.load(Ordering::Relaxed),
        ));
        eprintln!(
            "t={:>4}s rss={} KiB fds={} calls={}",
            start.elapsed().as_secs(),
            rss,
            fds,
            ok.load(Ordering::Relaxed)
        );
    }
    for t in tasks {
        let _ = t.await;
    }
    let (rss_end, fds_end) = sample(pid);
    let _ = server.child.start_kill();
    let calls = ok.load(Ordering::Relaxed);
    let fails = failed.load(Ordering::Relaxed);
    println!(
        "\nsoak: {seconds} s, {CLIENTS} clients, {calls} calls answered ({:.0}/s), {fails} failed",
        calls as f64 / seconds as f64
    );
    println!("| t (s) | RSS (MiB) | open fds | calls so far |");
    println!("|---|---|---|---|");
    for (t, rss, fds, n) in samples.iter().filter(|s| s.0 % 60 < 10 || s.0 <= 30) {
        println!("| {t} | {:.1} | {fds} | {n} |", *rss as f64 / 1024.0);
    }
    let minute = |from: u64, to: u64| {
        samples
            .iter()
            .filter(|s| s.0 >= from && s.0 < to)
            .map(|s| (s.1, s.2))
            .fold((0, 0), |(r, f), (rs, fs)| (r.max(rs), f.max(fs)))
    };
    let first = minute(60, 120);
    let last = minute(seconds.saturating_sub(60), seconds + 10);
    println!(
        "\nmax RSS, minute 2: {:.1} MiB, last minute: {:.1} MiB; max fds, minute 2: {}, last minute: {}; after the load: {:.1} MiB, {} fds",
        first.0 as f64 / 1024.0,
        last.0 as f64 / 1024.0,
        first.1,
        last.1,
        rss_end as f64 / 1024.0,
        fds_end
    );
}
