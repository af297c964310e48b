//! The data filter on realistic answers (criterion): detector throughput in MB/s on one core,
//! and the time `filters::apply` adds to a 10 KB `tools/call` result (CRM contacts as JSON text
//! and structured content, with a few e-mail addresses, phone numbers and a card), compared in
//! one run with a pass over the same result that only walks its strings (the floor).
//!
//! Also the prompt-injection scanner's throughput (on the texts of its labelled corpus), and,
//! after criterion, the added latency's distribution (p50/p99/max over 20,000 runs) of the full
//! pipeline — personal data and secrets redacted, injection flagged — on a 10 KB answer.
//!
//! Run: `cargo bench -p server --bench filters`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis::filters::{apply, detect, injection, Action, InjectionAction, Policy};
use serde_json::{json, Value};
use std::hint::black_box;

const NAMES: [&str; 8] = [
    "Liam Petrov",
    "Aiko Nguyen",
    "Sofía Fernández",
    "Kwame Mensah",
    "Ingrid Haugen",
    "Rahul Iyer",
    "Chloe Dubois",
    "Tomasz Kowalski",
];

/// About 10 KB of CRM contacts: mostly ordinary text and numbers, some personal data.
fn contacts() -> Value {
    contacts_n(40)
}

/// `n` contacts as JSON text and structured content (20 make about 10 KB).
fn contacts_n(n: usize) -> Value {
    let mut rows = Vec::new();
    for i in 0..n {
        rows.push(json!({
            "id": format!("0f8c6a2e-51c3-4d7e-9a1b-{:012x}", i * 7919),
            "name": NAMES[i % NAMES.len()],
            "company": "Northwind Traders",
            "email": if i % 8 == 0 { format!("contact{i}@northwind.example") } else { String::new() },
            "phone": if i % 10 == 0 { "+1 415 555 0132".to_owned() } else { String::new() },
            "notes": format!("Met at the Q3 review; order #{} shipped on 2026-0{}-1{}; renewal due.", 100_000 + i, 1 + i % 9, i % 10),
            "score": i * 3,
        }));
    }
    rows[5]["notes"] = json!("Paid with card 4111 1111 1111 1111 on the last invoice.");
    let text = serde_json::to_string_pretty(&rows).unwrap();
    json!({
        "content": [{"type": "text", "text": text}],
        "structuredContent": {"contacts": rows},
    })
}

fn walk(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(walk).sum(),
        Value::Object(m) => m.values().map(walk).sum(),
        _ => 0,
    }
}

fn bench(c: &mut Criterion) {
    let result = contacts();
    let bytes = result.to_string().len();
    let text = result["content"][0]["text"].as_str().unwrap().to_owned();
    let policy = Policy {
        pii: Action::Redact,
        secrets: Action::Redact,
        ..Default::default()
    };
    eprintln!(
        "result: {bytes} bytes of JSON, {} bytes of text",
        text.len()
    );

    let mut g = c.benchmark_group("detector");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("scan 10 KB of text", |b| {
        b.iter(|| black_box(detect::scan(black_box(&text))))
    });
    g.finish();

    let mut g = c.benchmark_group("answer");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("walk the strings only (floor)", |b| {
        b.iter(|| black_box(walk(black_box(&result))))
    });
    g.bench_function("filters::apply, redact (clone included)", |b| {
        b.iter(|| {
            let mut r = result.clone();
            black_box(apply(&policy, None, &mut r))
        })
    });
    g.bench_function("clone only", |b| b.iter(|| black_box(result.clone())));
    g.finish();

    // The injection scanner on the texts of its corpus (realistic tool results, descriptions).
    let corpus = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/injection/corpus.jsonl"
    ))
    .unwrap();
    let texts: Vec<String> = corpus
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .collect();
    let total: usize = texts.iter().map(String::len).sum();
    let mut g = c.benchmark_group("injection");
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("scan the corpus texts", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(injection::scan(black_box(t)));
            }
        })
    });
    g.finish();

    // The full pipeline on a 10 KB answer.
    let ten = contacts_n(20);
    let ten_bytes = ten.to_string().len();
    let full = Policy {
        pii: Action::Redact,
        secrets: Action::Redact,
        injection: InjectionAction::Flag,
        ..Default::default()
    };
    let mut g = c.benchmark_group("10 KB answer");
    g.throughput(Throughput::Bytes(ten_bytes as u64));
    g.bench_function(
        "filters::apply, redact + injection flag (clone included)",
        |b| {
            b.iter(|| {
                let mut r = ten.clone();
                black_box(apply(&full, None, &mut r))
            })
        },
    );
    g.bench_function("clone only", |b| b.iter(|| black_box(ten.clone())));
    g.finish();

    // Latency distribution of the same, measured directly (criterion reports means); then a
    // small answer (an echo with one e-mail address, as `cargo bench --bench peers` sends):
    // what every call through a filtered server pays at least.
    for _ in 0..500 {
        let mut r = ten.clone();
        black_box(apply(&full, None, &mut r));
    }
    let small = json!({"content": [{"type": "text", "text": "Echo: Order 100482 for Northwind Traders shipped on 2026-03-14; questions to jane.doe@example.com, tracking 1Z999AA10123456784."}]});
    for answer in [&ten, &small] {
        let mut samples: Vec<u128> = (0..20_000)
            .map(|_| {
                let mut r = answer.clone();
                let t = std::time::Instant::now();
                black_box(apply(&full, None, &mut r));
                t.elapsed().as_nanos()
            })
            .collect();
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        eprintln!(
            "latency added to a {}-byte answer (redact + injection flag), 20,000 runs: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            answer.to_string().len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    // The same from two threads at once (the gateway's two runtime workers under load): the
    // regex crate hands each search a cache from a pool, and a thread that finds it taken
    // searches with a fresh one; the mean per call on each thread, against one thread alone.
    for threads in [1usize, 2] {
        let per_call = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let small = small.clone();
                    let full = full.clone();
                    scope.spawn(move || {
                        let t = std::time::Instant::now();
                        for _ in 0..20_000 {
                            let mut r = small.clone();
                            black_box(apply(&full, None, &mut r));
                        }
                        t.elapsed() / 20_000
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .max()
                .unwrap_or_default()
        });
        eprintln!(
            "small answer, {threads} thread(s) filtering at once: {:.1} µs per call (slowest thread's mean)",
            per_call.as_secs_f64() * 1e6
        );
    }
    let text = small["content"][0]["text"].as_str().unwrap_or_default();
    for (name, d) in detect::stage_times(text, 2_000)
        .into_iter()
        .chain(injection::stage_times(text, 2_000))
        .filter(|(_, d)| d.as_secs_f64() > 2e-6)
    {
        eprintln!("  small: {name:<28} {:>8.1} µs", d.as_secs_f64() * 1e6);
    }

    // Where the time goes: the detector's stages on the answer's text, and the injection scan
    // on the same text (each the mean of 2,000 runs).
    let text = ten["content"][0]["text"].as_str().unwrap();
    eprintln!(
        "where the time goes on the {}-byte text of that answer:",
        text.len()
    );
    let mut stages = detect::stage_times(text, 2_000);
    let t = std::time::Instant::now();
    for _ in 0..2_000 {
        black_box(injection::scan(black_box(text)));
    }
    stages.push(("injection::scan".to_owned(), t.elapsed() / 2_000));
    stages.extend(injection::stage_times(text, 2_000));
    for (name, d) in stages {
        eprintln!("  {name:<28} {:>8.1} µs", d.as_secs_f64() * 1e6);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
