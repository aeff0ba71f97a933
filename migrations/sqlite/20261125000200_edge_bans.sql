-- Temporary bans of client addresses, shared by every instance when Redis is not configured.
-- A row outlives its ban (`until_at` in the past) so that the next ban of the same address
-- within the strike memory is longer. Timestamps are Unix microseconds, UTC.
CREATE TABLE edge_bans (
    ip         TEXT PRIMARY KEY NOT NULL,
    reason     TEXT NOT NULL,
    level      BIGINT NOT NULL,
    banned_at  BIGINT NOT NULL,
    until_at   BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX edge_bans_until ON edge_bans (until_at);
