//! Authentication: end users per env (anonymous, username/email + password, external identities
//! from custom tickets and WeChat), password changes, their sessions and tokens; admins, admin tokens and server API
//! keys; and the verification every protocol uses to turn a bearer token into a [`Caller`].
//!
//! Tokens: access and admin tokens are HS256 JWTs signed with a 32-byte key kept in
//! `<data dir>/keys/jwt.key` (mode 0600, generated on first start). Refresh tokens are opaque,
//! stored hashed, rotate on every use, and presenting a used one revokes its whole session.
//! Every access token names its session (`sid`); verifying a user token reads the user (deleted or
//! disabled users stop at once) and the session (revoked or signed-out sessions stop at once).
//!
//! Storage: everything lives in the shared KV store under `a/` (layout in `store.rs` and
//! docs/auth.md). Passwords are argon2id hashes computed on blocking threads, at most two at a time.

mod admins;
mod cache;
mod error;
mod password;
mod password_change;
mod sessions;
mod store;
mod ticket;
mod tokens;
mod users;
mod wechat;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::db::kv::{Kv, Op};
use crate::db::Database;

pub use admins::{AdminToken, ApiKeyInfo, NewApiKey};
pub use error::AuthError;
pub use password::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
pub use password_change::{PasswordProof, SUDO_TOKEN_TTL_SECS};
pub use ticket::{ProviderError, TICKET_MAX_TTL_SECS};
pub use users::{External, SignUp, User, UserPage};
pub use wechat::{WeChatSettings, PROVIDER_TOKEN_TTL_SECS};

/// Who is making a request, as the protocols and the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An admin token or a server API key: full rights, no rules.
    Admin,
    /// A signed-in end user of one env.
    User(Identity),
    /// No token at all.
    Guest,
}

impl Caller {
    /// The id rules and `_openid` use for this caller (none for admins and guests).
    pub fn caller_id(&self) -> Option<&str> {
        match self {
            Caller::User(id) => Some(id.caller_id()),
            Caller::Admin | Caller::Guest => None,
        }
    }
}

/// A verified end user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub env: String,
    pub uid: String,
    /// WeChat openid, for users who signed in with WeChat.
    pub openid: Option<String>,
    pub unionid: Option<String>,
    /// How this session signed in.
    pub login_type: LoginType,
    /// Still anonymous (not upgraded by sign-up).
    pub anonymous: bool,
}

impl Identity {
    /// The id used for `_openid`, `'{openid}'` and `auth.openid`: the openid if the user has one
    /// (mini-program identity), else the uid (web identity), as in CloudBase.
    pub fn caller_id(&self) -> &str {
        self.openid.as_deref().unwrap_or(&self.uid)
    }
}

/// How a user signed in; serialized as CloudBase's strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginType {
    #[serde(rename = "ANONYMOUS")]
    Anonymous,
    #[serde(rename = "USERNAME")]
    Username,
    #[serde(rename = "EMAIL")]
    Email,
    #[serde(rename = "CUSTOM")]
    Custom,
    #[serde(rename = "WECHAT-OPEN")]
    WeChatOpen,
}

impl LoginType {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginType::Anonymous => "ANONYMOUS",
            LoginType::Username => "USERNAME",
            LoginType::Email => "EMAIL",
            LoginType::Custom => "CUSTOM",
            LoginType::WeChatOpen => "WECHAT-OPEN",
        }
    }
}

/// What every sign-in and refresh returns (CloudBase's credentials object).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Credentials {
    /// Always `Bearer`.
    pub token_type: &'static str,
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// `anonymous` for anonymous users, else `user`.
    pub scope: &'static str,
    /// The user id.
    pub sub: String,
}

/// Token lifetimes (restart-only options of the `Config`).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub admin_token_ttl_secs: u64,
    /// A server API key from the configuration (`--admin-key`), if any.
    pub static_admin_key: Option<String>,
}

impl AuthSettings {
    pub fn from_config(config: &Config) -> AuthSettings {
        AuthSettings {
            access_token_ttl_secs: config.access_token_ttl,
            refresh_token_ttl_secs: config.refresh_token_ttl,
            admin_token_ttl_secs: config.admin_token_ttl,
            static_admin_key: config.admin_key.clone(),
        }
    }
}

/// The authentication service of one data dir.
pub struct Auth {
    kv: Arc<dyn Kv>,
    db: Arc<Database>,
    settings: AuthSettings,
    encoding: EncodingKey,
    decoding: DecodingKey,
    hasher: password::Hasher,
    /// Bearer tokens verified a moment ago, invalidated by every write that may revoke one.
    verified: cache::TokenCache,
    /// Serializes read-check-write sequences (uniqueness of usernames, refresh rotation). Never
    /// held across an await or a password hash.
    write_lock: Mutex<()>,
}

impl Auth {
    /// Opens auth over the database's store; loads (or on first start creates) the signing key
    /// in `<dir>/keys/jwt.key`, and drops expired sessions and refresh tokens.
    pub fn open(db: Arc<Database>, dir: &Path, settings: AuthSettings) -> Result<Auth, AuthError> {
        let key = tokens::load_or_create_key(dir)?;
        let auth = Auth {
            kv: db.kv(),
            db,
            settings,
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            hasher: password::Hasher::new(),
            verified: cache::TokenCache::default(),
            write_lock: Mutex::new(()),
        };
        let swept = auth.sweep_expired()?;
        if swept > 0 {
            tracing::info!(swept, "dropped expired sessions and refresh tokens");
        }
        Ok(auth)
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Verifies an `Authorization: Bearer` token of any kind: an admin JWT or a server API key
    /// (→ [`Caller::Admin`]) or a user access token (→ [`Caller::User`]; the user must still exist,
    /// not be disabled, and the token's session must not be revoked).
    pub fn verify_bearer(&self, token: &str) -> Result<Caller, AuthError> {
        if let Some(key) = &self.settings.static_admin_key {
            if bool::from(subtle::ConstantTimeEq::ct_eq(key.as_bytes(), token.as_bytes())) {
                return Ok(Caller::Admin);
            }
        }
        if let Some(caller) = self.verified.get(token) {
            return Ok(caller);
        }
        let epoch = self.verified.epoch();
        let (caller, expires_in) = if token.starts_with(tokens::API_KEY_PREFIX) {
            self.verify_api_key(token)?;
            (Caller::Admin, None)
        } else {
            let claims = self.decode(token, true)?;
            let caller = match claims.typ.as_str() {
                tokens::TYP_ADMIN => self.verify_admin_claims(&claims).map(|()| Caller::Admin)?,
                tokens::TYP_ACCESS => self.verify_access_claims(&claims).map(Caller::User)?,
                _ => return Err(AuthError::Unauthenticated("not an access token".into())),
            };
            let now_ms = u64::try_from(crate::db::database::now_ms()).unwrap_or(0);
            let left = std::time::Duration::from_millis(claims.exp.saturating_mul(1000).saturating_sub(now_ms));
            (caller, Some(left))
        };
        self.verified.insert(token, caller.clone(), epoch, expires_in);
        Ok(caller)
    }

    /// Every auth write goes through here, so the verified-token cache learns of revocations.
    fn apply(&self, ops: Vec<Op>) -> Result<(), AuthError> {
        let revokes = cache::revokes(&ops);
        self.kv.apply(ops)?;
        if revokes {
            self.verified.bump();
        }
        Ok(())
    }

    /// [`Auth::verify_bearer`] for a request to `env`: a user token issued for another env is
    /// refused (admins pass in every env).
    pub fn verify_for_env(&self, token: &str, env: &str) -> Result<Caller, AuthError> {
        let caller = self.verify_bearer(token)?;
        if let Caller::User(id) = &caller {
            if id.env != env {
                return Err(AuthError::Unauthenticated(format!(
                    "the access token was issued for environment `{}`, not `{}`",
                    id.env,
                    env.chars().take(64).collect::<String>()
                )));
            }
        }
        Ok(caller)
    }

    fn lock(&self) -> Result<MutexGuard<'_, ()>, AuthError> {
        self.write_lock
            .lock()
            .map_err(|_| AuthError::Internal("auth lock poisoned".into()))
    }
}
