//! Media blobs (pictures, videos, files of up to hundreds of MiB), encrypted in constant memory
//! as a stream of AEAD chunks.
//!
//! Each blob is encrypted on the device under a fresh random [`BlobKey`] and uploaded as
//! ciphertext; the key, the SHA-256 digest of the ciphertext and the plaintext size travel inside
//! the end-to-end encrypted message that refers to it.
//!
//! Format, version 1: the STREAM construction (Hoang, Reyhanitabar, Rogaway and Vizár, "Online
//! Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance") over ChaCha20-Poly1305.
//! - The plaintext is cut into chunks of [`CHUNK`] bytes; the last may be shorter, and an empty
//!   plaintext is one empty last chunk: `n = max(1, ceil(len / CHUNK))` chunks.
//! - Chunk `i` (from 0) is sealed under the blob key with the nonce
//!   `i (8 bytes BE) || 3 zero bytes || last flag (1 byte: 1 for chunk n - 1, else 0)` and the
//!   associated data `"juntos media v1"`. The ciphertext is every sealed chunk (ciphertext, then
//!   its 16-byte tag) in order, so it is [`ciphertext_len`] = `len + 16 * n` bytes long.
//! - The digest is SHA-256 over the whole ciphertext.
//!
//! Both sides know the plaintext size (the receiver from the message), hence `n` and which chunk
//! is last: reordered, dropped, duplicated or altered chunks fail their tag, a ciphertext cut
//! after any chunk is short of the announced size, and bytes past it are refused.
//!
//! What the caller does around it:
//! - take a new [`BlobKey::random`] for every blob. The nonces are counters, safe only because a
//!   key seals one plaintext: sealing two different plaintexts under one key reveals their XOR
//!   and lets the Poly1305 tags be forged. Sealing the same bytes again gives the same
//!   ciphertext, so a retried upload may reseal.
//! - send with [`Sealer`]: [`Sealer::next_chunk_len`] says how many bytes to read next,
//!   [`Sealer::seal_next`] gives the bytes to upload, [`Sealer::finish`] the digest.
//! - receive with [`Opener`]: [`Opener::feed`] the downloaded bytes as they arrive. What it
//!   returns is authenticated chunk by chunk, but only [`Opener::finish`] says it is the whole
//!   blob: write it aside (a temporary file) and keep it only once `finish` succeeds.
//!
//! ChaCha20-Poly1305 does not commit to its key; the digest in the message pins the ciphertext,
//! and every recipient of a message gets the same key, so all of them read the same bytes.
// The media upload and download paths are being written against this API.
#![cfg_attr(not(test), allow(dead_code))]

use std::fmt;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use rand::rngs::OsRng;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::KEY_LEN;
use super::primitives::{NONCE_LEN, TAG_LEN};

/// Plaintext bytes of every chunk but the last.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Bytes of a sealed full chunk: [`CHUNK`] plus the tag. The most an [`Opener`] buffers.
pub(crate) const SEALED_CHUNK: usize = CHUNK + TAG_LEN;

/// The largest plaintext accepted (4 GiB), far above any blob the apps send; it bounds the
/// arithmetic on sizes taken from a message.
pub(crate) const MAX_PLAINTEXT_LEN: u64 = 4 * 1024 * 1024 * 1024;

/// Length of the ciphertext digest (SHA-256).
pub(crate) const DIGEST_LEN: usize = 32;

/// The associated data of every chunk: names the format and its version.
const AAD: &[u8] = b"juntos media v1";

/// `CHUNK` as a u64, for arithmetic on blob sizes.
const CHUNK_U64: u64 = CHUNK as u64;

/// Why sealing or opening a blob failed. Messages hold sizes and chunk numbers, never key
/// material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AttachmentError {
    /// A blob key is not exactly 32 bytes (holds the length given).
    #[error("blob key must be 32 bytes, got {0}")]
    KeyLength(usize),
    /// The plaintext size is above [`MAX_PLAINTEXT_LEN`] (holds the size given).
    #[error("attachment of {0} bytes is above the maximum size")]
    TooLarge(u64),
    /// [`Sealer::seal_next`] was given a chunk of the wrong length: every chunk but the last is
    /// [`CHUNK`] bytes, and the last is what remains of the announced size.
    #[error("chunk {index} must be {expected} bytes, got {actual}")]
    ChunkLength {
        /// Number of the chunk, from 0.
        index: u64,
        /// The length it must have.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// [`Sealer::seal_next`] was called after the last chunk of the announced size.
    #[error("more chunks than the announced size holds")]
    TooManyChunks,
    /// [`Sealer::finish`] was called before every chunk was sealed.
    #[error("only {sealed} of {expected} chunks were sealed")]
    Incomplete {
        /// Chunks sealed.
        sealed: u64,
        /// Chunks the announced size holds.
        expected: u64,
    },
    /// A chunk does not authenticate: altered, reordered, dropped or duplicated chunks, another
    /// key, or another plaintext size than the sender's (holds the chunk number, from 0).
    #[error("chunk {0} does not authenticate")]
    DecryptFailed(u64),
    /// More ciphertext than the announced plaintext size makes.
    #[error("ciphertext longer than the announced size")]
    TooLong,
    /// The ciphertext ended before the announced size.
    #[error("ciphertext truncated: {received} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        received: u64,
        /// Bytes the announced size makes.
        expected: u64,
    },
    /// Every chunk authenticated but the ciphertext's SHA-256 is not the announced digest.
    #[error("ciphertext digest does not match")]
    DigestMismatch,
    /// The [`Opener`] was used after it failed: its output so far must be discarded.
    #[error("attachment decryption already failed")]
    Failed,
}

/// Result with [`AttachmentError`].
pub(crate) type Result<T, E = AttachmentError> = std::result::Result<T, E>;

/// Bytes of the ciphertext of a plaintext of `plaintext_len` bytes: `plaintext_len + 16 * n`,
/// with `n = max(1, ceil(plaintext_len / CHUNK))`. Meaningful up to [`MAX_PLAINTEXT_LEN`]
/// (saturates instead of overflowing far above it).
pub(crate) fn ciphertext_len(plaintext_len: u64) -> u64 {
    plaintext_len.saturating_add(chunk_count(plaintext_len) * TAG_LEN as u64)
}

/// Seals a whole plaintext held in memory (small blobs, tests): the ciphertext and its digest.
///
/// Errors: [`AttachmentError::TooLarge`] above [`MAX_PLAINTEXT_LEN`].
pub(crate) fn seal_all(key: &BlobKey, plaintext: &[u8]) -> Result<(Vec<u8>, [u8; DIGEST_LEN])> {
    let mut sealer = Sealer::new(key, plaintext.len() as u64)?;
    let mut ciphertext = Vec::with_capacity(
        usize::try_from(ciphertext_len(plaintext.len() as u64)).unwrap_or(plaintext.len()),
    );
    // `chunks` yields nothing for an empty plaintext, which is still one (empty) chunk.
    if plaintext.is_empty() {
        ciphertext.extend_from_slice(&sealer.seal_next(&[])?);
    }
    for chunk in plaintext.chunks(CHUNK) {
        ciphertext.extend_from_slice(&sealer.seal_next(chunk)?);
    }
    let digest = sealer.finish()?;
    Ok((ciphertext, digest))
}

/// Opens a whole ciphertext held in memory (small blobs, tests), given the plaintext size and
/// digest from the message.
///
/// Errors: as [`Opener::new`], [`Opener::feed`] and [`Opener::finish`].
pub(crate) fn open_all(
    key: &BlobKey,
    plaintext_len: u64,
    digest: [u8; DIGEST_LEN],
    ciphertext: &[u8],
) -> Result<Vec<u8>> {
    let mut opener = Opener::new(key, plaintext_len, digest)?;
    let plaintext = opener.feed(ciphertext)?;
    opener.finish()?;
    Ok(plaintext)
}

// === impl BlobKey ===

/// The key of one blob: 32 random bytes, wiped when dropped. Never reused for another blob.
#[derive(Clone)]
pub(crate) struct BlobKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.write_str("BlobKey(..)")
    }
}

impl BlobKey {
    /// A fresh key from the operating system's random source.
    pub(crate) fn random() -> Self {
        Self::generate(&mut OsRng)
    }

    /// A fresh key from `rng`.
    pub(crate) fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(&mut *key);
        Self(key)
    }

    /// The key as received in a message.
    ///
    /// Errors: [`AttachmentError::KeyLength`] unless `bytes` is exactly 32 bytes.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let key: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| AttachmentError::KeyLength(bytes.len()))?;
        Ok(Self(Zeroizing::new(key)))
    }

    /// The key's bytes, to put in the message.
    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The AEAD under this key (it wipes its copy of the key when dropped).
    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&*self.0))
    }
}

// === impl Sealer ===

/// Encrypts one blob chunk by chunk, hashing the ciphertext as it goes.
pub(crate) struct Sealer {
    cipher: ChaCha20Poly1305,
    layout: Layout,
    /// The number of the next chunk to seal.
    next: u64,
    hasher: Sha256,
}

impl Sealer {
    /// A sealer of a plaintext of `plaintext_len` bytes under `key`.
    ///
    /// Errors: [`AttachmentError::TooLarge`] above [`MAX_PLAINTEXT_LEN`].
    pub(crate) fn new(key: &BlobKey, plaintext_len: u64) -> Result<Self> {
        Ok(Self {
            cipher: key.cipher(),
            layout: Layout::new(plaintext_len)?,
            next: 0,
            hasher: Sha256::new(),
        })
    }

    /// The length [`Sealer::seal_next`] expects next: [`CHUNK`], or what remains for the last
    /// chunk (0 for an empty blob); `None` once every chunk is sealed.
    pub(crate) fn next_chunk_len(&self) -> Option<usize> {
        (self.next < self.layout.chunks).then(|| self.layout.plain_len(self.next))
    }

    /// Seals the next chunk and returns its ciphertext and tag, to upload in order. `chunk` must
    /// be exactly [`CHUNK`] bytes except the last, whose length is what remains of the announced
    /// size ([`Sealer::next_chunk_len`]). A refused chunk leaves the sealer unchanged.
    ///
    /// Errors: [`AttachmentError::ChunkLength`] for a chunk of another length,
    /// [`AttachmentError::TooManyChunks`] after the last chunk.
    pub(crate) fn seal_next(&mut self, chunk: &[u8]) -> Result<Vec<u8>> {
        let index = self.next;
        let expected = self
            .next_chunk_len()
            .ok_or(AttachmentError::TooManyChunks)?;
        if chunk.len() != expected {
            return Err(AttachmentError::ChunkLength {
                index,
                expected,
                actual: chunk.len(),
            });
        }
        let mut sealed = Vec::with_capacity(chunk.len() + TAG_LEN);
        sealed.extend_from_slice(chunk);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&self.layout.nonce(index)),
                AAD,
                &mut sealed,
            )
            .expect("a chunk is far below ChaCha20-Poly1305's 256 GiB limit");
        sealed.extend_from_slice(&tag);
        self.hasher.update(&sealed);
        self.next += 1;
        Ok(sealed)
    }

    /// The SHA-256 digest of the whole ciphertext, to put in the message.
    ///
    /// Errors: [`AttachmentError::Incomplete`] unless every chunk was sealed.
    pub(crate) fn finish(self) -> Result<[u8; DIGEST_LEN]> {
        if self.next != self.layout.chunks {
            return Err(AttachmentError::Incomplete {
                sealed: self.next,
                expected: self.layout.chunks,
            });
        }
        Ok(self.hasher.finalize().into())
    }
}

// === impl Opener ===

/// Decrypts one blob from its ciphertext as it arrives, holding at most one sealed chunk.
pub(crate) struct Opener {
    cipher: ChaCha20Poly1305,
    layout: Layout,
    /// The number of the chunk being received.
    next: u64,
    /// The bytes of chunk `next` received so far, always fewer than its sealed length.
    buffer: Vec<u8>,
    /// Ciphertext bytes received, all of them hashed.
    received: u64,
    hasher: Sha256,
    /// The digest announced in the message.
    digest: [u8; DIGEST_LEN],
    /// Set by the first error: nothing more is accepted.
    failed: bool,
}

impl Opener {
    /// An opener of the ciphertext of a `plaintext_len`-byte blob under `key`, whose SHA-256 must
    /// be `digest` (all three from the message).
    ///
    /// Errors: [`AttachmentError::TooLarge`] above [`MAX_PLAINTEXT_LEN`].
    pub(crate) fn new(key: &BlobKey, plaintext_len: u64, digest: [u8; DIGEST_LEN]) -> Result<Self> {
        Ok(Self {
            cipher: key.cipher(),
            layout: Layout::new(plaintext_len)?,
            next: 0,
            buffer: Vec::new(),
            received: 0,
            hasher: Sha256::new(),
            digest,
            failed: false,
        })
    }

    /// Takes ciphertext bytes as they arrive, in pieces of any size, and returns the plaintext of
    /// every chunk they complete (possibly none). Each returned chunk authenticated, but only
    /// [`Opener::finish`] says the blob is whole. After an error the opener refuses everything,
    /// and what it returned before must be discarded.
    ///
    /// Errors: [`AttachmentError::DecryptFailed`] as soon as a chunk's tag fails,
    /// [`AttachmentError::TooLong`] as soon as the bytes go past the announced size,
    /// [`AttachmentError::Failed`] after an earlier error.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Vec<u8>> {
        if self.failed {
            return Err(AttachmentError::Failed);
        }
        let result = self.feed_inner(bytes);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn feed_inner(&mut self, mut bytes: &[u8]) -> Result<Vec<u8>> {
        let remaining = self.layout.ciphertext_len - self.received;
        if bytes.len() as u64 > remaining {
            return Err(AttachmentError::TooLong);
        }
        self.hasher.update(bytes);
        self.received += bytes.len() as u64;

        let mut plaintext = Vec::with_capacity(bytes.len());
        while !bytes.is_empty() {
            // The length check above keeps `next` below the chunk count while bytes remain.
            let sealed_len = self.layout.sealed_len(self.next);
            if self.buffer.is_empty() && bytes.len() >= sealed_len {
                // A whole chunk in the input: open it where it lies.
                let (sealed, rest) = bytes.split_at(sealed_len);
                self.open_chunk(sealed, &mut plaintext)?;
                bytes = rest;
            } else {
                let take = (sealed_len - self.buffer.len()).min(bytes.len());
                let (piece, rest) = bytes.split_at(take);
                self.buffer.reserve_exact(sealed_len - self.buffer.len());
                self.buffer.extend_from_slice(piece);
                bytes = rest;
                if self.buffer.len() == sealed_len {
                    let mut sealed = std::mem::take(&mut self.buffer);
                    self.open_chunk(&sealed, &mut plaintext)?;
                    // Keep the allocation for the next chunk.
                    sealed.clear();
                    self.buffer = sealed;
                }
            }
        }
        Ok(plaintext)
    }

    /// Opens sealed chunk `next`, appending its plaintext to `out`.
    fn open_chunk(&mut self, sealed: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let index = self.next;
        let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let start = out.len();
        out.extend_from_slice(body);
        // Checks the tag (in constant time) before decrypting anything.
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&self.layout.nonce(index)),
                AAD,
                &mut out[start..],
                Tag::from_slice(tag),
            )
            .map_err(|_| AttachmentError::DecryptFailed(index))?;
        self.next += 1;
        Ok(())
    }

    /// Bytes of a partial chunk held (tests check the memory bound).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Checks, after the last byte arrived, that the ciphertext was whole and is the one the
    /// message announced.
    ///
    /// Errors: [`AttachmentError::Truncated`] when bytes are missing,
    /// [`AttachmentError::DigestMismatch`] when the digest differs, [`AttachmentError::Failed`]
    /// after an earlier error.
    pub(crate) fn finish(self) -> Result<()> {
        if self.failed {
            return Err(AttachmentError::Failed);
        }
        if self.received != self.layout.ciphertext_len {
            return Err(AttachmentError::Truncated {
                received: self.received,
                expected: self.layout.ciphertext_len,
            });
        }
        debug_assert_eq!(self.next, self.layout.chunks);
        let actual: [u8; DIGEST_LEN] = self.hasher.finalize().into();
        // The digest is no secret; compared without early exit all the same, as MACs are.
        let difference = actual
            .iter()
            .zip(&self.digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference != 0 {
            return Err(AttachmentError::DigestMismatch);
        }
        Ok(())
    }
}

// === helpers ===

/// Number of chunks of a plaintext: `max(1, ceil(len / CHUNK))`.
fn chunk_count(plaintext_len: u64) -> u64 {
    plaintext_len.div_ceil(CHUNK_U64).max(1)
}

/// How a blob of a known size is cut into chunks.
#[derive(Clone, Copy)]
struct Layout {
    plaintext_len: u64,
    chunks: u64,
    ciphertext_len: u64,
}

impl Layout {
    fn new(plaintext_len: u64) -> Result<Self> {
        if plaintext_len > MAX_PLAINTEXT_LEN {
            return Err(AttachmentError::TooLarge(plaintext_len));
        }
        Ok(Self {
            plaintext_len,
            chunks: chunk_count(plaintext_len),
            ciphertext_len: ciphertext_len(plaintext_len),
        })
    }

    fn is_last(&self, index: u64) -> bool {
        index + 1 == self.chunks
    }

    /// Plaintext bytes of chunk `index` (below `chunks`).
    fn plain_len(&self, index: u64) -> usize {
        if self.is_last(index) {
            let len = self.plaintext_len - index * CHUNK_U64;
            usize::try_from(len).expect("the last chunk holds at most CHUNK bytes")
        } else {
            CHUNK
        }
    }

    /// Sealed bytes of chunk `index` (below `chunks`).
    fn sealed_len(&self, index: u64) -> usize {
        self.plain_len(index) + TAG_LEN
    }

    /// `index (8 bytes BE) || 3 zero bytes || last flag`.
    fn nonce(&self, index: u64) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&index.to_be_bytes());
        nonce[NONCE_LEN - 1] = u8::from(self.is_last(index));
        nonce
    }
}

#[cfg(test)]
mod tests {
    use chacha20poly1305::aead::{Aead, Payload};
    use rand::Rng;

    use super::super::test_rng::TestRng;
    use super::*;

    /// The lengths every round trip covers: empty, one byte, around one chunk, and several
    /// chunks with a short last one.
    const LENGTHS: [usize; 6] = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5];

    fn plaintext_of(len: usize, rng: &mut TestRng) -> Vec<u8> {
        let mut plaintext = vec![0u8; len];
        rng.fill_bytes(&mut plaintext);
        plaintext
    }

    /// Feeds `ciphertext` in random pieces (from 1 byte to 200 KiB, small ones often), checking
    /// the buffering bound after each, and returns the plaintext.
    fn feed_in_pieces(
        opener: &mut Opener,
        ciphertext: &[u8],
        rng: &mut TestRng,
    ) -> Result<Vec<u8>> {
        let mut plaintext = Vec::new();
        let mut rest = ciphertext;
        while !rest.is_empty() {
            let max = match rng.gen_range(0..3) {
                0 => 17,
                1 => SEALED_CHUNK + 1,
                _ => 200 * 1024,
            };
            let take = rng.gen_range(1..=max).min(rest.len());
            let (piece, tail) = rest.split_at(take);
            plaintext.extend_from_slice(&opener.feed(piece)?);
            assert!(opener.buffered() < SEALED_CHUNK);
            rest = tail;
        }
        Ok(plaintext)
    }

    /// The sealed chunks of a ciphertext, as the sender uploaded them.
    fn sealed_chunks(ciphertext: &[u8]) -> Vec<&[u8]> {
        ciphertext.chunks(SEALED_CHUNK).collect()
    }

    fn sha256(bytes: &[u8]) -> [u8; DIGEST_LEN] {
        Sha256::digest(bytes).into()
    }

    /// What opening `ciphertext` (fed whole) gives, with the digest recomputed over it so only
    /// the chunk checks can refuse it.
    fn open_with_its_digest(key: &BlobKey, plaintext_len: u64, ciphertext: &[u8]) -> Result<()> {
        open_all(key, plaintext_len, sha256(ciphertext), ciphertext).map(|_| ())
    }

    // === round trips ===

    #[test]
    fn round_trips_in_random_pieces() {
        let mut rng = TestRng::new(1);
        let key = BlobKey::generate(&mut rng);
        for len in LENGTHS {
            let plaintext = plaintext_of(len, &mut rng);
            let (ciphertext, digest) = seal_all(&key, &plaintext).expect("seals");
            assert_eq!(
                ciphertext.len() as u64,
                ciphertext_len(len as u64),
                "len {len}"
            );
            assert_eq!(digest, sha256(&ciphertext));
            for _ in 0..3 {
                let mut opener = Opener::new(&key, len as u64, digest).expect("opener");
                let opened = feed_in_pieces(&mut opener, &ciphertext, &mut rng).expect("opens");
                opener.finish().expect("whole and matching");
                assert!(opened == plaintext, "len {len}");
            }
            assert!(open_all(&key, len as u64, digest, &ciphertext).expect("opens") == plaintext);
        }
    }

    #[test]
    fn round_trips_one_byte_at_a_time() {
        let mut rng = TestRng::new(2);
        let key = BlobKey::generate(&mut rng);
        let plaintext = plaintext_of(CHUNK + 1, &mut rng);
        let (ciphertext, digest) = seal_all(&key, &plaintext).expect("seals");
        let mut opener = Opener::new(&key, plaintext.len() as u64, digest).expect("opener");
        let mut opened = Vec::new();
        for (at, byte) in ciphertext.iter().enumerate() {
            let out = opener.feed(std::slice::from_ref(byte)).expect("feeds");
            // Plaintext comes out exactly when a chunk's last byte arrives.
            let completes = at + 1 == SEALED_CHUNK || at + 1 == ciphertext.len();
            assert_eq!(out.is_empty(), !completes, "at {at}");
            opened.extend_from_slice(&out);
            assert!(opener.buffered() < SEALED_CHUNK);
        }
        opener.finish().expect("whole and matching");
        assert!(opened == plaintext);
    }

    #[test]
    fn empty_feeds_are_harmless() {
        let key = BlobKey::generate(&mut TestRng::new(3));
        let (ciphertext, digest) = seal_all(&key, b"hello").expect("seals");
        let mut opener = Opener::new(&key, 5, digest).expect("opener");
        assert_eq!(opener.feed(&[]), Ok(Vec::new()));
        assert_eq!(opener.feed(&ciphertext), Ok(b"hello".to_vec()));
        assert_eq!(opener.feed(&[]), Ok(Vec::new()));
        opener.finish().expect("whole and matching");
    }

    #[test]
    fn streaming_sealer_matches_seal_all() {
        let mut rng = TestRng::new(4);
        let key = BlobKey::generate(&mut rng);
        let plaintext = plaintext_of(2 * CHUNK + 9, &mut rng);
        let mut sealer = Sealer::new(&key, plaintext.len() as u64).expect("sealer");
        let mut ciphertext = Vec::new();
        let mut offset = 0;
        while let Some(len) = sealer.next_chunk_len() {
            ciphertext.extend_from_slice(
                &sealer
                    .seal_next(&plaintext[offset..offset + len])
                    .expect("seals"),
            );
            offset += len;
        }
        assert_eq!(offset, plaintext.len());
        let digest = sealer.finish().expect("every chunk sealed");
        assert_eq!(
            (ciphertext, digest),
            seal_all(&key, &plaintext).expect("seals")
        );
    }

    #[test]
    fn ciphertext_len_counts_one_tag_per_chunk() {
        let tag = TAG_LEN as u64;
        let chunk = CHUNK_U64;
        assert_eq!(ciphertext_len(0), tag);
        assert_eq!(ciphertext_len(1), 1 + tag);
        assert_eq!(ciphertext_len(chunk - 1), chunk - 1 + tag);
        assert_eq!(ciphertext_len(chunk), chunk + tag);
        assert_eq!(ciphertext_len(chunk + 1), chunk + 1 + 2 * tag);
        assert_eq!(ciphertext_len(3 * chunk + 5), 3 * chunk + 5 + 4 * tag);
        assert_eq!(
            ciphertext_len(MAX_PLAINTEXT_LEN),
            MAX_PLAINTEXT_LEN + (MAX_PLAINTEXT_LEN / chunk) * tag
        );
    }

    /// The layout as documented, checked with the AEAD directly rather than through `Sealer`.
    #[test]
    fn chunks_use_the_documented_nonces_and_associated_data() {
        let key = BlobKey::from_bytes(&[9u8; 32]).expect("32 bytes");
        let plaintext: Vec<u8> = (0..CHUNK + 3).map(|i| (i % 7) as u8).collect();
        let (ciphertext, _) = seal_all(&key, &plaintext).expect("seals");
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_bytes()));
        let chunks = sealed_chunks(&ciphertext);
        assert_eq!(chunks.len(), 2);
        for (index, last, sealed, expected) in [
            (0u64, 0u8, chunks[0], &plaintext[..CHUNK]),
            (1, 1, chunks[1], &plaintext[CHUNK..]),
        ] {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&index.to_be_bytes());
            nonce[11] = last;
            let opened = cipher
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: sealed,
                        aad: b"juntos media v1",
                    },
                )
                .expect("chunk opens with the documented nonce");
            assert!(opened == expected, "chunk {index}");
        }
    }

    // === known answer ===

    /// Frozen: these constants pin format version 1. Changing them breaks every stored and
    /// in-flight attachment; a new format needs a new version instead. (The digest was also
    /// reproduced with an independent ChaCha20-Poly1305, Python's `cryptography`.)
    #[test]
    fn frozen_fixture() {
        const FIXTURE_CIPHERTEXT_LEN: usize = 70_032;
        const FIXTURE_DIGEST: &str =
            "7bf2a3993687c888a51250a1dc048d7f0fca16b263a6ec72061ccb6e0c068e9b";
        let key = BlobKey::from_bytes(&[7u8; 32]).expect("32 bytes");
        let plaintext: Vec<u8> = (0..70_000usize).map(|i| (i % 251) as u8).collect();
        let (ciphertext, digest) = seal_all(&key, &plaintext).expect("seals");
        assert_eq!(ciphertext.len(), FIXTURE_CIPHERTEXT_LEN);
        assert_eq!(hex::encode(digest), FIXTURE_DIGEST);
        let opened = open_all(&key, 70_000, digest, &ciphertext).expect("opens");
        assert!(opened == plaintext);
    }

    // === tampering ===

    #[test]
    fn any_flipped_byte_fails_at_once() {
        let mut rng = TestRng::new(5);
        let key = BlobKey::generate(&mut rng);
        let len = 3 * CHUNK + 5;
        let plaintext = plaintext_of(len, &mut rng);
        let (ciphertext, digest) = seal_all(&key, &plaintext).expect("seals");
        let last_start = 3 * SEALED_CHUNK;
        let positions = [
            (0, 0),                              // first chunk, first byte
            (CHUNK / 2, 0),                      // first chunk, middle
            (CHUNK, 0),                          // first chunk, first tag byte
            (SEALED_CHUNK - 1, 0),               // first chunk, last tag byte
            (SEALED_CHUNK, 1),                   // second chunk, first byte
            (last_start, 3),                     // last chunk, first byte
            (ciphertext.len() - TAG_LEN - 1, 3), // last chunk, last body byte
            (ciphertext.len() - 1, 3),           // last chunk, last tag byte
        ];
        for (at, chunk) in positions {
            let mut tampered = ciphertext.clone();
            tampered[at] ^= 0x01;
            // Fed whole: the feed itself fails, before any digest check.
            let mut opener = Opener::new(&key, len as u64, digest).expect("opener");
            assert_eq!(
                opener.feed(&tampered),
                Err(AttachmentError::DecryptFailed(chunk)),
                "byte {at}"
            );
            assert_eq!(opener.feed(&[]), Err(AttachmentError::Failed));
            assert_eq!(opener.finish(), Err(AttachmentError::Failed));
            // Fed in pieces, with the digest of the tampered bytes: still refused.
            let mut opener = Opener::new(&key, len as u64, sha256(&tampered)).expect("opener");
            assert_eq!(
                feed_in_pieces(&mut opener, &tampered, &mut rng),
                Err(AttachmentError::DecryptFailed(chunk)),
                "byte {at}"
            );
        }
    }

    #[test]
    fn truncation_at_a_chunk_boundary_fails_at_finish() {
        let mut rng = TestRng::new(6);
        let key = BlobKey::generate(&mut rng);
        let len = 3 * CHUNK + 5;
        let (ciphertext, digest) = seal_all(&key, &plaintext_of(len, &mut rng)).expect("seals");
        let expected = ciphertext.len() as u64;
        for cut in [0, SEALED_CHUNK, 3 * SEALED_CHUNK, SEALED_CHUNK + 10] {
            let mut opener = Opener::new(&key, len as u64, digest).expect("opener");
            opener
                .feed(&ciphertext[..cut])
                .expect("every whole chunk authenticates");
            assert_eq!(
                opener.finish(),
                Err(AttachmentError::Truncated {
                    received: cut as u64,
                    expected,
                }),
                "cut at {cut}"
            );
        }
    }

    /// A ciphertext cut after a full chunk and announced as that shorter size (with a matching
    /// digest): the last flag refuses the final chunk.
    #[test]
    fn truncation_with_a_shorter_announced_size_fails() {
        let mut rng = TestRng::new(7);
        let key = BlobKey::generate(&mut rng);
        let (ciphertext, _) =
            seal_all(&key, &plaintext_of(3 * CHUNK + 5, &mut rng)).expect("seals");
        for chunks in [1, 2, 3] {
            let cut = &ciphertext[..chunks * SEALED_CHUNK];
            assert_eq!(
                open_with_its_digest(&key, (chunks * CHUNK) as u64, cut),
                Err(AttachmentError::DecryptFailed(chunks as u64 - 1)),
                "{chunks} chunks"
            );
        }
    }

    #[test]
    fn reordered_dropped_or_duplicated_chunks_fail() {
        let mut rng = TestRng::new(8);
        let key = BlobKey::generate(&mut rng);
        let len = (3 * CHUNK + 5) as u64;
        let (ciphertext, _) =
            seal_all(&key, &plaintext_of(3 * CHUNK + 5, &mut rng)).expect("seals");
        let chunks = sealed_chunks(&ciphertext);
        let cases: [(&str, Vec<&[u8]>, u64); 3] = [
            (
                "swap 0 and 1",
                vec![chunks[1], chunks[0], chunks[2], chunks[3]],
                0,
            ),
            (
                "duplicate 0",
                vec![chunks[0], chunks[0], chunks[2], chunks[3]],
                1,
            ),
            (
                "swap 1 and 2",
                vec![chunks[0], chunks[2], chunks[1], chunks[3]],
                1,
            ),
        ];
        for (name, order, failing) in cases {
            let tampered = order.concat();
            assert_eq!(
                open_with_its_digest(&key, len, &tampered),
                Err(AttachmentError::DecryptFailed(failing)),
                "{name}"
            );
        }
        // Dropping a middle chunk: the last chunk arrives in its place and fails.
        let dropped = [chunks[0], chunks[2], chunks[3]].concat();
        let mut opener = Opener::new(&key, len, sha256(&dropped)).expect("opener");
        assert_eq!(
            opener.feed(&dropped),
            Err(AttachmentError::DecryptFailed(1))
        );
    }

    #[test]
    fn an_extra_byte_fails_at_once() {
        let mut rng = TestRng::new(9);
        let key = BlobKey::generate(&mut rng);
        for len in LENGTHS {
            let (ciphertext, digest) = seal_all(&key, &plaintext_of(len, &mut rng)).expect("seals");
            // Appended to the ciphertext in the same piece.
            let mut longer = ciphertext.clone();
            longer.push(0);
            let mut opener = Opener::new(&key, len as u64, sha256(&longer)).expect("opener");
            assert_eq!(
                opener.feed(&longer),
                Err(AttachmentError::TooLong),
                "len {len}"
            );
            // Or arriving after the whole ciphertext.
            let mut opener = Opener::new(&key, len as u64, digest).expect("opener");
            opener.feed(&ciphertext).expect("opens");
            assert_eq!(
                opener.feed(&[0]),
                Err(AttachmentError::TooLong),
                "len {len}"
            );
            assert_eq!(opener.finish(), Err(AttachmentError::Failed));
        }
    }

    #[test]
    fn wrong_key_fails() {
        let mut rng = TestRng::new(10);
        let key = BlobKey::generate(&mut rng);
        let other = BlobKey::generate(&mut rng);
        for len in LENGTHS {
            let (ciphertext, digest) = seal_all(&key, &plaintext_of(len, &mut rng)).expect("seals");
            assert_eq!(
                open_all(&other, len as u64, digest, &ciphertext),
                Err(AttachmentError::DecryptFailed(0)),
                "len {len}"
            );
        }
    }

    #[test]
    fn wrong_digest_fails_at_finish() {
        let mut rng = TestRng::new(11);
        let key = BlobKey::generate(&mut rng);
        let len = CHUNK + 1;
        let plaintext = plaintext_of(len, &mut rng);
        let (ciphertext, digest) = seal_all(&key, &plaintext).expect("seals");
        for at in [0, DIGEST_LEN - 1] {
            let mut wrong = digest;
            wrong[at] ^= 0x80;
            let mut opener = Opener::new(&key, len as u64, wrong).expect("opener");
            // Every chunk authenticates; only the digest tells.
            assert!(opener.feed(&ciphertext).expect("chunks authenticate") == plaintext);
            assert_eq!(opener.finish(), Err(AttachmentError::DigestMismatch));
        }
    }

    #[test]
    fn wrong_announced_size_fails() {
        let mut rng = TestRng::new(12);
        let key = BlobKey::generate(&mut rng);
        let len = 2 * CHUNK + 5;
        let (ciphertext, _) = seal_all(&key, &plaintext_of(len, &mut rng)).expect("seals");
        // Smaller: the ciphertext is longer than that size makes.
        assert_eq!(
            open_with_its_digest(&key, len as u64 - 1, &ciphertext),
            Err(AttachmentError::TooLong)
        );
        // Larger: the ciphertext ends short of it.
        let mut opener = Opener::new(&key, len as u64 + 1, sha256(&ciphertext)).expect("opener");
        opener
            .feed(&ciphertext)
            .expect("the full chunks authenticate");
        assert_eq!(
            opener.finish(),
            Err(AttachmentError::Truncated {
                received: ciphertext.len() as u64,
                expected: ciphertext.len() as u64 + 1,
            })
        );
    }

    // === misuse and bounds ===

    #[test]
    fn sealer_refuses_misuse() {
        let key = BlobKey::generate(&mut TestRng::new(13));
        let full = vec![0u8; CHUNK];

        // A short chunk that is not the last.
        let mut sealer = Sealer::new(&key, (2 * CHUNK) as u64).expect("sealer");
        assert_eq!(
            sealer.seal_next(&full[..CHUNK - 1]),
            Err(AttachmentError::ChunkLength {
                index: 0,
                expected: CHUNK,
                actual: CHUNK - 1,
            })
        );
        // A refused chunk changes nothing.
        sealer.seal_next(&full).expect("chunk 0");
        // A last chunk longer than what remains.
        let mut sealer = Sealer::new(&key, (CHUNK + 3) as u64).expect("sealer");
        sealer.seal_next(&full).expect("chunk 0");
        assert_eq!(
            sealer.seal_next(&full[..4]),
            Err(AttachmentError::ChunkLength {
                index: 1,
                expected: 3,
                actual: 4,
            })
        );
        // More chunks than announced.
        sealer.seal_next(&full[..3]).expect("chunk 1");
        assert_eq!(sealer.next_chunk_len(), None);
        assert_eq!(sealer.seal_next(&[]), Err(AttachmentError::TooManyChunks));
        assert_eq!(sealer.seal_next(&full), Err(AttachmentError::TooManyChunks));
        sealer.finish().expect("every chunk sealed");

        // Finishing early.
        let mut sealer = Sealer::new(&key, (2 * CHUNK) as u64).expect("sealer");
        sealer.seal_next(&full).expect("chunk 0");
        assert_eq!(
            sealer.finish(),
            Err(AttachmentError::Incomplete {
                sealed: 1,
                expected: 2,
            })
        );
        // An empty blob is still one chunk to seal.
        let sealer = Sealer::new(&key, 0).expect("sealer");
        assert_eq!(sealer.next_chunk_len(), Some(0));
        assert_eq!(
            sealer.finish(),
            Err(AttachmentError::Incomplete {
                sealed: 0,
                expected: 1,
            })
        );
    }

    #[test]
    fn sizes_above_the_maximum_are_refused() {
        let key = BlobKey::generate(&mut TestRng::new(14));
        let too_large = MAX_PLAINTEXT_LEN + 1;
        assert!(Sealer::new(&key, MAX_PLAINTEXT_LEN).is_ok());
        assert!(matches!(
            Sealer::new(&key, too_large),
            Err(AttachmentError::TooLarge(len)) if len == too_large
        ));
        assert!(matches!(
            Opener::new(&key, u64::MAX, [0; DIGEST_LEN]),
            Err(AttachmentError::TooLarge(u64::MAX))
        ));
    }

    #[test]
    fn blob_keys_are_32_bytes_and_stay_out_of_debug() {
        assert_eq!(
            BlobKey::from_bytes(&[1; 31]).map(|_| ()),
            Err(AttachmentError::KeyLength(31))
        );
        assert_eq!(
            BlobKey::from_bytes(&[1; 33]).map(|_| ()),
            Err(AttachmentError::KeyLength(33))
        );
        let key = BlobKey::from_bytes(&[0xab; 32]).expect("32 bytes");
        assert_eq!(key.as_bytes(), &[0xab; 32]);
        assert_eq!(format!("{key:?}"), "BlobKey(..)");
        assert_ne!(BlobKey::random().as_bytes(), BlobKey::random().as_bytes());
    }
}
