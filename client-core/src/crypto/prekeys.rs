//! Signed prekeys and one-time prekeys, and the signature layout the server verifies.

use std::collections::HashMap;
use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use rand::{CryptoRng, RngCore};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::encoding::{PrekeyRecord, RECORD_VERSION, decode_versioned, encode_secret};
use super::error::{CryptoError, Result};
use super::keys::IdentityKeyPair;
use super::primitives::{array32, public_of};
use super::{KEY_LEN, SIGNATURE_LEN};

/// Domain-separation prefix of the signed-prekey signature (see `login.proto`).
pub const SIGNED_PREKEY_CONTEXT: &[u8] = b"juntos-signed-prekey-v1";

/// The bytes a signed-prekey signature covers:
/// `"juntos-signed-prekey-v1" || key_id (4 bytes big-endian) || public_key`.
pub fn signed_prekey_message(key_id: u32, public: &[u8; KEY_LEN]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNED_PREKEY_CONTEXT.len() + 4 + KEY_LEN);
    message.extend_from_slice(SIGNED_PREKEY_CONTEXT);
    message.extend_from_slice(&key_id.to_be_bytes());
    message.extend_from_slice(public);
    message
}

/// Checks a signed prekey's Ed25519 signature (strict verification) under the identity
/// signing key `identity_signing`.
pub fn verify_signed_prekey(
    identity_signing: &[u8; KEY_LEN],
    key_id: u32,
    public: &[u8; KEY_LEN],
    signature: &[u8],
) -> Result<()> {
    let verifying =
        VerifyingKey::from_bytes(identity_signing).map_err(|_| CryptoError::InvalidKey)?;
    let signature = Signature::from_slice(signature).map_err(|_| CryptoError::BadSignature)?;
    verifying
        .verify_strict(&signed_prekey_message(key_id, public), &signature)
        .map_err(|_| CryptoError::BadSignature)
}

// === impl SignedPrekeyPair ===

/// A medium-term X25519 prekey signed by the device's identity.
#[derive(Clone)]
pub struct SignedPrekeyPair {
    key_id: u32,
    secret: StaticSecret,
    public: [u8; KEY_LEN],
    signature: [u8; SIGNATURE_LEN],
}

impl fmt::Debug for SignedPrekeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedPrekeyPair")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SignedPrekeyPair {
    /// A fresh prekey with id `key_id`, signed by `identity`.
    pub fn generate<R: RngCore + CryptoRng>(
        identity: &IdentityKeyPair,
        key_id: u32,
        rng: &mut R,
    ) -> Self {
        let secret = StaticSecret::random_from_rng(rng);
        let public = public_of(&secret);
        let signature = identity
            .sign(&signed_prekey_message(key_id, &public))
            .to_bytes();
        Self {
            key_id,
            secret,
            public,
            signature,
        }
    }

    /// The prekey from its stored parts; the public key is derived from the secret.
    pub fn from_parts(key_id: u32, secret: &[u8; KEY_LEN], signature: [u8; SIGNATURE_LEN]) -> Self {
        let secret = StaticSecret::from(*secret);
        let public = public_of(&secret);
        Self {
            key_id,
            secret,
            public,
            signature,
        }
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The X25519 public key.
    pub fn public(&self) -> [u8; KEY_LEN] {
        self.public
    }

    /// The Ed25519 signature over [`signed_prekey_message`].
    pub fn signature(&self) -> [u8; SIGNATURE_LEN] {
        self.signature
    }

    /// The X25519 secret key, for storage.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The versioned storage encoding (holds the secret).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        encode_prekey(self.key_id, &self.secret, &self.signature)
    }

    /// Parses [`SignedPrekeyPair::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (record, secret) = decode_prekey(bytes)?;
        let signature: [u8; SIGNATURE_LEN] = record
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Corrupt)?;
        Ok(Self::from_parts(record.key_id, &secret, signature))
    }
}

// === impl OneTimePrekeyPair ===

/// A single-use X25519 prekey.
#[derive(Clone)]
pub struct OneTimePrekeyPair {
    key_id: u32,
    secret: StaticSecret,
    public: [u8; KEY_LEN],
}

impl fmt::Debug for OneTimePrekeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneTimePrekeyPair")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl OneTimePrekeyPair {
    /// A fresh prekey with id `key_id`.
    pub fn generate<R: RngCore + CryptoRng>(key_id: u32, rng: &mut R) -> Self {
        Self::from_secret_bytes(key_id, &StaticSecret::random_from_rng(rng).to_bytes())
    }

    /// `count` fresh prekeys with ids `first_id, first_id + 1, …` (wrapping at `u32::MAX`).
    pub fn generate_batch<R: RngCore + CryptoRng>(
        first_id: u32,
        count: u32,
        rng: &mut R,
    ) -> Vec<Self> {
        (0..count)
            .map(|i| Self::generate(first_id.wrapping_add(i), rng))
            .collect()
    }

    /// The prekey from its stored secret.
    pub fn from_secret_bytes(key_id: u32, secret: &[u8; KEY_LEN]) -> Self {
        let secret = StaticSecret::from(*secret);
        let public = public_of(&secret);
        Self {
            key_id,
            secret,
            public,
        }
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The X25519 public key.
    pub fn public(&self) -> [u8; KEY_LEN] {
        self.public
    }

    /// The X25519 secret key, for storage.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The versioned storage encoding (holds the secret).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        encode_prekey(self.key_id, &self.secret, &[])
    }

    /// Parses [`OneTimePrekeyPair::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (record, secret) = decode_prekey(bytes)?;
        Ok(Self::from_secret_bytes(record.key_id, &secret))
    }
}

/// The versioned storage encoding of a prekey (the signature is empty for one-time prekeys).
fn encode_prekey(key_id: u32, secret: &StaticSecret, signature: &[u8]) -> Zeroizing<Vec<u8>> {
    let record = PrekeyRecord {
        key_id,
        secret: secret.to_bytes().to_vec(),
        signature: signature.to_vec(),
    };
    encode_secret(RECORD_VERSION, &record)
}

/// Parses [`encode_prekey`]'s output: the record and its secret.
fn decode_prekey(bytes: &[u8]) -> Result<(PrekeyRecord, Zeroizing<[u8; KEY_LEN]>)> {
    let record: PrekeyRecord = decode_versioned(RECORD_VERSION, bytes, CryptoError::Corrupt)?;
    let secret = Zeroizing::new(array32(&record.secret).ok_or(CryptoError::Corrupt)?);
    Ok((record, secret))
}

// === PrekeySecrets ===

/// Where [`Session::accept`](super::Session::accept) finds this device's prekey secrets by id.
pub trait PrekeySecrets {
    /// The secret of the signed prekey `key_id`, if this device still holds it.
    fn signed_prekey(&self, key_id: u32) -> Option<Zeroizing<[u8; KEY_LEN]>>;

    /// The secret of the one-time prekey `key_id`, if it has not been used yet.
    fn one_time_prekey(&self, key_id: u32) -> Option<Zeroizing<[u8; KEY_LEN]>>;
}

/// Prekeys held in memory: for tests, or for a caller that loaded the ids a prekey message
/// names (see [`WireInfo`](super::WireInfo)) before calling `accept`.
#[derive(Debug, Default, Clone)]
pub struct InMemoryPrekeys {
    signed: HashMap<u32, SignedPrekeyPair>,
    one_time: HashMap<u32, OneTimePrekeyPair>,
}

impl InMemoryPrekeys {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a signed prekey.
    pub fn add_signed(&mut self, prekey: SignedPrekeyPair) {
        self.signed.insert(prekey.key_id(), prekey);
    }

    /// Adds (or replaces) a one-time prekey.
    pub fn add_one_time(&mut self, prekey: OneTimePrekeyPair) {
        self.one_time.insert(prekey.key_id(), prekey);
    }

    /// Removes a one-time prekey (after a session consumed it); whether it was there.
    pub fn remove_one_time(&mut self, key_id: u32) -> bool {
        self.one_time.remove(&key_id).is_some()
    }
}

impl PrekeySecrets for InMemoryPrekeys {
    fn signed_prekey(&self, key_id: u32) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        self.signed.get(&key_id).map(SignedPrekeyPair::secret_bytes)
    }

    fn one_time_prekey(&self, key_id: u32) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        self.one_time
            .get(&key_id)
            .map(OneTimePrekeyPair::secret_bytes)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::Signer;
    use rand::rngs::OsRng;

    use super::*;
    use crate::crypto::test_rng::TestRng;

    /// Frozen storage encodings of the prekeys made by `TestRng::new(2)`.
    const SIGNED_PREKEY_FIXTURE: &str = "01080712201c7407004c8052a5f45448f2db0a2daf55125e3bf36a814c468ac76356a2bddc1a4066dea7995736d1a53972bc86c14440a439cdd8850e9735ab5d6b0e01b8d3aaf0348f30d092d2650df066c10feeea9d97c33f1fa915f40163e4e35ffb00c96709";
    const ONE_TIME_PREKEY_FIXTURE: &str =
        "0108e8071220183e911552ff9079f72cefeb3e495e28e5e212968bd8264de93244e41d874666";

    #[test]
    fn signature_layout_is_context_then_big_endian_id_then_public() {
        let message = signed_prekey_message(0x0102_0304, &[0xAB; 32]);
        assert_eq!(&message[..23], b"juntos-signed-prekey-v1");
        assert_eq!(&message[23..27], &[1, 2, 3, 4]);
        assert_eq!(&message[27..], &[0xAB; 32]);

        // A signature made independently over that layout verifies.
        let identity = IdentityKeyPair::generate(&mut OsRng);
        let signing = ed25519_dalek::SigningKey::from_bytes(&identity.signing_secret_bytes());
        let secret = StaticSecret::random_from_rng(OsRng);
        let public = public_of(&secret);
        let signature = signing.sign(
            &[
                b"juntos-signed-prekey-v1".as_slice(),
                &7u32.to_be_bytes(),
                &public,
            ]
            .concat(),
        );
        verify_signed_prekey(
            &identity.public().signing,
            7,
            &public,
            &signature.to_bytes(),
        )
        .expect("independent signature verifies");
    }

    #[test]
    fn generated_signed_prekey_verifies_and_tampering_fails() {
        let identity = IdentityKeyPair::generate(&mut OsRng);
        let prekey = SignedPrekeyPair::generate(&identity, 42, &mut OsRng);
        let signing = identity.public().signing;
        verify_signed_prekey(&signing, 42, &prekey.public(), &prekey.signature())
            .expect("verifies");

        // Another id, another key, a flipped signature bit, another identity: all refused.
        assert_eq!(
            verify_signed_prekey(&signing, 43, &prekey.public(), &prekey.signature()),
            Err(CryptoError::BadSignature)
        );
        let mut other_public = prekey.public();
        other_public[0] ^= 1;
        assert_eq!(
            verify_signed_prekey(&signing, 42, &other_public, &prekey.signature()),
            Err(CryptoError::BadSignature)
        );
        let mut bad_signature = prekey.signature();
        bad_signature[10] ^= 0x80;
        assert_eq!(
            verify_signed_prekey(&signing, 42, &prekey.public(), &bad_signature),
            Err(CryptoError::BadSignature)
        );
        let stranger = IdentityKeyPair::generate(&mut OsRng).public().signing;
        assert_eq!(
            verify_signed_prekey(&stranger, 42, &prekey.public(), &prekey.signature()),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            verify_signed_prekey(&signing, 42, &prekey.public(), &prekey.signature()[..63]),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn one_time_batch_has_increasing_ids_and_distinct_keys() {
        let batch = OneTimePrekeyPair::generate_batch(100, 50, &mut OsRng);
        assert_eq!(batch.len(), 50);
        for (i, prekey) in batch.iter().enumerate() {
            assert_eq!(prekey.key_id(), 100 + i as u32);
        }
        let publics: std::collections::HashSet<_> = batch.iter().map(|p| p.public()).collect();
        assert_eq!(publics.len(), 50);
    }

    #[test]
    fn encodings_round_trip() {
        let identity = IdentityKeyPair::generate(&mut OsRng);
        let signed = SignedPrekeyPair::generate(&identity, 3, &mut OsRng);
        let again = SignedPrekeyPair::decode(&signed.encode()).expect("decodes");
        assert_eq!(again.key_id(), 3);
        assert_eq!(again.public(), signed.public());
        assert_eq!(again.signature(), signed.signature());

        let one_time = OneTimePrekeyPair::generate(8, &mut OsRng);
        let again = OneTimePrekeyPair::decode(&one_time.encode()).expect("decodes");
        assert_eq!(again.key_id(), 8);
        assert_eq!(again.public(), one_time.public());

        assert_eq!(
            SignedPrekeyPair::decode(&one_time.encode()).err(),
            Some(CryptoError::Corrupt)
        );
        assert_eq!(
            OneTimePrekeyPair::decode(&[2, 0]).err(),
            Some(CryptoError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn frozen_fixtures_still_decode() {
        let mut rng = TestRng::new(2);
        let identity = IdentityKeyPair::generate(&mut rng);
        let signed = SignedPrekeyPair::generate(&identity, 7, &mut rng);
        let one_time = OneTimePrekeyPair::generate(1000, &mut rng);
        let signed_hex = hex::encode(&*signed.encode());
        let one_time_hex = hex::encode(&*one_time.encode());
        assert_eq!(signed_hex, SIGNED_PREKEY_FIXTURE);
        assert_eq!(one_time_hex, ONE_TIME_PREKEY_FIXTURE);

        let decoded = SignedPrekeyPair::decode(&hex::decode(SIGNED_PREKEY_FIXTURE).expect("hex"))
            .expect("decodes");
        assert_eq!(decoded.public(), signed.public());
        verify_signed_prekey(
            &identity.public().signing,
            7,
            &decoded.public(),
            &decoded.signature(),
        )
        .expect("frozen signature verifies");
        let decoded =
            OneTimePrekeyPair::decode(&hex::decode(ONE_TIME_PREKEY_FIXTURE).expect("hex"))
                .expect("decodes");
        assert_eq!(decoded.key_id(), 1000);
        assert_eq!(decoded.public(), one_time.public());
    }

    #[test]
    fn in_memory_lookup() {
        let identity = IdentityKeyPair::generate(&mut OsRng);
        let signed = SignedPrekeyPair::generate(&identity, 1, &mut OsRng);
        let one_time = OneTimePrekeyPair::generate(2, &mut OsRng);
        let mut prekeys = InMemoryPrekeys::new();
        prekeys.add_signed(signed.clone());
        prekeys.add_one_time(one_time.clone());
        assert_eq!(
            prekeys.signed_prekey(1).map(|s| *s),
            Some(*signed.secret_bytes())
        );
        assert!(prekeys.signed_prekey(2).is_none());
        assert_eq!(
            prekeys.one_time_prekey(2).map(|s| *s),
            Some(*one_time.secret_bytes())
        );
        assert!(prekeys.remove_one_time(2));
        assert!(prekeys.one_time_prekey(2).is_none());
        assert!(!prekeys.remove_one_time(2));
    }

    #[test]
    fn debug_hides_secrets() {
        let prekey = OneTimePrekeyPair::from_secret_bytes(4, &[0x33; 32]);
        assert_eq!(format!("{prekey:?}"), "OneTimePrekeyPair { key_id: 4, .. }");
        let identity = IdentityKeyPair::generate(&mut OsRng);
        let signed = SignedPrekeyPair::generate(&identity, 4, &mut OsRng);
        assert_eq!(format!("{signed:?}"), "SignedPrekeyPair { key_id: 4, .. }");
    }
}
