//! Auth's records and their keys in the shared KV store (all under `a/`):
//!
//! | key | value |
//! |---|---|
//! | `a/usr/{env}/{uid}` | [`UserRecord`] |
//! | `a/idx/{env}/username/{lowercased}` | uid |
//! | `a/idx/{env}/email/{lowercased}` | uid |
//! | `a/idx/{env}/openid/{openid}` | uid (WeChat) |
//! | `a/idx/{env}/custom/{custom id}` | uid (custom tickets) |
//! | `a/ses/{env}/{uid}/{sid}` | [`SessionRecord`]: exists while the session is valid |
//! | `a/rt/{sha256(refresh token)}` | [`RefreshRecord`] |
//! | `a/adm/{lowercased email}` | [`AdminRecord`] |
//! | `a/key/{id}` | [`ApiKeyRecord`] |
//! | `a/keyh/{sha256(key)}` | API key id |

use std::ops::ControlFlow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Auth, AuthError, LoginType};
use crate::db::kv::Op;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub uid: String,
    pub env: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// argon2id PHC string; never leaves the auth module.
    #[serde(default)]
    pub password: Option<String>,
    pub anonymous: bool,
    /// How the account was created (or upgraded).
    pub login_type: LoginType,
    #[serde(default)]
    pub openid: Option<String>,
    #[serde(default)]
    pub unionid: Option<String>,
    #[serde(default)]
    pub custom_id: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub login_type: LoginType,
    pub created_at: i64,
    /// When its newest refresh token expires (ms).
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub env: String,
    pub uid: String,
    /// The session (token family) this token belongs to.
    pub sid: String,
    pub login_type: LoginType,
    pub expires_at: i64,
    /// Already exchanged once: presenting it again revokes the session.
    pub used: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminRecord {
    pub email: String,
    pub password: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    /// sha256 of the key, hex.
    pub hash: String,
    /// The first characters of the key, to recognise it in a list.
    pub prefix: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy)]
pub enum Index {
    Username,
    Email,
    OpenId,
    Custom,
}

impl Index {
    fn as_str(self) -> &'static str {
        match self {
            Index::Username => "username",
            Index::Email => "email",
            Index::OpenId => "openid",
            Index::Custom => "custom",
        }
    }

    /// Usernames and emails are unique without regard to case.
    fn normalize(self, value: &str) -> String {
        match self {
            Index::Username | Index::Email => value.to_lowercase(),
            Index::OpenId | Index::Custom => value.to_string(),
        }
    }
}

pub fn user_key(env: &str, uid: &str) -> Vec<u8> {
    format!("a/usr/{env}/{uid}").into_bytes()
}

pub fn users_prefix(env: &str) -> Vec<u8> {
    format!("a/usr/{env}/").into_bytes()
}

pub fn index_key(env: &str, index: Index, value: &str) -> Vec<u8> {
    format!("a/idx/{env}/{}/{}", index.as_str(), index.normalize(value)).into_bytes()
}

pub fn session_key(env: &str, uid: &str, sid: &str) -> Vec<u8> {
    format!("a/ses/{env}/{uid}/{sid}").into_bytes()
}

pub fn sessions_prefix(env: &str, uid: &str) -> Vec<u8> {
    format!("a/ses/{env}/{uid}/").into_bytes()
}

pub const SESSIONS_ALL: &[u8] = b"a/ses/";
pub const REFRESH_ALL: &[u8] = b"a/rt/";
pub const ADMINS_ALL: &[u8] = b"a/adm/";
pub const API_KEYS_ALL: &[u8] = b"a/key/";

pub fn refresh_key(token_hash: &str) -> Vec<u8> {
    format!("a/rt/{token_hash}").into_bytes()
}

pub fn admin_key(email: &str) -> Vec<u8> {
    format!("a/adm/{}", email.to_lowercase()).into_bytes()
}

pub fn api_key_key(id: &str) -> Vec<u8> {
    format!("a/key/{id}").into_bytes()
}

pub fn api_key_hash_key(hash: &str) -> Vec<u8> {
    format!("a/keyh/{hash}").into_bytes()
}

pub fn put<T: Serialize>(key: Vec<u8>, value: &T) -> Result<Op, AuthError> {
    let bytes = serde_json::to_vec(value).map_err(|e| AuthError::Internal(format!("encode record: {e}")))?;
    Ok(Op::Put(key, bytes))
}

pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, AuthError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AuthError::Internal(format!("corrupt auth record {}: {e}", String::from_utf8_lossy(key))))
}

impl Auth {
    pub(super) fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, AuthError> {
        match self.kv.get(key)? {
            Some(bytes) => decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn get_string(&self, key: &[u8]) -> Result<Option<String>, AuthError> {
        Ok(self.kv.get(key)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    pub(super) fn user_record(&self, env: &str, uid: &str) -> Result<Option<UserRecord>, AuthError> {
        self.get(&user_key(env, uid))
    }

    pub(super) fn lookup(&self, env: &str, index: Index, value: &str) -> Result<Option<UserRecord>, AuthError> {
        match self.get_string(&index_key(env, index, value))? {
            Some(uid) => self.user_record(env, &uid),
            None => Ok(None),
        }
    }

    /// Keys under `prefix`, in order.
    pub(super) fn keys_under(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, AuthError> {
        let mut out = Vec::new();
        self.kv.scan_prefix(prefix, &mut |k, _| {
            out.push(k.to_vec());
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    /// Values under `prefix`, decoded, in key order.
    pub(super) fn records_under<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, AuthError> {
        let mut out = Vec::new();
        let mut bad = None;
        self.kv.scan_prefix(prefix, &mut |k, v| {
            match decode(k, v) {
                Ok(r) => out.push(r),
                Err(e) => bad = Some(e),
            }
            Ok(ControlFlow::Continue(()))
        })?;
        match bad {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Drops sessions and refresh tokens that expired (run at start). Returns how many went.
    pub fn sweep_expired(&self) -> Result<usize, AuthError> {
        let now = crate::db::database::now_ms();
        let mut ops = Vec::new();
        for prefix in [SESSIONS_ALL, REFRESH_ALL] {
            self.kv.scan_prefix(prefix, &mut |k, v| {
                let expires_at = serde_json::from_slice::<serde_json::Value>(v)
                    .ok()
                    .and_then(|v| v["expires_at"].as_i64())
                    .unwrap_or(0);
                if expires_at <= now {
                    ops.push(Op::Delete(k.to_vec()));
                }
                Ok(ControlFlow::Continue(()))
            })?;
        }
        let n = ops.len();
        if n > 0 {
            // not waited for: if these deletes are lost in a crash, the next start drops them again
            self.apply(ops)?;
        }
        Ok(n)
    }
}
