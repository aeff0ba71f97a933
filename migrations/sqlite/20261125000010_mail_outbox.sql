-- Outgoing mail, written in the transaction of the change that causes it and delivered by a
-- worker. `payload` holds the template parameters (links carry tokens), and is cleared once sent.
CREATE TABLE mail_outbox (
    id              TEXT PRIMARY KEY NOT NULL,
    recipient       TEXT NOT NULL,
    template        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    locked_until    BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX mail_outbox_due ON mail_outbox (status, next_attempt_at);
