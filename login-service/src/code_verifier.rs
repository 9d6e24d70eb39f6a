//! Checking a sign-in code: otp-service's internal `Otp.VerifyCode`, behind a trait so the
//! service can be tested without it.

use std::time::Duration;

use async_trait::async_trait;
use juntos_proto::error::{reason, status};
use juntos_proto::otp::v1::otp_client::OtpClient;
use juntos_proto::otp::v1::{VerifyCodeRequest, VerifyCodeResponse};
use tonic::Code;
use tonic::transport::Channel;

/// How long one `VerifyCode` call may take before it counts as otp-service being unavailable.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Verifies a sign-in code for a phone number.
#[async_trait]
pub trait CodeVerifier: Send + Sync {
    /// Checks `code` for `phone`. Outcomes (right, wrong, expired, ...) are in the response;
    /// errors are INVALID_ARGUMENT (malformed phone, passed through from otp-service) or
    /// UNAVAILABLE (otp-service could not answer).
    async fn verify(&self, phone: &str, code: &str) -> Result<VerifyCodeResponse, tonic::Status>;
}

/// [`CodeVerifier`] calling otp-service over gRPC.
#[derive(Debug, Clone)]
pub struct OtpCodeVerifier {
    client: OtpClient<Channel>,
}

impl OtpCodeVerifier {
    /// A verifier calling otp-service over `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: OtpClient::new(channel),
        }
    }
}

#[async_trait]
impl CodeVerifier for OtpCodeVerifier {
    async fn verify(&self, phone: &str, code: &str) -> Result<VerifyCodeResponse, tonic::Status> {
        let mut request = tonic::Request::new(VerifyCodeRequest {
            phone: phone.to_owned(),
            code: code.to_owned(),
        });
        request.set_timeout(VERIFY_TIMEOUT);
        match self.client.clone().verify_code(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(s) if s.code() == Code::InvalidArgument => Err(s),
            Err(s) => {
                tracing::warn!(code = ?s.code(), message = s.message(), "otp-service VerifyCode failed");
                Err(status(
                    Code::Unavailable,
                    reason::UPSTREAM_UNAVAILABLE,
                    "the code verification service is unavailable; try again",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_otp_is_unavailable() {
        // Nothing listens on port 1 of loopback.
        let channel = Channel::from_static("http://127.0.0.1:1").connect_lazy();
        let verifier = OtpCodeVerifier::new(channel);
        let err = verifier
            .verify("+15550000001", "123456")
            .await
            .expect_err("unreachable");
        assert_eq!(err.code(), Code::Unavailable);
        assert_eq!(
            juntos_proto::error::reason_of(&err).as_deref(),
            Some(reason::UPSTREAM_UNAVAILABLE)
        );
    }
}
