-- One row per yearly renewal reminder sent: the key (user, period end) makes it once per period,
-- whichever instance runs the reminder job and however often.
CREATE TABLE billing_reminders (
    user_id    TEXT NOT NULL REFERENCES users (id),
    period_end BIGINT NOT NULL,
    sent_at    BIGINT NOT NULL,
    PRIMARY KEY (user_id, period_end)
);
