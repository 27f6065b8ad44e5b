//! Token formats: the signing-key file, JWT claims (HS256 only), opaque refresh tokens, server API
//! keys, random ids, and the sha256 under which secrets are stored.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Auth, AuthError, LoginType};

/// The signing key, relative to the data dir.
pub const KEY_FILE: &str = "keys/jwt.key";
const KEY_LEN: usize = 32;

pub const TYP_ACCESS: &str = "access";
pub const TYP_ADMIN: &str = "admin";
pub const API_KEY_PREFIX: &str = "lb_";

/// Claims of both token kinds. Access: `{sub: uid, env, typ: "access", lt, oid?, sid, iat, exp}`;
/// admin: `{sub: email, typ: "admin", iat, exp}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub typ: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<LoginType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub iat: u64,
    pub exp: u64,
}

/// Reads the signing key, creating it (32 random bytes, mode 0600, in a 0700 `keys/` dir) on first
/// start.
pub fn load_or_create_key(dir: &Path) -> Result<Vec<u8>, AuthError> {
    let path = dir.join(KEY_FILE);
    let fail = |what: &str, e: std::io::Error| AuthError::Internal(format!("{what} {}: {e}", path.display()));
    match std::fs::File::open(&path) {
        Ok(mut f) => {
            let mut key = Vec::new();
            f.read_to_end(&mut key).map_err(|e| fail("cannot read", e))?;
            if key.len() != KEY_LEN {
                return Err(AuthError::Internal(format!(
                    "{} must hold exactly {KEY_LEN} bytes; it holds {}",
                    path.display(),
                    key.len()
                )));
            }
            tighten_permissions(&path);
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keys_dir = path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            create_private_dir(&keys_dir).map_err(|e| fail("cannot create the directory of", e))?;
            let key: [u8; KEY_LEN] = rand::random();
            let mut f = create_private_file(&path).map_err(|e| fail("cannot create", e))?;
            f.write_all(&key)
                .and_then(|()| f.sync_all())
                .map_err(|e| fail("cannot write", e))?;
            tracing::info!(path = %path.display(), "generated a new token signing key");
            Ok(key.to_vec())
        }
        Err(e) => Err(fail("cannot open", e)),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

/// A key file readable by others is put back to 0600 (with a warning).
#[cfg(unix)]
fn tighten_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "signing key was readable by others; setting mode 0600");
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
}

#[cfg(not(unix))]
fn tighten_permissions(_: &Path) {}

/// 16 random bytes as 32 hex digits (user ids, session ids, API key ids use shorter slices).
pub fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// 32 random bytes, base64url without padding (refresh tokens; API keys add `lb_`).
pub fn random_secret() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

pub fn sha256_hex(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two secrets (or their hashes).
pub fn secure_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Auth {
    pub(super) fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| AuthError::Internal(format!("cannot sign a token: {e}")))
    }

    /// Verifies the signature (HS256 only: `alg: none` and every other algorithm fail) and, when
    /// `check_exp`, the expiry (no leeway).
    pub(super) fn decode(&self, token: &str, check_exp: bool) -> Result<Claims, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.validate_exp = check_exp;
        v.validate_aud = false;
        if !check_exp {
            v.required_spec_claims.clear();
        }
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &v) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::TokenExpired,
                ErrorKind::InvalidSignature => AuthError::Unauthenticated("the token's signature is invalid".into()),
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::Unauthenticated("the token is not signed with HS256".into())
                }
                _ => AuthError::Unauthenticated("the token is malformed".into()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = load_or_create_key(dir.path()).unwrap();
        let k2 = load_or_create_key(dir.path()).unwrap();
        assert_eq!(k1.len(), 32);
        assert_eq!(k1, k2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let dmode = std::fs::metadata(dir.path().join("keys")).unwrap().permissions().mode();
            assert_eq!(dmode & 0o777, 0o700);
        }
    }

    #[test]
    fn a_truncated_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create_key(dir.path()).unwrap();
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(load_or_create_key(dir.path()).is_err());
    }

    #[test]
    fn secrets_compare_in_constant_time_and_correctly() {
        assert!(secure_eq("abc", "abc"));
        assert!(!secure_eq("abc", "abd"));
        assert!(!secure_eq("abc", "abcd"));
        assert_eq!(sha256_hex("abc").len(), 64);
        assert_ne!(random_secret(), random_secret());
        assert_eq!(random_secret().len(), 43);
    }
}
