//! The device's identity: an Ed25519 signing key (signs prekeys) and an X25519 key (X3DH).

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey};
use rand::{CryptoRng, RngCore};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::KEY_LEN;
use super::encoding::{IdentityRecord, RECORD_VERSION, decode_versioned, encode_secret};
use super::error::{CryptoError, Result};
use super::primitives::{array32, public_of};

/// A device's identity key pairs. Built from the same secret bytes as the stored
/// `IdentityKeys` (see [`IdentityKeyPair::from_secret_bytes`]), so both views of the device's
/// identity agree.
#[derive(Clone)]
pub struct IdentityKeyPair {
    signing: SigningKey,
    dh: StaticSecret,
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret halves.
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

impl IdentityKeyPair {
    /// Fresh key pairs from `rng`.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let signing = SigningKey::generate(rng);
        let dh = StaticSecret::random_from_rng(rng);
        Self { signing, dh }
    }

    /// The key pairs from their secret halves (Ed25519 seed, X25519 scalar).
    pub fn from_secret_bytes(signing: &[u8; KEY_LEN], dh: &[u8; KEY_LEN]) -> Self {
        Self {
            signing: SigningKey::from_bytes(signing),
            dh: StaticSecret::from(*dh),
        }
    }

    /// The public halves.
    pub fn public(&self) -> IdentityPublic {
        IdentityPublic {
            signing: self.signing.verifying_key().to_bytes(),
            dh: public_of(&self.dh),
        }
    }

    /// The Ed25519 secret key (seed).
    pub fn signing_secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The X25519 secret key.
    pub fn dh_secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.dh.to_bytes())
    }

    /// The versioned storage encoding (holds both secrets).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let record = IdentityRecord {
            signing_secret: self.signing.to_bytes().to_vec(),
            dh_secret: self.dh.to_bytes().to_vec(),
        };
        encode_secret(RECORD_VERSION, &record)
    }

    /// Parses [`IdentityKeyPair::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let record: IdentityRecord = decode_versioned(RECORD_VERSION, bytes, CryptoError::Corrupt)?;
        let signing = Zeroizing::new(array32(&record.signing_secret).ok_or(CryptoError::Corrupt)?);
        let dh = Zeroizing::new(array32(&record.dh_secret).ok_or(CryptoError::Corrupt)?);
        Ok(Self::from_secret_bytes(&signing, &dh))
    }

    /// Ed25519 signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }

    /// The X25519 secret, for X3DH.
    pub(crate) fn dh_secret(&self) -> &StaticSecret {
        &self.dh
    }
}

/// The public halves of a device identity, as published in the directory.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityPublic {
    /// Ed25519 public key: verifies the device's signed prekeys.
    pub signing: [u8; KEY_LEN],
    /// X25519 public key: the identity key of X3DH.
    pub dh: [u8; KEY_LEN],
}

impl fmt::Debug for IdentityPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A short prefix is enough to tell keys apart in a test failure; logs get no more.
        write!(
            f,
            "IdentityPublic {{ signing: {:02x}{:02x}{:02x}{:02x}…, dh: {:02x}{:02x}{:02x}{:02x}… }}",
            self.signing[0],
            self.signing[1],
            self.signing[2],
            self.signing[3],
            self.dh[0],
            self.dh[1],
            self.dh[2],
            self.dh[3]
        )
    }
}

impl IdentityPublic {
    /// Length of [`IdentityPublic::to_bytes`].
    pub const ENCODED_LEN: usize = 2 * KEY_LEN;

    /// `Encode(IK)` of the X3DH associated data: the Ed25519 key then the X25519 key.
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..KEY_LEN].copy_from_slice(&self.signing);
        out[KEY_LEN..].copy_from_slice(&self.dh);
        out
    }

    /// The keys from 32-byte slices, as they come in protobuf `bytes` fields.
    pub fn from_slices(signing: &[u8], dh: &[u8]) -> Result<Self> {
        Ok(Self {
            signing: array32(signing).ok_or(CryptoError::InvalidKey)?,
            dh: array32(dh).ok_or(CryptoError::InvalidKey)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::OsRng;

    use super::*;
    use crate::crypto::test_rng::TestRng;

    /// Frozen storage encoding of the identity made by `TestRng::new(1)`.
    const IDENTITY_FIXTURE: &str = "010a206097b528fa51acfccdd86783dfda5bdfc73b3b2524cde7f6218c4bd554ac50491220cfee16945a622d603cc83f6328d25afa97ee96697f548b6967ffa07a760ed334";

    #[test]
    fn matches_the_device_identity_from_the_same_secrets() {
        let device = crate::crypto::IdentityKeys::generate(&mut OsRng);
        let keys = IdentityKeyPair::from_secret_bytes(
            &device.signing_secret_bytes(),
            &device.dh_secret_bytes(),
        );
        assert_eq!(keys.public().signing, device.signing_public());
        assert_eq!(keys.public().dh, device.dh_public());
    }

    #[test]
    fn encode_round_trip() {
        let keys = IdentityKeyPair::generate(&mut OsRng);
        let again = IdentityKeyPair::decode(&keys.encode()).expect("decodes");
        assert_eq!(keys.public(), again.public());
        assert_eq!(*keys.dh_secret_bytes(), *again.dh_secret_bytes());
    }

    #[test]
    fn decode_refuses_garbage() {
        assert_eq!(
            IdentityKeyPair::decode(&[]).err(),
            Some(CryptoError::Corrupt)
        );
        assert_eq!(
            IdentityKeyPair::decode(&[9, 1, 2]).err(),
            Some(CryptoError::UnsupportedVersion(9))
        );
        let mut short = IdentityKeyPair::generate(&mut OsRng).encode().to_vec();
        short.truncate(short.len() - 1);
        assert!(IdentityKeyPair::decode(&short).is_err());
    }

    #[test]
    fn frozen_fixture_still_decodes() {
        let keys = IdentityKeyPair::generate(&mut TestRng::new(1));
        let encoded = hex::encode(&*keys.encode());
        assert_eq!(encoded, IDENTITY_FIXTURE);
        let bytes = hex::decode(IDENTITY_FIXTURE).expect("hex");
        let decoded = IdentityKeyPair::decode(&bytes).expect("frozen identity decodes");
        assert_eq!(decoded.public(), keys.public());
    }

    #[test]
    fn debug_hides_secrets() {
        let keys = IdentityKeyPair::from_secret_bytes(&[0x11; 32], &[0x22; 32]);
        let shown = format!("{keys:?}");
        assert!(!shown.contains("1111"), "{shown}");
        assert!(!shown.contains("2222"), "{shown}");
        assert!(!shown.contains("17, 17"), "{shown}");
    }
}
