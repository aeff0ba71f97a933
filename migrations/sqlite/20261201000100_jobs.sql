-- The job runner (src/jobs): every background task is a row here, claimed by one runner at a
-- time with a lease, retried with backoff, and visible to admins. Ids are UUID text; timestamps
-- are Unix microseconds UTC written by the application.
-- state: queued -> running -> done | failed (a retry is scheduled at run_at) | dead (given up).
-- A running job whose lease_until has passed (its runner died) is claimed again by another.
-- leased_by is the token of the current claim: an outcome is recorded only under that token.
-- payload is JSON with ids and safe data only, never a secret (secrets stay in their own tables).
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'running', 'failed', 'dead', 'done')),
    attempts        BIGINT NOT NULL,
    max_attempts    BIGINT NOT NULL,
    run_at          BIGINT NOT NULL,
    lease_until     BIGINT,
    leased_by       TEXT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    finished_at     BIGINT
);
CREATE INDEX jobs_claim ON jobs (state, run_at);

-- Recurring jobs: one row per declared schedule. An instance claims a period by moving
-- next_run_at forward with a conditional update; only the winner enqueues that period's job.
CREATE TABLE job_schedules (
    name        TEXT PRIMARY KEY NOT NULL,
    every       TEXT NOT NULL,
    next_run_at BIGINT NOT NULL,
    last_run_at BIGINT,
    last_job_id TEXT,
    updated_at  BIGINT NOT NULL
);

-- Mail is now delivered by `mail.send` jobs: messages still waiting in the outbox get theirs.
INSERT INTO jobs (id, kind, payload, idempotency_key, state, attempts, max_attempts, run_at,
                  lease_until, leased_by, last_error, created_at, updated_at, finished_at)
SELECT id, 'mail.send', json_object('outbox_id', id, 'to', recipient, 'template', template),
       'mail:' || id, 'queued', 0, 8, next_attempt_at, NULL, NULL, NULL, created_at, created_at, NULL
FROM mail_outbox WHERE status IN ('pending', 'sending');
