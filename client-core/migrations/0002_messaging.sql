-- This device's signed prekeys (secret halves). The newest is the published one; older ones are
-- kept a while so first messages built on them still decrypt.
CREATE TABLE signed_prekeys (
    key_id INTEGER PRIMARY KEY,
    secret BLOB NOT NULL CHECK (length(secret) = 32),
    public BLOB NOT NULL CHECK (length(public) = 32),
    signature BLOB NOT NULL CHECK (length(signature) = 64),
    created_at_ms INTEGER NOT NULL
);

-- This device's one-time prekeys (secret halves); deleted when a first message consumes one.
CREATE TABLE one_time_prekeys (
    key_id INTEGER PRIMARY KEY,
    secret BLOB NOT NULL CHECK (length(secret) = 32),
    public BLOB NOT NULL CHECK (length(public) = 32),
    created_at_ms INTEGER NOT NULL
);

-- Remote devices as the directory listed them, with their identity keys (trusted on first use:
-- a device id whose keys change is not re-trusted). A device the directory stops listing is kept
-- as removed, so mail it sent before it left still decrypts; nothing is sent to it.
CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    identity_signing BLOB NOT NULL CHECK (length(identity_signing) = 32),
    identity_dh BLOB NOT NULL CHECK (length(identity_dh) = 32),
    removed_at_ms INTEGER,
    PRIMARY KEY (user_id, device_id)
);

-- When each user's device list was last fetched (a user may have no devices to list).
CREATE TABLE device_lists (
    user_id TEXT PRIMARY KEY,
    fetched_at_ms INTEGER NOT NULL
);

-- Double Ratchet sessions, one per remote device (encoded by the crypto module).
CREATE TABLE ratchet_sessions (
    device_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    state BLOB NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- Users found by phone number.
CREATE TABLE contacts (
    user_id TEXT PRIMARY KEY,
    phone TEXT NOT NULL UNIQUE
);

-- Local history. `message_id` is chosen by the sending device (128 random bits, hex).
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    conversation_user_id TEXT NOT NULL,
    sender_user_id TEXT NOT NULL,
    sender_device_id TEXT NOT NULL,
    outgoing INTEGER NOT NULL,
    body TEXT NOT NULL,
    quoted_message_id TEXT,
    forwarded INTEGER NOT NULL DEFAULT 0,
    -- queued | sent | delivered | read | failed (outgoing); received | read (incoming)
    status TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    server_time_ms INTEGER,
    edited_at_ms INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_by_conversation ON messages (conversation_user_id, id);

-- One reaction per user per message.
CREATE TABLE reactions (
    message_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    emoji TEXT NOT NULL,
    PRIMARY KEY (message_id, user_id)
);

-- Sends waiting for the server, drained in `seq` order. `content` is the plaintext message
-- (encrypted per device at send time, when the device list is known).
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_msg_id TEXT NOT NULL UNIQUE,
    to_user_id TEXT NOT NULL,
    content BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);

-- Earlier sessions with a device, newest first, a few per device: when both sides start a
-- session at once, or a message made with an earlier session is still on its way, it decrypts
-- with one of these (and that session becomes current again).
CREATE TABLE archived_sessions (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    state BLOB NOT NULL,
    archived_at_ms INTEGER NOT NULL
);
CREATE INDEX archived_sessions_by_device ON archived_sessions (device_id, id);

-- Delivered receipts owed for applied messages, written with them and sent in batches, so a
-- crash between applying a message and queueing its receipt loses nothing.
CREATE TABLE pending_receipts (
    user_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (user_id, message_id)
);

-- Base keys of sessions this device accepted, so a replayed first message cannot start a
-- session again.
CREATE TABLE accepted_base_keys (
    device_id TEXT NOT NULL,
    base_key BLOB NOT NULL,
    PRIMARY KEY (device_id, base_key)
);
