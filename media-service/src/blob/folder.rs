//! The embedded blob backend: one file per blob, named by its key, in one folder.
//!
//! A put writes `.tmp-<random>` in the same folder, fsyncs it, renames it over the key's name
//! and fsyncs the folder, so a reader or a crash sees the old blob or the new one, never part of
//! one. Keys are validated before they become file names; temporary names start with `.` and
//! are therefore never keys, so `list` cannot report them and leftovers from a crash are removed
//! on open.
//!
//! A resumable upload is a hidden file `.up-<handle>` written part by part at the part's offset
//! (each part fsynced before it is answered), then truncated to the blob's size, fsynced and
//! renamed over the key's name. Upload files survive a restart (the upload goes on); whoever
//! began one aborts it when it is abandoned.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use super::{
    BlobError, BlobInfo, BlobRead, BlobStore, ByteChunks, PresignedUrl, READ_CHUNK, exact_part,
    validate_key,
};

const TMP_PREFIX: &str = ".tmp-";
const UPLOAD_PREFIX: &str = ".up-";

/// Blobs as files in a folder (`<data-dir>/blobs` in `juntos all`).
pub struct FolderBlobStore {
    dir: PathBuf,
    part_size: u64,
}

impl FolderBlobStore {
    /// Opens (creating it if needed) the folder, and removes temporary files a crash left.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let dir = dir.into();
        tokio::fs::create_dir_all(&dir).await?;
        let mut entries = tokio::fs::read_dir(&dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                tokio::fs::remove_file(entry.path()).await?;
            }
        }
        Ok(Self {
            dir,
            part_size: super::DEFAULT_PART_SIZE as u64,
        })
    }

    /// Announces parts of `part_size` bytes (at least 1) for resumable uploads (each upload's
    /// caller keeps the part size it began with).
    pub fn with_part_size(mut self, part_size: u64) -> Self {
        self.part_size = part_size.max(1);
        self
    }

    /// The file of `key`: only a valid key ever becomes part of a path.
    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        Ok(self.dir.join(validate_key(key)?))
    }

    /// The file of upload `handle`: 16 hex digits this store made, nothing else.
    fn upload_path(&self, handle: &str) -> Result<PathBuf, BlobError> {
        if handle.len() != 16 || !handle.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BlobError::NotFound);
        }
        Ok(self.dir.join(format!("{UPLOAD_PREFIX}{handle}")))
    }
}

/// A temporary file that is removed on drop unless it was renamed into place, so a failed or
/// cancelled put leaves nothing behind.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            // Blocking, but one unlink; drop cannot await.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

fn not_found_as(e: std::io::Error) -> BlobError {
    if e.kind() == std::io::ErrorKind::NotFound {
        BlobError::NotFound
    } else {
        BlobError::Io(e)
    }
}

#[async_trait]
impl BlobStore for FolderBlobStore {
    async fn put(&self, key: &str, mut body: ByteChunks) -> Result<u64, BlobError> {
        let target = self.path(key)?;
        let mut tmp = TempFile {
            path: self
                .dir
                .join(format!("{TMP_PREFIX}{:016x}", rand::random::<u64>())),
            armed: true,
        };
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp.path)
            .await?;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            file.write_all(&chunk).await?;
            size += chunk.len() as u64;
        }
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp.path, &target).await?;
        tmp.armed = false;
        sync_dir(&self.dir).await?;
        Ok(size)
    }

    async fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<BlobRead, BlobError> {
        let path = self.path(key)?;
        // The open file stays the blob that was read even if a put replaces it meanwhile.
        let mut file = tokio::fs::File::open(&path).await.map_err(not_found_as)?;
        let size = file.metadata().await?.len();
        if offset > size {
            return Err(BlobError::InvalidRange { offset, size });
        }
        file.seek(SeekFrom::Start(offset)).await?;
        let remaining = len.map_or(size - offset, |len| len.min(size - offset));
        let body =
            futures_util::stream::unfold((file, remaining), |(mut file, remaining)| async move {
                if remaining == 0 {
                    return None;
                }
                let want = usize::try_from(remaining).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
                let mut buf = vec![0; want];
                match file.read(&mut buf).await {
                    Ok(0) => Some((Err(std::io::ErrorKind::UnexpectedEof.into()), (file, 0))),
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(Bytes::from(buf)), (file, remaining - n as u64)))
                    }
                    Err(e) => Some((Err(e), (file, 0))),
                }
            });
        Ok(BlobRead {
            size,
            body: body.boxed(),
        })
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.path(key)?)
            .await
            .map_err(not_found_as)
        {
            Ok(meta) => Ok(Some(meta.len())),
            Err(BlobError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(key)?)
            .await
            .map_err(not_found_as)
        {
            Ok(()) | Err(BlobError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<BlobInfo>, BlobError> {
        let mut keys = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            if let Some(name) = entry.file_name().to_str()
                && validate_key(name).is_ok()
                && after.is_none_or(|after| name > after)
            {
                keys.push(name.to_owned());
            }
        }
        keys.sort_unstable();
        keys.truncate(limit);
        let mut page = Vec::with_capacity(keys.len());
        for key in keys {
            // A blob deleted since the directory was read is simply not listed.
            let meta = match tokio::fs::metadata(self.dir.join(&key)).await {
                Ok(meta) if meta.is_file() => meta,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            page.push(BlobInfo {
                key,
                size: meta.len(),
                modified: meta.modified()?,
            });
        }
        Ok(page)
    }

    fn part_size(&self) -> u64 {
        self.part_size
    }

    async fn begin_upload(&self, key: &str) -> Result<String, BlobError> {
        validate_key(key)?;
        let handle = format!("{:016x}", rand::random::<u64>());
        tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.upload_path(&handle)?)
            .await?
            .sync_all()
            .await?;
        sync_dir(&self.dir).await?;
        Ok(handle)
    }

    async fn put_part(
        &self,
        key: &str,
        upload: &str,
        part_size: u64,
        number: u32,
        len: u64,
        body: ByteChunks,
    ) -> Result<(), BlobError> {
        validate_key(key)?;
        if number == 0 || len > part_size {
            return Err(BlobError::Upload(format!(
                "no part {number} of {len} bytes"
            )));
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(self.upload_path(upload)?)
            .await
            .map_err(not_found_as)?;
        file.seek(SeekFrom::Start(u64::from(number - 1) * part_size))
            .await?;
        let mut part = exact_part(body, number, len);
        while let Some(chunk) = part.next().await {
            file.write_all(&chunk?).await?;
        }
        file.flush().await?;
        file.sync_data().await?;
        Ok(())
    }

    async fn finish_upload(
        &self,
        key: &str,
        upload: &str,
        _part_size: u64,
        size: u64,
    ) -> Result<(), BlobError> {
        let target = self.path(key)?;
        let path = self.upload_path(upload)?;
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await
            .map_err(not_found_as)?;
        let stored = file.metadata().await?.len();
        if stored < size {
            return Err(BlobError::Upload(format!(
                "{stored} of {size} bytes were stored"
            )));
        }
        // A part written again after a shorter retry of the last one can leave bytes beyond.
        file.set_len(size).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&path, &target).await?;
        sync_dir(&self.dir).await?;
        Ok(())
    }

    async fn abort_upload(&self, key: &str, upload: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        let Ok(path) = self.upload_path(upload) else {
            return Ok(());
        };
        match tokio::fs::remove_file(path).await.map_err(not_found_as) {
            Ok(()) | Err(BlobError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn presign_get(&self, key: &str, _: Duration) -> Result<Option<PresignedUrl>, BlobError> {
        validate_key(key)?;
        Ok(None)
    }

    async fn presign_put(
        &self,
        key: &str,
        _: u64,
        _: Duration,
    ) -> Result<Option<PresignedUrl>, BlobError> {
        validate_key(key)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::FolderBlobStore;
    use crate::blob::suite;

    async fn fresh() -> (tempfile::TempDir, FolderBlobStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FolderBlobStore::open(dir.path().join("blobs"))
            .await
            .expect("open");
        (dir, store)
    }

    suite::blob_store_suite!(fresh().await);

    #[tokio::test]
    async fn failed_and_cancelled_puts_leave_no_temporary_file() {
        let (dir, store) = fresh().await;
        suite::interrupted_put_leaves_nothing(&store).await;
        suite::cancelled_put_leaves_nothing(&store).await;
        let names: Vec<_> = std::fs::read_dir(dir.path().join("blobs"))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(names.is_empty(), "left behind: {names:?}");
    }

    #[tokio::test]
    async fn open_removes_leftover_temporary_files_and_lists_only_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let blobs = dir.path().join("blobs");
        std::fs::create_dir_all(&blobs).expect("mkdir");
        std::fs::write(blobs.join(".tmp-0123"), b"half").expect("write");
        std::fs::write(blobs.join("Not-A-Key.txt"), b"x").expect("write");
        let store = FolderBlobStore::open(&blobs).await.expect("open");
        assert!(!blobs.join(".tmp-0123").exists());
        use crate::blob::BlobStore as _;
        assert!(store.list(None, 10).await.expect("list").is_empty());
    }
}
