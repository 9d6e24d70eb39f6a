//! The `juntos.otp.v1.Otp` gRPC service: unpacks requests and calls [`OtpService`].
//! `RequestCode` is public (the caller's address comes from the gateway's `x-juntos-client-ip`);
//! `VerifyCode` is internal (login-service asks it).

use std::sync::Arc;

use juntos_proto::meta::client_ip;
use juntos_proto::otp::v1::otp_server::Otp;
use juntos_proto::otp::v1::verify_code_response::Outcome;
use juntos_proto::otp::v1::{
    RequestCodeRequest, RequestCodeResponse, VerifyCodeRequest, VerifyCodeResponse,
};
use tonic::{Request, Response, Status};

use super::seconds;
use crate::service::OtpService;
use crate::store::VerifyOutcome;

/// The tonic implementation of `Otp`.
#[derive(Debug, Clone)]
pub struct OtpGrpc {
    service: Arc<OtpService>,
}

impl OtpGrpc {
    /// Serves `service`.
    pub fn new(service: Arc<OtpService>) -> Self {
        Self { service }
    }
}

#[tonic::async_trait]
impl Otp for OtpGrpc {
    async fn request_code(
        &self,
        request: Request<RequestCodeRequest>,
    ) -> Result<Response<RequestCodeResponse>, Status> {
        let ip = client_ip(&request);
        let sent = self
            .service
            .request_code(&request.get_ref().phone, ip.as_deref())
            .await?;
        Ok(Response::new(RequestCodeResponse {
            code_length: sent.code_length,
            expires_in_seconds: seconds(sent.expires_in),
            resend_after_seconds: seconds(sent.resend_after),
        }))
    }

    async fn verify_code(
        &self,
        request: Request<VerifyCodeRequest>,
    ) -> Result<Response<VerifyCodeResponse>, Status> {
        let VerifyCodeRequest { phone, code } = request.into_inner();
        let verification = self.service.verify_code(&phone, &code).await?;
        let (outcome, attempts_left) = match verification.outcome {
            VerifyOutcome::Ok => (Outcome::Ok, 0),
            VerifyOutcome::Wrong { attempts_left } => (Outcome::WrongCode, attempts_left),
            VerifyOutcome::TooManyAttempts => (Outcome::TooManyAttempts, 0),
            VerifyOutcome::Expired => (Outcome::Expired, 0),
            VerifyOutcome::NoCode => (Outcome::NoCode, 0),
        };
        let phone = if outcome == Outcome::Ok {
            verification.phone
        } else {
            String::new()
        };
        Ok(Response::new(VerifyCodeResponse {
            outcome: outcome.into(),
            attempts_left,
            phone,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use juntos_clock::ManualClock;
    use juntos_proto::error::reason_of;
    use juntos_proto::meta::CLIENT_IP;

    use super::*;
    use crate::OtpConfig;
    use crate::sms::{SmsError, SmsSender};
    use crate::store::MemoryStore;

    #[derive(Default)]
    struct LastSms(Mutex<String>);

    #[async_trait::async_trait]
    impl SmsSender for LastSms {
        async fn send(&self, _to: &str, body: &str) -> Result<(), SmsError> {
            *self.0.lock().expect("lock") = body.to_owned();
            Ok(())
        }
    }

    fn grpc(config: OtpConfig) -> (OtpGrpc, Arc<LastSms>) {
        let sms = Arc::new(LastSms::default());
        let service = OtpService::new(
            config,
            Arc::new(MemoryStore::new()),
            sms.clone(),
            b"secret".to_vec(),
            ManualClock::new(1_700_000_000_000),
        );
        (OtpGrpc::new(Arc::new(service)), sms)
    }

    fn request_code(phone: &str, ip: &str) -> Request<RequestCodeRequest> {
        let mut request = Request::new(RequestCodeRequest {
            phone: phone.into(),
        });
        request
            .metadata_mut()
            .insert(CLIENT_IP, ip.parse().expect("ascii"));
        request
    }

    fn verify(phone: &str, code: &str) -> Request<VerifyCodeRequest> {
        Request::new(VerifyCodeRequest {
            phone: phone.into(),
            code: code.into(),
        })
    }

    #[tokio::test]
    async fn request_then_verify_over_the_trait() {
        let (otp, sms) = grpc(OtpConfig::default());
        let sent = otp
            .request_code(request_code("+12015550123", "10.0.0.1"))
            .await
            .expect("sent");
        assert_eq!(
            sent.into_inner(),
            RequestCodeResponse {
                code_length: 6,
                expires_in_seconds: 300,
                resend_after_seconds: 30
            }
        );
        let body = sms.0.lock().expect("lock").clone();
        let code: String = body.chars().filter(char::is_ascii_digit).take(6).collect();

        let wrong = if code == "000000" { "111111" } else { "000000" };
        let answer = otp
            .verify_code(verify("+12015550123", wrong))
            .await
            .expect("answer")
            .into_inner();
        assert_eq!(
            (
                answer.outcome(),
                answer.attempts_left,
                answer.phone.as_str()
            ),
            (Outcome::WrongCode, 4, "")
        );
        let answer = otp
            .verify_code(verify("+12015550123", &code))
            .await
            .expect("answer")
            .into_inner();
        assert_eq!(
            (answer.outcome(), answer.phone.as_str()),
            (Outcome::Ok, "+12015550123")
        );
        let answer = otp
            .verify_code(verify("+12015550123", &code))
            .await
            .expect("answer")
            .into_inner();
        assert_eq!(answer.outcome(), Outcome::NoCode);

        let status = otp
            .verify_code(verify("12015550123", &code))
            .await
            .expect_err("malformed");
        assert_eq!(reason_of(&status).as_deref(), Some("INVALID_PHONE"));
    }

    #[tokio::test]
    async fn client_ip_header_feeds_the_ip_limit() {
        let (otp, _) = grpc(OtpConfig {
            ip_limit_per_hour: 1,
            ..Default::default()
        });
        otp.request_code(request_code("+12015550123", "10.0.0.1"))
            .await
            .expect("first");
        let status = otp
            .request_code(request_code("+447400123456", "10.0.0.1"))
            .await
            .expect_err("limited");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(reason_of(&status).as_deref(), Some("IP_LIMIT"));
        otp.request_code(request_code("+447400123456", "10.0.0.2"))
            .await
            .expect("other address");
    }
}
