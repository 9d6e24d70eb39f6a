-- Media blobs (ciphertext in the blob store) and profile photos.

-- One row per blob the service handed out an id for: an upload in progress (`upload` is the blob
-- store's handle) or a complete blob (`upload` NULL). `expires_ms` is when an unfinished upload is
-- abandoned, or when a complete blob is deleted (the retention, or its status's expiry).
CREATE TABLE blobs (
    blob_id         TEXT PRIMARY KEY NOT NULL,
    owner_user_id   TEXT NOT NULL,
    kind            INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    part_size       INTEGER NOT NULL,
    parts_done      INTEGER NOT NULL DEFAULT 0,
    upload          TEXT,
    capability_hash BLOB NOT NULL,
    created_ms      INTEGER NOT NULL,
    expires_ms      INTEGER NOT NULL
) STRICT;

-- The sweeper, and an owner's unfinished uploads (the cap on them).
CREATE INDEX blobs_by_expiry ON blobs (expires_ms);
CREATE INDEX blobs_pending_by_owner ON blobs (owner_user_id) WHERE upload IS NOT NULL;
-- An owner's uploads of the last day (the daily byte quota).
CREATE INDEX blobs_by_owner_time ON blobs (owner_user_id, created_ms);

-- One row per user with a profile photo: its two sizes' blob keys.
CREATE TABLE profile_photos (
    user_id    TEXT PRIMARY KEY NOT NULL,
    version    TEXT NOT NULL,
    large_key  TEXT NOT NULL UNIQUE,
    small_key  TEXT NOT NULL UNIQUE,
    updated_ms INTEGER NOT NULL
) STRICT;
