//! Protocol tests of sender keys through the public [`SenderKeyOwn`] / [`SenderKeyReceived`]
//! API; forgeries are built from the wire and record layouts, as a malicious member would.

use ed25519_dalek::{Signer, SigningKey};
use prost::Message;
use rand::rngs::OsRng;

use super::encoding::{
    RECORD_VERSION, SENDER_KEY_WIRE_VERSION, SenderKeyOwnRecord, SenderKeyReceivedRecord,
    WireSenderKeyDistribution, WireSenderKeyMessage, decode_versioned, encode_secret,
    encode_versioned,
};
use super::test_rng::TestRng;
use super::*;

const T0: i64 = 1_700_000_000_000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// What the caller binds: group id, sender user id, sender device id.
const AD: &[u8] = b"group:7f3a|user:alice|device:2";

/// A member's state, built from the distribution as it travels (encoded, then decoded).
fn receiver_of(owner: &SenderKeyOwn) -> SenderKeyReceived {
    let wire = owner.distribution().encode();
    SenderKeyReceived::new(&SenderKeyDistribution::decode(&wire).expect("distribution decodes"))
}

fn send(owner: &mut SenderKeyOwn, text: &str) -> Vec<u8> {
    owner.encrypt(text.as_bytes(), AD).expect("encrypts")
}

fn receive(receiver: &mut SenderKeyReceived, wire: &[u8]) -> String {
    String::from_utf8(receiver.decrypt(wire, AD, T0).expect("decrypts")).expect("utf-8")
}

/// Asserts the decrypt failed with `expected` and left `receiver` exactly as it was.
fn assert_rejected_unchanged(
    receiver: &mut SenderKeyReceived,
    wire: &[u8],
    now_ms: i64,
    expected: CryptoError,
) {
    let before = receiver.encode();
    assert_eq!(receiver.decrypt(wire, AD, now_ms), Err(expected));
    assert_eq!(
        *receiver.encode(),
        *before,
        "state changed on a failed decrypt"
    );
}

/// The protobuf part of a sender-key message.
fn body_of(wire: &[u8]) -> WireSenderKeyMessage {
    WireSenderKeyMessage::decode(&wire[1..wire.len() - SIGNATURE_LEN]).expect("parses")
}

/// A sender-key message of `body`, signed by `signing` the way the owner signs.
fn signed(body: &WireSenderKeyMessage, signing: &SigningKey) -> Vec<u8> {
    let mut wire = encode_versioned(SENDER_KEY_WIRE_VERSION, body);
    let mut input = b"juntos-sender-key-message-v1".to_vec();
    input.extend_from_slice(&wire);
    wire.extend_from_slice(&signing.sign(&input).to_bytes());
    wire
}

/// The owner's signing key, from its storage encoding.
fn signing_key_of(owner: &SenderKeyOwn) -> SigningKey {
    let record: SenderKeyOwnRecord =
        decode_versioned(RECORD_VERSION, &owner.encode(), CryptoError::Corrupt).expect("decodes");
    SigningKey::from_bytes(&record.signing_secret[..].try_into().expect("32 bytes"))
}

/// A member who received `distribution` and sends on its chain with a signing key of its own.
fn forger(distribution: &SenderKeyDistribution) -> SenderKeyOwn {
    let wire: WireSenderKeyDistribution = decode_versioned(
        SENDER_KEY_WIRE_VERSION,
        &distribution.encode(),
        CryptoError::InvalidMessage,
    )
    .expect("decodes");
    let record = SenderKeyOwnRecord {
        chain_id: wire.chain_id,
        iteration: wire.iteration,
        chain_key: wire.chain_key.clone(),
        signing_secret: SigningKey::generate(&mut OsRng).to_bytes().to_vec(),
    };
    SenderKeyOwn::decode(&encode_secret(RECORD_VERSION, &record)).expect("decodes")
}

#[test]
fn round_trip_to_several_receivers() {
    let mut owner = SenderKeyOwn::generate(&mut OsRng);
    let distribution = owner.distribution();
    assert_eq!(distribution.chain_id(), owner.chain_id());
    assert_eq!(distribution.iteration(), 0);
    let mut members: Vec<_> = (0..4).map(|_| receiver_of(&owner)).collect();
    assert!(members.iter().all(|m| m.chain_id() == owner.chain_id()));

    for i in 0..6u32 {
        let text = format!("to the group {i}");
        let wire = send(&mut owner, &text);
        assert_eq!(
            peek_sender_key(&wire),
            Ok(SenderKeyInfo {
                chain_id: owner.chain_id(),
                iteration: i,
            })
        );
        for member in &mut members {
            assert_eq!(receive(member, &wire), text);
        }
    }
    assert_eq!(owner.iteration(), 6);
    // Empty plaintexts are messages too.
    let empty = owner.encrypt(b"", AD).expect("encrypts");
    assert_eq!(members[0].decrypt(&empty, AD, T0), Ok(Vec::new()));
}

#[test]
fn out_of_order_delivery_within_the_bound() {
    let mut owner = SenderKeyOwn::generate(&mut OsRng);
    let mut member = receiver_of(&owner);
    let wires: Vec<_> = (0..6).map(|i| send(&mut owner, &format!("m{i}"))).collect();
    for i in [3usize, 1, 5, 0, 2, 4] {
        assert_eq!(receive(&mut member, &wires[i]), format!("m{i}"));
    }
    assert_eq!(member.skipped_len(), 0);
}

#[test]
fn skip_bound_is_enforced() {
    let mut owner = SenderKeyOwn::generate(&mut OsRng);
    let mut member = receiver_of(&owner);
    let wires: Vec<_> = (0..=SENDER_KEY_MAX_SKIP + 1)
        .map(|i| send(&mut owner, &format!("m{i}")))
        .collect();
    // Iteration MAX_SKIP + 1 needs MAX_SKIP + 1 skipped keys: refused.
    let too_far = &wires[(SENDER_KEY_MAX_SKIP + 1) as usize];
    assert_rejected_unchanged(&mut member, too_far, T0, CryptoError::TooManySkipped);

    let farthest = &wires[SENDER_KEY_MAX_SKIP as usize];
    assert_eq!(
        receive(&mut member, farthest),
        format!("m{SENDER_KEY_MAX_SKIP}")
    );
    assert_eq!(member.skipped_len(), SENDER_KEY_MAX_SKIP as usize);
    assert_eq!(
        receive(&mut member, too_far),
        format!("m{}", SENDER_KEY_MAX_SKIP + 1)
    );

    // The store holds at most SENDER_KEY_MAX_STORED_SKIPPED_KEYS: new skips evict the oldest.
    let next: Vec<_> = (0..4).map(|i| send(&mut owner, &format!("n{i}"))).collect();
    assert_eq!(receive(&mut member, &next[3]), "n3");
    assert_eq!(member.skipped_len(), SENDER_KEY_MAX_STORED_SKIPPED_KEYS);
    for evicted in &wires[..3] {
        assert_rejected_unchanged(&mut member, evicted, T0, CryptoError::Duplicate);
    }
    assert_eq!(receive(&mut member, &wires[3]), "m3");
    assert_eq!(receive(&mut member, &next[0]), "n0");
}

#[test]
fn lost_messages_do_not_stop_the_chain() {
    let mut owner = SenderKeyOwn::generate(&mut OsRng);
    let mut member = receiver_of(&owner);
    let wires: Vec<_> = (0..7).map(|i| send(&mut owner, &format!("m{i}"))).collect();
    // 1, 2, 4 and 5 never arrive.
    for i in [0usize, 3, 6] {
        assert_eq!(receive(&mut member, &wires[i]), format!("m{i}"));
    }
    assert_eq!(member.skipped_len(), 4);
    for i in 7..10 {
        let text = format!("later {i}");
        assert_eq!(receive(&mut member, &send(&mut owner, &text)), text);
    }
    assert_eq!(member.skipped_len(), 4);
    // One of the lost ones turns up after all.
    assert_eq!(receive(&mut member, &wires[4]), "m4");
    assert_eq!(member.skipped_len(), 3);
}

#[test]
fn replays_are_rejected_as_duplicates() {
    let mut owner = SenderKeyOwn::generate(&mut OsRng);
    let mut member = receiver_of(&owner);
    let first = send(&mut owner, "one");
    let skipped = send(&mut owner, "two");
    let third = send(&mut owner, "three");
    assert_eq!(receive(&mut member, &first), "one");
    assert_rejected_unchanged(&mut member, &first, T0, CryptoError::Duplicate);

    // A skipped key serves once.
    assert_eq!(receive(&mut member, &third), "three");
    assert_eq!(receive(&mut member, &skipped), "two");
    assert_rejected_unchanged(&mut member, &skipped, T0, CryptoError::Duplicate);
    assert_rejected_unchanged(&mut member, &third, T0, CryptoError::Duplicate);
    assert_eq!(member.skipped_len(), 0);
}

#[test]
fn tampered_messages_are_rejected_and_state_unchanged() {
    let mut owner = SenderKeyOwn::generate(&mut OsRng);
    let mut member = receiver_of(&owner);
    let wire = send(&mut owner, "genuine");

    // Any changed byte before the signature breaks the signature.
    let signature = &wire[wire.len() - SIGNATURE_LEN..];
    let resealed = |body: &WireSenderKeyMessage| {
        let mut out = encode_versioned(SENDER_KEY_WIRE_VERSION, body);
        out.extend_from_slice(signature);
        out
    };
    let body_len = wire.len() - SIGNATURE_LEN;
    for index in [body_len - 20, body_len - 17, body_len - 1] {
        let mut tampered = wire.clone();
        tampered[index] ^= 0x40;
        assert_rejected_unchanged(&mut member, &tampered, T0, CryptoError::BadSignature);
    }
    let mut body = body_of(&wire);
    body.iteration += 1;
    assert_rejected_unchanged(&mut member, &resealed(&body), T0, CryptoError::BadSignature);
    // Another chain id is routed away before the signature is even checked.
    let mut body = body_of(&wire);
    body.chain_id ^= 1;
    assert_rejected_unchanged(
        &mut member,
        &resealed(&body),
        T0,
        CryptoError::InvalidMessage,
    );
    let mut tampered = wire.clone();
    tampered[0] ^= 0x40;
    assert_rejected_unchanged(
        &mut member,
        &tampered,
        T0,
        CryptoError::UnsupportedVersion(SENDER_KEY_WIRE_VERSION ^ 0x40),
    );
    let truncated = &wire[..wire.len() - 1];
    let before = member.encode();
    assert!(member.decrypt(truncated, AD, T0).is_err());
    assert_eq!(*member.encode(), *before);

    // The AEAD binds the ciphertext, the header and the associated data on its own: a
    // tampered ciphertext, re-signed with the chain's key, still fails.
    let signing = signing_key_of(&owner);
    let mut body = body_of(&wire);
    body.ciphertext[0] ^= 1;
    assert_rejected_unchanged(
        &mut member,
        &signed(&body, &signing),
        T0,
        CryptoError::DecryptFailed,
    );
    let mut body = body_of(&wire);
    let last = body.ciphertext.len() - 1;
    body.ciphertext[last] ^= 1;
    assert_rejected_unchanged(
        &mut member,
        &signed(&body, &signing),
        T0,
        CryptoError::DecryptFailed,
    );
    let mut body = body_of(&wire);
    body.ciphertext.truncate(10);
    assert_rejected_unchanged(
        &mut member,
        &signed(&body, &signing),
        T0,
        CryptoError::DecryptFailed,
    );
    let before = member.encode();
    assert_eq!(
        member.decrypt(&wire, b"group:other|user:alice|device:2", T0),
        Err(CryptoError::DecryptFailed)
    );
    assert_eq!(*member.encode(), *before);

    assert_eq!(receive(&mut member, &wire), "genuine");
}

#[test]
fn forged_signatures_are_rejected() {
    let mut owner = SenderKeyOwn::generate(&mut OsRng);
    let mut member = receiver_of(&owner);
    let mut mallory = forger(&owner.distribution());
    let wire = send(&mut owner, "genuine");

    // Another member knows the chain key and makes a well-formed message on the same chain and
    // iteration, signed with its own key.
    let forged = mallory.encrypt(b"forged", AD).expect("encrypts");
    assert_eq!(peek_sender_key(&forged), peek_sender_key(&wire));
    assert_rejected_unchanged(&mut member, &forged, T0, CryptoError::BadSignature);
    // Nor can it make the receiver derive far ahead: the signature is checked first.
    let mut far = body_of(&forged);
    far.iteration = u32::MAX - 1;
    let far = signed(&far, &signing_key_of(&mallory));
    assert_rejected_unchanged(&mut member, &far, T0, CryptoError::BadSignature);

    // A flipped signature byte, and a genuine signature of another message.
    for index in [wire.len() - SIGNATURE_LEN, wire.len() - 1] {
        let mut flipped = wire.clone();
        flipped[index] ^= 0x01;
        assert_rejected_unchanged(&mut member, &flipped, T0, CryptoError::BadSignature);
    }
    let other = send(&mut owner, "other");
    let mut swapped = wire[..wire.len() - SIGNATURE_LEN].to_vec();
    swapped.extend_from_slice(&other[other.len() - SIGNATURE_LEN..]);
    assert_rejected_unchanged(&mut member, &swapped, T0, CryptoError::BadSignature);

    // The genuine messages still decrypt.
    assert_eq!(receive(&mut member, &other), "other");
    assert_eq!(receive(&mut member, &wire), "genuine");
}

#[test]
fn a_later_distribution_cannot_decrypt_earlier_messages() {
    let mut owner = SenderKeyOwn::generate(&mut OsRng);
    let mut early = receiver_of(&owner);
    let before: Vec<_> = (0..3).map(|i| send(&mut owner, &format!("m{i}"))).collect();
    let distribution = owner.distribution();
    assert_eq!(distribution.iteration(), 3);
    let mut late = receiver_of(&owner);
    let after = send(&mut owner, "m3");

    for wire in &before {
        assert_rejected_unchanged(&mut late, wire, T0, CryptoError::PredatesSenderKey);
    }
    assert_eq!(receive(&mut late, &after), "m3");
    assert_rejected_unchanged(&mut late, &before[0], T0, CryptoError::PredatesSenderKey);
    assert_eq!(late.skipped_len(), 0);

    for (i, wire) in before.iter().enumerate() {
        assert_eq!(receive(&mut early, wire), format!("m{i}"));
    }
    assert_eq!(receive(&mut early, &after), "m3");
}

#[test]
fn after_rotation_the_old_distribution_reads_nothing_new() {
    let mut rng = TestRng::new(21);
    let mut owner = SenderKeyOwn::generate(&mut rng);
    let mut stays = receiver_of(&owner);
    let mut leaves = receiver_of(&owner);
    let wire = send(&mut owner, "before");
    assert_eq!(receive(&mut stays, &wire), "before");
    assert_eq!(receive(&mut leaves, &wire), "before");

    // A member left: the owner starts a new chain and sends it to the others only.
    let old_chain = owner.chain_id();
    let mut owner = SenderKeyOwn::generate(&mut rng);
    assert_ne!(owner.chain_id(), old_chain);
    let mut stays_new = receiver_of(&owner);
    let after = send(&mut owner, "after");
    assert_eq!(
        peek_sender_key(&after).map(|info| info.chain_id),
        Ok(owner.chain_id())
    );
    assert_rejected_unchanged(&mut leaves, &after, T0, CryptoError::InvalidMessage);
    assert_rejected_unchanged(&mut stays, &after, T0, CryptoError::InvalidMessage);
    assert_eq!(receive(&mut stays_new, &after), "after");

    // Relabelled with the old chain id, the new message fails the old chain's signature.
    let mut relabelled = body_of(&after);
    relabelled.chain_id = old_chain;
    let relabelled = signed(&relabelled, &signing_key_of(&owner));
    assert_rejected_unchanged(&mut leaves, &relabelled, T0, CryptoError::BadSignature);
}

#[test]
fn skipped_keys_expire() {
    let mut owner = SenderKeyOwn::generate(&mut OsRng);
    let mut member = receiver_of(&owner);
    let late = send(&mut owner, "late");
    assert_eq!(
        receive(&mut member, &send(&mut owner, "on time")),
        "on time"
    );
    assert_eq!(member.skipped_len(), 1);

    // Within the default 30 days the key is there; after, it is refused and then dropped.
    let mut within = SenderKeyReceived::decode(&member.encode()).expect("decodes");
    assert_eq!(
        within.decrypt(&late, AD, T0 + 29 * DAY_MS),
        Ok(b"late".to_vec())
    );
    let after = T0 + 31 * DAY_MS;
    assert_rejected_unchanged(&mut member, &late, after, CryptoError::Duplicate);
    assert_eq!(
        member.decrypt(&send(&mut owner, "next"), AD, after),
        Ok(b"next".to_vec())
    );
    assert_eq!(member.skipped_len(), 0);
    assert_rejected_unchanged(&mut member, &late, after, CryptoError::Duplicate);

    // The maximum age is the caller's to set.
    let mut owner = SenderKeyOwn::generate(&mut OsRng);
    let mut member = receiver_of(&owner);
    member.set_skipped_key_max_age_ms(1_000);
    let late = send(&mut owner, "late");
    assert_eq!(receive(&mut member, &send(&mut owner, "x")), "x");
    assert_rejected_unchanged(&mut member, &late, T0 + 1_001, CryptoError::Duplicate);
    assert_eq!(member.decrypt(&late, AD, T0 + 1_000), Ok(b"late".to_vec()));
}

#[test]
fn state_survives_encode_and_decode_mid_stream() {
    let mut owner = SenderKeyOwn::generate(&mut OsRng);
    let mut member = receiver_of(&owner);
    let wires: Vec<_> = (0..5).map(|i| send(&mut owner, &format!("m{i}"))).collect();
    assert_eq!(receive(&mut member, &wires[0]), "m0");
    assert_eq!(receive(&mut member, &wires[2]), "m2");

    // Both sides restart.
    let distribution = owner.distribution().encode();
    let mut owner = SenderKeyOwn::decode(&owner.encode()).expect("owner decodes");
    assert_eq!(owner.iteration(), 5);
    assert_eq!(*owner.distribution().encode(), *distribution);
    let mut member = SenderKeyReceived::decode(&member.encode()).expect("member decodes");
    assert_eq!(member.skipped_len(), 1);

    assert_eq!(receive(&mut member, &wires[1]), "m1");
    assert_rejected_unchanged(&mut member, &wires[2], T0, CryptoError::Duplicate);
    assert_eq!(receive(&mut member, &wires[4]), "m4");
    assert_eq!(receive(&mut member, &send(&mut owner, "m5")), "m5");
    assert_eq!(receive(&mut member, &wires[3]), "m3");
    assert_eq!(member.skipped_len(), 0);
}

#[test]
fn malformed_bytes_and_corrupt_state() {
    let mut owner = SenderKeyOwn::generate(&mut OsRng);
    let mut member = receiver_of(&owner);
    let wire = send(&mut owner, "x");

    assert_eq!(peek_sender_key(&[]), Err(CryptoError::InvalidMessage));
    assert_eq!(
        peek_sender_key(&[9, 1, 2]),
        Err(CryptoError::UnsupportedVersion(9))
    );
    assert_eq!(
        peek_sender_key(&[SENDER_KEY_WIRE_VERSION; 10]),
        Err(CryptoError::InvalidMessage)
    );
    assert_eq!(
        peek_sender_key(&wire[SIGNATURE_LEN..]).err(),
        Some(CryptoError::UnsupportedVersion(wire[SIGNATURE_LEN]))
    );
    assert_rejected_unchanged(
        &mut member,
        &[SENDER_KEY_WIRE_VERSION],
        T0,
        CryptoError::InvalidMessage,
    );
    // A pairwise message is not a sender-key message.
    let mut pairwise = vec![SENDER_KEY_WIRE_VERSION, 0xff, 0xff];
    pairwise.extend_from_slice(&[0; SIGNATURE_LEN]);
    assert_rejected_unchanged(&mut member, &pairwise, T0, CryptoError::InvalidMessage);

    // Distributions.
    let distribution = owner.distribution();
    assert_eq!(
        SenderKeyDistribution::decode(&[]).err(),
        Some(CryptoError::InvalidMessage)
    );
    assert_eq!(
        SenderKeyDistribution::decode(&[4]).err(),
        Some(CryptoError::UnsupportedVersion(4))
    );
    let edited = |edit: &dyn Fn(&mut WireSenderKeyDistribution)| {
        let mut wire: WireSenderKeyDistribution = decode_versioned(
            SENDER_KEY_WIRE_VERSION,
            &distribution.encode(),
            CryptoError::InvalidMessage,
        )
        .expect("decodes");
        edit(&mut wire);
        SenderKeyDistribution::decode(&encode_secret(SENDER_KEY_WIRE_VERSION, &wire)).err()
    };
    assert_eq!(
        edited(&|w| w.chain_key.truncate(31)),
        Some(CryptoError::InvalidMessage)
    );
    assert_eq!(
        edited(&|w| w.signing_public.truncate(31)),
        Some(CryptoError::InvalidMessage)
    );
    // The identity point (small order) cannot sign anything meaningful.
    let mut identity_point = vec![0u8; 32];
    identity_point[0] = 1;
    assert_eq!(
        edited(&|w| w.signing_public = identity_point.clone()),
        Some(CryptoError::InvalidKey)
    );

    // Stored states.
    assert_eq!(SenderKeyOwn::decode(&[]).err(), Some(CryptoError::Corrupt));
    assert_eq!(
        SenderKeyOwn::decode(&[3]).err(),
        Some(CryptoError::UnsupportedVersion(3))
    );
    let mut truncated = owner.encode().to_vec();
    truncated.truncate(truncated.len() - 1);
    assert!(SenderKeyOwn::decode(&truncated).is_err());
    assert_eq!(
        SenderKeyReceived::decode(&[]).err(),
        Some(CryptoError::Corrupt)
    );
    let _ = send(&mut owner, "skipped");
    assert_eq!(receive(&mut member, &send(&mut owner, "y")), "y");
    let edited = |edit: &dyn Fn(&mut SenderKeyReceivedRecord)| {
        let mut record: SenderKeyReceivedRecord =
            decode_versioned(RECORD_VERSION, &member.encode(), CryptoError::Corrupt)
                .expect("decodes");
        edit(&mut record);
        SenderKeyReceived::decode(&encode_secret(RECORD_VERSION, &record)).err()
    };
    assert_eq!(edited(&|_| ()), None);
    assert_eq!(
        edited(&|r| r.first_iteration = r.iteration + 1),
        Some(CryptoError::Corrupt)
    );
    assert_eq!(
        edited(&|r| r.skipped[0].iteration = r.iteration),
        Some(CryptoError::Corrupt)
    );
    assert_eq!(
        edited(&|r| r.skipped[0].message_key.truncate(16)),
        Some(CryptoError::Corrupt)
    );
    assert_eq!(edited(&|r| r.chain_key.clear()), Some(CryptoError::Corrupt));
}

#[test]
fn debug_shows_no_secrets() {
    let owner = SenderKeyOwn::generate(&mut OsRng);
    let member = receiver_of(&owner);
    let shown = format!("{owner:?} {:?} {member:?}", owner.distribution());
    assert!(shown.starts_with("SenderKeyOwn { chain_id: "), "{shown}");
    assert!(!shown.contains("chain_key"), "{shown}");
    assert!(!shown.contains("signing"), "{shown}");
}

#[test]
fn random_schedules_deliver_every_message_exactly_once() {
    use rand::Rng;

    // Few and short: Ed25519 is slow in unoptimised test builds.
    for seed in 0..4 {
        let mut schedule = TestRng::new(2_000 + seed);
        let mut owner = SenderKeyOwn::generate(&mut schedule);
        let mut members: Vec<_> = (0..2).map(|_| receiver_of(&owner)).collect();
        // In flight: (member index, plaintext, wire).
        let mut in_flight: Vec<(usize, String, Vec<u8>)> = Vec::new();
        let mut delivered = 0;
        for step in 0..120 {
            match schedule.gen_range(0..10) {
                0..=3 => {
                    let text = format!("seed {seed} step {step}");
                    let wire = send(&mut owner, &text);
                    for member in 0..members.len() {
                        in_flight.push((member, text.clone(), wire.clone()));
                    }
                }
                4..=7 if !in_flight.is_empty() => {
                    let (to, text, wire) = in_flight.remove(schedule.gen_range(0..in_flight.len()));
                    assert_eq!(receive(&mut members[to], &wire), text, "seed {seed}");
                    assert_eq!(
                        members[to].decrypt(&wire, AD, T0),
                        Err(CryptoError::Duplicate)
                    );
                    delivered += 1;
                }
                8 if !in_flight.is_empty() => {
                    // Lost.
                    in_flight.remove(schedule.gen_range(0..in_flight.len()));
                }
                _ => {
                    let member = schedule.gen_range(0..members.len());
                    members[member] =
                        SenderKeyReceived::decode(&members[member].encode()).expect("decodes");
                    owner = SenderKeyOwn::decode(&owner.encode()).expect("decodes");
                }
            }
        }
        for (to, text, wire) in in_flight {
            assert_eq!(receive(&mut members[to], &wire), text, "seed {seed}");
            delivered += 1;
        }
        assert!(
            delivered > 30,
            "seed {seed}: schedule too thin ({delivered})"
        );
    }
}

// === frozen fixtures ===

/// Fixtures made once from `TestRng::new(11)`; they must keep decoding (and the messages keep
/// decrypting) in every later version.
mod fixtures {
    use super::*;

    /// The owner's distribution at iteration 0.
    const DISTRIBUTION: &str = "010882a98b8f061a202cb22f49b677c42e5274fa47e704b94efda558e0296aa8f82d41f1d4a6569391222023d42706df181bf0f77f3c866d4391e979754a2cadf807fcc131b2f3a9816608";
    /// The owner's messages at iterations 0, 1 and 2.
    const MESSAGE_0: &str = "010882a98b8f061a2a4ae34322883d7e8319a259cfd1eefe6cd2376a0bdac533c3d72abb084f2708e35c42f1ac7193334e12205ca6c431d746b18f2b309d85f49877bcb2354f64f86624c94b860027f569bfaa4b9eb3db33490d764f7c844ab5803ae37f4426ec607f3472d154294e5919d10e";
    const MESSAGE_1: &str = "010882a98b8f0610011a2b582e83e6fb06e3d721ebfc251c3805f9d663b6c00d2add4a981471e9833f8581d3c3e23f930c98a9764ffd584eac18918fa98c39ad12b48bc545cb170fbfeb90685f94e3b1d07435e39fb5bb8d51c3712dafb80f825b805c72f6a546d7474daf4ccfee4f166dace4826908";
    const MESSAGE_2: &str = "010882a98b8f0610021a2a33336a3784067514b945df9f656d5fcc37dfc56fcc8d2268a10c8c723f3d8b781ecc892fedbc6eaa1c5a22716de8989117a3e02f68e6d7c900a65c0b60a8e555fed193b75657f6693ec86de85438cc5cdc284d072d4071f033ef5b34fcae1f99648ea3250413b15ed001";
    /// The owner's state after the three messages.
    const OWN: &str = "010882a98b8f0610031a20267a758eeb6f5af853487f775007caac905efb2ec66dbb6a5a562f0ea91e13792220057b636e7641a109de84e380f29fe396966ffc8d8d0c2976f436fd37e670c979";
    /// A member's state after reading message 2 first (skipped keys for 0 and 1).
    const RECEIVED: &str = "010882a98b8f06122023d42706df181bf0f77f3c866d4391e979754a2cadf807fcc131b2f3a981660818032220267a758eeb6f5af853487f775007caac905efb2ec66dbb6a5a562f0ea91e1379322912200ce874a076675291c124a1f01c30592d4e4c89f9422279385ad489e3842737491880d095ffbc31322b0801122049b54e0d78a720febde9043c659a2fed9f104e932eeb06605e6d7e58d8b35b7c1880d095ffbc31";

    const TEXTS: [&str; 3] = [
        "first frozen group message",
        "second frozen group message",
        "third frozen group message",
    ];

    struct Made {
        distribution: String,
        messages: [String; 3],
        own: String,
        received: String,
    }

    fn make() -> Made {
        let mut rng = TestRng::new(11);
        let mut owner = SenderKeyOwn::generate(&mut rng);
        let distribution = owner.distribution();
        let messages = TEXTS.map(|text| hex::encode(send(&mut owner, text)));
        let mut member = SenderKeyReceived::new(&distribution);
        let third = bytes(&messages[2]);
        assert_eq!(receive(&mut member, &third), TEXTS[2]);
        Made {
            distribution: hex::encode(&*distribution.encode()),
            messages,
            own: hex::encode(&*owner.encode()),
            received: hex::encode(&*member.encode()),
        }
    }

    fn bytes(hex: &str) -> Vec<u8> {
        hex::decode(hex).expect("fixture is hex")
    }

    #[test]
    fn encoders_still_produce_the_fixtures() {
        let made = make();
        assert_eq!(made.distribution, DISTRIBUTION);
        assert_eq!(made.messages, [MESSAGE_0, MESSAGE_1, MESSAGE_2]);
        assert_eq!(made.own, OWN);
        assert_eq!(made.received, RECEIVED);
    }

    #[test]
    fn frozen_distribution_decrypts_the_frozen_messages() {
        let distribution =
            SenderKeyDistribution::decode(&bytes(DISTRIBUTION)).expect("frozen distribution");
        assert_eq!(hex::encode(&*distribution.encode()), DISTRIBUTION);
        assert_eq!(distribution.iteration(), 0);
        let mut member = SenderKeyReceived::new(&distribution);
        for (iteration, (message, text)) in [MESSAGE_0, MESSAGE_1, MESSAGE_2]
            .into_iter()
            .zip(TEXTS)
            .enumerate()
        {
            assert_eq!(
                peek_sender_key(&bytes(message)),
                Ok(SenderKeyInfo {
                    chain_id: distribution.chain_id(),
                    iteration: u32::try_from(iteration).expect("small"),
                })
            );
            assert_eq!(receive(&mut member, &bytes(message)), text);
        }
    }

    #[test]
    fn frozen_received_state_decrypts_its_skipped_messages() {
        let mut member = SenderKeyReceived::decode(&bytes(RECEIVED)).expect("frozen state");
        assert_eq!(hex::encode(&*member.encode()), RECEIVED);
        assert_eq!(member.skipped_len(), 2);
        assert_eq!(receive(&mut member, &bytes(MESSAGE_1)), TEXTS[1]);
        assert_eq!(receive(&mut member, &bytes(MESSAGE_0)), TEXTS[0]);
        assert_rejected_unchanged(&mut member, &bytes(MESSAGE_2), T0, CryptoError::Duplicate);
    }

    #[test]
    fn frozen_own_state_keeps_encrypting_for_frozen_members() {
        let mut owner = SenderKeyOwn::decode(&bytes(OWN)).expect("frozen owner");
        assert_eq!(hex::encode(&*owner.encode()), OWN);
        assert_eq!(owner.iteration(), 3);
        let next = send(&mut owner, "after the freeze");
        assert_eq!(peek_sender_key(&next).map(|info| info.iteration), Ok(3));
        let mut member = SenderKeyReceived::decode(&bytes(RECEIVED)).expect("frozen state");
        assert_eq!(receive(&mut member, &next), "after the freeze");
        let distribution =
            SenderKeyDistribution::decode(&bytes(DISTRIBUTION)).expect("frozen distribution");
        assert_eq!(
            receive(&mut SenderKeyReceived::new(&distribution), &next),
            "after the freeze"
        );
    }
}
