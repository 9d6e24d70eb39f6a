//! The tonic glue for `juntos.media.v1.Statuses`: unpack the request, take the caller from the
//! gateway's headers, call the service.

use std::sync::Arc;

use juntos_proto::media::v1::statuses_server::Statuses;
use juntos_proto::media::v1::{
    DeleteStatusRequest, DeleteStatusResponse, ListStatusesRequest, ListStatusesResponse,
    PostStatusRequest, PostStatusResponse, Status as WireStatus,
};
use juntos_proto::meta::Caller;
use tonic::{Request, Response, Status};

use crate::service::media::{MediaService, check_status_blobs};
use crate::service::statuses::StatusService;
use crate::store::StoredStatus;

/// `juntos.media.v1.Statuses`.
#[derive(Debug, Clone)]
pub struct StatusesGrpc {
    pub(super) service: Arc<StatusService>,
    pub(super) media: Arc<MediaService>,
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
        check_status_blobs(&request.media_blob_ids)?;
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
