-- The device's identity keys: the secret halves, 32 bytes each. One row at most.
CREATE TABLE identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    signing_secret BLOB NOT NULL CHECK (length(signing_secret) = 32),
    dh_secret BLOB NOT NULL CHECK (length(dh_secret) = 32)
);

-- The signed-in account, this device and its tokens. One row at most.
CREATE TABLE session (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    access_token TEXT NOT NULL,
    access_expires_at_ms INTEGER NOT NULL,
    refresh_token TEXT NOT NULL,
    refresh_expires_at_ms INTEGER NOT NULL
);
