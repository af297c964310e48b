//! The tenant admin console at `/admin`: sign-in, the navigation shell, the overview and settings
//! pages, and the placeholders that later capabilities fill.

use crate::api::{self, ConsoleState, RenameTenant, SignIn, SignOut, TenantConsole};
use crate::{ErrorBox, FlashBox, SecretInput};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

/// One console section: its path segment, title, and what it is for.
pub(crate) struct Section {
    pub slug: &'static str,
    pub title: &'static str,
    pub purpose: &'static str,
}

pub(crate) const SECTIONS: &[Section] = &[
    Section { slug: "servers", title: "Servers", purpose: "Upstream MCP servers: transports, connection tests, discovered tools, resources and prompts." },
    Section { slug: "registries", title: "Registries", purpose: "Named registries of servers, mapped to identity-provider groups: who can reach what." },
    Section { slug: "groups", title: "Users & groups", purpose: "Users and groups from single sign-on and SCIM provisioning, and their effective access." },
    Section { slug: "policies", title: "Tool policies", purpose: "Allow and deny rules per group by tool name and annotations, with a simulator that explains each decision." },
    Section { slug: "agents", title: "Agents", purpose: "Agent principals with explicit tool sets, their tokens, and their blast radius." },
    Section { slug: "audit", title: "Audit log", purpose: "Every MCP request and admin action: search, detail, export and SIEM streaming." },
    Section { slug: "filters", title: "Filters", purpose: "PII and secret redaction, prompt-injection detection and tool-definition pinning." },
    Section { slug: "credentials", title: "Credentials", purpose: "The vault: upstream OAuth connections, API keys, key rotation and one-step revocation." },
    Section { slug: "review-pack", title: "Review pack", purpose: "The generated Security Review Pack for this tenant." },
    Section { slug: "settings", title: "Settings", purpose: "Tenant settings." },
];

#[component]
pub fn AdminPage() -> impl IntoView {
    let sign_in = ServerAction::<SignIn>::new();
    let sign_out = ServerAction::<SignOut>::new();
    let rename = ServerAction::<RenameTenant>::new();
    // Refetched after every form so that the page shows the new state (with JavaScript); a
    // plain form post reloads the page instead.
    let state = Resource::new(
        move || {
            (
                sign_in.version().get(),
                sign_out.version().get(),
                rename.version().get(),
            )
        },
        |_| api::load_console(),
    );
    let params = use_params_map();
    let section = move || params.read().get("section").unwrap_or_default();

    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match state.await {
                    Ok(ConsoleState { csrf, flash, console: Some(console) }) => view! {
                        <ConsoleLayout console csrf flash section=section() sign_out rename/>
                    }.into_any(),
                    Ok(ConsoleState { csrf, flash, console: None }) => view! {
                        <SignInForm csrf flash sign_in/>
                    }.into_any(),
                    Err(e) => view! { <main class="centered"><ErrorBox message=e.to_string()/></main> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn SignInForm(
    csrf: String,
    flash: Option<api::Flash>,
    sign_in: ServerAction<SignIn>,
) -> impl IntoView {
    view! {
        <Title text="Sign in · Portcullis"/>
        <main class="centered">
            <section class="card narrow">
                <p class="brand">"Portcullis"</p>
                <h1>"Administrator sign-in"</h1>
                <FlashBox flash/>
                <ActionForm action=sign_in attr:id="sign-in-form">
                    <input type="hidden" name="csrf" value=csrf/>
                    <SecretInput name="token" id="admin-token" label="Admin token"/>
                    <p class="hint">
                        "The token printed when the tenant was created ("
                        <code>"portcullis tenant create"</code>
                        "). Single sign-on replaces it for day-to-day use."
                    </p>
                    <button type="submit" class="primary" id="sign-in-submit">"Sign in"</button>
                </ActionForm>
            </section>
        </main>
    }
}

#[component]
fn ConsoleLayout(
    console: TenantConsole,
    csrf: String,
    flash: Option<api::Flash>,
    section: String,
    sign_out: ServerAction<SignOut>,
    rename: ServerAction<RenameTenant>,
) -> impl IntoView {
    let nav_open = RwSignal::new(false);
    let current = SECTIONS.iter().find(|s| s.slug == section);
    let title = current.map(|s| s.title).unwrap_or("Overview");
    let body = match (section.as_str(), current) {
        ("", _) => view! { <Overview console=console.clone()/> }.into_any(),
        ("settings", _) => {
            view! { <Settings console=console.clone() csrf=csrf.clone() rename/> }.into_any()
        }
        (_, Some(s)) => view! { <Placeholder title=s.title purpose=s.purpose/> }.into_any(),
        (_, None) => {
            view! { <ErrorBox message="There is no such page in the console.".to_string()/> }
                .into_any()
        }
    };
    let nav_link = move |slug: &'static str, label: &'static str| {
        let href = if slug.is_empty() {
            "/admin".to_string()
        } else {
            format!("/admin/{slug}")
        };
        let active = slug == section;
        view! {
            <li>
                <a href=href aria-current=if active { Some("page") } else { None } class:active=active>
                    {label}
                </a>
            </li>
        }
    };
    view! {
        <Title text=format!("{title} · {} · Portcullis", console.tenant_name)/>
        <div class="console" class:nav-open=move || nav_open.get()>
            <header class="topbar">
                <button
                    type="button"
                    id="nav-toggle"
                    class="ghost nav-toggle js-only"
                    aria-controls="console-nav"
                    aria-expanded=move || nav_open.get().to_string()
                    on:click=move |_| nav_open.update(|o| *o = !*o)
                >
                    "Menu"
                </button>
                <span class="brand">"Portcullis"</span>
                <span class="tenant-name" id="tenant-name">{console.tenant_name.clone()}</span>
                <span class="spacer"></span>
                <span class="who" id="signed-in-as">{console.user_email.clone()}</span>
                <ActionForm action=sign_out attr:class="inline">
                    <input type="hidden" name="csrf" value=csrf.clone()/>
                    <button type="submit" class="ghost" id="sign-out">"Sign out"</button>
                </ActionForm>
            </header>
            <nav id="console-nav" class="sidenav" aria-label="Console">
                <ul>
                    {nav_link("", "Overview")}
                    {SECTIONS.iter().map(|s| nav_link(s.slug, s.title)).collect_view()}
                </ul>
            </nav>
            <main class="content" id="content">
                <h1>{title}</h1>
                <FlashBox flash/>
                {body}
            </main>
        </div>
    }
}

#[component]
fn Overview(console: TenantConsole) -> impl IntoView {
    view! {
        <section class="grid">
            <div class="card stat">
                <span class="label">"Users"</span>
                <span class="value" id="user-count">{console.user_count}</span>
            </div>
            <div class="card stat">
                <span class="label">"Administrators"</span>
                <span class="value" id="admin-count">{console.admin_count}</span>
            </div>
            <div class="card stat">
                <span class="label">"MCP servers"</span>
                <span class="value">"0"</span>
            </div>
        </section>
        <section class="card">
            <h2>"Tenant"</h2>
            <dl class="facts">
                <dt>"Name"</dt><dd id="overview-name">{console.tenant_name}</dd>
                <dt>"Slug"</dt><dd><code>{console.tenant_slug}</code></dd>
                <dt>"Created"</dt><dd>{console.tenant_created_at}</dd>
                <dt>"User portal"</dt><dd><a href=console.portal_url.clone()>{console.portal_url.clone()}</a></dd>
                <dt>"Gateway base URL"</dt><dd><code>{console.gateway_base_url}</code></dd>
            </dl>
        </section>
        <section class="card">
            <h2>"Secure by default"</h2>
            <p>
                "A new tenant grants nothing: a server becomes reachable only once a registry maps it "
                "to a group. Add servers, then registries, then map them to your identity provider's groups."
            </p>
        </section>
    }
}

#[component]
fn Settings(
    console: TenantConsole,
    csrf: String,
    rename: ServerAction<RenameTenant>,
) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"Display name"</h2>
            <ActionForm action=rename attr:id="rename-form">
                <input type="hidden" name="csrf" value=csrf/>
                <label for="tenant-display-name">"Name shown to users and admins"</label>
                <input
                    type="text"
                    id="tenant-display-name"
                    name="name"
                    required
                    maxlength="100"
                    value=console.tenant_name
                />
                <button type="submit" class="primary" id="rename-submit">"Save"</button>
            </ActionForm>
        </section>
    }
}

#[component]
fn Placeholder(title: &'static str, purpose: &'static str) -> impl IntoView {
    view! {
        <section class="card placeholder">
            <p>{purpose}</p>
            <p class="hint">{format!("{title} is not available in this release yet.")}</p>
        </section>
    }
}
