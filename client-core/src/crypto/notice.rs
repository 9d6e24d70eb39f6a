//! Group notices: the chat service signs each membership notice with Ed25519 over
//! `"juntos-group-notice-v1" || notice`; this checks such a signature.

use ed25519_dalek::{Signature, VerifyingKey};

use super::error::{CryptoError, Result};

/// What a notice signature covers before the notice itself.
pub const NOTICE_CONTEXT: &[u8] = b"juntos-group-notice-v1";

/// Checks `signature` over `notice` under the service key `public_key` (strict Ed25519).
pub fn verify_notice(public_key: &[u8; 32], notice: &[u8], signature: &[u8]) -> Result<()> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| CryptoError::InvalidKey)?;
    let signature = Signature::from_slice(signature).map_err(|_| CryptoError::BadSignature)?;
    let mut signed = Vec::with_capacity(NOTICE_CONTEXT.len() + notice.len());
    signed.extend_from_slice(NOTICE_CONTEXT);
    signed.extend_from_slice(notice);
    key.verify_strict(&signed, &signature)
        .map_err(|_| CryptoError::BadSignature)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};

    use super::*;

    #[test]
    fn only_the_service_signature_over_the_context_verifies() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key().to_bytes();
        let mut signed = NOTICE_CONTEXT.to_vec();
        signed.extend_from_slice(b"notice");
        let signature = key.sign(&signed).to_bytes();
        verify_notice(&public, b"notice", &signature).expect("verifies");
        assert_eq!(
            verify_notice(&public, b"notica", &signature),
            Err(CryptoError::BadSignature)
        );
        // A signature over the bare notice (no context) is not a notice signature.
        let bare = key.sign(b"notice").to_bytes();
        assert_eq!(
            verify_notice(&public, b"notice", &bare),
            Err(CryptoError::BadSignature)
        );
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes();
        assert_eq!(
            verify_notice(&other, b"notice", &signature),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            verify_notice(&public, b"notice", &signature[..63]),
            Err(CryptoError::BadSignature)
        );
    }
}
