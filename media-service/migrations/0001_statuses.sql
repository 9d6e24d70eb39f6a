-- Statuses (24 hours each) and who may see them.

-- One row per status until it expires. A deleted status stays as a tombstone (no ciphertext, no
-- audience) until then, because it still counts towards its poster's 100 in 24 hours. A rowid
-- table, since rows carry up to 64 KiB of ciphertext.
CREATE TABLE statuses (
    status_id        TEXT PRIMARY KEY NOT NULL,
    poster_user_id   TEXT NOT NULL,
    poster_device_id TEXT NOT NULL,
    client_status_id TEXT NOT NULL,
    ciphertext       BLOB NOT NULL,
    posted_ms        INTEGER NOT NULL,
    expires_ms       INTEGER NOT NULL,
    deleted          INTEGER NOT NULL DEFAULT 0,
    UNIQUE (poster_user_id, client_status_id)
) STRICT;

-- The poster's own statuses, newest first (listing), and the rolling 24-hour count.
CREATE INDEX statuses_by_poster ON statuses (poster_user_id, status_id);
CREATE INDEX statuses_by_poster_time ON statuses (poster_user_id, posted_ms);
-- The sweeper.
CREATE INDEX statuses_by_expiry ON statuses (expires_ms);

-- One row per (viewer, status) the poster addressed; listing walks a viewer's rows newest first.
CREATE TABLE status_audience (
    viewer_user_id TEXT NOT NULL,
    status_id      TEXT NOT NULL,
    PRIMARY KEY (viewer_user_id, status_id)
) STRICT, WITHOUT ROWID;

-- Deleting a status's audience (delete, sweep).
CREATE INDEX status_audience_by_status ON status_audience (status_id);
