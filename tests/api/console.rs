//! The consoles as a browser without JavaScript uses them: server-rendered pages, form posts
//! with anti-CSRF tokens, sessions in the database, host-only cookies.

use crate::helpers::{spawn_app, Engine};
use crate::on_both_engines;
use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::StatusCode;

on_both_engines!(
    admin_signs_in_with_the_admin_token_and_sees_the_console,
    a_wrong_token_shows_an_error_and_does_not_sign_in,
    tenant_a_session_cookie_is_useless_on_tenant_b,
    forms_without_the_session_csrf_token_change_nothing,
    cross_origin_form_posts_are_refused,
    renaming_the_tenant_from_settings_shows_the_new_name,
    signing_out_ends_the_session_for_good,
    platform_operator_creates_a_tenant_in_the_platform_console,
    sessions_survive_a_server_restart,
    admins_manage_servers_and_issue_tokens_from_the_console,
);

async fn admin_signs_in_with_the_admin_token_and_sees_the_console(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let mut b = app.browser(Some("acme"));
    let page = b.get("/admin").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Administrator sign-in"));
    let cookie = page
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("portcullis_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    // Secure even over plain http here: browsers treat *.localhost as a secure context.
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    // Host-only: no Domain attribute, so the browser never sends it to another tenant's host.
    assert!(!cookie.to_lowercase().contains("domain="), "{cookie}");

    let before = b.cookie.clone();
    let page = b.sign_in(&acme.admin_token).await;
    assert_ne!(b.cookie, before, "signing in issues a new session id");
    assert!(page.body.contains("id=\"signed-in-as\""), "{}", page.body);
    assert!(page.body.contains("admin@acme.example.com"));
    assert!(page.body.contains("acme Inc"));
    // The console shell links every section later work fills.
    for section in [
        "servers",
        "registries",
        "groups",
        "policies",
        "agents",
        "audit",
        "filters",
        "credentials",
        "settings",
        "review-pack",
    ] {
        assert!(
            page.body.contains(&format!("href=\"/admin/{section}\"")),
            "{section}"
        );
    }
    let page = b.get("/admin/audit").await;
    assert!(page.body.contains("Audit log"));
    app.stop().await;
}

async fn a_wrong_token_shows_an_error_and_does_not_sign_in(engine: Engine) {
    let app = spawn_app(engine).await;
    app.create_tenant("acme").await;
    let mut b = app.browser(Some("acme"));
    let page = b
        .sign_in("pct_admin_wrongwrongwrongwrongwrongwrongwrongwrongwro")
        .await;
    assert!(
        page.body.contains("That admin token is not valid"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("signed-in-as"));
    // The message is shown once.
    let page = b.get("/admin").await;
    assert!(!page.body.contains("not valid"));
    app.stop().await;
}

async fn tenant_a_session_cookie_is_useless_on_tenant_b(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let mut a = app.browser(Some("acme"));
    let page = a.sign_in(&acme.admin_token).await;
    assert!(page.body.contains("signed-in-as"));
    // Replay acme's session cookie against globex's host.
    let mut b = app.browser(Some("globex"));
    b.cookie = a.cookie.clone();
    let page = b.get("/admin").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Administrator sign-in"));
    assert!(!page.body.contains("signed-in-as"));
    assert!(!page.body.contains("admin@acme.example.com"));
    // And the platform console does not take it either.
    let mut p = app.browser(None);
    p.cookie = a.cookie.clone();
    let page = p.get("/").await;
    assert!(page.body.contains("Platform admin token"), "{}", page.body);
    app.stop().await;
}

async fn forms_without_the_session_csrf_token_change_nothing(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let mut b = app.browser(Some("acme"));
    let page = b.get("/admin").await;
    let action = page.form_action("sign-in-form").unwrap();
    for csrf in ["", "forged-token"] {
        b.post_form(
            &action,
            &[("csrf", csrf), ("token", &acme.admin_token)],
            "/admin",
        )
        .await;
        let page = b.get("/admin").await;
        assert!(
            !page.body.contains("signed-in-as"),
            "csrf {csrf:?} must not sign in"
        );
    }
    // Signed in, a rename without the token leaves the name alone.
    let page = b.sign_in(&acme.admin_token).await;
    assert!(page.body.contains("signed-in-as"));
    let settings = b.get("/admin/settings").await;
    let rename = settings.form_action("rename-form").unwrap();
    b.post_form(
        &rename,
        &[("csrf", "nope"), ("name", "Hijacked")],
        "/admin/settings",
    )
    .await;
    let page = b.get("/admin").await;
    assert!(!page.body.contains("Hijacked"));
    assert!(page.body.contains("acme Inc"));
    app.stop().await;
}

async fn cross_origin_form_posts_are_refused(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let mut b = app.browser(Some("acme"));
    let page = b.get("/admin").await;
    let csrf = page.input_value("csrf").unwrap();
    let action = page.form_action("sign-in-form").unwrap();
    let res = app
        .client
        .post(app.url(&action))
        .header(reqwest::header::HOST, app.host(Some("acme")))
        .header(reqwest::header::ORIGIN, "http://evil.example")
        .header(reqwest::header::COOKIE, b.cookie.clone().unwrap())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(format!("csrf={}&token={}", csrf, acme.admin_token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let page = b.get("/admin").await;
    assert!(!page.body.contains("signed-in-as"));
    app.stop().await;
}

async fn renaming_the_tenant_from_settings_shows_the_new_name(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let mut b = app.browser(Some("acme"));
    b.sign_in(&acme.admin_token).await;
    let settings = b.get("/admin/settings").await;
    let csrf = settings.input_value("csrf").unwrap();
    let rename = settings.form_action("rename-form").unwrap();
    let res = b
        .post_form(
            &rename,
            &[("csrf", &csrf), ("name", "Acme Widgets")],
            "/admin/settings",
        )
        .await;
    // Without JavaScript the server answers the form with a redirect back to the page.
    assert_eq!(res.status, StatusCode::FOUND);
    let location = res.headers.get(LOCATION).unwrap().to_str().unwrap();
    // leptos_axum redirects a plain form post back to its Referer (with an empty query).
    assert!(
        location.trim_end_matches('?').ends_with("/admin/settings"),
        "{location}"
    );
    let page = b.get("/admin/settings").await;
    assert!(page.body.contains("Acme Widgets"));
    assert!(page.body.contains("Saved."));
    // An invalid name is refused with a message and changes nothing.
    let csrf = page.input_value("csrf").unwrap();
    b.post_form(
        &rename,
        &[("csrf", &csrf), ("name", "   ")],
        "/admin/settings",
    )
    .await;
    let page = b.get("/admin/settings").await;
    assert!(page.body.contains("Not saved"), "{}", page.body);
    assert!(page.body.contains("Acme Widgets"));
    // The API sees the same name.
    let v = app.tenant_json("acme", &acme.admin_token).await;
    assert_eq!(v["name"], "Acme Widgets");
    app.stop().await;
}

async fn signing_out_ends_the_session_for_good(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let mut b = app.browser(Some("acme"));
    let page = b.sign_in(&acme.admin_token).await;
    let old_cookie = b.cookie.clone();
    let csrf = page.input_value("csrf").unwrap();
    let action = page.form_action("sign-out").unwrap();
    b.post_form(&action, &[("csrf", &csrf)], "/admin").await;
    let page = b.get("/admin").await;
    assert!(page.body.contains("Administrator sign-in"));
    // The old session id is dead server-side too: replaying it does not sign in.
    let mut replay = app.browser(Some("acme"));
    replay.cookie = old_cookie;
    let page = replay.get("/admin").await;
    assert!(!page.body.contains("signed-in-as"));
    app.stop().await;
}

async fn platform_operator_creates_a_tenant_in_the_platform_console(engine: Engine) {
    let app = spawn_app(engine).await;
    let mut p = app.browser(None);
    let page = p.platform_sign_in(&app.platform_token).await;
    assert!(page.body.contains("Create a tenant"), "{}", page.body);
    let csrf = page.input_value("csrf").unwrap();
    let create = page.form_action("create-tenant-form").unwrap();
    p.post_form(
        &create,
        &[
            ("csrf", &csrf),
            ("slug", "www"),
            ("name", "W"),
            ("admin_email", "a@b.example"),
        ],
        "/",
    )
    .await;
    let page = p.get("/").await;
    assert!(
        page.body.contains("reserved"),
        "reserved slug explained: {}",
        page.body
    );
    p.post_form(
        &create,
        &[
            ("csrf", &csrf),
            ("slug", "initech"),
            ("name", "Initech"),
            ("admin_email", "bill@initech.example"),
        ],
        "/",
    )
    .await;
    let page = p.get("/").await;
    assert!(
        page.body.contains("Tenant initech created"),
        "{}",
        page.body
    );
    let token = page.text_of("created-admin-token").unwrap();
    assert!(token.starts_with("pct_admin_"));
    // Shown once.
    let again = p.get("/").await;
    assert!(!again.body.contains(&token));
    // The new tenant is served at once, and the token signs its admin in.
    let mut b = app.browser(Some("initech"));
    let page = b.sign_in(&token).await;
    assert!(page.body.contains("bill@initech.example"));
    app.stop().await;
}

async fn sessions_survive_a_server_restart(engine: Engine) {
    // Sessions live in the database, not in memory: a new process (same database) keeps them.
    let dir = tempfile::tempdir().unwrap();
    let db = match engine {
        Engine::Postgres => Some(crate::helpers::TestDb::create().await),
        Engine::Sqlite => None,
    };
    let start = |dir: std::path::PathBuf| {
        let settings = crate::helpers::settings_for(engine, &dir, db.as_ref());
        async move {
            portcullis::startup::Application::build(settings)
                .await
                .unwrap()
        }
    };
    // Set-up start: create the tenant, so that the next start loads it into its directory.
    let setup = start(dir.path().to_path_buf()).await;
    let created = portcullis::tenants::create(setup.store(), "acme", "Acme", "a@acme.example")
        .await
        .unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&created.admin_token).to_owned();
    setup.store().close().await;
    drop(setup);
    let app = start(dir.path().to_path_buf()).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let port = app.port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let host = format!("acme.localhost:{port}");
    let get = |cookie: Option<String>, port: u16| {
        let mut r = client
            .get(format!("http://127.0.0.1:{port}/admin"))
            .header(reqwest::header::HOST, format!("acme.localhost:{port}"));
        if let Some(c) = cookie {
            r = r.header(reqwest::header::COOKIE, c);
        }
        r.send()
    };
    let res = get(None, port).await.unwrap();
    let cookie = crate::helpers::session_cookie(res.headers()).unwrap();
    let body = res.text().await.unwrap();
    let page = crate::helpers::Page {
        status: StatusCode::OK,
        headers: Default::default(),
        body,
    };
    let csrf = page.input_value("csrf").unwrap();
    let action = page.form_action("sign-in-form").unwrap();
    let res = client
        .post(format!("http://127.0.0.1:{port}{action}"))
        .header(reqwest::header::HOST, &host)
        .header(reqwest::header::COOKIE, &cookie)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(format!("csrf={}&token={}", csrf, token))
        .send()
        .await
        .unwrap();
    let cookie = crate::helpers::session_cookie(res.headers()).unwrap_or(cookie);
    let _ = tx.send(());
    server.await.unwrap().unwrap();

    let app = start(dir.path().to_path_buf()).await;
    let port = app.port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let body = get(Some(cookie), port).await.unwrap().text().await.unwrap();
    assert!(
        body.contains("signed-in-as"),
        "still signed in after restart"
    );
    let _ = tx.send(());
    server.await.unwrap().unwrap();
}

async fn admins_manage_servers_and_issue_tokens_from_the_console(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let mut b = app.browser(Some("acme"));
    b.sign_in(&acme.admin_token).await;
    let page = b.get("/admin/servers").await;
    assert!(page.body.contains("No servers yet"), "{}", page.body);
    let csrf = page.input_value("csrf").unwrap();
    let add = page.form_action("add-server-form").unwrap();
    let form =
        |slug: &'static str, transport: &'static str, url: &'static str, cmd: &'static str| {
            vec![
                ("csrf", csrf.clone()),
                ("form[slug]", slug.to_string()),
                ("form[name]", String::new()),
                ("form[description]", "via the console".to_string()),
                ("form[transport]", transport.to_string()),
                ("form[url]", url.to_string()),
                ("form[command_line]", cmd.to_string()),
                ("form[instance]", "per_user".to_string()),
            ]
        };
    for fields in [
        form("crm", "streamable_http", "https://crm.example.com/mcp", ""),
        form(
            "files",
            "stdio",
            "",
            "npx -y '@modelcontextprotocol/server-filesystem' /srv/data",
        ),
    ] {
        let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = b.post_form(&add, &refs, "/admin/servers").await;
        assert_eq!(res.status, StatusCode::FOUND);
    }
    let page = b.get("/admin/servers").await;
    assert!(page.body.contains("Server files added."), "{}", page.body);
    assert!(page.body.contains("https://crm.example.com/mcp"));
    assert!(page
        .body
        .contains("npx -y @modelcontextprotocol/server-filesystem /srv/data"));
    assert!(page
        .body
        .contains(&format!("http://acme.localhost:{}/mcp/crm", app.port)));
    // The API sees what the console added.
    let res = app
        .get(&app.host(Some("acme")), "/api/v1/servers/files")
        .bearer_auth(&acme.admin_token)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        v["upstream"]["args"],
        serde_json::json!(["-y", "@modelcontextprotocol/server-filesystem", "/srv/data"])
    );
    assert_eq!(v["upstream"]["instance"], "per_user");

    // Bad input: a message, nothing stored.
    let fields = form("bad", "streamable_http", "not a url", "");
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.post_form(&add, &refs, "/admin/servers").await;
    let page = b.get("/admin/servers").await;
    assert!(page.body.contains("Not added"), "{}", page.body);
    assert!(!page.body.contains("<code>bad</code>"));

    // Remove one.
    let delete = page.form_action("delete-crm").unwrap();
    b.post_form(
        &delete,
        &[("csrf", &csrf), ("slug", "crm")],
        "/admin/servers",
    )
    .await;
    let page = b.get("/admin/servers").await;
    assert!(page.body.contains("Server crm removed."));
    assert!(!page.body.contains("https://crm.example.com/mcp"));
    let page = b.get("/admin").await;
    assert_eq!(
        page.text_of("server-count").as_deref(),
        Some("1"),
        "overview counts servers"
    );

    // A gateway token, shown once.
    let page = b.get("/admin/groups").await;
    let issue = page.form_action("issue-token-form").unwrap();
    b.post_form(
        &issue,
        &[
            ("csrf", &csrf),
            ("user_email", "dev@acme.example"),
            ("label", "laptop"),
        ],
        "/admin/groups",
    )
    .await;
    let page = b.get("/admin/groups").await;
    let token = page.text_of("issued-token-value").expect("token shown");
    assert!(token.starts_with("pct_user_"), "{token}");
    let again = b.get("/admin/groups").await;
    assert!(!again.body.contains(&token), "shown once");
    let page = b.get("/admin").await;
    assert_eq!(
        page.text_of("user-count").as_deref(),
        Some("2"),
        "the user was created"
    );
    app.stop().await;
}
