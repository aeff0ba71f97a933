-- Facts about this installation (first migration time, instance markers).
-- Timestamps are Unix microseconds, UTC, written by the application.
CREATE TABLE app_meta (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
