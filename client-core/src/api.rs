//! The gRPC plumbing: one lazily connected channel to the gateway and a thin call per RPC.
//!
//! Calls answer the raw [`Status`]; turning it into a [`ClientError`] (and refreshing tokens) is
//! the business of `gateway.rs`. Every authenticated unary call has one shape, `(access token,
//! request) -> answer`, so one helper there can call (and retry) any of them.

use std::sync::OnceLock;
use std::time::Duration;

use juntos_proto::chat::v1::{self as chat, chat_client::ChatClient};
use juntos_proto::login::v1::{
    self as login, directory_client::DirectoryClient, login_client::LoginClient,
};
use juntos_proto::media::v1::{self as media, statuses_client::StatusesClient};
use juntos_proto::otp::v1::{self as otp, otp_client::OtpClient};
use tonic::Status;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::error::{ClientError, Result};
use crate::tls;

/// How long to wait for a connection to the gateway (the TCP connection, then the TLS handshake).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for any one answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The gateway's RPCs.
pub(crate) struct Api {
    endpoint: Endpoint,
    // Made on first use, inside the async runtime (making it spawns the channel's worker task).
    channel: OnceLock<Channel>,
    /// The same server without the per-request timeout, for uploads and downloads that take as
    /// long as the bytes take (stalls are caught by HTTP/2 keep-alives).
    transfer_endpoint: Endpoint,
    transfer_channel: OnceLock<Channel>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("uri", self.endpoint.uri())
            .finish_non_exhaustive()
    }
}

impl Api {
    /// An API for the gateway at `server_url`; connects on the first call.
    ///
    /// `https://host[:port]` is checked against the web PKI roots plus `extra_ca_pem` (PEM: a
    /// private CA or the server's pinned self-signed certificate). `http://host:port` is refused
    /// unless the host is this machine (`localhost`, 127.0.0.0/8, `::1`): anywhere else, phone
    /// numbers, codes and tokens would cross the network in clear.
    pub(crate) fn new(server_url: &str, extra_ca_pem: Option<&str>) -> Result<Self> {
        let invalid = |why: &str| ClientError::InvalidInput {
            message: format!("server URL {why}"),
        };
        // Checked whatever the scheme, so a broken configuration shows at once.
        let tls = tls::client_config(extra_ca_pem, CONNECT_TIMEOUT)?;
        let endpoint = Endpoint::from_shared(server_url.trim().to_owned())
            .map_err(|_| invalid("is not a valid URL (expected https://host[:port])"))?;
        let uri = endpoint.uri().clone();
        let Some(host) = uri.host() else {
            return Err(invalid("has no host"));
        };
        let endpoint = match uri.scheme_str() {
            Some("https") => endpoint
                .tls_config(tls)
                .map_err(|_| invalid("has a host name that TLS cannot check"))?,
            Some("http") if tls::is_loopback(host) => endpoint,
            Some("http") => {
                return Err(invalid(
                    "uses http:// for a server on another machine: use https:// \
                     (plain http is only for localhost)",
                ));
            }
            _ => {
                return Err(invalid(
                    "must start with https:// (or http:// for localhost)",
                ));
            }
        };
        let transfer_endpoint = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            // Notice a dead path (network change, sleeping NAT) without waiting for TCP.
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(Self {
            endpoint: transfer_endpoint.clone().timeout(REQUEST_TIMEOUT),
            channel: OnceLock::new(),
            transfer_endpoint,
            transfer_channel: OnceLock::new(),
        })
    }

    fn channel(&self) -> Channel {
        self.channel
            .get_or_init(|| self.endpoint.connect_lazy())
            .clone()
    }

    /// The channel for streamed transfers (no per-request timeout).
    pub(crate) fn transfer_channel(&self) -> Channel {
        self.transfer_channel
            .get_or_init(|| self.transfer_endpoint.connect_lazy())
            .clone()
    }

    /// `Otp.RequestCode`.
    pub(crate) async fn request_code(
        &self,
        phone: String,
    ) -> Result<otp::RequestCodeResponse, Status> {
        let response = OtpClient::new(self.channel())
            .request_code(otp::RequestCodeRequest { phone })
            .await?;
        Ok(response.into_inner())
    }

    /// `Login.SignIn`.
    pub(crate) async fn sign_in(
        &self,
        request: login::SignInRequest,
    ) -> Result<login::SignInResponse, Status> {
        Ok(LoginClient::new(self.channel())
            .sign_in(request)
            .await?
            .into_inner())
    }

    /// `Login.Refresh`: the rotated tokens.
    pub(crate) async fn refresh(&self, refresh_token: String) -> Result<login::Tokens, Status> {
        let response = LoginClient::new(self.channel())
            .refresh(login::RefreshRequest { refresh_token })
            .await?;
        response
            .into_inner()
            .tokens
            .ok_or_else(|| Status::internal("refresh answered without tokens"))
    }

    /// `Chat.Connect`: the server's frames; the client's frames come from `outgoing`.
    pub(crate) async fn connect(
        &self,
        access_token: &str,
        outgoing: tokio::sync::mpsc::Receiver<chat::ClientFrame>,
    ) -> Result<tonic::Streaming<chat::ServerFrame>, Status> {
        let stream = tokio_stream::wrappers::ReceiverStream::new(outgoing);
        let request = authorized(stream, access_token)?;
        Ok(ChatClient::new(self.channel())
            .connect(request)
            .await?
            .into_inner())
    }
}

/// Unary calls of one service (`$client`): each takes the access token and its request.
macro_rules! unary_calls {
    ($client:path { $($(#[$doc:meta])* $name:ident($request:ty) -> $response:ty;)* }) => {
        impl Api {
            $(
                $(#[$doc])*
                pub(crate) async fn $name(
                    &self,
                    access_token: &str,
                    request: $request,
                ) -> Result<$response, Status> {
                    let request = authorized(request, access_token)?;
                    Ok(<$client>::new(self.channel())
                        .$name(request)
                        .await?
                        .into_inner())
                }
            )*
        }
    };
}

// `juntos.login.v1.Login` (sign-in and refresh, which take no access token, are above).
unary_calls! { LoginClient<Channel> {
    /// `Login.SignOut`: the server revokes this device's session and removes the device.
    sign_out(login::SignOutRequest) -> login::SignOutResponse;
    /// `Login.Me`.
    me(login::MeRequest) -> login::MeResponse;
    /// `Login.GetSettings`.
    get_settings(login::GetSettingsRequest) -> login::Settings;
    /// `Login.UpdateSettings`.
    update_settings(login::UpdateSettingsRequest) -> login::Settings;
} }

// `juntos.login.v1.Directory`.
unary_calls! { DirectoryClient<Channel> {
    /// `Directory.UploadPrekeys`.
    upload_prekeys(login::UploadPrekeysRequest) -> login::UploadPrekeysResponse;
    /// `Directory.PrekeyStatus`.
    prekey_status(login::PrekeyStatusRequest) -> login::PrekeyStatusResponse;
    /// `Directory.FetchBundles`.
    fetch_bundles(login::FetchBundlesRequest) -> login::FetchBundlesResponse;
    /// `Directory.ListDevices`.
    list_devices(login::ListDevicesRequest) -> login::ListDevicesResponse;
    /// `Directory.ResolvePhones`.
    resolve_phones(login::ResolvePhonesRequest) -> login::ResolvePhonesResponse;
    /// `Directory.GetProfiles`.
    get_profiles(login::GetProfilesRequest) -> login::GetProfilesResponse;
} }

// `juntos.chat.v1.Chat` (the live connection is above).
unary_calls! { ChatClient<Channel> {
    /// `Chat.Send`.
    send(chat::SendRequest) -> chat::SendResponse;
    /// `Chat.Sync`.
    sync(chat::SyncRequest) -> chat::SyncResponse;
    /// `Chat.Ack`.
    ack(chat::AckRequest) -> chat::AckResponse;
    /// `Chat.GetPresence`.
    get_presence(chat::GetPresenceRequest) -> chat::GetPresenceResponse;
} }

// `juntos.chat.v1.Groups`.
unary_calls! { chat::groups_client::GroupsClient<Channel> {
    /// `Groups.CreateGroup`.
    create_group(chat::CreateGroupRequest) -> chat::GroupResponse;
    /// `Groups.AddMembers`.
    add_members(chat::MembersRequest) -> chat::GroupResponse;
    /// `Groups.RemoveMembers`.
    remove_members(chat::MembersRequest) -> chat::GroupResponse;
    /// `Groups.LeaveGroup`.
    leave_group(chat::LeaveGroupRequest) -> chat::LeaveGroupResponse;
    /// `Groups.SetAdmins`.
    set_admins(chat::SetAdminsRequest) -> chat::GroupResponse;
    /// `Groups.RenameGroup`.
    rename_group(chat::RenameGroupRequest) -> chat::GroupResponse;
    /// `Groups.ListGroups`.
    list_groups(chat::ListGroupsRequest) -> chat::ListGroupsResponse;
    /// `Groups.GetGroup`.
    get_group(chat::GetGroupRequest) -> chat::GroupResponse;
    /// `Groups.SendGroup`.
    send_group(chat::SendGroupRequest) -> chat::SendResponse;
    /// `Groups.GetNoticeKeys`.
    get_notice_keys(chat::GetNoticeKeysRequest) -> chat::GetNoticeKeysResponse;
} }

// `juntos.media.v1.Media` (the streams are below).
unary_calls! { media::media_client::MediaClient<Channel> {
    /// `Media.CreateUpload`.
    create_upload(media::CreateUploadRequest) -> media::CreateUploadResponse;
    /// `Media.GetUpload`.
    get_upload(media::GetUploadRequest) -> media::GetUploadResponse;
    /// `Media.AbortUpload`.
    abort_upload(media::GetUploadRequest) -> media::AbortUploadResponse;
    /// `Media.GetProfilePhoto`.
    get_profile_photo(media::GetProfilePhotoRequest) -> media::GetProfilePhotoResponse;
    /// `Media.DeleteProfilePhoto`.
    delete_profile_photo(media::DeleteProfilePhotoRequest) -> media::DeleteProfilePhotoResponse;
} }

impl Api {
    /// `Media.Upload`: streams `messages` (the first names the blob and offset).
    pub(crate) async fn upload(
        &self,
        access_token: &str,
        messages: impl tokio_stream::Stream<Item = media::UploadRequest> + Send + 'static,
    ) -> Result<media::UploadResponse, Status> {
        let request = authorized(messages, access_token)?;
        Ok(
            media::media_client::MediaClient::new(self.transfer_channel())
                .max_decoding_message_size(1 << 20)
                .upload(request)
                .await?
                .into_inner(),
        )
    }

    /// `Media.Download`: the stream of chunks.
    pub(crate) async fn download(
        &self,
        access_token: &str,
        request: media::DownloadRequest,
    ) -> Result<tonic::Streaming<media::DownloadResponse>, Status> {
        let request = authorized(request, access_token)?;
        Ok(
            media::media_client::MediaClient::new(self.transfer_channel())
                .max_decoding_message_size(1 << 20)
                .download(request)
                .await?
                .into_inner(),
        )
    }

    /// `Media.SetProfilePhoto`, streaming `messages` (the photo's chunks, in order).
    pub(crate) async fn set_profile_photo(
        &self,
        access_token: &str,
        messages: Vec<media::SetProfilePhotoRequest>,
    ) -> Result<media::SetProfilePhotoResponse, Status> {
        let request = authorized(tokio_stream::iter(messages), access_token)?;
        Ok(
            media::media_client::MediaClient::new(self.transfer_channel())
                .set_profile_photo(request)
                .await?
                .into_inner(),
        )
    }
}

// `juntos.media.v1.Statuses`.
unary_calls! { StatusesClient<Channel> {
    /// `Statuses.PostStatus`.
    post_status(media::PostStatusRequest) -> media::PostStatusResponse;
    /// `Statuses.ListStatuses`.
    list_statuses(media::ListStatusesRequest) -> media::ListStatusesResponse;
    /// `Statuses.DeleteStatus`.
    delete_status(media::DeleteStatusRequest) -> media::DeleteStatusResponse;
} }

/// `message` with `authorization: Bearer <access_token>`.
fn authorized<T>(message: T, access_token: &str) -> Result<tonic::Request<T>, Status> {
    let value = MetadataValue::try_from(format!("Bearer {access_token}"))
        // The token is not echoed: it is a secret.
        .map_err(|_| Status::internal("the stored access token is not a valid header value"))?;
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_url_checks() {
        for good in [
            "http://127.0.0.1:7700",
            " http://localhost:7700/ ",
            "http://LOCALHOST:1",
            "http://localhost.:1",
            "http://127.0.0.1:1",
            "http://127.1.2.3:1",
            "http://[::1]:1",
            "http://[::ffff:127.0.0.1]:1",
            "https://example.org",
            "https://juntos.example.org:8443",
            "https://127.0.0.1:7700",
            "https://[2001:db8::1]:443",
        ] {
            if let Err(e) = Api::new(good, None) {
                panic!("{good}: {e}");
            }
        }
        for bad in ["", "127.0.0.1:7700", "ftp://x", "http://", "https://"] {
            let err = Api::new(bad, None).expect_err(bad);
            assert!(
                matches!(err, ClientError::InvalidInput { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for bad in [
            "http://example.com",
            "http://example.com:7700",
            "http://10.0.0.1:7700",
            "http://192.168.1.2:7700",
            "http://0.0.0.0:7700",
            "http://[2001:db8::1]:7700",
            "http://localhost.example.com:7700",
        ] {
            let err = Api::new(bad, None).expect_err(bad);
            assert!(
                matches!(&err, ClientError::InvalidInput { message } if message.contains("https://")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn bearer_header() {
        let request = authorized(login::MeRequest {}, "v4.public.abc").expect("ascii token");
        assert_eq!(
            request.metadata().get("authorization").expect("set"),
            "Bearer v4.public.abc"
        );
        assert!(authorized(login::MeRequest {}, "bad\ntoken").is_err());
    }
}
