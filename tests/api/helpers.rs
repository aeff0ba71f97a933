//! `TestApp::spawn(backend)`: the real app on `127.0.0.1:0` with a database of its own.
#![allow(dead_code)] // the shared harness: not every helper is used by every domain yet

use std::{collections::HashMap, net::SocketAddr, sync::OnceLock};

use autorisen::{app::App, config::Config, state::AppState};
use sqlx::{Connection, Executor, PgConnection};
use tokio::{sync::oneshot, task::JoinHandle};

/// The database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file in a temporary folder.
    Sqlite,
    /// A fresh PostgreSQL database, dropped when the test ends.
    Postgres,
}

/// Runs each named `async fn(Backend)` once on SQLite and once on PostgreSQL, as
/// `<name>::on_sqlite` and `<name>::on_postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis server tests use.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A database created for one test.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    pg_name: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestDb {
    /// Creates an empty database on `backend`.
    pub async fn create(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => Self {
                url: format!("sqlite://{}/test.db", dir.path().display()),
                pg_name: None,
                _dir: dir,
            },
            Backend::Postgres => {
                let name = format!("autorisen_t_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let mut conn = PgConnection::connect(&admin)
                    .await
                    .expect("PostgreSQL for tests (TEST_DATABASE_URL) must be reachable");
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                let mut url = url::Url::parse(&admin).expect("admin URL");
                url.set_path(&name);
                Self {
                    url: url.to_string(),
                    pg_name: Some(name),
                    _dir: dir,
                }
            }
        }
    }

    /// A folder that lives as long as the database.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs outside async; a short-lived runtime on its own thread does the clean-up.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&postgres_admin_url()).await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

/// The variables every test app starts with; a test overrides or adds its own.
pub fn base_vars(db: &TestDb) -> HashMap<String, String> {
    let data = db.dir().join("data");
    HashMap::from([
        ("AUTORISEN_ENV".into(), "test".into()),
        ("SECRET_KEY".into(), hex::encode(rand::random::<[u8; 32]>())),
        ("DATABASE_URL".into(), db.url.clone()),
        ("DATA_DIR".into(), data.display().to_string()),
        (
            "WEB_DIST_DIR".into(),
            db.dir().join("no-web-build").display().to_string(),
        ),
        ("DATABASE_MAX_CONNECTIONS".into(), "4".into()),
        // Shedding on the database queue is tested where it is the subject
        // (tests/api/overload.rs): elsewhere, bursts of concurrent requests on four connections
        // of a busy CI machine would be shed, and the behaviour under test not reached.
        ("DATABASE_QUEUE_TARGET_MS".into(), "0".into()),
        (
            "LOG_LEVEL".into(),
            std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into()),
        ),
        ("LOG_FORMAT".into(), "pretty".into()),
        // The per-IP `auth` policy (10/min) would trip flows that log in many times from one
        // address; tests/api/rate_limits.rs sets it low where the limit itself is tested.
        ("RATE_LIMIT_AUTH".into(), "100000/60".into()),
        // Mail is really delivered, to `.eml` files a test can read (`TestApp::mail_dir`).
        (
            "MAIL_TRANSPORT".into(),
            format!("file://{}", db.dir().join("mail").display()),
        ),
        ("MAIL_POLL_INTERVAL_MS".into(), "50".into()),
        // Keys of one test never meet another's in the shared Redis.
        (
            "REDIS_KEY_PREFIX".into(),
            format!("autorisen-test:{}:", uuid::Uuid::new_v4().simple()),
        ),
    ])
}

/// Waits (up to 20 s) until a server process at `address` answers `/health` with 200.
pub async fn wait_healthy(address: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Ok(res) = reqwest::get(format!("{address}/health")).await {
            if res.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server at {address} never became healthy");
}

/// Builds a configuration from variables, panicking with every problem listed.
pub fn config_from(vars: &HashMap<String, String>) -> Config {
    autorisen::app::load_config(&|k| vars.get(k).cloned()).unwrap_or_else(|e| panic!("{e}"))
}

fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if let Ok(level) = std::env::var("TEST_LOG") {
            std::mem::forget(autorisen::telemetry::init(
                autorisen::config::LogFormat::Pretty,
                &level,
            ));
        }
    });
}

/// A running app and an HTTP client pointed at it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// A client that keeps cookies and never follows redirects.
    pub client: reqwest::Client,
    /// The app's state (to reach its database directly in assertions).
    pub state: AppState,
    /// Which backend it runs on.
    pub backend: Backend,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    admin: tokio::sync::OnceCell<String>,
    /// The database; dropped after the server.
    pub db: TestDb,
}

impl TestApp {
    /// Starts the app on `backend` with the default test configuration.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// Starts the app with extra or overriding variables.
    pub async fn spawn_with(backend: Backend, vars: &[(&str, &str)]) -> Self {
        let db = TestDb::create(backend).await;
        let mut all = base_vars(&db);
        for (k, v) in vars {
            all.insert((*k).into(), (*v).into());
        }
        Self::start(backend, db, config_from(&all)).await
    }

    /// Starts the app with a configuration built by the test, on a database it created.
    pub async fn start(backend: Backend, db: TestDb, config: Config) -> Self {
        init_logs();
        let app = App::build(config).await.expect("app builds");
        let state = app.state().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.serve(listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        Self {
            address: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .build()
                .unwrap(),
            state,
            backend,
            shutdown: Some(tx),
            server: Some(server),
            admin: tokio::sync::OnceCell::new(),
            db,
        }
    }

    /// The folder the default test configuration delivers mail to.
    pub fn mail_dir(&self) -> std::path::PathBuf {
        self.db.dir().join("mail")
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Asserts that a response is a problem+json document with `status`, and returns it.
pub async fn assert_problem(res: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(ct, "application/problem+json", "content type");
    let request_id = res
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = res.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status, "status in body: {body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")),
        "{body}"
    );
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["request_id"], request_id,
        "request id in body matches the header"
    );
    body
}

impl TestApp {
    /// The bearer token of an admin made for this app without HTTP, so that making it spends no
    /// rate-limit budget and works even when the test client is banned. Made once per app.
    pub async fn admin_token(&self) -> String {
        self.admin
            .get_or_init(|| async {
                let state = &self.state;
                let email = format!("ops-{}@example.test", uuid::Uuid::new_v4().simple());
                let id = autorisen::domains::users::create_admin::create_admin(
                    &state.db,
                    &email,
                    "Ops",
                    "Admin",
                    crate::auth_helpers::PASSWORD,
                )
                .await
                .expect("admin created");
                let user = autorisen::domains::users::service::user_by_id(state.db.pool(), &id)
                    .await
                    .unwrap()
                    .expect("admin exists");
                let meta = autorisen::domains::audit::RequestMeta::cli();
                let mut tx = state.db.begin().await.unwrap();
                let (sid, refresh) =
                    autorisen::domains::auth::service::start_session(state, &mut tx, &user, &meta)
                        .await
                        .expect("session");
                tx.commit().await.unwrap();
                autorisen::domains::auth::service::token_response(state, &user, &sid, refresh)
                    .expect("tokens")
                    .access_token
            })
            .await
            .clone()
    }

    /// `GET path` as the operator, expecting 200, as JSON.
    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        let res = self
            .client
            .get(self.url(path))
            .bearer_auth(self.admin_token().await)
            .send()
            .await
            .expect("request sent");
        assert_eq!(res.status(), 200, "{path}");
        res.json().await.expect("JSON")
    }

    /// A header of a response as text (empty when absent).
    pub fn header(res: &reqwest::Response, name: &str) -> String {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}
