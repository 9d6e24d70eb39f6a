//! The storage plumbing every Juntos service and the client library share, written once:
//!
//! - [`sqlite`] (feature `sqlite`): a database file with one writer thread that commits queued
//!   writes in batches (group commit), a pool of read-only connections, and numbered schema
//!   migrations tracked by `PRAGMA user_version`.
//! - [`mongo`] (feature `mongo`): write concern majority, transactions that run again on a
//!   transient error, duplicate-key and namespace checks, typed field getters.
//! - [`StoreError`]: the failures every store shares.
//! - [`file`]: a secret file created once, atomically, by whichever process gets there first.
//! - [`Tasks`]: background tasks owned by the value that started them; [`Shutdown`] (made with
//!   [`shutdown_channel`], fired by its [`ShutdownTrigger`]): the signal servers and streams
//!   drain on.
//! - [`sync`]: the one way a `std::sync::Mutex` or `RwLock` is locked here ([`lock`]).
//!
//! Each service keeps its own store trait and its own schema; only the machinery lives here.

#![forbid(unsafe_code)]

mod error;
pub mod file;
pub mod sync;
mod tasks;

#[cfg(feature = "mongo")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use error::StoreError;
pub use sync::lock;
pub use tasks::{Shutdown, ShutdownTrigger, Tasks, shutdown_channel};
