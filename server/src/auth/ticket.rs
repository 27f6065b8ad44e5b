//! Custom-ticket sign-in: the per-env ticket signing key (32 random bytes kept in the KV under
//! `a/ticketkey/{env}`, created on first use), ticket verification (HS256 JWT
//! `{uid, env, iat, exp}`, at most 10 minutes long), and [`ProviderError`], the errors of the
//! external sign-in flows (custom tickets and WeChat).

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::{Auth, AuthError, Credentials, External};
use crate::db::database::now_ms;
use crate::db::kv::Commit;
use crate::error::{ApiError, Code};

/// Longest a ticket may live (`exp - iat`), in seconds.
pub const TICKET_MAX_TTL_SECS: u64 = 600;
/// How far in the future a ticket's `iat` may be (clock skew between the developer's backend and
/// this server), in seconds.
const MAX_CLOCK_SKEW_SECS: u64 = 60;
const TICKET_KEY_LEN: usize = 32;

/// Errors of custom-ticket and WeChat sign-in, each mapped to a row of the error table.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// A ticket or provider token that is malformed, forged, expired or for another env; or a
    /// WeChat code WeChat refused (`invalid_grant`).
    #[error("{0}")]
    InvalidGrant(String),
    /// Bad input: a missing field, an appid that is not the env's, WeChat not configured.
    #[error("{0}")]
    InvalidParam(String),
    /// WeChat rate-limited this appid (errcode 45011).
    #[error("{0}")]
    RateLimited(String),
    /// WeChat is busy (errcode -1), unreachable, or answered something unusable.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl ProviderError {
    pub fn code(&self) -> Code {
        match self {
            ProviderError::InvalidGrant(_) => Code::InvalidCredentials,
            ProviderError::InvalidParam(_) => Code::InvalidParam,
            ProviderError::RateLimited(_) => Code::RateLimited,
            ProviderError::Unavailable(_) => Code::Unavailable,
            ProviderError::Auth(e) => e.code(),
        }
    }
}

impl From<crate::db::DbError> for ProviderError {
    fn from(e: crate::db::DbError) -> Self {
        ProviderError::Auth(AuthError::Db(e))
    }
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::Auth(a) => ApiError::from(a),
            other => ApiError::new(other.code(), other.to_string()),
        }
    }
}

/// What a custom ticket carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketClaims {
    pub uid: String,
    pub env: String,
    pub iat: u64,
    pub exp: u64,
}

/// A ticket uid: 1–64 of `A-Za-z0-9_-`.
pub fn valid_ticket_uid(uid: &str) -> bool {
    (1..=64).contains(&uid.len()) && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn ticket_key_key(env: &str) -> Vec<u8> {
    format!("a/ticketkey/{env}").into_bytes()
}

pub(super) fn now_secs() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap_or(0)
}

impl Auth {
    /// The env's ticket signing key, created (32 random bytes) on first use. For the admin who
    /// downloads it to mint tickets in their own backend.
    pub async fn ticket_key(&self, env: &str) -> Result<Vec<u8>, AuthError> {
        self.db.check_env(env)?;
        let (key, commit) = self.ticket_key_or_create(env)?;
        commit.wait().await?;
        Ok(key)
    }

    fn ticket_key_or_create(&self, env: &str) -> Result<(Vec<u8>, Commit), AuthError> {
        let _guard = self.lock()?;
        if let Some(key) = self.stored_ticket_key(env)? {
            return Ok((key, Commit::none()));
        }
        let key: [u8; TICKET_KEY_LEN] = rand::random();
        self.apply(vec![crate::db::kv::Op::Put(ticket_key_key(env), key.to_vec())])?;
        tracing::info!(env, "generated a custom-ticket signing key");
        Ok((key.to_vec(), self.kv.commit()))
    }

    fn stored_ticket_key(&self, env: &str) -> Result<Option<Vec<u8>>, AuthError> {
        match self.kv.get(&ticket_key_key(env))? {
            Some(k) if k.len() == TICKET_KEY_LEN => Ok(Some(k)),
            Some(k) => Err(AuthError::Internal(format!(
                "the ticket key of env `{env}` holds {} bytes, not {TICKET_KEY_LEN}",
                k.len()
            ))),
            None => Ok(None),
        }
    }

    /// Verifies a custom ticket for `env` and returns its uid: HS256 only, signed with the env's
    /// ticket key, not expired, `env` equal to this env, at most 10 minutes long.
    pub fn verify_ticket(&self, env: &str, ticket: &str) -> Result<String, ProviderError> {
        let bad = |why: &str| ProviderError::InvalidGrant(format!("invalid custom ticket: {why}"));
        self.db.check_env(env)?;
        // No key yet: nobody can have signed a valid ticket (and a sign-in attempt never creates one).
        let Some(key) = self.stored_ticket_key(env)? else {
            return Err(bad(
                "this environment has no ticket key yet; an admin downloads it first",
            ));
        };
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp", "iat"]);
        let claims = match jsonwebtoken::decode::<TicketClaims>(ticket, &DecodingKey::from_secret(&key), &v) {
            Ok(data) => data.claims,
            Err(e) => {
                return Err(match e.kind() {
                    ErrorKind::ExpiredSignature => bad("it has expired"),
                    ErrorKind::InvalidSignature => bad("the signature does not match this environment's key"),
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => bad("it is not signed with HS256"),
                    _ => bad("it is malformed (a JWT with claims uid, env, iat, exp is expected)"),
                })
            }
        };
        if claims.env != env {
            return Err(bad("it was issued for another environment"));
        }
        if claims.exp <= claims.iat || claims.exp - claims.iat > TICKET_MAX_TTL_SECS {
            return Err(bad("exp must be after iat and at most 600 seconds after it"));
        }
        if claims.iat > now_secs() + MAX_CLOCK_SKEW_SECS {
            return Err(bad("iat is in the future"));
        }
        if !valid_ticket_uid(&claims.uid) {
            return Err(bad("uid must be 1-64 of A-Za-z0-9_-"));
        }
        Ok(claims.uid)
    }

    /// `POST /auth/v1/signin/custom`: signs in (creating on first sign-in) the user of a ticket.
    pub async fn sign_in_custom_ticket(&self, env: &str, ticket: &str) -> Result<Credentials, ProviderError> {
        let uid = self.verify_ticket(env, ticket)?;
        Ok(self.sign_in_external(env, External::Custom { uid }).await?)
    }
}
