//! Admins (email + password, argon2id), admin tokens, and server API keys (`lb_…`, shown once,
//! stored as sha256). Both admin tokens and API keys act as [`super::Caller::Admin`].

use std::ops::ControlFlow;

use serde::Serialize;

use crate::db::database::now_ms;
use crate::db::kv::{Commit, Op};

use super::password::{self, check_strength};
use super::store::{
    admin_key, api_key_hash_key, api_key_key, put, AdminRecord, ApiKeyRecord, ADMINS_ALL, API_KEYS_ALL,
};
use super::tokens::{random_id, random_secret, secure_eq, sha256_hex, Claims, API_KEY_PREFIX, TYP_ADMIN};
use super::users::validate_email;
use super::{Auth, AuthError};

/// What `POST /admin/v1/login` returns.
#[derive(Debug, Clone, Serialize)]
pub struct AdminToken {
    pub token: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// An API key as lists show it (never the key).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    pub created_at: i64,
}

/// A new API key: `key` is shown this once and never stored.
#[derive(Debug, Clone, Serialize)]
pub struct NewApiKey {
    #[serde(flatten)]
    pub info: ApiKeyInfo,
    pub key: String,
}

impl From<ApiKeyRecord> for ApiKeyInfo {
    fn from(r: ApiKeyRecord) -> ApiKeyInfo {
        ApiKeyInfo {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            created_at: r.created_at,
        }
    }
}

fn validate_key_name(name: &str) -> Result<(), AuthError> {
    let n = name.chars().count();
    if (1..=64).contains(&n) && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(AuthError::InvalidParam("an API key name has 1-64 characters".into()))
    }
}

impl Auth {
    /// Whether any admin exists (the first one may be created without a token from loopback).
    pub fn has_admin(&self) -> Result<bool, AuthError> {
        let mut any = false;
        self.kv.scan_prefix(ADMINS_ALL, &mut |_, _| {
            any = true;
            Ok(ControlFlow::Break(()))
        })?;
        Ok(any)
    }

    /// Creates an admin (hashing on a blocking thread).
    pub async fn create_admin(&self, email: &str, password: &str) -> Result<(), AuthError> {
        validate_email(email)?;
        check_strength(password)?;
        let hash = self.hasher.hash(password).await?;
        self.insert_admin(email, hash)?.wait().await?;
        Ok(())
    }

    /// [`Auth::create_admin`] for callers outside an async runtime (the CLI on the data dir).
    pub fn create_admin_blocking(&self, email: &str, password: &str) -> Result<(), AuthError> {
        validate_email(email)?;
        check_strength(password)?;
        let hash = password::hash_blocking(password)?;
        self.insert_admin(email, hash)?.wait_blocking()?;
        Ok(())
    }

    fn insert_admin(&self, email: &str, hash: String) -> Result<Commit, AuthError> {
        let _guard = self.lock()?;
        let key = admin_key(email);
        if self.kv.get(&key)?.is_some() {
            return Err(AuthError::AdminExists(email.to_string()));
        }
        let record = AdminRecord {
            email: email.to_string(),
            password: hash,
            created_at: now_ms(),
        };
        self.apply(vec![put(key, &record)?])?;
        Ok(self.kv.commit())
    }

    /// `POST /admin/v1/login`: an admin token for a right email and password. A wrong email and a
    /// wrong password take the same time and give the same error.
    pub async fn admin_login(&self, email: &str, password: &str) -> Result<AdminToken, AuthError> {
        if email.is_empty() || email.len() > 254 || password.len() > 4 * password::MAX_PASSWORD_LEN {
            return Err(AuthError::InvalidCredentials);
        }
        let admin = self.get::<AdminRecord>(&admin_key(email))?;
        let phc = admin.as_ref().map(|a| a.password.clone());
        if !self.hasher.verify(password, phc).await? {
            return Err(AuthError::InvalidCredentials);
        }
        let Some(admin) = admin else {
            return Err(AuthError::InvalidCredentials);
        };
        let iat = u64::try_from(now_ms() / 1000).unwrap_or(0);
        let ttl = self.settings.admin_token_ttl_secs;
        let claims = Claims {
            sub: admin.email.to_lowercase(),
            typ: TYP_ADMIN.into(),
            env: None,
            lt: None,
            oid: None,
            sid: None,
            iat,
            exp: iat.saturating_add(ttl),
        };
        Ok(AdminToken {
            token: self.sign(&claims)?,
            expires_in: ttl,
        })
    }

    /// An admin token is valid while its admin exists.
    pub(super) fn verify_admin_claims(&self, claims: &Claims) -> Result<(), AuthError> {
        if self.kv.get(&admin_key(&claims.sub))?.is_none() {
            return Err(AuthError::Unauthenticated(
                "the admin of this token no longer exists".into(),
            ));
        }
        Ok(())
    }

    /// Creates a server API key named `name`. Wait for the [`Commit`] before showing the key.
    pub fn create_api_key(&self, name: &str) -> Result<(NewApiKey, Commit), AuthError> {
        validate_key_name(name)?;
        let key = format!("{API_KEY_PREFIX}{}", random_secret());
        let hash = sha256_hex(&key);
        let record = ApiKeyRecord {
            id: random_id()[..16].to_string(),
            name: name.to_string(),
            hash: hash.clone(),
            prefix: key.chars().take(API_KEY_PREFIX.len() + 6).collect(),
            created_at: now_ms(),
        };
        let ops = vec![
            put(api_key_key(&record.id), &record)?,
            Op::Put(api_key_hash_key(&hash), record.id.clone().into_bytes()),
        ];
        self.apply(ops)?;
        let created = NewApiKey {
            info: ApiKeyInfo::from(record),
            key,
        };
        Ok((created, self.kv.commit()))
    }

    pub fn api_keys(&self) -> Result<Vec<ApiKeyInfo>, AuthError> {
        let records: Vec<ApiKeyRecord> = self.records_under(API_KEYS_ALL)?;
        Ok(records.into_iter().map(ApiKeyInfo::from).collect())
    }

    /// Revokes an API key by id: it stops working at once.
    pub fn revoke_api_key(&self, id: &str) -> Result<Commit, AuthError> {
        let key = api_key_key(id);
        let Some(record) = self.get::<ApiKeyRecord>(&key)? else {
            return Err(AuthError::ApiKeyNotFound(id.chars().take(64).collect()));
        };
        self.apply(vec![Op::Delete(key), Op::Delete(api_key_hash_key(&record.hash))])?;
        Ok(self.kv.commit())
    }

    pub(super) fn verify_api_key(&self, key: &str) -> Result<(), AuthError> {
        let invalid = || AuthError::Unauthenticated("the API key is invalid or revoked".into());
        if key.len() > 256 {
            return Err(invalid());
        }
        let hash = sha256_hex(key);
        let Some(id) = self.get_string(&api_key_hash_key(&hash))? else {
            return Err(invalid());
        };
        match self.get::<ApiKeyRecord>(&api_key_key(&id))? {
            Some(record) if secure_eq(&record.hash, &hash) => Ok(()),
            _ => Err(invalid()),
        }
    }
}
