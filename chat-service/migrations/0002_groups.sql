-- Groups: membership lives here; what members say is sender-key ciphertext in the mailboxes.

-- What each envelope carries (juntos.chat.v1.EnvelopeKind: 0 direct, 1 group message, 2 notice)
-- and the group it is about ('' for direct messages).
ALTER TABLE envelopes ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
ALTER TABLE envelopes ADD COLUMN group_id TEXT NOT NULL DEFAULT '';

-- One row per group; `version` is raised by every change, and a change (or a group send) goes
-- through only if the version it was made from is still current.
CREATE TABLE groups (
    group_id   TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- The members of each group (admin: 1 for admins).
CREATE TABLE group_members (
    group_id  TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    admin     INTEGER NOT NULL,
    joined_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) STRICT, WITHOUT ROWID;

-- A user's groups, in group id order.
CREATE INDEX group_members_by_user ON group_members (user_id, group_id);
