-- Groups this device knows of, as the chat service last described them.
CREATE TABLE groups (
    group_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    -- Whether this account is an admin.
    admin INTEGER NOT NULL DEFAULT 0,
    -- 0 once this account left or was removed (the history stays).
    active INTEGER NOT NULL DEFAULT 1,
    -- The member devices' digest as `GetGroup` last gave it; NULL when a notice said the group
    -- changed since (fetch it again before sending).
    digest BLOB
);

-- The members at `groups.digest`.
CREATE TABLE group_members (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    admin INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);

-- The member devices at `groups.digest` (this device included).
CREATE TABLE group_devices (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    PRIMARY KEY (group_id, device_id)
);

-- This device's sending chain per group (encoded by the crypto module). Deleted when a member
-- leaves, so the next message starts a new chain the leaver never gets.
CREATE TABLE sender_keys_own (
    group_id TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);

-- The devices that were given this device's current chain for a group.
CREATE TABLE sender_keys_given (
    group_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    PRIMARY KEY (group_id, device_id)
);

-- Other members' chains, as received over pairwise sessions; a few per sender device are kept
-- (a message from before a rotation may still be on its way).
CREATE TABLE sender_keys_received (
    id INTEGER PRIMARY KEY,
    group_id TEXT NOT NULL,
    sender_user_id TEXT NOT NULL,
    sender_device_id TEXT NOT NULL,
    chain_id INTEGER NOT NULL,
    state BLOB NOT NULL,
    UNIQUE (group_id, sender_device_id, chain_id)
);

-- The chat service's notice signing keys, trusted when first fetched.
CREATE TABLE notice_keys (
    key_id TEXT PRIMARY KEY,
    public BLOB NOT NULL CHECK (length(public) = 32)
);

-- Group sends wait in the same outbox: `group_id` set, `to_user_id` empty.
ALTER TABLE outbox ADD COLUMN group_id TEXT NOT NULL DEFAULT '';

-- Messages of a group conversation (`conversation_user_id` is then the group id).
ALTER TABLE messages ADD COLUMN in_group INTEGER NOT NULL DEFAULT 0;
