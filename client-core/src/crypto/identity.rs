//! The device's identity keys: an Ed25519 signing key and an X25519 key-agreement key.
//!
//! They are made once per device, before its first sign-in, and kept (secret halves only) in the
//! client database; only the public halves ever leave the device.
#![deny(clippy::unwrap_used)]

use ed25519_dalek::SigningKey;
use rand::{CryptoRng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::KEY_LEN;

/// A device's identity key pairs.
pub(crate) struct IdentityKeys {
    signing: SigningKey,
    dh: StaticSecret,
}

impl std::fmt::Debug for IdentityKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret halves.
        f.debug_struct("IdentityKeys").finish_non_exhaustive()
    }
}

impl IdentityKeys {
    /// Fresh key pairs from `rng`.
    pub(crate) fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let signing = SigningKey::generate(rng);
        let dh = StaticSecret::random_from_rng(rng);
        Self { signing, dh }
    }

    /// The key pairs from their stored secret halves; `None` unless both are 32 bytes.
    pub(crate) fn from_secret_bytes(signing: &[u8], dh: &[u8]) -> Option<Self> {
        let signing: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(signing.try_into().ok()?);
        let dh: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(dh.try_into().ok()?);
        Some(Self {
            signing: SigningKey::from_bytes(&signing),
            dh: StaticSecret::from(*dh),
        })
    }

    /// The Ed25519 secret key, for storage.
    pub(crate) fn signing_secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The X25519 secret key, for storage.
    pub(crate) fn dh_secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.dh.to_bytes())
    }

    /// The Ed25519 public key.
    pub(crate) fn signing_public(&self) -> [u8; KEY_LEN] {
        self.signing.verifying_key().to_bytes()
    }

    /// The X25519 public key.
    pub(crate) fn dh_public(&self) -> [u8; KEY_LEN] {
        PublicKey::from(&self.dh).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, Verifier, VerifyingKey};
    use rand::rngs::OsRng;

    use super::*;

    #[test]
    fn secret_bytes_round_trip() {
        let keys = IdentityKeys::generate(&mut OsRng);
        let again = IdentityKeys::from_secret_bytes(
            &*keys.signing_secret_bytes(),
            &*keys.dh_secret_bytes(),
        )
        .expect("32-byte secrets");
        assert_eq!(keys.signing_public(), again.signing_public());
        assert_eq!(keys.dh_public(), again.dh_public());

        // The restored signing key signs what the original public key verifies.
        let signature = again.signing.sign(b"hello");
        let verifying = VerifyingKey::from_bytes(&keys.signing_public()).expect("valid public key");
        assert!(verifying.verify(b"hello", &signature).is_ok());
        assert!(verifying.verify(b"hellO", &signature).is_err());
    }

    #[test]
    fn fresh_keys_differ() {
        let a = IdentityKeys::generate(&mut OsRng);
        let b = IdentityKeys::generate(&mut OsRng);
        assert_ne!(a.signing_public(), b.signing_public());
        assert_ne!(a.dh_public(), b.dh_public());
        assert_ne!(a.signing_public(), a.dh_public());
    }

    #[test]
    fn wrong_lengths_are_refused() {
        assert!(IdentityKeys::from_secret_bytes(&[1; 31], &[2; 32]).is_none());
        assert!(IdentityKeys::from_secret_bytes(&[1; 32], &[2; 33]).is_none());
    }

    #[test]
    fn debug_hides_secrets() {
        let keys = IdentityKeys::generate(&mut OsRng);
        assert_eq!(format!("{keys:?}"), "IdentityKeys { .. }");
    }
}
