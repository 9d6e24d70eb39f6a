//! A pairwise session between this device and one remote device: X3DH, then the Double
//! Ratchet. This is the API the messaging layer calls.
//!
//! Wire format (version byte 1, then protobuf; layouts in `crypto/encoding.rs`): the
//! ratchet header, the ciphertext, and — on prekey messages — the initiator's identity, base
//! key and the prekey ids it used. Until the initiator has decrypted a reply, every message it
//! sends is a prekey message, so its first message may be lost or overtaken.
//!
//! The AEAD associated data of each message is
//! `AD (X3DH) || header (ratchet key, PN, N) [|| base key || signed prekey id || one-time id]`,
//! the bracketed part only on prekey messages.
//!
//! Routing an incoming message (see [`peek`]):
//! - not a prekey message: [`Session::decrypt`] with the session of the sending device;
//! - a prekey message whose base key equals [`Session::base_key`] of the session with that
//!   device: [`Session::decrypt`] (a retransmitted or overtaken first message);
//! - otherwise: [`Session::accept`], which starts a new session (the peer reinstalled or
//!   started over), then delete the consumed one-time prekey.
//!
//! The caller must also check that the sender identity in a prekey message is the identity the
//! directory lists for the sending device, and keep sessions keyed by remote device.

use std::fmt;

use rand::rngs::OsRng;
use rand::{CryptoRng, RngCore};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::KEY_LEN;
use super::encoding::{
    PendingPrekeyRecord, RECORD_VERSION, SessionRecord, WIRE_VERSION, WireMessage, WirePrekey,
    decode_versioned, encode_secret, encode_versioned,
};
use super::error::{CryptoError, Result};
use super::keys::{IdentityKeyPair, IdentityPublic};
use super::prekeys::PrekeySecrets;
use super::primitives::array32;
use super::ratchet::{DEFAULT_SKIPPED_KEY_MAX_AGE_MS, Header, Ratchet};
use super::x3dh::{self, AD_LEN, RemoteBundle};

/// A Double Ratchet session with one remote device.
pub struct Session {
    local: IdentityPublic,
    remote: IdentityPublic,
    initiator: bool,
    base_key: [u8; KEY_LEN],
    /// Initiator only, until a reply decrypted.
    pending: Option<PendingPrekey>,
    ratchet: Ratchet,
    skipped_key_max_age_ms: i64,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public facts only.
        f.debug_struct("Session")
            .field("remote", &self.remote)
            .field("initiator", &self.initiator)
            .field("awaiting_reply", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

/// The prekeys an initiator's messages announce until it hears back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PendingPrekey {
    signed_prekey_id: u32,
    one_time_prekey_id: Option<u32>,
}

/// The X3DH part of a prekey message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PrekeyPart {
    identity: IdentityPublic,
    base_key: [u8; KEY_LEN],
    signed_prekey_id: u32,
    one_time_prekey_id: Option<u32>,
}

impl PrekeyPart {
    /// `base_key || signed prekey id (BE) || 0/1 || one-time id (BE, 0 when absent)`.
    fn to_bytes(self) -> [u8; KEY_LEN + 9] {
        let mut out = [0u8; KEY_LEN + 9];
        out[..KEY_LEN].copy_from_slice(&self.base_key);
        out[KEY_LEN..KEY_LEN + 4].copy_from_slice(&self.signed_prekey_id.to_be_bytes());
        out[KEY_LEN + 4] = u8::from(self.one_time_prekey_id.is_some());
        out[KEY_LEN + 5..].copy_from_slice(&self.one_time_prekey_id.unwrap_or(0).to_be_bytes());
        out
    }
}

/// A parsed wire message.
struct Parsed {
    prekey: Option<PrekeyPart>,
    header: Header,
    ciphertext: Vec<u8>,
}

/// The result of [`Session::accept`].
pub struct Accepted {
    /// The new session (responder side).
    pub session: Session,
    /// The first message's plaintext.
    pub plaintext: Vec<u8>,
    /// The one-time prekey the initiator used: delete it now, it must never serve again.
    pub consumed_one_time_prekey: Option<u32>,
}

impl fmt::Debug for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the plaintext.
        f.debug_struct("Accepted")
            .field("session", &self.session)
            .field("plaintext_len", &self.plaintext.len())
            .field("consumed_one_time_prekey", &self.consumed_one_time_prekey)
            .finish()
    }
}

/// What can be read from a wire message without any key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireInfo {
    /// Whether the message carries an X3DH header.
    pub is_prekey_message: bool,
    /// The sender's Ed25519 identity key (prekey messages only; unauthenticated until the
    /// message decrypted, and to be checked against the directory).
    pub sender_identity_signing: Option<[u8; KEY_LEN]>,
    /// The sender's X25519 identity key (prekey messages only; as above).
    pub sender_identity_dh: Option<[u8; KEY_LEN]>,
    /// The initiator's X3DH ephemeral public key (prekey messages only).
    pub base_key: Option<[u8; KEY_LEN]>,
    /// The signed prekey the initiator used (prekey messages only).
    pub signed_prekey_id: Option<u32>,
    /// The one-time prekey the initiator used, if any.
    pub one_time_prekey_id: Option<u32>,
}

/// Reads the unencrypted parts of a wire message.
pub fn peek(wire: &[u8]) -> Result<WireInfo> {
    let parsed = parse(wire)?;
    Ok(WireInfo {
        is_prekey_message: parsed.prekey.is_some(),
        sender_identity_signing: parsed.prekey.map(|p| p.identity.signing),
        sender_identity_dh: parsed.prekey.map(|p| p.identity.dh),
        base_key: parsed.prekey.map(|p| p.base_key),
        signed_prekey_id: parsed.prekey.map(|p| p.signed_prekey_id),
        one_time_prekey_id: parsed.prekey.and_then(|p| p.one_time_prekey_id),
    })
}

impl Session {
    /// Starts a session with a remote device from its published bundle (X3DH initiator).
    /// Fails with [`CryptoError::BadSignature`] unless the signed prekey verifies under the
    /// bundle's identity signing key.
    pub fn initiate<R: RngCore + CryptoRng>(
        local: &IdentityKeyPair,
        remote: &RemoteBundle,
        rng: &mut R,
    ) -> Result<Self> {
        let initiated = x3dh::initiate(local, remote, rng)?;
        let ratchet = Ratchet::new_initiator(
            &initiated.agreement.shared_secret,
            &remote.signed_prekey,
            rng,
        )?;
        Ok(Self {
            local: local.public(),
            remote: remote.identity(),
            initiator: true,
            base_key: initiated.base_key,
            pending: Some(PendingPrekey {
                signed_prekey_id: remote.signed_prekey_id,
                one_time_prekey_id: remote.one_time_prekey.map(|(id, _)| id),
            }),
            ratchet,
            skipped_key_max_age_ms: DEFAULT_SKIPPED_KEY_MAX_AGE_MS,
        })
    }

    /// Starts a session from a peer's prekey message (X3DH responder) and decrypts it. The
    /// responder's next ratchet key pair comes from the OS random source.
    ///
    /// Fails with [`CryptoError::InvalidMessage`] for a message that is not a prekey message,
    /// [`CryptoError::UnknownPrekey`] when a named prekey is not (or no longer) held, and
    /// [`CryptoError::DecryptFailed`] when it does not authenticate. On success the caller
    /// deletes [`Accepted::consumed_one_time_prekey`].
    pub fn accept(
        local: &IdentityKeyPair,
        prekeys: &dyn PrekeySecrets,
        wire: &[u8],
        now_ms: i64,
    ) -> Result<Accepted> {
        Self::accept_with_rng(local, prekeys, wire, now_ms, &mut OsRng)
    }

    /// [`Session::accept`] drawing the next ratchet key pair from `rng`.
    pub fn accept_with_rng<R: RngCore + CryptoRng>(
        local: &IdentityKeyPair,
        prekeys: &dyn PrekeySecrets,
        wire: &[u8],
        now_ms: i64,
        rng: &mut R,
    ) -> Result<Accepted> {
        let parsed = parse(wire)?;
        let prekey = parsed.prekey.ok_or(CryptoError::InvalidMessage)?;
        let signed = prekeys
            .signed_prekey(prekey.signed_prekey_id)
            .ok_or(CryptoError::UnknownPrekey)?;
        let signed = StaticSecret::from(*signed);
        let one_time = match prekey.one_time_prekey_id {
            Some(id) => Some(StaticSecret::from(
                *prekeys
                    .one_time_prekey(id)
                    .ok_or(CryptoError::UnknownPrekey)?,
            )),
            None => None,
        };
        let agreement = x3dh::respond(
            local,
            &signed,
            one_time.as_ref(),
            &prekey.identity,
            &prekey.base_key,
        )?;
        let mut session = Self {
            local: local.public(),
            remote: prekey.identity,
            initiator: false,
            base_key: prekey.base_key,
            pending: None,
            ratchet: Ratchet::new_responder(&agreement.shared_secret, signed),
            skipped_key_max_age_ms: DEFAULT_SKIPPED_KEY_MAX_AGE_MS,
        };
        let plaintext = session.decrypt_parsed(&parsed, now_ms, rng)?;
        Ok(Accepted {
            session,
            plaintext,
            consumed_one_time_prekey: prekey.one_time_prekey_id,
        })
    }

    /// Encrypts one message; returns its wire bytes. `now_ms` (Unix milliseconds) expires old
    /// skipped keys.
    pub fn encrypt(&mut self, plaintext: &[u8], now_ms: i64) -> Result<Vec<u8>> {
        let header = self.ratchet.next_header();
        let prekey = self.pending.map(|pending| PrekeyPart {
            identity: self.local,
            base_key: self.base_key,
            signed_prekey_id: pending.signed_prekey_id,
            one_time_prekey_id: pending.one_time_prekey_id,
        });
        let aad = self.message_aad(&header, prekey.as_ref());
        let ciphertext =
            self.ratchet
                .encrypt(plaintext, &aad, now_ms, self.skipped_key_max_age_ms)?;
        let message = WireMessage {
            prekey: prekey.map(|p| WirePrekey {
                identity_signing: p.identity.signing.to_vec(),
                identity_dh: p.identity.dh.to_vec(),
                base_key: p.base_key.to_vec(),
                signed_prekey_id: p.signed_prekey_id,
                one_time_prekey_id: p.one_time_prekey_id,
            }),
            ratchet_key: header.ratchet_key.to_vec(),
            previous_counter: header.previous_counter,
            counter: header.counter,
            ciphertext,
        };
        Ok(encode_versioned(WIRE_VERSION, &message))
    }

    /// Decrypts a message of this session (a new ratchet key pair, when needed, comes from the
    /// OS random source). On any error the session is unchanged, so a later genuine message
    /// still decrypts.
    ///
    /// Errors: [`CryptoError::Duplicate`] for a replay, [`CryptoError::DecryptFailed`] for a
    /// tampered message, [`CryptoError::TooManySkipped`] when the header skips past the bound,
    /// [`CryptoError::InvalidMessage`] for malformed bytes or a prekey message of another
    /// session (see the module documentation).
    pub fn decrypt(&mut self, wire: &[u8], now_ms: i64) -> Result<Vec<u8>> {
        self.decrypt_with_rng(wire, now_ms, &mut OsRng)
    }

    /// [`Session::decrypt`] drawing the next ratchet key pair (made when the peer's ratchet
    /// key changed) from `rng`.
    pub fn decrypt_with_rng<R: RngCore + CryptoRng>(
        &mut self,
        wire: &[u8],
        now_ms: i64,
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        let parsed = parse(wire)?;
        if let Some(prekey) = &parsed.prekey
            && (self.initiator
                || prekey.base_key != self.base_key
                || prekey.identity != self.remote)
        {
            return Err(CryptoError::InvalidMessage);
        }
        self.decrypt_parsed(&parsed, now_ms, rng)
    }

    fn decrypt_parsed<R: RngCore + CryptoRng>(
        &mut self,
        parsed: &Parsed,
        now_ms: i64,
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        let aad = self.message_aad(&parsed.header, parsed.prekey.as_ref());
        let plaintext = self.ratchet.decrypt(
            &parsed.header,
            &parsed.ciphertext,
            &aad,
            now_ms,
            self.skipped_key_max_age_ms,
            rng,
        )?;
        // The responder answered: our later messages need no X3DH header.
        self.pending = None;
        Ok(plaintext)
    }

    /// `AD || header [|| prekey part]`.
    fn message_aad(&self, header: &Header, prekey: Option<&PrekeyPart>) -> Vec<u8> {
        let mut aad = Vec::with_capacity(AD_LEN + Header::ENCODED_LEN + KEY_LEN + 9);
        aad.extend_from_slice(&self.associated_data());
        aad.extend_from_slice(&header.to_bytes());
        if let Some(prekey) = prekey {
            aad.extend_from_slice(&prekey.to_bytes());
        }
        aad
    }

    /// The X3DH associated data, initiator first.
    fn associated_data(&self) -> [u8; AD_LEN] {
        if self.initiator {
            x3dh::associated_data(&self.local, &self.remote)
        } else {
            x3dh::associated_data(&self.remote, &self.local)
        }
    }

    /// The remote device's identity.
    pub fn remote_identity(&self) -> IdentityPublic {
        self.remote
    }

    /// This device's identity, as the session was made with it.
    pub fn local_identity(&self) -> IdentityPublic {
        self.local
    }

    /// The initiator's X3DH ephemeral public key: identifies the session among prekey messages.
    pub fn base_key(&self) -> [u8; KEY_LEN] {
        self.base_key
    }

    /// Whether this side started the session.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Whether outgoing messages are still prekey messages (initiator, no reply decrypted yet).
    pub fn awaiting_reply(&self) -> bool {
        self.pending.is_some()
    }

    /// How long skipped message keys are kept (default
    /// [`DEFAULT_SKIPPED_KEY_MAX_AGE_MS`]). A policy of
    /// the caller: not persisted by [`Session::encode`].
    pub fn set_skipped_key_max_age_ms(&mut self, max_age_ms: i64) {
        self.skipped_key_max_age_ms = max_age_ms;
    }

    /// Number of skipped message keys held.
    #[cfg(test)]
    pub(crate) fn skipped_len(&self) -> usize {
        self.ratchet.skipped_len()
    }

    /// The versioned storage encoding (holds secrets).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let record = SessionRecord {
            local_identity_signing: self.local.signing.to_vec(),
            local_identity_dh: self.local.dh.to_vec(),
            remote_identity_signing: self.remote.signing.to_vec(),
            remote_identity_dh: self.remote.dh.to_vec(),
            initiator: self.initiator,
            base_key: self.base_key.to_vec(),
            pending_prekey: self.pending.map(|p| PendingPrekeyRecord {
                signed_prekey_id: p.signed_prekey_id,
                one_time_prekey_id: p.one_time_prekey_id,
            }),
            ratchet: Some(self.ratchet.to_record()),
        };
        encode_secret(RECORD_VERSION, &record)
    }

    /// Parses [`Session::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let record: SessionRecord = decode_versioned(RECORD_VERSION, bytes, CryptoError::Corrupt)?;
        let identity = |signing: &[u8], dh: &[u8]| {
            IdentityPublic::from_slices(signing, dh).map_err(|_| CryptoError::Corrupt)
        };
        let ratchet = record.ratchet.as_ref().ok_or(CryptoError::Corrupt)?;
        if !record.initiator && record.pending_prekey.is_some() {
            return Err(CryptoError::Corrupt);
        }
        Ok(Self {
            local: identity(&record.local_identity_signing, &record.local_identity_dh)?,
            remote: identity(&record.remote_identity_signing, &record.remote_identity_dh)?,
            initiator: record.initiator,
            base_key: array32(&record.base_key).ok_or(CryptoError::Corrupt)?,
            pending: record.pending_prekey.as_ref().map(|p| PendingPrekey {
                signed_prekey_id: p.signed_prekey_id,
                one_time_prekey_id: p.one_time_prekey_id,
            }),
            ratchet: Ratchet::from_record(ratchet)?,
            skipped_key_max_age_ms: DEFAULT_SKIPPED_KEY_MAX_AGE_MS,
        })
    }
}

fn parse(wire: &[u8]) -> Result<Parsed> {
    let message: WireMessage = decode_versioned(WIRE_VERSION, wire, CryptoError::InvalidMessage)?;
    let key = |bytes: &[u8]| array32(bytes).ok_or(CryptoError::InvalidMessage);
    let prekey = match &message.prekey {
        Some(p) => Some(PrekeyPart {
            identity: IdentityPublic {
                signing: key(&p.identity_signing)?,
                dh: key(&p.identity_dh)?,
            },
            base_key: key(&p.base_key)?,
            signed_prekey_id: p.signed_prekey_id,
            one_time_prekey_id: p.one_time_prekey_id,
        }),
        None => None,
    };
    Ok(Parsed {
        prekey,
        header: Header {
            ratchet_key: key(&message.ratchet_key)?,
            previous_counter: message.previous_counter,
            counter: message.counter,
        },
        ciphertext: message.ciphertext,
    })
}
