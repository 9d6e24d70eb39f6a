//! Juntos login service: accounts, devices, tokens, the key directory and contacts
//! (`juntos.login.v1`).
//!
//! Layers: [`grpc`] (tonic servers, one file per proto service) → [`service::LoginService`]
//! (logic, one file per feature) → [`store::LoginStore`]
//! (the only code touching data; [`store::SqliteStore`] is the embedded backend,
//! [`store::MongoLoginStore`] the production one). Access tokens
//! are PASETO v4.public, made by [`juntos_token::TokenIssuer`] and checked by
//! [`juntos_token::TokenVerifier`] (a crate of their own, which the gateway uses too). Codes are checked by otp-service through [`CodeVerifier`].

#![forbid(unsafe_code)]

mod code_verifier;
mod config;
mod device;
mod error;
pub mod grpc;
mod id;
mod phone;
mod refresh_token;
pub mod service;
mod signing_seed;
pub mod store;
#[cfg(test)]
mod test_support;

pub use code_verifier::{CodeVerifier, OtpCodeVerifier};
pub use config::LoginConfig;
pub use error::Error;
pub use grpc::{DirectoryGrpc, LoginGrpc, LoginInternalGrpc, servers};
pub use service::LoginService;
pub use signing_seed::load_or_create_signing_seed;
pub use store::{LoginStore, MongoLoginStore, SqliteStore, StoreError};
