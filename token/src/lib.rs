//! Access tokens: PASETO v4.public (Ed25519) with claims `sub`, `dev`, `sid`, `iat`, `exp` and a
//! footer `{"kid":"<key id>"}`.
//!
//! [`TokenIssuer`] signs (login-service); [`TokenVerifier`] checks (the gateway). Both are pure:
//! no IO, and the verifier takes the current time as an argument so tests control it. A crate of
//! its own so that the gateway checks tokens without linking login's storage.

#![forbid(unsafe_code)]

use std::collections::HashMap;

use pasetors::Public;
use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

/// What an access token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The account (`sub`).
    pub user_id: String,
    /// The device (`dev`).
    pub device_id: String,
    /// The session, i.e. the device's refresh-token family (`sid`).
    pub session_id: String,
    /// When the token was issued (`iat`), Unix milliseconds.
    pub issued_at_ms: i64,
    /// When the token stops being valid (`exp`), Unix milliseconds.
    pub expires_at_ms: i64,
}

/// Why an access token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a v4.public token, or its footer or claims are not what Juntos issues.
    #[error("malformed access token")]
    Malformed,
    /// The footer names a key id this verifier does not know.
    #[error("access token signed with unknown key id {0:?}")]
    UnknownKey(String),
    /// The signature does not verify with the named key.
    #[error("access token signature does not verify")]
    BadSignature,
    /// The token's `exp` is not after the current time.
    #[error("access token expired")]
    Expired,
}

/// The signing seed cannot make an Ed25519 key (it is all zeros).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid token signing seed")]
pub struct InvalidSeed;

/// The key id of an Ed25519 public key: the first 16 hex characters of its SHA-256.
pub fn key_id_of(public_key: &[u8; 32]) -> String {
    let digest = Sha256::digest(public_key);
    hex::encode(&digest[..8])
}

// === impl TokenIssuer ===

/// Signs access tokens with one Ed25519 key.
#[derive(Clone)]
pub struct TokenIssuer {
    secret: AsymmetricSecretKey<V4>,
    public: [u8; 32],
    key_id: String,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// The issuer whose Ed25519 key is derived from `seed` (the 32-byte RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, InvalidSeed> {
        if seed.iter().all(|b| *b == 0) {
            // pasetors panics on an all-zero seed; refuse it instead.
            return Err(InvalidSeed);
        }
        let public = ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes();
        let mut keypair = Zeroizing::new([0u8; 64]);
        keypair[..32].copy_from_slice(seed);
        keypair[32..].copy_from_slice(&public);
        let secret =
            AsymmetricSecretKey::<V4>::from(keypair.as_slice()).map_err(|_| InvalidSeed)?;
        Ok(Self {
            secret,
            public,
            key_id: key_id_of(&public),
        })
    }

    /// The key id written in every token's footer.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The Ed25519 public key that verifies this issuer's tokens.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// `(key id, public key)`, the shape [`TokenVerifier::new`] takes.
    pub fn verification_key(&self) -> (String, [u8; 32]) {
        (self.key_id.clone(), self.public)
    }

    /// Signs a token carrying `claims`.
    pub fn issue(&self, claims: &AccessClaims) -> String {
        let payload = WireClaims {
            sub: claims.user_id.clone(),
            dev: claims.device_id.clone(),
            sid: claims.session_id.clone(),
            iat: format_ms(claims.issued_at_ms),
            exp: format_ms(claims.expires_at_ms),
        };
        let message = serde_json::to_vec(&payload).expect("claims of strings always serialize");
        let footer = serde_json::to_vec(&Footer {
            kid: self.key_id.clone(),
        })
        .expect("a footer of one string always serializes");
        PublicToken::sign(&self.secret, &message, Some(&footer), None)
            .expect("signing a non-empty message with a validated key cannot fail")
    }
}

// === impl TokenVerifier ===

/// Verifies access tokens against a set of public keys, by key id.
#[derive(Debug, Clone, Default)]
pub struct TokenVerifier {
    keys: HashMap<String, AsymmetricPublicKey<V4>>,
}

impl TokenVerifier {
    /// A verifier trusting `keys` (`(key id, Ed25519 public key)`).
    pub fn new(keys: Vec<(String, [u8; 32])>) -> Self {
        let keys = keys
            .into_iter()
            .map(|(kid, pk)| {
                let key = AsymmetricPublicKey::<V4>::from(&pk)
                    .expect("any 32 bytes are accepted as a v4 public key");
                (kid, key)
            })
            .collect();
        Self { keys }
    }

    /// The key ids this verifier trusts, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.keys.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Checks `token`'s signature and expiry at `now_ms` (Unix milliseconds) and returns its
    /// claims.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<AccessClaims, TokenError> {
        let untrusted =
            UntrustedToken::<Public, V4>::try_from(token).map_err(|_| TokenError::Malformed)?;
        let footer: Footer = serde_json::from_slice(untrusted.untrusted_footer())
            .map_err(|_| TokenError::Malformed)?;
        let key = self.keys.get(&footer.kid).ok_or_else(|| {
            // The key id comes from the client: bound what ends up in logs.
            TokenError::UnknownKey(footer.kid.chars().take(32).collect())
        })?;
        // The low-level verify checks only the signature; expiry is checked below against
        // `now_ms` rather than the system clock.
        let trusted = PublicToken::verify(key, &untrusted, None, None)
            .map_err(|_| TokenError::BadSignature)?;
        let wire: WireClaims =
            serde_json::from_str(trusted.payload()).map_err(|_| TokenError::Malformed)?;
        let claims = AccessClaims {
            user_id: wire.sub,
            device_id: wire.dev,
            session_id: wire.sid,
            issued_at_ms: parse_ms(&wire.iat)?,
            expires_at_ms: parse_ms(&wire.exp)?,
        };
        if claims.expires_at_ms <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// The JSON payload of an access token.
#[derive(Serialize, Deserialize)]
struct WireClaims {
    sub: String,
    dev: String,
    sid: String,
    iat: String,
    exp: String,
}

/// The JSON footer of an access token.
#[derive(Serialize, Deserialize)]
struct Footer {
    kid: String,
}

/// Unix milliseconds as RFC 3339 (UTC, millisecond precision when not whole seconds).
fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .expect("token times are within the years 0..=9999")
}

fn parse_ms(s: &str) -> Result<i64, TokenError> {
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| TokenError::Malformed)?;
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000_123;

    fn claims() -> AccessClaims {
        AccessClaims {
            user_id: "u1".into(),
            device_id: "d1".into(),
            session_id: "s1".into(),
            issued_at_ms: NOW,
            expires_at_ms: NOW + 15 * 60 * 1000,
        }
    }

    fn issuer(byte: u8) -> TokenIssuer {
        TokenIssuer::from_seed(&[byte; 32]).expect("non-zero seed")
    }

    #[test]
    fn round_trip() {
        let issuer = issuer(7);
        let token = issuer.issue(&claims());
        assert!(token.starts_with("v4.public."));
        let verifier = TokenVerifier::new(vec![issuer.verification_key()]);
        assert_eq!(verifier.verify(&token, NOW).expect("valid"), claims());
        assert_eq!(
            verifier
                .verify(&token, NOW + 15 * 60 * 1000 - 1)
                .expect("valid"),
            claims()
        );
    }

    #[test]
    fn claims_and_footer_on_the_wire() {
        let issuer = issuer(7);
        let token = issuer.issue(&claims());
        let untrusted = UntrustedToken::<Public, V4>::try_from(token.as_str()).expect("parses");
        let footer: serde_json::Value =
            serde_json::from_slice(untrusted.untrusted_footer()).expect("json footer");
        assert_eq!(footer, serde_json::json!({ "kid": issuer.key_id() }));
        let payload: serde_json::Value =
            serde_json::from_slice(untrusted.untrusted_payload()).expect("json payload");
        assert_eq!(payload["sub"], "u1");
        assert_eq!(payload["dev"], "d1");
        assert_eq!(payload["sid"], "s1");
        assert_eq!(payload["iat"], "2025-06-15T15:06:40.123Z");
        assert_eq!(payload["exp"], "2025-06-15T15:21:40.123Z");
    }

    #[test]
    fn key_id_is_sha256_prefix() {
        let issuer = issuer(7);
        let expected = hex::encode(Sha256::digest(issuer.public_key()));
        assert_eq!(issuer.key_id(), &expected[..16]);
        assert_eq!(issuer.key_id().len(), 16);
        assert_ne!(issuer.key_id(), self::issuer(8).key_id());
    }

    #[test]
    fn zero_seed_is_refused() {
        assert_eq!(TokenIssuer::from_seed(&[0; 32]).err(), Some(InvalidSeed));
    }

    #[test]
    fn expired() {
        let issuer = issuer(7);
        let token = issuer.issue(&claims());
        let verifier = TokenVerifier::new(vec![issuer.verification_key()]);
        let exp = claims().expires_at_ms;
        assert_eq!(verifier.verify(&token, exp), Err(TokenError::Expired));
        assert_eq!(verifier.verify(&token, exp + 1), Err(TokenError::Expired));
    }

    #[test]
    fn wrong_key_under_the_same_kid() {
        let issuer = issuer(7);
        let token = issuer.issue(&claims());
        let other = self::issuer(8);
        let verifier = TokenVerifier::new(vec![(issuer.key_id().to_owned(), other.public_key())]);
        assert_eq!(verifier.verify(&token, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn unknown_kid() {
        let issuer = issuer(7);
        let token = issuer.issue(&claims());
        let verifier = TokenVerifier::new(vec![self::issuer(8).verification_key()]);
        assert_eq!(
            verifier.verify(&token, NOW),
            Err(TokenError::UnknownKey(issuer.key_id().to_owned()))
        );
    }

    #[test]
    fn verifier_with_several_keys() {
        let a = issuer(7);
        let b = issuer(8);
        let verifier = TokenVerifier::new(vec![a.verification_key(), b.verification_key()]);
        let mut ids = vec![a.key_id().to_owned(), b.key_id().to_owned()];
        ids.sort();
        assert_eq!(verifier.key_ids(), ids);
        assert!(verifier.verify(&a.issue(&claims()), NOW).is_ok());
        assert!(verifier.verify(&b.issue(&claims()), NOW).is_ok());
    }

    #[test]
    fn tampered_token() {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;

        let issuer = issuer(7);
        let verifier = TokenVerifier::new(vec![issuer.verification_key()]);
        let token = issuer.issue(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 4);

        // Change the subject in the payload, keep the signature.
        let mut body = URL_SAFE_NO_PAD.decode(parts[2]).expect("base64");
        let text = String::from_utf8(body[..body.len() - 64].to_vec()).expect("utf8");
        let forged = text.replace("\"u1\"", "\"u2\"");
        assert_ne!(forged, text);
        let sig = body.split_off(body.len() - 64);
        let mut new_body = forged.into_bytes();
        new_body.extend_from_slice(&sig);
        let tampered = format!(
            "v4.public.{}.{}",
            URL_SAFE_NO_PAD.encode(new_body),
            parts[3]
        );
        assert_eq!(
            verifier.verify(&tampered, NOW),
            Err(TokenError::BadSignature)
        );

        // Change the footer's key id to another trusted one: still refused.
        let other = self::issuer(8);
        let verifier2 =
            TokenVerifier::new(vec![issuer.verification_key(), other.verification_key()]);
        let footer = URL_SAFE_NO_PAD.encode(format!("{{\"kid\":\"{}\"}}", other.key_id()));
        let swapped = format!("v4.public.{}.{}", parts[2], footer);
        assert_eq!(
            verifier2.verify(&swapped, NOW),
            Err(TokenError::BadSignature)
        );

        // Drop the footer entirely.
        let no_footer = format!("v4.public.{}", parts[2]);
        assert_eq!(verifier.verify(&no_footer, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn malformed() {
        let verifier = TokenVerifier::new(vec![issuer(7).verification_key()]);
        for token in [
            "",
            "garbage",
            "v4.local.abc.def",
            "v2.public.abc",
            "v4.public.!!!",
        ] {
            assert_eq!(
                verifier.verify(token, NOW),
                Err(TokenError::Malformed),
                "{token}"
            );
        }
    }
}
