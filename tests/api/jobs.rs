//! The job runner, driven from the library: claims across instances, takeover after a dead
//! runner's lease, heartbeats, backoff until dead, idempotency keys and schedules.

mod admin;
mod config;

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use autorisen::{
    db::{migrate, types::now_micros, Db},
    jobs::{
        from_fn, Every, Handler, JobContext, JobError, JobState, Jobs, NewJob, Registry, Runner,
        RunnerOptions, Schedule,
    },
};
use futures::future::BoxFuture;
use serde_json::json;
use sqlx::Row;
use tokio::sync::Notify;

use crate::{
    helpers::{Backend, TestDb},
    on_both_backends,
};

on_both_backends!(
    a_queued_job_runs_exactly_once_with_two_runners_on_one_database,
    a_job_whose_runner_dies_mid_lease_is_run_again_by_the_other_runner_after_the_lease,
    a_long_job_renews_its_lease_so_no_other_runner_takes_it_over,
    a_failing_job_backs_off_and_ends_dead_after_its_attempts,
    a_duplicate_idempotency_key_creates_no_second_job,
    a_scheduled_job_fires_once_per_period_across_two_instances,
    a_job_of_a_kind_nobody_handles_ends_dead_with_a_clear_error,
    a_job_whose_last_attempt_was_lost_ends_dead_without_running_again,
);

/// A migrated database and a second pool on it, as two instances would have.
async fn two_instances(backend: Backend) -> (TestDb, Db, Db) {
    let test_db = TestDb::create(backend).await;
    let a = Db::connect(&test_db.url, 8).await.unwrap();
    migrate::run(&a).await.unwrap();
    let b = Db::connect(&test_db.url, 8).await.unwrap();
    (test_db, a, b)
}

/// Runner options that keep tests quick.
pub fn fast(instance: &str, lease: Duration) -> RunnerOptions {
    RunnerOptions {
        instance_id: instance.into(),
        lease,
        poll_interval: Duration::from_millis(50),
        concurrency: 4,
        retry_base: Duration::from_millis(200),
        max_backoff: Duration::from_secs(5),
        stop_grace: Duration::from_secs(5),
    }
}

/// Which instance ran a job, and when (Unix microseconds).
type Run = (String, i64);

/// Who ran each job and when, in order.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, Vec<Run>>>>);

impl Runs {
    fn record(&self, job: &str, instance: &str) -> usize {
        let mut all = self.0.lock().unwrap();
        let runs = all.entry(job.to_owned()).or_default();
        runs.push((instance.to_owned(), now_micros()));
        runs.len()
    }

    fn of(&self, job: &str) -> Vec<Run> {
        self.0.lock().unwrap().get(job).cloned().unwrap_or_default()
    }

    fn all(&self) -> HashMap<String, Vec<Run>> {
        self.0.lock().unwrap().clone()
    }
}

/// A handler that records its runs and succeeds.
fn counting(runs: &Runs, instance: &str) -> impl Handler {
    let (runs, instance) = (runs.clone(), instance.to_owned());
    from_fn(move |job| {
        runs.record(&job.id, &instance);
        async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        }
    })
}

/// A handle whose registry runs `kind` with `handler`.
fn jobs_with(db: &Db, kind: &str, handler: impl Handler) -> Jobs {
    let mut registry = Registry::new();
    registry.register(kind, handler);
    Jobs::new(db.clone(), registry)
}

/// Queues `new` in a committed transaction and wakes the runner, as a service would.
pub async fn queue(db: &Db, jobs: &Jobs, new: Vec<NewJob>) -> Vec<String> {
    let mut tx = db.begin().await.unwrap();
    let mut ids = Vec::new();
    for job in new {
        ids.push(jobs.enqueue(&mut tx, job).await.unwrap());
    }
    tx.commit().await.unwrap();
    jobs.wake();
    ids
}

/// Polls `check` until it gives a value, for at most 15 s.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The fields of a job row the assertions need.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub state: String,
    pub attempts: i64,
    pub run_at: i64,
    pub updated_at: i64,
    pub lease_until: Option<i64>,
    pub leased_by: Option<String>,
    pub last_error: Option<String>,
    pub finished_at: Option<i64>,
}

/// Job `id` as stored.
pub async fn row(db: &Db, id: &str) -> JobRow {
    let r = sqlx::query(
        "SELECT state, attempts, run_at, updated_at, lease_until, leased_by, last_error, \
         finished_at FROM jobs WHERE id = $1",
    )
    .bind(id.to_owned())
    .fetch_one(db.pool())
    .await
    .unwrap();
    JobRow {
        state: r.get("state"),
        attempts: r.get("attempts"),
        run_at: r.get("run_at"),
        updated_at: r.get("updated_at"),
        lease_until: r.get("lease_until"),
        leased_by: r.get("leased_by"),
        last_error: r.get("last_error"),
        finished_at: r.get("finished_at"),
    }
}

/// Waits until job `id` is in `state`, and returns it.
pub async fn until_state(db: &Db, id: &str, state: &str) -> JobRow {
    eventually(&format!("job {id} {state}"), || async {
        let r = row(db, id).await;
        (r.state == state).then_some(r)
    })
    .await
}

async fn a_queued_job_runs_exactly_once_with_two_runners_on_one_database(backend: Backend) {
    const JOBS: usize = 60;
    let (_db, db_a, db_b) = two_instances(backend).await;
    let runs = Runs::default();
    let jobs_a = jobs_with(&db_a, "work", counting(&runs, "a"));
    let jobs_b = jobs_with(&db_b, "work", counting(&runs, "b"));
    let _a = Runner::spawn(&jobs_a, fast("a", Duration::from_secs(30)));
    let _b = Runner::spawn(&jobs_b, fast("b", Duration::from_secs(30)));

    let new = (0..JOBS)
        .map(|n| NewJob::new("work", json!({"n": n})))
        .collect();
    let ids = queue(&db_a, &jobs_a, new).await;
    jobs_b.wake();

    for id in &ids {
        let done = until_state(&db_a, id, "done").await;
        assert_eq!(done.attempts, 1, "{id}");
        assert!(
            done.finished_at.is_some() && done.leased_by.is_none(),
            "{done:?}"
        );
    }
    let runs = runs.all();
    assert_eq!(runs.len(), JOBS, "every job ran");
    for id in &ids {
        assert_eq!(runs[id].len(), 1, "job {id} ran {:?}", runs[id]);
    }
}

async fn a_job_whose_runner_dies_mid_lease_is_run_again_by_the_other_runner_after_the_lease(
    backend: Backend,
) {
    let (_db, db_a, db_b) = two_instances(backend).await;
    let runs = Runs::default();
    let first = runs.clone();
    // The first run hangs (its runner will die); any later one succeeds.
    let hangs_once = from_fn(move |job| {
        let run = first.record(&job.id, "a");
        async move {
            if run == 1 {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    });
    let jobs_a = jobs_with(&db_a, "work", hangs_once);
    let jobs_b = jobs_with(&db_b, "work", counting(&runs, "b"));
    let lease = Duration::from_secs(1);
    let runner_a = Runner::spawn(&jobs_a, fast("a", lease));
    let id = queue(&db_a, &jobs_a, vec![NewJob::new("work", json!({}))]).await[0].clone();
    eventually("the first runner holds the job", || async {
        (runs.of(&id).len() == 1).then_some(())
    })
    .await;

    let held = row(&db_a, &id).await;
    assert_eq!(held.state, "running");
    assert!(
        held.leased_by.as_deref().unwrap().starts_with("a/"),
        "{held:?}"
    );
    drop(runner_a); // the instance dies with the job in hand
    let _b = Runner::spawn(&jobs_b, fast("b", lease));

    let done = until_state(&db_b, &id, "done").await;
    assert_eq!(done.attempts, 2, "the dead runner's attempt counts");
    let runs = runs.of(&id);
    assert_eq!(
        runs.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(
        runs[1].1 >= held.lease_until.unwrap(),
        "taken over only once the lease had run out"
    );
}

async fn a_long_job_renews_its_lease_so_no_other_runner_takes_it_over(backend: Backend) {
    let (_db, db_a, db_b) = two_instances(backend).await;
    let runs = Runs::default();
    let release = Arc::new(Notify::new());
    let handler = |instance: &'static str| {
        let (runs, release) = (runs.clone(), release.clone());
        from_fn(move |job| {
            runs.record(&job.id, instance);
            let release = release.clone();
            async move {
                release.notified().await;
                Ok(())
            }
        })
    };
    let jobs_a = jobs_with(&db_a, "slow", handler("a"));
    let jobs_b = jobs_with(&db_b, "slow", handler("b"));
    let lease = Duration::from_millis(600);
    let _a = Runner::spawn(&jobs_a, fast("a", lease));
    let _b = Runner::spawn(&jobs_b, fast("b", lease));
    let id = queue(&db_a, &jobs_a, vec![NewJob::new("slow", json!({}))]).await[0].clone();
    jobs_b.wake();
    let first = until_state(&db_a, &id, "running").await;
    let first_lease = first.lease_until.unwrap();

    // Well past the first lease, the job is still held by the same claim, renewed.
    let later = eventually("three leases have passed", || async {
        let r = row(&db_a, &id).await;
        (now_micros() > first_lease + 2 * 600_000).then_some(r)
    })
    .await;
    assert_eq!(later.state, "running");
    assert_eq!(later.leased_by, first.leased_by, "the same claim");
    assert!(
        later.lease_until.unwrap() > first_lease,
        "the lease was renewed"
    );
    assert_eq!(runs.of(&id).len(), 1, "nobody took it over");

    release.notify_one();
    let done = until_state(&db_a, &id, "done").await;
    assert_eq!(done.attempts, 1);
    assert_eq!(runs.of(&id).len(), 1);
}

async fn a_failing_job_backs_off_and_ends_dead_after_its_attempts(backend: Backend) {
    let (_db, db, _) = two_instances(backend).await;
    let runs = Runs::default();
    let recorder = runs.clone();
    let failing = from_fn(move |job| {
        recorder.record(&job.id, "a");
        async { Err(JobError::Retryable("the relay refused: 451".into())) }
    });
    let jobs = jobs_with(&db, "flaky", failing);
    let _runner = Runner::spawn(&jobs, fast("a", Duration::from_secs(30)));
    let new = NewJob {
        max_attempts: 3,
        ..NewJob::new("flaky", json!({}))
    };
    let id = queue(&db, &jobs, vec![new]).await[0].clone();

    let failed_once = eventually("the first failure", || async {
        let r = row(&db, &id).await;
        (r.state == "failed" && r.attempts == 1).then_some(r)
    })
    .await;
    let failed_twice = eventually("the second failure", || async {
        let r = row(&db, &id).await;
        (r.state == "failed" && r.attempts == 2).then_some(r)
    })
    .await;
    let dead = until_state(&db, &id, "dead").await;

    let first_delay = failed_once.run_at - failed_once.updated_at;
    let second_delay = failed_twice.run_at - failed_twice.updated_at;
    // The delay is computed a moment before `updated_at` is written: allow 10 ms for that.
    assert!(
        (90_000..=200_000).contains(&first_delay),
        "base × [0.5, 1]: {first_delay}"
    );
    assert!(
        (190_000..=400_000).contains(&second_delay),
        "doubled: {second_delay}"
    );
    assert!(
        failed_twice.run_at > failed_once.run_at,
        "run_at moves forward"
    );
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.last_error.as_deref(), Some("the relay refused: 451"));
    assert!(dead.finished_at.is_some());
    let times: Vec<i64> = runs.of(&id).iter().map(|r| r.1).collect();
    assert_eq!(times.len(), 3, "no attempt after the last");
    assert!(
        times[1] - times[0] >= 100_000 && times[2] - times[1] >= 200_000,
        "{times:?}"
    );
}

async fn a_duplicate_idempotency_key_creates_no_second_job(backend: Backend) {
    let (_db, db, _) = two_instances(backend).await;
    let jobs = Jobs::new(db.clone(), Registry::new());
    let keyed = |v: i64| NewJob::new("charge", json!({"v": v})).idempotency_key("invoice:42");

    let first = queue(&db, &jobs, vec![keyed(1)]).await;
    let again = queue(&db, &jobs, vec![keyed(2)]).await;
    let same_tx = queue(&db, &jobs, vec![keyed(3), keyed(4)]).await;
    let unkeyed = queue(&db, &jobs, vec![NewJob::new("charge", json!({})); 2]).await;

    assert_eq!(again, first);
    assert_eq!(same_tx, [first[0].clone(), first[0].clone()]);
    assert_ne!(
        unkeyed[0], unkeyed[1],
        "jobs without a key are never merged"
    );
    let (all, total) = jobs.list(None, 1, 10).await.unwrap();
    assert_eq!(total, 3);
    let kept = all.iter().find(|j| j.id == first[0]).unwrap();
    assert_eq!(
        kept.payload,
        json!({"v": 1}),
        "the first job is kept as it was"
    );
    assert_eq!(kept.state, JobState::Queued);
}

async fn a_scheduled_job_fires_once_per_period_across_two_instances(backend: Backend) {
    let (_db, db_a, db_b) = two_instances(backend).await;
    let runs = Runs::default();
    let registry = |db: &Db, instance: &str| {
        let mut registry = Registry::new();
        registry.register("tick", counting(&runs, instance));
        registry.schedule(Schedule {
            name: "tick".into(),
            every: Every::Seconds(1),
            kind: "tick".into(),
            payload: json!({}),
        });
        registry.schedule(Schedule {
            name: "nightly".into(),
            every: Every::DailyAt { hour: 4, minute: 0 },
            kind: "tick".into(),
            payload: json!({"nightly": true}),
        });
        Jobs::new(db.clone(), registry)
    };
    let (jobs_a, jobs_b) = (registry(&db_a, "a"), registry(&db_b, "b"));
    let a = Runner::spawn(&jobs_a, fast("a", Duration::from_secs(30)));
    let b = Runner::spawn(&jobs_b, fast("b", Duration::from_secs(30)));

    // Drive the nightly schedule: its period began an hour ago.
    eventually("the schedules are declared", || async {
        let s = jobs_a.schedules().await.unwrap();
        s.iter().all(|s| s.next_run_at.is_some()).then_some(())
    })
    .await;
    let due = now_micros() - 3_600_000_000;
    sqlx::query("UPDATE job_schedules SET next_run_at = $1 WHERE name = 'nightly'")
        .bind(due)
        .execute(db_a.pool())
        .await
        .unwrap();
    jobs_a.wake();
    jobs_b.wake();
    eventually("three periods of `tick` and the nightly run", || async {
        let keys = keys(&db_a).await;
        let ticks = keys
            .iter()
            .filter(|k| k.starts_with("schedule:tick:"))
            .count();
        (ticks >= 3 && keys.iter().any(|k| k.starts_with("schedule:nightly:"))).then_some(())
    })
    .await;
    a.stop().await;
    b.stop().await;

    let rows = sqlx::query("SELECT id, idempotency_key, state FROM jobs")
        .fetch_all(db_a.pool())
        .await
        .unwrap();
    let runs = runs.all();
    let mut periods = Vec::new();
    for r in &rows {
        let (id, key, state): (String, String, String) =
            (r.get("id"), r.get("idempotency_key"), r.get("state"));
        let ran = runs.get(&id).map_or(0, Vec::len);
        assert_eq!(ran, usize::from(state == "done"), "{key} ran {ran} times");
        if let Some(period) = key.strip_prefix("schedule:tick:") {
            let period: i64 = period.parse().unwrap();
            assert_eq!(period % 1_000_000, 0, "periods are whole seconds");
            periods.push(period);
        }
    }
    let queued = periods.len();
    periods.sort();
    periods.dedup();
    assert_eq!(periods.len(), queued, "one job per period");
    let nightly: Vec<_> = rows
        .iter()
        .filter(|r| {
            r.get::<String, _>("idempotency_key")
                .starts_with("schedule:nightly:")
        })
        .collect();
    assert_eq!(nightly.len(), 1, "the nightly period fired once");
    assert_eq!(
        nightly[0].get::<String, _>("idempotency_key"),
        format!("schedule:nightly:{due}")
    );
    let status = jobs_a.schedules().await.unwrap();
    let nightly = status.iter().find(|s| s.name == "nightly").unwrap();
    let next = nightly.next_run_at.unwrap();
    assert_eq!(next.format("%H:%M").to_string(), "04:00");
    assert!(next > chrono::Utc::now(), "moved on to the next period");
    assert_eq!(
        nightly.last_job_id.as_deref(),
        Some(nightly_id(&rows).as_str())
    );
}

fn nightly_id(rows: &[sqlx::any::AnyRow]) -> String {
    rows.iter()
        .find(|r| {
            r.get::<String, _>("idempotency_key")
                .starts_with("schedule:nightly:")
        })
        .map(|r| r.get("id"))
        .unwrap()
}

async fn keys(db: &Db) -> Vec<String> {
    sqlx::query("SELECT idempotency_key FROM jobs WHERE idempotency_key IS NOT NULL")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("idempotency_key"))
        .collect()
}

async fn a_job_of_a_kind_nobody_handles_ends_dead_with_a_clear_error(backend: Backend) {
    let (_db, db, _) = two_instances(backend).await;
    let jobs = Jobs::new(db.clone(), Registry::new());
    let _runner = Runner::spawn(&jobs, fast("a", Duration::from_secs(30)));

    let id = queue(&db, &jobs, vec![NewJob::new("nobody.knows", json!({}))]).await[0].clone();

    let dead = until_state(&db, &id, "dead").await;
    assert_eq!(dead.attempts, 1);
    let error = dead.last_error.unwrap();
    assert!(
        error.contains("no handler for kind `nobody.knows`"),
        "{error}"
    );
}

/// Records runs and abandonments under the instance names `run` and `abandoned`.
struct Watchful(Runs);

impl Handler for Watchful {
    fn run(&self, job: JobContext) -> BoxFuture<'_, Result<(), JobError>> {
        self.0.record(&job.id, "run");
        Box::pin(async { Ok(()) })
    }

    fn abandoned(&self, job: JobContext) -> BoxFuture<'_, ()> {
        self.0.record(&job.id, "abandoned");
        Box::pin(async {})
    }
}

async fn a_job_whose_last_attempt_was_lost_ends_dead_without_running_again(backend: Backend) {
    let (_db, db, _) = two_instances(backend).await;
    let runs = Runs::default();
    let jobs = jobs_with(&db, "once", Watchful(runs.clone()));
    let new = NewJob {
        max_attempts: 2,
        ..NewJob::new("once", json!({}))
    };
    let id = queue(&db, &jobs, vec![new]).await[0].clone();
    // Its second and last attempt was claimed by an instance that died a second ago.
    sqlx::query(
        "UPDATE jobs SET state = 'running', attempts = 2, leased_by = 'gone/1', lease_until = $1 \
         WHERE id = $2",
    )
    .bind(now_micros() - 1_000_000)
    .bind(id.clone())
    .execute(db.pool())
    .await
    .unwrap();

    let _runner = Runner::spawn(&jobs, fast("a", Duration::from_secs(30)));

    let dead = until_state(&db, &id, "dead").await;
    assert_eq!(dead.attempts, 3, "the takeover counts");
    let error = dead.last_error.unwrap();
    assert!(error.contains("no attempts left"), "{error}");
    let runs: Vec<String> = runs.of(&id).into_iter().map(|r| r.0).collect();
    assert_eq!(runs, ["abandoned"], "the handler only cleaned up");
}
