//! Audit records in the shapes they leave the product in: the JSON view (API, JSON Lines,
//! webhooks), CSV (the `csv` crate quotes), OCSF API Activity (class 6003) for SIEMs, and
//! RFC 5424 syslog lines. Exports stream page by page (keyset on `seq`), so memory stays flat
//! whatever the number of rows.

use crate::store::{AuditQuery, AuditRow, Store};
use serde_json::{json, Value};

/// RFC 3339 UTC with microseconds.
pub fn time_micros(at: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

fn groups_of(r: &AuditRow) -> Vec<&str> {
    r.groups
        .as_deref()
        .map(|g| g.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

fn detail_of(r: &AuditRow) -> Value {
    serde_json::from_str(&r.detail).unwrap_or_default()
}

/// The JSON view of a record (API, JSON Lines export, webhook batches).
pub fn view(r: &AuditRow) -> Value {
    json!({
        "id": r.event_id, "seq": r.seq, "at": time_micros(r.at), "category": r.category,
        "action": r.action, "actor": r.actor, "actor_id": r.actor_id, "groups": groups_of(r),
        "agent": r.agent, "client": r.client, "ip": r.ip, "session_id": r.session_id,
        "server": r.server, "target": r.target, "decision": r.decision, "outcome": r.outcome,
        "latency_us": r.latency_us, "upstream_us": r.upstream_us,
        "gateway_us": r.latency_us.map(|l| l - r.upstream_us.unwrap_or(0)),
        "detail": detail_of(r), "hash": r.hash,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
    Ocsf,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Self::Csv),
            "jsonl" => Some(Self::Jsonl),
            "ocsf" => Some(Self::Ocsf),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Jsonl | Self::Ocsf => "application/x-ndjson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
            Self::Ocsf => "ocsf.jsonl",
        }
    }

    /// What comes before the first row.
    pub fn header(self) -> Vec<u8> {
        match self {
            Self::Csv => csv_line(&CSV_COLUMNS.map(str::to_owned)),
            _ => Vec::new(),
        }
    }

    /// One row, with its line end.
    pub fn row(self, r: &AuditRow) -> Vec<u8> {
        match self {
            Self::Csv => {
                let opt = |v: &Option<String>| v.clone().unwrap_or_default();
                let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
                csv_line(&[
                    r.event_id.clone(),
                    r.seq.to_string(),
                    time_micros(r.at),
                    r.category.clone(),
                    r.action.clone(),
                    opt(&r.actor),
                    groups_of(r).join(";"),
                    opt(&r.agent),
                    opt(&r.client),
                    opt(&r.ip),
                    opt(&r.session_id),
                    opt(&r.server),
                    opt(&r.target),
                    opt(&r.decision),
                    r.outcome.clone(),
                    num(r.latency_us),
                    num(r.upstream_us),
                    r.detail.clone(),
                    r.hash.clone(),
                ])
            }
            Self::Jsonl => line(&view(r)),
            Self::Ocsf => line(&ocsf(r)),
        }
    }
}

const CSV_COLUMNS: [&str; 19] = [
    "id",
    "seq",
    "time",
    "category",
    "action",
    "actor",
    "groups",
    "agent",
    "client",
    "ip",
    "session_id",
    "server",
    "target",
    "decision",
    "outcome",
    "latency_us",
    "upstream_us",
    "detail",
    "hash",
];

fn csv_line(fields: &[String]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = w.write_record(fields);
    w.into_inner().unwrap_or_default()
}

fn line(v: &Value) -> Vec<u8> {
    let mut out = v.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// The record as an OCSF 1.3 API Activity event (class 6003, category 6 Application Activity).
pub fn ocsf(r: &AuditRow) -> Value {
    // Activity: Read for reads and lists, Create for calls and changes, Other otherwise.
    let a = r.action.as_str();
    let (activity_id, activity) = if a.ends_with("/list")
        || a == "resources/read"
        || a == "prompts/get"
        || a == "initialize"
        || a == "server/discover"
    {
        (2, "Read")
    } else if a == "tools/call" || a.ends_with(".create") || a.ends_with(".add") {
        (1, "Create")
    } else if a.ends_with(".update") || a.ends_with(".change") || a.ends_with(".rotate") {
        (3, "Update")
    } else if a.ends_with(".delete") || a.ends_with(".purge") {
        (4, "Delete")
    } else {
        (99, "Other")
    };
    let failed = !matches!(r.outcome.as_str(), "ok" | "forwarded" | "accepted");
    let denied = r.decision.as_deref() == Some("deny");
    let detail = detail_of(r);
    let mut ev = json!({
        "class_uid": 6003, "class_name": "API Activity",
        "category_uid": 6, "category_name": "Application Activity",
        "activity_id": activity_id, "activity_name": activity,
        "type_uid": 600300 + activity_id,
        "time": r.at / 1000,
        "severity_id": if denied { 3 } else { 1 },
        "severity": if denied { "Medium" } else { "Informational" },
        "status_id": if failed { 2 } else { 1 },
        "status": if failed { "Failure" } else { "Success" },
        "status_detail": r.outcome,
        "metadata": {
            "version": "1.3.0",
            "uid": r.event_id,
            "sequence": r.seq,
            "correlation_uid": r.session_id,
            "product": { "name": "Portcullis", "vendor_name": "Portcullis", "feature": { "name": r.category } },
            "log_name": "audit",
        },
        "actor": {
            "user": {
                "uid": r.actor_id, "email_addr": r.actor, "name": r.actor,
                "groups": groups_of(r).iter().map(|g| json!({"name": g})).collect::<Vec<_>>(),
            },
            "app_name": r.agent,
        },
        "api": {
            "operation": r.action,
            "service": { "name": r.server },
            "request": { "uid": detail.get("jsonrpc_id").map(ToString::to_string) },
            "response": { "code": detail.get("error_code"), "error": detail.get("error_code").map(|_| r.outcome.clone()) },
        },
        "src_endpoint": { "ip": r.ip },
        "http_request": { "user_agent": detail.get("user_agent"), "http_method": "POST" },
        "resources": r.target.as_ref().map(|t| vec![json!({"name": t, "type": kind_of(a)})]).unwrap_or_default(),
        "duration": r.latency_us.map(|l| l / 1000),
        "unmapped": { "client": r.client, "decision": r.decision, "detail": detail,
                      "latency_us": r.latency_us, "upstream_us": r.upstream_us, "hash": r.hash },
    });
    if let Some(d) = &r.decision {
        ev["disposition_id"] = json!(if d == "deny" { 2 } else { 1 });
        ev["disposition"] = json!(if d == "deny" { "Blocked" } else { "Allowed" });
    }
    ev
}

fn kind_of(action: &str) -> &'static str {
    match action.split('/').next() {
        Some("tools") => "MCP Tool",
        Some("resources") => "MCP Resource",
        Some("prompts") => "MCP Prompt",
        _ => "Setting",
    }
}

/// Rows per page read by exports and deliveries.
pub const PAGE: i64 = 1000;

/// Streams every record matching `q`, oldest first, as `format`: header, then rows, a page at a
/// time. Ends early (with an error item) when the database fails.
pub fn stream(
    store: Store,
    tenant_id: String,
    mut q: AuditQuery,
    format: Format,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> {
    q.ascending = true;
    q.before_seq = None;
    q.limit = PAGE;
    struct St {
        store: Store,
        tenant_id: String,
        q: AuditQuery,
        header: bool,
        done: bool,
    }
    let st = St {
        store,
        tenant_id,
        q,
        header: true,
        done: false,
    };
    futures_util::stream::unfold(st, move |mut st| async move {
        if st.header {
            st.header = false;
            let h = format.header();
            if !h.is_empty() {
                return Some((Ok(axum::body::Bytes::from(h)), st));
            }
        }
        if st.done {
            return None;
        }
        let page = match st.store.search_audit(&st.tenant_id, &st.q).await {
            Ok(p) => p,
            Err(e) => {
                st.done = true;
                tracing::error!(error = %e, "an audit export stopped: the database failed");
                return Some((Err(std::io::Error::other("the audit export stopped")), st));
            }
        };
        if (page.len() as i64) < PAGE {
            st.done = true;
        }
        let last = page.last()?;
        st.q.after_seq = Some(last.seq);
        let mut out = Vec::with_capacity(page.len() * 400);
        for r in &page {
            out.extend(format.row(r));
        }
        Some((Ok(axum::body::Bytes::from(out)), st))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row() -> AuditRow {
        AuditRow {
            event_id: "e1".into(),
            tenant_id: "t".into(),
            seq: 7,
            at: 1_795_000_000_123_456,
            category: "mcp".into(),
            action: "tools/call".into(),
            actor_id: Some("u1".into()),
            actor: Some("dev@acme.example".into()),
            server: Some("crm".into()),
            target: Some("delete, \"all\"".into()),
            outcome: "error".into(),
            detail: r#"{"error_code":-32602,"jsonrpc_id":3}"#.into(),
            prev_hash: "p".into(),
            hash: "h".into(),
            decision: Some("allow".into()),
            client: Some("claude/1.0".into()),
            agent: Some("laptop".into()),
            groups: Some(",eng,ops,".into()),
            ip: Some("10.0.0.1".into()),
            session_id: Some("s1".into()),
            latency_us: Some(1500),
            upstream_us: Some(1200),
        }
    }

    #[test]
    fn csv_quotes_what_needs_it_and_keeps_microseconds() {
        let text = String::from_utf8(Format::Csv.row(&row())).unwrap();
        assert!(
            text.contains("2026-11-18T") && text.contains(".123456Z"),
            "{text}"
        );
        assert!(text.contains(r#""delete, ""all""""#), "{text}");
        assert!(text.contains("eng;ops"));
        let header = String::from_utf8(Format::Csv.header()).unwrap();
        assert!(header.starts_with("id,seq,time,"));
        let all = header + &text;
        let mut r = csv::Reader::from_reader(all.as_bytes());
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(rec.get(12), Some("delete, \"all\""));
    }

    #[test]
    fn ocsf_is_api_activity_with_the_failure_and_actor() {
        let v = ocsf(&row());
        assert_eq!(v["class_uid"], 6003);
        assert_eq!(v["type_uid"], 600301);
        assert_eq!(v["status_id"], 2);
        assert_eq!(v["actor"]["user"]["email_addr"], "dev@acme.example");
        assert_eq!(v["actor"]["user"]["groups"][1]["name"], "ops");
        assert_eq!(v["api"]["response"]["code"], -32602);
        assert_eq!(v["time"], 1_795_000_000_123_i64);
        assert_eq!(v["disposition"], "Allowed");
    }
}
