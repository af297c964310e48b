//! Portcullis beside its peers, in one run on one machine, against one upstream: the fixture MCP
//! server (`tests/fixtures/everything_fixture.mjs`, the official TypeScript SDK, Streamable
//! HTTP). Five paths to the same `echo` tool:
//!
//! - **direct**: the fixture itself;
//! - **nginx**: one plain reverse-proxy hop (Debian's nginx, keep-alive to the upstream), the
//!   floor of "one more hop" here;
//! - **portcullis**: the release `portcullis serve` process on its embedded SQLite, with an
//!   access policy (a grant with allow and deny rules), the durable audit record of every call,
//!   and the personal-data, secret and injection filters on (the answer's e-mail address comes
//!   back redacted);
//! - **contextforge**: IBM ContextForge (`mcp-contextforge-gateway` from PyPI);
//! - **fastmcp**: a FastMCP proxy (`fastmcp` from PyPI);
//!
//! each peer started by `scripts/peer.sh` (its own venv under the cache). For every path and
//! concurrency level: calls per second, p50 and p99 latency, and the added p50 over direct; and
//! each path's peak resident memory (the sum of VmHWM over its process tree). Then the audit
//! trail is counted (every answered Portcullis call has its record). Results: a table on stdout,
//! `peers.json` and two SVG charts in `PEERS_OUT` (default `docs/benchmarks`).
//!
//! Run: `source scripts/env.sh && cargo bench -p server --bench peers` (or `scripts/bench.sh`).
//! `PEERS_SECONDS` (default 8) per cell, `PEERS_CONCURRENCY` (default `1,8,64`), `PEERS_ONLY`
//! (a comma list of path names to run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

#[path = "common/mod.rs"]
mod common;
use common::{free_port, Server};

const MESSAGE: &str = "Order 100482 for Northwind Traders shipped on 2026-03-14; questions to jane.doe@example.com, tracking 1Z999AA10123456784.";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A path under test.
#[derive(Clone)]
struct Target {
    name: &'static str,
    url: String,
    host: Option<String>,
    auth: Option<String>,
    /// The processes whose trees make its memory (none: not measured).
    roots: Vec<u32>,
}

/// `root` and every process below it.
fn tree(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The field after the command's closing parenthesis: state, then the parent pid.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// A `KiB` field of a /proc file of a process.
fn proc_kib(pid: u32, file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Memory of a process tree, KiB: the sum of each process's peak resident set (VmHWM; pages
/// a forked child shares with its parent count in both), and its proportional set size now
/// (PSS: shared pages divided among the processes that share them).
fn tree_memory_kib(root: u32) -> (u64, u64) {
    let pids = tree(root);
    (
        pids.iter().map(|p| proc_kib(*p, "status", "VmHWM:")).sum(),
        pids.iter()
            .map(|p| proc_kib(*p, "smaps_rollup", "Pss:"))
            .sum(),
    )
}

/// The JSON-RPC reply with this id, from a JSON or an SSE body.
fn reply(body: &str, id: i64) -> Option<Value> {
    let msgs: Vec<Value> = if body.trim_start().starts_with('{') {
        vec![serde_json::from_str(body).ok()?]
    } else {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    };
    msgs.into_iter().find(|m| m["id"] == id)
}

struct Client {
    http: reqwest::Client,
    target: Target,
    session: Option<String>,
    version: Option<String>,
}

impl Client {
    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(&self.target.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(v) = &self.version {
            r = r.header("mcp-protocol-version", v);
        }
        if let Some(h) = &self.target.host {
            r = r.header("host", h);
        }
        if let Some(a) = &self.target.auth {
            r = r.header("authorization", a);
        }
        if let Some(s) = &self.session {
            r = r.header("mcp-session-id", s);
        }
        r
    }

    /// Opens a session as an MCP client does: initialize, then the initialized notification,
    /// with the negotiated version on every later request.
    async fn open(http: reqwest::Client, target: Target) -> Result<Self, String> {
        let mut c = Client {
            http,
            target,
            session: None,
            version: None,
        };
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "peers-bench", "version": "1"}}});
        let res = c.post(&init).send().await.map_err(|e| e.to_string())?;
        c.session = res
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = res.status();
        let body = res.text().await.map_err(|e| e.to_string())?;
        let r = reply(&body, 0).ok_or_else(|| format!("initialize: {status} {body}"))?;
        c.version = r["result"]["protocolVersion"].as_str().map(str::to_owned);
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let res = c.post(&note).send().await.map_err(|e| e.to_string())?;
        let _ = res.text().await;
        Ok(c)
    }

    /// One `echo` call; whether its answer was the echo.
    async fn call(&self, id: i64) -> bool {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": MESSAGE}}});
        let Ok(res) = self.post(&call).send().await else {
            return false;
        };
        let Ok(body) = res.text().await else {
            return false;
        };
        reply(&body, id).is_some_and(|r| {
            r["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Echo: Order 100482"))
        })
    }
}

struct Cell {
    calls: u64,
    errors: u64,
    rps: f64,
    p50: f64,
    p99: f64,
}

/// `concurrency` clients, each with its own session, calling for `seconds` after a warm-up.
async fn run(target: &Target, concurrency: usize, seconds: f64) -> Cell {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let errors = Arc::new(AtomicU64::new(0));
    let warm = Duration::from_secs(1);
    let start = Instant::now() + warm;
    let until = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (http, target, errors) = (http.clone(), target.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let client = match Client::open(http, target).await {
                Ok(c) => c,
                Err(e) => {
                    if w == 0 {
                        eprintln!("  session failed: {e}");
                    }
                    errors.fetch_add(1, Ordering::Relaxed);
                    return lat;
                }
            };
            let mut id = 1;
            loop {
                let t = Instant::now();
                if t >= until {
                    break;
                }
                let ok = client.call(id).await;
                id += 1;
                if t < start {
                    continue;
                }
                if ok {
                    lat.push(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = until.saturating_duration_since(start).as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len().max(1) - 1) as f64 * p).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    Cell {
        calls: all.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        rps: all.len() as f64 / elapsed,
        p50: pct(0.5),
        p99: pct(0.99),
    }
}

/// A child that prints one line when it is ready; the line's words after `prefix`.
async fn start_reporting(
    mut cmd: tokio::process::Command,
    prefix: &str,
    what: &str,
    limit: Duration,
) -> (tokio::process::Child, Vec<String>) {
    cmd.stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let words = tokio::time::timeout(limit, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Some(rest.split_whitespace().map(str::to_owned).collect());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("{what} did not report ready within {limit:?}"));
    // Later output is not read: keep the pipe drained so a chatty child never blocks.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, words)
}

/// A child that leads its own process group: dropping it stops the group (a peer's script
/// and the servers it started), also when the bench fails half-way.
struct Group(tokio::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        // Only a child that still runs (never -1: `kill -TERM -PID` from procps signalled -1).
        let Some(pid) = self
            .0
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 1)
        else {
            return;
        };
        // Every child here is spawned with `process_group(0)`: its pid is its group's id.
        let group = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
        // What is still there after a few seconds (ContextForge's forked workers outlive their
        // parent's SIGTERM) is killed.
        for _ in 0..50 {
            if nix::sys::signal::killpg(group, None).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
}

fn nginx(dir: &Path, upstream_port: u16) -> (tokio::process::Command, String) {
    let port = free_port();
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             upstream mcp {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}\n  \
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://mcp;\n      \
             proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      \
             proxy_set_header Host 127.0.0.1:{upstream_port};\n      \
             proxy_buffering off;\n    }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new("/usr/sbin/nginx");
    cmd.arg("-p").arg(dir).arg("-c").arg(dir.join("nginx.conf"));
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    (cmd, format!("http://127.0.0.1:{port}/mcp"))
}

/// The release server on its own SQLite, a tenant with the upstream twice — `crm` with the
/// filters on, `plain` with them off (to tell their cost from the rest) —, a policy, and a
/// user's token; (process, targets).
async fn portcullis(data: &Path, upstream: &str) -> (tokio::process::Child, Vec<Target>) {
    let server = Server::start(data).await;
    server
        .configure(vec![
            (
                reqwest::Method::POST,
                "/api/v1/servers",
                json!({"slug": "crm", "upstream": {"transport": "streamable_http", "url": upstream}}),
            ),
            (
                reqwest::Method::POST,
                "/api/v1/servers",
                json!({"slug": "plain", "upstream": {"transport": "streamable_http", "url": upstream}}),
            ),
            (
                reqwest::Method::POST,
                "/api/v1/registries",
                json!({"slug": "all", "servers": ["crm", "plain"], "grants": [{"subject": "everyone", "rules": [
                    {"effect": "allow", "match": "echo"},
                    {"effect": "allow", "match": "get_*"},
                    {"effect": "deny", "match": "*delete*"}]}]}),
            ),
            (
                reqwest::Method::PUT,
                "/api/v1/filters",
                json!({"pii": "redact", "secrets": "redact", "injection": "flag"}),
            ),
            (
                reqwest::Method::PUT,
                "/api/v1/servers/plain/filters",
                json!({"pii": "off", "secrets": "off", "injection": "off"}),
            ),
        ])
        .await;
    let token = server.user_token("dev@acme.example").await;
    let pid = server.child.id().unwrap();
    let target = |name, slug: &str| Target {
        name,
        url: format!("{}/mcp/{slug}", server.base),
        host: Some(server.host.clone()),
        auth: Some(format!("Bearer {token}")),
        roots: vec![pid],
    };
    let targets = vec![
        target("portcullis", "crm"),
        target("portcullis-nofilter", "plain"),
    ];
    (server.child, targets)
}

/// A grouped bar chart (one group per concurrency level, one bar per path) as SVG.
fn bar_chart(
    title: &str,
    unit: &str,
    levels: &[usize],
    series: &[(&str, Vec<f64>)],
    log: bool,
) -> String {
    const COLORS: [&str; 6] = [
        "#6b7280", "#9ca3af", "#2563eb", "#d97706", "#059669", "#db2777",
    ];
    let (w, h, left, top, bottom) = (760.0, 360.0, 70.0, 40.0, 60.0);
    let plot_h = h - top - bottom;
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let min = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(max);
    let (lo, hi) = if log {
        (
            min.log10().floor(),
            max.log10().ceil().max(min.log10().floor() + 1.0),
        )
    } else {
        (0.0, max * 1.1)
    };
    let y = |v: f64| {
        let f = if log {
            (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo)
        } else {
            v / hi
        };
        top + plot_h * (1.0 - f)
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n",
        w / 2.0
    );
    // Axis and grid.
    let ticks: Vec<f64> = if log {
        (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..=5).map(|i| hi * i as f64 / 5.0).collect()
    };
    for t in ticks {
        let ty = y(t);
        s += &format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" stroke=\"#e5e7eb\"/>\n<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            w - 20.0,
            left - 6.0,
            ty + 4.0,
            if t >= 100.0 { format!("{t:.0}") } else { format!("{t}") }
        );
    }
    s += &format!(
        "<text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">{unit}{}</text>\n",
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        if log { " (log scale)" } else { "" }
    );
    let group_w = (w - left - 20.0) / levels.len() as f64;
    let bar_w = (group_w * 0.8) / series.len() as f64;
    for (g, level) in levels.iter().enumerate() {
        let gx = left + group_w * g as f64 + group_w * 0.1;
        for (i, (_, vals)) in series.iter().enumerate() {
            let v = vals.get(g).copied().unwrap_or(f64::NAN);
            if !v.is_finite() || v <= 0.0 {
                continue;
            }
            let x = gx + bar_w * i as f64;
            let by = y(v);
            s += &format!(
                "<rect x=\"{x:.1}\" y=\"{by:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{v:.2}</title></rect>\n",
                bar_w - 2.0,
                (top + plot_h - by).max(0.5),
                COLORS[i % COLORS.len()]
            );
        }
        s += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{level} client{}</text>\n",
            gx + group_w * 0.4,
            top + plot_h + 18.0,
            if *level == 1 { "" } else { "s" }
        );
    }
    let mut lx = left;
    for (i, (name, _)) in series.iter().enumerate() {
        let ly = h - 16.0;
        s += &format!(
            "<rect x=\"{lx}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{ly}\">{name}</text>\n",
            ly - 10.0,
            COLORS[i % COLORS.len()],
            lx + 16.0
        );
        lx += 16.0 + 7.0 * name.len() as f64 + 18.0;
    }
    s + "</svg>\n"
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("peers bench: run with `cargo bench -p server --bench peers`");
        return;
    }
    let seconds: f64 = std::env::var("PEERS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8.0);
    let levels: Vec<usize> = std::env::var("PEERS_CONCURRENCY")
        .unwrap_or_else(|_| "1,8,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let only: Option<Vec<String>> = std::env::var("PEERS_ONLY")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_owned()).collect());
    let wanted = |n: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == n));
    let out_dir = std::env::var("PEERS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("docs/benchmarks"));
    let tmp = tempfile::tempdir().unwrap();

    // The upstream.
    let fixture_js = repo().join("tests/fixtures/everything_fixture.mjs");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(&fixture_js)
        .args(["http", "--dynamic-delay-ms", "-1"])
        .stderr(std::process::Stdio::null());
    let (fixture, words) =
        start_reporting(cmd, "LISTENING ", "the fixture", Duration::from_secs(30)).await;
    let upstream = words[0].clone();
    let upstream_port: u16 = upstream
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next()?.parse().ok())
        .unwrap();
    let mut targets = vec![Target {
        name: "direct",
        url: upstream.clone(),
        host: None,
        auth: None,
        roots: vec![fixture.id().unwrap()],
    }];
    let mut children = vec![Group(fixture)];

    if wanted("nginx") {
        let dir = tmp.path().join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        let (mut cmd, url) = nginx(&dir, upstream_port);
        cmd.process_group(0);
        let child = cmd.spawn().expect("nginx (scripts/setup.sh installs it)");
        let pid = child.id().unwrap();
        children.push(Group(child));
        targets.push(Target {
            name: "nginx",
            url,
            host: None,
            auth: None,
            roots: vec![pid],
        });
    }
    if wanted("portcullis") {
        let data = tmp.path().join("portcullis");
        std::fs::create_dir_all(&data).unwrap();
        let (child, two) = portcullis(&data, &upstream).await;
        children.push(Group(child));
        targets.extend(
            two.into_iter()
                .filter(|t| wanted(t.name) || t.name == "portcullis"),
        );
    }
    for peer in ["contextforge", "fastmcp"] {
        if !wanted(peer) {
            continue;
        }
        let dir = tmp.path().join(peer);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg(repo().join("scripts/peer.sh"))
            .arg(peer)
            .arg(&upstream)
            .arg(&dir)
            .stderr(std::process::Stdio::inherit());
        eprintln!("starting {peer} (scripts/peer.sh; the first run installs it)");
        let (child, words) = start_reporting(cmd, "READY ", peer, Duration::from_secs(900)).await;
        let pid = child.id().unwrap();
        children.push(Group(child));
        let name: &'static str = if peer == "fastmcp" {
            "fastmcp"
        } else {
            "contextforge"
        };
        targets.push(Target {
            name,
            url: words[0].clone(),
            host: None,
            auth: words
                .get(1..)
                .map(|w| w.join(" "))
                .filter(|a| a != "-" && !a.is_empty()),
            roots: vec![pid],
        });
    }
    // Every path answers before anything is measured.
    for t in &targets {
        let c = Client::open(reqwest::Client::new(), t.clone())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        assert!(c.call(1).await, "{} answers the echo", t.name);
    }

    println!(
        "tools/call `echo` ({} bytes of message), {seconds} s per cell after 1 s of warm-up; upstream = everything_fixture.mjs",
        MESSAGE.len()
    );
    println!(
        "| path | clients | calls/s | p50 ms | p99 ms | added p50 over direct | calls | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut results: Vec<(&str, Vec<Cell>)> =
        targets.iter().map(|t| (t.name, Vec::new())).collect();
    for &c in &levels {
        for (i, t) in targets.iter().enumerate() {
            let cell = run(t, c, seconds).await;
            let direct_p50 = results[0].1.last().map_or(cell.p50, |d: &Cell| d.p50);
            let added = if i == 0 {
                "".to_owned()
            } else {
                format!("{:+.0} µs", (cell.p50 - direct_p50) * 1e3)
            };
            println!(
                "| {} | {c} | {:.0} | {:.2} | {:.2} | {added} | {} | {} |",
                t.name, cell.rps, cell.p50, cell.p99, cell.calls, cell.errors
            );
            results[i].1.push(cell);
        }
    }
    println!(
        "\n| path | throughput vs direct at {} clients | peak RSS, MiB (sum of VmHWM over the process tree) | PSS after the load, MiB | processes |",
        levels.last().unwrap_or(&0)
    );
    println!("|---|---:|---:|---:|---:|");
    let direct_top = results[0].1.last().map_or(f64::NAN, |c| c.rps);
    let mut memory = Vec::new();
    let mut measured: Vec<(u32, &str)> = Vec::new();
    for (t, (_, cells)) in targets.iter().zip(&results) {
        if let Some((_, first)) = measured.iter().find(|(r, _)| t.roots.contains(r)) {
            println!(
                "| {} | {:.2}× | (the {first} process) | | |",
                t.name,
                cells.last().map_or(f64::NAN, |c| c.rps) / direct_top
            );
            memory.push((t.name, f64::NAN, f64::NAN));
            continue;
        }
        measured.extend(t.roots.iter().map(|r| (*r, t.name)));
        let (mut peak, mut pss, mut procs) = (0, 0, 0);
        for r in &t.roots {
            let (h, p) = tree_memory_kib(*r);
            peak += h;
            pss += p;
            procs += tree(*r).len();
        }
        let mib = |k: u64| k as f64 / 1024.0;
        memory.push((t.name, mib(peak), mib(pss)));
        println!(
            "| {} | {:.2}× | {:.1} | {:.1} | {procs} |",
            t.name,
            cells.last().map_or(f64::NAN, |c| c.rps) / direct_top,
            mib(peak),
            mib(pss)
        );
    }

    // Every answered Portcullis call has its durable audit record.
    if targets.iter().any(|t| t.name == "portcullis") {
        let data = tmp.path().join("portcullis");
        let answered: u64 = results
            .iter()
            .filter(|(n, _)| n.starts_with("portcullis"))
            .flat_map(|(_, cells)| cells.iter().map(|c| c.calls))
            .sum();
        let exported = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args([
                "audit",
                "export",
                "--tenant",
                "acme",
                "--format",
                "jsonl",
                "--method",
                "tools/call",
            ])
            .arg("--data-dir")
            .arg(&data)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        let records: Vec<Value> = String::from_utf8_lossy(&exported.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["target"] == "echo")
            .collect();
        let calls = records.len() as u64;
        // Where a call's time goes inside the gateway, from its own records: from the request's
        // arrival to the answer (before the record's commit), and the part spent upstream.
        for server in ["crm", "plain"] {
            let of = |k: &str| {
                let mut v: Vec<i64> = records
                    .iter()
                    .filter(|r| r["server"] == server)
                    .filter_map(|r| r[k].as_i64())
                    .collect();
                v.sort_unstable();
                v.get(v.len() / 2).copied().unwrap_or(-1)
            };
            println!(
                "inside portcullis, /mcp/{server} (all levels): p50 arrival to answer {} µs, of which upstream {} µs, gateway {} µs (the record's commit and the HTTP edges are outside these)",
                of("latency_us"),
                of("upstream_us"),
                of("gateway_us")
            );
        }
        println!(
            "\naudit: {calls} tools/call records for echo, {answered} calls answered in the measured windows (plus warm-ups); every answered call has its record: {}",
            calls >= answered
        );
        assert!(
            calls >= answered,
            "audit records missing: {calls} < {answered}"
        );
    }

    std::fs::create_dir_all(&out_dir).unwrap();
    let series = |f: fn(&Cell) -> f64| -> Vec<(&str, Vec<f64>)> {
        results
            .iter()
            .map(|(n, cells)| (*n, cells.iter().map(f).collect()))
            .collect()
    };
    std::fs::write(
        out_dir.join("peers-throughput.svg"),
        bar_chart(
            "tools/call throughput, same upstream, 2 cores",
            "calls/s",
            &levels,
            &series(|c| c.rps),
            true,
        ),
    )
    .unwrap();
    std::fs::write(
        out_dir.join("peers-latency.svg"),
        bar_chart(
            "tools/call p50 latency",
            "ms",
            &levels,
            &series(|c| c.p50),
            true,
        ),
    )
    .unwrap();
    let json = json!({
        "message_bytes": MESSAGE.len(),
        "seconds_per_cell": seconds,
        "levels": levels,
        "paths": results.iter().zip(&memory).map(|((n, cells), (_, peak, pss))| json!({
            "name": n,
            "peak_rss_mib": if peak.is_nan() { Value::Null } else { json!(peak) },
            "pss_after_mib": if pss.is_nan() { Value::Null } else { json!(pss) },
            "cells": cells.iter().zip(&levels).map(|(c, l)| json!({
                "clients": l, "calls": c.calls, "errors": c.errors, "rps": c.rps,
                "p50_ms": c.p50, "p99_ms": c.p99})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(
        out_dir.join("peers.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    println!(
        "\nwritten: {}/peers.json, peers-throughput.svg, peers-latency.svg",
        out_dir.display()
    );
    drop(children);
}
