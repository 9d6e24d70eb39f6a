//! The primitives everything else is built from, each wrapped once: HKDF-SHA256,
//! HMAC-SHA256, X25519 with a low-order check, and ChaCha20-Poly1305.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::KEY_LEN;
use super::error::{CryptoError, Result};

/// A 32-byte secret that is wiped when dropped.
pub(crate) type SecretKey = Zeroizing<[u8; KEY_LEN]>;

/// ChaCha20-Poly1305 nonce length.
pub(crate) const NONCE_LEN: usize = 12;

/// ChaCha20-Poly1305 tag length.
pub(crate) const TAG_LEN: usize = 16;

/// HKDF-SHA256 (RFC 5869) filling `out`; `salt` `None` means a zero-filled salt.
pub(crate) fn hkdf_sha256(salt: Option<&[u8]>, ikm: &[u8], info: &[u8], out: &mut [u8]) {
    Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, out)
        .expect("every output here is far below 255 * 32 bytes");
}

/// HMAC-SHA256 of `data` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> SecretKey {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// X25519 of our secret and their public key; an all-zero (non-contributory) result, which a
/// low-order public key produces, is refused.
pub(crate) fn dh(secret: &StaticSecret, their_public: &[u8; KEY_LEN]) -> Result<SecretKey> {
    let shared = secret.diffie_hellman(&PublicKey::from(*their_public));
    if !shared.was_contributory() {
        return Err(CryptoError::InvalidKey);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// The X25519 public key of a secret.
pub(crate) fn public_of(secret: &StaticSecret) -> [u8; KEY_LEN] {
    PublicKey::from(secret).to_bytes()
}

/// ChaCha20-Poly1305 encryption: ciphertext followed by the 16-byte tag.
pub(crate) fn seal(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        // Only a plaintext beyond ChaCha20's 256 GiB limit fails.
        .map_err(|_| CryptoError::InvalidMessage)
}

/// ChaCha20-Poly1305 decryption; the tag is checked in constant time by the AEAD.
pub(crate) fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>> {
    if ciphertext.len() < TAG_LEN {
        return Err(CryptoError::DecryptFailed);
    }
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::DecryptFailed)
}

/// `KDF_CK`: (next chain key, message key), the chain step shared by the Double Ratchet and
/// sender-key chains.
pub(crate) fn kdf_ck(chain_key: &[u8; KEY_LEN]) -> (SecretKey, SecretKey) {
    let message_key = hmac_sha256(chain_key, &[0x01]);
    let next_chain = hmac_sha256(chain_key, &[0x02]);
    (next_chain, message_key)
}

/// The AEAD key and nonce of a message key, derived under the HKDF label `info`.
fn message_cipher_keys(
    info: &[u8],
    message_key: &[u8; KEY_LEN],
) -> (SecretKey, Zeroizing<[u8; NONCE_LEN]>) {
    let mut okm = Zeroizing::new([0u8; KEY_LEN + NONCE_LEN]);
    hkdf_sha256(None, message_key, info, &mut *okm);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    let mut nonce = Zeroizing::new([0u8; NONCE_LEN]);
    key.copy_from_slice(&okm[..KEY_LEN]);
    nonce.copy_from_slice(&okm[KEY_LEN..]);
    (key, nonce)
}

/// [`seal`] under the key and nonce `message_key` yields with the HKDF label `info`.
pub(crate) fn seal_message(
    info: &[u8],
    message_key: &[u8; KEY_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let (key, nonce) = message_cipher_keys(info, message_key);
    seal(&key, &nonce, aad, plaintext)
}

/// [`open`] under the key and nonce `message_key` yields with the HKDF label `info`.
pub(crate) fn open_message(
    info: &[u8],
    message_key: &[u8; KEY_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>> {
    let (key, nonce) = message_cipher_keys(info, message_key);
    open(&key, &nonce, aad, ciphertext)
}

/// A 32-byte array from a slice, `None` unless the length is exactly 32.
pub(crate) fn array32(bytes: &[u8]) -> Option<[u8; KEY_LEN]> {
    bytes.try_into().ok()
}
