//! The document database: values, queries, updates, projections, and the engine over the KV store.
pub mod aggregate;
pub mod database;
pub mod documents;
pub mod error;
pub mod geo;
pub mod index;
pub mod kv;
pub mod projection;
pub mod query;
mod scan;
pub mod schema;
pub mod sled_kv;
pub mod transaction;
pub mod update;
pub mod value;
mod wal;

pub use database::{Database, Find, FindParts, Limits, DEFAULT_ENV};
pub use documents::{Budget, GeoHit, GeoNear, UpdateResult};
pub use error::DbError;
pub use transaction::{Transactions, Tx, Txn, TxnLimits};
