//! Juntos OTP service: one-time sign-in codes sent by SMS.
//!
//! Three layers: [`grpc::OtpGrpc`] unpacks `juntos.otp.v1` requests and calls
//! [`service::OtpService`], which holds the logic (phone validation, rate limits, codes, SMS) and
//! reaches its data only through the [`store::OtpStore`] trait ([`store::MemoryStore`] embedded,
//! [`store::RedisStore`] in production). SMS go out through an [`sms::SmsSender`]
//! ([`sms::ConsoleSender`] for development, [`sms::TwilioSender`] in production).
#![forbid(unsafe_code)]

pub mod code;
pub mod config;
pub mod error;
pub mod grpc;
pub mod phone;
pub mod secret;
pub mod service;
pub mod sms;
pub mod store;

pub use config::OtpConfig;
pub use error::Error;
pub use grpc::{OtpGrpc, server};
pub use phone::{Phone, mask_phone, parse_phone};
pub use secret::load_or_create_secret;
pub use service::{CodeSent, OtpService, Verification};
pub use sms::{ConsoleSender, SmsError, SmsSender, TwilioConfig, TwilioSender};
pub use store::{MemoryStore, OtpStore, RedisStore, VerifyOutcome};
