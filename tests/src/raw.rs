//! Raw gRPC helpers for tests that need to see exactly what is on the wire (tokens, statuses),
//! beneath what client-core shows an app.

use juntos_proto::chat::v1::chat_client::ChatClient;
use juntos_proto::chat::v1::{OutgoingEnvelope, SendRequest};
use juntos_proto::login::v1::login_client::LoginClient;
use juntos_proto::login::v1::{DeviceInfo, Platform, SignInRequest, SignInResponse};
use juntos_proto::otp::v1::otp_client::OtpClient;
use juntos_proto::otp::v1::{RequestCodeRequest, RequestCodeResponse};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::System;

/// The compressed Ed25519 base point: a valid public key for raw sign-ins.
pub const VALID_ED25519_PUBLIC: [u8; 32] = [
    0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
    0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
];

/// A device description with valid key shapes.
pub fn device(name: &str) -> DeviceInfo {
    DeviceInfo {
        name: name.to_owned(),
        platform: Platform::Linux as i32,
        identity_signing_key: VALID_ED25519_PUBLIC.to_vec(),
        identity_dh_key: vec![9; 32],
    }
}

/// Requests a code through the gateway.
pub async fn request_code(
    channel: &Channel,
    phone: &str,
) -> Result<RequestCodeResponse, tonic::Status> {
    OtpClient::new(channel.clone())
        .request_code(RequestCodeRequest {
            phone: phone.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Requests a code and signs in with it.
pub async fn sign_in(
    sys: &System,
    channel: &Channel,
    phone: &str,
    device_name: &str,
) -> SignInResponse {
    request_code(channel, phone).await.expect("code requested");
    let code = sys.last_code(phone);
    LoginClient::new(channel.clone())
        .sign_in(SignInRequest {
            phone: phone.to_owned(),
            code,
            device: Some(device(device_name)),
        })
        .await
        .expect("signed in")
        .into_inner()
}

/// A device signed in through raw gRPC, with the channel (hence the gateway) it talks to.
pub struct SignedInDevice {
    pub channel: Channel,
    pub token: String,
    pub user_id: String,
    pub device_id: String,
}

/// [`sign_in`] over `channel`, keeping the channel with the device's access token and ids.
pub async fn signed_in_device(
    sys: &System,
    channel: Channel,
    phone: &str,
    device_name: &str,
) -> SignedInDevice {
    let signed = sign_in(sys, &channel, phone, device_name).await;
    SignedInDevice {
        channel,
        token: signed.tokens.expect("tokens").access_token,
        user_id: signed.user_id,
        device_id: signed.device_id,
    }
}

impl SignedInDevice {
    /// Sends `body` to `to`'s one device as message `id`; the send must be answered OK.
    pub async fn send(&self, to: &SignedInDevice, id: &str, body: &[u8]) {
        ChatClient::new(self.channel.clone())
            .send(authed(
                SendRequest {
                    client_msg_id: id.to_owned(),
                    envelopes: vec![OutgoingEnvelope {
                        recipient_user_id: to.user_id.clone(),
                        recipient_device_id: to.device_id.clone(),
                        ciphertext: body.to_vec(),
                    }],
                },
                &self.token,
            ))
            .await
            .expect("send answered OK");
    }
}

/// A request carrying `authorization: Bearer <token>`.
pub fn authed<T>(message: T, access_token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {access_token}")
        .parse()
        .expect("header value");
    request.metadata_mut().insert("authorization", value);
    request
}

/// The `ErrorInfo.reason` of a status, for assertions.
pub fn reason(status: &tonic::Status) -> String {
    juntos_proto::error::reason_of(status).unwrap_or_default()
}
