//! The runner: one loop per instance claims due jobs, runs them (a few at a time), and fires
//! the declared schedules. Nothing else in the service loops in the background.

use std::{sync::Arc, time::Duration};

use rand::seq::SliceRandom;
use tokio::{
    sync::watch,
    task::{JoinHandle, JoinSet},
};

use super::{
    attempt::attempt,
    handle::Jobs,
    options::{micros, RunnerOptions},
    periods::{self, declare, fire},
    store,
};
use crate::db::types::{new_id, now_micros};

/// How often the runner tries a probe write while writes fail on storage.
const STORAGE_PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long that probe may take.
const STORAGE_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A running runner; [`Runner::stop`] it at shutdown. Dropping it aborts the runner and the jobs
/// in hand (their leases expire and another runner takes them over).
#[derive(Debug)]
pub struct Runner {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    grace: Duration,
}

impl Runner {
    /// Starts the runner of `jobs` on the current runtime.
    pub fn spawn(jobs: &Jobs, options: RunnerOptions) -> Self {
        let (stop, stopped) = watch::channel(false);
        let grace = options.stop_grace;
        let runner = Loop {
            jobs: jobs.clone(),
            options: Arc::new(options),
            declared: false,
            next_retry: None,
            next_schedule_check: 0,
        };
        Self {
            stop,
            task: Some(tokio::spawn(runner.run(stopped))),
            grace,
        }
    }

    /// Stops claiming, lets the jobs in hand finish within the grace, then aborts what is left.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(self.grace, &mut task).await.is_err() {
                tracing::warn!("job runner did not stop in time; the jobs in hand run again later");
                task.abort();
                let _ = task.await;
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Marks the runner as running for as long as its loop lives, aborted or not.
struct Running(Jobs);

impl Running {
    fn new(jobs: &Jobs) -> Self {
        jobs.registry().wakeup.set_running(true);
        Self(jobs.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.registry().wakeup.set_running(false);
    }
}

struct Loop {
    jobs: Jobs,
    options: Arc<RunnerOptions>,
    /// Whether the declared schedules have their rows.
    declared: bool,
    /// The earliest retry this runner scheduled, to wake for it rather than wait for a poll.
    next_retry: Option<i64>,
    /// When the schedules are next looked at.
    next_schedule_check: i64,
}

impl Loop {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let _running = Running::new(&self.jobs);
        let wakeup = self.jobs.wakeup();
        let concurrency = self.options.concurrency;
        tracing::info!(instance = %self.options.instance_id, concurrency, "job runner started");
        // Jobs in hand live in this set: aborting the loop aborts them with it.
        let mut tasks: JoinSet<Option<i64>> = JoinSet::new();
        while !*stopped.borrow() {
            let now = now_micros();
            if self.next_retry.is_some_and(|at| at <= now) {
                self.next_retry = None;
            }
            if now >= self.next_schedule_check {
                self.tick_schedules().await;
            }
            self.probe_storage().await;
            if let Err(e) = self.fill(&mut tasks, &stopped).await {
                let e = self.jobs.db().note(e);
                tracing::warn!(error = %e, "job runner cannot claim jobs; will retry");
            }
            let wait = self.wait(now_micros());
            tokio::select! {
                changed = stopped.changed() => if changed.is_err() { break },
                () = wakeup.woken() => {}
                () = tokio::time::sleep(wait) => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => self.note(done),
            }
        }
        while let Some(done) = tasks.join_next().await {
            self.note(done);
        }
        tracing::info!(instance = %self.options.instance_id, "job runner stopped");
    }

    /// While writes fail on storage, tries a probe write every few seconds, so that the fault
    /// is cleared (and pooled connections are reused again) even when nothing calls the health
    /// check.
    async fn probe_storage(&self) {
        let db = self.jobs.db();
        if db.faults().probe_due(STORAGE_PROBE_EVERY) {
            if let Err(e) = db.probe_write(STORAGE_PROBE_TIMEOUT).await {
                tracing::debug!(error = %e, "database writes still fail");
            }
        }
    }

    /// Claims due jobs until every slot is busy or none is left, and starts them.
    async fn fill(
        &self,
        tasks: &mut JoinSet<Option<i64>>,
        stopped: &watch::Receiver<bool>,
    ) -> Result<(), sqlx::Error> {
        let options = &self.options;
        let pool = self.jobs.db().pool();
        let lease = micros(options.lease);
        loop {
            let free = options.concurrency.saturating_sub(tasks.len());
            if free == 0 || *stopped.borrow() {
                return Ok(());
            }
            let limit = i64::try_from(free * 2).unwrap_or(i64::MAX);
            let mut ids = store::due_ids(pool, now_micros(), limit).await?;
            let complete = i64::try_from(ids.len()).unwrap_or(i64::MAX) < limit;
            // Runners that see the same batch start at different rows, so they rarely collide.
            ids.shuffle(&mut rand::thread_rng());
            let mut claimed_any = false;
            for id in ids {
                if tasks.len() >= options.concurrency {
                    break;
                }
                let token = format!("{}/{}", options.instance_id, new_id());
                let now = now_micros();
                let Some(claimed) = store::claim(pool, &id, &token, now, now + lease).await? else {
                    continue; // another runner has it
                };
                claimed_any = true;
                let (jobs, shared) = (self.jobs.clone(), Arc::clone(options));
                tasks.spawn(attempt(jobs, shared, claimed, token));
            }
            if complete || !claimed_any {
                return Ok(());
            }
        }
    }

    /// Remembers when a finished attempt's retry is due.
    fn note(&mut self, done: Result<Option<i64>, tokio::task::JoinError>) {
        if let Ok(Some(at)) = done {
            self.next_retry = Some(self.next_retry.map_or(at, |t| t.min(at)));
        }
    }

    /// How long to sleep: until the next poll, retry or schedule, whichever comes first.
    fn wait(&self, now: i64) -> Duration {
        let mut until = now.saturating_add(micros(self.options.poll_interval));
        if let Some(at) = self.next_retry {
            until = until.min(at);
        }
        until = until.min(self.next_schedule_check);
        Duration::from_micros(u64::try_from(until - now).unwrap_or(0))
    }

    /// Fires every declared schedule whose period has begun, and notes when to look again.
    async fn tick_schedules(&mut self) {
        let now = now_micros();
        let mut next_check = now.saturating_add(micros(self.options.poll_interval));
        let schedules = &self.jobs.registry().schedules;
        if schedules.is_empty() {
            self.next_schedule_check = i64::MAX;
            return;
        }
        if !self.declared {
            self.declared = declare(self.jobs.db(), schedules).await;
        }
        let rows = match periods::rows(self.jobs.db().pool()).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "job runner cannot read the schedules; will retry");
                self.next_schedule_check = next_check;
                return;
            }
        };
        for schedule in schedules {
            let Some(row) = rows.iter().find(|r| r.name == schedule.name) else {
                continue;
            };
            if row.next_run_at > now {
                next_check = next_check.min(row.next_run_at);
                continue;
            }
            let name = &schedule.name;
            match fire(self.jobs.db(), schedule, row.next_run_at).await {
                Ok(Some(job)) => tracing::info!(schedule = %name, %job, "scheduled job queued"),
                Ok(None) => tracing::debug!(schedule = %name, "another instance took this period"),
                Err(e) => tracing::warn!(schedule = %name, error = %e, "cannot fire the schedule"),
            }
            next_check = next_check.min(schedule.every.next_after(now));
        }
        self.next_schedule_check = next_check;
    }
}
