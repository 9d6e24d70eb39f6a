//! Sender keys (Signal's group "sender key" construction): one symmetric chain per sender and
//! audience (a group, or the audience of my statuses), so a message is encrypted once and fanned
//! out, instead of once per recipient device.
//!
//! - The owner ([`SenderKeyOwn`]) holds a random 32-bit chain id, a chain key at an iteration, and
//!   an Ed25519 signing key pair of the chain. Members get a [`SenderKeyDistribution`] (chain id,
//!   iteration, chain key, signing public key) inside pairwise Double Ratchet messages, and build
//!   a [`SenderKeyReceived`] from it.
//! - `KDF_CK(ck)` = HMAC-SHA256(ck, 0x01) as the message key, HMAC-SHA256(ck, 0x02) as the next
//!   chain key (as in the Double Ratchet); each iteration's key encrypts exactly one message.
//! - `ENCRYPT(mk, plaintext, ad)`: HKDF-SHA256(salt = 32 zero bytes, IKM = mk, info
//!   `"juntos-sender-key-v1"`) gives a ChaCha20-Poly1305 key (32 bytes) and nonce (12 bytes); the
//!   AEAD associated data is `chain id (4 bytes BE) || iteration (4 bytes BE) || ad`, where `ad`
//!   is the caller's (group id and sender user and device ids).
//! - Every member holds the chain key, so the AEAD alone does not tell members apart: each
//!   message is signed with the chain's Ed25519 key, and receivers verify the signature
//!   before deriving or decrypting anything. Wire layout: `version || protobuf (chain id,
//!   iteration, ciphertext) || signature (64 bytes)`, the signature over
//!   `"juntos-sender-key-message-v1" || version || protobuf`.
//!
//! Receiving is bounded like the ratchet: one message may skip at most [`SENDER_KEY_MAX_SKIP`]
//! message keys, at most [`SENDER_KEY_MAX_STORED_SKIPPED_KEYS`] are kept (the oldest go first),
//! and each is dropped once older than the maximum age (default
//! [`DEFAULT_SKIPPED_KEY_MAX_AGE_MS`]). Decryption is transactional: the state changes only once
//! the message verified and authenticated.
//!
//! What the caller does around it:
//! - keep one [`SenderKeyOwn`] per audience, and [`SenderKeyReceived`] states keyed by (audience,
//!   sender device, chain id); route an incoming message with [`peek_sender_key`];
//! - send [`SenderKeyOwn::distribution`] pairwise to every member device before (or with) the
//!   first message it should read, and to each device that joins later;
//! - when a member leaves (or a device is removed), rotate: a new [`SenderKeyOwn::generate`] and a
//!   new distribution to the remaining members, since the one who left holds the old chain key;
//! - when a distribution arrives for a chain id already held, keep the held state: it reaches
//!   back further.

use std::collections::VecDeque;
use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::encoding::{
    RECORD_VERSION, SENDER_KEY_WIRE_VERSION, SenderKeyOwnRecord, SenderKeyReceivedRecord,
    SenderKeySkippedRecord, WireSenderKeyDistribution, WireSenderKeyMessage, decode_versioned,
    encode_secret, encode_versioned,
};
use super::error::{CryptoError, Result};
use super::primitives::{SecretKey, array32, kdf_ck, open_message, seal_message};
use super::ratchet::DEFAULT_SKIPPED_KEY_MAX_AGE_MS;
use super::{KEY_LEN, SIGNATURE_LEN};

/// The most message keys one sender-key message may ask to skip.
pub const SENDER_KEY_MAX_SKIP: u32 = 2_000;

/// The most skipped message keys one [`SenderKeyReceived`] keeps.
pub const SENDER_KEY_MAX_STORED_SKIPPED_KEYS: usize = 2_000;

/// HKDF info of a message key's AEAD key and nonce.
const MESSAGE_KEY_INFO: &[u8] = b"juntos-sender-key-v1";

/// Domain-separation prefix of the Ed25519 signature of a sender-key message.
const SIGNATURE_CONTEXT: &[u8] = b"juntos-sender-key-message-v1";

/// What can be read from a sender-key message without any key (unauthenticated until it
/// decrypted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderKeyInfo {
    /// The sender's chain: picks the [`SenderKeyReceived`] to decrypt with.
    pub chain_id: u32,
    /// Number of the message in that chain.
    pub iteration: u32,
}

/// Reads the chain id and iteration of a sender-key message.
///
/// Errors: [`CryptoError::UnsupportedVersion`] for an unknown version byte,
/// [`CryptoError::InvalidMessage`] for malformed bytes.
pub fn peek_sender_key(message: &[u8]) -> Result<SenderKeyInfo> {
    let parsed = parse(message)?;
    Ok(SenderKeyInfo {
        chain_id: parsed.body.chain_id,
        iteration: parsed.body.iteration,
    })
}

// === impl SenderKeyOwn ===

/// My sending chain for one audience (a group, or my statuses' audience).
pub struct SenderKeyOwn {
    chain_id: u32,
    /// The iteration of the next message; `chain_key` belongs to it.
    iteration: u32,
    chain_key: SecretKey,
    signing: SigningKey,
}

impl fmt::Debug for SenderKeyOwn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public facts only.
        f.debug_struct("SenderKeyOwn")
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .finish_non_exhaustive()
    }
}

impl SenderKeyOwn {
    /// A new chain: random chain id and chain key, iteration 0, and a fresh Ed25519 signing key
    /// pair. Also how the owner rotates (after a member leaves).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let chain_id = rng.next_u32();
        let mut chain_key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(&mut *chain_key);
        let signing = SigningKey::generate(rng);
        Self {
            chain_id,
            iteration: 0,
            chain_key,
            signing,
        }
    }

    /// What another member needs to read this chain from the next message on.
    pub fn distribution(&self) -> SenderKeyDistribution {
        SenderKeyDistribution {
            chain_id: self.chain_id,
            iteration: self.iteration,
            chain_key: self.chain_key.clone(),
            signing_public: self.signing.verifying_key(),
        }
    }

    /// The chain's id.
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }

    /// The iteration the next message will have.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// Encrypts and signs one message; returns its wire bytes. `associated_data` (the group id
    /// and the sender's user and device ids) is bound into the AEAD, and receivers must pass the
    /// same bytes. Fails only with [`CryptoError::Corrupt`] once the chain has sent
    /// `u32::MAX` messages (rotate long before).
    pub fn encrypt(&mut self, plaintext: &[u8], associated_data: &[u8]) -> Result<Vec<u8>> {
        // The last iteration is never sent, so a receiver can always count past it.
        let next_iteration = self.iteration.checked_add(1).ok_or(CryptoError::Corrupt)?;
        let (next_chain, message_key) = kdf_ck(&self.chain_key);
        let aad = message_aad(self.chain_id, self.iteration, associated_data);
        let body = WireSenderKeyMessage {
            chain_id: self.chain_id,
            iteration: self.iteration,
            ciphertext: seal_message(MESSAGE_KEY_INFO, &message_key, &aad, plaintext)?,
        };
        let mut wire = encode_versioned(SENDER_KEY_WIRE_VERSION, &body);
        let signature = self.signing.sign(&signature_input(&wire));
        wire.extend_from_slice(&signature.to_bytes());
        self.chain_key = next_chain;
        self.iteration = next_iteration;
        Ok(wire)
    }

    /// The versioned storage encoding (holds secrets).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let record = SenderKeyOwnRecord {
            chain_id: self.chain_id,
            iteration: self.iteration,
            chain_key: self.chain_key.to_vec(),
            signing_secret: self.signing.to_bytes().to_vec(),
        };
        encode_secret(RECORD_VERSION, &record)
    }

    /// Parses [`SenderKeyOwn::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let record: SenderKeyOwnRecord =
            decode_versioned(RECORD_VERSION, bytes, CryptoError::Corrupt)?;
        let signing = Zeroizing::new(array32(&record.signing_secret).ok_or(CryptoError::Corrupt)?);
        Ok(Self {
            chain_id: record.chain_id,
            iteration: record.iteration,
            chain_key: secret(&record.chain_key, CryptoError::Corrupt)?,
            signing: SigningKey::from_bytes(&signing),
        })
    }
}

// === impl SenderKeyDistribution ===

/// One sender's chain as handed to a member: chain id, iteration, chain key and signing public
/// key. Holds a secret (the chain key); it travels only inside pairwise encrypted messages.
#[derive(Clone)]
pub struct SenderKeyDistribution {
    chain_id: u32,
    /// The iteration `chain_key` belongs to.
    iteration: u32,
    chain_key: SecretKey,
    signing_public: VerifyingKey,
}

impl fmt::Debug for SenderKeyDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the chain key.
        f.debug_struct("SenderKeyDistribution")
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .finish_non_exhaustive()
    }
}

impl SenderKeyDistribution {
    /// The chain's id.
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }

    /// The first iteration a state built from this distribution can decrypt.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The Ed25519 public key that verifies the chain's messages.
    pub fn signing_public(&self) -> [u8; KEY_LEN] {
        self.signing_public.to_bytes()
    }

    /// The versioned wire encoding (holds the chain key: send it only inside a pairwise
    /// encrypted message).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let wire = WireSenderKeyDistribution {
            chain_id: self.chain_id,
            iteration: self.iteration,
            chain_key: self.chain_key.to_vec(),
            signing_public: self.signing_public.to_bytes().to_vec(),
        };
        encode_secret(SENDER_KEY_WIRE_VERSION, &wire)
    }

    /// Parses [`SenderKeyDistribution::encode`]'s output.
    ///
    /// Errors: [`CryptoError::UnsupportedVersion`], [`CryptoError::InvalidMessage`] for
    /// malformed bytes, [`CryptoError::InvalidKey`] for a signing key that is not a usable
    /// Ed25519 point.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let wire: WireSenderKeyDistribution =
            decode_versioned(SENDER_KEY_WIRE_VERSION, bytes, CryptoError::InvalidMessage)?;
        let signing_public = array32(&wire.signing_public).ok_or(CryptoError::InvalidMessage)?;
        Ok(Self {
            chain_id: wire.chain_id,
            iteration: wire.iteration,
            chain_key: secret(&wire.chain_key, CryptoError::InvalidMessage)?,
            signing_public: verifying_key(&signing_public, CryptoError::InvalidKey)?,
        })
    }
}

// === impl SenderKeyReceived ===

/// A message key kept for a message that has not arrived yet.
#[derive(Clone)]
struct SkippedKey {
    iteration: u32,
    message_key: SecretKey,
    stored_at_ms: i64,
}

/// Another member's sending chain, as this device holds it.
pub struct SenderKeyReceived {
    chain_id: u32,
    signing_public: VerifyingKey,
    /// The iteration of the next message key not yet derived; `chain_key` belongs to it.
    iteration: u32,
    chain_key: SecretKey,
    /// The distribution's iteration: nothing older decrypts.
    first_iteration: u32,
    /// Oldest first; every iteration in `first_iteration..iteration`.
    skipped: VecDeque<SkippedKey>,
    skipped_key_max_age_ms: i64,
}

impl fmt::Debug for SenderKeyReceived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public facts only.
        f.debug_struct("SenderKeyReceived")
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .field("first_iteration", &self.first_iteration)
            .field("skipped", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

impl SenderKeyReceived {
    /// The state for a member's chain from its distribution: it decrypts the messages from the
    /// distribution's iteration on, never earlier ones.
    pub fn new(distribution: &SenderKeyDistribution) -> Self {
        Self {
            chain_id: distribution.chain_id,
            signing_public: distribution.signing_public,
            iteration: distribution.iteration,
            chain_key: distribution.chain_key.clone(),
            first_iteration: distribution.iteration,
            skipped: VecDeque::new(),
            skipped_key_max_age_ms: DEFAULT_SKIPPED_KEY_MAX_AGE_MS,
        }
    }

    /// The chain's id.
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }

    /// Verifies and decrypts a message of this chain. `associated_data` must be the bytes the
    /// sender passed; `now_ms` (Unix milliseconds) stamps and expires skipped keys. On any error
    /// the state is unchanged, so a later genuine message still decrypts.
    ///
    /// Errors: [`CryptoError::InvalidMessage`] for malformed bytes or a message of another chain,
    /// [`CryptoError::BadSignature`] for a forged or altered message,
    /// [`CryptoError::PredatesSenderKey`] for a message older than the distribution,
    /// [`CryptoError::Duplicate`] for a replay (or an expired or evicted skipped key),
    /// [`CryptoError::TooManySkipped`] for a jump past [`SENDER_KEY_MAX_SKIP`], and
    /// [`CryptoError::DecryptFailed`] when the ciphertext or associated data does not
    /// authenticate.
    pub fn decrypt(
        &mut self,
        message: &[u8],
        associated_data: &[u8],
        now_ms: i64,
    ) -> Result<Vec<u8>> {
        let parsed = parse(message)?;
        // A cheap routing check on public data; nothing is derived before the signature.
        if parsed.body.chain_id != self.chain_id {
            return Err(CryptoError::InvalidMessage);
        }
        self.signing_public
            .verify_strict(&signature_input(parsed.signed), &parsed.signature)
            .map_err(|_| CryptoError::BadSignature)?;

        let iteration = parsed.body.iteration;
        let aad = message_aad(self.chain_id, iteration, associated_data);
        if iteration < self.first_iteration {
            return Err(CryptoError::PredatesSenderKey);
        }

        // A message whose key was skipped earlier.
        if let Some(index) = self.skipped.iter().position(|k| k.iteration == iteration) {
            let entry = &self.skipped[index];
            if is_expired(entry.stored_at_ms, now_ms, self.skipped_key_max_age_ms) {
                return Err(CryptoError::Duplicate);
            }
            let plaintext = open_message(
                MESSAGE_KEY_INFO,
                &entry.message_key,
                &aad,
                &parsed.body.ciphertext,
            )?;
            self.skipped.remove(index);
            self.expire(now_ms);
            return Ok(plaintext);
        }
        if iteration < self.iteration {
            return Err(CryptoError::Duplicate);
        }
        if u64::from(iteration) - u64::from(self.iteration) > u64::from(SENDER_KEY_MAX_SKIP) {
            return Err(CryptoError::TooManySkipped);
        }
        let next_iteration = iteration
            .checked_add(1)
            .ok_or(CryptoError::InvalidMessage)?;

        // Derive forward on a copy, committed only once the message authenticated.
        let mut chain = self.chain_key.clone();
        let mut new_skipped = Vec::new();
        for skipped in self.iteration..iteration {
            let (next_chain, message_key) = kdf_ck(&chain);
            new_skipped.push((skipped, message_key));
            chain = next_chain;
        }
        let (next_chain, message_key) = kdf_ck(&chain);
        let plaintext = open_message(
            MESSAGE_KEY_INFO,
            &message_key,
            &aad,
            &parsed.body.ciphertext,
        )?;

        // Commit.
        self.chain_key = next_chain;
        self.iteration = next_iteration;
        for (iteration, message_key) in new_skipped {
            self.skipped.push_back(SkippedKey {
                iteration,
                message_key,
                stored_at_ms: now_ms,
            });
        }
        while self.skipped.len() > SENDER_KEY_MAX_STORED_SKIPPED_KEYS {
            self.skipped.pop_front();
        }
        self.expire(now_ms);
        Ok(plaintext)
    }

    /// How long skipped message keys are kept (default [`DEFAULT_SKIPPED_KEY_MAX_AGE_MS`]). A
    /// policy of the caller: not persisted by [`SenderKeyReceived::encode`].
    pub fn set_skipped_key_max_age_ms(&mut self, max_age_ms: i64) {
        self.skipped_key_max_age_ms = max_age_ms;
    }

    /// Drops skipped keys older than the maximum age.
    fn expire(&mut self, now_ms: i64) {
        let max_age_ms = self.skipped_key_max_age_ms;
        self.skipped
            .retain(|k| !is_expired(k.stored_at_ms, now_ms, max_age_ms));
    }

    /// Number of skipped message keys held.
    #[cfg(test)]
    pub(crate) fn skipped_len(&self) -> usize {
        self.skipped.len()
    }

    /// The versioned storage encoding (holds secrets).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let record = SenderKeyReceivedRecord {
            chain_id: self.chain_id,
            signing_public: self.signing_public.to_bytes().to_vec(),
            iteration: self.iteration,
            chain_key: self.chain_key.to_vec(),
            first_iteration: self.first_iteration,
            skipped: self
                .skipped
                .iter()
                .map(|k| SenderKeySkippedRecord {
                    iteration: k.iteration,
                    message_key: k.message_key.to_vec(),
                    stored_at_ms: k.stored_at_ms,
                })
                .collect(),
        };
        encode_secret(RECORD_VERSION, &record)
    }

    /// Parses [`SenderKeyReceived::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let record: SenderKeyReceivedRecord =
            decode_versioned(RECORD_VERSION, bytes, CryptoError::Corrupt)?;
        let signing_public = array32(&record.signing_public).ok_or(CryptoError::Corrupt)?;
        if record.first_iteration > record.iteration
            || record.skipped.len() > SENDER_KEY_MAX_STORED_SKIPPED_KEYS
        {
            return Err(CryptoError::Corrupt);
        }
        let skipped = record
            .skipped
            .iter()
            .map(|k| {
                if !(record.first_iteration..record.iteration).contains(&k.iteration) {
                    return Err(CryptoError::Corrupt);
                }
                Ok(SkippedKey {
                    iteration: k.iteration,
                    message_key: secret(&k.message_key, CryptoError::Corrupt)?,
                    stored_at_ms: k.stored_at_ms,
                })
            })
            .collect::<Result<VecDeque<_>>>()?;
        Ok(Self {
            chain_id: record.chain_id,
            signing_public: verifying_key(&signing_public, CryptoError::Corrupt)?,
            iteration: record.iteration,
            chain_key: secret(&record.chain_key, CryptoError::Corrupt)?,
            first_iteration: record.first_iteration,
            skipped,
            skipped_key_max_age_ms: DEFAULT_SKIPPED_KEY_MAX_AGE_MS,
        })
    }
}

// === helpers ===

/// A parsed sender-key message.
struct Parsed<'a> {
    /// `version || protobuf`, as received: what the signature covers (after the context).
    signed: &'a [u8],
    body: WireSenderKeyMessage,
    signature: Signature,
}

fn parse(message: &[u8]) -> Result<Parsed<'_>> {
    let (&version, _) = message.split_first().ok_or(CryptoError::InvalidMessage)?;
    if version != SENDER_KEY_WIRE_VERSION {
        return Err(CryptoError::UnsupportedVersion(version));
    }
    let body_len = message
        .len()
        .checked_sub(SIGNATURE_LEN)
        .ok_or(CryptoError::InvalidMessage)?;
    let (signed, signature) = message.split_at(body_len);
    let body = decode_versioned(SENDER_KEY_WIRE_VERSION, signed, CryptoError::InvalidMessage)?;
    let signature = Signature::from_slice(signature).map_err(|_| CryptoError::InvalidMessage)?;
    Ok(Parsed {
        signed,
        body,
        signature,
    })
}

/// `"juntos-sender-key-message-v1" || version || protobuf`.
fn signature_input(signed: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(SIGNATURE_CONTEXT.len() + signed.len());
    input.extend_from_slice(SIGNATURE_CONTEXT);
    input.extend_from_slice(signed);
    input
}

/// `chain id (BE) || iteration (BE) || associated_data`.
fn message_aad(chain_id: u32, iteration: u32, associated_data: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(8 + associated_data.len());
    aad.extend_from_slice(&chain_id.to_be_bytes());
    aad.extend_from_slice(&iteration.to_be_bytes());
    aad.extend_from_slice(associated_data);
    aad
}

/// An Ed25519 public key fit for strict verification (a valid point, not of small order).
fn verifying_key(bytes: &[u8; KEY_LEN], bad: CryptoError) -> Result<VerifyingKey> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| bad.clone())?;
    if key.is_weak() {
        return Err(bad);
    }
    Ok(key)
}

fn secret(bytes: &[u8], bad: CryptoError) -> Result<SecretKey> {
    Ok(Zeroizing::new(array32(bytes).ok_or(bad)?))
}

fn is_expired(stored_at_ms: i64, now_ms: i64, max_age_ms: i64) -> bool {
    now_ms.saturating_sub(stored_at_ms) > max_age_ms
}
