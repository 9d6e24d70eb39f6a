//! The media service's storage: one database holding both halves of the service, each behind
//! a trait of its own that both backends implement ([`SqliteStatusStore`] on `<data-dir>/media.db`,
//! embedded; [`MongoStatusStore`], shared by every pod):
//! * `statuses`: [`StatusStore`], the statuses and their audiences;
//! * `media`: [`BlobIndex`], the index of blobs and profile photos (their bytes are in a
//!   [`BlobStore`](crate::BlobStore)).
//!
//! This module opens the database (`sqlite`: the file, its migrations and its writer; `mongo`:
//! the connection, the collections and their indexes) and re-exports both halves.

mod media;
mod mongo;
mod sqlite;
mod statuses;

pub use self::media::{BlobIndex, BlobRecord, ProfilePhotoRecord};
pub use self::mongo::{COLLECTIONS, DEFAULT_DATABASE, MongoStatusStore};
pub use self::sqlite::SqliteStatusStore;
pub use self::statuses::{
    NewStatus, PostLimit, PostOutcome, StatusPage, StatusStore, StoredStatus,
};

/// A storage failure: the one every Juntos store shares.
pub use juntos_store::StoreError;
