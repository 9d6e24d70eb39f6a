//! The signed-in state of this device: who it is and its tokens.

use juntos_proto::login::v1 as pb;

/// An access token and a refresh token with their expiry times.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Tokens {
    /// Bearer token for authenticated calls.
    pub(crate) access_token: String,
    /// When `access_token` expires, Unix milliseconds.
    pub(crate) access_expires_at_ms: i64,
    /// Single-use token that buys the next pair.
    pub(crate) refresh_token: String,
    /// When `refresh_token` expires, Unix milliseconds.
    pub(crate) refresh_expires_at_ms: i64,
}

impl Tokens {
    /// Whether the access token expires within `margin_ms` of `now_ms`.
    pub(crate) fn access_expires_within(&self, now_ms: i64, margin_ms: i64) -> bool {
        self.access_expires_at_ms.saturating_sub(now_ms) <= margin_ms
    }
}

impl From<pb::Tokens> for Tokens {
    fn from(t: pb::Tokens) -> Self {
        Self {
            access_token: t.access_token,
            access_expires_at_ms: t.access_expires_at_ms,
            refresh_token: t.refresh_token,
            refresh_expires_at_ms: t.refresh_expires_at_ms,
        }
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("Tokens")
            .field("access_expires_at_ms", &self.access_expires_at_ms)
            .field("refresh_expires_at_ms", &self.refresh_expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// A signed-in device.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) user_id: String,
    pub(crate) device_id: String,
    /// The account's phone number, E.164.
    pub(crate) phone: String,
    pub(crate) tokens: Tokens,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the phone number or the tokens.
        f.debug_struct("Session")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(access_expires_at_ms: i64) -> Tokens {
        Tokens {
            access_token: "secret-access".into(),
            access_expires_at_ms,
            refresh_token: "secret-refresh".into(),
            refresh_expires_at_ms: i64::MAX,
        }
    }

    #[test]
    fn expiry_margin() {
        let t = tokens(1_000_000);
        assert!(!t.access_expires_within(900_000, 60_000));
        assert!(t.access_expires_within(940_000, 60_000));
        assert!(t.access_expires_within(2_000_000, 60_000));
    }

    #[test]
    fn debug_hides_secrets() {
        let s = Session {
            user_id: "u1".into(),
            device_id: "d1".into(),
            phone: "+12015550123".into(),
            tokens: tokens(5),
        };
        let shown = format!("{s:?}");
        assert!(shown.contains("u1") && shown.contains("d1"));
        assert!(
            !shown.contains("secret") && !shown.contains("+1201"),
            "{shown}"
        );
    }
}
