//! Safety numbers: a 60-digit fingerprint of two users' identities that both users see
//! identically and can compare out of band (Signal's numeric fingerprint, version 0 layout).
//!
//! A user's identity here is the set of its devices' identities (each device has its own keys),
//! so the number changes when either user adds, removes or resets a device. Each side's
//! 30 digits: `key` = the devices' `Encode(identity)` (Ed25519 || X25519 public key, 64 bytes
//! each) sorted and concatenated; `hash = version (2 bytes) || key || user id`, then 5,200 times
//! `hash = SHA-512(hash || key)`; the first 30 bytes, as six 5-byte big-endian numbers modulo
//! 100,000, give six 5-digit chunks. The two halves are ordered by user id (then by digits), so
//! both sides compute the same number.

use std::fmt;

use sha2::{Digest, Sha512};

use super::keys::IdentityPublic;

/// SHA-512 iterations per half.
pub const ITERATIONS: usize = 5_200;

/// Fingerprint layout version.
const VERSION: [u8; 2] = [0, 0];

/// Digits of a safety number.
pub const DIGITS: usize = 60;

/// A 60-digit safety number; `Display` shows 12 groups of 5 digits separated by spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SafetyNumber {
    digits: String,
}

impl SafetyNumber {
    /// The 60 digits, no separators.
    pub fn digits(&self) -> &str {
        &self.digits
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.digits.as_bytes().chunks(5).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

/// The safety number of two users, each given by its user id and its devices' identities (in
/// any order; one device is a one-element slice). Both users get the same number.
pub fn safety_number(
    local_user_id: &str,
    local: &[IdentityPublic],
    remote_user_id: &str,
    remote: &[IdentityPublic],
) -> SafetyNumber {
    let mine = (local_user_id, half(local_user_id, local));
    let theirs = (remote_user_id, half(remote_user_id, remote));
    let (first, second) = if mine <= theirs {
        (mine, theirs)
    } else {
        (theirs, mine)
    };
    SafetyNumber {
        digits: first.1 + &second.1,
    }
}

/// One side's 30 digits.
fn half(user_id: &str, identities: &[IdentityPublic]) -> String {
    let mut encoded: Vec<_> = identities.iter().map(IdentityPublic::to_bytes).collect();
    encoded.sort_unstable();
    encoded.dedup();
    let key = encoded.concat();
    let mut hash = Vec::with_capacity(VERSION.len() + key.len() + user_id.len());
    hash.extend_from_slice(&VERSION);
    hash.extend_from_slice(&key);
    hash.extend_from_slice(user_id.as_bytes());
    for _ in 0..ITERATIONS {
        let mut digest = Sha512::new();
        digest.update(&hash);
        digest.update(&key);
        hash = digest.finalize().to_vec();
    }
    hash[..30]
        .chunks(5)
        .map(|chunk| {
            let value = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            format!("{:05}", value % 100_000)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::rngs::OsRng;

    use super::*;
    use crate::crypto::IdentityKeyPair;

    #[test]
    fn both_sides_see_the_same_number() {
        let alice = IdentityKeyPair::generate(&mut OsRng).public();
        let bob = IdentityKeyPair::generate(&mut OsRng).public();
        let at_alice = safety_number("alice", &[alice], "bob", &[bob]);
        let at_bob = safety_number("bob", &[bob], "alice", &[alice]);
        assert_eq!(at_alice, at_bob);
        assert_eq!(at_alice.digits().len(), DIGITS);
        assert!(at_alice.digits().bytes().all(|b| b.is_ascii_digit()));
        // The half of the smaller user id comes first.
        assert_eq!(&at_alice.digits()[..30], half("alice", &[alice]));

        let shown = at_alice.to_string();
        let groups: Vec<&str> = shown.split(' ').collect();
        assert_eq!(groups.len(), 12);
        assert!(groups.iter().all(|g| g.len() == 5));
        assert_eq!(shown.replace(' ', ""), at_alice.digits());
    }

    #[test]
    fn changes_when_any_key_or_id_changes() {
        let alice = IdentityKeyPair::generate(&mut OsRng).public();
        let bob = IdentityKeyPair::generate(&mut OsRng).public();
        let base = safety_number("alice", &[alice], "bob", &[bob]);

        let mut other_dh = bob;
        other_dh.dh[31] ^= 1;
        let mut other_signing = bob;
        other_signing.signing[0] ^= 1;
        for changed in [other_dh, other_signing] {
            let number = safety_number("alice", &[alice], "bob", &[changed]);
            assert_ne!(number, base);
            // Only Bob's half moved.
            assert_eq!(&number.digits()[..30], &base.digits()[..30]);
            assert_ne!(&number.digits()[30..], &base.digits()[30..]);
        }
        assert_ne!(safety_number("alice", &[alice], "carol", &[bob]), base);
    }

    #[test]
    fn covers_every_device_in_any_order() {
        let alice = IdentityKeyPair::generate(&mut OsRng).public();
        let phone = IdentityKeyPair::generate(&mut OsRng).public();
        let laptop = IdentityKeyPair::generate(&mut OsRng).public();
        let one_device = safety_number("alice", &[alice], "bob", &[phone]);
        let two_devices = safety_number("alice", &[alice], "bob", &[phone, laptop]);
        assert_ne!(one_device, two_devices);
        assert_eq!(
            two_devices,
            safety_number("bob", &[laptop, phone], "alice", &[alice])
        );
    }

    #[test]
    fn known_answer() {
        // Frozen: a change to the layout would make users' numbers change.
        let alice = IdentityPublic {
            signing: [1; 32],
            dh: [2; 32],
        };
        let bob = IdentityPublic {
            signing: [3; 32],
            dh: [4; 32],
        };
        let number = safety_number("u-alice", &[alice], "u-bob", &[bob]);
        const EXPECTED: &str = "041472476741375605035538682771942165280546207977853076285913";
        assert_eq!(number.digits(), EXPECTED);
    }
}
