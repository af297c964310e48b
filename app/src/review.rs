//! The review pack page (`/admin/review-pack`) and the console home's dashboard.
//!
//! Both show HTML the server rendered from live data (`server/src/review/html.rs`, which
//! escapes every value): the page is the same document the HTML and PDF downloads carry, so
//! what an admin reviews on screen is exactly what they hand over. The page's own forms (the
//! admin's statement for section 6, a tool's class) post `audit_action` and reload.

use crate::api::{AuditAction, ReviewPage};
use crate::audit::FormHead;
use crate::ErrorBox;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

const PERIODS: [u32; 5] = [7, 30, 90, 180, 365];

#[component]
pub fn ReviewSection(csrf: String, action: ServerAction<AuditAction>) -> impl IntoView {
    let query = use_query_map();
    let days = move || {
        query
            .read()
            .get("days")
            .and_then(|d| d.parse::<u32>().ok())
            .unwrap_or(30)
    };
    let data = Resource::new(
        move || (days(), action.version().get()),
        |(d, _)| crate::api::load_review(d),
    );
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Building the review pack…"</p> }>
            {move || {
                let csrf = csrf.clone();
                Suspend::new(async move {
                    match data.await {
                        Ok(page) => view! { <ReviewBody page csrf action/> }.into_any(),
                        Err(e) => view! { <ErrorBox message=e.to_string()/> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}

#[component]
fn ReviewBody(page: ReviewPage, csrf: String, action: ServerAction<AuditAction>) -> impl IntoView {
    let days = page.days;
    let link =
        move |format: &str| format!("/admin/review-pack/download?format={format}&days={days}");
    let csrf2 = csrf.clone();
    let regulation = page.regulation.clone();
    view! {
        <section class="card" id="review-actions">
            <h2>"Security Review Pack"</h2>
            <p id="review-summary">{format!(
                "Generated {} from live data, covering the last {} days: {} open risk{}.",
                page.generated_at, days, page.risks, if page.risks == 1 { "" } else { "s" }
            )}</p>
            <form method="get" action="/admin/review-pack" class="inline" id="review-period-form">
                <label for="review-days">"Period"</label>
                <select name="days" id="review-days">
                    {PERIODS.iter().map(|p| view! {
                        <option value=p.to_string() selected=*p == days>{format!("last {p} days")}</option>
                    }).collect_view()}
                </select>
                <button type="submit" id="review-period-apply">"Show"</button>
            </form>
            <p class="downloads">
                <a rel="external" download class="button primary" id="review-download-pdf" href=link("pdf")>"Download PDF"</a>
                " "
                <a rel="external" download class="button" id="review-download-html" href=link("html")>"Download HTML"</a>
                " "
                <a rel="external" download class="button" id="review-download-json" href=link("json")>"Download JSON"</a>
            </p>
            <p class="hint">"Every pack is generated afresh and recorded in the audit log (review_pack.generate)."</p>
        </section>
        <section class="card" id="review-statement">
            <h2>"Your statement (section 6)"</h2>
            <p class="hint">
                "Where your MCP clients send tool output (which LLM providers, through which accounts or gateways) "
                "and the data processing agreements in place. Kept with the tenant and shown in every pack."
            </p>
            <ActionForm action attr:class="stacked" attr:id="review-statement-form">
                <FormHead csrf=csrf.clone() op="review_statement"/>
                <label for="review-llm">"LLM routing"</label>
                <textarea name="form[llm_routing]" id="review-llm" rows="4">{page.llm_routing.clone()}</textarea>
                <label for="review-dpa">"Data processing agreements"</label>
                <textarea name="form[data_processing]" id="review-dpa" rows="4">{page.data_processing.clone()}</textarea>
                <label for="review-regulation">"Regulation the audit retention must meet"</label>
                <select name="form[regulation]" id="review-regulation">
                    <option value="" selected=regulation.is_empty()>"None selected"</option>
                    <option value="hipaa" selected=regulation == "hipaa">"HIPAA (6 years)"</option>
                    <option value="pci_dss" selected=regulation == "pci_dss">"PCI DSS (1 year)"</option>
                    <option value="gdpr" selected=regulation == "gdpr">"GDPR (180 days)"</option>
                </select>
                <button type="submit" class="primary" id="review-statement-save">"Save statement"</button>
            </ActionForm>
        </section>
        <section class="card" id="review-classes">
            <h2>"Tool classes"</h2>
            <p class="hint">
                "A tool's class comes from its annotations; where a server declares none, MCP's worst case "
                "(destructive) applies. Set the class yourself where you know better: the access policy and the pack use it."
            </p>
            <ActionForm action attr:class="inline" attr:id="review-class-form">
                <FormHead csrf=csrf2 op="tool_class"/>
                <label for="review-class-tool">"Tool"</label>
                <select name="form[tool]" id="review-class-tool">
                    {page.tools.iter().map(|(server, tool, class, source)| view! {
                        <option value=format!("{server}/{tool}")>{format!("{server}/{tool} — {class} ({source})")}</option>
                    }).collect_view()}
                </select>
                <label for="review-class">"Class"</label>
                <select name="form[class]" id="review-class">
                    <option value="read_only">"read-only"</option>
                    <option value="writing">"writing"</option>
                    <option value="destructive">"destructive"</option>
                    <option value="">"as declared (clear)"</option>
                </select>
                <button type="submit" id="review-class-save">"Set class"</button>
            </ActionForm>
        </section>
        <div id="review-pack" inner_html=page.html></div>
    }
}

/// The console home's dashboard: calls, denials, redactions, injection blocks and active users
/// per day, top servers and tools, open risks and recent anomaly signals.
#[component]
pub fn Dashboard() -> impl IntoView {
    let data = Resource::new(|| (), |_| crate::api::load_dashboard());
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading the dashboard…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(html) => view! { <div id="dashboard-host" inner_html=html></div> }.into_any(),
                    Err(e) => view! { <ErrorBox message=e.to_string()/> }.into_any(),
                }
            })}
        </Suspense>
    }
}
