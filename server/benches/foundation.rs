//! Foundation benchmarks, compared within one run on the same machine:
//! 1. host resolution (`Tenancy::classify`) with 10,000 tenants, against a bare `HashMap` lookup;
//! 2. HTTP requests to the real application over loopback: `/healthz` (no host resolution, no
//!    database) against `GET /api/v1/tenant` (host resolution + admin-token check, one database
//!    transaction), on SQLite.
//!
//! Run: `cargo bench -p server --bench foundation`. Prints ns/op and request latency percentiles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis::config::{GlobalArgs, ServeArgs, Settings};
use portcullis::domain::BaseDomain;
use portcullis::startup::Application;
use portcullis::tenancy::{Tenancy, Tenant};
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn ns_per_op(iters: u32, mut f: impl FnMut(u32)) -> f64 {
    for i in 0..iters / 10 {
        f(i); // warm-up
    }
    let start = Instant::now();
    for i in 0..iters {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn host_resolution() {
    const N: u32 = 10_000;
    let tenants: Vec<Tenant> = (0..N)
        .map(|i| Tenant {
            tenant_id: format!("id-{i}"),
            slug: format!("tenant{i}"),
            name: format!("Tenant {i}"),
            created_at: 0,
        })
        .collect();
    let map: HashMap<String, u32> = (0..N).map(|i| (format!("tenant{i}"), i)).collect();
    let tenancy = Tenancy::from_tenants(BaseDomain::parse("localhost").unwrap(), tenants);
    let hosts: Vec<String> = (0..N)
        .map(|i| format!("tenant{i}.localhost:8080"))
        .collect();
    let slugs: Vec<String> = (0..N).map(|i| format!("tenant{i}")).collect();
    let iters = 2_000_000;
    let base = ns_per_op(iters, |i| {
        black_box(map.get(&slugs[(i % N) as usize]));
    });
    let classify = ns_per_op(iters, |i| {
        black_box(tenancy.classify(&hosts[(i % N) as usize]));
    });
    let unknown = ns_per_op(iters, |i| {
        black_box(tenancy.classify(if i % 2 == 0 {
            "nope.localhost:8080"
        } else {
            "10.0.0.1"
        }));
    });
    println!("host resolution, {N} tenants, {iters} lookups each:");
    println!("  HashMap<String,_>::get (baseline)   {base:8.1} ns/op");
    println!("  Tenancy::classify (known tenant)     {classify:8.1} ns/op");
    println!("  Tenancy::classify (unknown host)     {unknown:8.1} ns/op");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn http_requests() {
    let dir = tempfile::tempdir().unwrap();
    let global = GlobalArgs {
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let serve = ServeArgs {
        bind: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let app = Application::build(Settings::resolve(&global, &serve, None).unwrap())
        .await
        .unwrap();
    let created = portcullis::tenants::create(app.store(), "bench", "Bench", "a@bench.example")
        .await
        .unwrap();
    let token = created.admin_token.expose_secret().to_owned();
    drop(app);
    // Restart so the directory holds the tenant.
    let app = Application::build(Settings::resolve(&global, &serve, None).unwrap())
        .await
        .unwrap();
    let port = app.port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let host = format!("bench.localhost:{port}");
    const REQS: usize = 2_000;
    let run = |name: &'static str, path: &'static str, auth: bool| {
        let client = client.clone();
        let host = host.clone();
        let token = token.clone();
        let u = url(path);
        async move {
            let mut lat = Vec::with_capacity(REQS);
            for i in 0..REQS + 200 {
                let mut r = client.get(&u).header(reqwest::header::HOST, &host);
                if auth {
                    r = r.bearer_auth(&token);
                }
                let t = Instant::now();
                let res = r.send().await.unwrap();
                assert!(res.status().is_success(), "{name}: {}", res.status());
                res.bytes().await.unwrap();
                if i >= 200 {
                    lat.push(t.elapsed()); // the first 200 warm up
                }
            }
            lat.sort();
            let total: Duration = lat.iter().sum();
            println!(
                "  {name:<44} p50 {:>7.0} µs  p99 {:>7.0} µs  {:>7.0} req/s (1 client, sequential)",
                percentile(&lat, 0.50).as_secs_f64() * 1e6,
                percentile(&lat, 0.99).as_secs_f64() * 1e6,
                REQS as f64 / total.as_secs_f64(),
            );
        }
    };
    println!("HTTP over loopback, SQLite, {REQS} requests each:");
    run("GET /healthz (no host, no database)", "/healthz", false).await;
    run(
        "GET /api/v1/tenant (host + token, 1 db tx)",
        "/api/v1/tenant",
        true,
    )
    .await;
    let _ = tx.send(());
    server.await.unwrap().unwrap();
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run quickly then.
    let benching = std::env::args().any(|a| a == "--bench");
    if !benching {
        println!("foundation bench: run with `cargo bench -p server --bench foundation`");
        return;
    }
    host_resolution();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(http_requests());
}
