//! Faults of the services the app depends on, injected by a test that owns them: a private Redis
//! started and stopped here (issue 15, point 13).

use std::{process::Stdio, time::Duration};

use crate::{
    helpers::{Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    during_a_redis_outage_checks_fail_fast_and_redis_is_used_again_within_seconds_of_its_return,
);

/// A Redis server of this test's own, on a free port, keeping nothing on disk.
struct PrivateRedis {
    port: u16,
    child: Option<tokio::process::Child>,
}

impl PrivateRedis {
    async fn start_on(port: u16) -> Self {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (scripts/services.sh installs it)");
        let redis = Self {
            port,
            child: Some(child),
        };
        let client = redis::Client::open(redis.url()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
                {
                    return redis;
                }
            }
            assert!(std::time::Instant::now() < deadline, "redis did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port).await
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

async fn during_a_redis_outage_checks_fail_fast_and_redis_is_used_again_within_seconds_of_its_return(
    backend: Backend,
) {
    let mut redis = PrivateRedis::start().await;
    let app = TestApp::spawn_with(
        backend,
        &[
            ("REDIS_URL", &redis.url()),
            ("RATE_LIMIT_GENERAL", "100000/60"),
        ],
    )
    .await;
    let errors = |report: &serde_json::Value| report["backend_errors"].as_u64().unwrap();
    assert_eq!(app.get("/api/status").await.status(), 200);
    let report = app.admin_get("/api/admin/rate-limits").await;
    assert_eq!(report["redis_circuit"], "closed", "{report}");
    assert_eq!(errors(&report), 0, "Redis decided");

    redis.stop().await;
    // An outage of more than five seconds (the kind that took about 110 s to recover from).
    let outage = std::time::Instant::now();
    while outage.elapsed() < Duration::from_secs(6) {
        assert_eq!(
            app.get("/api/status").await.status(),
            200,
            "served meanwhile"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = app.admin_get("/api/admin/rate-limits").await;
    assert_eq!(report["redis_circuit"], "open", "{report}");
    assert_eq!(
        report["redis_circuit_trips"], 1,
        "one trip for the whole outage: every other check failed at once"
    );

    let back = PrivateRedis::start_on(redis.port).await;
    let returned = std::time::Instant::now();
    let deadline = returned + Duration::from_secs(10);
    loop {
        let before = errors(&app.admin_get("/api/admin/rate-limits").await);
        assert_eq!(app.get("/api/status").await.status(), 200);
        let report = app.admin_get("/api/admin/rate-limits").await;
        if report["redis_circuit"] == "closed" && errors(&report) == before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Redis is still not used 10 s after it came back: {report}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "Redis was used again {} ms after it came back",
        returned.elapsed().as_millis()
    );
    drop(back);
}
