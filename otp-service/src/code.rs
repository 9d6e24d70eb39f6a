//! Sign-in codes: generation from the OS CSPRNG and the keyed hash that is all the store keeps.

use hmac::{Hmac, Mac};
use rand::Rng;
use rand::rngs::OsRng;
use sha2::Sha256;

/// Digits in a code.
pub const CODE_LENGTH: u32 = 6;

/// A fresh code: 6 decimal digits, uniform, from the OS CSPRNG.
pub fn generate_code() -> String {
    let n: u32 = OsRng.gen_range(0..1_000_000);
    format!("{n:06}")
}

/// The stored form of a code: hex HMAC-SHA256 under the server secret of `phone:code`. The phone
/// is in the MAC so a hash is useless for any other number.
pub fn hash_code(secret: &[u8], phone_e164: &str, code: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(phone_e164.as_bytes());
    mac.update(b":");
    mac.update(code.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: Vec<String> = (0..50).map(|_| generate_code()).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()))
        );
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert!(
            distinct.len() > 40,
            "50 random codes gave only {} distinct",
            distinct.len()
        );
    }

    #[test]
    fn hash_matches_a_frozen_fixture() {
        // Python: hmac.new(b"secret", b"+12015550123:123456", hashlib.sha256).hexdigest()
        assert_eq!(
            hash_code(b"secret", "+12015550123", "123456"),
            "18a7fec6e89d272fd9652bb8b1f0c61eb4fb107f09effe0267151594ae7ebbb6"
        );
    }

    #[test]
    fn hash_binds_secret_phone_and_code() {
        let base = hash_code(b"secret", "+12015550123", "123456");
        assert_eq!(base, hash_code(b"secret", "+12015550123", "123456"));
        assert_ne!(base, hash_code(b"other", "+12015550123", "123456"));
        assert_ne!(base, hash_code(b"secret", "+12015550124", "123456"));
        assert_ne!(base, hash_code(b"secret", "+12015550123", "123457"));
    }
}
