//! The tonic glue for `juntos.media.v1.Media`: unpack the request, take the caller from the
//! gateway's headers, call [`MediaService`].

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt as _};
use juntos_proto::media::v1::media_server::Media;
use juntos_proto::media::v1::{
    AbortUploadResponse, CompleteUploadRequest, CreateUploadRequest, CreateUploadResponse,
    DeleteProfilePhotoRequest, DeleteProfilePhotoResponse, DownloadRequest, DownloadResponse,
    GetDownloadUrlRequest, GetDownloadUrlResponse, GetProfilePhotoRequest, GetProfilePhotoResponse,
    GetUploadRequest, GetUploadResponse, HttpHeader, PhotoSize, SetProfilePhotoRequest,
    SetProfilePhotoResponse, UploadRequest, UploadResponse,
};
use juntos_proto::meta::Caller;
use tonic::{Request, Response, Status, Streaming};

use crate::service::media::{MediaService, UploadProgress};

/// `juntos.media.v1.Media`.
#[derive(Debug, Clone)]
pub struct MediaGrpc {
    pub(super) service: Arc<MediaService>,
}

fn upload_response(p: UploadProgress) -> UploadResponse {
    UploadResponse {
        committed_bytes: p.committed_bytes,
        complete: p.complete,
    }
}

#[tonic::async_trait]
impl Media for MediaGrpc {
    async fn create_upload(
        &self,
        request: Request<CreateUploadRequest>,
    ) -> Result<Response<CreateUploadResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        let upload = self
            .service
            .create_upload(&caller, request.kind, request.size, request.direct)
            .await?;
        let (upload_url, upload_headers) = match upload.url {
            Some(url) => (
                url.url,
                url.headers
                    .into_iter()
                    .map(|(name, value)| HttpHeader { name, value })
                    .collect(),
            ),
            None => (String::new(), Vec::new()),
        };
        Ok(Response::new(CreateUploadResponse {
            blob_id: upload.blob_id,
            capability: upload.capability,
            part_size: u32::try_from(upload.part_size).unwrap_or(u32::MAX),
            upload_expires_ms: upload.upload_expires_ms,
            upload_url,
            upload_headers,
        }))
    }

    async fn abort_upload(
        &self,
        request: Request<GetUploadRequest>,
    ) -> Result<Response<AbortUploadResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        self.service
            .abort_upload(&caller, &request.into_inner().blob_id)
            .await?;
        Ok(Response::new(AbortUploadResponse {}))
    }

    async fn complete_upload(
        &self,
        request: Request<CompleteUploadRequest>,
    ) -> Result<Response<UploadResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let progress = self
            .service
            .complete_direct(&caller, &request.into_inner().blob_id)
            .await?;
        Ok(Response::new(upload_response(progress)))
    }

    async fn upload(
        &self,
        request: Request<Streaming<UploadRequest>>,
    ) -> Result<Response<UploadResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let mut stream = request.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("an upload names its blob first"))??;
        let data = futures_util::stream::once(async move { Ok(Bytes::from(first.data)) })
            .chain(stream.map(|m| m.map(|m| Bytes::from(m.data))))
            .boxed();
        let progress = self
            .service
            .upload(&caller, &first.blob_id, first.offset, data)
            .await?;
        Ok(Response::new(upload_response(progress)))
    }

    async fn get_upload(
        &self,
        request: Request<GetUploadRequest>,
    ) -> Result<Response<GetUploadResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let p = self
            .service
            .upload_progress(&caller, &request.into_inner().blob_id)
            .await?;
        Ok(Response::new(GetUploadResponse {
            committed_bytes: p.committed_bytes,
            size: p.size,
            complete: p.complete,
        }))
    }

    type DownloadStream = BoxStream<'static, Result<DownloadResponse, Status>>;

    async fn download(
        &self,
        request: Request<DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        let download = self
            .service
            .download(
                &caller,
                &request.blob_id,
                &request.capability,
                request.offset,
            )
            .await?;
        let size = download.size;
        let head = futures_util::stream::once(async move {
            Ok(DownloadResponse {
                size,
                data: Vec::new(),
            })
        });
        let body = download.body.map(move |chunk| match chunk {
            Ok(data) => Ok(DownloadResponse {
                size,
                data: data.to_vec(),
            }),
            Err(e) => {
                tracing::error!(error = %e, "reading a blob failed");
                Err(Status::unavailable("reading the blob failed; resume later"))
            }
        });
        Ok(Response::new(head.chain(body).boxed()))
    }

    async fn get_download_url(
        &self,
        request: Request<GetDownloadUrlRequest>,
    ) -> Result<Response<GetDownloadUrlResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        let (url, expires_ms) = self
            .service
            .download_url(&caller, &request.blob_id, &request.capability)
            .await?;
        Ok(Response::new(GetDownloadUrlResponse { url, expires_ms }))
    }

    async fn set_profile_photo(
        &self,
        request: Request<Streaming<SetProfilePhotoRequest>>,
    ) -> Result<Response<SetProfilePhotoResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let data = request
            .into_inner()
            .map(|m| m.map(|m| Bytes::from(m.data)))
            .boxed();
        let version = self.service.set_profile_photo(&caller, data).await?;
        Ok(Response::new(SetProfilePhotoResponse { version }))
    }

    async fn get_profile_photo(
        &self,
        request: Request<GetProfilePhotoRequest>,
    ) -> Result<Response<GetProfilePhotoResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        let small = request.size() == PhotoSize::Small;
        let (jpeg, version) = self
            .service
            .profile_photo(&caller, &request.user_id, small)
            .await?;
        Ok(Response::new(GetProfilePhotoResponse { jpeg, version }))
    }

    async fn delete_profile_photo(
        &self,
        request: Request<DeleteProfilePhotoRequest>,
    ) -> Result<Response<DeleteProfilePhotoResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        self.service.delete_profile_photo(&caller).await?;
        Ok(Response::new(DeleteProfilePhotoResponse {}))
    }
}
