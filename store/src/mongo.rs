//! MongoDB as every Juntos service uses it (official `mongodb` 3.x driver, rustls on ring).
//!
//! - Every write is acknowledged by a majority of the replica set and journaled ([`majority`],
//!   set on the database by [`open`] and on each transaction by [`transaction!`]).
//! - A transaction whose first write is the decision (a conditional update, an insert on a
//!   unique key) conflicts with a racing one; the loser sees `TransientTransactionError` and
//!   [`transaction!`] runs it again after a short jittered [`backoff`].
//! - Stored documents are read through [`Fields`], which turns a missing or mistyped field into
//!   [`StoreError::Corrupt`] naming it.
//!
//! Every timestamp is an Int64 of Unix milliseconds.

use std::future::Future;
use std::time::Duration;

pub use mongodb;
use mongodb::bson::{Binary, Bson, Document, spec::BinarySubtype};
use mongodb::error::{
    ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT, WriteFailure,
};
use mongodb::options::{Acknowledgment, DatabaseOptions, IndexOptions, WriteConcern};
use mongodb::{Client, ClientSession, Database, IndexModel};

use crate::StoreError;

/// The database used when the URI names none.
pub const DEFAULT_DATABASE: &str = "juntos";

/// How often a transaction that hit a transient error (a write conflict) is run again.
pub const MAX_TRANSACTION_ATTEMPTS: u32 = 50;

/// Majority, journaled: a write acknowledged to a user survives the loss of a minority of nodes.
pub fn majority() -> WriteConcern {
    WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build()
}

/// Connects to `uri` and opens its default database (or [`DEFAULT_DATABASE`]) with write
/// concern [`majority`].
pub async fn connect(uri: &str) -> Result<(Client, Database), StoreError> {
    let client = Client::with_uri_str(uri).await?;
    let name = client
        .default_database()
        .map_or_else(|| DEFAULT_DATABASE.to_owned(), |db| db.name().to_owned());
    let db = open(&client, &name);
    Ok((client, db))
}

/// Database `name` through `client`, with write concern [`majority`].
pub fn open(client: &Client, name: &str) -> Database {
    client.database_with_options(
        name,
        DatabaseOptions::builder().write_concern(majority()).build(),
    )
}

/// A store kept in one MongoDB database. It says how it is made from a client and that database
/// ([`MongoStore::with_database`]); [`MongoStore::connect`] and [`MongoStore::with_client`] find
/// the database.
pub trait MongoStore: Sized {
    /// Uses `db` (opened with write concern [`majority`]) through `client`, creating the
    /// collections and indexes (idempotently: a restart or another pod changes nothing).
    fn with_database(
        client: Client,
        db: Database,
    ) -> impl Future<Output = Result<Self, StoreError>> + Send;

    /// Connects to `uri` and uses its default database (or [`DEFAULT_DATABASE`]), creating the
    /// collections and indexes.
    fn connect(uri: &str) -> impl Future<Output = Result<Self, StoreError>> + Send {
        async move {
            let (client, db) = connect(uri).await?;
            Self::with_database(client, db).await
        }
    }

    /// Uses database `name` through `client`, creating the collections and indexes.
    fn with_client(
        client: Client,
        name: &str,
    ) -> impl Future<Output = Result<Self, StoreError>> + Send {
        let db = open(&client, name);
        Self::with_database(client, db)
    }
}

/// An index on `keys` named `name`.
pub fn index(keys: Document, name: &str) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().name(name.to_owned()).build())
        .build()
}

/// A unique index on `keys` named `name`.
pub fn unique_index(keys: Document, name: &str) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .unique(true)
                .name(name.to_owned())
                .build(),
        )
        .build()
}

/// The indexes of `collection` in `db` (for tests and operators).
pub async fn indexes(db: &Database, collection: &str) -> Result<Vec<IndexModel>, StoreError> {
    let mut cursor = db.collection::<Document>(collection).list_indexes().await?;
    let mut models = Vec::new();
    while cursor.advance().await? {
        models.push(cursor.deserialize_current()?);
    }
    Ok(models)
}

/// Those of `names` that are no collection of `db` (what a schema check asserts is empty).
pub async fn missing_collections(db: &Database, names: &[&str]) -> Result<Vec<String>, StoreError> {
    let existing = db.list_collection_names().await?;
    Ok(names
        .iter()
        .filter(|name| !existing.iter().any(|e| e == *name))
        .map(|name| (*name).to_owned())
        .collect())
}

/// Creates `names` explicitly (so that no transaction has to create a collection), leaving
/// those that exist.
pub async fn create_collections(db: &Database, names: &[&str]) -> Result<(), StoreError> {
    for name in names {
        match db.create_collection(*name).await {
            Ok(()) => {}
            Err(e) if is_namespace_exists(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What a transaction body decided.
#[derive(Debug)]
pub enum Txn<T> {
    /// Commit what was written and answer `T`.
    Commit(T),
    /// Abort (nothing may be written) and answer `T`.
    Abort(T),
}

/// Runs `$body` (a block using the `&mut ClientSession` bound to `$s`, evaluating to
/// `Result<Txn<T>, StoreError>`) in a transaction on `$client` with write concern majority,
/// running it again on a transient error (a write conflict, up to
/// [`MAX_TRANSACTION_ATTEMPTS`] times) and retrying a commit whose result is unknown.
/// Evaluates to `Result<T, StoreError>`.
#[macro_export]
macro_rules! transaction {
    ($client:expr, |$s:ident| $body:block) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut session = $client.start_session().await?;
            session
                .start_transaction()
                .write_concern($crate::mongo::majority())
                .await?;
            let result: ::std::result::Result<$crate::mongo::Txn<_>, $crate::StoreError> = {
                let $s = &mut session;
                async { $body }.await
            };
            match result {
                Ok($crate::mongo::Txn::Commit(value)) => {
                    match $crate::mongo::commit(&mut session).await {
                        Ok(()) => break Ok(value),
                        Err(e)
                            if attempt < $crate::mongo::MAX_TRANSACTION_ATTEMPTS
                                && $crate::mongo::is_transient(&e) => {}
                        Err(e) => break Err(e),
                    }
                }
                Ok($crate::mongo::Txn::Abort(value)) => {
                    session.abort_transaction().await?;
                    break Ok(value);
                }
                Err(e)
                    if attempt < $crate::mongo::MAX_TRANSACTION_ATTEMPTS
                        && $crate::mongo::is_transient(&e) =>
                {
                    let _ = session.abort_transaction().await;
                }
                Err(e) => break Err(e),
            }
            $crate::mongo::backoff(attempt).await;
        }
    }};
}

pub use crate::transaction;

/// Commits, retrying while the result is unknown.
pub async fn commit(session: &mut ClientSession) -> Result<(), StoreError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match session.commit_transaction().await {
            Ok(()) => return Ok(()),
            Err(e) if tries < 5 && e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether running the transaction again may succeed (it lost a write conflict).
pub fn is_transient(e: &StoreError) -> bool {
    matches!(e, StoreError::Mongo(e) if e.contains_label(TRANSIENT_TRANSACTION_ERROR))
}

/// A short, growing, jittered pause before running a conflicted transaction again.
pub async fn backoff(attempt: u32) {
    let ms = u64::from(attempt.min(10)) * 2 + rand::random::<u64>() % 5;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Whether `e` is a unique-index violation (code 11000), from a single write, a command or any
/// write of an `insertMany`.
pub fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|w| w.code == DUPLICATE_KEY)),
        _ => false,
    }
}

/// Whether `e` says the collection exists already (code 48).
pub fn is_namespace_exists(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Command(c) if c.code == 48)
}

/// Whether `e` means the server could not be reached (worth a retry later), not that it refused
/// the operation.
pub fn is_unreachable(e: &mongodb::error::Error) -> bool {
    matches!(
        *e.kind,
        ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
    )
}

/// Bytes as a generic BSON binary.
pub fn binary(bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

/// A stored field that is not what the schema promises.
pub fn corrupt(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("field {key}: {e}"))
}

/// An unsigned number as stored (Int64), refused above `i64::MAX`.
pub fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} is out of range")))
}

/// Typed reads of a stored document's fields; a missing or mistyped one is
/// [`StoreError::Corrupt`].
pub trait Fields {
    /// A string field.
    fn str_field(&self, key: &str) -> Result<&str, StoreError>;
    /// An integer field (Int64, or Int32 as older writes may have left it).
    fn i64_field(&self, key: &str) -> Result<i64, StoreError>;
    /// An integer field that may be absent or null.
    fn opt_i64_field(&self, key: &str) -> Result<Option<i64>, StoreError>;
    /// A non-negative integer field.
    fn u64_field(&self, key: &str) -> Result<u64, StoreError>;
    /// A non-negative integer field that fits in 32 bits.
    fn u32_field(&self, key: &str) -> Result<u32, StoreError>;
    /// A generic binary field.
    fn bytes_field(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// A string field, owned.
    fn string_field(&self, key: &str) -> Result<String, StoreError> {
        self.str_field(key).map(str::to_owned)
    }
}

impl Fields for Document {
    fn str_field(&self, key: &str) -> Result<&str, StoreError> {
        self.get_str(key).map_err(|e| corrupt(key, e))
    }

    fn i64_field(&self, key: &str) -> Result<i64, StoreError> {
        match self.get(key) {
            Some(Bson::Int64(v)) => Ok(*v),
            Some(Bson::Int32(v)) => Ok(i64::from(*v)),
            other => Err(corrupt(
                key,
                format!("expected an integer, found {other:?}"),
            )),
        }
    }

    fn opt_i64_field(&self, key: &str) -> Result<Option<i64>, StoreError> {
        match self.get(key) {
            None | Some(Bson::Null) => Ok(None),
            Some(_) => self.i64_field(key).map(Some),
        }
    }

    fn u64_field(&self, key: &str) -> Result<u64, StoreError> {
        u64::try_from(self.i64_field(key)?).map_err(|e| corrupt(key, e))
    }

    fn u32_field(&self, key: &str) -> Result<u32, StoreError> {
        u32::try_from(self.i64_field(key)?).map_err(|e| corrupt(key, e))
    }

    fn bytes_field(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.get_binary_generic(key)
            .cloned()
            .map_err(|e| corrupt(key, e))
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn fields_name_what_is_wrong() {
        let d =
            doc! { "s": "x", "n": 5_i32, "big": -1_i64, "b": binary(b"ab"), "none": Bson::Null };
        assert_eq!(d.str_field("s").expect("str"), "x");
        assert_eq!(d.i64_field("n").expect("int32 widens"), 5);
        assert_eq!(d.u32_field("n").expect("u32"), 5);
        assert_eq!(d.opt_i64_field("none").expect("null"), None);
        assert_eq!(d.opt_i64_field("missing").expect("absent"), None);
        assert_eq!(d.bytes_field("b").expect("bytes"), b"ab");
        let err = d.u64_field("big").expect_err("negative");
        assert!(err.to_string().contains("field big"), "{err}");
        let err = d.i64_field("s").expect_err("a string is no integer");
        assert!(err.to_string().contains("field s"), "{err}");
        assert!(d.str_field("missing").is_err());
    }
}
