-- Statuses this device can show (its account's own, and those addressed to it), decrypted;
-- deleted once expired, or once the server no longer lists them (deleted by the poster).
CREATE TABLE statuses (
    status_id TEXT PRIMARY KEY,
    poster_user_id TEXT NOT NULL,
    poster_device_id TEXT NOT NULL,
    body TEXT NOT NULL,
    posted_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    -- Whether this account has viewed it (always 1 for its own).
    viewed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX statuses_by_expiry ON statuses (expires_ms);

-- Who saw this account's statuses (from their encrypted "seen" reports).
CREATE TABLE status_views (
    status_id TEXT NOT NULL,
    viewer_user_id TEXT NOT NULL,
    viewed_ms INTEGER NOT NULL,
    PRIMARY KEY (status_id, viewer_user_id)
);
