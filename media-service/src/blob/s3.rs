//! The shared blob backend: an S3 bucket (AWS, or any S3-compatible server at a custom endpoint,
//! with path-style addressing when it has no virtual-host DNS).
//!
//! A blob that fits in one part is one PutObject; a larger one is a multipart upload of
//! [`S3Config::part_size`] parts, completed only after the last part, so nothing is visible
//! under the key before then. A failed upload is aborted; a dropped one is aborted by a task the
//! drop spawns. The HTTP client is hyper 1 with rustls on ring, passed in, so the AWS crates add
//! no second HTTP or TLS stack and no second crypto provider.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;

use super::{
    BlobError, BlobInfo, BlobRead, BlobStore, ByteChunks, PresignedUrl, READ_CHUNK, exact_part,
    validate_key,
};

/// The default multipart part size (S3's minimum is 5 MiB for all but the last part).
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// The largest part size accepted (one part is held in memory per upload stream).
pub const MAX_PART_SIZE: u64 = 64 << 20;

/// Where the bucket is and how to reach it.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    /// `None` for AWS itself; else e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub region: String,
    /// `https://host/bucket/key` instead of `https://bucket.host/key`.
    pub path_style: bool,
    /// An access key id and secret; `None` uses the AWS default chain (environment, profile,
    /// web identity, instance metadata).
    pub credentials: Option<(String, String)>,
    /// Bytes per multipart part, and the largest blob sent as a single PutObject. Also the most
    /// a put holds in memory (plus one chunk).
    pub part_size: usize,
}

impl S3Config {
    /// A bucket on an S3-compatible server at `endpoint`, path-style, with static keys.
    pub fn custom(endpoint: &str, bucket: &str, access_key: &str, secret_key: &str) -> Self {
        Self {
            bucket: bucket.to_owned(),
            endpoint: Some(endpoint.to_owned()),
            region: "us-east-1".to_owned(),
            path_style: true,
            credentials: Some((access_key.to_owned(), secret_key.to_owned())),
            part_size: DEFAULT_PART_SIZE,
        }
    }
}

/// Blobs as objects in one S3 bucket, named by their keys.
pub struct S3BlobStore {
    client: Client,
    bucket: String,
    part_size: usize,
}

impl S3BlobStore {
    /// A store on `config`'s bucket. Nothing is sent until the first operation.
    pub async fn connect(config: S3Config) -> Self {
        use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client)
            .region(Region::new(config.region));
        if let Some(endpoint) = config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some((access_key, secret_key)) = config.credentials {
            loader = loader.credentials_provider(Credentials::new(
                access_key, secret_key, None, None, "juntos",
            ));
        }
        let sdk_config = loader.load().await;
        let s3_config = aws_sdk_s3::config::Builder::from(&sdk_config)
            .force_path_style(config.path_style)
            // Checksums only where S3 requires them: blobs carry the client's own digest, and
            // default checksums would be signed into presigned PUT URLs (and some S3-compatible
            // servers refuse the aws-chunked bodies they bring).
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .build();
        Self {
            client: Client::from_conf(s3_config),
            bucket: config.bucket,
            part_size: config.part_size.max(1),
        }
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        part: Bytes,
    ) -> Result<CompletedPart, BlobError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(s3_error("upload part"))?;
        Ok(CompletedPart::builder()
            .set_e_tag(out.e_tag)
            .part_number(number)
            .build())
    }

    /// Completes a multipart upload from its parts, in order.
    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), BlobError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(s3_error("complete multipart upload"))?;
        Ok(())
    }

    /// Uploads the rest of a multipart upload whose first part is in `buf`.
    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        body: &mut ByteChunks,
        buf: &mut BytesMut,
        mut ended: bool,
    ) -> Result<u64, BlobError> {
        let (mut parts, mut size) = (Vec::new(), 0u64);
        loop {
            let part = buf.split_to(buf.len().min(self.part_size)).freeze();
            size += part.len() as u64;
            let number = i32::try_from(parts.len() + 1).map_err(|_| BlobError::S3 {
                operation: "upload part",
                message: "too many parts".to_owned(),
            })?;
            parts.push(self.upload_part(key, upload_id, number, part).await?);
            if !ended {
                ended = fill(body, buf, self.part_size).await?;
            }
            if buf.is_empty() {
                break;
            }
        }
        self.complete(key, upload_id, parts).await?;
        Ok(size)
    }
}

/// Reads chunks into `buf` until it holds a part; returns whether the body ended.
async fn fill(
    body: &mut ByteChunks,
    buf: &mut BytesMut,
    part_size: usize,
) -> Result<bool, BlobError> {
    while buf.len() < part_size {
        match body.next().await {
            Some(chunk) => buf.extend_from_slice(&chunk?),
            None => return Ok(true),
        }
    }
    Ok(false)
}

/// Aborts a multipart upload that was neither completed nor aborted, when its put is dropped.
struct AbortOnDrop {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl AbortOnDrop {
    async fn abort(mut self) {
        self.armed = false;
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
        if let Err(e) = aborted {
            // The parts stay until a lifecycle rule or a sweep removes them; never visible.
            tracing::warn!(error = %DisplayErrorContext(&e), "abort multipart upload failed");
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if self.armed
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let rest = Self {
                client: self.client.clone(),
                bucket: std::mem::take(&mut self.bucket),
                key: std::mem::take(&mut self.key),
                upload_id: std::mem::take(&mut self.upload_id),
                armed: false,
            };
            runtime.spawn(rest.abort());
        }
    }
}

fn s3_error<E: std::error::Error + 'static>(
    operation: &'static str,
) -> impl FnOnce(E) -> BlobError {
    move |e| BlobError::S3 {
        operation,
        message: DisplayErrorContext(&e).to_string(),
    }
}

fn presigned(request: PresignedRequest) -> PresignedUrl {
    PresignedUrl {
        url: request.uri().to_owned(),
        headers: request
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
    }
}

fn presigning(expires_in: Duration) -> Result<PresigningConfig, BlobError> {
    PresigningConfig::expires_in(expires_in).map_err(s3_error("presign"))
}

/// Splits chunks larger than [`READ_CHUNK`], so readers see the same bound on every backend.
fn bounded(
    chunk: std::io::Result<Bytes>,
) -> futures_util::stream::Iter<std::vec::IntoIter<std::io::Result<Bytes>>> {
    let pieces = match chunk {
        Ok(mut bytes) => {
            let mut pieces = Vec::with_capacity(bytes.len().div_ceil(READ_CHUNK));
            while bytes.len() > READ_CHUNK {
                pieces.push(Ok(bytes.split_to(READ_CHUNK)));
            }
            pieces.push(Ok(bytes));
            pieces
        }
        Err(e) => vec![Err(e)],
    };
    futures_util::stream::iter(pieces)
}

/// The whole object's size from `Content-Range: bytes a-b/size`.
fn total_size(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.parse().ok()
}

fn length(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, mut body: ByteChunks) -> Result<u64, BlobError> {
        validate_key(key)?;
        let mut buf = BytesMut::new();
        let ended = fill(&mut body, &mut buf, self.part_size).await?;
        if ended && buf.len() <= self.part_size {
            let size = buf.len() as u64;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(buf.freeze()))
                .send()
                .await
                .map_err(s3_error("put object"))?;
            return Ok(size);
        }
        let upload_id = self.begin_upload(key).await?;
        let mut guard = AbortOnDrop {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id: upload_id.clone(),
            armed: true,
        };
        match self
            .upload_parts(key, &upload_id, &mut body, &mut buf, ended)
            .await
        {
            Ok(size) => {
                guard.armed = false;
                Ok(size)
            }
            Err(e) => {
                guard.abort().await;
                Err(e)
            }
        }
    }

    async fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<BlobRead, BlobError> {
        validate_key(key)?;
        let range = match len {
            // No HTTP range means zero bytes: the size check is all there is to do.
            Some(0) => {
                let size = self.head(key).await?.ok_or(BlobError::NotFound)?;
                if offset > size {
                    return Err(BlobError::InvalidRange { offset, size });
                }
                let body = futures_util::stream::empty().boxed();
                return Ok(BlobRead { size, body });
            }
            Some(len) => Some(format!("bytes={offset}-{}", offset.saturating_add(len - 1))),
            None if offset > 0 => Some(format!("bytes={offset}-")),
            None => None,
        };
        let sent = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range)
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                // Reading from the very end is an empty read, not an error.
                let size = self.head(key).await?.ok_or(BlobError::NotFound)?;
                if offset != size {
                    return Err(BlobError::InvalidRange { offset, size });
                }
                let body = futures_util::stream::empty().boxed();
                return Ok(BlobRead { size, body });
            }
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Err(BlobError::NotFound);
            }
            Err(e) => return Err(s3_error("get object")(e)),
        };
        let size = out
            .content_range()
            .and_then(total_size)
            .unwrap_or_else(|| length(out.content_length()));
        let body = futures_util::stream::unfold(out.body, |mut body| async move {
            let chunk = body.next().await?;
            Some((chunk.map_err(std::io::Error::other), body))
        })
        .flat_map(bounded);
        Ok(BlobRead {
            size,
            body: body.boxed(),
        })
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, BlobError> {
        validate_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(length(out.content_length()))),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(s3_error("head object")(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(s3_error("delete object"))?;
        Ok(())
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<BlobInfo>, BlobError> {
        // S3 answers at most 1,000 keys a request; a page is "up to" `limit` anyway.
        let max_keys = i32::try_from(limit.min(1000)).expect("at most 1000");
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_start_after(after.map(str::to_owned))
            .max_keys(max_keys)
            .send()
            .await
            .map_err(s3_error("list objects"))?;
        Ok(out
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|object| {
                let key = object.key.filter(|k| validate_key(k).is_ok())?;
                // Without a time the blob counts as new, so a sweeper leaves it for now.
                let modified = object
                    .last_modified
                    .and_then(|t| SystemTime::try_from(t).ok())
                    .unwrap_or_else(SystemTime::now);
                Some(BlobInfo {
                    key,
                    size: length(object.size),
                    modified,
                })
            })
            .collect())
    }

    fn part_size(&self) -> u64 {
        self.part_size as u64
    }

    async fn begin_upload(&self, key: &str) -> Result<String, BlobError> {
        validate_key(key)?;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(s3_error("create multipart upload"))?;
        created.upload_id.ok_or_else(|| BlobError::S3 {
            operation: "create multipart upload",
            message: "no upload id in the answer".to_owned(),
        })
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
        let number_i32 = i32::try_from(number)
            .ok()
            .filter(|n| (1..=10_000).contains(n));
        let (Some(number_i32), Ok(len_usize)) = (number_i32, usize::try_from(len)) else {
            return Err(BlobError::Upload(format!(
                "no part {number} of {len} bytes"
            )));
        };
        if len > part_size || part_size > MAX_PART_SIZE {
            return Err(BlobError::Upload(format!(
                "part {number} is over the part size"
            )));
        }
        // One part in memory: S3 wants its length and checksum before the body.
        let mut buf = BytesMut::with_capacity(len_usize);
        let mut part = exact_part(body, number, len);
        while let Some(chunk) = part.next().await {
            buf.extend_from_slice(&chunk?);
        }
        self.upload_part(key, upload, number_i32, buf.freeze())
            .await
            .map(drop)
    }

    async fn finish_upload(
        &self,
        key: &str,
        upload: &str,
        part_size: u64,
        size: u64,
    ) -> Result<(), BlobError> {
        validate_key(key)?;
        let want = super::part_count(size, part_size);
        let mut parts = Vec::new();
        let mut marker = None;
        // 1,000 parts a page; a server that never stops saying "truncated" is cut off.
        for _ in 0..=want / 1_000 + 1 {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| match e.as_service_error() {
                    Some(service) if service.meta().code() == Some("NoSuchUpload") => {
                        BlobError::NotFound
                    }
                    _ => s3_error("list parts")(e),
                })?;
            for part in out.parts.unwrap_or_default() {
                let number = part.part_number.and_then(|n| u64::try_from(n).ok());
                if let Some(number) = number.filter(|n| (1..=want).contains(n)) {
                    let expected = super::part_len(size, part_size, number);
                    if length(part.size) != expected {
                        return Err(BlobError::Upload(format!(
                            "part {number} has {} of {expected} bytes",
                            length(part.size)
                        )));
                    }
                    parts.push(
                        CompletedPart::builder()
                            .set_e_tag(part.e_tag)
                            .part_number(part.part_number.unwrap_or_default())
                            .build(),
                    );
                }
            }
            match out.next_part_number_marker {
                Some(next) if out.is_truncated == Some(true) => marker = Some(next),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.part_number);
        parts.dedup_by_key(|p| p.part_number);
        if parts.len() as u64 != want {
            return Err(BlobError::Upload(format!(
                "{} of {want} parts were stored",
                parts.len()
            )));
        }
        self.complete(key, upload, parts).await?;
        Ok(())
    }

    async fn abort_upload(&self, key: &str, upload: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.meta().code() == Some("NoSuchUpload")) =>
            {
                Ok(())
            }
            Err(e) => Err(s3_error("abort multipart upload")(e)),
        }
    }

    async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<Option<PresignedUrl>, BlobError> {
        validate_key(key)?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning(expires_in)?)
            .await
            .map_err(s3_error("presign get"))?;
        Ok(Some(presigned(request)))
    }

    async fn presign_put(
        &self,
        key: &str,
        len: u64,
        expires_in: Duration,
    ) -> Result<Option<PresignedUrl>, BlobError> {
        validate_key(key)?;
        let len = i64::try_from(len).map_err(|_| BlobError::Upload("too large".to_owned()))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            // Signed: S3 refuses a PUT of any other length.
            .content_length(len)
            .presigned(presigning(expires_in)?)
            .await
            .map_err(s3_error("presign put"))?;
        Ok(Some(presigned(request)))
    }
}

#[cfg(test)]
pub(crate) mod tests;
