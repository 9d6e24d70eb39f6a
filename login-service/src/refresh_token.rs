//! Refresh tokens: `rt_` and 32 random bytes (base64url), stored only as their SHA-256.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// Every refresh token starts with this, so a client or a log scrubber can tell what it is.
const PREFIX: &str = "rt_";
/// `PREFIX` plus 43 base64url characters.
const LEN: usize = 3 + 43;

/// A fresh refresh token from the OS CSPRNG.
pub(crate) fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `token` has the shape of a refresh token (checked before touching storage).
pub(crate) fn is_well_formed(token: &str) -> bool {
    token.len() == LEN && token.starts_with(PREFIX)
}

/// What is stored of a refresh token: its SHA-256, hex. Plain SHA-256 suffices because the
/// token has 256 bits of entropy; nothing to brute-force.
pub(crate) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_uniqueness() {
        let a = generate();
        let b = generate();
        assert!(is_well_formed(&a), "{}", a.len());
        assert_ne!(a, b);
        assert!(!is_well_formed("rt_short"));
        assert!(!is_well_formed(&a.replacen("rt_", "xx_", 1)));
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(hash(&generate()), hash(&generate()));
    }
}
