-- The key directory (signed and one-time prekeys per device) and contacts.

-- One signed prekey per device; an upload replaces it.
CREATE TABLE signed_prekeys (
    device_id      TEXT PRIMARY KEY NOT NULL REFERENCES devices (device_id),
    key_id         INTEGER NOT NULL,
    public_key     BLOB NOT NULL,
    signature      BLOB NOT NULL,
    uploaded_at_ms INTEGER NOT NULL
) STRICT;

-- Single-use prekeys, handed out oldest first (rowid order is upload order) and deleted when
-- handed out. A plain rowid table on purpose: the rowid records upload order.
CREATE TABLE one_time_prekeys (
    device_id      TEXT NOT NULL REFERENCES devices (device_id),
    key_id         INTEGER NOT NULL,
    public_key     BLOB NOT NULL,
    uploaded_at_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, key_id)
) STRICT;

-- Index entries are ordered by rowid within a device, so "oldest first" is an index walk.
CREATE INDEX one_time_prekeys_by_device ON one_time_prekeys (device_id);

-- Users found by `ResolvePhones`, per owner; `phone` is the E.164 number they were found by.
CREATE TABLE contacts (
    owner_user_id   TEXT NOT NULL REFERENCES accounts (user_id),
    contact_user_id TEXT NOT NULL REFERENCES accounts (user_id),
    phone           TEXT NOT NULL,
    added_at_ms     INTEGER NOT NULL,
    PRIMARY KEY (owner_user_id, contact_user_id)
) STRICT;

-- Who has a user as a contact (later: presence and status visibility).
CREATE INDEX contacts_by_contact ON contacts (contact_user_id);
