//! Rate limits and quotas at the gateway: per tenant, rules on a subject (user, agent, client,
//! server, tool) — one value or each value separately — with requests per minute, concurrent
//! calls and a daily quota.
//!
//! Fixed one-minute and one-day windows (UTC). Each replica counts in memory and, about once a
//! second (`sync`, from the gateway janitor), adds what it counted to the shared counter in the
//! database and reads back the total of every replica; a decision compares that total plus
//! what this replica counted since. So a limit holds across replicas within what the other
//! replicas admit in about a second (more only while the database cannot be reached: then
//! each replica goes on with its own counts). Concurrent calls are counted per replica (an
//! in-flight count released when the request's answer is done: the permit lives in the
//! request's audit recorder).

use super::lock;
use crate::store::{CounterDelta, LimitRow};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const SUBJECTS: [&str; 5] = ["user", "agent", "client", "server", "tool"];

/// One request's attributes, as rules see them.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user: &'a str,
    pub agent: &'a str,
    pub client: &'a str,
    pub server: &'a str,
    /// The tool of a `tools/call`, if it is one.
    pub tool: Option<&'a str>,
}

impl Subject<'_> {
    fn value(&self, subject: &str) -> Option<&str> {
        match subject {
            "user" => Some(self.user),
            "agent" => Some(self.agent),
            "client" => Some(self.client),
            "server" => Some(self.server),
            "tool" => self.tool,
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct Window {
    minute: i64,
    /// Counted here since the last sync.
    in_minute: i64,
    /// Every replica's count at the last sync (this one's synced part included).
    shared_minute: i64,
    day: i64,
    in_day: i64,
    shared_day: i64,
    inflight: i64,
    /// Whether the rule counts requests (per minute or day), so the window is shared.
    counted: bool,
}

/// Counters changed this recently (by any replica) are read back at each sync.
const SYNC_WHILE_USED: std::time::Duration = std::time::Duration::from_secs(120);

/// (tenant, rule, value) → its counters.
type Windows = Arc<Mutex<HashMap<(String, String, String), Window>>>;

/// The counters of every (tenant, rule, value).
#[derive(Debug, Default)]
pub struct Limiter {
    windows: Windows,
    /// The minute old shared windows were last deleted in.
    last_forget: Mutex<i64>,
}

/// Holds one in-flight slot of each concurrency rule that counted it; released when dropped.
#[derive(Debug)]
pub struct Permit {
    windows: Windows,
    keys: Vec<(String, String, String)>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut w = lock(&self.windows);
        for k in &self.keys {
            if let Some(win) = w.get_mut(k) {
                win.inflight = (win.inflight - 1).max(0);
            }
        }
    }
}

/// A refusal: which rule, what it allows, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    pub limit_id: String,
    pub message: String,
    pub retry_after_secs: i64,
}

impl Limiter {
    /// Counts one request against the tenant's rules at `now` (µs); all or nothing: a refused
    /// request counts nowhere.
    pub fn admit(
        &self,
        tenant_id: &str,
        rules: &[LimitRow],
        s: &Subject<'_>,
        now: i64,
    ) -> Result<Option<Permit>, Throttle> {
        let minute = now / 60_000_000;
        let day = now / 86_400_000_000;
        let matching: Vec<(&LimitRow, &str)> = rules
            .iter()
            .filter_map(|r| {
                let v = s.value(&r.subject)?;
                (r.value == "*" || r.value == v).then_some((r, v))
            })
            .collect();
        if matching.is_empty() {
            return Ok(None);
        }
        let mut w = lock(&self.windows);
        // First check every rule, then count: a refusal changes nothing.
        for (r, v) in &matching {
            let key = (tenant_id.to_owned(), r.limit_id.clone(), (*v).to_owned());
            let win = w.entry(key).or_default();
            if win.minute != minute {
                win.minute = minute;
                win.in_minute = 0;
                win.shared_minute = 0;
            }
            if win.day != day {
                win.day = day;
                win.in_day = 0;
                win.shared_day = 0;
            }
            win.counted = r.requests_per_minute.is_some() || r.per_day.is_some();
            let who = format!("{} {}", r.subject, v);
            if let Some(max) = r.requests_per_minute {
                if win.shared_minute + win.in_minute >= max {
                    let next = (minute + 1) * 60_000_000;
                    return Err(Throttle {
                        limit_id: r.limit_id.clone(),
                        message: format!("rate limit: {max} requests per minute for {who}"),
                        retry_after_secs: ((next - now) / 1_000_000).max(1),
                    });
                }
            }
            if let Some(max) = r.per_day {
                if win.shared_day + win.in_day >= max {
                    let next = (day + 1) * 86_400_000_000;
                    return Err(Throttle {
                        limit_id: r.limit_id.clone(),
                        message: format!("daily quota: {max} requests per day for {who}"),
                        retry_after_secs: ((next - now) / 1_000_000).max(1),
                    });
                }
            }
            if let Some(max) = r.concurrent {
                if win.inflight >= max {
                    return Err(Throttle {
                        limit_id: r.limit_id.clone(),
                        message: format!("concurrency limit: {max} calls at once for {who}"),
                        retry_after_secs: 1,
                    });
                }
            }
        }
        let mut keys = Vec::new();
        for (r, v) in &matching {
            let key = (tenant_id.to_owned(), r.limit_id.clone(), (*v).to_owned());
            if let Some(win) = w.get_mut(&key) {
                win.in_minute += 1;
                win.in_day += 1;
                if r.concurrent.is_some() {
                    win.inflight += 1;
                    keys.push(key);
                }
            }
        }
        // Bounded memory: windows of past days go.
        if w.len() > 100_000 {
            w.retain(|_, win| win.day == day || win.inflight > 0);
        }
        Ok(Some(Permit {
            windows: self.windows.clone(),
            keys,
        }))
    }

    /// Shares this replica's counts: adds what it counted since the last sync to the
    /// database's counters, then takes every replica's totals of the counters changed in the
    /// last two minutes (so a replica knows a busy subject before its first request of it).
    /// `tenants`: those with rules that count requests. A database failure keeps the counts
    /// for the next sync (limits then hold per replica meanwhile).
    pub async fn sync(&self, store: &crate::store::Store, tenants: &[String], now: i64) {
        let minute = now / 60_000_000;
        let day = now / 86_400_000_000;
        let mut batches: HashMap<&str, Vec<CounterDelta>> =
            tenants.iter().map(|t| (t.as_str(), Vec::new())).collect();
        {
            let w = lock(&self.windows);
            for (key, win) in w.iter() {
                if !win.counted || win.day != day {
                    continue;
                }
                let Some(batch) = batches.get_mut(key.0.as_str()) else {
                    continue;
                };
                if win.minute == minute && win.in_minute > 0 {
                    batch.push(CounterDelta {
                        limit_id: key.1.clone(),
                        value: key.2.clone(),
                        kind: "minute",
                        window: minute,
                        delta: win.in_minute,
                    });
                }
                if win.in_day > 0 {
                    batch.push(CounterDelta {
                        limit_id: key.1.clone(),
                        value: key.2.clone(),
                        kind: "day",
                        window: day,
                        delta: win.in_day,
                    });
                }
            }
        }
        // Old windows go once a minute (the first sync of each minute).
        let forget = {
            let mut last = lock(&self.last_forget);
            let first = *last != minute;
            *last = minute;
            first
        };
        let since = now - i64::try_from(SYNC_WHILE_USED.as_micros()).unwrap_or(i64::MAX);
        for (tenant, deltas) in batches {
            let totals = match store
                .add_limit_counts(tenant, &deltas, (minute, day), since, forget)
                .await
            {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(tenant.id = %tenant, error = %e, "rate-limit counters could not be shared; counting locally meanwhile");
                    continue;
                }
            };
            let mut w = lock(&self.windows);
            // What was added is now in the totals.
            for d in &deltas {
                let key = (tenant.to_owned(), d.limit_id.clone(), d.value.clone());
                if let Some(win) = w.get_mut(&key) {
                    match d.kind {
                        "minute" if win.minute == d.window => {
                            win.in_minute = (win.in_minute - d.delta).max(0);
                        }
                        "day" if win.day == d.window => {
                            win.in_day = (win.in_day - d.delta).max(0);
                        }
                        _ => {}
                    }
                }
            }
            for t in totals {
                let key = (tenant.to_owned(), t.limit_id, t.value);
                let win = w.entry(key).or_insert_with(|| Window {
                    minute,
                    day,
                    counted: true,
                    ..Window::default()
                });
                if win.minute != minute {
                    win.minute = minute;
                    win.in_minute = 0;
                    win.shared_minute = 0;
                }
                if win.day != day {
                    win.day = day;
                    win.in_day = 0;
                    win.shared_day = 0;
                }
                match t.kind.as_str() {
                    "minute" if t.window_start == minute => win.shared_minute = t.count,
                    "day" if t.window_start == day => win.shared_day = t.count,
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        id: &str,
        subject: &str,
        value: &str,
        rpm: Option<i64>,
        conc: Option<i64>,
        day: Option<i64>,
    ) -> LimitRow {
        LimitRow {
            limit_id: id.into(),
            subject: subject.into(),
            value: value.into(),
            requests_per_minute: rpm,
            concurrent: conc,
            per_day: day,
        }
    }

    fn subject<'a>(user: &'a str, tool: Option<&'a str>) -> Subject<'a> {
        Subject {
            user,
            agent: "laptop",
            client: "claude",
            server: "crm",
            tool,
        }
    }

    #[test]
    fn per_minute_limits_count_each_user_separately_and_reset_with_the_minute() {
        let l = Limiter::default();
        let rules = [rule("r1", "user", "*", Some(2), None, None)];
        let t0 = 120_000_000; // the start of a minute
        assert!(l.admit("t", &rules, &subject("a", None), t0).is_ok());
        assert!(l.admit("t", &rules, &subject("a", None), t0 + 1).is_ok());
        let refused = l
            .admit("t", &rules, &subject("a", None), t0 + 10_000_000)
            .unwrap_err();
        assert_eq!(refused.retry_after_secs, 50);
        assert!(refused.message.contains("2 requests per minute for user a"));
        assert!(
            l.admit("t", &rules, &subject("b", None), t0 + 2).is_ok(),
            "b has its own budget"
        );
        assert!(
            l.admit("t", &rules, &subject("a", None), t0 + 60_000_000)
                .is_ok(),
            "next minute"
        );
        assert!(
            l.admit("other", &rules, &subject("a", None), t0 + 3)
                .is_ok(),
            "tenants apart"
        );
    }

    #[test]
    fn concurrency_is_released_when_the_permit_goes_and_refusals_count_nowhere() {
        let l = Limiter::default();
        let rules = [
            rule("c", "tool", "export", None, Some(1), None),
            rule("d", "server", "crm", None, None, Some(3)),
        ];
        let p = l
            .admit("t", &rules, &subject("a", Some("export")), 1)
            .unwrap();
        let busy = l
            .admit("t", &rules, &subject("a", Some("export")), 2)
            .unwrap_err();
        assert_eq!(busy.limit_id, "c");
        // Another tool is not concerned by the tool rule, only the server's daily quota.
        assert!(l
            .admit("t", &rules, &subject("a", Some("search")), 3)
            .is_ok());
        drop(p);
        assert!(l
            .admit("t", &rules, &subject("a", Some("export")), 4)
            .is_ok());
        // Quota: 3 counted (the refused one did not count).
        let over = l
            .admit("t", &rules, &subject("a", Some("search")), 5)
            .unwrap_err();
        assert_eq!(over.limit_id, "d");
        assert!(over.message.contains("3 requests per day"));
    }
}
