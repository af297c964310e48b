//! The tenant admin console at `/admin`: sign-in, the navigation shell, the overview and settings
//! pages, and the placeholders that later capabilities fill.

use crate::api::{
    self, AddServer, ConsoleState, DeleteServer, DiscoveryView, IssueToken, IssuedToken,
    RenameTenant, ServerSummary, SignIn, SignOut, TenantConsole, TestServer,
};
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
    Section { slug: "identity", title: "Identity provider", purpose: "Single sign-on (OpenID Connect) and SCIM provisioning." },
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
    let actions = ConsoleActions {
        sign_out: ServerAction::new(),
        rename: ServerAction::new(),
        add_server: ServerAction::new(),
        delete_server: ServerAction::new(),
        issue_token: ServerAction::new(),
        test_server: ServerAction::new(),
        identity: ServerAction::new(),
        audit: ServerAction::new(),
    };
    let params = use_params_map();
    let section = move || params.read().get("section").unwrap_or_default();
    // One resource for the whole page, created once (not inside a reactive closure, where it
    // would be created and fetched again on every re-run) and refetched after every form, so
    // that the page shows the new state with JavaScript; a plain form post reloads the page
    // instead. Its source must not read the route: params settle while the server renders, and
    // a resource refetched mid-render can leave the render waiting forever.
    let state = Resource::new(
        move || (sign_in.version().get(), actions.version()),
        |_| api::load_console(),
    );

    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match state.await {
                    Ok(ConsoleState { csrf, flash, console: Some(console), servers, issued_token, discovery, identity, secret, simulation }) => view! {
                        <ConsoleLayout console csrf flash section=section() actions servers issued_token discovery identity secret simulation/>
                    }.into_any(),
                    Ok(ConsoleState { csrf, flash, console: None, .. }) => view! {
                        <SignInForm csrf flash sign_in/>
                    }.into_any(),
                    Err(e) => view! { <main class="centered"><ErrorBox message=e.to_string()/></main> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The console's forms (besides sign-in); the page state refetches when any completes.
#[derive(Clone, Copy)]
struct ConsoleActions {
    sign_out: ServerAction<SignOut>,
    rename: ServerAction<RenameTenant>,
    add_server: ServerAction<AddServer>,
    delete_server: ServerAction<DeleteServer>,
    issue_token: ServerAction<IssueToken>,
    test_server: ServerAction<TestServer>,
    identity: ServerAction<api::IdentityAction>,
    audit: ServerAction<api::AuditAction>,
}

impl ConsoleActions {
    fn version(&self) -> [usize; 8] {
        [
            self.audit.version().get(),
            self.identity.version().get(),
            self.sign_out.version().get(),
            self.rename.version().get(),
            self.add_server.version().get(),
            self.delete_server.version().get(),
            self.issue_token.version().get(),
            self.test_server.version().get(),
        ]
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
    actions: ConsoleActions,
    servers: Vec<ServerSummary>,
    issued_token: Option<IssuedToken>,
    discovery: Option<DiscoveryView>,
    identity: Option<api::IdentityView>,
    secret: Option<String>,
    simulation: Option<api::SimulationView>,
) -> impl IntoView {
    let ConsoleActions {
        sign_out,
        rename,
        add_server,
        delete_server,
        issue_token,
        test_server,
        identity: identity_action,
        audit: audit_action,
    } = actions;
    let identity = identity.unwrap_or_else(|| api::IdentityView {
        sso: None,
        redirect_uri: String::new(),
        scim_enabled: false,
        scim_base_url: String::new(),
        users: Vec::new(),
        groups: Vec::new(),
        registries: Vec::new(),
        matrix: Default::default(),
        limits: Vec::new(),
        approval_rules: Vec::new(),
        approvals: Vec::new(),
        agents: Vec::new(),
        credentials: Default::default(),
        filters: Default::default(),
    });
    let nav_open = RwSignal::new(false);
    let current = SECTIONS.iter().find(|s| s.slug == section);
    let title = current.map(|s| s.title).unwrap_or("Overview");
    let body = match (section.as_str(), current) {
        ("", _) => view! { <Overview console=console.clone()/> }.into_any(),
        ("settings", _) => {
            view! { <Settings console=console.clone() csrf=csrf.clone() rename/> }.into_any()
        }
        ("servers", _) => view! {
            <Servers servers csrf=csrf.clone() add_server delete_server test_server discovery identity_action/>
        }
        .into_any(),
        ("identity", _) => view! {
            <crate::identity::IdentitySettings identity=identity.clone() csrf=csrf.clone() action=identity_action secret/>
        }
        .into_any(),
        ("groups", _) => view! {
            <crate::identity::UsersAndGroups identity=identity.clone() csrf=csrf.clone() action=identity_action/>
            <Tokens csrf=csrf.clone() issue_token issued_token/>
        }
        .into_any(),
        ("registries", _) => view! {
            <crate::identity::Registries identity=identity.clone() csrf=csrf.clone() action=identity_action/>
        }
        .into_any(),
        ("policies", _) => view! {
            <crate::identity::Simulator csrf=csrf.clone() action=identity_action simulation/>
            <crate::identity::Approvals rules=identity.approval_rules.clone() approvals=identity.approvals.clone() csrf=csrf.clone() action=identity_action/>
            <crate::identity::Limits limits=identity.limits.clone() csrf=csrf.clone() action=identity_action/>
        }
        .into_any(),
        ("agents", _) => {
            let users: Vec<String> = identity
                .users
                .iter()
                .filter(|u| u.active)
                .map(|u| u.email.clone())
                .collect();
            let slugs: Vec<String> = servers.iter().map(|s| s.slug.clone()).collect();
            view! {
                <crate::agents::Agents agents=identity.agents.clone() users servers=slugs csrf=csrf.clone() action=identity_action secret/>
            }
            .into_any()
        }
        ("filters", _) => view! {
            <crate::filters::Filters view=identity.filters.clone() csrf=csrf.clone() action=identity_action result=simulation secret/>
        }
        .into_any(),
        ("credentials", _) => view! {
            <crate::credentials::Credentials view=identity.credentials.clone() csrf=csrf.clone() action=identity_action/>
        }
        .into_any(),
        ("audit", _) => view! {
            <crate::audit::AuditSection csrf=csrf.clone() action=audit_action/>
        }
        .into_any(),
        ("review-pack", _) => view! {
            <crate::review::ReviewSection csrf=csrf.clone() action=audit_action/>
        }
        .into_any(),
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
        <crate::review::Dashboard/>
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
                <span class="value" id="server-count">{console.server_count}</span>
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

#[component]
fn Servers(
    servers: Vec<ServerSummary>,
    csrf: String,
    add_server: ServerAction<AddServer>,
    delete_server: ServerAction<DeleteServer>,
    test_server: ServerAction<TestServer>,
    discovery: Option<DiscoveryView>,
    identity_action: ServerAction<api::IdentityAction>,
) -> impl IntoView {
    let empty = servers.is_empty();
    let form_ref = NodeRef::<leptos::html::Form>::new();
    // After a server was added (with JavaScript, the page does not reload) start the form afresh.
    Effect::new(move |_| {
        if matches!(add_server.value().get(), Some(Ok(true))) {
            if let Some(form) = form_ref.get() {
                form.reset();
            }
        }
    });
    let rows = servers
        .into_iter()
        .map(|s| {
            let csrf = csrf.clone();
            let csrf_test = csrf.clone();
            let csrf_catalog = csrf.clone();
            let (slug_delete, slug_test, slug_catalog) = (s.slug.clone(), s.slug.clone(), s.slug.clone());
            let (delete_id, test_id) = (format!("delete-{}", s.slug), format!("test-{}", s.slug));
            let catalog_id = format!("catalog-{}", s.slug);
            view! {
                <tr>
                    <td><code>{s.slug.clone()}</code></td>
                    <td>{s.name}<br/><span class="hint">{s.description}</span></td>
                    <td>{s.transport}</td>
                    <td><code>{s.target}</code></td>
                    <td><code class="endpoint">{s.endpoint}</code></td>
                    <td>
                        <ActionForm action=delete_server attr:class="inline">
                            <input type="hidden" name="csrf" value=csrf/>
                            <input type="hidden" name="slug" value=slug_delete/>
                            <button type="submit" class="ghost danger" id=delete_id>"Remove"</button>
                        </ActionForm>
                        <ActionForm action=test_server attr:class="inline">
                            <input type="hidden" name="csrf" value=csrf_test/>
                            <input type="hidden" name="slug" value=slug_test/>
                            <button type="submit" class="ghost" id=test_id>"Test connection"</button>
                        </ActionForm>
                        <ActionForm action=identity_action attr:class="inline">
                            <input type="hidden" name="csrf" value=csrf_catalog/>
                            <input type="hidden" name="form[op]" value="record_catalog"/>
                            <input type="hidden" name="form[slug]" value=slug_catalog/>
                            <button type="submit" class="ghost" id=catalog_id
                                title="Record the server's current tools and their annotations as reviewed: policy trusts these annotations, and a server that denies new tools allows only these.">
                                "Review tools"
                            </button>
                        </ActionForm>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        {discovery.map(|d| view! { <DiscoveryCard d/> })}
        <section class="card">
            {if empty {
                view! { <p id="no-servers">"No servers yet. Add the first one below."</p> }.into_any()
            } else {
                view! {
                    <table class="table" id="server-table">
                        <thead><tr><th>"Slug"</th><th>"Name"</th><th>"Transport"</th><th>"Upstream"</th><th>"Gateway endpoint"</th><th></th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section class="card">
            <h2>"Add a server"</h2>
            <ActionForm action=add_server node_ref=form_ref attr:id="add-server-form" attr:class="stacked">
                <input type="hidden" name="csrf" value=csrf/>
                <label for="server-slug">"Slug (the endpoint is /mcp/slug)"</label>
                <input type="text" id="server-slug" name="form[slug]" required maxlength="63"/>
                <label for="server-name">"Name"</label>
                <input type="text" id="server-name" name="form[name]" maxlength="100"/>
                <label for="server-description">"Description"</label>
                <input type="text" id="server-description" name="form[description]" maxlength="1000"/>
                <label for="server-transport">"Transport"</label>
                <select id="server-transport" name="form[transport]">
                    <option value="streamable_http">"Streamable HTTP (remote)"</option>
                    <option value="sse">"HTTP + SSE (legacy remote)"</option>
                    <option value="stdio">"stdio (a local command the gateway runs)"</option>
                </select>
                <label for="server-url">"URL (remote transports)"</label>
                <input type="text" id="server-url" name="form[url]" placeholder="https://mcp.example.com/mcp"/>
                <label for="server-command">"Command line (stdio)"</label>
                <input type="text" id="server-command" name="form[command_line]" placeholder="npx -y @modelcontextprotocol/server-everything"/>
                <label for="server-instance">"stdio instances"</label>
                <select id="server-instance" name="form[instance]">
                    <option value="shared">"One process shared by all users"</option>
                    <option value="per_user">"One process per user"</option>
                </select>
                <label class="check" for="server-sandbox">
                    <input type="checkbox" id="server-sandbox" name="form[sandbox]" value="on"/>
                    " Run in a sandbox (bubblewrap: read-only system, private /tmp, no access to the data directory)"
                </label>
                <button type="submit" class="primary" id="add-server-submit">"Add server"</button>
            </ActionForm>
        </section>
    }
}

#[component]
fn Tokens(
    csrf: String,
    issue_token: ServerAction<IssueToken>,
    issued_token: Option<IssuedToken>,
) -> impl IntoView {
    let form_ref = NodeRef::<leptos::html::Form>::new();
    Effect::new(move |_| {
        if matches!(issue_token.value().get(), Some(Ok(true))) {
            if let Some(form) = form_ref.get() {
                form.reset();
            }
        }
    });
    view! {
        <section class="card">
            <h2>"Gateway tokens"</h2>
            <p class="hint">
                "MCP clients authenticate to the gateway with a user's bearer token. "
                "The user is created if they do not exist yet."
            </p>
            {issued_token.map(|t| view! {
                <div class="created" id="issued-token">
                    <p>"Token for " <strong>{t.user_email}</strong> " (shown only once):"</p>
                    <p><code class="secret" id="issued-token-value">{t.token}</code></p>
                </div>
            })}
            <ActionForm action=issue_token node_ref=form_ref attr:id="issue-token-form" attr:class="stacked">
                <input type="hidden" name="csrf" value=csrf/>
                <label for="token-user">"User's email"</label>
                <input type="email" id="token-user" name="user_email" required/>
                <label for="token-label">"Label (what it is for)"</label>
                <input type="text" id="token-label" name="label" maxlength="100" placeholder="laptop"/>
                <button type="submit" class="primary" id="issue-token-submit">"Issue token"</button>
            </ActionForm>
        </section>
    }
}

#[component]
fn DiscoveryCard(d: DiscoveryView) -> impl IntoView {
    let hint = |v: Option<bool>, yes: &'static str| match v {
        Some(true) => yes,
        Some(false) => "no",
        None => "–",
    };
    view! {
        <section class="card" id="discovery">
            <h2>{format!("Test connection: {}", d.slug)}</h2>
            {match d.error {
                Some(e) => view! { <p class="flash flash-error" id="discovery-error">{e}</p> }.into_any(),
                None => view! {
                    <p id="discovery-ok">
                        "Connected to " <strong>{d.server}</strong> " (protocol " {d.protocol_version} ")."
                    </p>
                    <h3>"Tools"</h3>
                    <table class="table" id="discovery-tools">
                        <thead><tr><th>"Name"</th><th>"Description"</th><th>"Read-only"</th><th>"Destructive"</th><th>"Idempotent"</th><th>"Open world"</th></tr></thead>
                        <tbody>
                            {d.tools.into_iter().map(|t| view! {
                                <tr>
                                    <td><code>{t.name}</code></td>
                                    <td>{t.description}</td>
                                    <td>{hint(t.read_only, "read-only")}</td>
                                    <td>{hint(t.destructive, "destructive")}</td>
                                    <td>{hint(t.idempotent, "idempotent")}</td>
                                    <td>{hint(t.open_world, "open world")}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    <h3>"Resources"</h3>
                    <ul id="discovery-resources">
                        {d.resources.into_iter().map(|(uri, name)| view! { <li><code>{uri}</code>" "{name}</li> }).collect_view()}
                    </ul>
                    <h3>"Prompts"</h3>
                    <ul id="discovery-prompts">
                        {d.prompts.into_iter().map(|(name, desc)| view! { <li><code>{name}</code>" "{desc}</li> }).collect_view()}
                    </ul>
                    <details>
                        <summary>"Capabilities"</summary>
                        <pre>{d.capabilities}</pre>
                    </details>
                }.into_any(),
            }}
        </section>
    }
}
