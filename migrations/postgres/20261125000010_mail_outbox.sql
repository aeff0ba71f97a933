-- Outgoing mail, written in the transaction of the change that causes it and delivered by a
-- worker. `payload` holds the template parameters (links carry tokens) and is cleared (NULL) once
-- the message is sent or has failed for good.
-- status: pending -> sending (claimed by one worker until locked_until) -> sent | failed;
-- a claim whose lease has expired (the worker died) is taken over by the next worker.
-- claimed_by is the token of the current claim, so a worker that lost its lease cannot overwrite
-- the outcome recorded by the one that took it over.
CREATE TABLE mail_outbox (
    id              TEXT PRIMARY KEY NOT NULL,
    recipient       TEXT NOT NULL,
    template        TEXT NOT NULL,
    payload         TEXT,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    locked_until    BIGINT,
    claimed_by      TEXT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX mail_outbox_due ON mail_outbox (status, next_attempt_at);
