//! SCIM 2.0 provisioning: the compliance checker (scim2-tester, a real SCIM client), the filters
//! and PATCH shapes Okta and Entra really send, and deprovisioning that holds on the very next
//! MCP request.

use crate::gateway::{python, user_token};
use crate::gateway_sessions::{stdio_fixture, Mcp};
use crate::helpers::{spawn_app, spawn_app_with, Engine, TestApp};
use crate::on_both_engines;
use portcullis::config::ServeArgs;
use reqwest::header::{CONTENT_TYPE, HOST};
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_engines!(
    scim2_tester_finds_no_errors,
    scim_answers_only_its_own_token,
    filters_pagination_and_attributes_work_as_idps_use_them,
    okta_and_entra_patch_shapes_are_understood,
    removal_in_the_idp_ends_access_on_the_next_request,
);

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The tenant's SCIM token, made with the CLI.
fn scim_token(app: &TestApp, tenant: &str) -> String {
    let out = app.cli(&["scim", "token", "--tenant", tenant, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

struct Scim<'a> {
    app: &'a TestApp,
    token: String,
}

impl Scim<'_> {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .app
            .client
            .request(method, self.app.url(&format!("/scim/v2{path}")))
            .header(HOST, self.app.host(Some("acme")))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header(CONTENT_TYPE, "application/scim+json")
                .body(b.to_string());
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        if status != StatusCode::NO_CONTENT {
            let ct = res.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
            assert_eq!(ct, "application/scim+json", "{path}");
        }
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, ops: Value) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::PATCH,
            path,
            Some(json!({"schemas": [PATCH], "Operations": ops})),
        )
        .await
    }

    async fn user(&self, user_name: &str, external_id: &str) -> String {
        let (status, v) = self
            .post(
                "/Users",
                json!({"schemas": [USER], "userName": user_name, "externalId": external_id,
                       "name": {"givenName": "G", "familyName": "F"},
                       "emails": [{"value": user_name, "type": "work", "primary": true}],
                       "active": true}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    async fn group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let (status, v) = self
            .post(
                "/Groups",
                json!({"schemas": [GROUP], "displayName": name, "members": members}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }
}

async fn scim2_tester_finds_no_errors(engine: Engine) {
    let app = spawn_app_with(
        engine,
        ServeArgs {
            loopback_tenant: Some("acme".into()),
            ..Default::default()
        },
    )
    .await;
    app.create_tenant("acme").await;
    let token = scim_token(&app, "acme");
    let out = tokio::process::Command::new(python())
        .arg(crate::gateway::fixture_path("scim_check.py"))
        .arg(format!("http://127.0.0.1:{}/scim/v2", app.port))
        .env("SCIM_TOKEN", &token)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scim2-tester reported ERROR or CRITICAL results:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        v["counts"]["SUCCESS"].as_u64().unwrap_or(0) >= 40,
        "too few checks ran: {v}"
    );
    app.stop().await;
}

async fn scim_answers_only_its_own_token(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let get = |token: Option<String>| {
        let mut req = app.get(&app.host(Some("acme")), "/scim/v2/Users");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    // No SCIM token configured yet: nothing opens it, not even the admin token.
    for token in [None, Some(acme.admin_token.clone())] {
        let res = get(token).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let v: Value = res.json().await.unwrap();
        assert_eq!(
            v["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        assert_eq!(v["status"], "401");
    }
    let first = scim_token(&app, "acme");
    assert!(first.starts_with("pct_scim_"));
    assert_eq!(
        get(Some(first.clone())).await.unwrap().status(),
        StatusCode::OK
    );
    // Rotation (through the API this time): the old token stops working at once.
    let res = app
        .client
        .post(app.url("/api/v1/scim/token"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(&acme.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let v: Value = res.json().await.unwrap();
    let second = v["token"].as_str().unwrap().to_owned();
    assert!(v["scim_base_url"].as_str().unwrap().ends_with("/scim/v2"));
    assert_eq!(
        get(Some(first)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(Some(second.clone())).await.unwrap().status(),
        StatusCode::OK
    );
    // Another tenant's host does not take acme's token.
    app.create_tenant("other").await;
    let res = app
        .get(&app.host(Some("other")), "/scim/v2/Users")
        .bearer_auth(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // The token is stored hashed: it is nowhere in the database file.
    if let Engine::Sqlite = engine {
        let db = std::fs::read(app.data_dir.join("portcullis.db")).unwrap_or_default();
        let wal = std::fs::read(app.data_dir.join("portcullis.db-wal")).unwrap_or_default();
        let needle = second.as_bytes();
        for bytes in [db, wal] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
    }
    app.stop().await;
}

async fn filters_pagination_and_attributes_work_as_idps_use_them(engine: Engine) {
    let app = spawn_app(engine).await;
    app.create_tenant("acme").await;
    let scim = Scim {
        token: scim_token(&app, "acme"),
        app: &app,
    };
    for i in 1..=5 {
        scim.user(&format!("user{i}@acme.test"), &format!("ext-{i}"))
            .await;
    }
    let total = |v: &Value| v["totalResults"].as_u64().unwrap();
    let q = |f: &str| format!("/Users?filter={}", crate::helpers::urlencode(f));
    // The lookups Okta and Entra make before creating a user.
    let (status, v) = scim.get(&q("userName eq \"USER3@acme.test\"")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(total(&v), 1, "userName is case-insensitive: {v}");
    assert_eq!(v["Resources"][0]["externalId"], "ext-3");
    let (_, v) = scim.get(&q("externalId eq \"ext-4\"")).await;
    assert_eq!(v["Resources"][0]["userName"], "user4@acme.test");
    let (_, v) = scim.get(&q("externalId eq \"EXT-4\"")).await;
    assert_eq!(total(&v), 0, "externalId is case-exact");
    let (_, v) = scim
        .get(&q(
            "userName sw \"user\" and (emails.value co \"2@\" or displayName pr)",
        ))
        .await;
    assert_eq!(total(&v), 1, "{v}");
    let (_, v) = scim
        .get(&q("emails[type eq \"work\" and value ew \"5@acme.test\"]"))
        .await;
    assert_eq!(total(&v), 1, "{v}");
    // The tenant's bootstrap admin is a user too.
    let (_, v) = scim.get(&q("userName pr")).await;
    assert_eq!(total(&v), 6, "{v}");
    // Pages: 1-based startIndex, count, totals over the whole result.
    let (_, v) = scim.get("/Users?startIndex=2&count=2").await;
    assert_eq!(
        (
            total(&v),
            v["startIndex"].as_u64(),
            v["itemsPerPage"].as_u64()
        ),
        (6, Some(2), Some(2))
    );
    let (_, v) = scim.get("/Users?startIndex=6&count=10").await;
    assert_eq!(v["Resources"].as_array().unwrap().len(), 1);
    let (_, v) = scim.get("/Users?count=0").await;
    assert_eq!(
        (total(&v), v["Resources"].as_array().unwrap().len()),
        (6, 0)
    );
    // attributes / excludedAttributes.
    let (_, v) = scim
        .get(&format!(
            "{}&attributes=userName",
            q("userName eq \"user1@acme.test\"")
        ))
        .await;
    let r = &v["Resources"][0];
    assert!(
        r["id"].is_string() && r["userName"].is_string() && r.get("emails").is_none(),
        "{r}"
    );
    let (_, v) = scim
        .get("/Users?excludedAttributes=emails,name&count=1")
        .await;
    assert!(v["Resources"][0].get("emails").is_none() && v["Resources"][0]["userName"].is_string());
    // Bad input: SCIM errors, nothing changed.
    let (status, v) = scim.get(&q("userName xx \"a\"")).await;
    assert_eq!(
        (status, v["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalidFilter")),
        "{v}"
    );
    let (status, v) = scim
        .post("/Users", json!({"userName": "user1@acme.test"}))
        .await;
    assert_eq!(
        (status, v["scimType"].as_str()),
        (StatusCode::CONFLICT, Some("uniqueness")),
        "{v}"
    );
    let (status, _) = scim
        .post("/Users", json!({"displayName": "no userName"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = scim
        .post(
            "/Groups",
            json!({"displayName": "g", "members": [{"value": "nobody"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = scim.get("/Users/not-an-id").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, v) = scim.get("/Users").await;
    assert_eq!(total(&v), 6, "refused writes changed nothing");
    let (_, v) = scim.get("/Groups").await;
    assert_eq!(total(&v), 0);
    app.stop().await;
}

async fn okta_and_entra_patch_shapes_are_understood(engine: Engine) {
    let app = spawn_app(engine).await;
    app.create_tenant("acme").await;
    let scim = Scim {
        token: scim_token(&app, "acme"),
        app: &app,
    };
    let alice = scim.user("alice@acme.test", "a").await;
    let bob = scim.user("bob@acme.test", "b").await;
    let sales = scim.group("sales", &[&alice]).await;
    let members = |v: &Value| -> Vec<String> {
        let mut m: Vec<String> = v["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| m["value"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        m.sort();
        m
    };
    let path = format!("/Groups/{sales}");
    // Okta: add members.
    let (status, v) = scim
        .patch(
            &path,
            json!([{"op": "add", "path": "members", "value": [{"value": bob}]}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mut both = vec![alice.clone(), bob.clone()];
    both.sort();
    assert_eq!(members(&v), both);
    // Okta: remove by filter path.
    let (_, v) = scim
        .patch(
            &path,
            json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]),
        )
        .await;
    assert_eq!(members(&v), [bob.as_str()]);
    // Entra: capitalised op, remove with a value list; then Add back.
    let (_, v) = scim
        .patch(
            &path,
            json!([{"op": "Remove", "path": "members", "value": [{"value": bob}]}]),
        )
        .await;
    assert!(members(&v).is_empty(), "{v}");
    let (_, v) = scim
        .patch(
            &path,
            json!([{"op": "Add", "path": "members", "value": [{"value": alice}]}]),
        )
        .await;
    assert_eq!(members(&v), [alice.as_str()]);
    // Entra: rename with Replace on a path.
    let (_, v) = scim
        .patch(
            &path,
            json!([{"op": "Replace", "path": "displayName", "value": "sales-emea"}]),
        )
        .await;
    assert_eq!(v["displayName"], "sales-emea");
    // Users: Entra's path-less Replace with a string boolean, Okta's boolean.
    let upath = format!("/Users/{bob}");
    let (status, v) = scim
        .patch(
            &upath,
            json!([{"op": "Replace", "value": {"active": "False"}}]),
        )
        .await;
    assert_eq!(
        (status, v["active"].clone()),
        (StatusCode::OK, json!(false)),
        "{v}"
    );
    let (_, v) = scim
        .patch(
            &upath,
            json!([{"op": "replace", "value": {"active": true}}]),
        )
        .await;
    assert_eq!(v["active"], true);
    let (_, v) = scim
        .patch(&upath, json!([{"op": "Replace", "path": "name.givenName", "value": "Robert"},
                              {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "robert@acme.test"}]))
        .await;
    assert_eq!(v["name"]["givenName"], "Robert", "{v}");
    assert_eq!(v["emails"][0]["value"], "robert@acme.test", "{v}");
    // The user's groups are read-only and shown from memberships.
    let (_, v) = scim.get(&format!("/Users/{alice}")).await;
    assert_eq!(v["groups"][0]["display"], "sales-emea", "{v}");
    let (status, v) = scim
        .patch(
            &upath,
            json!([{"op": "add", "path": "groups", "value": [{"value": sales}]}]),
        )
        .await;
    assert_eq!(
        (status, v["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("mutability")),
        "{v}"
    );
    // A bad op changes nothing.
    let (status, _) = scim
        .patch(
            &upath,
            json!([{"op": "replace", "path": "displayName", "value": "X"}, {"op": "explode"}]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, v) = scim.get(&upath).await;
    assert!(v.get("displayName").is_none(), "{v}");
    // PUT replaces; DELETE removes the user and their memberships.
    let (status, v) = scim
        .send(reqwest::Method::PUT, &upath, Some(json!({"schemas": [USER], "userName": "bob@acme.test", "displayName": "Bob", "active": true})))
        .await;
    assert_eq!(
        (status, v["displayName"].clone()),
        (StatusCode::OK, json!("Bob"))
    );
    let (status, _) = scim
        .send(reqwest::Method::DELETE, &format!("/Users/{alice}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, v) = scim.get(&path).await;
    assert!(members(&v).is_empty(), "{v}");
    let (status, _) = scim.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = scim.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn removal_in_the_idp_ends_access_on_the_next_request(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    let scim = Scim {
        token: scim_token(&app, "acme"),
        app: &app,
    };
    let tag = uuid::Uuid::new_v4().to_string();
    crate::gateway::add_server_ungranted(&app, "acme", admin, "crm", stdio_fixture(&tag)).await;
    let bob = scim.user("bob@acme.test", "okta-bob").await;
    let sales = scim.group("sales", &[&bob]).await;
    // The registry names the IdP's group; SCIM made it, the grant finds it by name.
    let res = app
        .client
        .post(app.url("/api/v1/registries"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(admin)
        .json(&json!({"slug": "sales-tools", "servers": ["crm"], "grants": [{"subject": "group:sales"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let token = user_token(&app, "acme", admin, "bob@acme.test").await;
    let mut mcp = Mcp::new(&app, "acme", "crm", &token);
    mcp.initialize().await;
    assert_eq!(
        mcp.call_text(1, "echo", json!({"message": "hi"})).await,
        "Echo: hi"
    );

    // The IdP removes bob from sales: his very next call is refused, no wait, no restart.
    let (status, _) = scim
        .patch(
            &format!("/Groups/{sales}"),
            json!([{"op": "Remove", "path": format!("members[value eq \"{bob}\"]")}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let res = mcp
        .post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"message": "again"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "the server is gone for bob"
    );
    // Back in the group, he can open a session again.
    scim.patch(
        &format!("/Groups/{sales}"),
        json!([{"op": "add", "path": "members", "value": [{"value": bob}]}]),
    )
    .await;
    let mut mcp = Mcp::new(&app, "acme", "crm", &token);
    mcp.initialize().await;
    assert_eq!(
        mcp.call_text(3, "echo", json!({"message": "back"})).await,
        "Echo: back"
    );

    // Deactivated in the IdP: his gateway token stops working at once.
    let (_, v) = scim
        .patch(
            &format!("/Users/{bob}"),
            json!([{"op": "Replace", "value": {"active": "False"}}]),
        )
        .await;
    assert_eq!(v["active"], false);
    let res = mcp
        .post(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The tenant admin, once provisioned by the IdP, is deprovisioned the same way: their
    // console session and admin token end with the deactivation.
    let admin_id = scim.user("admin@acme.example.com", "okta-admin").await;
    let mut browser = app.browser(Some("acme"));
    let page = browser.sign_in(admin).await;
    assert!(page.body.contains("id=\"signed-in-as\""));
    scim.patch(
        &format!("/Users/{admin_id}"),
        json!([{"op": "replace", "value": {"active": false}}]),
    )
    .await;
    let page = browser.get("/admin").await;
    assert!(
        page.body.contains("Administrator sign-in"),
        "the console session ended"
    );
    let res = app
        .get(&app.host(Some("acme")), "/api/v1/tenant")
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Break-glass: the operator gives the tenant an admin again, from the CLI.
    let out = app.cli(&[
        "tenant",
        "admin-token",
        "acme",
        "--email",
        "admin@acme.example.com",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let recovered = v["admin_token"].as_str().unwrap();
    assert!(recovered.starts_with("pct_admin_"));
    let res = app
        .get(&app.host(Some("acme")), "/api/v1/tenant")
        .bearer_auth(recovered)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}
