//! The Security Review Pack and the console dashboard as HTML.
//!
//! `document` is the single-file download (and what `pdf` prints), `fragment` is the same
//! content for the console page, `architecture_svg` draws the tenant's diagram by hand and
//! `dashboard` renders the console home's tiles and charts. There is no script and no external
//! resource: one stylesheet (every rule scoped under `.pack`) is inlined, and the diagram and
//! charts are inline SVG with inline attributes only, so a page renders the same embedded,
//! standalone and printed.
//!
//! Output is built in order from the model's (sorted) lists, so the same pack always gives the
//! same bytes. Every string taken from the model goes through `esc` — in text, in attributes and
//! in SVG alike — because tool names, client names, user agents and summaries are
//! attacker-influenced.

use super::model::*;
use std::fmt::Write as _;

/// The one stylesheet, shared by `document`, `fragment` and `dashboard`: every selector is
/// scoped under `.pack` (one rule per line); `@page` and the print rules are inert on screen.
const CSS: &str = r#"@page { size: A4; margin: 16mm; }
.pack { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; font-size: 14px; line-height: 1.45; color: #0f172a; background: #ffffff; max-width: 1100px; margin: 0 auto; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.pack *, .pack *::before, .pack *::after { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.pack h1 { font-size: 28px; margin: 0 0 6px; }
.pack h2 { font-size: 21px; margin: 0 0 12px; padding-bottom: 4px; border-bottom: 2px solid #0f172a; }
.pack h3 { font-size: 16px; margin: 20px 0 8px; }
.pack h4 { font-size: 14px; margin: 14px 0 6px; color: #334155; }
.pack p { margin: 6px 0; }
.pack a { color: #1d4ed8; }
.pack code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; background: #f1f5f9; border-radius: 3px; padding: 0 3px; overflow-wrap: anywhere; }
.pack ul, .pack ol { margin: 6px 0; padding-left: 22px; }
.pack .pack-cover { padding: 8px 0 16px; }
.pack .pack-cover .kicker { text-transform: uppercase; letter-spacing: 0.08em; font-size: 12px; font-weight: 600; color: #475569; margin: 0; }
.pack .pack-cover .risk-count { font-size: 15px; margin-top: 12px; }
.pack .toc { margin-top: 18px; border-top: 1px solid #cbd5e1; padding-top: 8px; }
.pack .toc li { margin: 2px 0; }
.pack .pack-section { break-before: page; page-break-before: always; margin-top: 36px; }
.pack table { border-collapse: collapse; width: 100%; margin: 6px 0 14px; font-size: 13px; }
.pack th, .pack td { border: 1px solid #cbd5e1; padding: 4px 7px; text-align: left; vertical-align: top; }
.pack th { background: #f1f5f9; font-weight: 600; }
.pack thead { display: table-header-group; }
.pack tr { break-inside: avoid; page-break-inside: avoid; }
.pack .facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; margin: 6px 0 12px; }
.pack .facts dt { font-weight: 600; color: #334155; }
.pack .facts dd { margin: 0; }
.pack .badge { display: inline-block; padding: 0 7px; border-radius: 9px; border: 1px solid #94a3b8; background: #f1f5f9; color: #334155; font-size: 12px; font-weight: 600; line-height: 18px; white-space: nowrap; }
.pack .badge-read_only, .pack .badge-ok, .pack .badge-delivering { background: #dcfce7; border-color: #16a34a; color: #14532d; }
.pack .badge-writing, .pack .badge-held, .pack .badge-medium { background: #fef3c7; border-color: #d97706; color: #78350f; }
.pack .badge-destructive, .pack .badge-high, .pack .badge-failing { background: #fee2e2; border-color: #dc2626; color: #7f1d1d; }
.pack .badge-low { background: #dbeafe; border-color: #2563eb; color: #1e3a8a; }
.pack .server { border-top: 1px solid #cbd5e1; padding-top: 8px; margin-top: 18px; }
.pack .server h3 { margin-top: 4px; }
.pack .risk { border: 1px solid #cbd5e1; border-left: 5px solid #94a3b8; border-radius: 4px; padding: 8px 12px; margin: 10px 0; break-inside: avoid; page-break-inside: avoid; }
.pack .risk-high { border-left-color: #dc2626; }
.pack .risk-medium { border-left-color: #d97706; }
.pack .risk-low { border-left-color: #2563eb; }
.pack .risk h3 { margin: 0 0 4px; }
.pack .statement { white-space: pre-wrap; border: 1px solid #cbd5e1; background: #f8fafc; border-radius: 4px; padding: 8px 10px; margin: 6px 0; }
.pack .missing { font-style: italic; color: #64748b; }
.pack .muted { color: #64748b; }
.pack .verified { color: #15803d; font-weight: 600; }
.pack .error { color: #b91c1c; font-weight: 600; }
.pack figure { margin: 8px 0 16px; break-inside: avoid; page-break-inside: avoid; }
.pack figcaption { font-size: 13px; color: #475569; margin: 4px 0; }
.pack svg { display: block; max-width: 100%; height: auto; }
.pack .tiles { display: flex; flex-wrap: wrap; gap: 12px; margin: 8px 0 16px; }
.pack .tile { border: 1px solid #cbd5e1; border-radius: 8px; padding: 10px 14px; min-width: 150px; background: #f8fafc; }
.pack .tile .num { display: block; font-size: 26px; font-weight: 700; }
.pack .tile .label { font-size: 12px; color: #475569; }
.pack .tile-risks { display: flex; align-items: center; }
.pack .tile-risks a { font-size: 16px; font-weight: 700; }
.pack .charts, .pack .lists { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 16px; }
.pack .signals li { margin: 4px 0; }
@media print {
.pack { font-size: 10.5pt; max-width: none; }
.pack a { color: inherit; text-decoration: none; }
.pack h2, .pack h3, .pack h4 { break-after: avoid; page-break-after: avoid; }
}
"#;

/// The sections after the cover, in order: (`id`, title). Numbered from 1.
const SECTIONS: [(&str, &str); 8] = [
    ("pack-architecture", "Architecture"),
    ("pack-servers", "Server inventory"),
    ("pack-access", "Access control"),
    ("pack-audit", "Audit"),
    ("pack-credentials", "Credentials"),
    ("pack-clients", "Clients and data flow"),
    ("pack-filters", "Filters and agent security"),
    ("pack-risks", "Open risks"),
];

/// Longest text (in characters) drawn in a diagram box.
const CLIP: usize = 28;

/// SVG text attributes: dark ink, bold dark ink, muted and bold muted.
const INK: &str = " fill=\"#0f172a\"";
const INK_BOLD: &str = " fill=\"#0f172a\" font-weight=\"bold\"";
const MUTED: &str = " fill=\"#475569\"";
const MUTED_BOLD: &str = " fill=\"#475569\" font-weight=\"bold\"";

/// Escapes text for HTML and SVG, in element content and in quoted attributes alike.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// At most `CLIP` characters (not bytes), the last one an ellipsis when cut. Not escaped.
fn clip(s: &str) -> String {
    if s.chars().count() <= CLIP {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(CLIP - 1).collect();
    out.push('…');
    out
}

/// A colored badge: `kind` picks the color (`badge-{kind}`), `text` is shown.
fn badge(kind: &str, text: &str) -> String {
    format!(
        "<span class=\"badge badge-{}\">{}</span>",
        esc(kind),
        esc(text)
    )
}

/// A muted paragraph (the "nothing here" lines).
fn muted(text: &str) -> String {
    format!("<p class=\"muted\">{}</p>", esc(text))
}

/// Text in `<code>`.
fn code(text: &str) -> String {
    format!("<code>{}</code>", esc(text))
}

/// A table: header cells are plain text (escaped here), row cells are HTML the caller built
/// (escaping every model string it put in).
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// `table`, or a muted `empty` line when there are no rows.
fn table_or(head: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        muted(empty)
    } else {
        table(head, rows)
    }
}

/// A two-column fact list: labels are plain text, values are HTML the caller built.
fn facts(rows: &[(&str, String)]) -> String {
    let mut out = String::from("<dl class=\"facts\">");
    for (label, value) in rows {
        let _ = write!(out, "<dt>{}</dt><dd>{value}</dd>", esc(label));
    }
    out.push_str("</dl>");
    out
}

/// A kind/count table (secrets, tokens, revocations, finding types).
fn kind_table(kind: &str, rows: &[KindCount], empty: &str) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|k| vec![esc(&k.kind), k.count.to_string()])
        .collect();
    table_or(&[kind, "Count"], &rows, empty)
}

/// The list joined with commas, escaped, or `none` when it is empty.
fn joined(items: &[String], none: &str) -> String {
    if items.is_empty() {
        esc(none)
    } else {
        esc(&items.join(", "))
    }
}

/// The value escaped, or `none` when it is not set.
fn opt(value: Option<&str>, none: &str) -> String {
    esc(value.unwrap_or(none))
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A tool class in words.
fn class_label(class: &str) -> &str {
    match class {
        "read_only" => "read-only",
        other => other,
    }
}

/// A console link: only a path on this origin (`/admin/…`); anything else becomes `#`.
fn href(path: &str) -> String {
    if path.starts_with('/') && !path.starts_with("//") && !path.starts_with("/\\") {
        esc(path)
    } else {
        "#".to_owned()
    }
}

/// One bar of a chart: the label under the axis (first and last only), its value and the
/// tooltip (`<title>`).
struct Bar {
    label: String,
    value: i64,
    title: String,
}

/// A vertical bar chart (`id`, accessible `label`): one bar per entry, a tooltip per bar, the
/// first and last labels under the axis and the maximum on the left.
fn bar_chart(id: &str, label: &str, bars: &[Bar]) -> String {
    const LEFT: f64 = 40.0;
    const RIGHT: f64 = 392.0;
    const TOP: f64 = 14.0;
    const BOTTOM: f64 = 130.0;
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 400 160\" width=\"100%\" role=\"img\" aria-label=\"{}\">",
        esc(id),
        esc(label)
    );
    let max = bars.iter().map(|b| b.value.max(0)).max().unwrap_or(0);
    let _ = write!(
        out,
        "<line x1=\"{LEFT:.1}\" y1=\"{TOP:.1}\" x2=\"{RIGHT:.1}\" y2=\"{TOP:.1}\" stroke=\"#e2e8f0\" stroke-width=\"1\" stroke-dasharray=\"3 3\"/>"
    );
    let _ = write!(
        out,
        "<line x1=\"{LEFT:.1}\" y1=\"{BOTTOM:.1}\" x2=\"{RIGHT:.1}\" y2=\"{BOTTOM:.1}\" stroke=\"#94a3b8\" stroke-width=\"1\"/>"
    );
    out.push_str(&svg_text(
        LEFT - 4.0,
        TOP + 4.0,
        10,
        "end",
        MUTED,
        &max.to_string(),
    ));
    out.push_str(&svg_text(LEFT - 4.0, BOTTOM, 10, "end", MUTED, "0"));
    if bars.is_empty() {
        out.push_str(&svg_text(
            (LEFT + RIGHT) / 2.0,
            (TOP + BOTTOM) / 2.0,
            12,
            "middle",
            MUTED,
            "No data",
        ));
    }
    let slot = (RIGHT - LEFT) / bars.len().max(1) as f64;
    let width = (slot * 0.8).max(0.5);
    for (i, b) in bars.iter().enumerate() {
        let v = b.value.max(0);
        let h = if max > 0 {
            (BOTTOM - TOP) * v as f64 / max as f64
        } else {
            0.0
        };
        let x = LEFT + slot * i as f64 + (slot - width) / 2.0;
        let y = BOTTOM - h;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{h:.1}\" fill=\"#2563eb\"><title>{}</title></rect>",
            esc(&b.title)
        );
    }
    if let Some(first) = bars.first() {
        out.push_str(&svg_text(
            LEFT,
            BOTTOM + 16.0,
            10,
            "start",
            MUTED,
            &first.label,
        ));
    }
    if bars.len() > 1 {
        if let Some(last) = bars.last() {
            out.push_str(&svg_text(
                RIGHT,
                BOTTOM + 16.0,
                10,
                "end",
                MUTED,
                &last.label,
            ));
        }
    }
    out.push_str("</svg>");
    out
}

/// A horizontal bar chart (`id`, accessible `label`): one row per (label, value).
fn hbar_chart(id: &str, label: &str, bars: &[(&str, i64)]) -> String {
    const BAR_X: f64 = 180.0;
    const BAR_MAX: f64 = 340.0;
    const ROW: f64 = 24.0;
    let height = ROW * bars.len() as f64 + 8.0;
    let max = bars.iter().map(|(_, v)| (*v).max(0)).max().unwrap_or(0);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 600 {height:.1}\" width=\"100%\" role=\"img\" aria-label=\"{}\">",
        esc(id),
        esc(label)
    );
    for (i, (name, value)) in bars.iter().enumerate() {
        let v = (*value).max(0);
        let y = 4.0 + ROW * i as f64;
        let w = if max > 0 {
            BAR_MAX * v as f64 / max as f64
        } else {
            0.0
        };
        out.push_str(&svg_text(BAR_X - 8.0, y + 16.0, 12, "end", INK, name));
        let _ = write!(
            out,
            "<rect x=\"{BAR_X:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"#0284c7\"><title>{}: {v}</title></rect>",
            y + 4.0,
            ROW - 8.0,
            esc(name)
        );
        out.push_str(&svg_text(
            BAR_X + w + 6.0,
            y + 16.0,
            12,
            "start",
            MUTED,
            &v.to_string(),
        ));
    }
    out.push_str("</svg>");
    out
}

/// An SVG `<text>`: `attrs` are fixed attributes from the constants above (fill, weight).
fn svg_text(x: f64, y: f64, size: u32, anchor: &str, attrs: &str, text: &str) -> String {
    format!(
        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-family=\"sans-serif\" font-size=\"{size}\" text-anchor=\"{anchor}\"{attrs}>{}</text>",
        esc(text)
    )
}

/// An SVG box with rounded corners; `fill` and `stroke` are fixed colors.
fn svg_rect(x: f64, y: f64, w: f64, h: f64, fill: &str, stroke: &str) -> String {
    format!(
        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"6\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"/>"
    )
}

/// An SVG arrow (the marker is defined in the diagram's `<defs>`).
fn svg_arrow(x1: f64, y1: f64, x2: f64, y2: f64) -> String {
    format!(
        "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"#475569\" stroke-width=\"1.5\" marker-end=\"url(#pack-arrow)\"/>"
    )
}

/// The pack as a complete, self-contained HTML5 document: one inline stylesheet, no script, no
/// external resource; prints on A4 with each section on a new page. Every model string is
/// escaped.
pub fn document(pack: &Pack) -> String {
    let mut out =
        String::from("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(
        out,
        "<title>Security Review Pack — {}</title>",
        esc(&pack.tenant.name)
    );
    let _ = writeln!(out, "<style>\n{CSS}</style>\n</head>\n<body>");
    out.push_str("<div class=\"pack\">\n");
    out.push_str(&content(pack));
    out.push_str("</div>\n</body>\n</html>\n");
    out
}

/// The pack for embedding in the console page: `<div class="pack">` opening with the scoped
/// stylesheet, then the same cover and sections as `document` (no `html`, `head` or `body`).
/// Every model string is escaped.
pub fn fragment(pack: &Pack) -> String {
    let mut out = String::from("<div class=\"pack\">\n");
    let _ = writeln!(out, "<style>\n{CSS}</style>");
    out.push_str(&content(pack));
    out.push_str("</div>\n");
    out
}

/// The cover and the eight sections, shared by `document` and `fragment`.
fn content(p: &Pack) -> String {
    let mut out = cover(p);
    out.push('\n');
    let parts = [
        section_architecture(p),
        section_servers(p),
        section_access(p),
        section_audit(p),
        section_credentials(p),
        section_clients(p),
        section_filters(p),
        section_risks(p),
    ];
    for (i, ((id, title), inner)) in SECTIONS.iter().zip(parts.iter()).enumerate() {
        let _ = writeln!(
            out,
            "<section id=\"{id}\" class=\"pack-section\"><h2>{}. {}</h2>\n{inner}\n</section>",
            i + 1,
            esc(title)
        );
    }
    out
}

/// The cover: who, when, which period, where, how many open risks, and the contents.
fn cover(p: &Pack) -> String {
    let t = &p.tenant;
    let mut out = String::from(
        "<header class=\"pack-cover\" id=\"pack-cover\"><p class=\"kicker\">Security Review Pack</p>",
    );
    let _ = write!(
        out,
        "<h1>{}</h1><p class=\"tenant\">Tenant {}, created {}</p>",
        esc(&t.name),
        code(&t.slug),
        esc(&t.created_at)
    );
    let _ = write!(
        out,
        "<p class=\"generated\">Generated {} by {}</p>",
        esc(&p.generated_at),
        esc(&p.generated_by)
    );
    let _ = write!(
        out,
        "<p class=\"period\">Period: {} – {} ({} days)</p>",
        esc(&p.period.from),
        esc(&p.period.to),
        p.period.days
    );
    let mut urls: Vec<(&str, String)> = Vec::new();
    if let Some(u) = &t.portal_url {
        urls.push(("Portal", code(u)));
    }
    if let Some(u) = &t.gateway_base_url {
        urls.push(("Gateway", format!("<code>{}/&lt;server&gt;</code>", esc(u))));
    }
    if !urls.is_empty() {
        out.push_str(&facts(&urls));
    }
    let count = |severity: &str| p.risks.iter().filter(|r| r.severity == severity).count();
    let (high, medium, low) = (count("high"), count("medium"), count("low"));
    let _ = write!(
        out,
        "<p class=\"risk-count\" id=\"pack-risk-count\">Open risks: <strong>{}</strong> {} {} {}</p>",
        p.risks.len(),
        badge("high", &format!("{high} high")),
        badge("medium", &format!("{medium} medium")),
        badge("low", &format!("{low} low"))
    );
    let _ = write!(out, "<p class=\"muted\">Format {}</p>", esc(p.schema));
    out.push_str("<nav class=\"toc\" aria-label=\"Contents\"><p><strong>Contents</strong></p><ol>");
    for (id, title) in SECTIONS {
        let _ = write!(out, "<li><a href=\"#{id}\">{}</a></li>", esc(title));
    }
    out.push_str("</ol></nav></header>");
    out
}

/// The fill of a control's band in the diagram.
fn band_fill(control: &str) -> &'static str {
    match control {
        "authentication" => "#e0f2fe",
        "policy" => "#ede9fe",
        "filters" => "#fef9c3",
        "audit" => "#dcfce7",
        "vault" => "#fee2e2",
        _ => "#f1f5f9",
    }
}

/// The architecture diagram as inline SVG (`id="pack-diagram"`), drawn by hand in four columns
/// joined by arrows: the MCP clients, the Portcullis gateway with one band per control in the
/// order a request meets them, the upstream servers, and the systems each reaches. Height grows
/// with the rows; box text is cut at 28 characters; every model string is escaped.
pub fn architecture_svg(pack: &Pack) -> String {
    const CX: f64 = 10.0;
    const CW: f64 = 180.0;
    const GX: f64 = 240.0;
    const GW: f64 = 260.0;
    const UX: f64 = 560.0;
    const UW: f64 = 190.0;
    const SX: f64 = 800.0;
    const SW: f64 = 170.0;
    const WIDTH: f64 = 980.0;
    const TOP: f64 = 36.0;
    const BOX_H: f64 = 36.0;
    const GAP: f64 = 12.0;
    const HEAD_H: f64 = 50.0;
    const BAND_H: f64 = 40.0;
    const BAND_GAP: f64 = 8.0;
    const UP_H: f64 = 40.0;
    const SYS_H: f64 = 26.0;
    const SYS_GAP: f64 = 6.0;
    const SLOT_GAP: f64 = 16.0;

    let a = &pack.architecture;
    let mut body = String::new();

    for (x, title) in [
        (CX + CW / 2.0, "MCP clients"),
        (GX + GW / 2.0, "Gateway"),
        (UX + UW / 2.0, "MCP servers"),
        (SX + SW / 2.0, "Systems reached"),
    ] {
        body.push_str(&svg_text(x, 20.0, 12, "middle", MUTED_BOLD, title));
    }

    let gy = TOP;
    let gh = (HEAD_H + a.controls.len() as f64 * (BAND_H + BAND_GAP) + 4.0).max(90.0);
    body.push_str("<g id=\"pack-diagram-gateway\">");
    body.push_str(&svg_rect(GX, gy, GW, gh, "#f8fafc", "#0f172a"));
    body.push_str(&svg_text(
        GX + GW / 2.0,
        gy + 22.0,
        15,
        "middle",
        INK_BOLD,
        "Portcullis gateway",
    ));
    body.push_str(&svg_text(
        GX + GW / 2.0,
        gy + 40.0,
        11,
        "middle",
        MUTED,
        &clip(&pack.tenant.slug),
    ));
    for (i, c) in a.controls.iter().enumerate() {
        let by = gy + HEAD_H + i as f64 * (BAND_H + BAND_GAP);
        let _ = write!(body, "<g id=\"pack-diagram-{}\">", esc(c.id));
        body.push_str(&svg_rect(
            GX + 12.0,
            by,
            GW - 24.0,
            BAND_H,
            band_fill(c.id),
            "#64748b",
        ));
        body.push_str(&svg_text(
            GX + GW / 2.0,
            by + 16.0,
            12,
            "middle",
            INK_BOLD,
            &clip(c.title),
        ));
        body.push_str(&svg_text(
            GX + GW / 2.0,
            by + 31.0,
            10,
            "middle",
            MUTED,
            &clip(&c.summary),
        ));
        body.push_str("</g>");
    }
    body.push_str("</g>");
    let lo = gy + 14.0;
    let hi = (gy + gh - 14.0).max(lo);

    let clients: Vec<&str> = if a.clients.is_empty() {
        vec!["MCP clients"]
    } else {
        a.clients.iter().map(String::as_str).collect()
    };
    for (i, name) in clients.iter().enumerate() {
        let y = TOP + i as f64 * (BOX_H + GAP);
        let mid = y + BOX_H / 2.0;
        body.push_str(&svg_arrow(CX + CW, mid, GX - 2.0, mid.clamp(lo, hi)));
        body.push_str(&svg_rect(CX, y, CW, BOX_H, "#eef2ff", "#6366f1"));
        body.push_str(&svg_text(
            CX + CW / 2.0,
            mid + 4.0,
            12,
            "middle",
            INK,
            &clip(name),
        ));
    }
    let clients_bottom = TOP + clients.len() as f64 * (BOX_H + GAP) - GAP;

    let mut y = TOP;
    if a.upstreams.is_empty() {
        let _ = write!(
            body,
            "<rect x=\"{UX:.1}\" y=\"{y:.1}\" width=\"{UW:.1}\" height=\"{UP_H:.1}\" rx=\"6\" fill=\"#ffffff\" stroke=\"#94a3b8\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"/>"
        );
        body.push_str(&svg_text(
            UX + UW / 2.0,
            y + 24.0,
            12,
            "middle",
            MUTED,
            "No upstream servers",
        ));
        y += UP_H + SLOT_GAP;
    }
    for u in &a.upstreams {
        let mid = y + UP_H / 2.0;
        body.push_str(&svg_arrow(GX + GW, mid.clamp(lo, hi), UX - 2.0, mid));
        body.push_str(&svg_rect(UX, y, UW, UP_H, "#ecfdf5", "#059669"));
        body.push_str(&svg_text(
            UX + UW / 2.0,
            y + 17.0,
            12,
            "middle",
            INK_BOLD,
            &clip(&u.server),
        ));
        body.push_str(&svg_text(
            UX + UW / 2.0,
            y + 32.0,
            10,
            "middle",
            MUTED,
            &clip(&u.transport),
        ));
        for (j, system) in u.systems.iter().enumerate() {
            let sy = y + j as f64 * (SYS_H + SYS_GAP);
            body.push_str(&svg_arrow(UX + UW, mid, SX - 2.0, sy + SYS_H / 2.0));
            body.push_str(&svg_rect(SX, sy, SW, SYS_H, "#fff7ed", "#ea580c"));
            body.push_str(&svg_text(
                SX + SW / 2.0,
                sy + 17.0,
                11,
                "middle",
                INK,
                &clip(system),
            ));
        }
        let systems_h = u.systems.len() as f64 * (SYS_H + SYS_GAP) - SYS_GAP;
        y += UP_H.max(systems_h) + SLOT_GAP;
    }
    let right_bottom = y - SLOT_GAP;
    let height = clients_bottom.max(gy + gh).max(right_bottom) + 16.0;

    let controls: Vec<&str> = a.controls.iter().map(|c| c.title).collect();
    let label = format!(
        "Architecture of tenant {}: {} MCP client(s) connect to the Portcullis gateway, which applies {} before forwarding to {} upstream server(s).",
        pack.tenant.slug,
        a.clients.len(),
        if controls.is_empty() {
            "its controls".to_owned()
        } else {
            controls.join(", ")
        },
        a.upstreams.len()
    );
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg id=\"pack-diagram\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH:.1} {height:.1}\" width=\"100%\" role=\"img\" aria-label=\"{}\">",
        esc(&label)
    );
    out.push_str("<defs><marker id=\"pack-arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#475569\"/></marker></defs>");
    let _ = write!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH:.1}\" height=\"{height:.1}\" fill=\"#ffffff\"/>"
    );
    out.push_str(&body);
    out.push_str("</svg>");
    out
}

/// Section 1: The diagram, the description and the controls on the gateway path.
fn section_architecture(p: &Pack) -> String {
    let a = &p.architecture;
    let mut out = String::new();
    let _ = write!(
        out,
        "<figure class=\"diagram\">{}<figcaption>Clients reach the upstream servers only through the gateway; every call meets the controls from top to bottom.</figcaption></figure>",
        architecture_svg(p)
    );
    for para in &a.description {
        let _ = write!(out, "<p>{}</p>", esc(para));
    }
    out.push_str("<h3>Controls on the gateway path</h3>");
    let rows: Vec<Vec<String>> = a
        .controls
        .iter()
        .map(|c| vec![esc(c.title), esc(&c.summary)])
        .collect();
    out.push_str(&table_or(
        &["Control", "In this tenant"],
        &rows,
        "No controls are recorded.",
    ));
    out
}

/// Section 2: One article per server.
fn section_servers(p: &Pack) -> String {
    if p.servers.is_empty() {
        return "<p class=\"muted\" id=\"pack-no-servers\">No servers are configured.</p>"
            .to_owned();
    }
    let mut out = String::new();
    let _ = write!(out, "<p>Servers configured: {}.</p>", p.servers.len());
    for s in &p.servers {
        out.push_str(&server(s));
    }
    out
}

/// One server: what it is, where it runs, what it reaches, its tools and the data it carried.
fn server(s: &ServerFacts) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<article class=\"server\" id=\"pack-server-{}\"><h3>{} {}</h3>",
        esc(&s.slug),
        esc(&s.name),
        code(&s.slug)
    );
    if !s.description.trim().is_empty() {
        let _ = write!(out, "<p>{}</p>", esc(&s.description));
    }
    let runs = match (s.local, s.sandboxed) {
        (true, true) => "on the gateway host, sandboxed",
        (true, false) => "on the gateway host, not sandboxed",
        (false, _) => "remote, over the network",
    };
    let credential = match &s.credential_kind {
        Some(kind) => format!("{} ({})", esc(&s.credential_mode), esc(kind)),
        None => esc(&s.credential_mode),
    };
    let reviewed = match (s.reviewed, &s.reviewed_at) {
        (true, Some(at)) => format!("reviewed {}", esc(at)),
        (true, None) => "reviewed".to_owned(),
        (false, _) => "not reviewed".to_owned(),
    };
    let new_tools = match s.new_tools.as_str() {
        "allow" => "allow: tools that appear after the review can be called".to_owned(),
        "deny" => "deny: tools that appear after the review are held for review".to_owned(),
        other => esc(other),
    };
    let c = &s.tool_counts;
    let pin = &s.pinning;
    out.push_str(&facts(&[
        ("Transport", esc(&s.transport)),
        ("Location", code(&s.location)),
        ("Runs", runs.to_owned()),
        ("Systems", joined(&s.systems, "none")),
        ("Credential", credential),
        ("Registries", joined(&s.registries, "listed in no registry")),
        ("Catalog", reviewed),
        ("New tools", new_tools),
        (
            "Tools",
            format!(
                "{} read-only, {} writing, {} destructive",
                c.read_only, c.writing, c.destructive
            ),
        ),
        (
            "Pinning",
            format!(
                "{} pinned, {} held, {} unpinned",
                pin.pinned, pin.held, pin.unpinned
            ),
        ),
    ]));
    out.push_str("<h4>Tools</h4>");
    let rows: Vec<Vec<String>> = s
        .tools
        .iter()
        .map(|t| {
            vec![
                code(&t.name),
                badge(t.class, class_label(t.class)),
                esc(t.class_source),
                yes_no(t.open_world).to_owned(),
                badge(t.pin_status, t.pin_status),
            ]
        })
        .collect();
    out.push_str(&table_or(
        &["Tool", "Class", "Class from", "Open world", "Pin"],
        &rows,
        "No tools are known.",
    ));
    out.push_str("<h4>Sensitive data in its answers</h4>");
    let rows: Vec<Vec<String>> = s
        .data_categories
        .iter()
        .map(|d| {
            vec![
                code(&d.category),
                d.answers.to_string(),
                d.findings.to_string(),
                esc(&d.last_seen),
            ]
        })
        .collect();
    out.push_str(&table_or(
        &["Category", "Answers", "Findings", "Last seen"],
        &rows,
        "No sensitive data seen in the period.",
    ));
    out.push_str("</article>");
    out
}

/// How group memberships arrive, in words.
fn arrival_label(by: &str) -> &str {
    match by {
        "oidc_claims" => "OIDC claims at sign-in",
        "scim" => "SCIM provisioning",
        "manual" => "manual assignment",
        other => other,
    }
}

/// Section 3: Identity, provisioning, grants, the matrix, deny rules, agents, admins and users.
fn section_access(p: &Pack) -> String {
    let a = &p.access;
    let mut out = String::from("<h3>Identity provider</h3>");
    match &a.idp {
        Some(idp) => out.push_str(&facts(&[
            ("Protocol", esc(idp.protocol)),
            ("Issuer", code(&idp.issuer)),
            ("Groups claim", code(&idp.groups_claim)),
            ("Allowed domains", joined(&idp.allowed_domains, "any")),
        ])),
        None => out.push_str("<p>No identity provider: users sign in with tokens only.</p>"),
    }
    let arrivals: Vec<String> = a
        .groups_arrive_by
        .iter()
        .map(|g| arrival_label(g).to_owned())
        .collect();
    out.push_str(&facts(&[(
        "Groups arrive by",
        joined(&arrivals, "no group source"),
    )]));

    out.push_str("<h3>SCIM provisioning</h3>");
    out.push_str(&facts(&[
        ("Enabled", yes_no(a.scim.enabled).to_owned()),
        ("Last sync", opt(a.scim.last_sync.as_deref(), "never")),
        (
            "Changes in the period",
            a.scim.changes_in_period.to_string(),
        ),
    ]));

    out.push_str("<h3>Registries and grants</h3>");
    if a.registries.is_empty() {
        out.push_str(&muted("No registries: no server is reachable."));
    }
    for r in &a.registries {
        let _ = write!(out, "<h4>{} {}</h4>", esc(&r.name), code(&r.slug));
        out.push_str(&facts(&[("Servers", joined(&r.servers, "none"))]));
        let rows: Vec<Vec<String>> = r
            .grants
            .iter()
            .map(|g| {
                let rules = if g.rules.is_empty() {
                    "all tools".to_owned()
                } else {
                    esc(&g.rules.join("; "))
                };
                vec![code(&g.subject), rules]
            })
            .collect();
        out.push_str(&table_or(
            &["Granted to", "May call"],
            &rows,
            "Not granted to anyone.",
        ));
    }

    out.push_str("<h3>Who may call what</h3>");
    let mut head: Vec<&str> = vec!["Server"];
    head.extend(a.matrix.columns.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = a
        .matrix
        .rows
        .iter()
        .map(|r| {
            let mut row = vec![code(&r.server)];
            row.extend(r.cells.iter().map(|c| esc(c)));
            row
        })
        .collect();
    out.push_str(&table_or(&head, &rows, "No server is granted to anyone."));

    out.push_str("<h3>Deny rules</h3>");
    let rows: Vec<Vec<String>> = a
        .deny_rules
        .iter()
        .map(|d| vec![esc(&d.registry), code(&d.subject), code(&d.rule)])
        .collect();
    out.push_str(&table_or(
        &["Registry", "Subject", "Rule"],
        &rows,
        "No deny rules.",
    ));

    out.push_str("<h3>Agents</h3>");
    let rows: Vec<Vec<String>> = a
        .agents
        .iter()
        .map(|g| {
            vec![
                code(&g.slug),
                esc(&g.name),
                opt(g.owner.as_deref(), "tenant"),
                g.systems.to_string(),
                g.tools.to_string(),
                g.writes.to_string(),
                g.destructive.to_string(),
                joined(&g.writes_on, "—"),
                g.active_tokens.to_string(),
            ]
        })
        .collect();
    out.push_str(&table_or(
        &[
            "Agent",
            "Name",
            "Owner",
            "Systems",
            "Tools",
            "Writes",
            "Destructive",
            "Writes on",
            "Active tokens",
        ],
        &rows,
        "No agents.",
    ));

    out.push_str("<h3>Admins</h3>");
    let rows: Vec<Vec<String>> = a
        .admins
        .iter()
        .map(|m| vec![esc(&m.email), esc(&m.source), yes_no(m.active).to_owned()])
        .collect();
    out.push_str(&table_or(
        &["Email", "Source", "Active"],
        &rows,
        "No admins.",
    ));

    out.push_str("<h3>Users</h3>");
    out.push_str(&facts(&[
        ("Active", a.users.active.to_string()),
        ("Inactive", a.users.inactive.to_string()),
        (
            "Called a server in the period",
            a.users.active_in_period.to_string(),
        ),
    ]));
    out
}

/// Section 4: What is recorded, for how long, where it goes, whether it is intact, and how much.
fn section_audit(p: &Pack) -> String {
    let a = &p.audit;
    let mut out = String::from("<h3>What each record holds</h3><ul class=\"captures\">");
    for c in &a.captures {
        let _ = write!(out, "<li>{}</li>", esc(c));
    }
    out.push_str("</ul>");
    out.push_str(&facts(&[("Tool arguments", code(&a.arguments))]));

    let r = &a.retention;
    let kept = match r.days {
        Some(days) => format!("{days} days"),
        None => "kept until purged: no retention limit".to_owned(),
    };
    let hold = match (r.legal_hold, r.legal_hold_reason.as_deref()) {
        (true, Some(why)) if !why.trim().is_empty() => format!("on — {}", esc(why)),
        (true, _) => "on".to_owned(),
        (false, _) => "off".to_owned(),
    };
    let regulation = match (r.regulation.as_deref(), r.regulation_days) {
        (Some(name), Some(days)) => format!("{} (asks for {days} days)", esc(name)),
        (Some(name), None) => esc(name),
        (None, _) => "none selected".to_owned(),
    };
    out.push_str("<h3>Retention</h3>");
    out.push_str(&facts(&[
        ("Retention", kept),
        ("Preset", opt(r.preset.as_deref(), "none")),
        ("Legal hold", hold),
        ("Last purge", opt(r.last_purge.as_deref(), "never")),
        ("Regulation", regulation),
    ]));

    out.push_str("<h3>Export destinations</h3>");
    let rows: Vec<Vec<String>> = a
        .destinations
        .iter()
        .map(|d| {
            let error = match &d.last_error {
                Some(e) => format!("<span class=\"error\">{}</span>", esc(e)),
                None => "—".to_owned(),
            };
            vec![
                esc(&d.name),
                esc(&d.kind),
                badge(d.state, d.state),
                d.delivered.to_string(),
                d.behind.to_string(),
                opt(d.last_ok.as_deref(), "never"),
                error,
                d.failures.to_string(),
            ]
        })
        .collect();
    out.push_str(&table_or(
        &[
            "Destination",
            "Kind",
            "State",
            "Delivered",
            "Behind",
            "Last delivery",
            "Last error",
            "Failures",
        ],
        &rows,
        "No export destination.",
    ));

    out.push_str("<h3>Integrity</h3>");
    let chain = &a.chain;
    if chain.verified {
        let _ = write!(
            out,
            "<p class=\"verified\" id=\"pack-chain\">Hash chain verified ✓ ({} records checked)</p>",
            chain.records_checked
        );
    } else {
        let _ = write!(
            out,
            "<p class=\"error\" id=\"pack-chain\">Hash chain does not verify: {} ({} records checked)</p>",
            esc(chain.error.as_deref().unwrap_or("not verified")),
            chain.records_checked
        );
    }
    out.push_str(&facts(&[
        ("Records", a.records.to_string()),
        ("Oldest record", opt(a.oldest.as_deref(), "none")),
    ]));

    out.push_str("<h3>Records per month</h3>");
    if a.volume_by_month.is_empty() {
        out.push_str(&muted("No records yet."));
    } else {
        let bars: Vec<Bar> = a
            .volume_by_month
            .iter()
            .map(|m| Bar {
                label: m.month.clone(),
                value: m.records,
                title: format!("{}: {} records ({} MCP)", m.month, m.records, m.mcp),
            })
            .collect();
        let _ = write!(
            out,
            "<figure>{}<figcaption>Audit records per month over the whole log (each bar's tooltip gives the MCP share).</figcaption></figure>",
            bar_chart("pack-volume-chart", "Audit records per month", &bars)
        );
    }
    out
}

/// Section 5: The vault's scheme and keys, what it stores, the gateway tokens, revocations and the
/// revocation procedure.
fn section_credentials(p: &Pack) -> String {
    let c = &p.credentials;
    let mut out = String::new();
    for para in &c.scheme {
        let _ = write!(out, "<p>{}</p>", esc(para));
    }
    let fingerprint = match &c.kek.fingerprint {
        Some(f) => code(f),
        None => "not available".to_owned(),
    };
    out.push_str(&facts(&[
        ("Key-encryption key", esc(&c.kek.source)),
        ("KEK fingerprint", fingerprint),
        ("Last rotation", opt(c.last_rotation.as_deref(), "never")),
    ]));

    out.push_str("<h3>Data keys</h3>");
    let rows: Vec<Vec<String>> = c
        .data_keys
        .iter()
        .map(|k| {
            vec![
                code(&k.key_id),
                esc(&k.created_at),
                opt(k.retired_at.as_deref(), "in use"),
                k.age_days.to_string(),
            ]
        })
        .collect();
    out.push_str(&table_or(
        &["Key id", "Created", "Retired", "Age (days)"],
        &rows,
        "No data keys.",
    ));

    out.push_str("<h3>Stored secrets</h3>");
    out.push_str(&kind_table("Kind", &c.stored, "No secrets are stored."));
    out.push_str("<h3>Gateway tokens</h3>");
    out.push_str(&kind_table("Kind", &c.gateway_tokens, "No gateway tokens."));
    out.push_str("<h3>Revocations in the period</h3>");
    out.push_str(&kind_table("Kind", &c.revocations, "None in the period."));

    out.push_str("<h3>Revocation procedure</h3>");
    if c.procedure.is_empty() {
        out.push_str(&muted("No procedure is recorded."));
    } else {
        out.push_str("<ol class=\"procedure\">");
        for step in &c.procedure {
            let _ = write!(out, "<li>{}</li>", esc(step));
        }
        out.push_str("</ol>");
    }
    out
}

/// The admin's text as written (line breaks kept), or a note that it is missing.
fn statement_text(id: &str, text: &str) -> String {
    if text.trim().is_empty() {
        format!(
            "<p class=\"missing\" id=\"{}\"><em>Not yet written by the tenant admin.</em></p>",
            esc(id)
        )
    } else {
        format!(
            "<div class=\"statement\" id=\"{}\" style=\"white-space: pre-wrap\">{}</div>",
            esc(id),
            esc(text)
        )
    }
}

/// Section 6: Which clients received which servers' data, their user agents, and the admin's statement.
fn section_clients(p: &Pack) -> String {
    let c = &p.clients;
    let mut out = String::from("<h3>Data flows</h3>");
    let rows: Vec<Vec<String>> = c
        .flows
        .iter()
        .map(|f| {
            vec![
                code(&f.client),
                code(&f.server),
                f.calls.to_string(),
                f.users.to_string(),
                esc(&f.last_seen),
            ]
        })
        .collect();
    out.push_str(&table_or(
        &["Client", "Server", "Calls", "Users", "Last seen"],
        &rows,
        "No client calls in the period.",
    ));

    out.push_str("<h3>User agents</h3>");
    let rows: Vec<Vec<String>> = c
        .user_agents
        .iter()
        .map(|a| {
            let agents: Vec<String> = a.user_agents.iter().map(|u| code(u)).collect();
            let agents = if agents.is_empty() {
                "—".to_owned()
            } else {
                agents.join("<br>")
            };
            vec![code(&a.client), agents]
        })
        .collect();
    out.push_str(&table_or(
        &["Client", "User agents"],
        &rows,
        "No user agents recorded.",
    ));

    let s = &c.statement;
    out.push_str("<h3>LLM routing</h3>");
    out.push_str(&statement_text("pack-llm-routing", &s.llm_routing));
    out.push_str("<h3>Data processing agreements</h3>");
    out.push_str(&statement_text("pack-data-processing", &s.data_processing));
    let updated = match (s.updated_by.as_deref(), s.updated_at.as_deref()) {
        (Some(by), Some(at)) => format!("Statement last updated {} by {}.", esc(at), esc(by)),
        (Some(by), None) => format!("Statement last updated by {}.", esc(by)),
        (None, Some(at)) => format!("Statement last updated {}.", esc(at)),
        (None, None) => "The statement has never been updated.".to_owned(),
    };
    let _ = write!(out, "<p class=\"muted\">{updated}</p>");
    out
}

/// Section 7: Filter policies, hooks, what the filters did, findings and quarantined tools.
fn section_filters(p: &Pack) -> String {
    let f = &p.filters;
    let mut out = String::from("<h3>Policies</h3>");
    let rows: Vec<Vec<String>> = f
        .policies
        .iter()
        .map(|x| {
            let scope = if x.scope == "*" {
                "* (tenant default)".to_owned()
            } else {
                code(&x.scope)
            };
            vec![
                scope,
                esc(&x.pii),
                esc(&x.secrets),
                esc(&x.injection),
                esc(&x.arguments),
                joined(&x.entities, "—"),
                joined(&x.tools, "—"),
            ]
        })
        .collect();
    out.push_str(&table_or(
        &[
            "Scope",
            "PII",
            "Secrets",
            "Injection",
            "Arguments",
            "Entities",
            "Tools",
        ],
        &rows,
        "No filter policy.",
    ));

    out.push_str("<h3>Hooks</h3>");
    let rows: Vec<Vec<String>> = f
        .hooks
        .iter()
        .map(|h| {
            vec![
                esc(&h.scope),
                code(&h.host),
                esc(&h.fail),
                format!("{} ms", h.timeout_ms),
            ]
        })
        .collect();
    out.push_str(&table_or(
        &["Scope", "Host", "On failure", "Timeout"],
        &rows,
        "No hooks.",
    ));

    out.push_str("<h3>What the filters did in the period</h3>");
    let st = &f.stats;
    let _ = write!(
        out,
        "<p>Answers the filters acted on: {}.</p>",
        st.answers_filtered
    );
    let stats: [(&str, i64); 8] = [
        ("Redacted", st.redacted),
        ("Masked", st.masked),
        ("Blocked", st.blocked),
        ("Logged", st.logged),
        ("Injections blocked", st.injections_blocked),
        ("Injections flagged", st.injections_flagged),
        ("Injections logged", st.injections_logged),
        ("Arguments blocked", st.arguments_blocked),
    ];
    let rows: Vec<Vec<String>> = stats
        .iter()
        .map(|(name, n)| vec![esc(name), n.to_string()])
        .collect();
    out.push_str(&table(&["Action", "Count"], &rows));
    let _ = write!(
        out,
        "<figure>{}<figcaption>Filter actions in the period.</figcaption></figure>",
        hbar_chart("pack-filter-chart", "Filter actions in the period", &stats)
    );

    out.push_str("<h3>Findings by type</h3>");
    out.push_str(&kind_table(
        "Type",
        &f.by_type,
        "No findings in the period.",
    ));

    out.push_str("<h3>Tools held for review</h3>");
    let rows: Vec<Vec<String>> = f
        .quarantined
        .iter()
        .map(|q| {
            let why = match q.kind.as_str() {
                "changed" => "changed upstream".to_owned(),
                "new" => "new since the review".to_owned(),
                other => esc(other),
            };
            vec![code(&q.server), code(&q.tool), why, esc(&q.since)]
        })
        .collect();
    out.push_str(&table_or(
        &["Server", "Tool", "Why", "Since"],
        &rows,
        "No tool is held for review.",
    ));
    out
}

/// Section 8: The open risks, most severe first, and the anomaly signals of the period.
fn section_risks(p: &Pack) -> String {
    let mut out = String::new();
    if p.risks.is_empty() {
        out.push_str("<p id=\"pack-no-risks\">No open risks were found.</p>");
    }
    for r in &p.risks {
        let _ = write!(
            out,
            "<article class=\"risk risk-{}\" id=\"risk-{}\"><h3>{} {}</h3><p>{}</p>",
            esc(r.severity),
            esc(r.id),
            badge(r.severity, r.severity),
            esc(&r.title),
            esc(&r.detail)
        );
        if !r.subjects.is_empty() {
            let _ = write!(
                out,
                "<p class=\"subjects\">Concerns: {}</p>",
                joined(&r.subjects, "")
            );
        }
        let _ = write!(
            out,
            "<p class=\"fix\"><strong>How to fix:</strong> {}</p></article>",
            esc(&r.fix)
        );
    }
    out.push_str("<h3>Anomaly signals</h3>");
    let rows: Vec<Vec<String>> = p
        .signals
        .iter()
        .map(|s| {
            vec![
                esc(&s.at),
                code(&s.kind),
                code(&s.subject),
                badge(&s.severity, &s.severity),
                esc(&s.summary),
            ]
        })
        .collect();
    out.push_str(&table_or(
        &["At", "Kind", "Subject", "Severity", "Summary"],
        &rows,
        "No anomaly signals in the period.",
    ));
    out
}

/// Reads one number of a day.
type Metric = fn(&DayPoint) -> i64;

/// The sum of one number over the period.
fn total(d: &Dashboard, metric: Metric) -> i64 {
    d.series.iter().map(metric).sum()
}

/// A stat tile.
fn tile(id: &str, value: i64, label: &str) -> String {
    format!(
        "<div class=\"tile\" id=\"{}\"><span class=\"num\">{value}</span><span class=\"label\">{}</span></div>",
        esc(id),
        esc(label)
    )
}

/// A ranked list (`<ol id>`) of kinds with their counts, or a muted line with the same id.
fn top_list(id: &str, title: &str, items: &[KindCount], unit: &str, empty: &str) -> String {
    let mut out = format!("<div class=\"top\"><h3>{}</h3>", esc(title));
    if items.is_empty() {
        let _ = write!(
            out,
            "<p class=\"muted\" id=\"{}\">{}</p>",
            esc(id),
            esc(empty)
        );
    } else {
        let _ = write!(out, "<ol id=\"{}\">", esc(id));
        for k in items {
            let _ = write!(
                out,
                "<li>{} <span class=\"muted\">{} {}</span></li>",
                code(&k.kind),
                k.count,
                esc(unit)
            );
        }
        out.push_str("</ol>");
    }
    out.push_str("</div>");
    out
}

/// The console home's dashboard: stat tiles over the period, the open-risks link, one bar
/// chart per daily series, the top servers and tools, and the recent anomaly signals, in a
/// `<div class="pack dashboard">` carrying the scoped stylesheet. Every model string is escaped.
pub fn dashboard(d: &Dashboard) -> String {
    let mut out = String::from("<div class=\"pack dashboard\" id=\"dashboard\">\n");
    let _ = writeln!(out, "<style>\n{CSS}</style>");

    let peak = d.series.iter().map(|p| p.active_users).max().unwrap_or(0);
    let period = format!("in {} days", d.days);
    out.push_str("<div class=\"tiles\">");
    out.push_str(&tile(
        "dash-total-calls",
        total(d, |p| p.calls),
        &format!("calls {period}"),
    ));
    out.push_str(&tile(
        "dash-total-denials",
        total(d, |p| p.denials),
        &format!("denials {period}"),
    ));
    out.push_str(&tile(
        "dash-total-redactions",
        total(d, |p| p.redactions),
        &format!("redactions {period}"),
    ));
    out.push_str(&tile(
        "dash-total-injections",
        total(d, |p| p.injection_blocks),
        &format!("injection blocks {period}"),
    ));
    out.push_str(&tile("dash-peak-users", peak, "peak active users in a day"));
    let _ = write!(
        out,
        "<div class=\"tile tile-risks\"><a id=\"dash-open-risks\" href=\"/admin/review-pack\">{} open risks ({} high)</a></div>",
        d.open_risks, d.high_risks
    );
    out.push_str("</div>\n");

    let charts: [(&str, &str, &str, Metric); 5] = [
        ("dash-chart-calls", "Calls per day", "calls", |p| p.calls),
        ("dash-chart-denials", "Denials per day", "denials", |p| {
            p.denials
        }),
        (
            "dash-chart-redactions",
            "Redactions per day",
            "redactions",
            |p| p.redactions,
        ),
        (
            "dash-chart-injections",
            "Injection blocks per day",
            "injection blocks",
            |p| p.injection_blocks,
        ),
        (
            "dash-chart-users",
            "Active users per day",
            "active users",
            |p| p.active_users,
        ),
    ];
    out.push_str("<div class=\"charts\">");
    for (id, caption, unit, metric) in charts {
        let bars: Vec<Bar> = d
            .series
            .iter()
            .map(|p| {
                let value = metric(p);
                Bar {
                    label: p.date.clone(),
                    value,
                    title: format!("{}: {value} {unit}", p.date),
                }
            })
            .collect();
        let _ = write!(
            out,
            "<figure><figcaption>{}</figcaption>{}</figure>",
            esc(caption),
            bar_chart(id, caption, &bars)
        );
    }
    out.push_str("</div>\n");

    out.push_str("<div class=\"lists\">");
    out.push_str(&top_list(
        "dash-top-servers",
        "Top servers",
        &d.top_servers,
        "calls",
        "No calls in the period.",
    ));
    out.push_str(&top_list(
        "dash-top-tools",
        "Top tools",
        &d.top_tools,
        "calls",
        "No calls in the period.",
    ));
    out.push_str("<div class=\"recent-signals\"><h3>Recent anomaly signals</h3>");
    if d.signals.is_empty() {
        out.push_str("<p class=\"muted\" id=\"dash-signals\">No anomaly signals.</p>");
    } else {
        out.push_str("<ul class=\"signals\" id=\"dash-signals\">");
        for s in &d.signals {
            let _ = write!(
                out,
                "<li>{} <span class=\"muted\">{}</span> {} {} <a href=\"{}\">records</a></li>",
                badge(&s.severity, &s.severity),
                esc(&s.at),
                code(&s.subject),
                esc(&s.summary),
                href(&s.records_href)
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("</div></div>\n</div>\n");
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const HOSTILE: &str = "<script>alert(1)</script>";

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn server(slug: &str, transport: &str, local: bool, tool: &str) -> ServerFacts {
        ServerFacts {
            slug: slug.into(),
            name: format!("{slug} server"),
            description: format!("The {slug} server.\nSecond line."),
            transport: transport.into(),
            location: if local {
                "npx -y @modelcontextprotocol/server-filesystem /srv".into()
            } else {
                format!("https://{slug}.example.com/mcp")
            },
            local,
            sandboxed: local,
            systems: strings(&[if local { "npx" } else { "api.example.com" }]),
            credential_mode: if local {
                "none".into()
            } else {
                "shared".into()
            },
            credential_kind: if local { None } else { Some("bearer".into()) },
            registries: strings(&["engineering"]),
            reviewed: !local,
            reviewed_at: if local {
                None
            } else {
                Some("2026-11-01T09:00:00Z".into())
            },
            new_tools: if local { "allow".into() } else { "deny".into() },
            tools: vec![
                ToolFacts {
                    name: tool.into(),
                    class: "read_only",
                    class_source: "annotations",
                    open_world: false,
                    pinned: true,
                    pin_status: "ok",
                },
                ToolFacts {
                    name: "delete_everything".into(),
                    class: "destructive",
                    class_source: "default",
                    open_world: true,
                    pinned: false,
                    pin_status: "held",
                },
            ],
            tool_counts: ToolCounts {
                read_only: 1,
                writing: 0,
                destructive: 1,
            },
            data_categories: if local {
                Vec::new()
            } else {
                vec![DataCategory {
                    category: "EMAIL".into(),
                    answers: 4,
                    findings: 9,
                    last_seen: "2026-11-20T12:00:00Z".into(),
                }]
            },
            pinning: Pinning {
                pinned: 1,
                held: 1,
                unpinned: 0,
            },
        }
    }

    /// A small pack with every section filled (also used by the risk rules' tests).
    pub(crate) fn sample() -> Pack {
        Pack {
            schema: SCHEMA,
            tenant: TenantFacts {
                slug: "acme".into(),
                name: "Acme & Co".into(),
                created_at: "2026-01-02T03:04:05Z".into(),
                portal_url: Some("https://acme.example.com".into()),
                gateway_base_url: Some("https://acme.example.com/mcp".into()),
            },
            generated_at: "2026-11-25T10:00:00Z".into(),
            generated_by: "admin@acme.example".into(),
            period: Period {
                days: 30,
                from: "2026-10-26T10:00:00Z".into(),
                to: "2026-11-25T10:00:00Z".into(),
            },
            architecture: Architecture {
                description: strings(&["Clients reach servers only through the gateway."]),
                clients: strings(&[
                    "claude-desktop/1.2",
                    "a-client-with-a-name-well-beyond-the-limit/9.9",
                    HOSTILE,
                ]),
                controls: vec![
                    Control {
                        id: "authentication",
                        title: "Authentication",
                        summary: "gateway tokens and OAuth 2.1; OpenID Connect".into(),
                    },
                    Control {
                        id: "policy",
                        title: "Access policy",
                        summary: "1 registry, 1 deny rule".into(),
                    },
                    Control {
                        id: "filters",
                        title: "Filters and pinning",
                        summary: "PII redacted, injections blocked".into(),
                    },
                    Control {
                        id: "audit",
                        title: "Audit log",
                        summary: "hash-chained, 365 days".into(),
                    },
                    Control {
                        id: "vault",
                        title: "Credential vault",
                        summary: "AES-256-GCM per-tenant data keys under the KEK".into(),
                    },
                ],
                upstreams: vec![
                    Upstream {
                        server: "github".into(),
                        transport: "streamable_http".into(),
                        systems: strings(&["api.example.com"]),
                    },
                    Upstream {
                        server: "files".into(),
                        transport: "stdio".into(),
                        systems: strings(&["npx", "<b>bold</b>"]),
                    },
                ],
            },
            servers: vec![
                server("github", "streamable_http", false, HOSTILE),
                server("files", "stdio", true, "read_file"),
            ],
            access: Access {
                idp: Some(Idp {
                    protocol: "oidc",
                    issuer: "https://login.example.com".into(),
                    groups_claim: "groups".into(),
                    allowed_domains: strings(&["acme.example"]),
                }),
                groups_arrive_by: vec!["oidc_claims", "scim"],
                scim: Scim {
                    enabled: true,
                    last_sync: Some("2026-11-24T08:00:00Z".into()),
                    changes_in_period: 3,
                },
                registries: vec![RegistryFacts {
                    slug: "engineering".into(),
                    name: "Engineering".into(),
                    servers: strings(&["files", "github"]),
                    grants: vec![
                        GrantFacts {
                            subject: "everyone".into(),
                            rules: Vec::new(),
                        },
                        GrantFacts {
                            subject: "group:eng".into(),
                            rules: strings(&["allow read_only"]),
                        },
                    ],
                }],
                matrix: Matrix {
                    columns: strings(&["everyone", "group:eng"]),
                    rows: vec![MatrixRow {
                        server: "github".into(),
                        cells: strings(&["all", "read_only"]),
                    }],
                },
                deny_rules: vec![DenyRule {
                    registry: "engineering".into(),
                    subject: "everyone".into(),
                    rule: "deny * where destructive".into(),
                }],
                agents: vec![AgentFacts {
                    slug: "research".into(),
                    name: "Research bot".into(),
                    owner: None,
                    systems: 2,
                    tools: 5,
                    writes: 1,
                    destructive: 0,
                    writes_on: strings(&["github"]),
                    active_tokens: 1,
                }],
                admins: vec![AdminFacts {
                    email: "admin@acme.example".into(),
                    source: "sso".into(),
                    active: true,
                }],
                users: UserCounts {
                    active: 12,
                    inactive: 2,
                    active_in_period: 9,
                },
            },
            audit: AuditFacts {
                captures: vec!["time", "user", "server", "tool", "decision"],
                arguments: "hashed".into(),
                retention: Retention {
                    days: Some(365),
                    preset: Some("hipaa".into()),
                    legal_hold: true,
                    legal_hold_reason: Some("litigation 2026-17".into()),
                    last_purge: Some("2026-11-24T00:00:00Z".into()),
                    regulation: Some("hipaa".into()),
                    regulation_days: Some(2190),
                },
                destinations: vec![Destination {
                    name: "splunk".into(),
                    kind: "splunk_hec".into(),
                    enabled: true,
                    state: "failing",
                    delivered: 120,
                    behind: 4,
                    last_ok: Some("2026-11-24T23:00:00Z".into()),
                    last_error: Some("connection refused".into()),
                    failures: 3,
                }],
                chain: Chain {
                    verified: true,
                    records_checked: 1234,
                    error: None,
                },
                volume_by_month: vec![
                    MonthVolume {
                        month: "2026-10".into(),
                        records: 400,
                        mcp: 350,
                    },
                    MonthVolume {
                        month: "2026-11".into(),
                        records: 834,
                        mcp: 800,
                    },
                ],
                records: 1234,
                oldest: Some("2026-10-01T00:00:00Z".into()),
            },
            credentials: Credentials {
                scheme: strings(&["Secrets are sealed with AES-256-GCM."]),
                kek: Kek {
                    source: "master key file".into(),
                    fingerprint: Some("sha256:abcd".into()),
                },
                data_keys: vec![DataKey {
                    key_id: "dk-1".into(),
                    created_at: "2026-01-02T03:04:05Z".into(),
                    retired_at: None,
                    age_days: 327,
                }],
                last_rotation: None,
                stored: vec![KindCount {
                    kind: "upstream credential".into(),
                    count: 1,
                }],
                gateway_tokens: vec![KindCount {
                    kind: "personal".into(),
                    count: 7,
                }],
                revocations: Vec::new(),
                procedure: strings(&["Deactivate the user.", "Revoke their tokens."]),
            },
            clients: Clients {
                flows: vec![ClientFlow {
                    client: "claude-desktop/1.2".into(),
                    server: "github".into(),
                    calls: 42,
                    users: 3,
                    last_seen: "2026-11-24T17:00:00Z".into(),
                }],
                user_agents: vec![ClientAgents {
                    client: "unknown".into(),
                    user_agents: strings(&[HOSTILE, "curl/8.0"]),
                }],
                statement: Statement {
                    llm_routing: "Anthropic API, EU region.\nNo other provider.".into(),
                    data_processing: String::new(),
                    regulation: "hipaa".into(),
                    updated_by: Some("admin@acme.example".into()),
                    updated_at: Some("2026-11-20T10:00:00Z".into()),
                },
            },
            filters: FilterFacts {
                policies: vec![FilterPolicyFacts {
                    scope: "*".into(),
                    pii: "redact".into(),
                    secrets: "block".into(),
                    injection: "block".into(),
                    arguments: "log".into(),
                    entities: strings(&["PERSON_NAME: redact"]),
                    tools: Vec::new(),
                }],
                hooks: vec![HookFacts {
                    scope: "github".into(),
                    host: "hooks.example.com".into(),
                    fail: "closed".into(),
                    timeout_ms: 2000,
                }],
                stats: FilterStats {
                    answers_filtered: 30,
                    redacted: 20,
                    masked: 3,
                    blocked: 2,
                    logged: 5,
                    injections_blocked: 1,
                    injections_flagged: 0,
                    injections_logged: 0,
                    arguments_blocked: 1,
                },
                by_type: vec![KindCount {
                    kind: "EMAIL".into(),
                    count: 9,
                }],
                quarantined: vec![Quarantined {
                    server: "files".into(),
                    tool: "delete_everything".into(),
                    kind: "changed".into(),
                    since: "2026-11-23T00:00:00Z".into(),
                }],
            },
            risks: vec![Risk {
                id: "no_scim",
                severity: "medium",
                title: "No SCIM provisioning".into(),
                detail: "Nobody is deprovisioned automatically.".into(),
                fix: "Connect the IdP's provisioning to /scim/v2.".into(),
                subjects: strings(&["tenant"]),
            }],
            signals: vec![SignalFacts {
                kind: "denial_burst".into(),
                subject: "user:alice@acme.example".into(),
                severity: "high".into(),
                at: "2026-11-24T12:00:00Z".into(),
                summary: "40 denials in 10 minutes".into(),
                records_href: "/admin/audit?user=alice".into(),
            }],
        }
    }

    fn sample_dashboard() -> Dashboard {
        let day = |date: &str, calls: i64| DayPoint {
            date: date.into(),
            calls,
            denials: calls / 4,
            redactions: calls / 3,
            injection_blocks: 1,
            active_users: calls / 6,
        };
        Dashboard {
            days: 3,
            series: vec![
                day("2026-11-22", 0),
                day("2026-11-23", 30),
                day("2026-11-24", 12),
            ],
            top_servers: vec![KindCount {
                kind: "github".into(),
                count: 42,
            }],
            top_tools: vec![KindCount {
                kind: HOSTILE.into(),
                count: 7,
            }],
            open_risks: 3,
            high_risks: 1,
            signals: sample().signals,
        }
    }

    #[test]
    fn document_has_every_section_and_the_diagram() {
        let doc = document(&sample());
        assert!(doc.starts_with("<!doctype html>"));
        assert!(doc.contains("<meta charset=\"utf-8\">"));
        assert!(doc.contains("<title>Security Review Pack — Acme &amp; Co</title>"));
        assert!(doc.contains("id=\"pack-cover\""));
        for (id, _) in SECTIONS {
            assert!(
                doc.contains(&format!("<section id=\"{id}\"")),
                "missing {id}"
            );
            assert!(
                doc.contains(&format!("href=\"#{id}\"")),
                "no contents entry for {id}"
            );
        }
        for id in [
            "pack-diagram",
            "pack-server-github",
            "pack-server-files",
            "risk-no_scim",
            "pack-volume-chart",
            "pack-filter-chart",
        ] {
            assert!(doc.contains(&format!("id=\"{id}\"")), "missing {id}");
        }
        assert!(doc.contains("<h2>1. Architecture</h2>"));
        assert!(doc.contains("<h2>8. Open risks</h2>"));
        assert!(doc.contains("How to fix:"));
        assert!(doc.contains("Not yet written by the tenant admin."));
        assert!(doc.contains("break-before: page"));
        assert!(!doc.contains("pack-no-risks"));
    }

    #[test]
    fn hostile_strings_appear_only_escaped() {
        let p = sample();
        let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;";
        for html in [
            document(&p),
            fragment(&p),
            architecture_svg(&p),
            dashboard(&sample_dashboard()),
        ] {
            assert!(!html.contains("<script"));
            assert!(!html.contains("<b>"));
            assert!(html.contains(escaped));
        }
    }

    #[test]
    fn fragment_is_not_a_document() {
        let f = fragment(&sample());
        assert!(f.starts_with("<div class=\"pack\">\n<style>"));
        assert!(!f.contains("<html"));
        assert!(!f.contains("<head>") && !f.contains("<head "));
        assert!(!f.contains("<body"));
        assert!(f.contains("id=\"pack-risks\""));
    }

    #[test]
    fn svg_elements_are_balanced() {
        let p = sample();
        for html in [document(&p), fragment(&p), dashboard(&sample_dashboard())] {
            let open = html.matches("<svg").count();
            assert!(open >= 3);
            assert_eq!(open, html.matches("</svg>").count());
        }
    }

    #[test]
    fn output_is_deterministic() {
        let p = sample();
        assert_eq!(document(&p), document(&p));
        assert_eq!(fragment(&p), fragment(&p));
        assert_eq!(architecture_svg(&p), architecture_svg(&p));
        let d = sample_dashboard();
        assert_eq!(dashboard(&d), dashboard(&d));
    }

    #[test]
    fn dashboard_has_every_chart_and_list() {
        let html = dashboard(&sample_dashboard());
        assert!(html.starts_with("<div class=\"pack dashboard\" id=\"dashboard\">"));
        for id in [
            "dash-chart-calls",
            "dash-chart-denials",
            "dash-chart-redactions",
            "dash-chart-injections",
            "dash-chart-users",
            "dash-top-servers",
            "dash-top-tools",
            "dash-signals",
            "dash-open-risks",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "missing {id}");
        }
        assert!(html.contains("href=\"/admin/review-pack\">3 open risks (1 high)</a>"));
        assert!(html.contains("<title>2026-11-24: 12 calls</title>"));
        assert!(html.contains("<a href=\"/admin/audit?user=alice\">records</a>"));
    }

    #[test]
    fn empty_dashboard_says_so() {
        let d = Dashboard {
            days: 30,
            series: Vec::new(),
            top_servers: Vec::new(),
            top_tools: Vec::new(),
            open_risks: 0,
            high_risks: 0,
            signals: Vec::new(),
        };
        let html = dashboard(&d);
        assert!(html.contains("No anomaly signals."));
        assert!(html.contains("id=\"dash-chart-users\""));
        assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    }

    #[test]
    fn empty_pack_says_so() {
        let mut p = sample();
        p.servers.clear();
        p.risks.clear();
        p.signals.clear();
        p.architecture.clients.clear();
        p.architecture.upstreams.clear();
        p.audit.volume_by_month.clear();
        p.access.idp = None;
        let doc = document(&p);
        assert!(doc.contains("No servers are configured."));
        assert!(doc.contains("<p id=\"pack-no-risks\">No open risks were found.</p>"));
        assert!(doc.contains("No anomaly signals in the period."));
        assert!(doc.contains("No records yet."));
        assert!(!doc.contains("pack-volume-chart"));
        assert!(doc.contains("No identity provider: users sign in with tokens only."));
        assert!(doc.contains("id=\"pack-diagram\""));
        assert!(doc.contains("No upstream servers"));
    }

    #[test]
    fn broken_chain_is_shown_in_red() {
        let mut p = sample();
        p.audit.chain = Chain {
            verified: false,
            records_checked: 10,
            error: Some("record 7 <hash> mismatch".into()),
        };
        let doc = document(&p);
        assert!(doc.contains("class=\"error\" id=\"pack-chain\""));
        assert!(doc.contains("record 7 &lt;hash&gt; mismatch"));
    }

    #[test]
    fn clip_counts_characters() {
        let long = "é".repeat(40);
        let cut = clip(&long);
        assert_eq!(cut.chars().count(), CLIP);
        assert!(cut.ends_with('…'));
        assert_eq!(clip("short"), "short");
        assert_eq!(clip(&"x".repeat(CLIP)), "x".repeat(CLIP));
    }

    #[test]
    fn esc_covers_every_special_character() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn links_stay_on_this_origin() {
        assert_eq!(href("/admin/audit?x=1&y=2"), "/admin/audit?x=1&amp;y=2");
        assert_eq!(href("javascript:alert(1)"), "#");
        assert_eq!(href("//evil.example"), "#");
        assert_eq!(href("/\\evil.example"), "#");
    }

    #[test]
    fn every_css_rule_is_scoped() {
        for line in CSS.lines() {
            let Some((selectors, _)) = line.split_once('{') else {
                continue;
            };
            let selectors = selectors.trim();
            if selectors.starts_with('@') {
                continue;
            }
            for selector in selectors.split(',') {
                assert!(
                    selector.trim().starts_with(".pack"),
                    "unscoped selector: {selector}"
                );
            }
        }
    }
}
