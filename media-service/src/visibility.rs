//! [`ProfileVisibility`] answered by login-service (`LoginInternal.VisibleTo`, aspect PROFILE):
//! the same rule as names and "about" texts, asked fresh every time (a changed setting or
//! contact list applies at once).

use async_trait::async_trait;
use juntos_proto::login::v1::login_internal_client::LoginInternalClient;
use juntos_proto::login::v1::{Aspect, VisibleToRequest};
use tonic::transport::Channel;

use crate::service::media::ProfileVisibility;

/// Asks login-service over `channel`.
#[derive(Debug, Clone)]
pub struct LoginVisibility {
    client: LoginInternalClient<Channel>,
}

impl LoginVisibility {
    pub fn new(channel: Channel) -> Self {
        Self {
            client: LoginInternalClient::new(channel),
        }
    }
}

#[async_trait]
impl ProfileVisibility for LoginVisibility {
    async fn may_see(&self, viewer: &str, owner: &str) -> Result<bool, String> {
        let visible = self
            .client
            .clone()
            .visible_to(VisibleToRequest {
                viewer_user_id: viewer.to_owned(),
                owner_user_ids: vec![owner.to_owned()],
                aspect: Aspect::Profile as i32,
            })
            .await
            .map_err(|e| e.message().to_owned())?
            .into_inner();
        Ok(visible.owner_user_ids.iter().any(|id| id == owner))
    }
}
