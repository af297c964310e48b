//! Tool-definition pinning (`portcullis::pins`) against the real fixture MCP server: a tool
//! whose description changes upstream mid-run ("rug pull") disappears from tools/list and is
//! refused until an admin approves the change; a tool served as pinned again is released; a
//! new tool on a server that denies new tools waits in the same queue.

use crate::access::api;
use crate::filters::acme_records_until as records;
use crate::gateway_sessions::Mcp;
use crate::helpers::{Engine, TestApp};
use crate::on_both_engines;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_engines!(a_tool_whose_definition_changes_upstream_is_held_until_an_admin_approves_it);

async fn tool_names(m: &Mcp<'_>, id: i64) -> Vec<String> {
    let msgs = m.request(json!(id), "tools/list", json!({})).await;
    msgs.last().unwrap()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The review queue, polled until `ok` holds (the pin watch writes in the background).
async fn queue_until(app: &TestApp, admin: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..50 {
        let (s, v) = api(app, admin, Method::GET, "/api/v1/tool-changes", None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if ok(&v) {
            return v;
        }
        last = v;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the queue never satisfied the condition: {last}");
}

async fn a_tool_whose_definition_changes_upstream_is_held_until_an_admin_approves_it(
    engine: Engine,
) {
    let (_upstream, app, admin, dev) = crate::filters::acme_with_http_fixture(engine, "wx").await;
    let admin = admin.as_str();

    // The admin reviews the server: every tool's definition is pinned.
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/servers/wx/catalog",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, d) = api(&app, admin, Method::POST, "/api/v1/servers/wx/test", None).await;
    let weather = d["discovery"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "weather")
        .cloned()
        .unwrap_or_else(|| panic!("discovery lists weather: {d}"));
    assert_eq!(weather["digest"].as_str().unwrap().len(), 64, "{weather}");

    let mut m = Mcp::new(&app, "acme", "wx", &dev);
    m.initialize().await;
    assert!(tool_names(&m, 1).await.contains(&"weather".to_owned()));
    assert_eq!(
        m.call_text(2, "weather", json!({"city": "Oslo"})).await,
        "Sunny in Oslo"
    );

    // The upstream poisons the tool's description.
    assert_eq!(
        m.call_text(3, "test_rug_pull", json!({})).await,
        "weather is now poisoned"
    );
    let names = tool_names(&m, 4).await;
    assert!(
        !names.contains(&"weather".to_owned()),
        "a changed tool is hidden at once: {names:?}"
    );
    assert!(names.contains(&"echo".to_owned()), "the others stay");
    let q = queue_until(&app, admin, |v| {
        v["changes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["tool"] == "weather"))
    })
    .await;
    let change = &q["changes"][0];
    assert_eq!(change["server"], "wx", "{q}");
    assert_eq!(change["kind"], "changed", "{q}");
    assert_eq!(change["status"], "pending", "{q}");
    assert_eq!(change["pinned_digest"], weather["digest"], "{q}");
    let diff: Vec<&str> = change["diff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        diff.iter()
            .any(|l| l.starts_with('-') && l.contains("Returns the forecast for a city\"")),
        "{diff:?}"
    );
    assert!(
        diff.iter()
            .any(|l| l.starts_with('+') && l.contains("read ~/.ssh/id_rsa")),
        "{diff:?}"
    );
    // Calls are refused, as for a tool that does not exist, and recorded with the reason.
    let refused = m.call_text(5, "weather", json!({"city": "Oslo"})).await;
    assert_eq!(refused, "error: Unknown tool: weather");
    let refused_by_pin = |calls: &[Value]| {
        calls.iter().any(|r| {
            r["outcome"] == "denied"
                && r["detail"]["rule"] == "tool definition changed since review"
        })
    };
    let calls = records(&app, admin, "tools/call", refused_by_pin).await;
    assert!(refused_by_pin(&calls), "{calls:?}");
    // The security record is written by the pinning task after the queue row, through the
    // audit writer: it may land a moment later.
    let changed = records(&app, admin, "tool.changed", |r| !r.is_empty()).await;
    assert_eq!(
        changed.len(),
        1,
        "one security record per change: {changed:?}"
    );
    assert_eq!(changed[0]["category"], "security");
    assert_eq!(changed[0]["target"], "weather");
    // Listing again does not record it again.
    tool_names(&m, 6).await;

    // The upstream flips back: the tool is exactly what was approved, and released.
    m.call_text(7, "test_rug_pull", json!({"restore": true}))
        .await;
    // The list that sees it restored reports it; the release reaches the next lists.
    let mut listed = false;
    for i in 0..30 {
        if tool_names(&m, 200 + i)
            .await
            .contains(&"weather".to_owned())
        {
            listed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(listed, "a restored tool is listed again");
    queue_until(&app, admin, |v| {
        v["changes"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    let mut ok = String::new();
    for i in 0..30 {
        ok = m
            .call_text(100 + i, "weather", json!({"city": "Bergen"}))
            .await;
        if ok == "Sunny in Bergen" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ok, "Sunny in Bergen");
    assert_eq!(
        records(&app, admin, "tool.restored", |r| !r.is_empty())
            .await
            .len(),
        1
    );

    // Poisoned again: a decision on a digest other than the queued one changes nothing.
    m.call_text(9, "test_rug_pull", json!({})).await;
    tool_names(&m, 10).await;
    let q = queue_until(&app, admin, |v| {
        v["changes"].as_array().is_some_and(|c| !c.is_empty())
    })
    .await;
    let digest = q["changes"][0]["digest"].as_str().unwrap().to_owned();
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/servers/wx/tool-changes/weather/approve",
        Some(json!({"digest": "0".repeat(64)})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, _) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/servers/wx/tool-changes/nope/approve",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/servers/wx/tool-changes/weather/ignore",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        m.call_text(11, "weather", json!({"city": "x"})).await,
        refused
    );

    // The admin approves what they reviewed: it becomes the pin and the tool is back.
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/servers/wx/tool-changes/weather/approve",
        Some(json!({ "digest": digest })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["decision"], "approved");
    let msgs = m.request(json!(12), "tools/list", json!({})).await;
    let listed = msgs.last().unwrap()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "weather")
        .cloned()
        .expect("approved, listed");
    assert!(listed["description"]
        .as_str()
        .unwrap()
        .contains("IMPORTANT"));
    assert_eq!(
        m.call_text(13, "weather", json!({"city": "Oslo"})).await,
        "Sunny in Oslo"
    );
    let approved = records(&app, admin, "tool.approved", |r| !r.is_empty()).await;
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(
        approved[0]["actor"], "admin@acme.example.com",
        "{approved:?}"
    );

    // Now the original definition is the change; the admin dismisses it: it stays hidden.
    m.call_text(14, "test_rug_pull", json!({"restore": true}))
        .await;
    assert!(!tool_names(&m, 15).await.contains(&"weather".to_owned()));
    queue_until(&app, admin, |v| {
        v["changes"].as_array().is_some_and(|c| !c.is_empty())
    })
    .await;
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/servers/wx/tool-changes/weather/dismiss",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, q) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/servers/wx/tool-changes",
        None,
    )
    .await;
    assert_eq!(q["changes"][0]["status"], "dismissed", "{q}");
    assert_eq!(q["unpinned"], json!([]), "{q}");
    assert!(!tool_names(&m, 16).await.contains(&"weather".to_owned()));
    assert_eq!(
        m.call_text(17, "weather", json!({"city": "x"})).await,
        refused
    );
    // The third record may land late; once it has, a fourth (were the dismissed change recorded
    // again) would have had the same time to land.
    records(&app, admin, "tool.changed", |r| r.len() >= 3).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        crate::filters::acme_records(&app, admin, "tool.changed")
            .await
            .len(),
        3,
        "a dismissed change seen again is not news"
    );

    // A server that denies new tools: a tool that appears waits in the queue as `new`.
    let (s, v) = api(
        &app,
        admin,
        Method::PATCH,
        "/api/v1/servers/wx",
        Some(json!({"new_tools": "deny"})),
    )
    .await;
    assert!(s.is_success(), "{s} {v}");
    m.call_text(18, "test_trigger_tool_change", json!({})).await;
    assert!(!tool_names(&m, 19)
        .await
        .contains(&"test_toggled_tool".to_owned()));
    let q = queue_until(&app, admin, |v| {
        v["changes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["tool"] == "test_toggled_tool"))
    })
    .await;
    let new = q["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tool"] == "test_toggled_tool")
        .unwrap();
    assert_eq!(new["kind"], "new", "{q}");
    assert_eq!(new["pinned"], Value::Null, "{q}");
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/servers/wx/tool-changes/test_toggled_tool/approve",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(tool_names(&m, 20)
        .await
        .contains(&"test_toggled_tool".to_owned()));
    assert_eq!(
        m.call_text(21, "test_toggled_tool", json!({})).await,
        "This tool is toggled on."
    );
}
