//! Rate limits and quotas at the gateway: per tenant, rules on a subject (user, agent, client,
//! server, tool) — one value or each value separately — with requests per minute, concurrent
//! calls and a daily quota.
//!
//! Counting is in memory, per replica: fixed one-minute and one-day windows (UTC) and an
//! in-flight count released when the request's answer is done (the permit lives in the
//! request's audit recorder). With N replicas behind a balancer a limit can be exceeded by up to
//! N times its value at worst; sharing the counters belongs to the scale-out work.

use super::lock;
use crate::store::LimitRow;
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
    in_minute: i64,
    day: i64,
    in_day: i64,
    inflight: i64,
}

/// (tenant, rule, value) → its counters.
type Windows = Arc<Mutex<HashMap<(String, String, String), Window>>>;

/// The counters of every (tenant, rule, value).
#[derive(Debug, Default)]
pub struct Limiter {
    windows: Windows,
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
            }
            if win.day != day {
                win.day = day;
                win.in_day = 0;
            }
            let who = format!("{} {}", r.subject, v);
            if let Some(max) = r.requests_per_minute {
                if win.in_minute >= max {
                    let next = (minute + 1) * 60_000_000;
                    return Err(Throttle {
                        limit_id: r.limit_id.clone(),
                        message: format!("rate limit: {max} requests per minute for {who}"),
                        retry_after_secs: ((next - now) / 1_000_000).max(1),
                    });
                }
            }
            if let Some(max) = r.per_day {
                if win.in_day >= max {
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
