//! The Double Ratchet (Signal's "The Double Ratchet Algorithm", section 3, without header
//! encryption), with X25519 for the DH ratchet.
//!
//! - `KDF_RK(rk, dh_out)` = HKDF-SHA256(salt = rk, IKM = dh_out, info `"juntos-ratchet-v1"`),
//!   64 bytes: the next root key, then a chain key.
//! - `KDF_CK(ck)` = HMAC-SHA256(ck, 0x01) as the message key, HMAC-SHA256(ck, 0x02) as the next
//!   chain key.
//! - `ENCRYPT(mk, plaintext, ad)`: HKDF-SHA256(salt = 32 zero bytes, IKM = mk, info
//!   `"juntos-message-key-v1"`) gives a ChaCha20-Poly1305 key (32 bytes) and nonce (12 bytes);
//!   each message key encrypts exactly one message.
//!
//! Skipped message keys are bounded: a header may ask to skip at most [`MAX_SKIP`] keys in one
//! chain, at most [`MAX_STORED_SKIPPED_KEYS`] are kept (the oldest go first), and each is
//! dropped once older than the session's maximum age. Decryption is transactional: it works on
//! a copy of the chains and commits only when the message authenticated.

use std::collections::VecDeque;

use rand::{CryptoRng, RngCore};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::KEY_LEN;
use super::encoding::{RatchetRecord, SkippedKeyRecord};
use super::error::{CryptoError, Result};
use super::primitives::{
    SecretKey, array32, dh, hkdf_sha256, kdf_ck, open_message, public_of, seal_message,
};

/// The most message keys one header may ask to skip in one chain.
pub const MAX_SKIP: u32 = 2_000;

/// The most skipped message keys a session keeps.
pub const MAX_STORED_SKIPPED_KEYS: usize = 2_000;

/// How long a skipped message key is kept by default: 30 days.
pub const DEFAULT_SKIPPED_KEY_MAX_AGE_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// Remote ratchet keys of finished chains remembered to recognise replays from them.
const MAX_PREVIOUS_RECEIVING_KEYS: usize = 64;

const ROOT_INFO: &[u8] = b"juntos-ratchet-v1";
const MESSAGE_KEY_INFO: &[u8] = b"juntos-message-key-v1";

/// The plaintext header of a ratchet message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The sender's current ratchet public key.
    pub ratchet_key: [u8; KEY_LEN],
    /// Length of the sender's previous sending chain (`PN`).
    pub previous_counter: u32,
    /// Number of this message in its chain (`N`).
    pub counter: u32,
}

impl Header {
    /// Length of [`Header::to_bytes`].
    pub(crate) const ENCODED_LEN: usize = KEY_LEN + 8;

    /// The fixed layout bound into the associated data:
    /// `ratchet_key || PN (4 bytes big-endian) || N (4 bytes big-endian)`.
    pub(crate) fn to_bytes(self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..KEY_LEN].copy_from_slice(&self.ratchet_key);
        out[KEY_LEN..KEY_LEN + 4].copy_from_slice(&self.previous_counter.to_be_bytes());
        out[KEY_LEN + 4..].copy_from_slice(&self.counter.to_be_bytes());
        out
    }
}

/// Everything but the skipped keys: small, so decryption works on a copy.
#[derive(Clone)]
struct Chains {
    /// `DHs`.
    sending_secret: StaticSecret,
    sending_public: [u8; KEY_LEN],
    /// `DHr`.
    receiving_key: Option<[u8; KEY_LEN]>,
    /// `RK`.
    root_key: SecretKey,
    /// `CKs`.
    sending_chain: Option<SecretKey>,
    /// `CKr`.
    receiving_chain: Option<SecretKey>,
    /// `Ns`.
    sending_counter: u32,
    /// `Nr`.
    receiving_counter: u32,
    /// `PN`.
    previous_sending_counter: u32,
}

/// A message key kept for a message that has not arrived yet.
#[derive(Clone)]
struct SkippedKey {
    ratchet_key: [u8; KEY_LEN],
    counter: u32,
    message_key: SecretKey,
    stored_at_ms: i64,
}

/// One side's Double Ratchet state.
#[derive(Clone)]
pub(crate) struct Ratchet {
    chains: Chains,
    /// Oldest first.
    skipped: VecDeque<SkippedKey>,
    /// Oldest first.
    previous_receiving_keys: VecDeque<[u8; KEY_LEN]>,
}

impl Ratchet {
    /// `RatchetInitAlice`: the initiator starts with a sending chain towards the responder's
    /// signed prekey.
    pub(crate) fn new_initiator<R: RngCore + CryptoRng>(
        shared_secret: &SecretKey,
        remote_ratchet_key: &[u8; KEY_LEN],
        rng: &mut R,
    ) -> Result<Self> {
        let sending_secret = StaticSecret::random_from_rng(rng);
        let (root_key, sending_chain) =
            kdf_rk(shared_secret, &*dh(&sending_secret, remote_ratchet_key)?);
        Ok(Self::from_chains(Chains {
            sending_public: public_of(&sending_secret),
            sending_secret,
            receiving_key: Some(*remote_ratchet_key),
            root_key,
            sending_chain: Some(sending_chain),
            receiving_chain: None,
            sending_counter: 0,
            receiving_counter: 0,
            previous_sending_counter: 0,
        }))
    }

    /// `RatchetInitBob`: the responder's first ratchet key pair is its signed prekey.
    pub(crate) fn new_responder(shared_secret: &SecretKey, signed_prekey: StaticSecret) -> Self {
        Self::from_chains(Chains {
            sending_public: public_of(&signed_prekey),
            sending_secret: signed_prekey,
            receiving_key: None,
            root_key: shared_secret.clone(),
            sending_chain: None,
            receiving_chain: None,
            sending_counter: 0,
            receiving_counter: 0,
            previous_sending_counter: 0,
        })
    }

    fn from_chains(chains: Chains) -> Self {
        Self {
            chains,
            skipped: VecDeque::new(),
            previous_receiving_keys: VecDeque::new(),
        }
    }

    /// The header the next [`Ratchet::encrypt`] will use.
    pub(crate) fn next_header(&self) -> Header {
        Header {
            ratchet_key: self.chains.sending_public,
            previous_counter: self.chains.previous_sending_counter,
            counter: self.chains.sending_counter,
        }
    }

    /// `RatchetEncrypt` under [`Ratchet::next_header`]; `aad` already binds that header.
    pub(crate) fn encrypt(
        &mut self,
        plaintext: &[u8],
        aad: &[u8],
        now_ms: i64,
        max_age_ms: i64,
    ) -> Result<Vec<u8>> {
        let chain = self
            .chains
            .sending_chain
            .as_ref()
            .ok_or(CryptoError::Corrupt)?;
        let next_counter = self
            .chains
            .sending_counter
            .checked_add(1)
            .ok_or(CryptoError::Corrupt)?;
        let (next_chain, message_key) = kdf_ck(chain);
        let ciphertext = seal_message(MESSAGE_KEY_INFO, &message_key, aad, plaintext)?;
        self.chains.sending_chain = Some(next_chain);
        self.chains.sending_counter = next_counter;
        self.expire(now_ms, max_age_ms);
        Ok(ciphertext)
    }

    /// `RatchetDecrypt`; on any error the state is unchanged.
    pub(crate) fn decrypt<R: RngCore + CryptoRng>(
        &mut self,
        header: &Header,
        ciphertext: &[u8],
        aad: &[u8],
        now_ms: i64,
        max_age_ms: i64,
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        // A message whose key was skipped earlier.
        if let Some(index) = self
            .skipped
            .iter()
            .position(|k| k.ratchet_key == header.ratchet_key && k.counter == header.counter)
        {
            let entry = &self.skipped[index];
            if is_expired(entry.stored_at_ms, now_ms, max_age_ms) {
                return Err(CryptoError::Duplicate);
            }
            let plaintext = open_message(MESSAGE_KEY_INFO, &entry.message_key, aad, ciphertext)?;
            self.skipped.remove(index);
            self.expire(now_ms, max_age_ms);
            return Ok(plaintext);
        }

        // Keys already used: earlier in the current chain, or anywhere in a finished one.
        if Some(header.ratchet_key) == self.chains.receiving_key
            && header.counter < self.chains.receiving_counter
            && self.chains.receiving_chain.is_some()
        {
            return Err(CryptoError::Duplicate);
        }
        if self.previous_receiving_keys.contains(&header.ratchet_key) {
            return Err(CryptoError::Duplicate);
        }

        // Everything else works on a copy, committed only once the message authenticated.
        let mut chains = self.chains.clone();
        let mut new_skipped = Vec::new();
        let mut finished_chain = None;
        if Some(header.ratchet_key) != chains.receiving_key || chains.receiving_chain.is_none() {
            skip_message_keys(&mut chains, header.previous_counter, &mut new_skipped)?;
            finished_chain = chains
                .receiving_key
                .filter(|_| chains.receiving_chain.is_some());
            dh_ratchet(&mut chains, &header.ratchet_key, rng)?;
        }
        skip_message_keys(&mut chains, header.counter, &mut new_skipped)?;
        let chain = chains
            .receiving_chain
            .as_ref()
            .ok_or(CryptoError::Corrupt)?;
        let (next_chain, message_key) = kdf_ck(chain);
        let plaintext = open_message(MESSAGE_KEY_INFO, &message_key, aad, ciphertext)?;
        chains.receiving_chain = Some(next_chain);
        chains.receiving_counter = chains
            .receiving_counter
            .checked_add(1)
            .ok_or(CryptoError::InvalidMessage)?;

        // Commit.
        self.chains = chains;
        if let Some(finished) = finished_chain {
            self.previous_receiving_keys.push_back(finished);
            while self.previous_receiving_keys.len() > MAX_PREVIOUS_RECEIVING_KEYS {
                self.previous_receiving_keys.pop_front();
            }
        }
        for (ratchet_key, counter, message_key) in new_skipped {
            self.skipped.push_back(SkippedKey {
                ratchet_key,
                counter,
                message_key,
                stored_at_ms: now_ms,
            });
        }
        while self.skipped.len() > MAX_STORED_SKIPPED_KEYS {
            self.skipped.pop_front();
        }
        self.expire(now_ms, max_age_ms);
        Ok(plaintext)
    }

    /// Drops skipped keys older than `max_age_ms`.
    fn expire(&mut self, now_ms: i64, max_age_ms: i64) {
        self.skipped
            .retain(|k| !is_expired(k.stored_at_ms, now_ms, max_age_ms));
    }

    /// Number of skipped message keys held.
    #[cfg(test)]
    pub(crate) fn skipped_len(&self) -> usize {
        self.skipped.len()
    }

    /// The persisted form.
    pub(crate) fn to_record(&self) -> RatchetRecord {
        let c = &self.chains;
        RatchetRecord {
            sending_ratchet_secret: c.sending_secret.to_bytes().to_vec(),
            receiving_ratchet_key: c.receiving_key.map(|k| k.to_vec()).unwrap_or_default(),
            root_key: c.root_key.to_vec(),
            sending_chain_key: c
                .sending_chain
                .as_ref()
                .map(|k| k.to_vec())
                .unwrap_or_default(),
            receiving_chain_key: c
                .receiving_chain
                .as_ref()
                .map(|k| k.to_vec())
                .unwrap_or_default(),
            sending_counter: c.sending_counter,
            receiving_counter: c.receiving_counter,
            previous_sending_counter: c.previous_sending_counter,
            skipped: self
                .skipped
                .iter()
                .map(|k| SkippedKeyRecord {
                    ratchet_key: k.ratchet_key.to_vec(),
                    counter: k.counter,
                    message_key: k.message_key.to_vec(),
                    stored_at_ms: k.stored_at_ms,
                })
                .collect(),
            previous_receiving_ratchet_keys: self
                .previous_receiving_keys
                .iter()
                .map(|k| k.to_vec())
                .collect(),
        }
    }

    /// The state from its persisted form.
    pub(crate) fn from_record(record: &RatchetRecord) -> Result<Self> {
        let secret = |bytes: &[u8]| -> Result<SecretKey> {
            Ok(Zeroizing::new(array32(bytes).ok_or(CryptoError::Corrupt)?))
        };
        let optional_secret = |bytes: &[u8]| -> Result<Option<SecretKey>> {
            if bytes.is_empty() {
                Ok(None)
            } else {
                secret(bytes).map(Some)
            }
        };
        let sending_secret = StaticSecret::from(*secret(&record.sending_ratchet_secret)?);
        let receiving_key = if record.receiving_ratchet_key.is_empty() {
            None
        } else {
            Some(array32(&record.receiving_ratchet_key).ok_or(CryptoError::Corrupt)?)
        };
        let skipped = record
            .skipped
            .iter()
            .map(|k| {
                Ok(SkippedKey {
                    ratchet_key: array32(&k.ratchet_key).ok_or(CryptoError::Corrupt)?,
                    counter: k.counter,
                    message_key: secret(&k.message_key)?,
                    stored_at_ms: k.stored_at_ms,
                })
            })
            .collect::<Result<VecDeque<_>>>()?;
        let previous_receiving_keys = record
            .previous_receiving_ratchet_keys
            .iter()
            .map(|k| array32(k).ok_or(CryptoError::Corrupt))
            .collect::<Result<VecDeque<_>>>()?;
        Ok(Self {
            chains: Chains {
                sending_public: public_of(&sending_secret),
                sending_secret,
                receiving_key,
                root_key: secret(&record.root_key)?,
                sending_chain: optional_secret(&record.sending_chain_key)?,
                receiving_chain: optional_secret(&record.receiving_chain_key)?,
                sending_counter: record.sending_counter,
                receiving_counter: record.receiving_counter,
                previous_sending_counter: record.previous_sending_counter,
            },
            skipped,
            previous_receiving_keys,
        })
    }
}

/// `DHRatchet`: a new receiving chain for `remote`, then a new sending key pair and chain.
fn dh_ratchet<R: RngCore + CryptoRng>(
    chains: &mut Chains,
    remote: &[u8; KEY_LEN],
    rng: &mut R,
) -> Result<()> {
    chains.previous_sending_counter = chains.sending_counter;
    chains.sending_counter = 0;
    chains.receiving_counter = 0;
    chains.receiving_key = Some(*remote);
    let (root_key, receiving_chain) =
        kdf_rk(&chains.root_key, &*dh(&chains.sending_secret, remote)?);
    let sending_secret = StaticSecret::random_from_rng(rng);
    let (root_key, sending_chain) = kdf_rk(&root_key, &*dh(&sending_secret, remote)?);
    chains.receiving_chain = Some(receiving_chain);
    chains.sending_public = public_of(&sending_secret);
    chains.sending_secret = sending_secret;
    chains.sending_chain = Some(sending_chain);
    chains.root_key = root_key;
    Ok(())
}

/// `SkipMessageKeys`: derives the receiving chain's keys up to (not including) `until`.
fn skip_message_keys(
    chains: &mut Chains,
    until: u32,
    out: &mut Vec<([u8; KEY_LEN], u32, SecretKey)>,
) -> Result<()> {
    if u64::from(chains.receiving_counter) + u64::from(MAX_SKIP) < u64::from(until) {
        return Err(CryptoError::TooManySkipped);
    }
    let (Some(receiving_key), Some(mut chain)) =
        (chains.receiving_key, chains.receiving_chain.clone())
    else {
        return Ok(());
    };
    while chains.receiving_counter < until {
        let (next_chain, message_key) = kdf_ck(&chain);
        out.push((receiving_key, chains.receiving_counter, message_key));
        chain = next_chain;
        chains.receiving_counter += 1;
    }
    chains.receiving_chain = Some(chain);
    Ok(())
}

fn is_expired(stored_at_ms: i64, now_ms: i64, max_age_ms: i64) -> bool {
    now_ms.saturating_sub(stored_at_ms) > max_age_ms
}

/// `KDF_RK`: (next root key, chain key).
fn kdf_rk(root_key: &[u8; KEY_LEN], dh_out: &[u8; KEY_LEN]) -> (SecretKey, SecretKey) {
    let mut okm = Zeroizing::new([0u8; 2 * KEY_LEN]);
    hkdf_sha256(Some(root_key), dh_out, ROOT_INFO, &mut *okm);
    split_keys(&okm)
}

fn split_keys(okm: &[u8; 2 * KEY_LEN]) -> (SecretKey, SecretKey) {
    let mut first = Zeroizing::new([0u8; KEY_LEN]);
    let mut second = Zeroizing::new([0u8; KEY_LEN]);
    first.copy_from_slice(&okm[..KEY_LEN]);
    second.copy_from_slice(&okm[KEY_LEN..]);
    (first, second)
}
