//! Overload and a database that stops answering (issue 15, points 14 and 15), on the real binary
//! with its JSON log: requests the database cannot serve in time are shed at once with one
//! summary log line, a database that is down fails requests fast and is noticed when it returns,
//! and a request that times out says when to retry and which route it was.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    auth_helpers::PASSWORD,
    helpers::{base_vars, postgres_admin_url, wait_healthy, Backend, TestDb},
    on_both_backends,
};

on_both_backends!(
    requests_are_shed_at_once_while_the_database_queue_is_longer_than_its_target,
    a_request_that_times_out_gets_retry_after_and_its_route_in_the_log,
);

/// The real binary serving on a free port, its JSON log in a file; killed when dropped.
struct Server {
    child: Child,
    address: String,
    log: PathBuf,
    client: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(db: &TestDb, database_url: &str, vars: &[(&str, &str)]) -> Self {
        let mut all: HashMap<String, String> = base_vars(db);
        all.insert("DATABASE_URL".into(), database_url.into());
        all.insert("LOG_FORMAT".into(), "json".into());
        all.insert("LOG_LEVEL".into(), "info".into());
        all.insert("RATE_LIMIT_MODE".into(), "off".into());
        for (k, v) in vars {
            all.insert((*k).into(), (*v).into());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = db.dir().join("server.log");
        let child = Command::new(env!("CARGO_BIN_EXE_autorisen"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&all)
            .env("PORT", port.to_string())
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log,
            client: reqwest::Client::new(),
        };
        wait_healthy(&server.address).await;
        server
    }

    /// Registers a customer; returns its access token.
    async fn customer(&self) -> String {
        let res = self
            .client
            .post(format!("{}/api/auth/register", self.address))
            .json(&json!({
                "email": format!("load.{}@example.com", uuid::Uuid::new_v4().simple()),
                "password": PASSWORD,
                "first_name": "Load",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn me(&self, token: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}/api/auth/me", self.address))
            .bearer_auth(token)
    }

    /// A profile update: a write, which the blocker holds up.
    fn update(&self, token: &str) -> reqwest::RequestBuilder {
        self.client
            .patch(format!("{}/api/auth/me", self.address))
            .bearer_auth(token)
            .json(&json!({"first_name": "Waiting"}))
    }

    /// The JSON log lines written so far.
    fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// The message and a field of a JSON log line (fields may sit under `fields`).
fn field<'a>(line: &'a Value, name: &str) -> &'a Value {
    if !line[name].is_null() {
        return &line[name];
    }
    &line["fields"][name]
}

/// A transaction from outside the server that holds every write back: PostgreSQL locks the
/// audit table (every write request records an audit event), SQLite takes the write lock.
enum Blocker {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

impl Blocker {
    async fn hold(backend: Backend, url: &str) -> Self {
        match backend {
            Backend::Postgres => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                conn.execute("BEGIN").await.unwrap();
                conn.execute("LOCK TABLE audit_events IN EXCLUSIVE MODE")
                    .await
                    .unwrap();
                Self::Postgres(conn)
            }
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(url).await.unwrap();
                conn.execute("BEGIN IMMEDIATE").await.unwrap();
                Self::Sqlite(conn)
            }
        }
    }

    async fn release(self) {
        match self {
            Self::Postgres(mut conn) => conn.execute("ROLLBACK").await.map(drop).unwrap(),
            Self::Sqlite(mut conn) => conn.execute("ROLLBACK").await.map(drop).unwrap(),
        }
    }
}

async fn requests_are_shed_at_once_while_the_database_queue_is_longer_than_its_target(
    backend: Backend,
) {
    let db = TestDb::create(backend).await;
    let server = Server::start(
        &db,
        &db.url,
        &[
            ("DATABASE_MAX_CONNECTIONS", "2"),
            ("DATABASE_QUEUE_TARGET_MS", "100"),
        ],
    )
    .await;
    let token = server.customer().await;
    assert_eq!(server.me(&token).send().await.unwrap().status(), 200);

    // Both connections held by writes waiting on the blocker, four more writes queued.
    let blocker = Blocker::hold(backend, &db.url).await;
    let writes: Vec<JoinHandle<u16>> = (0..6)
        .map(|_| {
            let request = server.update(&token);
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A request now would queue behind them for as long as the blocker lasts: it is shed.
    let mut sheds = 0;
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let res = server.me(&token).send().await.unwrap();
        let took = started.elapsed();
        slowest = slowest.max(took);
        assert_eq!(res.status(), 503, "answered after {took:?}");
        assert!(took < Duration::from_millis(300), "shed after {took:?}");
        assert_eq!(res.headers()["retry-after"], "1");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["detail"], "The service is at capacity; retry shortly.");
        sheds += 1;
    }

    eprintln!("shed in at most {slowest:?}");
    // Once the database serves again, the queued writes finish and requests are admitted.
    blocker.release().await;
    for write in writes {
        assert_eq!(write.await.unwrap(), 200, "a queued write was served");
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let status = server.me(&token).send().await.unwrap().status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        sheds += 1;
        assert!(Instant::now() < deadline, "still shedding");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The sheds are summarised, not logged one line each (the upkeep flushes within 2 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let lines = server.log_lines();
    let shed_total: u64 = lines
        .iter()
        .filter(|l| field(l, "message") == "requests shed")
        .inspect(|l| assert_eq!(field(l, "reason"), "database_queue", "{l}"))
        .map(|l| field(l, "count").as_u64().unwrap())
        .sum();
    assert_eq!(shed_total, sheds);
    let shed_access_lines = lines
        .iter()
        .filter(|l| field(l, "message") == "request finished" && field(l, "status") == 503)
        .count();
    assert_eq!(
        shed_access_lines, 0,
        "shed requests have no access-log line"
    );
}

async fn a_request_that_times_out_gets_retry_after_and_its_route_in_the_log(backend: Backend) {
    let db = TestDb::create(backend).await;
    // Queue shedding off: the write waits on the blocker until the request timeout.
    let server = Server::start(
        &db,
        &db.url,
        &[
            ("REQUEST_TIMEOUT_SECONDS", "1"),
            ("DATABASE_QUEUE_TARGET_MS", "0"),
        ],
    )
    .await;
    let token = server.customer().await;
    let blocker = Blocker::hold(backend, &db.url).await;
    let res = server.update(&token).send().await.unwrap();
    blocker.release().await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "a problem document"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let timed_out: Vec<Value> = server
        .log_lines()
        .into_iter()
        .filter(|l| field(l, "message") == "request finished" && field(l, "status") == 503)
        .collect();
    assert_eq!(timed_out.len(), 1, "{timed_out:?}");
    assert_eq!(field(&timed_out[0], "route"), "/api/auth/me");
}

/// A TCP proxy in front of PostgreSQL that the test can take down (every connection cut, new
/// ones refused) and bring back on the same port.
struct Outage {
    port: u16,
    target: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Outage {
    async fn new(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let outage = Self {
            port,
            target,
            tasks: Arc::default(),
        };
        outage.serve(listener);
        outage
    }

    fn serve(&self, listener: TcpListener) {
        let (target, tasks) = (self.target.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let target = target.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Cuts every connection and refuses new ones.
    fn down(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Accepts connections again on the same port.
    async fn up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_requests_fail_at_once_while_the_database_is_down_and_recover_when_it_returns()
{
    // SQLite is a file in the process, never "down" this way: its storage faults are
    // tests/api/storage_faults.rs.
    let db = TestDb::create(Backend::Postgres).await;
    let admin = url::Url::parse(&postgres_admin_url()).unwrap();
    let outage = Outage::new(format!(
        "{}:{}",
        admin.host_str().unwrap(),
        admin.port().unwrap_or(5432)
    ))
    .await;
    let mut via_proxy = url::Url::parse(&db.url).unwrap();
    via_proxy.set_host(Some("127.0.0.1")).unwrap();
    via_proxy.set_port(Some(outage.port)).unwrap();
    let server = Server::start(&db, via_proxy.as_str(), &[]).await;
    let token = server.customer().await;
    assert_eq!(server.me(&token).send().await.unwrap().status(), 200);

    outage.down();
    // The server notices within about a second (its sampler's connection is cut, or a new one
    // is refused for a second); until then a request may wait or fail on its own.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut fast = 0;
    let (down, mut slowest) = (Instant::now(), Duration::ZERO);
    while fast < 5 {
        assert!(Instant::now() < deadline, "requests never failed fast");
        let started = Instant::now();
        let res = server.me(&token).send().await.unwrap();
        let took = started.elapsed();
        assert_eq!(res.status(), 503, "while the database is down");
        let retry_after = res.headers()["retry-after"].to_str().unwrap().to_owned();
        let body: Value = res.json().await.unwrap();
        // Before the server knows, a request fails on its own (its connection was cut, or no
        // connection could be opened); once it knows, every request is shed at once.
        if body["detail"] == "The database is unavailable; retry shortly." {
            assert!(took < Duration::from_millis(200), "shed after {took:?}");
            assert_eq!(retry_after, "5");
            slowest = slowest.max(took);
            fast += 1;
        }
    }

    eprintln!(
        "5 requests answered at once, in at most {slowest:?}, {:?} after the outage began",
        down.elapsed()
    );
    outage.up().await;
    let back = Instant::now();
    loop {
        let status = server.me(&token).send().await.unwrap().status();
        if status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not admitted again: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "admitted again {:?} after the database returned",
        back.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = server.log_lines();
    assert!(
        lines.iter().any(
            |l| field(l, "message") == "requests shed" && field(l, "reason") == "database_down"
        ),
        "{lines:?}"
    );
}
