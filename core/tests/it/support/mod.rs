//! Test support: a real app over a real database (a SQLite file in a temp dir, or a
//! fresh PostgreSQL database that is dropped afterwards), a fake clock, and a small
//! request builder over the real router.
//!
//! Beside it: [`browser`] (real headless browsers through WebDriver), [`netns`] (a
//! network namespace for Firefox), [`relay`] (a TCP relay that can fail) and [`ws`]
//! (the signaling WebSocket client).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use chrono::{DateTime, Utc};
use confab_core::accounts::{self, NewUser, Role};
use confab_core::secret::Secret;
use confab_core::store::Store;
use confab_core::{App, Config, FakeClock};
use http_body_util::BodyExt;
use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use tower::ServiceExt;

pub mod browser;
pub mod netns;
pub mod relay;
pub mod ws;

/// Runs each listed `async fn name(app: TestApp)` once on SQLite (`…::sqlite::name`)
/// and once on PostgreSQL (`…::postgres::name`).
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::support::TestApp::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::support::TestApp::postgres().await).await
                }
            )*
        }
    };
}
pub(crate) use on_both_databases;

/// [`on_both_databases`] with the configuration changed by `tweak` (a
/// `fn(&mut Config)`) on both.
macro_rules! on_both_databases_with {
    ($tweak:ident, $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::support::TestApp::sqlite_with(super::$tweak).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::support::TestApp::postgres_with(super::$tweak).await).await
                }
            )*
        }
    };
}
pub(crate) use on_both_databases_with;

/// Whether `secret` has the shape of a link secret (`#k=…`): 22 characters of
/// unpadded base64url, 16 random bytes.
pub fn is_link_secret(secret: &str) -> bool {
    secret.len() == 22
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub const START: &str = "2026-11-21T12:00:00Z";
pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub router: Router,
    pub state: confab_core::AppState,
    pub clock: FakeClock,
    pub store: Store,
    _db: DbGuard,
    _data: Option<tempfile::TempDir>,
}

enum DbGuard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres {
        admin_url: String,
        name: String,
    },
    /// Another node's database: the first node's guard drops it.
    Shared,
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        if let DbGuard::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Dropping runs inside the test's runtime; use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(db) = Database::connect(&admin_url).await {
                        let _ = db
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

pub fn postgres_admin_url() -> String {
    std::env::var("CONFAB_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn test_config(database_url: String) -> Config {
    let mut config = Config::default();
    config.database.url = database_url;
    config.database.max_connections = 4;
    // Any free media ports, so that tests run side by side.
    config.media.udp_port = 0;
    config.media.tcp_port = 0;
    // Tests that want the bundled plugins switch them on (compiling them costs time).
    config.plugins.bundled = false;
    config
}

impl TestApp {
    pub async fn sqlite() -> Self {
        Self::sqlite_with(|_| {}).await
    }

    pub async fn sqlite_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(format!(
            "sqlite://{}/confab.db?mode=rwc",
            dir.path().display()
        ));
        config.data_dir = dir.path().to_path_buf();
        tweak(&mut config);
        Self::build(config, DbGuard::Sqlite(dir)).await
    }

    pub async fn postgres() -> Self {
        Self::postgres_with(|_| {}).await
    }

    pub async fn postgres_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let admin_url = postgres_admin_url();
        let name = format!(
            "confab_test_{}",
            confab_core::secret::random_base62(12).to_lowercase()
        );
        let admin = Database::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is needed for this test: {e}"));
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let mut db_url = url::Url::parse(&admin_url).unwrap();
        db_url.set_path(&format!("/{name}"));
        let guard = DbGuard::Postgres { admin_url, name };
        let mut config = test_config(db_url.to_string());
        // Plugins' files (bundled ones are written out) go to a directory of the test's.
        let dir = tempfile::tempdir().unwrap();
        config.data_dir = dir.path().to_path_buf();
        tweak(&mut config);
        let mut app = Self::build(config, guard).await;
        app._data = Some(dir);
        app
    }

    /// Another node of the same cluster as `self` (a PostgreSQL app with
    /// `cluster.nats_url` set): the same database and bus, its own node id, media
    /// ports and data directory. Drop it before `self`.
    pub async fn another_node(&self, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = (*self.state.config).clone();
        let dir = tempfile::tempdir().unwrap();
        config.data_dir = dir.path().to_path_buf();
        tweak(&mut config);
        let mut app = Self::build(config, DbGuard::Shared).await;
        app._data = Some(dir);
        app
    }

    /// A node of a cluster on PostgreSQL, already listening on loopback with
    /// `public_url` set to its address (as [`TestApp::served_with`]): the first node
    /// of a cluster of its own (`first` is `None`), or another node of `first`'s.
    pub async fn served_node(first: Option<&TestApp>, node_id: &str) -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = match first {
            None => {
                Self::postgres_with(|c| {
                    crate::cluster::first_node(c, node_id);
                    c.server.public_url = base.clone();
                })
                .await
            }
            Some(first) => {
                first
                    .another_node(|c| {
                        c.cluster.node_id = node_id.into();
                        c.server.public_url = base.clone();
                    })
                    .await
            }
        };
        app.serve_from(listener);
        (app, base)
    }

    /// A SQLite app already listening on loopback, with `public_url` set to its address
    /// (browsers send an Origin that must match it). Returns the app and its base URL.
    /// Like [`TestApp::served`], with a configuration tweak.
    pub async fn served_with(tweak: impl FnOnce(&mut Config)) -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Self::sqlite_with(|c| {
            c.server.public_url = base.clone();
            tweak(c);
        })
        .await;
        app.serve_from(listener);
        (app, base)
    }

    async fn build(config: Config, guard: DbGuard) -> Self {
        // `CONFAB_TEST_LOG=confab_core::sfu=debug` shows the server's logs for a test.
        if let Ok(filter) = std::env::var("CONFAB_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let clock = FakeClock::new(START.parse::<DateTime<Utc>>().unwrap());
        let mut app = App::build_with_clock(config, Arc::new(clock.clone()))
            .await
            .expect("app builds");
        app.start_media().expect("media ports open");
        app.start_relay();
        Self {
            router: app.router(),
            state: app.state().clone(),
            store: app.state().store.clone(),
            clock,
            _db: guard,
            _data: None,
        }
    }

    /// Serves the app on a loopback port (for WebSocket clients); returns `127.0.0.1:port`.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        self.serve_from(listener);
        addr.to_string()
    }

    /// Serves the app on `listener` until the test ends, as `confab serve` does: the
    /// server knows each client's address, and slow clients are timed out.
    fn serve_from(&self, listener: tokio::net::TcpListener) {
        tokio::spawn(confab_core::serve(
            listener,
            self.router.clone(),
            header_read_timeout(self),
            std::future::pending(),
        ));
    }

    pub fn req(&self, method: Method, path: &str) -> Req<'_> {
        Req {
            app: self,
            method,
            path: path.to_string(),
            headers: HeaderMap::new(),
            body: Body::empty(),
            peer: None,
        }
    }

    pub fn get(&self, path: &str) -> Req<'_> {
        self.req(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Req<'_> {
        self.req(Method::POST, path)
    }

    /// Creates a user directly and returns an API token for them.
    pub async fn user_with_token(&self, email: &str, role: Role) -> String {
        let now = self.clock_now();
        let account = accounts::create_user(
            &self.store,
            NewUser {
                email: email.into(),
                display_name: format!("User {email}"),
                password: Secret::new(PASSWORD.into()),
                role,
            },
            now,
        )
        .await
        .unwrap();
        accounts::issue_token(&self.store, account.id, "tests", now)
            .await
            .unwrap()
            .secret
            .expose()
            .to_string()
    }

    pub async fn admin_token(&self) -> String {
        self.user_with_token("admin@example.org", Role::Admin).await
    }

    /// Another token for the admin created by [`TestApp::admin_token`].
    pub async fn admin_token_again(&self) -> String {
        self.token_for("admin@example.org").await
    }

    /// A new API token for the existing user `email`.
    pub async fn token_for(&self, email: &str) -> String {
        let now = self.clock_now();
        let user = self
            .store
            .user_by_email(email)
            .await
            .unwrap()
            .expect("the user exists");
        accounts::issue_token(&self.store, user.id, "tests", now)
            .await
            .unwrap()
            .secret
            .expose()
            .to_string()
    }

    /// Starts the mail delivery worker, as `confab serve` does.
    pub fn start_mail(&self) -> confab_core::mail::Delivery {
        self.state
            .mail
            .start_delivery(&self.state.config, self.state.metrics.clone())
            .expect("mail delivery starts")
    }

    pub fn clock_now(&self) -> DateTime<Utc> {
        use confab_core::Clock;
        self.clock.now()
    }

    /// Creates a link through the API and returns its JSON.
    pub async fn create_link(&self, token: &str, title: &str) -> Value {
        let res = self
            .post("/api/v1/links")
            .bearer(token)
            .json(&serde_json::json!({ "title": title }))
            .send()
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        res.json()
    }

    /// The kinds of `link`'s call-metadata lines, once one of them is `kind` or after
    /// about a second: calls write metadata off their task, so a line lands a moment
    /// after what caused it.
    pub async fn call_event_kinds_with(&self, link: &str, kind: &str) -> Vec<String> {
        for attempt in 0..50 {
            let kinds: Vec<String> = self
                .store
                .call_events(link)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.kind)
                .collect();
            if attempt == 49 || kinds.iter().any(|k| k == kind) {
                return kinds;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        unreachable!("the last attempt returns")
    }

    /// Signs in through the web form; returns the browser's cookies (session + csrf) and the session's CSRF token.
    pub async fn sign_in(&self, email: &str) -> SignedIn {
        let page = self.get("/login").send().await;
        let csrf_cookie = page
            .cookie("confab_csrf")
            .expect("login page sets a CSRF cookie");
        let form = format!(
            "csrf={csrf_cookie}&email={}&password={}&next=%2Fdashboard",
            enc(email),
            enc(PASSWORD)
        );
        let res = self
            .post("/login")
            .cookie(&format!("confab_csrf={csrf_cookie}"))
            .form(&form)
            .send()
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        let session = res.cookie("confab_session").expect("session cookie");
        let csrf_cookie = res
            .cookie("confab_csrf")
            .expect("sign-in renews the CSRF cookie");
        let cookies = format!("confab_session={session}; confab_csrf={csrf_cookie}");
        let dashboard = self.get("/dashboard").cookie(&cookies).send().await;
        assert_eq!(dashboard.status, StatusCode::OK);
        let csrf = hidden_csrf(&dashboard.text());
        SignedIn {
            cookies,
            csrf,
            set_cookie: res.set_cookie_headers(),
        }
    }
}

pub fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The value of the first `name="csrf"` hidden field in a page.
pub fn hidden_csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("page has a csrf field")
        + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

/// The cookies and CSRF token of a signed-in session, as a browser holds them.
pub struct SignedIn {
    pub cookies: String,
    pub csrf: String,
    pub set_cookie: Vec<String>,
}

fn header_read_timeout(app: &TestApp) -> std::time::Duration {
    std::time::Duration::from_secs(u64::from(app.state.config.server.header_read_timeout_secs))
}

pub struct Req<'a> {
    app: &'a TestApp,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Body,
    peer: Option<SocketAddr>,
}

impl Req<'_> {
    /// Sends the request as if from `peer` (as the server sees clients' addresses).
    pub fn from(mut self, peer: IpAddr) -> Self {
        self.peer = Some(SocketAddr::new(peer, 40000));
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers
            .insert(name, HeaderValue::from_str(value).unwrap());
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn cookie(self, cookies: &str) -> Self {
        self.header("cookie", cookies)
    }

    pub fn json(mut self, value: &Value) -> Self {
        self.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self.body = Body::from(value.to_string());
        self
    }

    pub fn raw(mut self, content_type: &'static str, body: impl Into<Body>) -> Self {
        self.headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        self.body = body.into();
        self
    }

    pub fn form(self, body: &str) -> Self {
        self.raw("application/x-www-form-urlencoded", body.to_string())
    }

    pub async fn send(self) -> Res {
        let mut request = Request::builder()
            .method(self.method)
            .uri(&self.path)
            .body(self.body)
            .unwrap();
        *request.headers_mut() = self.headers;
        if let Some(peer) = self.peer {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        let response = self.app.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Res {
            status,
            headers,
            body,
        }
    }
}

pub struct Res {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Res {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The API error code, asserting the documented error shape.
    pub fn error_code(&self) -> String {
        let body = self.json();
        let message = body["error"]["message"].as_str().expect("error.message");
        assert!(!message.is_empty());
        body["error"]["code"]
            .as_str()
            .expect("error.code")
            .to_string()
    }

    pub fn set_cookie_headers(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookie_headers().iter().find_map(|c| {
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (n, v) = pair.split_once('=')?;
            (n == name && !v.is_empty()).then(|| v.to_string())
        })
    }

    pub fn location(&self) -> String {
        self.headers
            .get(header::LOCATION)
            .expect("Location")
            .to_str()
            .unwrap()
            .to_string()
    }
}

/// Decodes the entities tera's escaping produces, to compare what a browser shows.
pub fn unescape(html: &str) -> String {
    html.replace("&#x2F;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
