//! Profile photos: `SetProfilePhoto` (read within a cap, re-made by [`crate::photo`] on a blocking
//! thread, stored as two JPEGs), `GetProfilePhoto` (for the owner, and for whoever the owner's
//! profile visibility lets see it, as login answers), `DeleteProfilePhoto`.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt as _};
use juntos_proto::meta::Caller;

use super::{MediaService, next_data, random_hex};
use crate::error::{Error, Result};
use crate::photo::{self, MAX_PHOTO_BYTES};
use crate::store::ProfilePhotoRecord;

/// Who may see whose profile (login's `VisibleTo`, aspect PROFILE).
#[async_trait]
pub trait ProfileVisibility: Send + Sync {
    /// Whether `viewer` may see `owner`'s profile (never asked for `viewer == owner`).
    async fn may_see(&self, viewer: &str, owner: &str) -> Result<bool, String>;
}

impl MediaService {
    /// `SetProfilePhoto`: `data` is the image file, in chunks.
    pub async fn set_profile_photo(
        &self,
        caller: &Caller,
        mut data: BoxStream<'_, Result<Bytes, tonic::Status>>,
    ) -> Result<String, tonic::Status> {
        // At most PHOTO_DECODERS photos are read (10 MiB each) and decoded at once.
        let permit = self
            .decoders
            .acquire()
            .await
            .map_err(|_| tonic::Status::unavailable("shutting down"))?;
        let mut image = Vec::new();
        while let Some(chunk) = next_data(&mut data).await? {
            if image.len() + chunk.len() > MAX_PHOTO_BYTES {
                return Err(Error::MediaTooLarge {
                    limit: MAX_PHOTO_BYTES as u64,
                }
                .into());
            }
            image.extend_from_slice(&chunk);
        }
        let processed = tokio::task::spawn_blocking(move || photo::process_profile_photo(&image))
            .await
            .map_err(|_| tonic::Status::internal("the photo decoder failed"))?
            .map_err(|e| Error::InvalidPhoto(e.to_string()))?;
        drop(permit);
        let version = random_hex(8);
        let record = ProfilePhotoRecord {
            user_id: caller.user_id.clone(),
            version: version.clone(),
            large_key: format!("pl-{}", random_hex(16)),
            small_key: format!("ps-{}", random_hex(16)),
            updated_ms: self.clock.now_ms(),
        };
        for (key, jpeg) in [
            (&record.large_key, processed.large),
            (&record.small_key, processed.small),
        ] {
            let body = futures_util::stream::iter([Ok(Bytes::from(jpeg))]).boxed();
            self.blobs.put(key, body).await.map_err(Error::from)?;
        }
        let previous = self
            .index
            .set_profile_photo(record)
            .await
            .map_err(Error::from)?;
        if let Some(previous) = previous {
            self.delete_photo_blobs(&previous).await;
        }
        Ok(version)
    }

    async fn delete_photo_blobs(&self, photo: &ProfilePhotoRecord) {
        for key in [&photo.large_key, &photo.small_key] {
            if let Err(e) = self.blobs.delete(key).await {
                // The orphan sweep removes it later.
                tracing::warn!(error = %e, "deleting an old profile photo failed");
            }
        }
    }

    /// `GetProfilePhoto`: the JPEG and its version.
    pub async fn profile_photo(
        &self,
        caller: &Caller,
        user_id: &str,
        small: bool,
    ) -> Result<(Vec<u8>, String)> {
        if user_id.is_empty() || user_id.len() > 128 {
            return Err(Error::NoSuchPhoto);
        }
        if user_id != caller.user_id
            && !self
                .visibility
                .may_see(&caller.user_id, user_id)
                .await
                .map_err(Error::Login)?
        {
            return Err(Error::NoSuchPhoto);
        }
        let photo = self
            .index
            .profile_photo(user_id)
            .await?
            .ok_or(Error::NoSuchPhoto)?;
        let key = if small {
            &photo.small_key
        } else {
            &photo.large_key
        };
        let mut read = match self.blobs.get(key, 0, None).await {
            Ok(read) => read,
            Err(crate::BlobError::NotFound) => return Err(Error::NoSuchPhoto),
            Err(e) => return Err(e.into()),
        };
        // Our own JPEGs: a few hundred KiB at most.
        let mut jpeg = Vec::with_capacity(usize::try_from(read.size).unwrap_or(0).min(4 << 20));
        while let Some(chunk) = read.body.next().await {
            jpeg.extend_from_slice(&chunk.map_err(crate::BlobError::from)?);
        }
        Ok((jpeg, photo.version))
    }

    /// `DeleteProfilePhoto`.
    pub async fn delete_profile_photo(&self, caller: &Caller) -> Result<()> {
        if let Some(previous) = self.index.delete_profile_photo(&caller.user_id).await? {
            self.delete_photo_blobs(&previous).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use juntos_proto::error::reason;
    use tonic::Code;

    use crate::photo;
    use crate::service::media::test_support::{
        Fixture, MIB, bytes, caller, chunks, png, refused, within,
    };

    fn assert_square_jpeg(jpeg: &[u8], side: u32) {
        assert_eq!(
            image::guess_format(jpeg).expect("a format"),
            image::ImageFormat::Jpeg
        );
        let image = image::load_from_memory(jpeg).expect("decode jpeg");
        assert_eq!((image.width(), image.height()), (side, side));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn profile_photos_are_set_read_replaced_and_deleted() {
        let f = Fixture::new().await;
        f.visibility.allow("bob", "alice");

        let version = f.set_photo("alice", &png(300, 200)).await.expect("set");
        assert!(!version.is_empty());
        let first_files = f.files();
        assert_eq!(first_files.len(), 2, "{first_files:?}");

        let (large, v) = f.photo("alice", "alice", false).await.expect("large");
        assert_eq!(v, version);
        assert_square_jpeg(&large, photo::LARGE_SIDE);
        assert_eq!(photo::LARGE_SIDE, 640);
        let (small, v) = f.photo("alice", "alice", true).await.expect("small");
        assert_eq!(v, version);
        assert_square_jpeg(&small, photo::SMALL_SIDE);
        assert_eq!(photo::SMALL_SIDE, 96);

        let (seen, v) = f
            .photo("bob", "alice", false)
            .await
            .expect("an allowed viewer");
        assert_eq!(v, version);
        assert!(seen == large);
        f.photo("bob", "alice", true)
            .await
            .expect("an allowed viewer, small");
        for (viewer, owner) in [("carol", "alice"), ("alice", "bob"), ("bob", "carol")] {
            refused(
                f.photo(viewer, owner, false).await,
                Code::NotFound,
                reason::NO_SUCH_PHOTO,
            );
        }
        refused(
            f.photo("bob", "bob", false).await,
            Code::NotFound,
            reason::NO_SUCH_PHOTO,
        );
        refused(
            f.photo("alice", "", false).await,
            Code::NotFound,
            reason::NO_SUCH_PHOTO,
        );

        // A new photo replaces the old one's files.
        let second = f.set_photo("alice", &png(200, 300)).await.expect("replace");
        assert_ne!(second, version);
        let second_files = f.files();
        assert_eq!(second_files.len(), 2, "{second_files:?}");
        for old in &first_files {
            assert!(!second_files.contains(old), "{old} is still there");
        }
        let (_, v) = f.photo("bob", "alice", true).await.expect("the new photo");
        assert_eq!(v, second);

        // Not an image: refused, and nothing is stored.
        let text = b"hello, this is not an image at all\n".repeat(100);
        refused(
            f.set_photo("alice", &text).await,
            Code::InvalidArgument,
            reason::INVALID_PHOTO,
        );
        refused(
            f.set_photo("alice", &[]).await,
            Code::InvalidArgument,
            reason::INVALID_PHOTO,
        );
        let mut cut = png(300, 200);
        cut.truncate(cut.len() / 2);
        refused(
            f.set_photo("alice", &cut).await,
            Code::InvalidArgument,
            reason::INVALID_PHOTO,
        );
        assert_eq!(f.files(), second_files);
        let (_, v) = f.photo("alice", "alice", false).await.expect("unchanged");
        assert_eq!(v, second);

        within(
            "delete_profile_photo",
            f.service.delete_profile_photo(&caller("alice")),
        )
        .await
        .expect("delete");
        for (viewer, small) in [("alice", false), ("alice", true), ("bob", false)] {
            refused(
                f.photo(viewer, "alice", small).await,
                Code::NotFound,
                reason::NO_SUCH_PHOTO,
            );
        }
        assert!(f.files().is_empty(), "{:?}", f.files());
        within(
            "delete_profile_photo",
            f.service.delete_profile_photo(&caller("alice")),
        )
        .await
        .expect("deleting no photo is fine");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_photo_over_ten_mib_is_refused_while_streaming() {
        let f = Fixture::new().await;
        let big = bytes(photo::MAX_PHOTO_BYTES + 1);
        refused(
            within(
                "set_profile_photo",
                f.service
                    .set_profile_photo(&caller("alice"), chunks(&big, MIB as usize)),
            )
            .await,
            Code::InvalidArgument,
            reason::MEDIA_TOO_LARGE,
        );
        assert!(f.files().is_empty(), "{:?}", f.files());
    }
}
