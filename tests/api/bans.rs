//! Abuse scoring and escalating temporary bans, shared through the database or Redis.

use std::time::{Duration, Instant};

use crate::{
    helpers::{assert_problem, base_vars, config_from, redis_url, Backend, TestApp, TestDb},
    on_both_backends,
};

on_both_backends!(
    probing_scanner_paths_gets_the_client_banned_with_a_403_and_retry_after,
    bans_escalate_from_one_minute_to_ten_and_lifting_keeps_the_strike,
    repeated_429s_get_the_client_banned,
    an_operator_can_ban_an_address_by_hand_and_lift_it,
    lifting_an_address_that_is_not_banned_is_a_404,
    a_ban_request_lists_every_invalid_field_in_one_422,
    a_ban_request_that_is_not_json_is_a_415,
    a_ban_request_over_its_route_body_limit_is_a_413,
    a_body_nested_too_deeply_is_a_400,
    a_ban_made_by_one_instance_is_honoured_by_another_sharing_the_database,
    a_ban_made_by_one_instance_is_honoured_by_another_sharing_redis,
    an_ipv6_ban_covers_the_clients_whole_slash_64,
    ban_records_that_can_no_longer_escalate_are_pruned_by_their_scheduled_job,
    the_prune_job_empties_old_records_from_the_shared_redis_ban_list,
);

const PROBING: &[(&str, &str)] = &[("ABUSE_BAN_THRESHOLD", "10")];

async fn probe_until_banned(app: &TestApp) -> reqwest::Response {
    for _ in 0..5 {
        let res = app.get("/.env").await;
        if res.status() == 403 {
            return res;
        }
        assert_eq!(res.status(), 404);
    }
    panic!("never banned");
}

async fn probing_scanner_paths_gets_the_client_banned_with_a_403_and_retry_after(backend: Backend) {
    let app = TestApp::spawn_with(backend, PROBING).await;
    assert_eq!(
        app.get("/wp-admin/setup.php").await.status(),
        404,
        "5 points of 10"
    );
    let banned = app.get("/.env").await;
    assert_eq!(TestApp::header(&banned, "retry-after"), "60");
    assert_problem(banned, 403).await;
    assert_problem(app.get("/api/status").await, 403).await;
    assert_eq!(app.get("/health").await.status(), 200, "probes stay exempt");
}

async fn bans_escalate_from_one_minute_to_ten_and_lifting_keeps_the_strike(backend: Backend) {
    let app = TestApp::spawn_with(backend, PROBING).await;
    probe_until_banned(&app).await;
    // The operator is banned too (same address), so list through the state's store.
    let bans = app.state.edge.bans.list().await.unwrap();
    assert_eq!((bans.len(), bans[0].level), (1, 1));
    assert!(app
        .state
        .edge
        .bans
        .lift("127.0.0.1".parse().unwrap())
        .await
        .unwrap());
    assert_eq!(app.get("/api/status").await.status(), 200, "lifted");
    let again = probe_until_banned(&app).await;
    let retry: u64 = TestApp::header(&again, "retry-after").parse().unwrap();
    assert!(
        (590..=600).contains(&retry),
        "second ban is ten minutes: {retry}"
    );
    let bans = app.state.edge.bans.list().await.unwrap();
    assert_eq!(bans[0].level, 2);
}

async fn repeated_429s_get_the_client_banned(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[("RATE_LIMIT_GENERAL", "1/60"), ("ABUSE_BAN_THRESHOLD", "3")],
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(app.get("/api/status").await.status().as_u16());
    }
    assert_eq!(statuses, [200, 429, 429, 403, 403]);
}

async fn an_operator_can_ban_an_address_by_hand_and_lift_it(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[]).await;
    let res = app
        .client
        .post(app.url("/api/admin/bans"))
        .bearer_auth(app.admin_token().await)
        .json(&serde_json::json!({"ip": "203.0.113.9", "reason": "credential stuffing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let ban: serde_json::Value = res.json().await.unwrap();
    assert_eq!(ban["level"], 1);
    let list = app.admin_get("/api/admin/bans").await;
    assert_eq!(list["bans"][0]["ip"], "203.0.113.9", "{list}");
    assert!(list["bans"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("credential stuffing"));
    assert!(list["bans"][0]["until"].as_str().unwrap().ends_with('Z'));
    let lifted = app
        .client
        .delete(app.url("/api/admin/bans/203.0.113.9"))
        .bearer_auth(app.admin_token().await)
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 204);
    assert_eq!(
        app.admin_get("/api/admin/bans").await["bans"],
        serde_json::json!([])
    );
}

async fn lifting_an_address_that_is_not_banned_is_a_404(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[]).await;
    let res = app
        .client
        .delete(app.url("/api/admin/bans/198.51.100.4"))
        .bearer_auth(app.admin_token().await)
        .send()
        .await
        .unwrap();
    assert_problem(res, 404).await;
}

async fn post_ban(
    app: &TestApp,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/admin/bans"))
        .bearer_auth(app.admin_token().await)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn a_ban_request_lists_every_invalid_field_in_one_422(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[]).await;
    let body = serde_json::json!({"ip": "not-an-ip", "reason": "bell\u{7}"}).to_string();
    let problem = assert_problem(post_ban(&app, "application/json", body).await, 422).await;
    let fields: Vec<_> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].clone())
        .collect();
    assert_eq!(fields, ["ip", "reason"], "{problem}");
}

async fn a_ban_request_that_is_not_json_is_a_415(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[]).await;
    let res = post_ban(&app, "text/plain", r#"{"ip":"203.0.113.1","reason":"x"}"#).await;
    assert_problem(res, 415).await;
}

async fn a_ban_request_over_its_route_body_limit_is_a_413(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[]).await;
    let body = serde_json::json!({"ip": "203.0.113.1", "reason": "x".repeat(5000)}).to_string();
    assert_problem(post_ban(&app, "application/json", body).await, 413).await;
}

async fn a_body_nested_too_deeply_is_a_400(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[]).await;
    let body = format!(
        r#"{{"ip":{}1{},"reason":"x"}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    let problem = assert_problem(post_ban(&app, "application/json", body).await, 400).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("nested"),
        "{problem}"
    );
}

async fn a_ban_made_by_one_instance_is_honoured_by_another_sharing_the_database(backend: Backend) {
    let db = TestDb::create(backend).await;
    let mut vars = base_vars(&db);
    vars.insert("ABUSE_BAN_THRESHOLD".into(), "10".into());
    vars.insert("BAN_SYNC_SECONDS".into(), "1".into());
    let url = db.url.clone();
    let a = TestApp::start(backend, db, config_from(&vars)).await;
    let other = TestDb::create(Backend::Sqlite).await;
    vars.insert("DATABASE_URL".into(), url);
    let b = TestApp::start(backend, other, config_from(&vars)).await;
    assert_eq!(b.get("/api/status").await.status(), 200);
    probe_until_banned(&a).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = b.get("/api/status").await.status();
        if status == 403 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance b never honoured the ban"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_ban_made_by_one_instance_is_honoured_by_another_sharing_redis(backend: Backend) {
    let prefix = format!("autorisen-test:{}:", uuid::Uuid::new_v4().simple());
    let redis = redis_url();
    let vars = [
        ("ABUSE_BAN_THRESHOLD", "10"),
        ("BAN_SYNC_SECONDS", "1"),
        ("REDIS_URL", redis.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    let a = TestApp::spawn_with(backend, &vars).await;
    let b = TestApp::spawn_with(backend, &vars).await;
    probe_until_banned(&a).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.get("/api/status").await.status() != 403 {
        assert!(
            Instant::now() < deadline,
            "instance b never honoured the ban"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.state.edge.bans.list().await.unwrap()[0].level, 1);
}

/// Regression (security review): bans keyed on the full IPv6 address were escaped by moving to
/// another address of the same /64, which one subscriber usually holds.
async fn an_ipv6_ban_covers_the_clients_whole_slash_64(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let res = app
        .client
        .post(app.url("/api/admin/bans"))
        .bearer_auth(app.admin_token().await)
        .json(&serde_json::json!({"ip": "2001:db8:1:2::5", "reason": "stuffing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let from = |ip: &'static str| {
        app.client
            .get(app.url("/api/status"))
            .header("x-forwarded-for", ip)
            .send()
    };
    assert_problem(from("2001:db8:1:2::99").await.unwrap(), 403).await;
    assert_eq!(
        from("2001:db8:1:3::1").await.unwrap().status(),
        200,
        "another /64"
    );
    let list = app.admin_get("/api/admin/bans").await;
    assert_eq!(list["bans"][0]["ip"], "2001:db8:1:2::", "{list}");
    let lifted = app
        .client
        .delete(app.url("/api/admin/bans/2001:db8:1:2::abcd"))
        .bearer_auth(app.admin_token().await)
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 204);
    assert_eq!(from("2001:db8:1:2::99").await.unwrap().status(), 200);
}

/// Runs the `protection.prune_bans` schedule now, as an admin, and waits for its job to finish.
async fn run_ban_prune(app: &TestApp) {
    let token = app.admin_token().await;
    let res = app
        .client
        .post(app.url("/api/admin/jobs/schedules/protection.prune_bans/run"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let body: serde_json::Value = res.json().await.unwrap();
    let id = body["job_id"].as_str().unwrap().to_owned();
    crate::jobs::until_state(&app.state.db, &id, "done").await;
}

async fn ban_records_that_can_no_longer_escalate_are_pruned_by_their_scheduled_job(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let day = 86_400_000_000i64;
    let now = autorisen::db::types::now_micros();
    // (address, banned at, until): long over; over but recent (still escalates); running.
    let rows = [
        ("203.0.113.1", now - 30 * day, now - 30 * day + 60_000_000),
        ("203.0.113.2", now - 3_600_000_000, now - 3_000_000_000),
        ("203.0.113.3", now - 60_000_000, now + day),
    ];
    for (ip, banned_at, until) in rows {
        sqlx::query(
            "INSERT INTO edge_bans (ip, reason, level, banned_at, until_at, updated_at) \
             VALUES ($1, 'test', 1, $2, $3, $2)",
        )
        .bind(ip)
        .bind(banned_at)
        .bind(until)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    }
    run_ban_prune(&app).await;
    let left: Vec<String> = sqlx::query_scalar("SELECT ip FROM edge_bans ORDER BY ip")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(left, vec!["203.0.113.2", "203.0.113.3"]);
}

async fn the_prune_job_empties_old_records_from_the_shared_redis_ban_list(backend: Backend) {
    let prefix = format!("autorisen-test:{}:", uuid::Uuid::new_v4().simple());
    let app = TestApp::spawn_with(
        backend,
        &[
            ("REDIS_URL", redis_url().as_str()),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
        ],
    )
    .await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}bans");
    let now = autorisen::db::types::now_micros();
    let old = serde_json::json!({"ip": "198.51.100.7", "reason": "old", "level": 1,
        "banned_at": now - 40 * 86_400_000_000i64, "until": now - 39 * 86_400_000_000i64});
    let running = serde_json::json!({"ip": "198.51.100.8", "reason": "now", "level": 1,
        "banned_at": now, "until": now + 600_000_000});
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("198.51.100.7")
        .arg(old.to_string())
        .arg("198.51.100.8")
        .arg(running.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    run_ban_prune(&app).await;
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fields, vec!["198.51.100.8"]);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
}
