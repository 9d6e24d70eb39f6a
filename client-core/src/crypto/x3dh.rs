//! X3DH key agreement (Signal's "The X3DH Key Agreement Protocol", curve X25519, hash SHA-256,
//! info `"juntos-x3dh-v1"`).
//!
//! Identity keys here are the devices' X25519 identity keys; the Ed25519 identity key only
//! signs prekeys. Both are bound into the associated data:
//! `AD = Encode(IK_A) || Encode(IK_B)` with `Encode(IK) = Ed25519 public || X25519 public`.

use rand::{CryptoRng, RngCore};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::KEY_LEN;
use super::error::Result;
use super::keys::{IdentityKeyPair, IdentityPublic};
use super::prekeys::verify_signed_prekey;
use super::primitives::{SecretKey, dh, hkdf_sha256, public_of};

/// HKDF info of X3DH.
const X3DH_INFO: &[u8] = b"juntos-x3dh-v1";

/// `F` of the spec for X25519: 32 0xFF bytes, domain separation from XEdDSA.
const KDF_PREFIX: [u8; 32] = [0xFF; 32];

/// Length of the X3DH associated data.
pub(crate) const AD_LEN: usize = 2 * IdentityPublic::ENCODED_LEN;

/// A remote device's published keys, as the directory hands them out.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteBundle {
    /// Ed25519 identity public key; verifies the signed prekey.
    pub identity_signing: [u8; KEY_LEN],
    /// X25519 identity public key.
    pub identity_dh: [u8; KEY_LEN],
    /// Id of the signed prekey.
    pub signed_prekey_id: u32,
    /// X25519 signed prekey public key.
    pub signed_prekey: [u8; KEY_LEN],
    /// Ed25519 signature over [`signed_prekey_message`](super::signed_prekey_message).
    pub signed_prekey_signature: Vec<u8>,
    /// A one-time prekey `(id, public key)`, when the device had one left.
    pub one_time_prekey: Option<(u32, [u8; KEY_LEN])>,
}

impl std::fmt::Debug for RemoteBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBundle")
            .field("identity", &self.identity())
            .field("signed_prekey_id", &self.signed_prekey_id)
            .field(
                "one_time_prekey_id",
                &self.one_time_prekey.map(|(id, _)| id),
            )
            .finish_non_exhaustive()
    }
}

impl RemoteBundle {
    /// The remote device's identity.
    pub fn identity(&self) -> IdentityPublic {
        IdentityPublic {
            signing: self.identity_signing,
            dh: self.identity_dh,
        }
    }
}

/// What both sides of X3DH end with.
pub(crate) struct Agreement {
    /// `SK`, the Double Ratchet's first root key. (`AD` is recomputed from the identities by
    /// [`associated_data`].)
    pub shared_secret: SecretKey,
}

/// The initiator's result: the agreement plus the ephemeral public key (the base key) it sends.
pub(crate) struct Initiated {
    pub agreement: Agreement,
    pub base_key: [u8; KEY_LEN],
}

/// Alice's side: verify Bob's signed prekey, then DH1..DH4 with a fresh ephemeral key.
pub(crate) fn initiate<R: RngCore + CryptoRng>(
    local: &IdentityKeyPair,
    remote: &RemoteBundle,
    rng: &mut R,
) -> Result<Initiated> {
    verify_signed_prekey(
        &remote.identity_signing,
        remote.signed_prekey_id,
        &remote.signed_prekey,
        &remote.signed_prekey_signature,
    )?;
    let ephemeral = StaticSecret::random_from_rng(rng);
    let dh1 = dh(local.dh_secret(), &remote.signed_prekey)?;
    let dh2 = dh(&ephemeral, &remote.identity_dh)?;
    let dh3 = dh(&ephemeral, &remote.signed_prekey)?;
    let dh4 = match &remote.one_time_prekey {
        Some((_, one_time)) => Some(dh(&ephemeral, one_time)?),
        None => None,
    };
    Ok(Initiated {
        agreement: Agreement {
            shared_secret: kdf(&dh1, &dh2, &dh3, dh4.as_ref()),
        },
        base_key: public_of(&ephemeral),
    })
}

/// Bob's side, given the prekey secrets the initiator named and its identity and base key.
pub(crate) fn respond(
    local: &IdentityKeyPair,
    signed_prekey: &StaticSecret,
    one_time_prekey: Option<&StaticSecret>,
    remote_identity: &IdentityPublic,
    base_key: &[u8; KEY_LEN],
) -> Result<Agreement> {
    let dh1 = dh(signed_prekey, &remote_identity.dh)?;
    let dh2 = dh(local.dh_secret(), base_key)?;
    let dh3 = dh(signed_prekey, base_key)?;
    let dh4 = match one_time_prekey {
        Some(one_time) => Some(dh(one_time, base_key)?),
        None => None,
    };
    Ok(Agreement {
        shared_secret: kdf(&dh1, &dh2, &dh3, dh4.as_ref()),
    })
}

/// `AD = Encode(IK_A) || Encode(IK_B)`, initiator first.
pub(crate) fn associated_data(
    initiator: &IdentityPublic,
    responder: &IdentityPublic,
) -> [u8; AD_LEN] {
    let mut ad = [0u8; AD_LEN];
    ad[..IdentityPublic::ENCODED_LEN].copy_from_slice(&initiator.to_bytes());
    ad[IdentityPublic::ENCODED_LEN..].copy_from_slice(&responder.to_bytes());
    ad
}

/// `SK = HKDF(salt = 32 zero bytes, IKM = F || DH1 || DH2 || DH3 [|| DH4], info)`.
fn kdf(
    dh1: &[u8; KEY_LEN],
    dh2: &[u8; KEY_LEN],
    dh3: &[u8; KEY_LEN],
    dh4: Option<&SecretKey>,
) -> SecretKey {
    let mut ikm = Zeroizing::new(Vec::with_capacity(5 * KEY_LEN));
    ikm.extend_from_slice(&KDF_PREFIX);
    ikm.extend_from_slice(dh1);
    ikm.extend_from_slice(dh2);
    ikm.extend_from_slice(dh3);
    if let Some(dh4) = dh4 {
        ikm.extend_from_slice(&**dh4);
    }
    let mut sk = Zeroizing::new([0u8; KEY_LEN]);
    hkdf_sha256(Some(&[0u8; 32]), &ikm, X3DH_INFO, &mut *sk);
    sk
}

#[cfg(test)]
mod tests {
    use rand::rngs::OsRng;

    use super::*;
    use crate::crypto::CryptoError;
    use crate::crypto::prekeys::{OneTimePrekeyPair, SignedPrekeyPair};

    fn bundle(
        bob: &IdentityKeyPair,
        signed: &SignedPrekeyPair,
        one_time: Option<&OneTimePrekeyPair>,
    ) -> RemoteBundle {
        RemoteBundle {
            identity_signing: bob.public().signing,
            identity_dh: bob.public().dh,
            signed_prekey_id: signed.key_id(),
            signed_prekey: signed.public(),
            signed_prekey_signature: signed.signature().to_vec(),
            one_time_prekey: one_time.map(|p| (p.key_id(), p.public())),
        }
    }

    #[test]
    fn both_sides_agree_with_and_without_one_time_prekey() {
        let alice = IdentityKeyPair::generate(&mut OsRng);
        let bob = IdentityKeyPair::generate(&mut OsRng);
        let signed = SignedPrekeyPair::generate(&bob, 1, &mut OsRng);
        let one_time = OneTimePrekeyPair::generate(10, &mut OsRng);
        let spk = StaticSecret::from(*signed.secret_bytes());
        let opk = StaticSecret::from(*one_time.secret_bytes());

        let with = initiate(&alice, &bundle(&bob, &signed, Some(&one_time)), &mut OsRng)
            .expect("initiates");
        let bob_side =
            respond(&bob, &spk, Some(&opk), &alice.public(), &with.base_key).expect("responds");
        assert_eq!(*with.agreement.shared_secret, *bob_side.shared_secret);
        let ad = associated_data(&alice.public(), &bob.public());
        assert_eq!(&ad[..32], &alice.public().signing);
        assert_eq!(&ad[32..64], &alice.public().dh);
        assert_eq!(&ad[64..96], &bob.public().signing);
        assert_eq!(&ad[96..], &bob.public().dh);

        // Without the one-time prekey the secret differs, and both sides still agree.
        let without =
            initiate(&alice, &bundle(&bob, &signed, None), &mut OsRng).expect("initiates");
        let bob_side =
            respond(&bob, &spk, None, &alice.public(), &without.base_key).expect("responds");
        assert_eq!(*without.agreement.shared_secret, *bob_side.shared_secret);
        // The responder forgetting the one-time prekey gets another secret.
        let wrong = respond(&bob, &spk, None, &alice.public(), &with.base_key).expect("responds");
        assert_ne!(*with.agreement.shared_secret, *wrong.shared_secret);
    }

    #[test]
    fn bad_signature_is_refused() {
        let alice = IdentityKeyPair::generate(&mut OsRng);
        let bob = IdentityKeyPair::generate(&mut OsRng);
        let signed = SignedPrekeyPair::generate(&bob, 1, &mut OsRng);
        let mut forged = bundle(&bob, &signed, None);
        forged.signed_prekey_signature[0] ^= 1;
        assert_eq!(
            initiate(&alice, &forged, &mut OsRng)
                .err()
                .map(|e| e.to_string()),
            Some(CryptoError::BadSignature.to_string())
        );
        // A prekey swapped by the server under Bob's genuine signature is refused too.
        let mut swapped = bundle(&bob, &signed, None);
        swapped.signed_prekey = SignedPrekeyPair::generate(&bob, 1, &mut OsRng).public();
        assert!(matches!(
            initiate(&alice, &swapped, &mut OsRng),
            Err(CryptoError::BadSignature)
        ));
    }

    #[test]
    fn low_order_keys_are_refused() {
        let alice = IdentityKeyPair::generate(&mut OsRng);
        let bob = IdentityKeyPair::generate(&mut OsRng);
        let signed = SignedPrekeyPair::generate(&bob, 1, &mut OsRng);
        let mut bad = bundle(&bob, &signed, None);
        bad.identity_dh = [0; 32];
        assert!(matches!(
            initiate(&alice, &bad, &mut OsRng),
            Err(CryptoError::InvalidKey)
        ));
    }
}
