//! Runs a legacy HTTP+SSE (2024-11-05 transport) upstream for a `Link`: `GET` the SSE URL, take
//! the `endpoint` event's URL (it must be on the same origin: an upstream cannot point the
//! gateway elsewhere), `POST` every message there, and read messages from the `message` events.
//! The connection belongs to one downstream session; when it drops, the runner reconnects (a new
//! upstream session, initialized again) with backoff until the session ends.

use super::link::Link;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Longest SSE event the gateway accepts.
const MAX_EVENT: usize = 16 * 1024 * 1024;

/// One server-sent event.
#[derive(Debug, Default, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    /// The `id:` and `retry:` fields, kept so that a re-encoded event still resumes.
    pub id: Option<String>,
    pub retry: Option<String>,
}

impl SseEvent {
    /// The event in wire form (ends with the blank line).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Some(id) = &self.id {
            out.push_str(&format!("id: {id}\n"));
        }
        if let Some(r) = &self.retry {
            out.push_str(&format!("retry: {r}\n"));
        }
        if self.event != "message" {
            out.push_str(&format!("event: {}\n", self.event));
        }
        for line in self.data.split('\n') {
            out.push_str(&format!("data: {line}\n"));
        }
        out.push('\n');
        out
    }
}

/// Incremental `text/event-stream` parser (the WHATWG rules the MCP transports use: `event:`,
/// `data:` lines joined by newlines, a blank line ends an event, `:` starts a comment).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: Vec<String>,
    id: Option<String>,
    retry: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete. Err when an event grows past the limit.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty()
                    || !self.event.is_empty()
                    || self.id.is_some()
                    || self.retry.is_some()
                {
                    out.push(SseEvent {
                        event: if self.event.is_empty() {
                            "message".into()
                        } else {
                            std::mem::take(&mut self.event)
                        },
                        data: std::mem::take(&mut self.data).join("\n"),
                        id: self.id.take(),
                        retry: self.retry.take(),
                    });
                    self.event.clear();
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => self.event = value.to_owned(),
                "data" => self.data.push(value.to_owned()),
                "id" => self.id = Some(value.to_owned()),
                "retry" => self.retry = Some(value.to_owned()),
                _ => {}
            }
        }
        if self.buf.len() + self.data.iter().map(String::len).sum::<usize>() > MAX_EVENT {
            return Err("an SSE event over 16 MiB".into());
        }
        Ok(out)
    }
}

/// Resolves the `endpoint` event against the SSE URL; refuses another origin.
fn endpoint_url(sse_url: &str, endpoint: &str) -> Result<url::Url, String> {
    let base = url::Url::parse(sse_url).map_err(|e| e.to_string())?;
    let target = base
        .join(endpoint.trim())
        .map_err(|e| format!("bad endpoint event: {e}"))?;
    if target.origin() != base.origin() {
        return Err("the endpoint event points at another origin; refused".into());
    }
    Ok(target)
}

pub async fn run(
    link: Arc<Link>,
    url: String,
    client: reqwest::Client,
    header: Option<Arc<super::Credential>>,
) {
    let mut stop = link.stop_signal();
    let mut attempt = 0u64;
    let mut backoff = super::link::Backoff::default();
    while !link.stopping() {
        attempt += 1;
        let started = std::time::Instant::now();
        let reason = tokio::select! {
            r = connect(&link, &url, &client, header.clone(), attempt) => r,
            _ = stop.changed() => "stopped by the gateway".to_owned(),
        };
        link.went_down(attempt, &reason);
        if link.stopping() {
            break;
        }
        tracing::warn!(upstream = %link.label, reason = %reason, "SSE upstream connection ended; reconnecting");
        backoff.wait(started, &mut stop).await;
    }
}

async fn connect(
    link: &Arc<Link>,
    url: &str,
    client: &reqwest::Client,
    header: Option<Arc<super::Credential>>,
    attempt: u64,
) -> String {
    // The server's credential from the vault, on the stream and on every message.
    let mut get = client.get(url).header("accept", "text/event-stream");
    if let Some(c) = &header {
        get = get.header(c.header.clone(), c.value.clone());
    }
    let res = match tokio::time::timeout(Duration::from_secs(30), get.send()).await {
        Ok(Ok(r)) if r.status().is_success() => r,
        Ok(Ok(r)) => return format!("the SSE endpoint answered HTTP {}", r.status()),
        Ok(Err(e)) => return format!("cannot reach the SSE endpoint: {e}"),
        Err(_) => return "the SSE endpoint did not answer within 30s".into(),
    };
    let mut body = res.bytes_stream();
    let mut parser = SseParser::default();
    let mut writer: Option<tokio::task::JoinHandle<()>> = None;
    let reason = loop {
        let next = tokio::select! {
            next = body.next() => next,
            _ = link.restart.notified() => break "the initialize handshake failed".to_owned(),
        };
        let chunk = match next {
            Some(Ok(c)) => c,
            Some(Err(e)) => break format!("the SSE stream failed: {e}"),
            None => break "the SSE stream ended".to_owned(),
        };
        let events = match parser.feed(&chunk) {
            Ok(ev) => ev,
            Err(e) => break e,
        };
        for ev in events {
            match ev.event.as_str() {
                "endpoint" if writer.is_none() => {
                    let target = match endpoint_url(url, &ev.data) {
                        Ok(t) => t,
                        Err(e) => return e,
                    };
                    let (tx, rx) = mpsc::unbounded_channel::<String>();
                    writer = Some(tokio::spawn(post_messages(
                        client.clone(),
                        target,
                        rx,
                        link.clone(),
                        header.clone(),
                    )));
                    link.connected(tx, attempt);
                    let l = link.clone();
                    tokio::spawn(async move { l.handshake().await });
                }
                "message" => match serde_json::from_str(&ev.data) {
                    Ok(msg) => link.on_message(msg),
                    Err(_) => {
                        tracing::warn!(upstream = %link.label, "SSE message is not JSON; ignored")
                    }
                },
                _ => {}
            }
        }
    };
    if let Some(w) = writer {
        w.abort();
    }
    reason
}

async fn post_messages(
    client: reqwest::Client,
    target: url::Url,
    mut rx: mpsc::UnboundedReceiver<String>,
    link: Arc<Link>,
    header: Option<Arc<super::Credential>>,
) {
    while let Some(line) = rx.recv().await {
        let mut post = client
            .post(target.clone())
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(30))
            .body(line);
        if let Some(c) = &header {
            post = post.header(c.header.clone(), c.value.clone());
        }
        let res = post.send().await;
        match res {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(upstream = %link.label, status = %r.status(), "SSE upstream refused a message")
            }
            Err(e) => {
                tracing::warn!(upstream = %link.label, error = %e, "posting to the SSE upstream failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_lines() {
        let mut p = SseParser::default();
        assert!(p
            .feed(b"event: endpoint\r\ndata: /messages?s")
            .unwrap()
            .is_empty());
        let ev = p
            .feed(b"=1\r\n\r\n: comment\n\ndata: {\"a\":1}\ndata: x\n\n")
            .unwrap();
        assert_eq!(
            ev,
            vec![
                SseEvent {
                    event: "endpoint".into(),
                    data: "/messages?s=1".into(),
                    ..Default::default()
                },
                SseEvent {
                    event: "message".into(),
                    data: "{\"a\":1}\nx".into(),
                    ..Default::default()
                },
            ]
        );
    }

    #[test]
    fn events_keep_their_ids_when_re_encoded() {
        let mut p = SseParser::default();
        let ev = p
            .feed(b"id: 7_1\nretry: 500\ndata: \n\nid: 7_2\ndata: {}\n\n")
            .unwrap();
        assert_eq!(ev.len(), 2, "a priming event (id, empty data) is kept");
        assert_eq!(ev[0].encode(), "id: 7_1\nretry: 500\ndata: \n\n");
        assert_eq!(ev[1].encode(), "id: 7_2\ndata: {}\n\n");
        let again = SseParser::default()
            .feed(ev[1].encode().as_bytes())
            .unwrap();
        assert_eq!(again[0], ev[1]);
    }

    #[test]
    fn the_endpoint_must_stay_on_the_upstream_origin() {
        let base = "http://127.0.0.1:9000/sse";
        assert_eq!(
            endpoint_url(base, "/messages?sessionId=1")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9000/messages?sessionId=1"
        );
        assert!(endpoint_url(base, "http://169.254.169.254/latest").is_err());
        assert!(endpoint_url(base, "//evil.example/x").is_err());
    }
}
