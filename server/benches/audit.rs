//! The audit log at scale, on PostgreSQL: search latency (p50/p95) for the common filters with
//! ten million records in one tenant, and streaming exports of one million records in each
//! format (throughput and the exporting process's peak RSS, against an export of 100,000 to
//! show memory does not grow with the number of rows).
//!
//! Loads synthetic rows with one `INSERT … SELECT generate_series` (monthly partitions over
//! six months, 1,000 users in 20 groups, 50 servers, 200 tools, 5% denials). Their hashes are
//! not a valid chain: this measures search and export, not verification.
//!
//! Run: `cargo bench -p server --bench audit` (needs PostgreSQL: PORTCULLIS_BENCH_DATABASE_URL,
//! default postgres://postgres@127.0.0.1:5432/postgres; a database is created and dropped).
//! AUDIT_BENCH_ROWS changes the ten million (e.g. 1000000 for a quick run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis::store::{AuditQuery, DatabaseLocation, Store};
use sqlx::Connection;
use std::time::{Duration, Instant};

const DAY_US: i64 = 86_400_000_000;

fn admin_url() -> String {
    std::env::var("PORTCULLIS_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_db(url: &str, db: &str) -> String {
    let (root, _) = url.rsplit_once('/').unwrap();
    format!("{root}/{db}")
}

async fn load(pool: &sqlx::PgPool, tenant: &str, slug: &str, rows: i64, now: i64) {
    sqlx::query("INSERT INTO tenant (tenant_id, slug, name, created_at, updated_at) VALUES ($1, $2, $2, 0, 0)")
        .bind(tenant)
        .bind(slug)
        .execute(pool)
        .await
        .unwrap();
    let span = 180 * DAY_US;
    for m in 0..8 {
        sqlx::query("SELECT portcullis_audit_partition($1)")
            .bind(now - span + m * 30 * DAY_US)
            .execute(pool)
            .await
            .unwrap();
    }
    // In chunks of a million, so that progress shows and memory stays bounded.
    let chunk = 1_000_000_i64;
    let mut start = 1;
    while start <= rows {
        let end = (start + chunk - 1).min(rows);
        sqlx::query(
            "INSERT INTO audit_event (event_id, tenant_id, seq, at, category, action, actor_id, actor, \
             server, target, outcome, detail, prev_hash, hash, decision, client, agent, groups, ip, \
             session_id, latency_us, upstream_us) \
             SELECT md5($1 || g::text), $1, g, $3 - $4 + (g * ($4 / $2)), \
               CASE WHEN g % 20 = 0 THEN 'admin' ELSE 'mcp' END, \
               CASE WHEN g % 20 = 0 THEN 'registry.update' WHEN g % 7 = 0 THEN 'tools/list' ELSE 'tools/call' END, \
               'u' || (g % 1000), 'user' || (g % 1000) || '@acme.example', \
               'server' || (g % 50), 'tool_' || (g % 200), \
               CASE WHEN g % 20 = 1 THEN 'denied' ELSE 'ok' END, \
               '{\"rule\":\"grant #1 rule 1\",\"jsonrpc_id\":' || g || '}', md5(g::text), md5((g + 1)::text), \
               CASE WHEN g % 20 = 1 THEN 'deny' ELSE 'allow' END, 'claude-code/1.0', 'laptop', \
               ',group' || (g % 20) || ',', '10.0.0.' || (g % 250), md5((g / 100)::text), 1500, 1200 \
             FROM generate_series($5::bigint, $6::bigint) AS g",
        )
        .bind(tenant)
        .bind(rows)
        .bind(now)
        .bind(span)
        .bind(start)
        .bind(end)
        .execute(pool)
        .await
        .unwrap();
        eprintln!("  loaded {end} of {rows} rows");
        start = end + 1;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn time_query(store: &Store, tenant: &str, name: &str, q: AuditQuery, runs: usize) {
    // Warm once, then measure.
    let n = store.search_audit(tenant, &q).await.unwrap().len();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(store.search_audit(tenant, &q).await.unwrap());
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "| {name} | {n} | {:.1} | {:.1} |",
        percentile(&times, 0.5).as_secs_f64() * 1000.0,
        percentile(&times, 0.95).as_secs_f64() * 1000.0
    );
}

/// Runs `portcullis audit export` and samples its peak RSS (VmHWM) until it exits.
fn export(url: &str, tenant: &str, format: &str, extra: &[&str]) -> (Duration, u64, u64) {
    let t = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "audit",
            "export",
            "--tenant",
            tenant,
            "--format",
            format,
            "--database-url",
            url,
        ])
        .args(extra)
        .env("PORTCULLIS_DATA_DIR", std::env::temp_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let counter =
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()).unwrap());
    let mut peak_kib = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(v) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(v);
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let bytes = counter.join().unwrap();
    (t.elapsed(), bytes, peak_kib)
}

fn main() {
    let rows: i64 = std::env::var("AUDIT_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let admin = admin_url();
        let name = format!("pct_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = with_db(&admin, &name);
        let store = Store::open(&DatabaseLocation::Postgres(url.clone())).await.unwrap();
        store.migrate().await.unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let now = portcullis::store::now_micros();
        eprintln!("loading {rows} rows into tenant big, 1,000,000 into exp, 100,000 into small…");
        let t = Instant::now();
        load(&pool, "t-big", "big", rows, now).await;
        load(&pool, "t-exp", "exp", 1_000_000, now).await;
        load(&pool, "t-small", "small", 100_000, now).await;
        sqlx::query("ANALYZE audit_event").execute(&pool).await.unwrap();
        println!("loaded {} rows in {:.0} s\n", rows + 1_100_000, t.elapsed().as_secs_f64());

        println!("search, tenant with {rows} records, 100 newest per page, 200 runs each:\n");
        println!("| filter | rows returned | p50 ms | p95 ms |\n|---|---|---|---|");
        let q = |f: &dyn Fn(&mut AuditQuery)| {
            let mut q = AuditQuery { limit: 100, ..Default::default() };
            f(&mut q);
            q
        };
        let cases: Vec<(&str, AuditQuery)> = vec![
            ("none (latest page)", q(&|_| {})),
            ("user", q(&|q| q.actor = Some("user42@acme.example".into()))),
            ("server", q(&|q| q.server = Some("server7".into()))),
            ("method tools/call + decision deny", q(&|q| {
                q.action = Some("tools/call".into());
                q.decision = Some("deny".into());
            })),
            ("group", q(&|q| q.group = Some("group3".into()))),
            ("user + one day, 90 days ago", q(&|q| {
                q.actor = Some("user42@acme.example".into());
                q.since = Some(now - 90 * DAY_US);
                q.until = Some(now - 89 * DAY_US);
            })),
            ("one day, 90 days ago", q(&|q| {
                q.since = Some(now - 90 * DAY_US);
                q.until = Some(now - 89 * DAY_US);
            })),
            ("text in target (tool_19)", q(&|q| q.q = Some("tool_19".into()))),
            ("page 50 of a user (keyset)", q(&|q| {
                q.actor = Some("user42@acme.example".into());
                q.before_seq = Some(rows - 50 * 100 * 1000);
            })),
        ];
        for (name, query) in cases {
            time_query(&store, "t-big", name, query, 200).await;
        }

        println!("\nexport (the `portcullis audit export` process, stdout drained):\n");
        println!("| records | format | seconds | MB | records/s | peak RSS MiB |\n|---|---|---|---|---|---|");
        for (tenant, n) in [("small", 100_000), ("exp", 1_000_000)] {
            for format in ["csv", "jsonl", "ocsf"] {
                let (d, bytes, kib) = export(&url, tenant, format, &[]);
                println!(
                    "| {n} | {format} | {:.1} | {:.0} | {:.0} | {:.1} |",
                    d.as_secs_f64(),
                    bytes as f64 / 1e6,
                    n as f64 / d.as_secs_f64(),
                    kib as f64 / 1024.0
                );
            }
        }
        pool.close().await;
        store.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)")))
            .execute(&mut conn)
            .await
            .unwrap();
    });
}
