//! One access-policy decision against a tenant with 10,000 rules (criterion).
//!
//! The tenant: 1,000 users in 100 groups, 50 servers, 100 registries (each holding 5 servers,
//! granted to 2 groups), and 10,000 rules spread over those grants: exact tool names, prefix
//! and suffix globs, annotation conditions and argument conditions. Each case is one
//! `TenantPolicy::decide` as the gateway makes it on a `tools/call`, compared in one run with a
//! bare `HashMap` lookup of the same name.
//!
//! Run: `cargo bench -p server --bench policy`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::policy::{
    Ask, GrantInput, GrantRules, GroupInput, Hints, Kind, PolicyInputs, ServerInput, Subject,
    TenantPolicy, UserInput,
};
use serde_json::json;
use std::collections::HashMap;
use std::hint::black_box;

const USERS: usize = 1_000;
const GROUPS: usize = 100;
const SERVERS: usize = 50;
const REGISTRIES: usize = 100;
const RULES: usize = 10_000;

fn tenant() -> TenantPolicy {
    let users = (0..USERS)
        .map(|u| UserInput {
            user_id: format!("u{u}"),
            email: format!("user{u}@acme.test"),
            active: true,
            groups: vec![format!("g{}", u % GROUPS), format!("g{}", (u * 7) % GROUPS)],
        })
        .collect();
    let groups = (0..GROUPS)
        .map(|g| GroupInput {
            group_id: format!("g{g}"),
            name: format!("group-{g}"),
        })
        .collect();
    let servers = (0..SERVERS)
        .map(|s| ServerInput {
            slug: format!("s{s}"),
            new_tools_deny: false,
            catalog: HashMap::new(),
            ..Default::default()
        })
        .collect();
    let per_grant = RULES / (REGISTRIES * 2);
    let mut grants = Vec::new();
    for r in 0..REGISTRIES {
        for k in 0..2 {
            let rules: Vec<serde_json::Value> = (0..per_grant)
                .map(|i| match i % 5 {
                    0 => json!({"effect": "allow", "match": format!("tool_{r}_{i}")}),
                    1 => json!({"effect": "allow", "match": format!("search_{r}_{i}_*")}),
                    2 => json!({"effect": "deny", "match": format!("*_delete_{r}_{i}")}),
                    3 => json!({"effect": "allow", "match": format!("read_{r}_{i}*"),
                                "annotations": {"read_only": true}}),
                    _ => json!({"effect": "allow", "match": format!("refund_{r}_{i}"),
                                "arguments": [{"pointer": "/amount", "max": 100}]}),
                })
                .collect();
            grants.push(GrantInput {
                grant_id: format!("grant-{r}-{k}"),
                registry_slug: format!("reg-{r}"),
                registry_name: format!("Registry {r}"),
                servers: (0..5)
                    .map(|i| format!("s{}", (r + i * 11) % SERVERS))
                    .collect(),
                subject: Subject::Group {
                    group_id: format!("g{}", (r * 2 + k) % GROUPS),
                },
                rules: serde_json::from_value::<GrantRules>(json!({ "rules": rules })).unwrap(),
            });
        }
    }
    TenantPolicy::compile(PolicyInputs {
        users,
        groups,
        servers,
        grants,
    })
}

fn bench(c: &mut Criterion) {
    let p = tenant();
    // A user of group g0 on a server of registry 0 (s0 is in reg-0).
    let user = "u0";
    assert!(p.reaches(user, "s0"), "the benchmark user reaches s0");
    let args_ok = json!({"amount": 50});
    let cases = [
        ("exact name, allowed", "tool_0_0", None),
        ("prefix glob, allowed", "search_0_1_contacts", None),
        ("suffix glob, denied", "contact_delete_0_2", None),
        ("no rule matches, denied", "unknown_tool", None),
        ("argument condition, allowed", "refund_0_4", Some(&args_ok)),
    ];
    for (label, name, args) in cases {
        let ask = Ask {
            kind: Kind::Tool,
            name,
            hints: Hints::default(),
            arguments: args.or(Some(&serde_json::Value::Null)),
        };
        c.bench_function(&format!("decide/10k rules/{label}"), |b| {
            b.iter(|| black_box(p.decide(black_box(user), black_box("s0"), black_box(&ask))))
        });
    }
    let map: HashMap<String, u32> = (0..RULES)
        .map(|i| (format!("tool_{i}"), i as u32))
        .collect();
    c.bench_function("baseline/HashMap lookup of one name", |b| {
        b.iter(|| black_box(map.get(black_box("tool_4242"))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
