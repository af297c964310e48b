//! The Portcullis web UI: the platform console (bare base domain), each tenant's user portal
//! (`/`) and admin console (`/admin`). Rendered on the server (feature `ssr`) and hydrated in the
//! browser (feature `hydrate`); every form is a server-function `ActionForm`, so it works with
//! JavaScript disabled too.

mod agents;
pub mod api;
mod audit;
mod console;
mod credentials;
mod filters;
mod identity;
mod platform;
mod review;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    ParamSegment, SsrMode, StaticSegment,
};

/// The HTML document around the app; the server renders it for every page.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light"/>
                <link rel="icon" type="image/svg+xml" href="/pkg/favicon.svg"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Set once the wasm has hydrated the page: a hook for browser tests and for styles that
    // should only apply when JavaScript runs. Effects never run during server rendering.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    view! {
        <Stylesheet id="portcullis" href="/pkg/portcullis.css"/>
        <Title text="Portcullis"/>
        <div id="root" data-hydrated=move || if hydrated.get() { "true" } else { "false" }>
            <Router>
                // Async SSR: the full page, resources included, is in the first response, so
                // it reads and works without JavaScript.
                <Routes fallback=|| view! { <NotFound/> }>
                    <Route path=StaticSegment("") view=Home ssr=SsrMode::Async/>
                    <Route path=StaticSegment("admin") view=console::AdminPage ssr=SsrMode::Async/>
                    <Route
                        path=(StaticSegment("admin"), ParamSegment("section"))
                        view=console::AdminPage
                        ssr=SsrMode::Async
                    />
                </Routes>
            </Router>
        </div>
    }
}

/// `/`: the platform console on the bare domain, the user portal on a tenant host.
///
/// The resource is created here, once, outside any reactive closure: a resource created inside
/// a `Suspend` would be created (and fetched) again on every re-run, and the state carries
/// one-time messages that must be read exactly once.
#[component]
fn Home() -> impl IntoView {
    let actions = platform::PlatformActions::new();
    let portal = ServerAction::<api::IdentityAction>::new();
    let state = Resource::new(
        move || (actions.version(), portal.version().get()),
        |_| api::load_home(),
    );
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match state.await {
                    Ok(api::HomeState::Platform(s)) => view! { <platform::PlatformConsole state=s actions/> }.into_any(),
                    Ok(api::HomeState::Portal(s)) => view! { <identity::Portal state=s action=portal/> }.into_any(),
                    Err(e) => view! { <main class="centered"><ErrorBox message=e.to_string()/></main> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
            resp.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <main class="centered">
            <section class="card narrow">
                <h1>"Not found"</h1>
                <p>"There is nothing at this address."</p>
            </section>
        </main>
    }
}

#[component]
pub(crate) fn ErrorBox(message: String) -> impl IntoView {
    view! { <p class="flash flash-error" role="alert">{message}</p> }
}

#[component]
pub(crate) fn FlashBox(flash: Option<api::Flash>) -> impl IntoView {
    flash.map(|f| {
        let class = match f.kind {
            api::FlashKind::Info => "flash flash-info",
            api::FlashKind::Error => "flash flash-error",
        };
        view! { <p class=class role="status" id="flash">{f.message}</p> }
    })
}

/// A secret input with a show/hide toggle (a client-side interaction: it only works once the
/// page has hydrated, and the field stays a plain password input without JavaScript).
#[component]
pub(crate) fn SecretInput(
    name: &'static str,
    id: &'static str,
    label: &'static str,
) -> impl IntoView {
    let visible = RwSignal::new(false);
    view! {
        <label for=id>{label}</label>
        <div class="secret-input">
            <input
                type=move || if visible.get() { "text" } else { "password" }
                name=name
                id=id
                required
                autocomplete="off"
                spellcheck="false"
            />
            <button
                type="button"
                class="ghost js-only"
                id=format!("{id}-toggle")
                aria-pressed=move || visible.get().to_string()
                on:click=move |_| visible.update(|v| *v = !*v)
            >
                {move || if visible.get() { "Hide" } else { "Show" }}
            </button>
        </div>
    }
}
