//! Two server processes of the real binary on one PostgreSQL database and one Redis: they
//! share one rate-limit budget and one ban list.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::helpers::{redis_url, wait_healthy, Backend, TestDb};

/// A running `autorisen serve`, killed when dropped.
struct Instance {
    child: Child,
    address: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(vars: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autorisen"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

async fn start(vars: &[(String, String)]) -> Instance {
    let port = free_port();
    let child = command(vars)
        .env("PORT", port.to_string())
        .arg("serve")
        .spawn()
        .unwrap();
    let instance = Instance {
        child,
        address: format!("http://127.0.0.1:{port}"),
    };
    wait_healthy(&instance.address).await;
    instance
}

const LIMIT: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_budget_and_one_ban_list() {
    let db = TestDb::create(Backend::Postgres).await;
    let vars: Vec<(String, String)> = [
        ("AUTORISEN_ENV", "test".to_string()),
        ("HOST", "127.0.0.1".into()),
        ("DATABASE_URL", db.url.clone()),
        ("DATA_DIR", db.dir().join("data").display().to_string()),
        ("WEB_DIST_DIR", db.dir().join("none").display().to_string()),
        ("SECRET_KEY", hex::encode(rand::random::<[u8; 32]>())),
        ("REDIS_URL", redis_url()),
        (
            "REDIS_KEY_PREFIX",
            format!("autorisen-test:{}:", uuid::Uuid::new_v4().simple()),
        ),
        // An hour-long window: the budget refills one request every 18 s, longer than the test.
        ("RATE_LIMIT_GENERAL", format!("{LIMIT}/3600")),
        // High enough that the refusals of the budget phase (1 point each) ban no one.
        ("ABUSE_BAN_THRESHOLD", "300".into()),
        ("BAN_SYNC_SECONDS", "1".into()),
        ("LOG_LEVEL", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // The release phase migrates once; then both instances start on the same schema.
    assert!(command(&vars).arg("migrate").status().unwrap().success());
    let a = start(&vars).await;
    let b = start(&vars).await;

    // Twice the budget, spread over both instances by concurrent workers.
    let client = reqwest::Client::new();
    let mut workers = Vec::new();
    for w in 0..8 {
        let (client, url) = (
            client.clone(),
            format!(
                "{}/api/status",
                if w % 2 == 0 { &a.address } else { &b.address }
            ),
        );
        workers.push(tokio::spawn(async move {
            let mut admitted = 0;
            for _ in 0..(2 * LIMIT / 8) {
                let status = client.get(&url).send().await.unwrap().status();
                assert!(status == 200 || status == 429, "{status}");
                admitted += usize::from(status == 200);
            }
            admitted
        }));
    }
    let mut admitted = 0;
    for w in workers {
        admitted += w.await.unwrap();
    }
    assert!(admitted >= LIMIT, "the whole budget is usable: {admitted}");
    assert!(
        admitted <= LIMIT + LIMIT / 100,
        "at most {LIMIT} (+1%) in total: {admitted}"
    );

    // Probing instance a (5 points a probe) gets the client banned; instance b honours the ban.
    let mut banned_on_a = false;
    for _ in 0..80 {
        if client
            .get(format!("{}/.env", a.address))
            .send()
            .await
            .unwrap()
            .status()
            == 403
        {
            banned_on_a = true;
            break;
        }
    }
    assert!(banned_on_a, "instance a bans the prober");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let res = client
            .get(format!("{}/api/status", b.address))
            .send()
            .await
            .unwrap();
        if res.status() == 403 {
            assert!(res.headers().contains_key("retry-after"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance b never honoured the ban"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
