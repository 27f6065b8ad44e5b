//! Errors of authentication, each mapped to one row of the error table.

use crate::db::DbError;
use crate::error::{ApiError, Code};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Bad input: a missing field, a short password, an invalid username or email.
    #[error("{0}")]
    InvalidParam(String),
    /// No valid token (missing, malformed, wrong signature or algorithm, revoked, other env, user
    /// disabled or deleted).
    #[error("{0}")]
    Unauthenticated(String),
    #[error("the access token has expired")]
    TokenExpired,
    #[error("wrong username, email or password")]
    InvalidCredentials,
    /// A signed-in user's current password (sudo, password change) is wrong.
    #[error("the password is wrong")]
    WrongPassword,
    /// The account has no password (anonymous, WeChat, custom ticket).
    #[error("{0}")]
    PasswordNotSet(String),
    #[error("{0}")]
    InvalidRefreshToken(String),
    /// A valid token without the right to do this (a user token on an admin route).
    #[error("{0}")]
    AdminRequired(String),
    #[error("this user has been disabled")]
    UserDisabled,
    #[error("user `{0}` does not exist")]
    UserNotFound(String),
    #[error("{0}")]
    UserExists(String),
    #[error("an admin with email `{0}` already exists")]
    AdminExists(String),
    #[error("API key `{0}` does not exist")]
    ApiKeyNotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
    /// Key file, hashing or record decoding failures: logged, never sent.
    #[error("{0}")]
    Internal(String),
}

impl AuthError {
    pub fn code(&self) -> Code {
        match self {
            AuthError::InvalidParam(_) => Code::InvalidParam,
            AuthError::Unauthenticated(_) => Code::Unauthenticated,
            AuthError::TokenExpired => Code::AccessTokenExpired,
            AuthError::InvalidCredentials | AuthError::WrongPassword => Code::InvalidCredentials,
            AuthError::PasswordNotSet(_) => Code::PasswordNotSet,
            AuthError::InvalidRefreshToken(_) => Code::InvalidRefreshToken,
            AuthError::AdminRequired(_) => Code::AdminRequired,
            AuthError::UserDisabled => Code::UserDisabled,
            AuthError::UserNotFound(_) => Code::UserNotExist,
            AuthError::UserExists(_) => Code::UserExists,
            AuthError::AdminExists(_) => Code::AdminExists,
            AuthError::ApiKeyNotFound(_) => Code::NotFound,
            AuthError::Db(e) => e.code(),
            AuthError::Internal(_) => Code::Internal,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Db(db) => ApiError::from(db),
            AuthError::Internal(cause) => {
                tracing::error!(%cause, "auth internal error");
                ApiError::new(Code::Internal, "internal error")
            }
            other => ApiError::new(other.code(), other.to_string()),
        }
    }
}
