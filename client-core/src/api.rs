//! The gRPC plumbing: one lazily connected channel to the gateway and a thin call per RPC.
//!
//! Calls answer the raw [`Status`]; turning it into a [`ClientError`] (and refreshing tokens) is
//! the caller's business.

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

/// How long to wait for a connection to the gateway.
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
        let tls = tls::client_config(extra_ca_pem)?;
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

    /// `Login.SignOut` for the device whose access token is `access_token`.
    pub(crate) async fn sign_out(&self, access_token: &str) -> Result<(), Status> {
        let request = authorized(login::SignOutRequest {}, access_token)?;
        LoginClient::new(self.channel()).sign_out(request).await?;
        Ok(())
    }

    /// `Login.Me`.
    pub(crate) async fn me(&self, access_token: &str) -> Result<login::MeResponse, Status> {
        let request = authorized(login::MeRequest {}, access_token)?;
        Ok(LoginClient::new(self.channel())
            .me(request)
            .await?
            .into_inner())
    }
}

// === directory and chat ===

impl Api {
    /// `Directory.UploadPrekeys`.
    pub(crate) async fn upload_prekeys(
        &self,
        access_token: &str,
        request: login::UploadPrekeysRequest,
    ) -> Result<login::UploadPrekeysResponse, Status> {
        let request = authorized(request, access_token)?;
        Ok(DirectoryClient::new(self.channel())
            .upload_prekeys(request)
            .await?
            .into_inner())
    }

    /// `Directory.PrekeyStatus`.
    pub(crate) async fn prekey_status(
        &self,
        access_token: &str,
    ) -> Result<login::PrekeyStatusResponse, Status> {
        let request = authorized(login::PrekeyStatusRequest {}, access_token)?;
        Ok(DirectoryClient::new(self.channel())
            .prekey_status(request)
            .await?
            .into_inner())
    }

    /// `Directory.FetchBundles`.
    pub(crate) async fn fetch_bundles(
        &self,
        access_token: &str,
        user_id: String,
    ) -> Result<login::FetchBundlesResponse, Status> {
        let request = authorized(login::FetchBundlesRequest { user_id }, access_token)?;
        Ok(DirectoryClient::new(self.channel())
            .fetch_bundles(request)
            .await?
            .into_inner())
    }

    /// `Directory.ListDevices`.
    pub(crate) async fn list_devices(
        &self,
        access_token: &str,
        user_ids: Vec<String>,
    ) -> Result<login::ListDevicesResponse, Status> {
        let request = authorized(login::ListDevicesRequest { user_ids }, access_token)?;
        Ok(DirectoryClient::new(self.channel())
            .list_devices(request)
            .await?
            .into_inner())
    }

    /// `Directory.ResolvePhones`.
    pub(crate) async fn resolve_phones(
        &self,
        access_token: &str,
        phones: Vec<String>,
    ) -> Result<login::ResolvePhonesResponse, Status> {
        let request = authorized(login::ResolvePhonesRequest { phones }, access_token)?;
        Ok(DirectoryClient::new(self.channel())
            .resolve_phones(request)
            .await?
            .into_inner())
    }

    /// `Login.GetSettings`.
    pub(crate) async fn get_settings(&self, access_token: &str) -> Result<login::Settings, Status> {
        let request = authorized(login::GetSettingsRequest {}, access_token)?;
        Ok(LoginClient::new(self.channel())
            .get_settings(request)
            .await?
            .into_inner())
    }

    /// `Login.UpdateSettings`.
    pub(crate) async fn update_settings(
        &self,
        access_token: &str,
        update: login::UpdateSettingsRequest,
    ) -> Result<login::Settings, Status> {
        let request = authorized(update, access_token)?;
        Ok(LoginClient::new(self.channel())
            .update_settings(request)
            .await?
            .into_inner())
    }

    /// `Directory.GetProfiles`.
    pub(crate) async fn get_profiles(
        &self,
        access_token: &str,
        user_ids: Vec<String>,
    ) -> Result<Vec<login::Profile>, Status> {
        let request = authorized(login::GetProfilesRequest { user_ids }, access_token)?;
        Ok(DirectoryClient::new(self.channel())
            .get_profiles(request)
            .await?
            .into_inner()
            .profiles)
    }

    /// `Chat.GetPresence`.
    pub(crate) async fn get_presence(
        &self,
        access_token: &str,
        user_ids: Vec<String>,
    ) -> Result<Vec<chat::Presence>, Status> {
        let request = authorized(chat::GetPresenceRequest { user_ids }, access_token)?;
        Ok(ChatClient::new(self.channel())
            .get_presence(request)
            .await?
            .into_inner()
            .users)
    }

    /// `Chat.Send`.
    pub(crate) async fn send(
        &self,
        access_token: &str,
        request: chat::SendRequest,
    ) -> Result<chat::SendResponse, Status> {
        let request = authorized(request, access_token)?;
        Ok(ChatClient::new(self.channel())
            .send(request)
            .await?
            .into_inner())
    }

    /// `Chat.Sync`.
    pub(crate) async fn sync(
        &self,
        access_token: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<chat::SyncResponse, Status> {
        let request = authorized(chat::SyncRequest { after_seq, limit }, access_token)?;
        Ok(ChatClient::new(self.channel())
            .sync(request)
            .await?
            .into_inner())
    }

    /// `Chat.Ack`.
    pub(crate) async fn ack(&self, access_token: &str, up_to_seq: u64) -> Result<(), Status> {
        let request = authorized(chat::AckRequest { up_to_seq }, access_token)?;
        ChatClient::new(self.channel()).ack(request).await?;
        Ok(())
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

    /// `Media.SetProfilePhoto`.
    pub(crate) async fn set_profile_photo(
        &self,
        access_token: &str,
        messages: impl tokio_stream::Stream<Item = media::SetProfilePhotoRequest> + Send + 'static,
    ) -> Result<media::SetProfilePhotoResponse, Status> {
        let request = authorized(messages, access_token)?;
        Ok(
            media::media_client::MediaClient::new(self.transfer_channel())
                .set_profile_photo(request)
                .await?
                .into_inner(),
        )
    }
}

/// `juntos.media.v1.Statuses` calls.
impl Api {
    /// `Statuses.PostStatus`.
    pub(crate) async fn post_status(
        &self,
        access_token: &str,
        request: media::PostStatusRequest,
    ) -> Result<media::PostStatusResponse, Status> {
        let request = authorized(request, access_token)?;
        Ok(StatusesClient::new(self.channel())
            .post_status(request)
            .await?
            .into_inner())
    }

    /// `Statuses.ListStatuses`.
    pub(crate) async fn list_statuses(
        &self,
        access_token: &str,
        request: media::ListStatusesRequest,
    ) -> Result<media::ListStatusesResponse, Status> {
        let request = authorized(request, access_token)?;
        Ok(StatusesClient::new(self.channel())
            .list_statuses(request)
            .await?
            .into_inner())
    }

    /// `Statuses.DeleteStatus`.
    pub(crate) async fn delete_status(
        &self,
        access_token: &str,
        request: media::DeleteStatusRequest,
    ) -> Result<(), Status> {
        let request = authorized(request, access_token)?;
        StatusesClient::new(self.channel())
            .delete_status(request)
            .await?;
        Ok(())
    }
}

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
