-- Mailboxes (one per recipient device), their sequence counters, and send dedupe keys.

-- The highest sequence number ever given out in each device's mailbox. Kept after every envelope
-- is acked and deleted, so a number is never reused.
CREATE TABLE mailbox_counters (
    device_id TEXT PRIMARY KEY NOT NULL,
    last_seq  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Undelivered envelopes, clustered by mailbox and sequence so paging and the cumulative ack
-- (a range delete) touch adjacent rows.
CREATE TABLE envelopes (
    device_id        TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    sender_user_id   TEXT NOT NULL,
    sender_device_id TEXT NOT NULL,
    client_msg_id    TEXT NOT NULL,
    server_time_ms   INTEGER NOT NULL,
    ciphertext       BLOB NOT NULL,
    PRIMARY KEY (device_id, seq)
) STRICT, WITHOUT ROWID;

-- One row per accepted send, so a retried `client_msg_id` gets the first answer.
CREATE TABLE send_dedupe (
    sender_user_id TEXT NOT NULL,
    client_msg_id  TEXT NOT NULL,
    server_time_ms INTEGER NOT NULL,
    PRIMARY KEY (sender_user_id, client_msg_id)
) STRICT, WITHOUT ROWID;

-- Pruning old dedupe keys.
CREATE INDEX send_dedupe_by_time ON send_dedupe (server_time_ms);
