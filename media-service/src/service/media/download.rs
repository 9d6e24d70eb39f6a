//! Downloads: `Download` streams a complete blob (from an offset, to resume), `GetDownloadUrl`
//! presigns one on S3; both need the blob's capability, or to be its uploader.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use juntos_proto::meta::Caller;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::{MediaService, check_blob_id, ms};
use crate::blob::ByteChunks;
use crate::error::{Error, Result};
use crate::store::BlobRecord;

/// How long a presigned download URL works.
pub const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);

/// A download's body.
pub struct Download {
    pub size: u64,
    pub body: ByteChunks,
}

impl MediaService {
    /// The caller's complete blob, if the capability opens it (or the caller uploaded it).
    async fn fetchable(
        &self,
        caller: &Caller,
        blob_id: &str,
        capability: &[u8],
    ) -> Result<BlobRecord> {
        let blob_id = check_blob_id(blob_id)?;
        let record = match self.index.blob(blob_id).await? {
            Some(record) if record.complete() && record.expires_ms > self.clock.now_ms() => record,
            _ => return Err(Error::NoSuchBlob),
        };
        let opens = bool::from(
            Sha256::digest(capability)
                .as_slice()
                .ct_eq(&record.capability_hash),
        );
        if opens || record.owner_user_id == caller.user_id {
            Ok(record)
        } else {
            Err(Error::NoCapability)
        }
    }

    /// `Download`.
    pub async fn download(
        &self,
        caller: &Caller,
        blob_id: &str,
        capability: &[u8],
        offset: u64,
    ) -> Result<Download> {
        let record = self.fetchable(caller, blob_id, capability).await?;
        if offset > record.size {
            return Err(Error::InvalidMedia("the offset is beyond the blob"));
        }
        let read = self.blobs.get(&record.blob_id, offset, None).await?;
        Ok(Download {
            size: read.size,
            body: read.body,
        })
    }

    /// `GetDownloadUrl`: the URL and when it stops working.
    pub async fn download_url(
        &self,
        caller: &Caller,
        blob_id: &str,
        capability: &[u8],
    ) -> Result<(String, i64)> {
        let record = self.fetchable(caller, blob_id, capability).await?;
        let url = self
            .blobs
            .presign_get(&record.blob_id, DOWNLOAD_URL_TTL)
            .await?
            .ok_or(Error::NoDirectUrls)?;
        let expires = SystemTime::now()
            .checked_add(DOWNLOAD_URL_TTL)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(i64::MAX, ms);
        Ok((url.url, expires))
    }
}

#[cfg(test)]
mod tests {
    use juntos_proto::error::reason;
    use tonic::Code;

    use crate::service::media::test_support::{Fixture, bytes, caller, no_such_blob, refused};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_folder_has_no_download_urls() {
        let f = Fixture::new().await;
        let new = f.uploaded("alice", &bytes(1_000)).await;
        refused(
            f.service
                .download_url(&caller("bob"), &new.blob_id, &new.capability)
                .await,
            Code::FailedPrecondition,
            reason::NO_DIRECT_URLS,
        );
        refused(
            f.service
                .download_url(&caller("bob"), &new.blob_id, b"wrong")
                .await,
            Code::PermissionDenied,
            reason::NO_CAPABILITY,
        );
        refused(
            f.service.download_url(&caller("bob"), "../x", &[]).await,
            Code::InvalidArgument,
            reason::INVALID_MEDIA,
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn downloads_need_the_capability_unless_you_uploaded_it() {
        let f = Fixture::new().await;
        let data = bytes(70_000);
        let new = f.uploaded("alice", &data).await;

        let (_, mine) = f
            .fetch("alice", &new.blob_id, &[], 0)
            .await
            .expect("the uploader needs no capability");
        assert!(mine == data);
        let (_, theirs) = f
            .fetch("bob", &new.blob_id, &new.capability, 0)
            .await
            .expect("the capability opens it");
        assert!(theirs == data);

        let mut wrong = new.capability.clone();
        wrong[31] ^= 1;
        for capability in [
            wrong.as_slice(),
            &[],
            &new.capability[..31],
            b"x".as_slice(),
        ] {
            refused(
                f.fetch("bob", &new.blob_id, capability, 0).await,
                Code::PermissionDenied,
                reason::NO_CAPABILITY,
            );
        }

        let made_up = format!("m-{}", "0123456789abcdef".repeat(2));
        for who in ["alice", "bob"] {
            no_such_blob(f.fetch(who, &made_up, &new.capability, 0).await);
        }
        let upper = format!("m-{}", "ABCDEF0123456789".repeat(2));
        for bad in ["../x", "", "m-", &upper, &format!("{}0", new.blob_id)] {
            refused(
                f.fetch("alice", bad, &[], 0).await,
                Code::InvalidArgument,
                reason::INVALID_MEDIA,
            );
            refused(
                f.progress("alice", bad).await,
                Code::InvalidArgument,
                reason::INVALID_MEDIA,
            );
        }
    }
}
