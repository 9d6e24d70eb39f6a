-- Profile (name, about) and privacy settings per account. An account without a row has the
-- defaults: empty texts, both visibilities 'contacts'.
CREATE TABLE settings (
    user_id       TEXT PRIMARY KEY NOT NULL REFERENCES accounts (user_id),
    name          TEXT NOT NULL,
    about         TEXT NOT NULL,
    presence      TEXT NOT NULL CHECK (presence IN ('contacts', 'nobody')),
    profile       TEXT NOT NULL CHECK (profile IN ('contacts', 'nobody')),
    updated_at_ms INTEGER NOT NULL
) STRICT;

