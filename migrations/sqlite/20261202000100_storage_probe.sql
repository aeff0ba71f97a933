-- One row that health rewrites while database writes are failing on storage (src/db/faults.rs).
-- Its filler needs fresh pages, so the probe fails where a full disk or a read-only file would.
CREATE TABLE storage_probe (
    id         BIGINT PRIMARY KEY NOT NULL,
    written_at BIGINT NOT NULL,
    filler     BLOB NOT NULL
);
