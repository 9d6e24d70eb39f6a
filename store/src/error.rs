//! The failures every store shares.

/// A storage failure. Each service's store trait answers with this; what a service tells its
/// callers about it (always INTERNAL or UNAVAILABLE, never the details) is the service's choice.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[cfg(feature = "sqlite")]
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The MongoDB server or driver failed.
    #[cfg(feature = "mongo")]
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// The writer is gone (the store is shutting down or its thread died).
    #[error("the store's writer is not running")]
    WriterGone,
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The database was written by a newer version of Juntos.
    #[error("database schema version {found} is newer than this build knows ({latest})")]
    SchemaTooNew {
        /// The version found in the database.
        found: i64,
        /// The latest version this build has a migration for.
        latest: i64,
    },
    /// Stored data breaks an invariant, or a write kept conflicting.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Any other backend's failure.
    #[error("storage backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}
