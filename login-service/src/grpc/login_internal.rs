//! `juntos.login.v1.LoginInternal`: what the gateway (verification keys, revocations) and the
//! chat service (active devices, visibility) ask login; never routed from outside. Exercised
//! over the wire by the tests in [`super::login`] and [`super::directory`].

use std::sync::Arc;

use juntos_proto::login::v1::login_internal_server::LoginInternal;
use juntos_proto::login::v1::{
    ActiveDevicesRequest, ActiveDevicesResponse, GetVerificationKeysRequest,
    GetVerificationKeysResponse, ListRevocationsRequest, ListRevocationsResponse, VerificationKey,
    VisibleToRequest, VisibleToResponse,
};
use tonic::{Request, Response, Status};

use crate::service::LoginService;

/// `juntos.login.v1.LoginInternal` (for the gateway; never routed from outside).
#[derive(Debug, Clone)]
pub struct LoginInternalGrpc {
    pub(super) service: Arc<LoginService>,
}

#[tonic::async_trait]
impl LoginInternal for LoginInternalGrpc {
    async fn get_verification_keys(
        &self,
        _request: Request<GetVerificationKeysRequest>,
    ) -> Result<Response<GetVerificationKeysResponse>, Status> {
        let keys = self
            .service
            .verification_keys()
            .into_iter()
            .map(|(key_id, public_key)| VerificationKey {
                key_id,
                public_key: public_key.to_vec(),
            })
            .collect();
        Ok(Response::new(GetVerificationKeysResponse { keys }))
    }

    async fn list_revocations(
        &self,
        request: Request<ListRevocationsRequest>,
    ) -> Result<Response<ListRevocationsResponse>, Status> {
        let since_ms = request.into_inner().since_ms;
        Ok(Response::new(
            self.service.list_revocations(since_ms).await?,
        ))
    }

    async fn active_devices(
        &self,
        request: Request<ActiveDevicesRequest>,
    ) -> Result<Response<ActiveDevicesResponse>, Status> {
        let user_ids = request.into_inner().user_ids;
        Ok(Response::new(self.service.active_devices(user_ids).await?))
    }

    async fn visible_to(
        &self,
        request: Request<VisibleToRequest>,
    ) -> Result<Response<VisibleToResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(
            self.service
                .visible_to(
                    &request.viewer_user_id,
                    &request.owner_user_ids,
                    request.aspect,
                )
                .await?,
        ))
    }
}
