//! The data filter on realistic answers (criterion): detector throughput in MB/s on one core,
//! and the time `filters::apply` adds to a 10 KB `tools/call` result (CRM contacts as JSON text
//! and structured content, with a few e-mail addresses, phone numbers and a card), compared in
//! one run with a pass over the same result that only walks its strings (the floor).
//!
//! Run: `cargo bench -p server --bench filters`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis::filters::{apply, detect, Action, Policy};
use serde_json::{json, Value};
use std::hint::black_box;

/// About 10 KB of CRM contacts: mostly ordinary text and numbers, some personal data.
fn contacts() -> Value {
    let mut rows = Vec::new();
    for i in 0..40 {
        rows.push(json!({
            "id": format!("0f8c6a2e-51c3-4d7e-9a1b-{:012x}", i * 7919),
            "name": format!("Contact {i}"),
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
