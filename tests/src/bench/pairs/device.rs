//! A bench device of scenario `pairs`: signed in over raw gRPC with fresh identity keys and
//! uploaded prekeys, on its own channel to the gateway.

use std::path::Path;

use crate::raw::authed;
use juntos_client::crypto::{
    IdentityKeyPair, InMemoryPrekeys, OneTimePrekeyPair, SignedPrekeyPair,
};
use juntos_proto::login::v1::directory_client::DirectoryClient;
use juntos_proto::login::v1::login_client::LoginClient;
use juntos_proto::login::v1::{DeviceInfo, Platform, SignInRequest, UploadPrekeysRequest};
use juntos_proto::otp::v1::RequestCodeRequest;
use juntos_proto::otp::v1::otp_client::OtpClient;
use rand::rngs::OsRng;
use tonic::transport::{Channel, Endpoint};

use crate::bench::error::{BenchError, rpc};
use crate::bench::outbox::{codes_sent, wait_for_code};

/// One-time prekeys each device uploads (each pair consumes one).
pub(super) const ONE_TIME_PREKEYS: u32 = 10;

/// One signed-in bench device with its keys.
pub(super) struct Device {
    pub(super) user_id: String,
    pub(super) device_id: String,
    pub(super) access_token: String,
    pub(super) identity: IdentityKeyPair,
    pub(super) prekeys: InMemoryPrekeys,
    pub(super) channel: Channel,
}

/// The sign-in number of bench device `index` (+1 201 555-0100 onwards, a fictional range).
pub(super) fn phone(index: u32) -> String {
    format!("+1201555{:04}", 100 + index)
}

/// Requests a code, signs in with fresh identity keys and uploads prekeys.
pub(super) async fn sign_in_device(
    url: &str,
    outbox: &Path,
    index: u32,
) -> Result<Device, BenchError> {
    let channel = Endpoint::from_shared(url.to_owned())
        .map_err(|e| BenchError::Connect {
            url: url.to_owned(),
            source: e,
        })?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| BenchError::Connect {
            url: url.to_owned(),
            source: e,
        })?;
    let phone = phone(index);
    let codes_before = codes_sent(outbox, &phone).len();
    OtpClient::new(channel.clone())
        .request_code(RequestCodeRequest {
            phone: phone.clone(),
        })
        .await
        .map_err(rpc("RequestCode"))?;
    let code = wait_for_code(outbox, &phone, codes_before).await?;

    let identity = IdentityKeyPair::generate(&mut OsRng);
    let public = identity.public();
    let signed_in = LoginClient::new(channel.clone())
        .sign_in(SignInRequest {
            phone,
            code,
            device: Some(DeviceInfo {
                name: format!("bench-{index}"),
                platform: Platform::Linux as i32,
                identity_signing_key: public.signing.to_vec(),
                identity_dh_key: public.dh.to_vec(),
            }),
        })
        .await
        .map_err(rpc("SignIn"))?
        .into_inner();
    let access_token = signed_in
        .tokens
        .ok_or_else(|| BenchError::Setup("SignIn answered without tokens".to_owned()))?
        .access_token;

    let signed = SignedPrekeyPair::generate(&identity, 1, &mut OsRng);
    let one_time = OneTimePrekeyPair::generate_batch(1, ONE_TIME_PREKEYS, &mut OsRng);
    DirectoryClient::new(channel.clone())
        .upload_prekeys(authed(
            UploadPrekeysRequest {
                signed_prekey: Some(signed.to_proto()),
                one_time_prekeys: one_time.iter().map(OneTimePrekeyPair::to_proto).collect(),
            },
            &access_token,
        ))
        .await
        .map_err(rpc("UploadPrekeys"))?;
    let mut prekeys = InMemoryPrekeys::new();
    prekeys.add_signed(signed);
    for key in one_time {
        prekeys.add_one_time(key);
    }
    Ok(Device {
        user_id: signed_in.user_id,
        device_id: signed_in.device_id,
        access_token,
        identity,
        prekeys,
        channel,
    })
}
