-- Plan quotas: what an account used of each monthly counter (`assistant_messages`,
-- `agent_runs`) in one calendar month (UTC), keyed by the month's start (Unix microseconds), so a
-- new month starts from nothing without a job. The limit is the plan's (`billing_plans.limits`),
-- read when a use is claimed; `used` only grows through a conditional upsert that checks it.
CREATE TABLE billing_usage (
    user_id      TEXT NOT NULL REFERENCES users (id),
    counter      TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    used         BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (user_id, counter, period_start)
);
