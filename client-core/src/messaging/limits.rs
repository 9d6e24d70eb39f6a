//! What this client accepts: texts and group ids from the app, and content from peers (whose
//! sizes bound what this device stores and shows).

use crate::error::{ClientError, Result};
use crate::model::content::{Attachment, Body, Content};

/// Longest text accepted, in bytes (sent or received).
pub(crate) const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Longest reaction accepted, in characters.
pub(crate) const MAX_REACTION_CHARS: usize = 16;
/// Message ids per receipt (keeps one receipt well inside one 64 KiB envelope).
pub(crate) const RECEIPT_CHUNK: usize = 500;
/// Longest group id accepted from the app or a peer.
const MAX_GROUP_ID_LEN: usize = 64;
/// Longest file name kept (bytes).
const MAX_FILE_NAME: usize = 255;
/// Longest MIME type accepted.
const MAX_MIME: usize = 128;
/// Largest thumbnail accepted from a peer.
const MAX_THUMBNAIL: usize = 16 * 1024;
/// Largest attachment accepted from a peer (the client's encryption handles up to 4 GiB).
pub(crate) const MAX_ATTACHMENT: u64 = 4 << 30;

/// A text the app wants to send, or InvalidInput.
pub(crate) fn check_text(text: &str) -> Result<()> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(ClientError::InvalidInput {
            message: format!("text longer than {MAX_TEXT_BYTES} bytes"),
        });
    }
    Ok(())
}

/// A group id from the app or a peer, or InvalidInput.
pub(crate) fn check_group_id(group_id: &str) -> Result<()> {
    let valid = !group_id.is_empty()
        && group_id.len() <= MAX_GROUP_ID_LEN
        && group_id.bytes().all(|b| b.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(ClientError::InvalidInput {
            message: "not a group id".to_owned(),
        })
    }
}

/// Whether peer-supplied content stays within what this client accepts.
pub(crate) fn within_bounds(content: &Content) -> bool {
    match &content.body {
        Some(Body::Text(t)) => {
            t.text.len() <= MAX_TEXT_BYTES
                && t.attachment.as_ref().is_none_or(attachment_within_bounds)
        }
        Some(Body::Edit(e)) => e.text.len() <= MAX_TEXT_BYTES,
        Some(Body::Reaction(r)) => r.emoji.chars().count() <= MAX_REACTION_CHARS,
        Some(Body::Receipt(r)) => r.message_ids.len() <= RECEIPT_CHUNK,
        Some(Body::SenderKey(k)) => k.distribution.len() <= 256,
        Some(Body::StatusKey(k)) => k.distribution.len() <= 256,
        Some(Body::StatusSeen(s)) => !s.status_id.is_empty() && s.status_id.len() <= 64,
        Some(Body::SenderKeyRequest(r)) => r.group_id.len() <= 64,
        Some(Body::Delete(_)) | None => true,
    }
}

/// Whether a peer's attachment description is within what this client accepts.
pub(crate) fn attachment_within_bounds(a: &Attachment) -> bool {
    !a.blob_id.is_empty()
        && a.blob_id.len() <= 64
        && a.capability.len() == 32
        && a.key.len() == 32
        && a.digest.len() == 32
        && a.size <= MAX_ATTACHMENT
        && a.mime_type.len() <= MAX_MIME
        && a.file_name.len() <= MAX_FILE_NAME
        && a.thumbnail.len() <= MAX_THUMBNAIL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_attachments_are_bounded() {
        let good = Attachment {
            blob_id: "m-0123".into(),
            capability: vec![0; 32],
            key: vec![0; 32],
            digest: vec![0; 32],
            size: 10,
            kind: 4,
            mime_type: "text/plain".into(),
            file_name: "a.txt".into(),
            thumbnail: Vec::new(),
            width: 0,
            height: 0,
        };
        assert!(attachment_within_bounds(&good));
        for bad in [
            Attachment {
                key: vec![0; 31],
                ..good.clone()
            },
            Attachment {
                blob_id: String::new(),
                ..good.clone()
            },
            Attachment {
                thumbnail: vec![0; MAX_THUMBNAIL + 1],
                ..good.clone()
            },
            Attachment {
                file_name: "x".repeat(256),
                ..good.clone()
            },
        ] {
            assert!(!attachment_within_bounds(&bad));
        }
    }
}
