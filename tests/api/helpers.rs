//! `spawn_app()`: the real application on 127.0.0.1:0 against a fresh database (a temp-file
//! SQLite, or a new database on the PostgreSQL server named by PORTCULLIS_TEST_DATABASE_URL),
//! with typed helpers that speak HTTP to it the way browsers and API clients do.

use portcullis::config::{GlobalArgs, ServeArgs, Settings};
use portcullis::startup::Application;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, COOKIE, HOST, ORIGIN, REFERER, SET_COOKIE};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use tokio::sync::oneshot;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A PostgreSQL database made for one test and dropped (with its connections) afterwards.
pub struct TestDb {
    admin_url: String,
    name: String,
    pub url: String,
}

pub fn postgres_admin_url() -> String {
    std::env::var("PORTCULLIS_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "PORTCULLIS_TEST_DATABASE_URL is not set: the PostgreSQL tests need a server. \
             Run `make test` (it starts a throwaway cluster) or point it at one, e.g. \
             postgres://postgres@127.0.0.1:5432/postgres"
        )
    })
}

fn with_database(url: &str, db: &str) -> String {
    // postgres://user@host:port/dbname?params → swap dbname.
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

impl TestDb {
    pub async fn create() -> Self {
        use sqlx::Connection;
        let admin_url = postgres_admin_url();
        let name = format!("pct_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot reach PostgreSQL at PORTCULLIS_TEST_DATABASE_URL: {e}")
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside any async context we can await in: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub port: u16,
    /// The data directory (SQLite file, master key).
    pub data_dir: std::path::PathBuf,
    pub platform_token: String,
    /// Arguments that point the CLI at this app's database.
    pub db_args: Vec<String>,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
    // Declared last: dropped after the server has stopped.
    _db: Option<TestDb>,
}

/// A fixed master key for PostgreSQL tests (SQLite tests let the server generate one).
pub const TEST_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub fn settings_for(engine: Engine, data_dir: &std::path::Path, db: Option<&TestDb>) -> Settings {
    settings_with(engine, data_dir, db, ServeArgs::default())
}

fn settings_with(
    engine: Engine,
    data_dir: &std::path::Path,
    db: Option<&TestDb>,
    serve: ServeArgs,
) -> Settings {
    let global = GlobalArgs {
        data_dir: Some(data_dir.to_path_buf()),
        database_url: db.map(|d| d.url.clone()),
        ..Default::default()
    };
    let serve = ServeArgs {
        bind: Some("127.0.0.1:0".into()),
        ..serve
    };
    let key = (engine == Engine::Postgres).then(|| TEST_MASTER_KEY.to_string());
    Settings::resolve(&global, &serve, key).expect("test settings")
}

pub async fn spawn_app(engine: Engine) -> TestApp {
    spawn_app_with(engine, ServeArgs::default()).await
}

/// `spawn_app` with serve options of the test's own (the bind address is always 127.0.0.1:0).
pub async fn spawn_app_with(engine: Engine, serve: ServeArgs) -> TestApp {
    spawn_app_in(engine, serve, tempfile::tempdir().expect("temp dir")).await
}

/// `spawn_app_with` on a data directory of the test's choosing.
pub async fn spawn_app_in(engine: Engine, serve: ServeArgs, dir: tempfile::TempDir) -> TestApp {
    let db = match engine {
        Engine::Sqlite => None,
        Engine::Postgres => Some(TestDb::create().await),
    };
    let settings = settings_with(engine, dir.path(), db.as_ref(), serve);
    let app = Application::build(settings)
        .await
        .expect("application starts");
    let port = app.port();
    let platform_token = app
        .first_start
        .platform_token
        .as_ref()
        .expect("a fresh database prints a platform token")
        .expose_secret()
        .to_owned();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let mut db_args = vec!["--data-dir".to_string(), dir.path().display().to_string()];
    if let Some(d) = &db {
        db_args.push("--database-url".into());
        db_args.push(d.url.clone());
    }
    TestApp {
        port,
        data_dir: dir.path().to_path_buf(),
        platform_token,
        db_args,
        // A request that hangs fails its test with the URL instead of stalling the whole run.
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("http client"),
        shutdown: Some(tx),
        server: Some(server),
        _dir: dir,
        _db: db,
    }
}

impl TestApp {
    /// A second replica: another application on the same PostgreSQL database (and master key),
    /// on its own port and data directory, as replicas behind a load balancer run.
    /// On SQLite: a second process-like instance on the same data directory (file and key).
    pub async fn replica(&self) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let global = match &self._db {
            Some(db) => GlobalArgs {
                data_dir: Some(dir.path().to_path_buf()),
                database_url: Some(db.url.clone()),
                ..Default::default()
            },
            None => GlobalArgs {
                data_dir: Some(self.data_dir.clone()),
                ..Default::default()
            },
        };
        let key = self._db.as_ref().map(|_| TEST_MASTER_KEY.to_string());
        let serve = ServeArgs {
            bind: Some("127.0.0.1:0".into()),
            ..ServeArgs::default()
        };
        let settings = Settings::resolve(&global, &serve, key).expect("test settings");
        let app = Application::build(settings)
            .await
            .expect("the replica starts");
        let port = app.port();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        TestApp {
            port,
            data_dir: match &self._db {
                Some(_) => dir.path().to_path_buf(),
                None => self.data_dir.clone(),
            },
            platform_token: self.platform_token.clone(),
            db_args: self.db_args.clone(),
            client: self.client.clone(),
            shutdown: Some(tx),
            server: Some(server),
            _dir: dir,
            _db: None,
        }
    }
}

/// A created tenant as the platform API returns it.
pub struct CreatedTenant {
    pub admin_token: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn host(&self, sub: Option<&str>) -> String {
        match sub {
            Some(s) => format!("{s}.localhost:{}", self.port),
            None => format!("localhost:{}", self.port),
        }
    }

    pub fn get(&self, host: &str, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).header(HOST, host)
    }

    /// POST /api/v1/tenants on the platform host.
    pub async fn create_tenant(&self, slug: &str) -> CreatedTenant {
        let res = self
            .client
            .post(self.url("/api/v1/tenants"))
            .header(HOST, self.host(None))
            .bearer_auth(&self.platform_token)
            .json(&serde_json::json!({
                "slug": slug, "name": format!("{slug} Inc"), "admin_email": format!("admin@{slug}.example.com")
            }))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::CREATED, "creating tenant {slug}");
        let v: serde_json::Value = res.json().await.expect("json");
        CreatedTenant {
            admin_token: v["admin_token"].as_str().expect("token").to_owned(),
        }
    }

    /// `GET /api/v1/tenant` on the tenant's host with an admin token: the tenant as JSON.
    pub async fn tenant_json(&self, slug: &str, token: &str) -> serde_json::Value {
        let res = self
            .get(&self.host(Some(slug)), "/api/v1/tenant")
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("json")
    }

    /// A browser-like client for one host: keeps the session cookie it is given.
    pub fn browser(&self, sub: Option<&str>) -> Browser<'_> {
        Browser {
            app: self,
            host: self.host(sub),
            cookie: None,
        }
    }

    /// Runs the real `portcullis` binary against this app's database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .args(&self.db_args)
            .env_remove("DATABASE_URL")
            .env_remove("PORTCULLIS_CONFIG")
            .output()
            .expect("run portcullis")
    }

    /// Drops this app's PostgreSQL database under it (terminating its connections), to see how
    /// the server behaves when its database is gone.
    pub async fn kill_database(&self) {
        use sqlx::Connection;
        let db = self._db.as_ref().expect("a PostgreSQL app");
        let mut conn = sqlx::PgConnection::connect(&db.admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE \"{}\" WITH (FORCE)",
            db.name
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            // Bounded by the server's own shutdown grace; more means the server is stuck.
            tokio::time::timeout(std::time::Duration::from_secs(30), s)
                .await
                .expect("the server stops within its shutdown grace")
                .expect("server task")
                .expect("server ran without I/O errors");
        }
    }
}

pub struct Browser<'a> {
    app: &'a TestApp,
    pub host: String,
    pub cookie: Option<String>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of `<input … name="NAME" … value="…">` in the page.
    pub fn input_value(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\"");
        let at = self.body.find(&marker)?;
        let tag_start = self.body[..at].rfind('<')?;
        let tag_end = at + self.body[at..].find('>')?;
        let tag = &self.body[tag_start..tag_end];
        let v = tag.find("value=\"")? + 7;
        let end = tag[v..].find('"')?;
        Some(tag[v..v + end].to_owned())
    }

    /// The text right inside the element with this id (up to its first child tag).
    pub fn text_of(&self, id: &str) -> Option<String> {
        let at = self.body.find(&format!("id=\"{id}\""))?;
        let start = at + self.body[at..].find('>')? + 1;
        let end = start + self.body[start..].find('<')?;
        Some(self.body[start..end].to_owned())
    }

    /// The `action` of the form with this id, or of the form around the element with this id
    /// (a button).
    pub fn form_action(&self, id: &str) -> Option<String> {
        let at = self.body.find(&format!("id=\"{id}\""))?;
        let tag_start = self.body[..at].rfind("<form")?;
        let tag = &self.body[tag_start..at + self.body[at..].find('>')?];
        let a = tag.find("action=\"")? + 8;
        let end = tag[a..].find('"')?;
        Some(tag[a..a + end].to_owned())
    }
}

impl Browser<'_> {
    fn keep_cookie(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            if let Some(rest) = v.strip_prefix("portcullis_session=") {
                let value = rest.split(';').next().unwrap_or("");
                self.cookie = (!value.is_empty() && !v.contains("Max-Age=0"))
                    .then(|| format!("portcullis_session={value}"));
            }
        }
    }

    /// Sends with this browser's cookie and keeps the cookie the answer sets.
    async fn send(&mut self, mut req: reqwest::RequestBuilder) -> Page {
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        self.keep_cookie(&headers);
        Page {
            status,
            headers,
            body: res.text().await.expect("body"),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.app.get(&self.host, path);
        self.send(req).await
    }

    /// Posts a form the way a browser without JavaScript does (urlencoded, Accept: text/html,
    /// Referer and Origin of this host).
    pub async fn post_form(
        &mut self,
        action: &str,
        fields: &[(&str, &str)],
        referer: &str,
    ) -> Page {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let req = self
            .app
            .client
            .post(self.app.url(action))
            .header(HOST, &self.host)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "text/html")
            .header(ORIGIN, format!("http://{}", self.host))
            .header(REFERER, format!("http://{}{referer}", self.host))
            .body(body);
        self.send(req).await
    }

    /// Signs in to the platform console with the platform token, like the no-JS form.
    pub async fn platform_sign_in(&mut self, token: &str) -> Page {
        let page = self.get("/").await;
        let csrf = page.input_value("csrf").expect("csrf field");
        let action = page
            .form_action("platform-sign-in-form")
            .expect("platform sign-in form");
        self.post_form(&action, &[("csrf", &csrf), ("token", token)], "/")
            .await;
        self.get("/").await
    }

    /// Signs in to the tenant console with an admin token, like the no-JS sign-in form.
    pub async fn sign_in(&mut self, token: &str) -> Page {
        let page = self.get("/admin").await;
        let csrf = page.input_value("csrf").expect("csrf field");
        let action = page.form_action("sign-in-form").expect("sign-in form");
        self.post_form(&action, &[("csrf", &csrf), ("token", token)], "/admin")
            .await;
        self.get("/admin").await
    }
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Runs `async fn NAME(engine: Engine)` as two tests, `NAME::sqlite` and `NAME::postgres`:
/// the same behaviour, proven on both engines.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Engine::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Engine::Postgres).await
                }
            }
        )*
    };
}

/// The `portcullis_session=…` pair from a response's Set-Cookie headers.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let rest = v.strip_prefix("portcullis_session=")?;
        Some(format!("portcullis_session={}", rest.split(';').next()?))
    })
}
