//! What travels inside the ciphertext: every message kind a user can act with. The server never
//! sees any of it.
//!
//! Encoded with protobuf (prost derive) so the format is stable and extensible: new kinds get
//! new oneof tags, and an old client ignores what it does not know. Padded to a multiple of
//! [`PAD_TO`] bytes so ciphertext sizes do not reveal text lengths precisely.

use prost::Message as _;

/// Content length is rounded up to a multiple of this.
const PAD_TO: usize = 64;

/// The current content version.
pub(crate) const VERSION: u32 = 1;

/// One message's content.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Content {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// Chosen by the sending device: 128 random bits, hex.
    #[prost(string, tag = "2")]
    pub message_id: String,
    /// The conversation, from the sender's side: the user it was sent to. Lets the sender's own
    /// other devices file their copy.
    #[prost(string, tag = "3")]
    pub to_user_id: String,
    /// The sender's clock when it was written, Unix ms.
    #[prost(int64, tag = "4")]
    pub sent_at_ms: i64,
    /// The sending user, inside the ciphertext: a receiver checks it against the envelope's
    /// sender, so the server cannot relabel who sent a message.
    #[prost(string, tag = "5")]
    pub from_user_id: String,
    #[prost(oneof = "Body", tags = "10, 11, 12, 13, 14, 16, 17, 18, 19")]
    pub body: Option<Body>,
    /// Filler up to a multiple of [`PAD_TO`] bytes.
    #[prost(bytes = "vec", tag = "15")]
    pub padding: Vec<u8>,
}

/// What the message does.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Body {
    /// A text; a reply when it quotes a message, a forward when marked so.
    #[prost(message, tag = "10")]
    Text(Text),
    /// Replaces the text of one of the sender's own messages.
    #[prost(message, tag = "11")]
    Edit(Edit),
    /// Deletes one of the sender's own messages for everyone.
    #[prost(message, tag = "12")]
    Delete(Delete),
    /// Sets (or, with an empty emoji, removes) the sender's reaction to a message.
    #[prost(message, tag = "13")]
    Reaction(Reaction),
    /// Says messages were delivered to, or read on, one of the sender's devices.
    #[prost(message, tag = "14")]
    Receipt(Receipt),
    /// Gives the receiving device the sending device's chain for a group (sent pairwise only;
    /// `to_user_id` is then the group id).
    #[prost(message, tag = "16")]
    SenderKey(SenderKey),
    /// Gives the receiving device the sending device's status chain (pairwise only).
    #[prost(message, tag = "17")]
    StatusKey(StatusKey),
    /// Tells the poster (and the viewer's other devices) that a status was seen.
    #[prost(message, tag = "18")]
    StatusSeen(StatusSeen),
    /// Asks the receiver to give the sending device its chain again (a message arrived on a
    /// chain the sending device never got).
    #[prost(message, tag = "19")]
    SenderKeyRequest(SenderKeyRequest),
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SenderKeyRequest {
    /// The group; empty for the receiver's status chain.
    #[prost(string, tag = "1")]
    pub group_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StatusKey {
    /// An encoded `SenderKeyDistribution`.
    #[prost(bytes = "vec", tag = "1")]
    pub distribution: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StatusSeen {
    /// The server's id of the status.
    #[prost(string, tag = "1")]
    pub status_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SenderKey {
    #[prost(string, tag = "1")]
    pub group_id: String,
    /// An encoded `SenderKeyDistribution`.
    #[prost(bytes = "vec", tag = "2")]
    pub distribution: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Text {
    /// The text, or a media message's caption.
    #[prost(string, tag = "1")]
    pub text: String,
    /// The message this replies to ("" when none).
    #[prost(string, tag = "2")]
    pub quoted_message_id: String,
    #[prost(bool, tag = "3")]
    pub forwarded: bool,
    /// A picture, video, voice note or file (encrypted, on the media service).
    #[prost(message, optional, tag = "4")]
    pub attachment: Option<Attachment>,
}

/// What a receiver needs to fetch and open an encrypted blob: where it is, the capability that
/// lets it download, the key and digest that open and check it, and what it is.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(crate) struct Attachment {
    #[prost(string, tag = "1")]
    pub blob_id: String,
    /// The media service's capability for the blob (32 bytes).
    #[prost(bytes = "vec", tag = "2")]
    pub capability: Vec<u8>,
    /// The blob's own key (32 bytes), used for nothing else.
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    /// SHA-256 of the ciphertext.
    #[prost(bytes = "vec", tag = "4")]
    pub digest: Vec<u8>,
    /// The plaintext's size in bytes.
    #[prost(uint64, tag = "5")]
    pub size: u64,
    /// A `juntos.media.v1.MediaKind`.
    #[prost(int32, tag = "6")]
    pub kind: i32,
    #[prost(string, tag = "7")]
    pub mime_type: String,
    /// The file's name as the sender had it (no path).
    #[prost(string, tag = "8")]
    pub file_name: String,
    /// A small JPEG preview of a picture (empty when none).
    #[prost(bytes = "vec", tag = "9")]
    pub thumbnail: Vec<u8>,
    /// A picture's size in pixels (0 when unknown).
    #[prost(uint32, tag = "10")]
    pub width: u32,
    #[prost(uint32, tag = "11")]
    pub height: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Edit {
    #[prost(string, tag = "1")]
    pub target_message_id: String,
    #[prost(string, tag = "2")]
    pub text: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Delete {
    #[prost(string, tag = "1")]
    pub target_message_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Reaction {
    #[prost(string, tag = "1")]
    pub target_message_id: String,
    /// One emoji; empty removes the sender's reaction.
    #[prost(string, tag = "2")]
    pub emoji: String,
}

/// Receipt kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum ReceiptKind {
    Unspecified = 0,
    Delivered = 1,
    Read = 2,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Receipt {
    #[prost(enumeration = "ReceiptKind", tag = "1")]
    pub kind: i32,
    #[prost(string, repeated, tag = "2")]
    pub message_ids: Vec<String>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key, capability, name or preview: Debug output ends up in logs.
        f.debug_struct("Attachment")
            .field("blob_id", &self.blob_id)
            .field("size", &self.size)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Content {
    /// A new content of `body` with a fresh message id.
    pub(crate) fn new(from_user_id: &str, to_user_id: &str, sent_at_ms: i64, body: Body) -> Self {
        Self {
            version: VERSION,
            message_id: new_id(),
            to_user_id: to_user_id.to_owned(),
            from_user_id: from_user_id.to_owned(),
            sent_at_ms,
            body: Some(body),
            padding: Vec::new(),
        }
    }

    /// The padded encoding.
    pub(crate) fn encode_padded(&self) -> Vec<u8> {
        let mut content = self.clone();
        content.padding.clear();
        let bare = content.encoded_len();
        if !bare.is_multiple_of(PAD_TO) {
            // An empty padding field is not encoded at all, so start at one filler byte.
            let mut filler = 1;
            while !(bare + 1 + prost::encoding::encoded_len_varint(filler as u64) + filler)
                .is_multiple_of(PAD_TO)
            {
                filler += 1;
            }
            content.padding = vec![0; filler];
        }
        content.encode_to_vec()
    }

    /// Decodes content; `None` when it is not valid content.
    pub(crate) fn decode_bytes(bytes: &[u8]) -> Option<Self> {
        let content = Self::decode(bytes).ok()?;
        // Ids are hex from `new_id`; nothing else (such as a `status:` key of the local store)
        // may be named by a peer.
        let id_ok = !content.message_id.is_empty()
            && content.message_id.len() <= 64
            && content
                .message_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        id_ok.then_some(content)
    }
}

/// 128 random bits as hex: message ids and client message ids.
pub(crate) fn new_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips_and_is_padded() {
        for text in ["", "hi", &"x".repeat(200)] {
            let content = Content::new(
                "alice",
                "bob",
                7,
                Body::Text(Text {
                    text: text.to_owned(),
                    quoted_message_id: String::new(),
                    forwarded: false,
                    attachment: None,
                }),
            );
            let bytes = content.encode_padded();
            assert_eq!(
                bytes.len() % PAD_TO,
                0,
                "{} bytes for {} chars",
                bytes.len(),
                text.len()
            );
            let back = Content::decode_bytes(&bytes).expect("decodes");
            assert_eq!(back.body, content.body);
            assert_eq!(back.message_id, content.message_id);
        }
    }

    /// A frozen encoding: content written by this version must stay readable by every later one.
    #[test]
    fn frozen_content_fixture_decodes() {
        // Written by hand from the protobuf encoding rules, independent of this code.
        const FIXTURE: &str = "08011204616263641a03626f6220e807520b0a02686912037171711801\
                               7a020000";
        let hex: String = FIXTURE.split_whitespace().collect();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let content = Content::decode_bytes(&bytes).expect("fixture decodes");
        assert_eq!(content.version, 1);
        assert_eq!(content.message_id, "abcd");
        assert_eq!(content.to_user_id, "bob");
        assert_eq!(content.sent_at_ms, 1000);
        assert_eq!(
            content.body,
            Some(Body::Text(Text {
                text: "hi".into(),
                quoted_message_id: "qqq".into(),
                forwarded: true,
                attachment: None,
            }))
        );
    }

    #[test]
    fn junk_is_not_content() {
        assert!(Content::decode_bytes(&[0xff, 0xff, 0xff]).is_none());
        assert!(Content::decode_bytes(&[]).is_none(), "no message id");
    }
}
