//! The tonic glue for `juntos.chat.v1.Chat` (Send, Connect, Sync, Ack, GetPresence): unpack the
//! request, take the caller from the gateway's headers, call the service.

use std::sync::Arc;

use juntos_proto::chat::v1::chat_server::Chat;
use juntos_proto::chat::v1::{
    AckRequest, AckResponse, ClientFrame, GetPresenceRequest, GetPresenceResponse, SendRequest,
    SendResponse, SyncRequest, SyncResponse,
};
use juntos_proto::meta::Caller;
use tonic::{Request, Response, Status, Streaming};

use crate::service::ChatService;
use crate::service::connect::{ServerFrames, presence_to_proto, to_proto};
use crate::store::OutgoingEnvelope;

/// `juntos.chat.v1.Chat`.
#[derive(Debug, Clone)]
pub struct ChatGrpc {
    pub(super) service: Arc<ChatService>,
}

#[tonic::async_trait]
impl Chat for ChatGrpc {
    async fn send(&self, request: Request<SendRequest>) -> Result<Response<SendResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        let envelopes = request
            .envelopes
            .into_iter()
            .map(|e| OutgoingEnvelope {
                recipient_user_id: e.recipient_user_id,
                recipient_device_id: e.recipient_device_id,
                ciphertext: e.ciphertext.into(),
            })
            .collect();
        let server_time_ms = self
            .service
            .send(&caller, request.client_msg_id, envelopes)
            .await?;
        Ok(Response::new(SendResponse { server_time_ms }))
    }

    type ConnectStream = ServerFrames;

    async fn connect(
        &self,
        request: Request<Streaming<ClientFrame>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        Ok(Response::new(
            self.service.connect(caller, request.into_inner()),
        ))
    }

    async fn sync(&self, request: Request<SyncRequest>) -> Result<Response<SyncResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        let page = self
            .service
            .sync(&caller, request.after_seq, request.limit)
            .await?;
        Ok(Response::new(SyncResponse {
            envelopes: page.envelopes.into_iter().map(to_proto).collect(),
            more: page.more,
        }))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        self.service
            .ack(&caller, request.into_inner().up_to_seq)
            .await?;
        Ok(Response::new(AckResponse {}))
    }

    async fn get_presence(
        &self,
        request: Request<GetPresenceRequest>,
    ) -> Result<Response<GetPresenceResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let user_ids = request.into_inner().user_ids;
        let users = self
            .service
            .get_presence(&caller, user_ids)
            .await?
            .into_iter()
            .map(|(user_id, state)| presence_to_proto(user_id, Some(state)))
            .collect();
        Ok(Response::new(GetPresenceResponse { users }))
    }
}
