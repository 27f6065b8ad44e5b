//! WeChat mini-program sign-in: per-env WeChat settings (appid + secret, under `a/wechat/{env}`),
//! the `jscode2session` exchange of a `wx.login` code (blocking HTTP on a blocking thread, 5 s
//! timeout) with WeChat's error codes mapped, and the short-lived provider token (HS256 with the
//! auth signing key, `{typ: "wx_provider", env, oid, uid?, iat, exp}`; never the session_key)
//! that `signin/with/provider` exchanges for credentials.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ticket::{now_secs, ProviderError};
use super::{store, Auth, AuthError, Credentials, External};
use crate::db::database::now_ms;

/// Lifetime of a provider token, in seconds.
pub const PROVIDER_TOKEN_TTL_SECS: u64 = 600;
/// Timeout of one `jscode2session` call.
pub const WECHAT_TIMEOUT: Duration = Duration::from_secs(5);
const TYP_PROVIDER: &str = "wx_provider";

/// The stored WeChat settings of one env (the secret is needed in clear to call WeChat).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WeChatRecord {
    appid: String,
    secret: String,
    updated_at: i64,
}

/// What admins see of an env's WeChat settings: never the secret.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WeChatSettings {
    pub env: String,
    pub appid: Option<String>,
    pub secret_set: bool,
    pub updated_at: Option<i64>,
}

/// What `jscode2session` gave for a code (the session_key is dropped on arrival).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WxIdentity {
    pub openid: String,
    pub unionid: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ProviderClaims {
    typ: String,
    env: String,
    oid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    iat: u64,
    exp: u64,
}

fn wechat_key(env: &str) -> Vec<u8> {
    format!("a/wechat/{env}").into_bytes()
}

fn valid_appid(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn valid_wx_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Calls `GET {base}/sns/jscode2session` (blocking) and maps WeChat's reply: 40029/40163 (invalid
/// or used code) → invalid grant, 45011 → rate limited, -1, network errors and anything unusable →
/// unavailable.
pub fn jscode2session(base: &str, appid: &str, secret: &str, code: &str) -> Result<WxIdentity, ProviderError> {
    let query = serde_urlencoded::to_string([
        ("appid", appid),
        ("secret", secret),
        ("js_code", code),
        ("grant_type", "authorization_code"),
    ])
    .map_err(|e| ProviderError::Unavailable(format!("cannot build the WeChat request: {e}")))?;
    let url = format!("{}/sns/jscode2session?{query}", base.trim_end_matches('/'));
    let reply: Value = match ureq::get(&url).timeout(WECHAT_TIMEOUT).call() {
        Ok(res) => res
            .into_json()
            .map_err(|e| ProviderError::Unavailable(format!("WeChat answered something that is not JSON: {e}")))?,
        Err(ureq::Error::Status(status, _)) => {
            return Err(ProviderError::Unavailable(format!("WeChat answered HTTP {status}")))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot reach WeChat");
            return Err(ProviderError::Unavailable(
                "cannot reach WeChat; try again later".into(),
            ));
        }
    };
    let errcode = reply.get("errcode").and_then(Value::as_i64).unwrap_or(0);
    let errmsg = reply
        .get("errmsg")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(200)
        .collect::<String>();
    match errcode {
        0 => {}
        40029 | 40163 => {
            return Err(ProviderError::InvalidGrant(format!(
                "WeChat refused the code ({errcode} {errmsg}): call wx.login again"
            )))
        }
        45011 => {
            return Err(ProviderError::RateLimited(format!(
                "WeChat rate-limited this mini-program ({errcode} {errmsg}); retry later"
            )))
        }
        -1 => {
            return Err(ProviderError::Unavailable(format!(
                "WeChat is busy ({errcode} {errmsg}); retry later"
            )))
        }
        other => {
            tracing::warn!(errcode = other, %errmsg, "jscode2session failed");
            return Err(ProviderError::Unavailable(format!(
                "WeChat refused the exchange ({other} {errmsg}); check the env's appid and secret"
            )));
        }
    }
    let openid = reply.get("openid").and_then(Value::as_str).unwrap_or_default();
    if !valid_wx_id(openid) {
        return Err(ProviderError::Unavailable(
            "WeChat answered without a usable openid".into(),
        ));
    }
    let unionid = match reply.get("unionid").and_then(Value::as_str) {
        None | Some("") => None,
        Some(u) if valid_wx_id(u) => Some(u.to_string()),
        Some(_) => return Err(ProviderError::Unavailable("WeChat answered an unusable unionid".into())),
    };
    Ok(WxIdentity {
        openid: openid.to_string(),
        unionid,
    })
}

impl Auth {
    /// The env's WeChat settings as admins see them (the secret only as `secret_set`).
    pub fn wechat_settings(&self, env: &str) -> Result<WeChatSettings, AuthError> {
        self.db.check_env(env)?;
        let rec: Option<WeChatRecord> = self.get(&wechat_key(env))?;
        Ok(WeChatSettings {
            env: env.to_string(),
            appid: rec.as_ref().map(|r| r.appid.clone()),
            secret_set: rec.as_ref().is_some_and(|r| !r.secret.is_empty()),
            updated_at: rec.map(|r| r.updated_at),
        })
    }

    /// Sets the env's WeChat appid and secret.
    pub async fn set_wechat_settings(&self, env: &str, appid: &str, secret: &str) -> Result<WeChatSettings, AuthError> {
        self.db.check_env(env)?;
        if !valid_appid(appid) {
            return Err(AuthError::InvalidParam(
                "`appid` must be 1-64 letters, digits or `_`".into(),
            ));
        }
        if !(1..=128).contains(&secret.len()) || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::InvalidParam(
                "`secret` must be 1-128 printable ASCII characters".into(),
            ));
        }
        let rec = WeChatRecord {
            appid: appid.to_string(),
            secret: secret.to_string(),
            updated_at: now_ms(),
        };
        self.apply(vec![store::put(wechat_key(env), &rec)?])?;
        self.kv.commit().wait().await?;
        self.wechat_settings(env)
    }

    /// `POST /auth/v1/provider/token`: exchanges a `wx.login` code through `jscode2session` at
    /// `api_base` and returns a provider token valid for [`PROVIDER_TOKEN_TTL_SECS`].
    pub async fn wechat_provider_token(
        &self,
        env: &str,
        api_base: &str,
        appid: &str,
        code: &str,
    ) -> Result<String, ProviderError> {
        self.db.check_env(env)?;
        let Some(rec) = self.get::<WeChatRecord>(&wechat_key(env))? else {
            return Err(ProviderError::InvalidParam(format!(
                "WeChat sign-in is not configured for environment `{env}`"
            )));
        };
        if rec.appid != appid {
            return Err(ProviderError::InvalidParam(format!(
                "appid `{}` is not this environment's mini-program",
                appid.chars().take(64).collect::<String>()
            )));
        }
        if code.is_empty() || code.len() > 256 {
            return Err(ProviderError::InvalidParam(
                "`provider_code` must be 1-256 characters".into(),
            ));
        }
        let (base, secret, code) = (api_base.to_string(), rec.secret, code.to_string());
        let wx = tokio::task::spawn_blocking(move || jscode2session(&base, &rec.appid, &secret, &code))
            .await
            .map_err(|e| ProviderError::Auth(AuthError::Internal(format!("WeChat call panicked: {e}"))))??;
        let iat = now_secs();
        let claims = ProviderClaims {
            typ: TYP_PROVIDER.into(),
            env: env.to_string(),
            oid: wx.openid,
            uid: wx.unionid,
            iat,
            exp: iat + PROVIDER_TOKEN_TTL_SECS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ProviderError::Auth(AuthError::Internal(format!("cannot sign a provider token: {e}"))))
    }

    /// Verifies a provider token for `env` (HS256, not expired, this env, a WeChat token).
    pub fn verify_provider_token(&self, env: &str, token: &str) -> Result<WxIdentity, ProviderError> {
        let bad = |why: &str| ProviderError::InvalidGrant(format!("invalid provider token: {why}"));
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp"]);
        let claims = match jsonwebtoken::decode::<ProviderClaims>(token, &self.decoding, &v) {
            Ok(d) => d.claims,
            Err(e) => {
                return Err(match e.kind() {
                    ErrorKind::ExpiredSignature => bad("it has expired; exchange a new wx.login code"),
                    ErrorKind::InvalidSignature => bad("the signature is invalid"),
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => bad("it is not signed with HS256"),
                    _ => bad("it is malformed"),
                })
            }
        };
        if claims.typ != TYP_PROVIDER {
            return Err(bad("not a provider token"));
        }
        if claims.env != env {
            return Err(bad("it was issued for another environment"));
        }
        Ok(WxIdentity {
            openid: claims.oid,
            unionid: claims.uid,
        })
    }

    /// `POST /auth/v1/signin/with/provider`: signs in (creating on first sign-in) the WeChat user
    /// of a provider token.
    pub async fn sign_in_with_provider(&self, env: &str, token: &str) -> Result<Credentials, ProviderError> {
        self.db.check_env(env)?;
        let wx = self.verify_provider_token(env, token)?;
        Ok(self
            .sign_in_external(
                env,
                External::WeChat {
                    openid: wx.openid,
                    unionid: wx.unionid,
                },
            )
            .await?)
    }
}
