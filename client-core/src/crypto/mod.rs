//! End-to-end encryption: identity and prekeys, X3DH, the Double Ratchet, sender keys, safety
//! numbers.
//!
//! This module tree is the only code in client-core that touches key material. It follows
//! Signal's published specifications ("The X3DH Key Agreement Protocol" and "The Double Ratchet
//! Algorithm") and Signal's sender-key construction for groups, on X25519 (`x25519-dalek`),
//! Ed25519 signatures of prekeys and sender-key messages (`ed25519-dalek`), HKDF-SHA256 and
//! HMAC-SHA256 (`hkdf`, `hmac`, `sha2`) and ChaCha20-Poly1305.
//!
//! The messaging layer only needs [`session`]: [`Session::initiate`] from a fetched
//! [`RemoteBundle`], [`Session::accept`] for the first message of a new peer,
//! [`Session::encrypt`] / [`Session::decrypt`] afterwards, [`peek`] to route an incoming
//! message, and [`Session::encode`] / [`Session::decode`] to persist the state. Groups and
//! statuses add [`sender_key`]: [`SenderKeyOwn`] to send, its [`SenderKeyDistribution`] sent
//! pairwise to members, [`SenderKeyReceived`] to read, and [`peek_sender_key`] to route.
//!
//! Layout, one protocol concept per file:
//! - `primitives`: HKDF, HMAC, X25519 with a low-order check, ChaCha20-Poly1305.
//! - `identity`: the device's identity keys as the client database keeps them.
//! - [`keys`]: the device's identity key pairs and their public halves.
//! - [`prekeys`]: signed and one-time prekeys, and the signature layout the server verifies.
//! - `x3dh`: the initial key agreement.
//! - `ratchet`: the Double Ratchet with bounded, expiring skipped message keys.
//! - `encoding`: the versioned protobuf layouts of wire messages and persisted state.
//! - [`session`]: the public API above.
//! - [`sender_key`]: signed symmetric chains for group messages and statuses.
//! - [`safety_number`](mod@safety_number): the 60-digit number two users compare.
//! - [`notice`]: the chat service's signatures on group notices.
#![deny(clippy::unwrap_used)]

pub(crate) mod attachment;
mod encoding;
mod error;
pub(crate) mod identity;
pub mod keys;
pub mod notice;
pub mod prekeys;
mod primitives;
mod ratchet;
pub mod safety_number;
pub mod sender_key;
pub mod session;
mod x3dh;

#[cfg(test)]
mod kat;
#[cfg(test)]
mod protocol_tests;
#[cfg(test)]
mod sender_key_tests;
#[cfg(test)]
mod test_rng;

pub use error::CryptoError;
pub(crate) use identity::IdentityKeys;
pub use keys::{IdentityKeyPair, IdentityPublic};
pub use notice::verify_notice;
pub use prekeys::{
    InMemoryPrekeys, OneTimePrekeyPair, PrekeySecrets, SIGNED_PREKEY_CONTEXT, SignedPrekeyPair,
    signed_prekey_message, verify_signed_prekey,
};
pub use ratchet::{DEFAULT_SKIPPED_KEY_MAX_AGE_MS, MAX_SKIP, MAX_STORED_SKIPPED_KEYS};
pub use safety_number::{SafetyNumber, safety_number};
pub use sender_key::{
    SENDER_KEY_MAX_SKIP, SENDER_KEY_MAX_STORED_SKIPPED_KEYS, SenderKeyDistribution, SenderKeyInfo,
    SenderKeyOwn, SenderKeyReceived, peek_sender_key,
};
pub use session::{Accepted, Session, WireInfo, peek};
pub use x3dh::RemoteBundle;

/// Length of every X25519 or Ed25519 key, secret or public.
pub const KEY_LEN: usize = 32;

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
