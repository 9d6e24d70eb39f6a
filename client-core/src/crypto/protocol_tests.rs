//! Protocol tests of X3DH and the Double Ratchet through the public [`Session`] API.

use prost::Message;
use rand::rngs::OsRng;

use super::encoding::{WIRE_VERSION, WireMessage, encode_versioned};
use super::test_rng::TestRng;
use super::*;

const T0: i64 = 1_700_000_000_000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The responder's device: identity, prekey secrets, and the bundle the directory hands out.
struct Responder {
    identity: IdentityKeyPair,
    prekeys: InMemoryPrekeys,
    bundle: RemoteBundle,
}

fn responder(with_one_time: bool) -> Responder {
    let identity = IdentityKeyPair::generate(&mut OsRng);
    let signed = SignedPrekeyPair::generate(&identity, 1, &mut OsRng);
    let one_time = OneTimePrekeyPair::generate(100, &mut OsRng);
    let mut prekeys = InMemoryPrekeys::new();
    prekeys.add_signed(signed.clone());
    prekeys.add_one_time(one_time.clone());
    let bundle = RemoteBundle {
        identity_signing: identity.public().signing,
        identity_dh: identity.public().dh,
        signed_prekey_id: signed.key_id(),
        signed_prekey: signed.public(),
        signed_prekey_signature: signed.signature().to_vec(),
        one_time_prekey: with_one_time.then(|| (one_time.key_id(), one_time.public())),
    };
    Responder {
        identity,
        prekeys,
        bundle,
    }
}

/// Alice initiates and sends "hello"; Bob accepts it.
fn established() -> (Session, Session, Responder) {
    let alice_identity = IdentityKeyPair::generate(&mut OsRng);
    let bob = responder(true);
    let mut alice = Session::initiate(&alice_identity, &bob.bundle, &mut OsRng).expect("initiates");
    let wire = alice.encrypt(b"hello", T0).expect("encrypts");
    let accepted = Session::accept(&bob.identity, &bob.prekeys, &wire, T0).expect("accepts");
    assert_eq!(accepted.plaintext, b"hello");
    assert_eq!(accepted.consumed_one_time_prekey, Some(100));
    assert_eq!(accepted.session.remote_identity(), alice_identity.public());
    assert_eq!(alice.remote_identity(), bob.identity.public());
    (alice, accepted.session, bob)
}

fn send(from: &mut Session, text: &str) -> Vec<u8> {
    from.encrypt(text.as_bytes(), T0).expect("encrypts")
}

fn receive(to: &mut Session, wire: &[u8]) -> String {
    String::from_utf8(to.decrypt(wire, T0).expect("decrypts")).expect("utf-8")
}

/// Asserts `result` failed with `expected` and left `session` exactly as it was.
fn assert_rejected_unchanged(
    session: &mut Session,
    wire: &[u8],
    now_ms: i64,
    expected: CryptoError,
) {
    let before = session.encode();
    assert_eq!(session.decrypt(wire, now_ms), Err(expected));
    assert_eq!(
        *session.encode(),
        *before,
        "state changed on a failed decrypt"
    );
}

/// Re-encodes a wire message after `edit`.
fn tamper(wire: &[u8], edit: impl FnOnce(&mut WireMessage)) -> Vec<u8> {
    let mut message = WireMessage::decode(&wire[1..]).expect("parses");
    edit(&mut message);
    encode_versioned(WIRE_VERSION, &message)
}

#[test]
fn basic_exchange_both_directions() {
    let (mut alice, mut bob, _) = established();
    assert!(alice.is_initiator() && !bob.is_initiator());
    assert!(alice.awaiting_reply());
    let reply = send(&mut bob, "hi alice");
    assert!(!peek(&reply).expect("parses").is_prekey_message);
    assert_eq!(receive(&mut alice, &reply), "hi alice");
    assert!(!alice.awaiting_reply());

    for round in 0..5 {
        for i in 0..3 {
            let text = format!("a{round}.{i}");
            let wire = send(&mut alice, &text);
            assert!(!peek(&wire).expect("parses").is_prekey_message);
            assert_eq!(receive(&mut bob, &wire), text);
        }
        let text = format!("b{round}");
        let wire = send(&mut bob, &text);
        assert_eq!(receive(&mut alice, &wire), text);
    }
}

#[test]
fn initiator_sends_prekey_messages_until_it_hears_back() {
    let (mut alice, mut bob, _) = established();
    let second = send(&mut alice, "second");
    let info = peek(&second).expect("parses");
    assert!(info.is_prekey_message);
    assert_eq!(info.base_key, Some(bob.base_key()));
    assert_eq!(info.signed_prekey_id, Some(1));
    assert_eq!(info.one_time_prekey_id, Some(100));
    assert_eq!(
        info.sender_identity_signing,
        Some(alice.local_identity().signing)
    );
    assert_eq!(info.sender_identity_dh, Some(alice.local_identity().dh));
    // A prekey message of the existing session decrypts normally.
    assert_eq!(receive(&mut bob, &second), "second");
}

#[test]
fn out_of_order_delivery() {
    let (mut alice, mut bob, _) = established();
    let wires: Vec<_> = (1..=5)
        .map(|i| send(&mut alice, &format!("m{i}")))
        .collect();
    for i in [3usize, 1, 5, 2, 4] {
        assert_eq!(receive(&mut bob, &wires[i - 1]), format!("m{i}"));
    }
    assert_eq!(bob.skipped_len(), 0);

    // Across a ratchet step: Alice's old-chain messages arrive after her new-chain ones.
    let old_chain: Vec<_> = (0..3)
        .map(|i| send(&mut alice, &format!("old{i}")))
        .collect();
    assert_eq!(receive(&mut alice, &send(&mut bob, "turn")), "turn");
    let new_chain = send(&mut alice, "new");
    assert_eq!(receive(&mut bob, &new_chain), "new");
    assert_eq!(bob.skipped_len(), 3);
    for (i, wire) in old_chain.iter().enumerate().rev() {
        assert_eq!(receive(&mut bob, wire), format!("old{i}"));
    }
    assert_eq!(bob.skipped_len(), 0);
}

#[test]
fn lost_messages_do_not_stop_the_conversation() {
    let (mut alice, mut bob, _) = established();
    let wires: Vec<_> = (1..=6)
        .map(|i| send(&mut alice, &format!("m{i}")))
        .collect();
    // 2, 3 and 5 never arrive.
    for i in [1usize, 4, 6] {
        assert_eq!(receive(&mut bob, &wires[i - 1]), format!("m{i}"));
    }
    assert_eq!(bob.skipped_len(), 3);
    let reply = send(&mut bob, "reply");
    let lost_reply = send(&mut bob, "lost reply");
    drop(lost_reply);
    let after = send(&mut bob, "after");
    assert_eq!(receive(&mut alice, &after), "after");
    assert_eq!(receive(&mut alice, &reply), "reply");
    assert_eq!(
        receive(&mut bob, &send(&mut alice, "still here")),
        "still here"
    );
}

#[test]
fn replays_are_rejected_as_duplicates() {
    let (mut alice, mut bob, _) = established();
    let first = send(&mut alice, "one");
    let skipped = send(&mut alice, "two");
    let third = send(&mut alice, "three");
    assert_eq!(receive(&mut bob, &first), "one");
    assert_rejected_unchanged(&mut bob, &first, T0, CryptoError::Duplicate);

    // A skipped key serves once.
    assert_eq!(receive(&mut bob, &third), "three");
    assert_eq!(receive(&mut bob, &skipped), "two");
    assert_rejected_unchanged(&mut bob, &skipped, T0, CryptoError::Duplicate);

    // Messages of a finished chain, after the ratchet moved on.
    assert_eq!(receive(&mut alice, &send(&mut bob, "turn")), "turn");
    assert_eq!(
        receive(&mut bob, &send(&mut alice, "new chain")),
        "new chain"
    );
    assert_rejected_unchanged(&mut bob, &third, T0, CryptoError::Duplicate);

    // A prekey message, replayed into the session it started.
    let (mut alice, mut bob, _) = established();
    let second = send(&mut alice, "second");
    assert!(peek(&second).expect("parses").is_prekey_message);
    assert_eq!(receive(&mut bob, &second), "second");
    assert_rejected_unchanged(&mut bob, &second, T0, CryptoError::Duplicate);
}

#[test]
fn a_consumed_one_time_prekey_cannot_start_a_second_session() {
    let alice_identity = IdentityKeyPair::generate(&mut OsRng);
    let mut bob = responder(true);
    let mut alice = Session::initiate(&alice_identity, &bob.bundle, &mut OsRng).expect("initiates");
    let hello = alice.encrypt(b"hello", T0).expect("encrypts");
    let accepted = Session::accept(&bob.identity, &bob.prekeys, &hello, T0).expect("accepts");
    let consumed = accepted
        .consumed_one_time_prekey
        .expect("used the one-time prekey");
    assert!(bob.prekeys.remove_one_time(consumed));
    assert_eq!(
        Session::accept(&bob.identity, &bob.prekeys, &hello, T0).err(),
        Some(CryptoError::UnknownPrekey)
    );
    let mut session = accepted.session;
    assert_rejected_unchanged(&mut session, &hello, T0, CryptoError::Duplicate);
}

#[test]
fn tampered_ciphertext_is_rejected_and_state_unchanged() {
    let (mut alice, mut bob, _) = established();
    let wire = send(&mut alice, "genuine");
    for index in [0usize, 3] {
        let tampered = tamper(&wire, |m| m.ciphertext[index] ^= 0x40);
        assert_rejected_unchanged(&mut bob, &tampered, T0, CryptoError::DecryptFailed);
    }
    let tag_flipped = tamper(&wire, |m| {
        let last = m.ciphertext.len() - 1;
        m.ciphertext[last] ^= 1;
    });
    assert_rejected_unchanged(&mut bob, &tag_flipped, T0, CryptoError::DecryptFailed);
    let truncated = tamper(&wire, |m| m.ciphertext.truncate(10));
    assert_rejected_unchanged(&mut bob, &truncated, T0, CryptoError::DecryptFailed);
    assert_eq!(receive(&mut bob, &wire), "genuine");
}

#[test]
fn tampered_header_is_rejected_and_state_unchanged() {
    let (mut alice, mut bob, _) = established();
    assert_eq!(receive(&mut alice, &send(&mut bob, "reply")), "reply");
    let wire = send(&mut alice, "genuine");
    let later = send(&mut alice, "later");

    let cases = [
        tamper(&wire, |m| m.counter += 1),
        tamper(&wire, |m| m.previous_counter += 1),
        // A fresh ratchet key forces a (speculative) DH ratchet step that must be undone.
        tamper(&wire, |m| {
            m.ratchet_key = IdentityKeyPair::generate(&mut OsRng).public().dh.to_vec();
        }),
        // Turning it into a prekey message of this session changes the associated data.
        tamper(&wire, |m| {
            m.prekey = Some(super::encoding::WirePrekey {
                identity_signing: bob.remote_identity().signing.to_vec(),
                identity_dh: bob.remote_identity().dh.to_vec(),
                base_key: bob.base_key().to_vec(),
                signed_prekey_id: 1,
                one_time_prekey_id: Some(100),
            });
        }),
    ];
    for tampered in &cases {
        assert_rejected_unchanged(&mut bob, tampered, T0, CryptoError::DecryptFailed);
    }
    let low_order = tamper(&wire, |m| m.ratchet_key = vec![0; 32]);
    assert_rejected_unchanged(&mut bob, &low_order, T0, CryptoError::InvalidKey);
    let short_key = tamper(&wire, |m| {
        m.ratchet_key.pop();
    });
    assert_rejected_unchanged(&mut bob, &short_key, T0, CryptoError::InvalidMessage);

    assert_eq!(receive(&mut bob, &later), "later");
    assert_eq!(receive(&mut bob, &wire), "genuine");
}

#[test]
fn tampered_prekey_part_is_rejected() {
    let (mut alice, mut bob, _) = established();
    let second = send(&mut alice, "second");
    let other_id = tamper(&second, |m| {
        if let Some(p) = m.prekey.as_mut() {
            p.signed_prekey_id = 2;
        }
    });
    assert_rejected_unchanged(&mut bob, &other_id, T0, CryptoError::DecryptFailed);
    let other_identity = tamper(&second, |m| {
        if let Some(p) = m.prekey.as_mut() {
            p.identity_signing[0] ^= 1;
        }
    });
    assert_rejected_unchanged(&mut bob, &other_identity, T0, CryptoError::InvalidMessage);
    let stripped = tamper(&second, |m| m.prekey = None);
    assert_rejected_unchanged(&mut bob, &stripped, T0, CryptoError::DecryptFailed);
    assert_eq!(receive(&mut bob, &second), "second");
}

#[test]
fn skip_bound_is_enforced() {
    let (mut alice, mut bob, _) = established();
    // Bob has read message 0; message N needs N - 1 skipped keys.
    let wires: Vec<_> = (1..=MAX_SKIP + 2)
        .map(|i| {
            alice
                .encrypt(format!("m{i}").as_bytes(), T0)
                .expect("encrypts")
        })
        .collect();
    let too_far = &wires[(MAX_SKIP + 1) as usize]; // counter MAX_SKIP + 2
    assert_rejected_unchanged(&mut bob, too_far, T0, CryptoError::TooManySkipped);
    let header_lie = tamper(&wires[0], |m| m.counter = u32::MAX);
    assert_rejected_unchanged(&mut bob, &header_lie, T0, CryptoError::TooManySkipped);

    let farthest = &wires[MAX_SKIP as usize]; // counter MAX_SKIP + 1: skips exactly MAX_SKIP
    assert_eq!(receive(&mut bob, farthest), format!("m{}", MAX_SKIP + 1));
    assert_eq!(bob.skipped_len(), MAX_SKIP as usize);
    assert_eq!(receive(&mut bob, too_far), format!("m{}", MAX_SKIP + 2));

    // The store holds at most MAX_STORED_SKIPPED_KEYS: new skips evict the oldest.
    assert_eq!(receive(&mut alice, &send(&mut bob, "turn")), "turn");
    let next: Vec<_> = (0..4).map(|i| send(&mut alice, &format!("n{i}"))).collect();
    assert_eq!(receive(&mut bob, &next[3]), "n3");
    assert_eq!(bob.skipped_len(), MAX_STORED_SKIPPED_KEYS);
    for evicted in &wires[..3] {
        assert_rejected_unchanged(&mut bob, evicted, T0, CryptoError::Duplicate);
    }
    assert_eq!(receive(&mut bob, &wires[3]), "m4");
    assert_eq!(receive(&mut bob, &next[0]), "n0");
}

#[test]
fn skipped_keys_expire() {
    let (mut alice, mut bob, _) = established();
    let late = send(&mut alice, "late");
    let on_time = send(&mut alice, "on time");
    assert_eq!(receive(&mut bob, &on_time), "on time");
    assert_eq!(bob.skipped_len(), 1);

    // Within the default 30 days the key is there; after, it is refused and then dropped.
    let mut within = Session::decode(&bob.encode()).expect("decodes");
    assert_eq!(
        within.decrypt(&late, T0 + 29 * DAY_MS),
        Ok(b"late".to_vec())
    );
    let after = T0 + 31 * DAY_MS;
    assert_rejected_unchanged(&mut bob, &late, after, CryptoError::Duplicate);
    assert_eq!(
        bob.decrypt(&send(&mut alice, "next"), after),
        Ok(b"next".to_vec())
    );
    assert_eq!(bob.skipped_len(), 0);

    // The maximum age is the caller's to set.
    let (mut alice, mut bob, _) = established();
    bob.set_skipped_key_max_age_ms(1_000);
    let late = send(&mut alice, "late");
    assert_eq!(receive(&mut bob, &send(&mut alice, "x")), "x");
    assert_rejected_unchanged(&mut bob, &late, T0 + 1_001, CryptoError::Duplicate);
    assert_eq!(bob.decrypt(&late, T0 + 1_000), Ok(b"late".to_vec()));
}

#[test]
fn session_survives_encode_and_decode_mid_conversation() {
    let (mut alice, mut bob, _) = established();
    assert_eq!(receive(&mut alice, &send(&mut bob, "reply")), "reply");
    let skipped = send(&mut alice, "skipped");
    assert_eq!(receive(&mut bob, &send(&mut alice, "read")), "read");
    let in_flight = send(&mut bob, "in flight");

    // Both sides restart.
    let mut alice = Session::decode(&alice.encode()).expect("alice decodes");
    let mut bob = Session::decode(&bob.encode()).expect("bob decodes");
    assert_eq!(bob.skipped_len(), 1);
    assert!(!alice.awaiting_reply());

    assert_eq!(receive(&mut alice, &in_flight), "in flight");
    assert_eq!(receive(&mut bob, &skipped), "skipped");
    for i in 0..3 {
        assert_eq!(
            receive(&mut bob, &send(&mut alice, &format!("a{i}"))),
            format!("a{i}")
        );
        assert_eq!(
            receive(&mut alice, &send(&mut bob, &format!("b{i}"))),
            format!("b{i}")
        );
    }

    // An initiator still awaiting a reply keeps sending prekey messages after a restart.
    let (alice, mut bob, _) = established();
    let mut alice = Session::decode(&alice.encode()).expect("decodes");
    assert!(alice.awaiting_reply());
    let wire = send(&mut alice, "after restart");
    assert!(peek(&wire).expect("parses").is_prekey_message);
    assert_eq!(receive(&mut bob, &wire), "after restart");
}

#[test]
fn forward_secrecy() {
    let (mut alice, mut bob, _) = established();
    let read = send(&mut alice, "read once");
    let old_bob = bob.encode();
    assert_eq!(receive(&mut bob, &read), "read once");

    // The used message key is gone from the current state, also once persisted.
    assert_rejected_unchanged(&mut bob, &read, T0, CryptoError::Duplicate);
    let mut reloaded = Session::decode(&bob.encode()).expect("decodes");
    assert_eq!(reloaded.decrypt(&read, T0), Err(CryptoError::Duplicate));

    // A copy of an old state cannot read what is sent after the DH ratchet moved on.
    for round in 0..3 {
        assert_eq!(
            receive(&mut alice, &send(&mut bob, &format!("b{round}"))),
            format!("b{round}")
        );
        assert_eq!(
            receive(&mut bob, &send(&mut alice, &format!("a{round}"))),
            format!("a{round}")
        );
    }
    let fresh = send(&mut alice, "fresh secret");
    let mut stolen = Session::decode(&old_bob).expect("decodes");
    assert!(stolen.decrypt(&fresh, T0).is_err());
    assert_eq!(receive(&mut bob, &fresh), "fresh secret");

    // Nor can Alice's current state read Bob's old messages again.
    let old_reply = send(&mut bob, "reply");
    assert_eq!(receive(&mut alice, &old_reply), "reply");
    assert_eq!(
        receive(&mut bob, &send(&mut alice, "moving on")),
        "moving on"
    );
    assert_eq!(receive(&mut alice, &send(&mut bob, "moved")), "moved");
    assert_rejected_unchanged(&mut alice, &old_reply, T0, CryptoError::Duplicate);
}

#[test]
fn bad_signed_prekey_signature_is_rejected() {
    let alice = IdentityKeyPair::generate(&mut OsRng);
    let mut bob = responder(true);
    bob.bundle.signed_prekey_signature[5] ^= 1;
    assert_eq!(
        Session::initiate(&alice, &bob.bundle, &mut OsRng).err(),
        Some(CryptoError::BadSignature)
    );
    // A signed prekey of another identity does not pass for Bob's.
    let mut bob = responder(true);
    let mallory = responder(true);
    bob.bundle.signed_prekey = mallory.bundle.signed_prekey;
    bob.bundle.signed_prekey_signature = mallory.bundle.signed_prekey_signature;
    assert_eq!(
        Session::initiate(&alice, &bob.bundle, &mut OsRng).err(),
        Some(CryptoError::BadSignature)
    );
}

#[test]
fn first_message_without_one_time_prekey() {
    let alice_identity = IdentityKeyPair::generate(&mut OsRng);
    let bob = responder(false);
    let mut alice = Session::initiate(&alice_identity, &bob.bundle, &mut OsRng).expect("initiates");
    let wire = send(&mut alice, "no one-time prekey");
    assert_eq!(peek(&wire).expect("parses").one_time_prekey_id, None);
    let accepted = Session::accept(&bob.identity, &bob.prekeys, &wire, T0).expect("accepts");
    assert_eq!(accepted.plaintext, b"no one-time prekey");
    assert_eq!(accepted.consumed_one_time_prekey, None);
    let mut bob_session = accepted.session;
    assert_eq!(receive(&mut alice, &send(&mut bob_session, "ok")), "ok");
}

#[test]
fn lost_prekey_message_then_a_later_one_is_accepted() {
    let alice_identity = IdentityKeyPair::generate(&mut OsRng);
    let bob = responder(true);
    let mut alice = Session::initiate(&alice_identity, &bob.bundle, &mut OsRng).expect("initiates");
    let first = send(&mut alice, "first");
    let second = send(&mut alice, "second");
    let accepted = Session::accept(&bob.identity, &bob.prekeys, &second, T0).expect("accepts");
    assert_eq!(accepted.plaintext, b"second");
    assert_eq!(accepted.consumed_one_time_prekey, Some(100));
    let mut bob_session = accepted.session;
    // The first turns up late: same base key, so it belongs to the session.
    assert_eq!(
        peek(&first).expect("parses").base_key,
        Some(bob_session.base_key())
    );
    assert_eq!(receive(&mut bob_session, &first), "first");
}

#[test]
fn a_restarted_peer_starts_a_new_session() {
    let (_, mut bob, responder) = established();
    // Alice lost her state and initiates again (the one-time prekey is gone: none offered).
    let alice_identity = IdentityKeyPair::generate(&mut OsRng);
    let mut bundle = responder.bundle.clone();
    bundle.one_time_prekey = None;
    let mut alice = Session::initiate(&alice_identity, &bundle, &mut OsRng).expect("initiates");
    let wire = send(&mut alice, "new start");
    assert_ne!(peek(&wire).expect("parses").base_key, Some(bob.base_key()));
    assert_rejected_unchanged(&mut bob, &wire, T0, CryptoError::InvalidMessage);
    let accepted =
        Session::accept(&responder.identity, &responder.prekeys, &wire, T0).expect("accepts");
    assert_eq!(accepted.plaintext, b"new start");
}

#[test]
fn accept_refuses_what_it_cannot_use() {
    let (mut alice, mut bob, responder) = established();
    let reply = send(&mut bob, "reply");
    assert_eq!(receive(&mut alice, &reply), "reply");
    let plain = send(&mut alice, "not a prekey message");
    assert_eq!(
        Session::accept(&responder.identity, &responder.prekeys, &plain, T0).err(),
        Some(CryptoError::InvalidMessage)
    );

    let alice_identity = IdentityKeyPair::generate(&mut OsRng);
    let mut bundle = responder.bundle.clone();
    bundle.one_time_prekey = None;
    let mut alice = Session::initiate(&alice_identity, &bundle, &mut OsRng).expect("initiates");
    let wire = send(&mut alice, "x");
    assert_eq!(
        Session::accept(&responder.identity, &InMemoryPrekeys::new(), &wire, T0).err(),
        Some(CryptoError::UnknownPrekey)
    );
    // The wrong responder identity cannot decrypt it.
    let stranger = IdentityKeyPair::generate(&mut OsRng);
    assert_eq!(
        Session::accept(&stranger, &responder.prekeys, &wire, T0).err(),
        Some(CryptoError::DecryptFailed)
    );
}

#[test]
fn malformed_wire_bytes() {
    let (_, mut bob, _) = established();
    assert_eq!(peek(&[]).err(), Some(CryptoError::InvalidMessage));
    assert_eq!(
        peek(&[7, 1, 2]).err(),
        Some(CryptoError::UnsupportedVersion(7))
    );
    assert_eq!(
        peek(&[WIRE_VERSION, 0xff, 0xff]).err(),
        Some(CryptoError::InvalidMessage)
    );
    assert_rejected_unchanged(&mut bob, &[WIRE_VERSION], T0, CryptoError::InvalidMessage);
    assert_eq!(Session::decode(&[]).err(), Some(CryptoError::Corrupt));
    assert_eq!(
        Session::decode(&[3]).err(),
        Some(CryptoError::UnsupportedVersion(3))
    );
    let mut truncated = bob.encode().to_vec();
    truncated.truncate(truncated.len() / 2);
    assert!(Session::decode(&truncated).is_err());
}

#[test]
fn debug_shows_no_secrets() {
    let (alice, _, _) = established();
    let shown = format!("{alice:?}");
    assert!(
        shown.starts_with("Session { remote: IdentityPublic"),
        "{shown}"
    );
    assert!(
        shown.ends_with("initiator: true, awaiting_reply: true, .. }"),
        "{shown}"
    );
}

#[test]
fn random_schedules_deliver_every_message_exactly_once() {
    use rand::Rng;

    for seed in 0..24 {
        let mut schedule = TestRng::new(1_000 + seed);
        let (alice, bob, _) = established();
        let mut sides = [alice, bob];
        // In flight: (receiver index, plaintext, wire).
        let mut in_flight: Vec<(usize, String, Vec<u8>)> = Vec::new();
        let mut delivered = 0;
        for step in 0..150 {
            match schedule.gen_range(0..10) {
                0..=3 => {
                    let from = schedule.gen_range(0..2);
                    let text = format!("seed {seed} step {step} from {from}");
                    let wire = sides[from].encrypt(text.as_bytes(), T0).expect("encrypts");
                    in_flight.push((1 - from, text, wire));
                }
                4..=7 if !in_flight.is_empty() => {
                    let (to, text, wire) = in_flight.remove(schedule.gen_range(0..in_flight.len()));
                    assert_eq!(receive(&mut sides[to], &wire), text, "seed {seed}");
                    assert_eq!(sides[to].decrypt(&wire, T0), Err(CryptoError::Duplicate));
                    delivered += 1;
                }
                8 if !in_flight.is_empty() => {
                    // Lost.
                    in_flight.remove(schedule.gen_range(0..in_flight.len()));
                }
                _ => {
                    let side = schedule.gen_range(0..2);
                    sides[side] = Session::decode(&sides[side].encode()).expect("decodes");
                }
            }
        }
        for (to, text, wire) in in_flight {
            assert_eq!(receive(&mut sides[to], &wire), text, "seed {seed}");
            delivered += 1;
        }
        assert!(
            delivered > 20,
            "seed {seed}: schedule too thin ({delivered})"
        );
    }
}

// === frozen fixtures ===

/// Fixtures made once from `TestRng` seeds; they must keep decoding (and the wire messages
/// keep decrypting) in every later version.
mod fixtures {
    use super::*;

    const BOB_IDENTITY: &str = "010a205fc0f5cb1930f795529a3a083bba237ba51e30f8426fba3c278e6dd9bd506e901220baf435ed18356782b890b9ac4b58f420dbe8ea2ce0dab4c6914c511d753f3614";
    const BOB_SIGNED_PREKEY: &str = "01080112207dd2e5cf461511d5c4a22e114c7366e6e308ff5f09a5bc3ef8f1c41fd13568541a40703cc9ef1e6cb31fa1e62fb35364d6dcb45bf54e9aefe9a0ddd7569d2ce610e6be372ad7f0e86d6fe1aaf11de00023ea8e0b1471822ebab11dfb22f97d65480c";
    const BOB_ONE_TIME_PREKEY: &str =
        "01086412206e584923f7c2492ff05315b18a45ecf177e7e90f9a139ac863dfbce9e711e755";
    /// Alice's first and second (prekey) messages.
    const WIRE_FIRST: &str = "010a6a0a202de103ef0898d597706f1127f4927c107782ca0a25d6c7024ea92727febc7fcc12201b50ceee28465ebdade32683cd2d578c9b57d8d88c39d9f6fb81b6081c5115281a2087e5620755d087f012efd9fbe253da898813148c6485aaafb912343550cf102e200128641220d87fd1ca7fb79a9cd37a136e481073afd39555e3677e858b7d68c2dd70af9c0b2a24391dceeff983a7566e7c0a9c909c2ce7d2bf3bb85fd3b8084118db38980fa0f947db50d1";
    const WIRE_SECOND: &str = "010a6a0a202de103ef0898d597706f1127f4927c107782ca0a25d6c7024ea92727febc7fcc12201b50ceee28465ebdade32683cd2d578c9b57d8d88c39d9f6fb81b6081c5115281a2087e5620755d087f012efd9fbe253da898813148c6485aaafb912343550cf102e200128641220d87fd1ca7fb79a9cd37a136e481073afd39555e3677e858b7d68c2dd70af9c0b20012a25b01443efdad84f094d2d9549cb4b20380f66676c356fbeb894fcec3dbb321a3ffdfe13b849";
    /// Bob's session after accepting the first message.
    const BOB_SESSION: &str = "010a20f2e45546f99a84468d0d30f412674803351616bc69d048e2c9c2763a7ff4baef122059df396b99cab9249d6ae6ff4a18a47dfbfd77dbfac3140989d5c344cd3cf1791a202de103ef0898d597706f1127f4927c107782ca0a25d6c7024ea92727febc7fcc22201b50ceee28465ebdade32683cd2d578c9b57d8d88c39d9f6fb81b6081c511528322087e5620755d087f012efd9fbe253da898813148c6485aaafb912343550cf102e42ac010a20f0c20fcad5db501d846d451f275b3f49d739a2404c757b2dd3232abec86907c71220d87fd1ca7fb79a9cd37a136e481073afd39555e3677e858b7d68c2dd70af9c0b1a207e9ad5b7f837cd3cac759c312745f734e0abaccbf095a02251f3331147b370d5222066f516f36605710a7437cfc54b88e8e6b4812c0e9c89eb3ad781898d4d86fe912a204980764193b41e7053cfc331cf50f8d1075ea1d4a5d87000f85caa65b3eb86ab3801";

    struct Made {
        bob_identity: String,
        bob_signed: String,
        bob_one_time: String,
        first: String,
        second: String,
        bob_session: String,
    }

    fn make() -> Made {
        let mut rng = TestRng::new(3);
        let alice_identity = IdentityKeyPair::generate(&mut rng);
        let bob_identity = IdentityKeyPair::generate(&mut rng);
        let signed = SignedPrekeyPair::generate(&bob_identity, 1, &mut rng);
        let one_time = OneTimePrekeyPair::generate(100, &mut rng);
        let bundle = RemoteBundle {
            identity_signing: bob_identity.public().signing,
            identity_dh: bob_identity.public().dh,
            signed_prekey_id: 1,
            signed_prekey: signed.public(),
            signed_prekey_signature: signed.signature().to_vec(),
            one_time_prekey: Some((100, one_time.public())),
        };
        let mut alice = Session::initiate(&alice_identity, &bundle, &mut rng).expect("initiates");
        let first = alice
            .encrypt(b"first frozen message", T0)
            .expect("encrypts");
        let second = alice
            .encrypt(b"second frozen message", T0)
            .expect("encrypts");
        let mut prekeys = InMemoryPrekeys::new();
        prekeys.add_signed(signed.clone());
        prekeys.add_one_time(one_time.clone());
        let accepted = Session::accept_with_rng(&bob_identity, &prekeys, &first, T0, &mut rng)
            .expect("accepts");
        Made {
            bob_identity: hex::encode(&*bob_identity.encode()),
            bob_signed: hex::encode(&*signed.encode()),
            bob_one_time: hex::encode(&*one_time.encode()),
            first: hex::encode(&first),
            second: hex::encode(&second),
            bob_session: hex::encode(&*accepted.session.encode()),
        }
    }

    fn bytes(hex: &str) -> Vec<u8> {
        hex::decode(hex).expect("fixture is hex")
    }

    #[test]
    fn encoders_still_produce_the_fixtures() {
        let made = make();
        assert_eq!(made.bob_identity, BOB_IDENTITY);
        assert_eq!(made.bob_signed, BOB_SIGNED_PREKEY);
        assert_eq!(made.bob_one_time, BOB_ONE_TIME_PREKEY);
        assert_eq!(made.first, WIRE_FIRST);
        assert_eq!(made.second, WIRE_SECOND);
        assert_eq!(made.bob_session, BOB_SESSION);
    }

    #[test]
    fn frozen_wire_message_is_accepted_with_frozen_keys() {
        let identity = IdentityKeyPair::decode(&bytes(BOB_IDENTITY)).expect("identity decodes");
        let mut prekeys = InMemoryPrekeys::new();
        prekeys.add_signed(SignedPrekeyPair::decode(&bytes(BOB_SIGNED_PREKEY)).expect("decodes"));
        prekeys
            .add_one_time(OneTimePrekeyPair::decode(&bytes(BOB_ONE_TIME_PREKEY)).expect("decodes"));
        let info = peek(&bytes(WIRE_FIRST)).expect("frozen wire parses");
        assert!(info.is_prekey_message);
        assert_eq!(info.signed_prekey_id, Some(1));
        assert_eq!(info.one_time_prekey_id, Some(100));
        let accepted =
            Session::accept(&identity, &prekeys, &bytes(WIRE_FIRST), T0).expect("accepts");
        assert_eq!(accepted.plaintext, b"first frozen message");
        let mut session = accepted.session;
        assert_eq!(
            session.decrypt(&bytes(WIRE_SECOND), T0),
            Ok(b"second frozen message".to_vec())
        );
    }

    #[test]
    fn frozen_session_decrypts_the_next_frozen_message() {
        let mut session = Session::decode(&bytes(BOB_SESSION)).expect("frozen session decodes");
        assert!(!session.is_initiator());
        assert_eq!(
            session.decrypt(&bytes(WIRE_SECOND), T0),
            Ok(b"second frozen message".to_vec())
        );
        assert_eq!(
            session.decrypt(&bytes(WIRE_FIRST), T0),
            Err(CryptoError::Duplicate)
        );
        // And it can answer.
        session.encrypt(b"answer", T0).expect("encrypts");
    }
}
