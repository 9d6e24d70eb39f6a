//! The one error type of the crypto module tree.
//!
//! Messages name what failed, never key material or plaintext.

/// Why a crypto operation failed. Every failing operation leaves its session unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A signature does not verify: a signed prekey's under the identity signing key it claims,
    /// or a sender-key message's under its chain's signing key (forged or altered).
    #[error("signature does not verify")]
    BadSignature,
    /// A public key is malformed, or a Diffie-Hellman result is all zeros (a low-order point).
    #[error("invalid public key")]
    InvalidKey,
    /// The bytes are not a well-formed message, or the message does not belong to this session
    /// (a prekey message whose base key or sender identity differs from the session's, or a
    /// sender-key message of another chain).
    #[error("invalid message")]
    InvalidMessage,
    /// The message key was already used (a replay), or its stored skipped key has expired or
    /// been evicted.
    #[error("message already received or its key is gone")]
    Duplicate,
    /// A sender-key message older than the distribution the chain state was built from (the
    /// member joined, or was sent the chain, later): its key was never held here.
    #[error("message predates the sender key held")]
    PredatesSenderKey,
    /// The header asks to skip more message keys than the bound allows.
    #[error("message skips too many message keys")]
    TooManySkipped,
    /// Authentication failed: the ciphertext or its header was tampered with, or was made
    /// with other keys.
    #[error("decryption failed")]
    DecryptFailed,
    /// A prekey message names a signed or one-time prekey this device does not hold (any more).
    #[error("unknown prekey")]
    UnknownPrekey,
    /// The first byte names a format version this build does not know.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// Persisted state does not decode, or is internally inconsistent.
    #[error("corrupt stored crypto state")]
    Corrupt,
}

/// Result with [`CryptoError`].
pub(crate) type Result<T, E = CryptoError> = std::result::Result<T, E>;
