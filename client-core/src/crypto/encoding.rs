//! Versioned, stable byte layouts: one version byte, then a protobuf message.
//!
//! Wire messages and every persisted record (identity, prekeys, sessions, sender keys) use
//! these. Field numbers are never reused; a new layout gets a new version byte. Records holding
//! secrets wipe them when dropped. The one exception to "version, then protobuf" is the
//! sender-key message, which appends its Ed25519 signature (see [`WireSenderKeyMessage`]).

use prost::Message;
use zeroize::{Zeroize, Zeroizing};

use super::error::{CryptoError, Result};

/// Version byte of wire messages.
pub(crate) const WIRE_VERSION: u8 = 1;

/// Version byte of persisted records.
pub(crate) const RECORD_VERSION: u8 = 1;

/// Version byte of sender-key messages and sender-key distributions (their own formats, so they
/// can change apart from pairwise messages).
pub(crate) const SENDER_KEY_WIRE_VERSION: u8 = 1;

/// `version || protobuf`, allocated once at its final size (so wrapping the result in
/// `Zeroizing` leaves no stray copy of a secret behind).
pub(crate) fn encode_versioned<M: Message>(version: u8, message: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + message.encoded_len());
    out.push(version);
    message
        .encode(&mut out)
        .expect("the buffer was sized by encoded_len");
    out
}

/// [`encode_versioned`] for records holding secrets.
pub(crate) fn encode_secret<M: Message>(version: u8, message: &M) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(encode_versioned(version, message))
}

/// Parses `version || protobuf`; `bad` is the error for bytes that do not parse.
pub(crate) fn decode_versioned<M: Message + Default>(
    version: u8,
    bytes: &[u8],
    bad: CryptoError,
) -> Result<M> {
    let (&first, rest) = bytes.split_first().ok_or(bad.clone())?;
    if first != version {
        return Err(CryptoError::UnsupportedVersion(first));
    }
    M::decode(rest).map_err(|_| bad)
}

// === wire ===

/// A message on the wire.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireMessage {
    /// Present on prekey messages: what the responder needs to run X3DH.
    #[prost(message, optional, tag = "1")]
    pub prekey: Option<WirePrekey>,
    /// The sender's current ratchet public key.
    #[prost(bytes = "vec", tag = "2")]
    pub ratchet_key: Vec<u8>,
    /// Number of messages in the sender's previous sending chain.
    #[prost(uint32, tag = "3")]
    pub previous_counter: u32,
    /// Number of this message in the current sending chain.
    #[prost(uint32, tag = "4")]
    pub counter: u32,
    /// ChaCha20-Poly1305 ciphertext and tag.
    #[prost(bytes = "vec", tag = "5")]
    pub ciphertext: Vec<u8>,
}

/// The X3DH part of a prekey message.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WirePrekey {
    #[prost(bytes = "vec", tag = "1")]
    pub identity_signing: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub identity_dh: Vec<u8>,
    /// The initiator's ephemeral X3DH public key.
    #[prost(bytes = "vec", tag = "3")]
    pub base_key: Vec<u8>,
    #[prost(uint32, tag = "4")]
    pub signed_prekey_id: u32,
    #[prost(uint32, optional, tag = "5")]
    pub one_time_prekey_id: Option<u32>,
}

/// A sender-key message, as `version || protobuf || Ed25519 signature (64 bytes)`; the
/// signature covers `"juntos-sender-key-message-v1" || version || protobuf`, the bytes exactly
/// as sent (protobuf encodings are not canonical, so nothing is re-encoded before verifying).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireSenderKeyMessage {
    #[prost(uint32, tag = "1")]
    pub chain_id: u32,
    /// Number of this message in the sender's chain.
    #[prost(uint32, tag = "2")]
    pub iteration: u32,
    /// ChaCha20-Poly1305 ciphertext and tag.
    #[prost(bytes = "vec", tag = "3")]
    pub ciphertext: Vec<u8>,
}

/// A sender-key distribution: what a group member needs to read one sender's chain from
/// `iteration` on. Travels inside pairwise (Double Ratchet) messages only.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireSenderKeyDistribution {
    #[prost(uint32, tag = "1")]
    pub chain_id: u32,
    /// The iteration `chain_key` belongs to.
    #[prost(uint32, tag = "2")]
    pub iteration: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub chain_key: Vec<u8>,
    /// Ed25519 public key that verifies the chain's messages.
    #[prost(bytes = "vec", tag = "4")]
    pub signing_public: Vec<u8>,
}

impl Drop for WireSenderKeyDistribution {
    fn drop(&mut self) {
        self.chain_key.zeroize();
    }
}

// === persisted records ===

/// A device's identity key pairs (secret halves).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct IdentityRecord {
    #[prost(bytes = "vec", tag = "1")]
    pub signing_secret: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub dh_secret: Vec<u8>,
}

impl Drop for IdentityRecord {
    fn drop(&mut self) {
        self.signing_secret.zeroize();
        self.dh_secret.zeroize();
    }
}

/// A signed or one-time prekey (the signature is empty for one-time prekeys).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct PrekeyRecord {
    #[prost(uint32, tag = "1")]
    pub key_id: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub secret: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
}

impl Drop for PrekeyRecord {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// A session.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct SessionRecord {
    #[prost(bytes = "vec", tag = "1")]
    pub local_identity_signing: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub local_identity_dh: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub remote_identity_signing: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub remote_identity_dh: Vec<u8>,
    /// Whether this side ran the initiator half of X3DH.
    #[prost(bool, tag = "5")]
    pub initiator: bool,
    /// The initiator's X3DH ephemeral public key.
    #[prost(bytes = "vec", tag = "6")]
    pub base_key: Vec<u8>,
    /// Initiator only, until the first reply: the prekeys its messages still announce.
    #[prost(message, optional, tag = "7")]
    pub pending_prekey: Option<PendingPrekeyRecord>,
    #[prost(message, optional, tag = "8")]
    pub ratchet: Option<RatchetRecord>,
}

/// The prekey ids an initiator keeps announcing until it hears back.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct PendingPrekeyRecord {
    #[prost(uint32, tag = "1")]
    pub signed_prekey_id: u32,
    #[prost(uint32, optional, tag = "2")]
    pub one_time_prekey_id: Option<u32>,
}

/// Double Ratchet state. Empty bytes mean "none".
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RatchetRecord {
    #[prost(bytes = "vec", tag = "1")]
    pub sending_ratchet_secret: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub receiving_ratchet_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub root_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub sending_chain_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub receiving_chain_key: Vec<u8>,
    #[prost(uint32, tag = "6")]
    pub sending_counter: u32,
    #[prost(uint32, tag = "7")]
    pub receiving_counter: u32,
    #[prost(uint32, tag = "8")]
    pub previous_sending_counter: u32,
    #[prost(message, repeated, tag = "9")]
    pub skipped: Vec<SkippedKeyRecord>,
    /// Remote ratchet keys of finished receiving chains, oldest first.
    #[prost(bytes = "vec", repeated, tag = "10")]
    pub previous_receiving_ratchet_keys: Vec<Vec<u8>>,
}

impl Drop for RatchetRecord {
    fn drop(&mut self) {
        self.sending_ratchet_secret.zeroize();
        self.root_key.zeroize();
        self.sending_chain_key.zeroize();
        self.receiving_chain_key.zeroize();
    }
}

/// A stored message key of a message not yet received.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct SkippedKeyRecord {
    #[prost(bytes = "vec", tag = "1")]
    pub ratchet_key: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub counter: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub message_key: Vec<u8>,
    #[prost(int64, tag = "4")]
    pub stored_at_ms: i64,
}

impl Drop for SkippedKeyRecord {
    fn drop(&mut self) {
        self.message_key.zeroize();
    }
}

/// My sending chain of sender keys for one audience.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct SenderKeyOwnRecord {
    #[prost(uint32, tag = "1")]
    pub chain_id: u32,
    /// The iteration of the next message, which `chain_key` belongs to.
    #[prost(uint32, tag = "2")]
    pub iteration: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub chain_key: Vec<u8>,
    /// Ed25519 secret key (seed).
    #[prost(bytes = "vec", tag = "4")]
    pub signing_secret: Vec<u8>,
}

impl Drop for SenderKeyOwnRecord {
    fn drop(&mut self) {
        self.chain_key.zeroize();
        self.signing_secret.zeroize();
    }
}

/// Another member's sender-key chain as this device holds it.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct SenderKeyReceivedRecord {
    #[prost(uint32, tag = "1")]
    pub chain_id: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub signing_public: Vec<u8>,
    /// The iteration of the next message not yet derived, which `chain_key` belongs to.
    #[prost(uint32, tag = "3")]
    pub iteration: u32,
    #[prost(bytes = "vec", tag = "4")]
    pub chain_key: Vec<u8>,
    /// The iteration of the distribution this state was built from: nothing older decrypts.
    #[prost(uint32, tag = "5")]
    pub first_iteration: u32,
    /// Oldest first.
    #[prost(message, repeated, tag = "6")]
    pub skipped: Vec<SenderKeySkippedRecord>,
}

impl Drop for SenderKeyReceivedRecord {
    fn drop(&mut self) {
        self.chain_key.zeroize();
    }
}

/// A stored sender-key message key of a message not yet received.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct SenderKeySkippedRecord {
    #[prost(uint32, tag = "1")]
    pub iteration: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub message_key: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub stored_at_ms: i64,
}

impl Drop for SenderKeySkippedRecord {
    fn drop(&mut self) {
        self.message_key.zeroize();
    }
}
