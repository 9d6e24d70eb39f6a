//! Why a run failed: [`BenchError`], and shorthands that wrap a failed call's error with what
//! was called.

use juntos_client::ClientError;
use juntos_client::crypto::CryptoError;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    /// A call to the system failed.
    #[error("{what}: {status}")]
    Rpc {
        what: &'static str,
        status: tonic::Status,
    },
    /// The gateway could not be reached.
    #[error("connecting to {url}: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
    /// Key material from the directory was refused.
    #[error("{what}: {source}")]
    Crypto {
        what: &'static str,
        source: CryptoError,
    },
    /// A client-core call failed.
    #[error("{what}: {source}")]
    Client {
        what: &'static str,
        source: ClientError,
    },
    /// Anything else that stops a run.
    #[error("{0}")]
    Setup(String),
    /// A task of the run panicked or was cancelled.
    #[error("task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub(crate) fn rpc(what: &'static str) -> impl FnOnce(tonic::Status) -> BenchError {
    move |status| BenchError::Rpc { what, status }
}

pub(crate) fn crypto(what: &'static str) -> impl FnOnce(CryptoError) -> BenchError {
    move |source| BenchError::Crypto { what, source }
}

pub(crate) fn client_err(what: &'static str) -> impl FnOnce(ClientError) -> BenchError {
    move |source| BenchError::Client { what, source }
}
