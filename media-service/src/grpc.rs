//! The tonic glue for `juntos.media.v1.Statuses`: unpack the request, take the caller from the
//! gateway's headers, call the service.

use std::sync::Arc;

use juntos_proto::media::v1::statuses_server::{Statuses, StatusesServer};
use juntos_proto::media::v1::{
    DeleteStatusRequest, DeleteStatusResponse, ListStatusesRequest, ListStatusesResponse,
    PostStatusRequest, PostStatusResponse, Status as WireStatus,
};
use juntos_proto::meta::Caller;
use tonic::{Request, Response, Status};

use crate::media::{MAX_STATUS_BLOBS, MediaService};
use crate::service::{MAX_AUDIENCE, MAX_STATUS_BYTES, MAX_USER_ID_LEN, StatusService};
use crate::store::StoredStatus;

/// Largest request message the status server decodes: a post of [`MAX_STATUS_BYTES`] with
/// [`MAX_AUDIENCE`] ids of [`MAX_USER_ID_LEN`] bytes (plus the poster's own, which is dropped),
/// each with its tag and length, and the client id, rounded up to 1 MiB. The gateway's
/// `--max-message-bytes` default (20 MiB) is above it.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

const _: () = assert!(
    MAX_STATUS_BYTES + 8 + (MAX_AUDIENCE + 1) * (MAX_USER_ID_LEN + 3) + MAX_STATUS_BLOBS * 40 + 128
        <= MAX_REQUEST_BYTES
);

/// The `juntos.media.v1.Statuses` server over `service`; a status's blobs get their expiry
/// from `media`.
pub fn server(
    service: Arc<StatusService>,
    media: Arc<MediaService>,
) -> StatusesServer<StatusesGrpc> {
    StatusesServer::new(StatusesGrpc { service, media })
        .max_decoding_message_size(MAX_REQUEST_BYTES)
}

/// `juntos.media.v1.Statuses`.
#[derive(Debug, Clone)]
pub struct StatusesGrpc {
    service: Arc<StatusService>,
    media: Arc<MediaService>,
}

fn to_proto(status: StoredStatus) -> WireStatus {
    WireStatus {
        status_id: status.status_id,
        poster_user_id: status.poster_user_id,
        poster_device_id: status.poster_device_id,
        client_status_id: status.client_status_id,
        ciphertext: status.ciphertext,
        posted_ms: status.posted_ms,
        expires_ms: status.expires_ms,
    }
}

#[tonic::async_trait]
impl Statuses for StatusesGrpc {
    async fn post_status(
        &self,
        request: Request<PostStatusRequest>,
    ) -> Result<Response<PostStatusResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        // Checked before the post, so a refused request posts nothing.
        crate::media::check_status_blobs(&request.media_blob_ids)?;
        let status = self
            .service
            .post(
                &caller,
                request.client_status_id,
                request.ciphertext,
                request.audience_user_ids,
            )
            .await?;
        // After the post (a retried post sets the same expiry again): the blobs go with it.
        self.media
            .expire_with_status(&caller, &request.media_blob_ids, status.expires_ms)
            .await?;
        Ok(Response::new(PostStatusResponse {
            status: Some(to_proto(status)),
        }))
    }

    async fn list_statuses(
        &self,
        request: Request<ListStatusesRequest>,
    ) -> Result<Response<ListStatusesResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        let page = self
            .service
            .list(&caller, &request.before_status_id, request.limit)
            .await?;
        Ok(Response::new(ListStatusesResponse {
            statuses: page.statuses.into_iter().map(to_proto).collect(),
            more: page.more,
        }))
    }

    async fn delete_status(
        &self,
        request: Request<DeleteStatusRequest>,
    ) -> Result<Response<DeleteStatusResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        self.service
            .delete(&caller, &request.into_inner().status_id)
            .await?;
        Ok(Response::new(DeleteStatusResponse {}))
    }
}
