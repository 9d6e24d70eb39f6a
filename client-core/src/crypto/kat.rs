//! Known-answer tests of the primitives, from the published vectors, through the same
//! wrappers the protocol uses.

use x25519_dalek::{StaticSecret, x25519};

use super::primitives::{dh, hkdf_sha256, open, public_of, seal};

fn h(hex: &str) -> Vec<u8> {
    let clean: String = hex.split_whitespace().collect();
    hex::decode(clean).expect("valid hex in a test vector")
}

fn h32(hex: &str) -> [u8; 32] {
    h(hex).try_into().expect("32-byte test vector")
}

// === RFC 7748 ===

#[test]
fn rfc7748_section_5_2_scalar_multiplication() {
    let vectors = [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ];
    for (scalar, u, expected) in vectors {
        assert_eq!(x25519(h32(scalar), h32(u)), h32(expected));
        // The same through the wrapper the protocol uses.
        let shared = dh(&StaticSecret::from(h32(scalar)), &h32(u)).expect("contributory");
        assert_eq!(*shared, h32(expected));
    }
}

#[test]
fn rfc7748_section_5_2_iterated() {
    // k = u = 9; each round k, u = X25519(k, u), k.
    let mut k = [0u8; 32];
    k[0] = 9;
    let mut u = k;
    let round = |k: &mut [u8; 32], u: &mut [u8; 32]| {
        let result = x25519(*k, *u);
        *u = *k;
        *k = result;
    };
    round(&mut k, &mut u);
    assert_eq!(
        k,
        h32("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
    );
    for _ in 1..1000 {
        round(&mut k, &mut u);
    }
    assert_eq!(
        k,
        h32("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")
    );
}

#[test]
fn rfc7748_section_6_1_diffie_hellman() {
    let alice = StaticSecret::from(h32(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    ));
    let bob = StaticSecret::from(h32(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    ));
    let alice_public = h32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    let bob_public = h32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    let shared = h32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_eq!(public_of(&alice), alice_public);
    assert_eq!(public_of(&bob), bob_public);
    assert_eq!(*dh(&alice, &bob_public).expect("contributory"), shared);
    assert_eq!(*dh(&bob, &alice_public).expect("contributory"), shared);
}

#[test]
fn x25519_low_order_points_are_refused() {
    let secret = StaticSecret::from([7u8; 32]);
    // Zero, one, and a point of order 8 (from RFC 7748's discussion / Curve25519 blacklist).
    let mut one = [0u8; 32];
    one[0] = 1;
    let order_8 = h32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
    for point in [[0u8; 32], one, order_8] {
        assert!(dh(&secret, &point).is_err());
    }
}

// === RFC 8439 ===

const RFC8439_KEY: &str = "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f";
const RFC8439_NONCE: &str = "070000004041424344454647";
const RFC8439_AAD: &str = "50515253c0c1c2c3c4c5c6c7";
const RFC8439_PLAINTEXT: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
const RFC8439_CIPHERTEXT: &str = "
    d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
    3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
    92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
    3ff4def08e4b7a9de576d26586cec64b6116";
const RFC8439_TAG: &str = "1ae10b594f09e26a7e902ecbd0600691";

fn rfc8439_inputs() -> ([u8; 32], [u8; 12], Vec<u8>) {
    let nonce: [u8; 12] = h(RFC8439_NONCE).try_into().expect("12-byte nonce");
    (h32(RFC8439_KEY), nonce, h(RFC8439_AAD))
}

#[test]
fn rfc8439_section_2_8_2_seal() {
    let (key, nonce, aad) = rfc8439_inputs();
    let sealed = seal(&key, &nonce, &aad, RFC8439_PLAINTEXT).expect("seals");
    let mut expected = h(RFC8439_CIPHERTEXT);
    expected.extend_from_slice(&h(RFC8439_TAG));
    assert_eq!(sealed, expected);
}

#[test]
fn rfc8439_section_2_8_2_open_and_tampering() {
    let (key, nonce, aad) = rfc8439_inputs();
    let mut sealed = h(RFC8439_CIPHERTEXT);
    sealed.extend_from_slice(&h(RFC8439_TAG));
    assert_eq!(
        open(&key, &nonce, &aad, &sealed).expect("opens"),
        RFC8439_PLAINTEXT
    );

    // A flipped bit anywhere in the tag, the ciphertext, or the AAD, or a truncation, fails.
    let last = sealed.len() - 1;
    for index in [0, 57, last - 16, last - 15, last] {
        let mut tampered = sealed.clone();
        tampered[index] ^= 0x01;
        assert!(open(&key, &nonce, &aad, &tampered).is_err(), "byte {index}");
    }
    let mut other_aad = aad.clone();
    other_aad[0] ^= 0x80;
    assert!(open(&key, &nonce, &other_aad, &sealed).is_err());
    assert!(open(&key, &nonce, &aad, &sealed[..sealed.len() - 1]).is_err());
    assert!(open(&key, &nonce, &aad, &sealed[..15]).is_err());
}

// === RFC 5869 (SHA-256 cases) ===

#[test]
fn rfc5869_test_cases_1_to_3() {
    struct Case {
        ikm: Vec<u8>,
        salt: Option<Vec<u8>>,
        info: Vec<u8>,
        okm: Vec<u8>,
    }
    let cases = [
        Case {
            ikm: h("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
            salt: Some(h("000102030405060708090a0b0c")),
            info: h("f0f1f2f3f4f5f6f7f8f9"),
            okm: h(
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf
                    34007208d5b887185865",
            ),
        },
        Case {
            ikm: (0x00..=0x4f).collect(),
            salt: Some((0x60..=0xaf).collect()),
            info: (0xb0..=0xff).collect(),
            okm: h(
                "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c
                    59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71
                    cc30c58179ec3e87c14c01d5c1f3434f1d87",
            ),
        },
        Case {
            ikm: h("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
            salt: None,
            info: Vec::new(),
            okm: h(
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d
                    9d201395faa4b61a96c8",
            ),
        },
    ];
    for (number, case) in cases.iter().enumerate() {
        let mut okm = vec![0u8; case.okm.len()];
        hkdf_sha256(case.salt.as_deref(), &case.ikm, &case.info, &mut okm);
        assert_eq!(okm, case.okm, "test case {}", number + 1);
    }
    // Test case 3 says "salt = not provided (zero-length)"; that equals a zero-filled salt.
    let mut zero_salt = vec![0u8; 42];
    hkdf_sha256(Some(&[0u8; 32]), &cases[2].ikm, &[], &mut zero_salt);
    assert_eq!(zero_salt, cases[2].okm);
}
