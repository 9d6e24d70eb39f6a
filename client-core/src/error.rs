//! The one error type the client library hands to apps, and how server statuses map onto it.

use std::error::Error as StdError;

use juntos_proto::error::{metadata_of, reason, reason_of, retry_after_of};
use rustls::CertificateError;
use tonic::{Code, Status};

/// What went wrong, in terms an app can act on. Every message is one line and free of phone
/// numbers, codes, keys and tokens.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ClientError {
    /// The phone number is not a valid E.164 number (or the SMS provider refused it).
    #[error("invalid phone number: {message}")]
    InvalidPhoneNumber { message: String },
    /// The code is wrong; `attempts_left` more tries remain before it is burned.
    #[error("wrong code: {attempts_left} {} left", attempts_word(*attempts_left))]
    WrongCode { attempts_left: u32 },
    /// The code expired before it was used.
    #[error("code expired: request a new one")]
    CodeExpired,
    /// No code is pending for this number (never requested, already used or burned).
    #[error("no code pending: request a code first")]
    NoCodePending,
    /// The code was wrong too many times and is burned.
    #[error("too many wrong codes: request a new one")]
    TooManyAttempts,
    /// A rate limit: try again after `retry_after_seconds`. `reason` is the server's reason name
    /// (`RESEND_TOO_SOON`, `DAILY_LIMIT`, `IP_LIMIT`, `COUNTRY_BUDGET`, `RATE_LIMITED`, ...).
    #[error("rate limited: try again in {retry_after_seconds} s")]
    RateLimited {
        retry_after_seconds: u64,
        reason: String,
    },
    /// The call needs a signed-in device and there is none.
    #[error("not signed in")]
    NotSignedIn,
    /// The session was signed out or revoked elsewhere; the local session is cleared.
    #[error("session ended: sign in again")]
    SessionEnded,
    /// The server could not be reached, or did not answer in time.
    #[error("network error: {message}")]
    Network { message: String },
    /// The TLS handshake refused the server's certificate (not trusted, not valid for the
    /// server's name, expired, ...), so nothing was sent. Retrying at once will not help: the
    /// server's certificate or this client's trusted CAs (`ClientConfig::extra_ca_pem`) must
    /// change, or someone is in the middle (a captive portal, a TLS proxy). Queued messages wait
    /// for that as they wait for the network; they are not given up.
    #[error("certificate error: {message}")]
    Certificate { message: String },
    /// An argument was refused (by this library or the server).
    #[error("invalid input: {message}")]
    InvalidInput { message: String },
    /// The server refused: this account may not do that (not a member of the group, not one
    /// of its admins, ...).
    #[error("not allowed: {message}")]
    NotAllowed { message: String },
    /// The server has no such thing (user, status, ...) for this account.
    #[error("not found: {message}")]
    NotFound { message: String },
    /// Any other server error.
    #[error("server error: {message}")]
    Server { message: String },
    /// The local database failed.
    #[error("storage error: {message}")]
    Storage { message: String },
}

/// `Result` with [`ClientError`].
pub(crate) type Result<T, E = ClientError> = std::result::Result<T, E>;

fn attempts_word(n: u32) -> &'static str {
    if n == 1 { "attempt" } else { "attempts" }
}

/// A status message as one line (the server's messages are for humans and carry no user data).
fn one_line(message: &str) -> String {
    let line = message
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        "no details".to_owned()
    } else {
        line
    }
}

impl ClientError {
    /// Whether this error means the server-side session is gone, so the local one must be cleared.
    pub(crate) fn ends_session(&self) -> bool {
        matches!(self, Self::SessionEnded)
    }
}

/// The TLS error behind a failed call, if the call failed in the TLS handshake.
///
/// Tonic reports a failed handshake as UNAVAILABLE whose `source()` chain runs through the
/// channel's layers to the `std::io::Error` that tokio-rustls returned, which wraps the
/// `rustls::Error`. `io::Error::source()` skips the error it wraps, so each `io::Error` on the
/// way is opened with `get_ref()`.
pub(crate) fn tls_error_of(status: &Status) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn StdError + 'static)> = StdError::source(status);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
            next = Some(inner);
            continue;
        }
        next = error.source();
    }
    None
}

/// How many of the names a certificate is for a message lists.
const MAX_NAMES_SHOWN: usize = 5;

/// A name as rustls-webpki presents it (`DnsName("a.example")`, `IpAddress(192.0.2.1)`),
/// without the wrapping, on one line and no longer than a DNS name can be (the server chose it).
fn presented_name(name: &str) -> String {
    let bare = name
        .strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(name);
    one_line(&bare.chars().take(253).collect::<String>())
}

/// What is wrong with the server's certificate, in one line, if `error` is about it.
fn certificate_problem(error: &rustls::Error) -> Option<String> {
    let problem = match error {
        rustls::Error::InvalidCertificate(problem) => problem,
        rustls::Error::NoCertificatesPresented => {
            return Some("the server presented no certificate".to_owned());
        }
        _ => return None,
    };
    let message = match problem {
        CertificateError::UnknownIssuer => {
            "the server's certificate is not trusted (unknown issuer): if the server uses a \
             private CA or a self-signed certificate, add it as an extra CA"
                .to_owned()
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let shown: Vec<String> = presented
                .iter()
                .take(MAX_NAMES_SHOWN)
                .map(|name| presented_name(name))
                .collect();
            let names = match presented.len() {
                0 => "no names".to_owned(),
                n if n > MAX_NAMES_SHOWN => {
                    format!("{} and {} more", shown.join(", "), n - MAX_NAMES_SHOWN)
                }
                _ => shown.join(", "),
            };
            format!(
                "the server's certificate is not valid for {} (it is for {names})",
                expected.to_str()
            )
        }
        CertificateError::NotValidForName => {
            "the server's certificate is not valid for the server's host name".to_owned()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired (or this device's clock is wrong)".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet (or this device's clock is wrong)".to_owned()
        }
        CertificateError::Revoked => "the server's certificate has been revoked".to_owned(),
        CertificateError::BadSignature => "the server's certificate has a bad signature".to_owned(),
        CertificateError::BadEncoding => "the server's certificate is malformed".to_owned(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the server's certificate is not meant for TLS servers".to_owned()
        }
        other => format!(
            "the server's certificate was refused ({})",
            one_line(&other.to_string())
        ),
    };
    Some(message)
}

impl From<&Status> for ClientError {
    fn from(status: &Status) -> Self {
        // Before the codes: a refused certificate is UNAVAILABLE like any failed connection,
        // but retrying it would only fail again.
        if let Some(tls) = tls_error_of(status) {
            if let Some(message) = certificate_problem(tls) {
                return Self::Certificate { message };
            }
            let why = match tls {
                rustls::Error::InvalidMessage(_) => {
                    "the server does not speak TLS on this port".to_owned()
                }
                other => one_line(&other.to_string()),
            };
            return Self::Network {
                message: format!("TLS handshake with the server failed: {why}"),
            };
        }
        let reason = reason_of(status);
        let message = one_line(status.message());
        match (status.code(), reason.as_deref()) {
            (_, Some(reason::INVALID_PHONE)) => Self::InvalidPhoneNumber { message },
            (_, Some(reason::SMS_REJECTED)) => Self::InvalidPhoneNumber {
                message: "the SMS provider refused this number".to_owned(),
            },
            (_, Some(reason::WRONG_CODE)) => {
                let attempts_left = metadata_of(status, "attempts_left")
                    .and_then(|n| n.trim().parse::<u32>().ok())
                    .unwrap_or(0);
                Self::WrongCode { attempts_left }
            }
            (_, Some(reason::CODE_EXPIRED)) => Self::CodeExpired,
            (_, Some(reason::NO_CODE)) => Self::NoCodePending,
            (_, Some(reason::TOO_MANY_ATTEMPTS)) => Self::TooManyAttempts,
            (
                _,
                Some(
                    reason::INVALID_REFRESH_TOKEN
                    | reason::REFRESH_TOKEN_REUSED
                    | reason::SESSION_REVOKED,
                ),
            ) => Self::SessionEnded,
            (_, Some(reason::MISSING_TOKEN)) => Self::NotSignedIn,
            (Code::ResourceExhausted, reason) => match retry_after_of(status) {
                Some(delay) => Self::RateLimited {
                    // Round up: "try again in 0 s" would invite an immediate, refused retry.
                    retry_after_seconds: delay.as_secs() + u64::from(delay.subsec_nanos() > 0),
                    reason: reason.unwrap_or("RESOURCE_EXHAUSTED").to_owned(),
                },
                // Not a timed limit (e.g. TOO_MANY_DEVICES): waiting will not help.
                None => Self::Server { message },
            },
            // Without a reason the status came from the transport, not from a Juntos server.
            (Code::Unavailable, None) => Self::Network {
                message: format!("cannot reach the server ({message})"),
            },
            (Code::DeadlineExceeded, _) => Self::Network {
                message: "the server did not answer in time".to_owned(),
            },
            (Code::Unavailable | Code::Cancelled, _) => Self::Network { message },
            (Code::InvalidArgument, _) => Self::InvalidInput { message },
            (Code::PermissionDenied, _) => Self::NotAllowed { message },
            (Code::NotFound, _) => Self::NotFound { message },
            _ => Self::Server { message },
        }
    }
}

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        Self::from(&status)
    }
}

impl From<rusqlite::Error> for ClientError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Storage {
            message: one_line(&error.to_string()),
        }
    }
}

impl From<juntos_store::StoreError> for ClientError {
    fn from(error: juntos_store::StoreError) -> Self {
        let message = match error {
            juntos_store::StoreError::SchemaTooNew { found, latest } => format!(
                "database version {found} is newer than this library ({latest}): update the app"
            ),
            other => one_line(&other.to_string()),
        };
        Self::Storage { message }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(error: std::io::Error) -> Self {
        Self::Storage {
            message: one_line(&error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use juntos_proto::error::{resource_exhausted, status, status_with_metadata};

    use super::*;

    #[test]
    fn invalid_phone() {
        let s = status(
            Code::InvalidArgument,
            reason::INVALID_PHONE,
            "expected E.164: + then digits",
        );
        let e = ClientError::from(s);
        assert!(
            matches!(&e, ClientError::InvalidPhoneNumber { message } if message.contains("E.164"))
        );
        assert_eq!(
            e.to_string(),
            "invalid phone number: expected E.164: + then digits"
        );
    }

    #[test]
    fn wrong_code_carries_attempts_left() {
        let meta = HashMap::from([("attempts_left".to_owned(), "3".to_owned())]);
        let e = ClientError::from(status_with_metadata(
            Code::InvalidArgument,
            reason::WRONG_CODE,
            "wrong",
            meta,
        ));
        assert!(matches!(e, ClientError::WrongCode { attempts_left: 3 }));
        assert_eq!(e.to_string(), "wrong code: 3 attempts left");

        let meta = HashMap::from([("attempts_left".to_owned(), "1".to_owned())]);
        let e = ClientError::from(status_with_metadata(
            Code::InvalidArgument,
            reason::WRONG_CODE,
            "wrong",
            meta,
        ));
        assert_eq!(e.to_string(), "wrong code: 1 attempt left");
    }

    #[test]
    fn code_states() {
        let e = ClientError::from(status(
            Code::FailedPrecondition,
            reason::CODE_EXPIRED,
            "expired",
        ));
        assert!(matches!(e, ClientError::CodeExpired));
        assert_eq!(e.to_string(), "code expired: request a new one");
        let e = ClientError::from(status(Code::FailedPrecondition, reason::NO_CODE, "none"));
        assert!(matches!(e, ClientError::NoCodePending));
        let e = ClientError::from(status(
            Code::FailedPrecondition,
            reason::TOO_MANY_ATTEMPTS,
            "burned",
        ));
        assert!(matches!(e, ClientError::TooManyAttempts));
    }

    #[test]
    fn rate_limited_rounds_retry_up() {
        let s = resource_exhausted(
            reason::RESEND_TOO_SOON,
            "wait",
            Duration::from_millis(29_001),
        );
        let e = ClientError::from(s);
        assert!(matches!(
            &e,
            ClientError::RateLimited { retry_after_seconds: 30, reason } if reason == "RESEND_TOO_SOON"
        ));
        assert_eq!(e.to_string(), "rate limited: try again in 30 s");

        let s = resource_exhausted(reason::DAILY_LIMIT, "tomorrow", Duration::from_secs(3600));
        assert!(matches!(
            ClientError::from(s),
            ClientError::RateLimited {
                retry_after_seconds: 3600,
                ..
            }
        ));
    }

    #[test]
    fn resource_exhausted_without_retry_info_is_not_a_rate_limit() {
        let s = status(
            Code::ResourceExhausted,
            reason::TOO_MANY_DEVICES,
            "too many devices",
        );
        assert!(
            matches!(ClientError::from(s), ClientError::Server { message } if message == "too many devices")
        );
    }

    #[test]
    fn session_end_reasons() {
        for r in [
            reason::INVALID_REFRESH_TOKEN,
            reason::REFRESH_TOKEN_REUSED,
            reason::SESSION_REVOKED,
        ] {
            let e = ClientError::from(status(Code::Unauthenticated, r, "gone"));
            assert!(e.ends_session(), "{r}");
        }
        let e = ClientError::from(status(
            Code::Unauthenticated,
            reason::TOKEN_EXPIRED,
            "expired",
        ));
        assert!(!e.ends_session());
        assert!(matches!(e, ClientError::Server { .. }));
        let e = ClientError::from(status(
            Code::Unauthenticated,
            reason::MISSING_TOKEN,
            "no token",
        ));
        assert!(matches!(e, ClientError::NotSignedIn));
    }

    #[test]
    fn transport_failures_are_network_errors() {
        let e = ClientError::from(Status::unavailable("tcp connect error\nconnection refused"));
        assert!(matches!(&e, ClientError::Network { message }
                if message == "cannot reach the server (tcp connect error connection refused)"));
        assert!(!e.to_string().contains('\n'));
        let e = ClientError::from(Status::deadline_exceeded("timeout"));
        assert!(matches!(e, ClientError::Network { .. }));
        let e = ClientError::from(status(
            Code::Unavailable,
            reason::SMS_UNAVAILABLE,
            "SMS provider down",
        ));
        assert!(matches!(&e, ClientError::Network { message } if message == "SMS provider down"));
    }

    /// A status as tonic makes it for a failed TLS handshake: UNAVAILABLE, the rustls error
    /// inside an `io::Error` inside a wrapper (the real chain is pinned in `tls::tests`).
    fn handshake_failure(error: rustls::Error) -> Status {
        #[derive(Debug)]
        struct Layer(std::io::Error);
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
        impl StdError for Layer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let mut status = Status::unavailable(format!("tcp connect error: {error}"));
        status.set_source(std::sync::Arc::new(Layer(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            error,
        ))));
        status
    }

    fn certificate_message(error: impl Into<rustls::Error>) -> String {
        match ClientError::from(handshake_failure(error.into())) {
            ClientError::Certificate { message } => message,
            other => panic!("expected a certificate error, got {other:?}"),
        }
    }

    #[test]
    fn refused_certificates_are_certificate_errors() {
        use rustls::pki_types::{ServerName, UnixTime};

        assert!(certificate_message(CertificateError::UnknownIssuer).contains("(unknown issuer)"));
        let e = ClientError::from(handshake_failure(CertificateError::UnknownIssuer.into()));
        assert!(
            e.to_string()
                .starts_with("certificate error: the server's certificate is not trusted")
        );
        assert_eq!(
            certificate_message(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("juntos.example.org").expect("name"),
                presented: vec![
                    "DnsName(\"a.example\")".to_owned(),
                    "IpAddress(192.0.2.1)".to_owned(),
                    "UniformResourceIdentifier(\"https://a.example\")".to_owned(),
                ],
            }),
            "the server's certificate is not valid for juntos.example.org (it is for a.example, \
             192.0.2.1, UniformResourceIdentifier(\"https://a.example\"))"
        );
        let many = (1..=7)
            .map(|i| format!("DnsName(\"n{i}.example\")"))
            .collect();
        assert_eq!(
            certificate_message(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("juntos.example.org").expect("name"),
                presented: many,
            }),
            "the server's certificate is not valid for juntos.example.org (it is for n1.example, \
             n2.example, n3.example, n4.example, n5.example and 2 more)"
        );
        assert!(
            certificate_message(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("juntos.example.org").expect("name"),
                presented: Vec::new(),
            })
            .ends_with("(it is for no names)")
        );
        // The names come from the server: one line, and not a novel.
        let odd = certificate_message(CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("juntos.example.org").expect("name"),
            presented: vec![format!("DnsName(\"a\nb{}\")", "x".repeat(10_000))],
        });
        assert!(!odd.contains('\n') && odd.len() < 400, "{odd}");
        assert_eq!(
            certificate_message(CertificateError::NotValidForName),
            "the server's certificate is not valid for the server's host name"
        );
        for expired in [
            CertificateError::Expired,
            CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(Duration::from_secs(2_000_000_000)),
                not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_000_000_000)),
            },
        ] {
            assert!(certificate_message(expired).contains("has expired"));
        }
        assert!(certificate_message(CertificateError::NotValidYet).contains("not valid yet"));
        assert!(certificate_message(CertificateError::Revoked).contains("revoked"));
        assert!(certificate_message(CertificateError::BadSignature).contains("bad signature"));
        assert!(certificate_message(CertificateError::BadEncoding).contains("malformed"));
        assert!(
            certificate_message(CertificateError::UnhandledCriticalExtension)
                .starts_with("the server's certificate was refused (")
        );
        assert_eq!(
            certificate_message(rustls::Error::NoCertificatesPresented),
            "the server presented no certificate"
        );
    }

    #[test]
    fn other_tls_failures_stay_network_errors() {
        let e = ClientError::from(handshake_failure(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        )));
        assert!(
            matches!(&e, ClientError::Network { message }
                if message == "TLS handshake with the server failed: the server does not speak TLS on this port"),
            "{e:?}"
        );
        let e = ClientError::from(handshake_failure(rustls::Error::AlertReceived(
            rustls::AlertDescription::ProtocolVersion,
        )));
        assert!(
            matches!(&e, ClientError::Network { message }
                if message == "TLS handshake with the server failed: received fatal alert: ProtocolVersion"),
            "{e:?}"
        );
        // A status with no TLS error inside is untouched.
        let e = ClientError::from(Status::unavailable("connection refused"));
        assert!(matches!(e, ClientError::Network { .. }), "{e:?}");
    }

    #[test]
    fn other_codes() {
        let e = ClientError::from(status(
            Code::InvalidArgument,
            reason::INVALID_DEVICE,
            "name too long",
        ));
        assert!(matches!(&e, ClientError::InvalidInput { message } if message == "name too long"));
        let e = ClientError::from(Status::internal(""));
        assert!(matches!(&e, ClientError::Server { message } if message == "no details"));
    }
}
