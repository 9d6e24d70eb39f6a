-- Accounts, devices, sessions and refresh tokens.

CREATE TABLE accounts (
    user_id       TEXT PRIMARY KEY NOT NULL,
    phone         TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE devices (
    device_id            TEXT PRIMARY KEY NOT NULL,
    user_id              TEXT NOT NULL REFERENCES accounts (user_id),
    name                 TEXT NOT NULL,
    platform             INTEGER NOT NULL,
    identity_signing_key BLOB NOT NULL,
    identity_dh_key      BLOB NOT NULL,
    created_at_ms        INTEGER NOT NULL,
    removed_at_ms        INTEGER
) STRICT;

-- Active devices of an account (the device cap and the device list).
CREATE INDEX devices_active_by_user ON devices (user_id, created_at_ms) WHERE removed_at_ms IS NULL;

CREATE TABLE sessions (
    session_id    TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES accounts (user_id),
    device_id     TEXT NOT NULL REFERENCES devices (device_id),
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    revoke_reason TEXT
) STRICT;

CREATE INDEX sessions_by_device ON sessions (device_id);
CREATE INDEX sessions_revoked_at ON sessions (revoked_at_ms) WHERE revoked_at_ms IS NOT NULL;

CREATE TABLE refresh_tokens (
    token_hash    TEXT PRIMARY KEY NOT NULL,
    session_id    TEXT NOT NULL REFERENCES sessions (session_id),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    rotated_at_ms INTEGER
) STRICT;

CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);
