//! Errors of the document database, each mapped to one row of the error table.

use crate::error::{ApiError, Code};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    InvalidParam(String),
    #[error("{0}")]
    InvalidCommand(String),
    #[error("invalid GeoJSON: {0}")]
    InvalidGeometry(String),
    #[error("invalid regular expression: {0}")]
    InvalidRegex(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("nesting deeper than {0} levels")]
    NestingTooDeep(usize),
    #[error("environment `{0}` does not exist")]
    InvalidEnv(String),
    #[error("environment `{0}` already exists")]
    EnvExists(String),
    #[error("collection `{0}` does not exist")]
    CollectionNotExist(String),
    #[error("collection `{0}` already exists")]
    CollectionExists(String),
    #[error("document `{0}` does not exist")]
    DocumentNotExist(String),
    #[error("a document with _id `{0}` already exists")]
    DuplicateId(String),
    #[error("index `{index}` is unique and already holds {value}")]
    DuplicateKey { index: String, value: String },
    #[error("an index named `{0}` (or one on the same fields) already exists")]
    IndexExists(String),
    #[error("index `{0}` does not exist")]
    IndexNotExist(String),
    #[error("document is {size} bytes, more than the maximum of {max} bytes")]
    DocumentTooLarge { size: usize, max: usize },
    #[error("the result is larger than {0} bytes; narrow the query, lower limit or project fewer fields")]
    ResultTooLarge(usize),
    #[error("{0}")]
    TransactionConflict(String),
    #[error("{0}")]
    TransactionNotExist(String),
    #[error("{0}")]
    TransactionExpired(String),
    #[error("{0}")]
    TransactionTooLarge(String),
    #[error("{0}")]
    TransactionLimit(String),
    #[error("{0}")]
    NotSupported(String),
    #[error("`{stage}` needs more memory than the aggregation limit of {limit} bytes; filter earlier with $match, group on fewer distinct keys, add a $limit after $sort, or raise --aggregate-memory-limit")]
    AggregateMemory { stage: String, limit: usize },
    #[error("the database is closed")]
    Closed,
    #[error("{0}")]
    InvalidSchema(String),
    #[error("{0}")]
    SchemaViolation(String),
    #[error("storage error: {0}")]
    Storage(String),
}

impl DbError {
    pub fn code(&self) -> Code {
        match self {
            DbError::InvalidParam(_) => Code::InvalidParam,
            DbError::InvalidCommand(_) => Code::InvalidCommand,
            DbError::InvalidRegex(_) => Code::InvalidRegex,
            DbError::InvalidGeometry(_) => Code::InvalidGeometry,
            DbError::InvalidName(_) => Code::InvalidName,
            DbError::NestingTooDeep(_) => Code::NestingTooDeep,
            DbError::InvalidEnv(_) => Code::InvalidEnv,
            DbError::EnvExists(_) => Code::EnvExists,
            DbError::CollectionNotExist(_) => Code::CollectionNotExist,
            DbError::CollectionExists(_) => Code::CollectionExists,
            DbError::DocumentNotExist(_) => Code::DocumentNotExist,
            DbError::DuplicateId(_) | DbError::DuplicateKey { .. } => Code::DuplicateId,
            DbError::IndexExists(_) => Code::IndexExists,
            DbError::IndexNotExist(_) => Code::IndexNotExist,
            DbError::DocumentTooLarge { .. } => Code::DocumentTooLarge,
            DbError::ResultTooLarge(_) => Code::ResultTooLarge,
            DbError::InvalidSchema(_) => Code::InvalidSchema,
            DbError::SchemaViolation(_) => Code::SchemaViolation,
            DbError::TransactionConflict(_) => Code::TransactionConflict,
            DbError::TransactionNotExist(_) => Code::TransactionNotExist,
            DbError::TransactionExpired(_) => Code::TransactionExpired,
            DbError::TransactionTooLarge(_) => Code::TransactionTooLarge,
            DbError::TransactionLimit(_) => Code::TransactionLimit,
            DbError::NotSupported(_) => Code::NotSupported,
            DbError::AggregateMemory { .. } => Code::AggregateMemoryLimit,
            DbError::Closed => Code::Unavailable,
            DbError::Storage(_) => Code::Internal,
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        let code = e.code();
        let message = match &e {
            // internal causes are logged, never sent
            DbError::Storage(cause) => {
                tracing::error!(%cause, "storage error");
                "internal storage error".to_string()
            }
            other => other.to_string(),
        };
        let err = ApiError::new(code, message);
        match e {
            DbError::TransactionLimit(_) => err.with_retry_after(1),
            _ => err,
        }
    }
}
