//! Anomaly signals over the audit trail: per user and per agent, the last hour against a
//! baseline of the fourteen days before it. Five kinds:
//!
//! - `denial_burst`: many refused calls within ten minutes (probing, or a confused agent);
//! - `first_destructive`: a destructive tool called by someone who never called it before;
//! - `volume_spike`: calls in the hour far above the subject's hourly baseline;
//! - `unusual_hour`: calls at an hour of day the subject never works at (with enough history);
//! - `filter_spike`: answers redacted, blocked or flagged as injection far above the baseline.
//!
//! `detect` is pure (it reads rows the store aggregated); `scan` runs it for one tenant, stores
//! new signals (one per kind, subject and window, on every replica at most once: the store's
//! unique key decides), records each as a `security` audit event — so every SIEM destination
//! receives it — and, unless the tenant turned mail off, adds it to the admins' security digest.

use super::model::SignalFacts;
use crate::store::review::{HourRow, SignalRecordRow, SignalRow};
use crate::tenants::format_time;
use std::collections::{BTreeMap, HashMap, HashSet};

pub const HOUR_US: i64 = 3_600_000_000;
/// The most records of the last hour one scan reads per tenant.
const WINDOW_ROWS: i64 = 20_000;
const MINUTE_US: i64 = 60_000_000;
/// The tenant setting: `{"mail": false}` stops mailing signals (they are still recorded).
pub const SETTING: &str = "signals";

/// Thresholds (the defaults are what `scan` uses; tests use them too).
#[derive(Clone, Debug)]
pub struct Thresholds {
    /// Denials within `burst_minutes` that make a burst.
    pub burst_denials: usize,
    pub burst_minutes: i64,
    /// Calls in an hour below which no spike is raised, whatever the baseline.
    pub spike_floor: i64,
    /// A spike is this many times the baseline's hourly mean (and 6 standard deviations).
    pub spike_factor: f64,
    /// History needed before unusual hours count: calls, and distinct days with calls.
    pub hours_min_calls: i64,
    pub hours_min_days: usize,
    /// Filtered answers in an hour below which no filter spike is raised.
    pub filter_floor: i64,
    pub baseline_days: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            burst_denials: 5,
            burst_minutes: 10,
            spike_floor: 50,
            spike_factor: 5.0,
            hours_min_calls: 100,
            hours_min_days: 5,
            filter_floor: 10,
            baseline_days: 14,
        }
    }
}

/// A signal before it is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Raised {
    pub kind: &'static str,
    pub subject: String,
    pub severity: &'static str,
    pub at: i64,
    pub summary: String,
    /// What makes it the same signal: `kind:subject:window`.
    pub dedup_key: String,
    /// The records behind it: their seqs (at most 50) and the audit search that finds them.
    pub seqs: Vec<i64>,
    pub search: Vec<(&'static str, String)>,
    pub numbers: serde_json::Value,
}

/// `user:EMAIL` or `agent:SLUG` (an agent's calls are the agent's, whoever owns it).
fn subject(actor: Option<&str>, agent: Option<&str>) -> Option<String> {
    match (agent, actor) {
        (Some(a), _) if !a.is_empty() => Some(format!("agent:{a}")),
        (_, Some(u)) if !u.is_empty() => Some(format!("user:{u}")),
        _ => None,
    }
}

/// The audit search filter that selects a subject's records.
fn subject_filter(subject: &str) -> (&'static str, String) {
    match subject.split_once(':') {
        Some(("agent", a)) => ("agent", a.to_owned()),
        Some((_, u)) => ("user", u.to_owned()),
        None => ("user", subject.to_owned()),
    }
}

/// Mean and standard deviation of a subject's hourly counts over `hours` hours (hours without
/// calls count as zero).
fn mean_sd(counts: &[i64], hours: i64) -> (f64, f64) {
    let n = hours.max(1) as f64;
    let sum: i64 = counts.iter().sum();
    let mean = sum as f64 / n;
    let sq: f64 = counts
        .iter()
        .map(|c| (*c as f64 - mean).powi(2))
        .sum::<f64>()
        + (n - counts.len() as f64).max(0.0) * mean * mean;
    (mean, (sq / n).sqrt())
}

/// Finds the signals in `window` (records in `[start, now)`, oldest first) against `baseline`
/// (hourly counts in the `baseline_days` before `start`). `known` holds (subject, server, tool)
/// calls seen before the window; `destructive(server, tool)` says how a tool is classed.
pub fn detect(
    window: &[SignalRecordRow],
    baseline: &[HourRow],
    known: &HashSet<(String, String, String)>,
    destructive: &dyn Fn(&str, &str) -> bool,
    start: i64,
    t: &Thresholds,
) -> Vec<Raised> {
    let mut out = Vec::new();
    let hour_key = start / HOUR_US;
    let baseline_hours = t.baseline_days * 24;
    let mut by_subject: BTreeMap<String, Vec<&SignalRecordRow>> = BTreeMap::new();
    for r in window {
        if let Some(s) = subject(r.actor.as_deref(), r.agent.as_deref()) {
            by_subject.entry(s).or_default().push(r);
        }
    }
    let mut base: HashMap<String, Vec<&HourRow>> = HashMap::new();
    for h in baseline {
        if let Some(s) = subject(h.actor.as_deref(), h.agent.as_deref()) {
            base.entry(s).or_default().push(h);
        }
    }
    let since = format_time(start);
    for (subj, recs) in &by_subject {
        let hist = base.get(subj).map(Vec::as_slice).unwrap_or(&[]);
        let who = subject_filter(subj);

        // Denial bursts: any `burst_minutes` span holding `burst_denials` refusals.
        let denials: Vec<&&SignalRecordRow> = recs
            .iter()
            .filter(|r| r.decision.as_deref() == Some("deny"))
            .collect();
        let span = t.burst_minutes * MINUTE_US;
        let mut i = 0;
        for j in 0..denials.len() {
            while denials[j].at - denials[i].at > span {
                i += 1;
            }
            if j + 1 - i >= t.burst_denials {
                let burst: Vec<i64> = denials[i..]
                    .iter()
                    .take_while(|r| r.at - denials[i].at <= span)
                    .map(|r| r.seq)
                    .collect();
                let first = denials[i].at;
                out.push(Raised {
                    kind: "denial_burst",
                    subject: subj.clone(),
                    severity: if burst.len() >= t.burst_denials * 4 {
                        "high"
                    } else {
                        "medium"
                    },
                    at: first,
                    summary: format!(
                        "{} calls refused within {} minutes",
                        burst.len(),
                        t.burst_minutes
                    ),
                    dedup_key: format!("denial_burst:{subj}:{}", first / span),
                    seqs: burst.iter().copied().take(50).collect(),
                    search: vec![
                        who.clone(),
                        ("decision", "deny".into()),
                        ("since", format_time(first)),
                    ],
                    numbers: serde_json::json!({"denials": burst.len(), "minutes": t.burst_minutes}),
                });
                break;
            }
        }

        // First use of a destructive tool.
        let mut firsts: BTreeMap<(String, String), Vec<&SignalRecordRow>> = BTreeMap::new();
        for r in recs
            .iter()
            .filter(|r| r.action == "tools/call" && r.decision.as_deref() == Some("allow"))
        {
            let (Some(server), Some(tool)) = (&r.server, &r.target) else {
                continue;
            };
            if destructive(server, tool)
                && !known.contains(&(subj.clone(), server.clone(), tool.clone()))
            {
                firsts
                    .entry((server.clone(), tool.clone()))
                    .or_default()
                    .push(r);
            }
        }
        for ((server, tool), rs) in firsts {
            out.push(Raised {
                kind: "first_destructive",
                subject: subj.clone(),
                severity: "medium",
                at: rs[0].at,
                summary: format!("first call of the destructive tool {server}/{tool}"),
                dedup_key: format!("first_destructive:{subj}:{server}/{tool}"),
                seqs: rs.iter().map(|r| r.seq).take(50).collect(),
                search: vec![
                    who.clone(),
                    ("server", server.clone()),
                    ("q", tool.clone()),
                    ("since", since.clone()),
                ],
                numbers: serde_json::json!({"calls": rs.len()}),
            });
        }

        // Volume far above the baseline.
        let calls = i64::try_from(recs.len()).unwrap_or(i64::MAX);
        let counts: Vec<i64> = hist.iter().map(|h| h.calls).collect();
        let (mean, sd) = mean_sd(&counts, baseline_hours);
        let threshold = (t.spike_floor as f64)
            .max(mean * t.spike_factor)
            .max(mean + 6.0 * sd);
        if calls as f64 > threshold {
            out.push(Raised {
                kind: "volume_spike",
                subject: subj.clone(),
                severity: if calls as f64 > 2.0 * threshold {
                    "high"
                } else {
                    "medium"
                },
                at: recs[0].at,
                summary: format!("{calls} calls in an hour (baseline {mean:.1} an hour)"),
                dedup_key: format!("volume_spike:{subj}:{hour_key}"),
                seqs: recs.iter().map(|r| r.seq).take(50).collect(),
                search: vec![who.clone(), ("since", since.clone())],
                numbers: serde_json::json!({"calls": calls, "baseline_mean": (mean * 10.0).round() / 10.0, "threshold": threshold.round()}),
            });
        }

        // Calls at an hour of day never seen in a long enough history (±1 hour).
        let hist_calls: i64 = counts.iter().sum();
        let days: HashSet<i64> = hist.iter().map(|h| h.hour / 24).collect();
        if hist_calls >= t.hours_min_calls && days.len() >= t.hours_min_days {
            let usual: HashSet<i64> = hist.iter().map(|h| h.hour.rem_euclid(24)).collect();
            let mut odd: BTreeMap<i64, Vec<&SignalRecordRow>> = BTreeMap::new();
            for r in recs.iter() {
                let hod = (r.at / HOUR_US).rem_euclid(24);
                let near = [-1, 0, 1]
                    .iter()
                    .any(|d| usual.contains(&(hod + d).rem_euclid(24)));
                if !near {
                    odd.entry(hod).or_default().push(r);
                }
            }
            for (hod, rs) in odd {
                out.push(Raised {
                    kind: "unusual_hour",
                    subject: subj.clone(),
                    severity: "low",
                    at: rs[0].at,
                    summary: format!(
                        "{} calls at {hod:02}:00 UTC, an hour with no calls in {} days of history",
                        rs.len(),
                        t.baseline_days
                    ),
                    dedup_key: format!("unusual_hour:{subj}:{}", rs[0].at / HOUR_US),
                    seqs: rs.iter().map(|r| r.seq).take(50).collect(),
                    search: vec![who.clone(), ("since", format_time(rs[0].at))],
                    numbers: serde_json::json!({"calls": rs.len(), "hour": hod}),
                });
            }
        }

        // Redactions, blocks and injections far above the baseline.
        let hits: Vec<&&SignalRecordRow> = recs.iter().filter(|r| r.filtered).collect();
        let n = i64::try_from(hits.len()).unwrap_or(i64::MAX);
        let fcounts: Vec<i64> = hist.iter().map(|h| h.filtered).collect();
        let (fmean, fsd) = mean_sd(&fcounts, baseline_hours);
        let fthreshold = (t.filter_floor as f64)
            .max(fmean * t.spike_factor)
            .max(fmean + 6.0 * fsd);
        if n as f64 > fthreshold {
            let injections = hits.iter().filter(|r| r.injection).count();
            out.push(Raised {
                kind: "filter_spike",
                subject: subj.clone(),
                severity: if injections > 0 { "high" } else { "medium" },
                at: hits[0].at,
                summary: format!(
                    "{n} answers redacted, blocked or flagged in an hour ({injections} as prompt injection; baseline {fmean:.1} an hour)"
                ),
                dedup_key: format!("filter_spike:{subj}:{hour_key}"),
                seqs: hits.iter().map(|r| r.seq).take(50).collect(),
                search: vec![who.clone(), ("since", since.clone())],
                numbers: serde_json::json!({"filtered": n, "injections": injections, "baseline_mean": (fmean * 10.0).round() / 10.0}),
            });
        }
    }
    out
}

/// The console path of the audit search for a signal's records.
pub fn records_href(search: &[(impl AsRef<str>, impl AsRef<str>)]) -> String {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(search.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .finish();
    format!("/admin/audit?{q}")
}

/// A stored signal as the pack and the dashboard show it.
pub fn facts(r: SignalRow) -> SignalFacts {
    let detail: serde_json::Value = serde_json::from_str(&r.detail).unwrap_or_default();
    SignalFacts {
        kind: r.kind,
        subject: r.subject,
        severity: r.severity,
        at: format_time(r.at),
        summary: r.summary,
        records_href: detail["records_href"]
            .as_str()
            .unwrap_or("/admin/audit")
            .to_owned(),
    }
}

/// Runs the detectors for one tenant over the hour before `now`; stores, records and mails
/// the new signals. Returns them.
pub async fn scan(
    state: &crate::state::AppState,
    tenant_id: &str,
    now: i64,
) -> Result<Vec<SignalRow>, crate::store::StoreError> {
    let t = Thresholds::default();
    let store = &state.store;
    let start = now - HOUR_US;
    // At most WINDOW_ROWS records of the hour (the oldest): enough for every detector — a
    // volume spike is above its threshold long before — and a bounded read on a busy tenant.
    let window = store
        .signal_records(tenant_id, start, now, WINDOW_ROWS)
        .await?;
    if window.is_empty() {
        return Ok(Vec::new());
    }
    let base_from = start - t.baseline_days * 24 * HOUR_US;
    let baseline = store.subject_hours(tenant_id, base_from, start).await?;
    let known: HashSet<(String, String, String)> = store
        .subject_tools(tenant_id, start - 90 * 24 * HOUR_US, start)
        .await?
        .into_iter()
        .filter_map(|(actor, agent, server, tool)| {
            subject(actor.as_deref(), agent.as_deref()).map(|s| (s, server, tool))
        })
        .collect();
    let policy = state.gateway.tenant_policy(tenant_id);
    let gw = &state.gateway;
    let destructive = |server: &str, tool: &str| {
        policy
            .hints(server, tool, gw.observed_hints(tenant_id, server, tool))
            .is_destructive()
    };
    let raised = detect(&window, &baseline, &known, &destructive, start, &t);
    let mail_on = store
        .tenant_setting(tenant_id, SETTING)
        .await?
        .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
        .and_then(|v| v["mail"].as_bool())
        .unwrap_or(true);
    let mut stored = Vec::new();
    for r in raised {
        let href = records_href(&r.search);
        let row = SignalRow {
            signal_id: uuid::Uuid::now_v7().to_string(),
            dedup_key: r.dedup_key.clone(),
            kind: r.kind.to_owned(),
            subject: r.subject.clone(),
            severity: r.severity.to_owned(),
            at: r.at,
            summary: r.summary.clone(),
            detail: serde_json::json!({
                "numbers": r.numbers, "seqs": r.seqs, "records_href": href,
            })
            .to_string(),
        };
        if !store.insert_signal(tenant_id, &row).await? {
            continue;
        }
        let (who_kind, who) = subject_filter(&r.subject);
        let mut e = crate::audit::Event::new(
            tenant_id,
            crate::audit::Category::Security,
            &format!("anomaly.{}", r.kind),
            "ok",
        );
        e.target = Some(r.subject.clone());
        if who_kind == "agent" {
            e.agent = Some(who.clone());
        }
        e.detail = serde_json::json!({
            "signal_id": row.signal_id, "severity": r.severity, "summary": r.summary,
            "numbers": r.numbers, "records": r.seqs, "records_href": href,
        });
        state.audit.note(e).await;
        if mail_on {
            crate::mail::security(
                state.mailer.as_ref(),
                tenant_id,
                format!(
                    "Anomaly ({}): {} — {} (records: {href})",
                    r.severity, r.subject, r.summary
                ),
            );
        }
        stored.push(row);
    }
    Ok(stored)
}

/// The background scanner: every `state.signal_interval`, each tenant's last hour.
pub async fn run(state: crate::state::AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(state.signal_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let tenants = match state.store.list_tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "anomaly scan: listing tenants failed");
                continue;
            }
        };
        for tenant in tenants {
            if let Err(e) = scan(&state, &tenant.tenant_id, crate::store::now_micros()).await {
                tracing::warn!(tenant = %tenant.slug, error = %e, "anomaly scan failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: i64, at: i64, actor: &str, tool: &str, decision: &str) -> SignalRecordRow {
        SignalRecordRow {
            seq,
            at,
            action: "tools/call".into(),
            actor: Some(actor.into()),
            agent: None,
            server: Some("crm".into()),
            target: Some(tool.into()),
            decision: Some(decision.into()),
            filtered: false,
            injection: false,
        }
    }

    fn hour(actor: &str, hour: i64, calls: i64) -> HourRow {
        HourRow {
            actor: Some(actor.into()),
            agent: None,
            hour,
            calls,
            denials: 0,
            filtered: 0,
        }
    }

    const START: i64 = 1_000_000 * HOUR_US + 9 * HOUR_US; // 09:00 UTC on some day
    fn never(_: &str, _: &str) -> bool {
        false
    }

    fn kinds(v: &[Raised]) -> Vec<(&'static str, String)> {
        v.iter().map(|r| (r.kind, r.subject.clone())).collect()
    }

    #[test]
    fn five_denials_within_ten_minutes_are_a_burst_four_are_not() {
        let t = Thresholds::default();
        let four: Vec<_> = (0..4)
            .map(|i| rec(i, START + i * MINUTE_US, "a@x", "del", "deny"))
            .collect();
        assert!(detect(&four, &[], &HashSet::new(), &never, START, &t).is_empty());
        // Five, but spread over 20 minutes: no burst either.
        let spread: Vec<_> = (0..5)
            .map(|i| rec(i, START + i * 5 * MINUTE_US, "a@x", "del", "deny"))
            .collect();
        assert!(detect(&spread, &[], &HashSet::new(), &never, START, &t).is_empty());
        let five: Vec<_> = (0..5)
            .map(|i| rec(i, START + i * MINUTE_US, "a@x", "del", "deny"))
            .collect();
        let got = detect(&five, &[], &HashSet::new(), &never, START, &t);
        assert_eq!(kinds(&got), vec![("denial_burst", "user:a@x".to_owned())]);
        assert_eq!(got[0].seqs, vec![0, 1, 2, 3, 4]);
        assert_eq!(got[0].severity, "medium");
    }

    #[test]
    fn a_destructive_tool_is_news_once_per_subject() {
        let t = Thresholds::default();
        let destructive = |_: &str, tool: &str| tool == "delete_contact";
        let w = vec![
            rec(1, START, "a@x", "delete_contact", "allow"),
            rec(2, START + 1, "a@x", "delete_contact", "allow"),
            rec(3, START + 2, "b@x", "delete_contact", "allow"),
            rec(4, START + 3, "c@x", "delete_contact", "deny"),
            rec(5, START + 4, "a@x", "lookup", "allow"),
        ];
        let known: HashSet<_> = [(
            "user:b@x".to_owned(),
            "crm".to_owned(),
            "delete_contact".to_owned(),
        )]
        .into_iter()
        .collect();
        let got = detect(&w, &[], &known, &destructive, START, &t);
        assert_eq!(
            kinds(&got),
            vec![("first_destructive", "user:a@x".to_owned())]
        );
        assert_eq!(got[0].seqs, vec![1, 2]);
        assert_eq!(
            got[0].dedup_key,
            "first_destructive:user:a@x:crm/delete_contact"
        );
    }

    #[test]
    fn volume_is_judged_against_the_subjects_own_baseline() {
        let t = Thresholds::default();
        let calls = |n: i64, who: &str| -> Vec<SignalRecordRow> {
            (0..n)
                .map(|i| rec(i, START + i, who, "lookup", "allow"))
                .collect()
        };
        // A new subject: only above the floor.
        assert!(detect(&calls(50, "n@x"), &[], &HashSet::new(), &never, START, &t).is_empty());
        assert_eq!(
            kinds(&detect(
                &calls(51, "n@x"),
                &[],
                &HashSet::new(),
                &never,
                START,
                &t
            )),
            vec![("volume_spike", "user:n@x".to_owned())]
        );
        // A busy subject (40 calls every hour for 14 days): 120 is normal, 300 is not.
        let busy: Vec<HourRow> = (0..14 * 24)
            .map(|h| hour("b@x", START / HOUR_US - 1 - h, 40))
            .collect();
        assert!(detect(
            &calls(120, "b@x"),
            &busy,
            &HashSet::new(),
            &never,
            START,
            &t
        )
        .is_empty());
        let got = detect(
            &calls(300, "b@x"),
            &busy,
            &HashSet::new(),
            &never,
            START,
            &t,
        );
        assert_eq!(kinds(&got), vec![("volume_spike", "user:b@x".to_owned())]);
        assert!(
            got[0].summary.contains("baseline 40.0"),
            "{}",
            got[0].summary
        );
    }

    #[test]
    fn unusual_hours_need_history_and_allow_an_hour_either_side() {
        let t = Thresholds::default();
        // Works 09:00–17:00 UTC on ten days, 12 calls an hour.
        let day0 = START / HOUR_US / 24 - 11;
        let office: Vec<HourRow> = (0..10)
            .flat_map(|d| (9..17).map(move |h| hour("w@x", (day0 + d) * 24 + h, 12)))
            .collect();
        let at = |h: i64| (START / HOUR_US / 24) * 24 * HOUR_US + h * HOUR_US;
        // 08:xx is next to 09:00: usual; 03:xx is not.
        let w = vec![rec(1, at(8), "w@x", "lookup", "allow")];
        assert!(detect(&w, &office, &HashSet::new(), &never, at(8), &t).is_empty());
        let w = vec![rec(2, at(3) + 5, "w@x", "lookup", "allow")];
        let got = detect(&w, &office, &HashSet::new(), &never, at(3), &t);
        assert_eq!(kinds(&got), vec![("unusual_hour", "user:w@x".to_owned())]);
        assert!(got[0].summary.contains("03:00 UTC"));
        // The same night call with too little history says nothing.
        let short: Vec<HourRow> = office.iter().take(8).cloned().collect();
        assert!(detect(&w, &short, &HashSet::new(), &never, at(3), &t).is_empty());
    }

    #[test]
    fn filter_spikes_count_redactions_and_injections() {
        let t = Thresholds::default();
        let mut w: Vec<SignalRecordRow> = (0..11)
            .map(|i| {
                let mut r = rec(i, START + i, "f@x", "lookup", "allow");
                r.filtered = true;
                r
            })
            .collect();
        let got = detect(&w, &[], &HashSet::new(), &never, START, &t);
        assert_eq!(kinds(&got), vec![("filter_spike", "user:f@x".to_owned())]);
        assert_eq!(got[0].severity, "medium");
        w[0].injection = true;
        let got = detect(&w, &[], &HashSet::new(), &never, START, &t);
        assert_eq!(got[0].severity, "high");
        w.pop();
        assert!(detect(&w, &[], &HashSet::new(), &never, START, &t).is_empty());
    }

    #[test]
    fn agents_are_their_own_subjects_and_links_select_their_records() {
        let t = Thresholds::default();
        let w: Vec<SignalRecordRow> = (0..5)
            .map(|i| {
                let mut r = rec(i, START + i, "owner@x", "x", "deny");
                r.agent = Some("bot".into());
                r
            })
            .collect();
        let got = detect(&w, &[], &HashSet::new(), &never, START, &t);
        assert_eq!(kinds(&got), vec![("denial_burst", "agent:bot".to_owned())]);
        let href = records_href(&got[0].search);
        assert!(
            href.starts_with("/admin/audit?agent=bot&decision=deny&since="),
            "{href}"
        );
    }
}
