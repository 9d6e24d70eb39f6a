//! Media: pictures, videos, voice notes and files, encrypted on this device and sent as blobs.
//!
//! Sending: the file is encrypted with a fresh key (chunked AEAD, `crypto::attachment`), in
//! 64 KiB chunks read, sealed and streamed one after another, so a file of any size takes
//! constant memory. The ciphertext goes to the media service as a resumable upload; key,
//! digest, size, type, name, the capability the server returned and (for pictures) a small
//! thumbnail travel inside the end-to-end encrypted message, which then goes out like a text
//! (1:1 or group; forwarding a media message sends the same blob again). An interrupted upload
//! is remembered with its key, so sending the same unchanged file again resumes where the
//! server's stored bytes end: the same key re-encrypts the file to the same ciphertext.
//!
//! Receiving: the message arrives with the attachment's description; `download` streams the
//! ciphertext, checks every chunk as it arrives and the digest at the end, and writes the
//! plaintext to a temporary file that becomes the file only once everything checked out.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use juntos_proto::media::v1 as media;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::limits::{MAX_ATTACHMENT, check_group_id, check_text};
use super::queue::To;
use crate::api::Api;
use crate::crypto::attachment::{BlobKey, CHUNK, Opener, Sealer, ciphertext_len};
use crate::error::{ClientError, Result};
use crate::model::content::{self, Attachment, Body};
use crate::model::records::{Message, TransferListener};
use crate::shared::Shared;
use crate::store::groups as gdb;
use crate::store::media::{self as mdb, FileStamp, PendingUpload};

/// Progress is reported at most once per this many bytes (and at the end).
const REPORT_EVERY: u64 = 256 * 1024;
/// Sealed chunks queued between the file reader and the network.
const IN_FLIGHT: usize = 8;

/// Reports a transfer's progress to the app's listener, not too often.
struct Progress {
    listener: Option<Arc<dyn TransferListener>>,
    total: u64,
    reported: Option<u64>,
}

impl Progress {
    fn new(listener: Option<Arc<dyn TransferListener>>, total: u64) -> Self {
        Self {
            listener,
            total,
            reported: None,
        }
    }

    fn at(&mut self, done: u64) {
        let due = match self.reported {
            None => true,
            Some(last) => done >= last.saturating_add(REPORT_EVERY) || done == self.total,
        };
        if due && self.reported != Some(done) {
            self.reported = Some(done);
            if let Some(listener) = &self.listener {
                listener.on_progress(done, self.total);
            }
        }
    }
}

/// The kind and MIME type of a file, from its first bytes (pictures) or its name.
fn kind_of(path: &Path, head: &[u8]) -> (media::MediaKind, String) {
    if let Some(mime) = crate::thumbnail::is_image_mime(head) {
        return (media::MediaKind::Image, mime.to_owned());
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let (kind, mime) = match ext.as_str() {
        "gif" => (media::MediaKind::Image, "image/gif"),
        "mp4" | "m4v" => (media::MediaKind::Video, "video/mp4"),
        "mov" => (media::MediaKind::Video, "video/quicktime"),
        "webm" => (media::MediaKind::Video, "video/webm"),
        "mkv" => (media::MediaKind::Video, "video/x-matroska"),
        "mp3" => (media::MediaKind::Audio, "audio/mpeg"),
        "m4a" | "aac" => (media::MediaKind::Audio, "audio/mp4"),
        "ogg" | "opus" => (media::MediaKind::Audio, "audio/ogg"),
        "wav" => (media::MediaKind::Audio, "audio/wav"),
        "pdf" => (media::MediaKind::File, "application/pdf"),
        "txt" => (media::MediaKind::File, "text/plain"),
        "zip" => (media::MediaKind::File, "application/zip"),
        _ => (media::MediaKind::File, "application/octet-stream"),
    };
    (kind, mime.to_owned())
}

/// A file name safe to create in a folder: the last path component, without control
/// characters or a leading dot, never empty.
fn safe_file_name(name: &str, fallback: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim_start_matches('.')
        .trim()
        .chars()
        .take(120)
        .collect();
    if cleaned.is_empty() {
        fallback.to_owned()
    } else {
        cleaned
    }
}

/// `name` in `dir`, or `name (2)`, `name (3)`, … when taken: a download never replaces a file.
fn unused_name(dir: &Path, name: &str) -> PathBuf {
    let candidate = dir.join(name);
    if !candidate.exists() {
        return candidate;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    (2..)
        .map(|n| dir.join(format!("{stem} ({n}){ext}")))
        .find(|p| !p.exists())
        .unwrap_or(candidate)
}

/// Device, inode and change time of a file (where the platform has them): with the size and
/// modification time, what says a file is unchanged since an upload of it began.
fn file_id(meta: &std::fs::Metadata) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        format!(
            "{}:{}:{}.{}",
            meta.dev(),
            meta.ino(),
            meta.ctime(),
            meta.ctime_nsec()
        )
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        String::new()
    }
}

fn invalid(message: impl Into<String>) -> ClientError {
    ClientError::InvalidInput {
        message: message.into(),
    }
}

fn damaged(e: impl std::fmt::Display) -> ClientError {
    ClientError::Server {
        message: format!("the download did not check out ({e}); it was not saved"),
    }
}

/// Reads `path` from the start, seals it chunk by chunk with `key` and sends every sealed byte
/// from `offset` on as `Upload` messages into `tx` (none when `offset` is the end). Returns the
/// ciphertext's digest.
async fn seal_file(
    path: PathBuf,
    key: BlobKey,
    size: u64,
    blob_id: String,
    offset: u64,
    tx: Option<tokio::sync::mpsc::Sender<media::UploadRequest>>,
    mut progress: Progress,
) -> Result<[u8; 32]> {
    let mut file = tokio::fs::File::open(&path).await?;
    let mut sealer = Sealer::new(&key, size).map_err(|e| invalid(e.to_string()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    let mut first = true;
    while let Some(len) = sealer.next_chunk_len() {
        file.read_exact(&mut buf[..len]).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                invalid("the file changed while it was being sent")
            } else {
                e.into()
            }
        })?;
        let sealed = sealer
            .seal_next(&buf[..len])
            .map_err(|e| invalid(e.to_string()))?;
        let end = pos + sealed.len() as u64;
        if let Some(tx) = &tx
            && end > offset
        {
            let skip = usize::try_from(offset.saturating_sub(pos)).unwrap_or(0);
            let message = media::UploadRequest {
                blob_id: if first {
                    blob_id.clone()
                } else {
                    String::new()
                },
                offset: if first { offset } else { 0 },
                data: sealed[skip..].to_vec(),
            };
            first = false;
            if tx.send(message).await.is_err() {
                // The upload call ended; its error is the answer.
                return Err(ClientError::Network {
                    message: "the upload stopped".to_owned(),
                });
            }
            progress.at(end);
        }
        pos = end;
    }
    // A file that grew since its size was read.
    if file.read(&mut buf[..1]).await? != 0 {
        return Err(invalid("the file changed while it was being sent"));
    }
    // Every byte is on the server but the upload was not finished: an empty resume finishes it.
    if let Some(tx) = &tx
        && first
    {
        let finish = media::UploadRequest {
            blob_id,
            offset,
            data: Vec::new(),
        };
        if tx.send(finish).await.is_err() {
            return Err(ClientError::Network {
                message: "the upload stopped".to_owned(),
            });
        }
    }
    sealer.finish().map_err(|e| invalid(e.to_string()))
}

impl Shared {
    /// Sends the file at `path` to `peer` (an E.164 number or a user id), with `caption`
    /// (may be empty). Encrypts and uploads it first (resuming an earlier interrupted upload of
    /// the same unchanged file), then queues the message; `progress` hears how the upload goes.
    pub(crate) async fn send_file(
        &self,
        peer: String,
        path: String,
        caption: String,
        progress: Option<Arc<dyn TransferListener>>,
    ) -> Result<Message> {
        check_text(&caption)?;
        let to = self.resolve(&peer).await?;
        let attachment = self.upload_file(Path::new(&path), progress).await?;
        let local = std::fs::canonicalize(&path).ok();
        self.queue_with_file(
            To::User(&to),
            media_body(caption, attachment),
            local.as_deref().and_then(Path::to_str),
        )
    }

    /// Sends the file at `path` to every member of a group (see `send_file`).
    pub(crate) async fn send_group_file(
        &self,
        group_id: String,
        path: String,
        caption: String,
        progress: Option<Arc<dyn TransferListener>>,
    ) -> Result<Message> {
        check_group_id(&group_id)?;
        check_text(&caption)?;
        let known = self.store.read(|c| gdb::snapshot(c, &group_id))?;
        if known.is_some_and(|g| !g.info.active) {
            return Err(invalid("you are no longer in this group"));
        }
        let attachment = self.upload_file(Path::new(&path), progress).await?;
        let local = std::fs::canonicalize(&path).ok();
        self.queue_with_file(
            To::Group(&group_id),
            media_body(caption, attachment),
            local.as_deref().and_then(Path::to_str),
        )
    }

    /// Downloads, checks and decrypts the attachment of `message_id` into `out_path` (default:
    /// `media/<file name>` in the client's home directory); returns where the file is. The file
    /// appears only once all of it checked out.
    pub(crate) async fn download(
        &self,
        message_id: String,
        out_path: Option<String>,
        progress: Option<Arc<dyn TransferListener>>,
    ) -> Result<String> {
        // A message's attachment, or a status's (`message_id` is then the status id).
        let (key, attachment) = {
            let status_key = mdb::status_key(&message_id);
            let found = self.store.read(|c| {
                Ok(match mdb::attachment(c, &message_id)? {
                    Some(a) => Some((message_id.clone(), a)),
                    None => mdb::attachment(c, &status_key)?.map(|a| (status_key.clone(), a)),
                })
            })?;
            found.ok_or_else(|| ClientError::NotFound {
                message: "that message has no attachment here".to_owned(),
            })?
        };
        let out = match out_path {
            Some(path) => PathBuf::from(path),
            None => {
                let dir = self.home_dir.join("media");
                tokio::fs::create_dir_all(&dir).await?;
                unused_name(&dir, &safe_file_name(&attachment.file_name, "file"))
            }
        };
        // A temporary name of its own beside the target, so two downloads never share one.
        let partial = out.with_file_name(format!(
            ".{}.{}.part",
            out.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            content::new_id()
        ));
        let result = self
            .download_to(
                &attachment,
                &partial,
                Progress::new(progress, attachment.size),
            )
            .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        tokio::fs::rename(&partial, &out).await?;
        let shown = out.to_string_lossy().into_owned();
        self.store
            .write(|tx| tx.set_attachment_path(&key, &shown))?;
        Ok(shown)
    }

    /// Encrypts and uploads the file at `path` (resuming an unfinished upload of it); returns
    /// the attachment describing it.
    pub(crate) async fn upload_file(
        &self,
        path: &Path,
        listener: Option<Arc<dyn TransferListener>>,
    ) -> Result<Attachment> {
        let path = std::fs::canonicalize(path)
            .map_err(|e| invalid(format!("cannot read the file: {e}")))?;
        let meta = tokio::fs::metadata(&path).await?;
        if !meta.is_file() {
            return Err(invalid("not a file"));
        }
        let size = meta.len();
        if size > MAX_ATTACHMENT {
            return Err(invalid("the file is over 4 GiB"));
        }
        let modified_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut head = [0u8; 16];
        let head_len = tokio::fs::File::open(&path).await?.read(&mut head).await?;
        let (kind, mime_type) = kind_of(&path, &head[..head_len]);
        let stamp = FileStamp {
            path: path.to_string_lossy().into_owned(),
            size,
            modified_ms,
            file_id: file_id(&meta),
        };
        let thumbnail = if kind == media::MediaKind::Image {
            let path = path.clone();
            tokio::task::spawn_blocking(move || crate::thumbnail::thumbnail_of_file(&path))
                .await
                .ok()
                .flatten()
        } else {
            None
        };

        let mut progress = Progress::new(listener, ciphertext_len(size));
        let (upload, committed, complete) = self.upload_slot(&stamp, kind, size).await?;
        let key = BlobKey::from_bytes(&upload.key).map_err(|e| invalid(e.to_string()))?;
        let total = ciphertext_len(size);
        let digest = if complete {
            seal_file(
                path.clone(),
                key.clone(),
                size,
                String::new(),
                total,
                None,
                progress,
            )
            .await?
        } else {
            progress.at(committed);
            let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
            let sealing = tokio::spawn(seal_file(
                path.clone(),
                key.clone(),
                size,
                upload.blob_id.clone(),
                committed,
                Some(tx),
                progress,
            ));
            // Not retried: a second attempt resumes from what the server stored instead.
            let token = self.gateway.access_token().await?;
            let sent = self
                .gateway
                .api()
                .upload(&token, tokio_stream::wrappers::ReceiverStream::new(rx))
                .await;
            let sealed = sealing.await.map_err(|_| ClientError::Server {
                message: "encrypting the file stopped unexpectedly".to_owned(),
            })?;
            let answer = sent.map_err(ClientError::from)?;
            let digest = sealed?;
            if !answer.complete {
                return Err(ClientError::Network {
                    message: "the upload was cut short; send the file again to resume".to_owned(),
                });
            }
            digest
        };
        self.store.write(|tx| tx.forget_upload(&upload.blob_id))?;
        Ok(Attachment {
            blob_id: upload.blob_id,
            capability: upload.capability,
            key: key.as_bytes().to_vec(),
            digest: digest.to_vec(),
            size,
            kind: kind as i32,
            mime_type,
            file_name: safe_file_name(
                &path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                "file",
            ),
            thumbnail: thumbnail
                .as_ref()
                .map(|t| t.jpeg.clone())
                .unwrap_or_default(),
            width: thumbnail.as_ref().map_or(0, |t| t.width),
            height: thumbnail.as_ref().map_or(0, |t| t.height),
        })
    }

    /// The upload to continue for `stamp` (or a new one) and how many bytes the server has.
    async fn upload_slot(
        &self,
        stamp: &FileStamp,
        kind: media::MediaKind,
        size: u64,
    ) -> Result<(PendingUpload, u64, bool)> {
        let now = self.clock.now_ms();
        self.store.write(|tx| tx.prune_uploads(now))?;
        let pending = self
            .store
            .read(|c| mdb::pending_upload(c, stamp))?
            .filter(|p| p.kind == kind as i32);
        if let Some(pending) = pending {
            let request = media::GetUploadRequest {
                blob_id: pending.blob_id.clone(),
            };
            let answer = self
                .gateway
                .unary_status(Api::get_upload, request.clone())
                .await?;
            match answer {
                Ok(state) if state.size == ciphertext_len(size) => {
                    return Ok((pending, state.committed_bytes, state.complete));
                }
                // Not what this file makes: give it up, freeing its slot, and start over.
                Ok(_) => {
                    let aborted = self
                        .gateway
                        .unary_status(Api::abort_upload, request)
                        .await?;
                    if let Err(status) = aborted {
                        tracing::debug!(code = ?status.code(), "could not abort an old upload");
                    }
                }
                // Swept: start over.
                Err(status) if status.code() == tonic::Code::NotFound => {}
                Err(status) => return Err(status.into()),
            }
            self.store.write(|tx| tx.forget_upload(&pending.blob_id))?;
        }
        let request = media::CreateUploadRequest {
            kind: kind as i32,
            size: ciphertext_len(size),
            // Streamed through the service: resumable, and the same on every backend.
            direct: false,
        };
        let created = self.gateway.unary(Api::create_upload, request).await?;
        let upload = PendingUpload {
            blob_id: created.blob_id,
            capability: created.capability,
            key: BlobKey::random().as_bytes().to_vec(),
            kind: kind as i32,
            upload_expires_ms: created.upload_expires_ms,
        };
        self.store.write(|tx| tx.save_upload(stamp, &upload))?;
        Ok((upload, 0, false))
    }

    /// Streams the blob of `attachment` into `partial`, checking it on the way.
    async fn download_to(
        &self,
        attachment: &Attachment,
        partial: &Path,
        mut progress: Progress,
    ) -> Result<()> {
        let key = BlobKey::from_bytes(&attachment.key).map_err(damaged)?;
        let digest: [u8; 32] = attachment
            .digest
            .as_slice()
            .try_into()
            .map_err(|_| damaged("bad digest"))?;
        let mut opener = Opener::new(&key, attachment.size, digest).map_err(damaged)?;
        let request = media::DownloadRequest {
            blob_id: attachment.blob_id.clone(),
            capability: attachment.capability.clone(),
            offset: 0,
        };
        let mut stream = self.gateway.unary(Api::download, request).await?;
        let file = tokio::fs::File::create(partial).await?;
        let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, file);
        let mut written = 0u64;
        progress.at(0);
        while let Some(message) = stream.message().await.map_err(ClientError::from)? {
            let plaintext = opener.feed(&message.data).map_err(damaged)?;
            out.write_all(&plaintext).await?;
            written += plaintext.len() as u64;
            progress.at(written);
        }
        opener.finish().map_err(damaged)?;
        out.flush().await?;
        out.get_ref().sync_all().await?;
        Ok(())
    }
}

/// A media message's body: the attachment, with `caption` as its text.
fn media_body(caption: String, attachment: Attachment) -> Body {
    Body::Text(content::Text {
        text: caption,
        quoted_message_id: String::new(),
        forwarded: false,
        attachment: Some(attachment),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_made_safe() {
        assert_eq!(safe_file_name("photo.jpg", "x"), "photo.jpg");
        assert_eq!(safe_file_name("../../etc/passwd", "x"), "passwd");
        assert_eq!(safe_file_name("a\\b\\..\\c.txt", "x"), "c.txt");
        assert_eq!(safe_file_name(".bashrc", "x"), "bashrc");
        assert_eq!(safe_file_name("..", "x"), "x");
        assert_eq!(safe_file_name("", "fallback"), "fallback");
        assert_eq!(safe_file_name("bad\u{0}\nname", "x"), "badname");
    }

    #[test]
    fn kinds_come_from_content_for_pictures_and_names_otherwise() {
        let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        assert_eq!(kind_of(Path::new("x.bin"), &png).0, media::MediaKind::Image);
        assert_eq!(
            kind_of(Path::new("clip.MP4"), b"....").0,
            media::MediaKind::Video
        );
        assert_eq!(
            kind_of(Path::new("fake.jpg"), b"hello").0,
            media::MediaKind::File
        );
    }
}
