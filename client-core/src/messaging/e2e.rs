//! The messaging layer's view of the crypto module: encrypt for a device, decrypt from one,
//! make prekeys, compute a safety number. Keys stay inside `crate::crypto`; this file only moves
//! bytes between it, the store and the directory's protobuf.

use juntos_proto::login::v1 as login;
use rand::rngs::OsRng;
use rusqlite::Connection;
use zeroize::Zeroizing;

use crate::crypto::{
    self, CryptoError, IdentityKeyPair, IdentityKeys, IdentityPublic, OneTimePrekeyPair,
    PrekeySecrets, RemoteBundle, Session, SignedPrekeyPair,
};
use crate::error::{ClientError, Result};
use crate::store::messaging::{self as db, DeviceRecord, StoredPrekey};

/// What decrypting one envelope produced.
pub(crate) struct Decrypted {
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The session state to store as current.
    pub state: Vec<u8>,
    /// The one-time prekey the message consumed (delete it with the state).
    pub consumed_one_time_prekey: Option<u32>,
    /// The former current session, to archive (it was replaced).
    pub archive: Option<Vec<u8>>,
    /// The archived session that decrypted the message (it is current again).
    pub unarchived: Option<i64>,
    /// The base key of a session this message started (record it against replays).
    pub accepted_base_key: Option<[u8; 32]>,
}

/// Why an envelope did not decrypt.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DecryptError(CryptoError);

impl DecryptError {
    /// A replayed or already-processed message: safe to acknowledge silently.
    pub(crate) fn is_duplicate(&self) -> bool {
        self.0 == CryptoError::Duplicate
    }

    /// A group message sent before this device was given the chain (it joined later): never
    /// readable here, and nothing to warn about.
    pub(crate) fn predates_membership(&self) -> bool {
        self.0 == CryptoError::PredatesSenderKey
    }
}

fn keypair(identity: &IdentityKeys) -> IdentityKeyPair {
    IdentityKeyPair::from_secret_bytes(
        &identity.signing_secret_bytes(),
        &identity.dh_secret_bytes(),
    )
}

fn crypto_failure(e: CryptoError) -> ClientError {
    ClientError::Server {
        message: format!("encryption failed: {e}"),
    }
}

/// Encrypts `plaintext` for `device`, continuing its stored session or starting one from
/// `bundle`. The wire bytes and the new session state.
pub(crate) fn encrypt(
    identity: &IdentityKeys,
    device: &DeviceRecord,
    state: Option<&[u8]>,
    bundle: Option<&login::PrekeyBundle>,
    plaintext: &[u8],
    now_ms: i64,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut session = match state {
        Some(state) => {
            let session = Session::decode(state).map_err(crypto_failure)?;
            if session.remote_identity() != identity_of(device) {
                return Err(ClientError::Server {
                    message: "a stored session does not match the device's identity".to_owned(),
                });
            }
            session
        }
        None => {
            let bundle = bundle.ok_or_else(|| ClientError::Server {
                message: "no prekey bundle".to_owned(),
            })?;
            let remote = RemoteBundle::try_from(bundle).map_err(crypto_failure)?;
            if remote.identity_signing != device.identity_signing
                || remote.identity_dh != device.identity_dh
            {
                return Err(ClientError::Server {
                    message: "a prekey bundle does not match the device's identity".to_owned(),
                });
            }
            Session::initiate(&keypair(identity), &remote, &mut OsRng).map_err(crypto_failure)?
        }
    };
    let wire = session.encrypt(plaintext, now_ms).map_err(crypto_failure)?;
    Ok((wire, session.encode().to_vec()))
}

/// Prekey secrets read from the client database.
struct StoredPrekeys<'a>(&'a Connection);

impl PrekeySecrets for StoredPrekeys<'_> {
    fn signed_prekey(&self, key_id: u32) -> Option<Zeroizing<[u8; 32]>> {
        db::signed_prekey_secret(self.0, key_id).ok().flatten()
    }

    fn one_time_prekey(&self, key_id: u32) -> Option<Zeroizing<[u8; 32]>> {
        db::one_time_prekey_secret(self.0, key_id).ok().flatten()
    }
}

/// Decrypts an envelope from `sender` (whose identity this device trusts): with the current
/// session, else with an archived one (a message from a session that both sides started at
/// once, or from before a reset), else, for a first message, with a new session from this
/// device's prekeys. A session that decrypts becomes current; the one it replaces is archived.
pub(crate) fn decrypt(
    identity: &IdentityKeys,
    sender: &DeviceRecord,
    current: Option<&[u8]>,
    conn: &Connection,
    wire: &[u8],
    now_ms: i64,
) -> Result<Decrypted, DecryptError> {
    let info = crypto::peek(wire).map_err(DecryptError)?;
    let expected = identity_of(sender);
    let mut duplicate = false;
    if let Some(state) = current {
        let mut session = Session::decode(state).map_err(DecryptError)?;
        // Only a session with this very device's identity may decrypt its mail, whatever
        // device id the server put on the envelope.
        if session.remote_identity() == expected {
            match session.decrypt(wire, now_ms) {
                Ok(plaintext) => return Ok(decrypted(plaintext, &session, None, None, None, None)),
                Err(e) => duplicate |= e == CryptoError::Duplicate,
            }
        }
    }
    let archived = db::archived_sessions(conn, &sender.device_id)
        .map_err(|_| DecryptError(CryptoError::Corrupt))?;
    for (id, state) in archived {
        let Ok(mut session) = Session::decode(&state) else {
            continue;
        };
        if session.remote_identity() != expected {
            continue;
        }
        match session.decrypt(wire, now_ms) {
            Ok(plaintext) => {
                let archive = current.map(<[u8]>::to_vec);
                return Ok(decrypted(
                    plaintext,
                    &session,
                    None,
                    archive,
                    Some(id),
                    None,
                ));
            }
            Err(e) => duplicate |= e == CryptoError::Duplicate,
        }
    }
    if duplicate {
        return Err(DecryptError(CryptoError::Duplicate));
    }
    if !info.is_prekey_message {
        return Err(DecryptError(CryptoError::InvalidMessage));
    }
    // The sender's identity in the message must be the one the directory lists for its device.
    let claimed = (info.sender_identity_signing, info.sender_identity_dh);
    if claimed != (Some(sender.identity_signing), Some(sender.identity_dh)) {
        return Err(DecryptError(CryptoError::InvalidMessage));
    }
    // A first message is accepted once: a replay must not start the session again.
    let base_key = info
        .base_key
        .ok_or(DecryptError(CryptoError::InvalidMessage))?;
    let seen = db::base_key_accepted(conn, &sender.device_id, &base_key)
        .map_err(|_| DecryptError(CryptoError::Corrupt))?;
    if seen {
        return Err(DecryptError(CryptoError::Duplicate));
    }
    let accepted = Session::accept(&keypair(identity), &StoredPrekeys(conn), wire, now_ms)
        .map_err(DecryptError)?;
    Ok(decrypted(
        accepted.plaintext,
        &accepted.session,
        accepted.consumed_one_time_prekey,
        current.map(<[u8]>::to_vec),
        None,
        Some(base_key),
    ))
}

fn identity_of(device: &DeviceRecord) -> IdentityPublic {
    IdentityPublic {
        signing: device.identity_signing,
        dh: device.identity_dh,
    }
}

fn decrypted(
    plaintext: Vec<u8>,
    session: &Session,
    consumed_one_time_prekey: Option<u32>,
    archive: Option<Vec<u8>>,
    unarchived: Option<i64>,
    accepted_base_key: Option<[u8; 32]>,
) -> Decrypted {
    Decrypted {
        plaintext: Zeroizing::new(plaintext),
        state: session.encode().to_vec(),
        consumed_one_time_prekey,
        archive,
        unarchived,
        accepted_base_key,
    }
}

/// A fresh signed prekey with id `key_id`.
pub(crate) fn signed_prekey(identity: &IdentityKeys, key_id: u32) -> StoredPrekey {
    let pair = SignedPrekeyPair::generate(&keypair(identity), key_id, &mut OsRng);
    StoredPrekey {
        key_id,
        secret: pair.secret_bytes(),
        public: pair.public(),
        signature: Some(pair.signature()),
    }
}

/// `count` fresh one-time prekeys with ids from `first_id`.
pub(crate) fn one_time_prekeys(first_id: u32, count: u32) -> Vec<StoredPrekey> {
    (0..count)
        .map(|i| {
            let pair = OneTimePrekeyPair::generate(first_id.wrapping_add(i), &mut OsRng);
            StoredPrekey {
                key_id: pair.key_id(),
                secret: pair.secret_bytes(),
                public: pair.public(),
                signature: None,
            }
        })
        .collect()
}

/// The upload of freshly made prekeys.
pub(crate) fn upload_request(
    signed: Option<&StoredPrekey>,
    one_time: &[StoredPrekey],
) -> login::UploadPrekeysRequest {
    login::UploadPrekeysRequest {
        signed_prekey: signed.map(|p| login::SignedPrekey {
            key_id: p.key_id,
            public_key: p.public.to_vec(),
            signature: p.signature.map(|s| s.to_vec()).unwrap_or_default(),
        }),
        one_time_prekeys: one_time
            .iter()
            .map(|p| login::OneTimePrekey {
                key_id: p.key_id,
                public_key: p.public.to_vec(),
            })
            .collect(),
    }
}

/// The safety number of two accounts, over every device identity of each.
pub(crate) fn safety_number(
    me: &str,
    identity: &IdentityKeys,
    my_other_devices: &[DeviceRecord],
    peer: &str,
    peer_devices: &[DeviceRecord],
) -> String {
    let public = |d: &DeviceRecord| IdentityPublic {
        signing: d.identity_signing,
        dh: d.identity_dh,
    };
    let mut mine: Vec<IdentityPublic> = my_other_devices.iter().map(public).collect();
    mine.push(IdentityPublic {
        signing: identity.signing_public(),
        dh: identity.dh_public(),
    });
    let theirs: Vec<IdentityPublic> = peer_devices.iter().map(public).collect();
    crypto::safety_number(me, &mine, peer, &theirs).to_string()
}

// === sender keys (groups) ===

/// Decrypted bytes, wiped when dropped.
pub(crate) type Plaintext = Zeroizing<Vec<u8>>;
/// An encoded chain state, wiped when dropped.
pub(crate) type State = Zeroizing<Vec<u8>>;

/// What a group message's AEAD binds besides its chain: the group and the sending device, so
/// a message cannot be replayed into another group or under another sender.
pub(crate) fn group_associated_data(
    group_id: &str,
    sender_user: &str,
    sender_device: &str,
) -> Vec<u8> {
    let mut ad = b"juntos-group-v1".to_vec();
    for part in [group_id, sender_user, sender_device] {
        ad.push(0);
        ad.extend_from_slice(part.as_bytes());
    }
    ad
}

/// What a status's AEAD binds besides its chain: the poster's device and the status's id, so a
/// status cannot be passed off as another, or as someone else's.
pub(crate) fn status_associated_data(
    poster_user: &str,
    poster_device: &str,
    client_status_id: &str,
) -> Vec<u8> {
    let mut ad = b"juntos-status-v1".to_vec();
    for part in [poster_user, poster_device, client_status_id] {
        ad.push(0);
        ad.extend_from_slice(part.as_bytes());
    }
    ad
}

/// A new sending chain: its state to store.
pub(crate) fn new_sender_key() -> Zeroizing<Vec<u8>> {
    crypto::SenderKeyOwn::generate(&mut OsRng).encode()
}

/// The distribution of a stored sending chain (what members need to read it from now on).
pub(crate) fn sender_key_distribution(state: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let own = crypto::SenderKeyOwn::decode(state).map_err(crypto_failure)?;
    Ok(own.distribution().encode())
}

/// Encrypts `plaintext` with a stored sending chain: the wire bytes and the advanced state.
pub(crate) fn group_encrypt(
    state: &[u8],
    plaintext: &[u8],
    associated_data: &[u8],
) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>)> {
    let mut own = crypto::SenderKeyOwn::decode(state).map_err(crypto_failure)?;
    let wire = own
        .encrypt(plaintext, associated_data)
        .map_err(crypto_failure)?;
    Ok((wire, own.encode()))
}

/// A received distribution as a chain state to store, with its chain id.
pub(crate) fn accept_sender_key(
    distribution: &[u8],
) -> Result<(u32, Zeroizing<Vec<u8>>), DecryptError> {
    let distribution = crypto::SenderKeyDistribution::decode(distribution).map_err(DecryptError)?;
    let received = crypto::SenderKeyReceived::new(&distribution);
    Ok((received.chain_id(), received.encode()))
}

/// The chain a group message was sent on.
pub(crate) fn group_chain_of(wire: &[u8]) -> Result<u32, DecryptError> {
    Ok(crypto::peek_sender_key(wire)
        .map_err(DecryptError)?
        .chain_id)
}

/// Decrypts a group message with a stored received chain: the plaintext and the new state.
pub(crate) fn group_decrypt(
    state: &[u8],
    wire: &[u8],
    associated_data: &[u8],
    now_ms: i64,
) -> Result<(Plaintext, State), DecryptError> {
    let mut received = crypto::SenderKeyReceived::decode(state).map_err(DecryptError)?;
    let plaintext = received
        .decrypt(wire, associated_data, now_ms)
        .map_err(DecryptError)?;
    Ok((Zeroizing::new(plaintext), received.encode()))
}

/// Checks a group notice's signature under a notice key of the chat service.
pub(crate) fn verify_notice(public_key: &[u8; 32], notice: &[u8], signature: &[u8]) -> bool {
    crypto::verify_notice(public_key, notice, signature).is_ok()
}

// === the directory's protobuf ===
//
// The crypto module knows nothing of the wire protocol; these conversions (public, for the
// benchmarks' raw devices too) live on this side of it.

impl TryFrom<&login::PrekeyBundle> for RemoteBundle {
    type Error = CryptoError;

    /// Checks lengths only; the signature is checked by [`Session::initiate`].
    fn try_from(bundle: &login::PrekeyBundle) -> Result<Self, CryptoError> {
        let key = |bytes: &[u8]| -> Result<[u8; crypto::KEY_LEN], CryptoError> {
            bytes.try_into().map_err(|_| CryptoError::InvalidKey)
        };
        let signed = bundle
            .signed_prekey
            .as_ref()
            .ok_or(CryptoError::InvalidKey)?;
        if signed.signature.len() != crypto::SIGNATURE_LEN {
            return Err(CryptoError::BadSignature);
        }
        let one_time_prekey = match &bundle.one_time_prekey {
            Some(one_time) => Some((one_time.key_id, key(&one_time.public_key)?)),
            None => None,
        };
        Ok(Self {
            identity_signing: key(&bundle.identity_signing_key)?,
            identity_dh: key(&bundle.identity_dh_key)?,
            signed_prekey_id: signed.key_id,
            signed_prekey: key(&signed.public_key)?,
            signed_prekey_signature: signed.signature.clone(),
            one_time_prekey,
        })
    }
}

impl SignedPrekeyPair {
    /// The public half as uploaded to the directory.
    pub fn to_proto(&self) -> login::SignedPrekey {
        login::SignedPrekey {
            key_id: self.key_id(),
            public_key: self.public().to_vec(),
            signature: self.signature().to_vec(),
        }
    }
}

impl OneTimePrekeyPair {
    /// The public half as uploaded to the directory.
    pub fn to_proto(&self) -> login::OneTimePrekey {
        login::OneTimePrekey {
            key_id: self.key_id(),
            public_key: self.public().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_carries_the_public_half() {
        let identity = IdentityKeyPair::generate(&mut OsRng);
        let prekey = SignedPrekeyPair::generate(&identity, 5, &mut OsRng);
        let proto = prekey.to_proto();
        assert_eq!(proto.key_id, 5);
        assert_eq!(proto.public_key, prekey.public().to_vec());
        assert_eq!(proto.signature, prekey.signature().to_vec());
        let one_time = OneTimePrekeyPair::generate(9, &mut OsRng).to_proto();
        assert_eq!(one_time.key_id, 9);
        assert_eq!(one_time.public_key.len(), 32);
    }

    #[test]
    fn bundle_from_proto() {
        let bob = IdentityKeyPair::generate(&mut OsRng);
        let signed = SignedPrekeyPair::generate(&bob, 3, &mut OsRng);
        let one_time = OneTimePrekeyPair::generate(4, &mut OsRng);
        let proto = login::PrekeyBundle {
            identity_signing_key: bob.public().signing.to_vec(),
            identity_dh_key: bob.public().dh.to_vec(),
            signed_prekey: Some(signed.to_proto()),
            one_time_prekey: Some(one_time.to_proto()),
            ..Default::default()
        };
        let remote = RemoteBundle::try_from(&proto).expect("converts");
        let expected = RemoteBundle {
            identity_signing: bob.public().signing,
            identity_dh: bob.public().dh,
            signed_prekey_id: signed.key_id(),
            signed_prekey: signed.public(),
            signed_prekey_signature: signed.signature().to_vec(),
            one_time_prekey: Some((one_time.key_id(), one_time.public())),
        };
        assert_eq!(remote, expected);

        let mut short = proto.clone();
        short.identity_dh_key.pop();
        assert!(matches!(
            RemoteBundle::try_from(&short),
            Err(CryptoError::InvalidKey)
        ));
        let mut missing = proto;
        missing.signed_prekey = None;
        assert!(RemoteBundle::try_from(&missing).is_err());
    }
}
