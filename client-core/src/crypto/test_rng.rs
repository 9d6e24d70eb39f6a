//! A deterministic random source for tests and frozen fixtures: SHA-256 in counter mode over
//! a seed. Not for production use (the module is compiled only under `cfg(test)`).

use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

/// Deterministic bytes from a seed.
pub(crate) struct TestRng {
    seed: u64,
    counter: u64,
    buffer: [u8; 32],
    used: usize,
}

impl TestRng {
    /// The stream for `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: 0,
            buffer: [0; 32],
            used: 32,
        }
    }
}

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            if self.used == self.buffer.len() {
                let mut hasher = Sha256::new();
                hasher.update(b"juntos-test-rng");
                hasher.update(self.seed.to_be_bytes());
                hasher.update(self.counter.to_be_bytes());
                self.buffer = hasher.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.buffer[self.used];
            self.used += 1;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

// Tests only: the stream is predictable by design.
impl CryptoRng for TestRng {}
