//! The platform console on the bare base domain: the operator signs in with the platform admin
//! token, lists tenants and creates new ones.

use crate::api::{PlatformCreateTenant, PlatformSignIn, PlatformState, SignOut};
use crate::{FlashBox, SecretInput};
use leptos::prelude::*;
use leptos_meta::Title;

/// The platform console's forms; `Home` refetches its state whenever one completes.
#[derive(Clone, Copy)]
pub struct PlatformActions {
    pub sign_in: ServerAction<PlatformSignIn>,
    pub sign_out: ServerAction<SignOut>,
    pub create: ServerAction<PlatformCreateTenant>,
}

impl Default for PlatformActions {
    fn default() -> Self {
        Self::new()
    }
}

impl PlatformActions {
    pub fn new() -> Self {
        Self {
            sign_in: ServerAction::new(),
            sign_out: ServerAction::new(),
            create: ServerAction::new(),
        }
    }

    /// Changes whenever any of the forms has completed (tracked).
    pub fn version(&self) -> (usize, usize, usize) {
        (
            self.sign_in.version().get(),
            self.sign_out.version().get(),
            self.create.version().get(),
        )
    }
}

#[component]
pub fn PlatformConsole(state: PlatformState, actions: PlatformActions) -> impl IntoView {
    let PlatformActions {
        sign_in,
        sign_out,
        create,
    } = actions;
    view! {
        <Title text="Platform · Portcullis"/>
        {if state.signed_in {
            view! { <Tenants state sign_out create/> }.into_any()
        } else {
            view! {
                <main class="centered">
                    <section class="card narrow">
                        <p class="brand">"Portcullis"</p>
                        <h1>"Platform console"</h1>
                        <FlashBox flash=state.flash/>
                        <ActionForm action=sign_in attr:id="platform-sign-in-form">
                            <input type="hidden" name="csrf" value=state.csrf/>
                            <SecretInput name="token" id="platform-token" label="Platform admin token"/>
                            <p class="hint">"Printed by " <code>"portcullis serve"</code> " on its first start."</p>
                            <button type="submit" class="primary">"Sign in"</button>
                        </ActionForm>
                    </section>
                </main>
            }.into_any()
        }}
    }
}

#[component]
fn Tenants(
    state: PlatformState,
    sign_out: ServerAction<SignOut>,
    create: ServerAction<PlatformCreateTenant>,
) -> impl IntoView {
    let PlatformState {
        csrf,
        flash,
        tenants,
        created,
        ..
    } = state;
    let csrf_create = csrf.clone();
    let form_ref = NodeRef::<leptos::html::Form>::new();
    Effect::new(move |_| {
        if matches!(create.value().get(), Some(Ok(true))) {
            if let Some(form) = form_ref.get() {
                form.reset();
            }
        }
    });
    view! {
        <div class="platform">
            <header class="topbar">
                <span class="brand">"Portcullis"</span>
                <span class="tenant-name">"Platform"</span>
                <span class="spacer"></span>
                <ActionForm action=sign_out attr:class="inline">
                    <input type="hidden" name="csrf" value=csrf/>
                    <button type="submit" class="ghost">"Sign out"</button>
                </ActionForm>
            </header>
            <main class="content wide">
                <h1>"Tenants"</h1>
                <FlashBox flash/>
                {created.map(|c| view! {
                    <section class="card created" id="created-tenant">
                        <h2>{format!("Tenant {} created", c.slug)}</h2>
                        <p>"Give this admin token to " <strong>{c.admin_email}</strong> ". It is shown only once."</p>
                        <p><code class="secret" id="created-admin-token">{c.admin_token}</code></p>
                        <p>"Console: " <a href=c.console_url.clone()>{c.console_url.clone()}</a></p>
                    </section>
                })}
                <section class="card">
                    <table class="table" id="tenant-table">
                        <thead><tr><th>"Slug"</th><th>"Name"</th><th>"Created"</th><th>"Console"</th></tr></thead>
                        <tbody>
                            {tenants.into_iter().map(|t| view! {
                                <tr>
                                    <td><code>{t.slug}</code></td>
                                    <td>{t.name}</td>
                                    <td>{t.created_at}</td>
                                    <td><a href=t.console_url.clone()>{t.console_url.clone()}</a></td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </section>
                <section class="card">
                    <h2>"Create a tenant"</h2>
                    <ActionForm action=create node_ref=form_ref attr:id="create-tenant-form" attr:class="stacked">
                        <input type="hidden" name="csrf" value=csrf_create/>
                        <label for="new-slug">"Slug (the subdomain)"</label>
                        <input type="text" id="new-slug" name="slug" required maxlength="63" pattern="[a-z][a-z0-9\\-]{0,61}[a-z0-9]" title="2 to 63 lowercase letters, digits or hyphens, starting with a letter"/>
                        <label for="new-name">"Display name"</label>
                        <input type="text" id="new-name" name="name" required maxlength="100"/>
                        <label for="new-admin-email">"First admin's email"</label>
                        <input type="email" id="new-admin-email" name="admin_email" required/>
                        <button type="submit" class="primary">"Create tenant"</button>
                    </ActionForm>
                </section>
            </main>
        </div>
    }
}
