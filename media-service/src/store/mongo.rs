//! The MongoDB media database: the shared backend every media pod uses (a replica set or a
//! sharded cluster), holding both the statuses ([`StatusStore`](super::StatusStore), their
//! collections and transactions in `statuses/mongo.rs`) and the blob index
//! ([`BlobIndex`](super::BlobIndex), `media/mongo.rs`). This module connects and creates the
//! collections and every index.

use juntos_store::mongo::{MongoStore, create_collections};
use mongodb::{Client, Database};

use super::StoreError;

/// The database used when the URI names none.
pub use juntos_store::mongo::DEFAULT_DATABASE;

/// The names of the collections, for tests and operators.
pub const COLLECTIONS: &[&str] = &["statuses", "status_posters", "blobs", "profile_photos"];

/// A [`StatusStore`](super::StatusStore) (and [`BlobIndex`](super::BlobIndex)) in one MongoDB
/// database.
#[derive(Clone)]
pub struct MongoStatusStore {
    pub(super) client: Client,
    pub(super) db: Database,
}

impl std::fmt::Debug for MongoStatusStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStatusStore")
            .field("database", &self.db.name())
            .finish_non_exhaustive()
    }
}

/// Made with [`MongoStore::connect`] (or [`MongoStore::with_client`]).
impl MongoStore for MongoStatusStore {
    async fn with_database(client: Client, db: Database) -> Result<Self, StoreError> {
        let store = Self { client, db };
        store.create_schema().await?;
        Ok(store)
    }
}

impl MongoStatusStore {
    /// The database this store uses.
    pub fn database(&self) -> &Database {
        &self.db
    }

    async fn create_schema(&self) -> Result<(), StoreError> {
        // Explicitly, so that no transaction has to create a collection.
        create_collections(&self.db, COLLECTIONS).await?;
        super::statuses::create_indexes(&self.db).await?;
        super::media::create_indexes(&self.db).await?;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests;
