-- Guess budgets (src/domains/auth/lockout.rs): one row per subject and kind. A subject is a
-- login identifier (a lower-cased email, whether or not an account has it) for passwords, and a
-- user id for MFA codes. A guess is claimed here by one conditional UPDATE before the password
-- or code is checked, so that at most the allowed number is ever evaluated, whatever the
-- concurrency or the number of instances. Rows of unknown subjects are deleted once idle
-- (auth.prune_guards), so their number stays bounded by the request rate.
CREATE TABLE auth_guards (
    subject      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    claims       BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (subject, kind)
);
CREATE INDEX auth_guards_updated ON auth_guards (updated_at);

-- The MFA step of a login: the token names a row here, which is used once, and only while the
-- password is the one the first step checked (its hash's fingerprint).
CREATE TABLE mfa_challenges (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id),
    password_fpr TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
CREATE INDEX mfa_challenges_expires ON mfa_challenges (expires_at);
