-- Media attachments of messages (and statuses), and uploads this device has not finished.

-- One row per message with an attachment: everything needed to download and open the blob (its
-- capability, key and digest never leave this database but inside encrypted messages), what it
-- is, and where this device keeps the plaintext once it has it (the sender's file, or the
-- download).
CREATE TABLE attachments (
    message_id TEXT PRIMARY KEY NOT NULL,
    blob_id    TEXT NOT NULL,
    capability BLOB NOT NULL,
    key        BLOB NOT NULL,
    digest     BLOB NOT NULL,
    size       INTEGER NOT NULL,
    kind       INTEGER NOT NULL,
    mime_type  TEXT NOT NULL,
    file_name  TEXT NOT NULL,
    thumbnail  BLOB NOT NULL,
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    local_path TEXT
);

-- An upload started and not finished, by the file it reads: path, size, modification time and
-- `file_id` (device, inode and change time where the platform has them; the change time moves
-- on every write and cannot be set back, unlike the modification time). A changed file starts
-- over with a new key: resuming re-encrypts with the same key, which is only safe (and only
-- yields the same ciphertext) for the same bytes.
CREATE TABLE uploads (
    path              TEXT NOT NULL,
    size              INTEGER NOT NULL,
    modified_ms       INTEGER NOT NULL,
    file_id           TEXT NOT NULL,
    blob_id           TEXT NOT NULL,
    capability        BLOB NOT NULL,
    key               BLOB NOT NULL,
    kind              INTEGER NOT NULL,
    upload_expires_ms INTEGER NOT NULL,
    PRIMARY KEY (path, size, modified_ms, file_id)
);
