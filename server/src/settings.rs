//! Per-env runtime settings: what an admin changes on a running server without a restart. Today
//! that is the env's rate limits (`rateLimits`: per-class overrides of the server-wide quotas).
//!
//! Stored durably in the KV under `s/{env}/rate_limits` (`{"database": "200/s:400", …}`, only the
//! overridden classes; no key = every class at the server's quota) and cached in memory by the
//! [`RateLimiter`], which requests consult: no request reads the KV or parses JSON for its limits.
//! The cache is filled from the KV at start and updated by [`Settings::set_rate_limits`] after the
//! write is durable. This is one process's cache: several nodes sharing one store would each need
//! to learn of a change (a watch on `s/`, or a version polled every few seconds).

use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::db::kv::{Commit, Op};
use crate::db::{Database, DbError};
use crate::ratelimit::{Class, EnvRates, RateLimiter, RateLimits};

/// The setting parts a `PUT /admin/v1/envs/{env}/settings` body may have.
pub const PARTS: [&str; 1] = ["rateLimits"];

fn rate_limits_key(env: &str) -> Vec<u8> {
    format!("s/{env}/rate_limits").into_bytes()
}

const SETTINGS_ALL: &[u8] = b"s/";
const RATE_LIMITS_SUFFIX: &str = "/rate_limits";

/// The stored rate limits of `env` (empty when none are stored). Checks that the env exists.
pub fn stored_rate_limits(db: &Database, env: &str) -> Result<EnvRates, DbError> {
    db.check_env(env)?;
    match db.kv().get(&rate_limits_key(env))? {
        Some(bytes) => decode(env, &bytes),
        None => Ok(EnvRates::default()),
    }
}

/// Writes the rate limits of `env` (removes the key when every class is at the server's quota).
/// The change is durable once the returned commit resolves. Checks that the env exists.
pub fn store_rate_limits(db: &Database, env: &str, rates: &EnvRates) -> Result<Commit, DbError> {
    db.check_env(env)?;
    let key = rate_limits_key(env);
    let op = if rates.is_empty() {
        Op::Delete(key)
    } else {
        let mut obj = rates.to_json();
        if let Value::Object(m) = &mut obj {
            m.retain(|_, v| !v.is_null());
        }
        Op::Put(key, obj.to_string().into_bytes())
    };
    let kv = db.kv();
    kv.apply(vec![op])?;
    Ok(kv.commit())
}

/// Every env's stored rate limits (read once at start).
pub fn load_all_rate_limits(db: &Database) -> Result<Vec<(String, EnvRates)>, DbError> {
    let mut found = Vec::new();
    db.kv().scan_prefix(SETTINGS_ALL, &mut |k, v| {
        let key = String::from_utf8_lossy(&k[SETTINGS_ALL.len()..]).into_owned();
        if let Some(env) = key.strip_suffix(RATE_LIMITS_SUFFIX) {
            found.push((env.to_string(), v.to_vec()));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    found
        .into_iter()
        .map(|(env, bytes)| decode(&env, &bytes).map(|r| (env, r)))
        .collect()
}

fn decode(env: &str, bytes: &[u8]) -> Result<EnvRates, DbError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| DbError::Storage(format!("corrupt rate limits of env `{env}`: {e}")))?;
    EnvRates::from_json(&v, "rate_limits")
        .map_err(|e| DbError::Storage(format!("corrupt rate limits of env `{env}`: {e}")))
}

/// Parses a settings body `{"rateLimits": {class: rate | null, …} | null}`. `rateLimits` is
/// required (null or `{}` puts every class back to the server's quota); other keys are refused.
pub fn parse_settings(body: &Value) -> Result<EnvRates, DbError> {
    let Value::Object(obj) = body else {
        return Err(DbError::InvalidParam("the settings must be a JSON object".into()));
    };
    if let Some(unknown) = obj.keys().find(|k| !PARTS.contains(&k.as_str())) {
        return Err(DbError::InvalidParam(format!(
            "unknown setting `{}`: the settings are {}",
            unknown.chars().take(64).collect::<String>(),
            PARTS.join(", ")
        )));
    }
    let rates = obj
        .get("rateLimits")
        .ok_or_else(|| DbError::InvalidParam("`rateLimits` is required (null resets every class)".into()))?;
    EnvRates::from_json(rates, "rateLimits").map_err(DbError::InvalidParam)
}

/// The settings of an env as the admin API shows them: the overrides (null = the server's quota)
/// and the server-wide quotas they replace.
pub fn settings_json(rates: &EnvRates, server: &RateLimits) -> Value {
    let mut defaults = serde_json::Map::new();
    for class in Class::PER_ENV {
        defaults.insert(class.as_str().into(), json!(server.get(class).to_string()));
    }
    json!({ "rateLimits": rates.to_json(), "serverRateLimits": defaults })
}

/// The runtime settings of a running server: the store plus the in-memory cache requests read.
pub struct Settings {
    db: Arc<Database>,
    limiter: Arc<RateLimiter>,
    /// Orders concurrent changes so the cache ends as the store does.
    write: tokio::sync::Mutex<()>,
}

impl Settings {
    /// Loads every env's stored rate limits into `limiter`.
    pub fn open(db: Arc<Database>, limiter: Arc<RateLimiter>) -> Result<Settings, DbError> {
        for (env, rates) in load_all_rate_limits(&db)? {
            limiter.set_env_rates(&env, rates);
        }
        Ok(Settings {
            db,
            limiter,
            write: tokio::sync::Mutex::new(()),
        })
    }

    /// The rate-limit overrides of `env` in force (from memory).
    pub fn rate_limits(&self, env: &str) -> Result<EnvRates, DbError> {
        self.db.check_env(env)?;
        Ok(self.limiter.env_rates(env))
    }

    /// Replaces the rate-limit overrides of `env`: stored durably, then in force from the next
    /// request on.
    pub async fn set_rate_limits(&self, env: &str, rates: EnvRates) -> Result<EnvRates, DbError> {
        let _guard = self.write.lock().await;
        store_rate_limits(&self.db, env, &rates)?.wait().await?;
        self.limiter.set_env_rates(env, rates);
        tracing::info!(env, rate_limits = %rates.to_json(), "env rate limits changed");
        Ok(rates)
    }

    pub fn server_limits(&self) -> &RateLimits {
        self.limiter.limits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_bodies_are_validated_with_the_field_named() {
        let ok = parse_settings(&json!({"rateLimits": {"database": "200/s:400", "signin": null}})).unwrap();
        assert_eq!(ok.get(Class::Database).unwrap().to_string(), "200/s:400");
        assert!(parse_settings(&json!({"rateLimits": null})).unwrap().is_empty());
        for (body, needle) in [
            (json!([]), "JSON object"),
            (json!({}), "`rateLimits` is required"),
            (json!({"rateLimits": {}, "cors": 1}), "unknown setting `cors`"),
            (json!({"rateLimits": {"database": "lots"}}), "`rateLimits.database`"),
            (json!({"rateLimits": {"admin": "1/s"}}), "`rateLimits.admin`"),
            (json!({"rateLimits": "1/s"}), "`rateLimits` must be an object"),
        ] {
            let e = parse_settings(&body).unwrap_err();
            assert!(matches!(e, DbError::InvalidParam(_)), "{body}");
            assert!(e.to_string().contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn rate_limits_are_stored_loaded_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::open(dir.path(), crate::db::Limits::default()).unwrap());
        db.create_env("a").unwrap().wait_blocking().unwrap();
        let rates = EnvRates::from_json(&json!({"signin": "5/min"}), "x").unwrap();
        store_rate_limits(&db, "a", &rates).unwrap().wait_blocking().unwrap();
        assert_eq!(stored_rate_limits(&db, "a").unwrap(), rates);
        assert_eq!(load_all_rate_limits(&db).unwrap(), vec![("a".to_string(), rates)]);
        let limiter = Arc::new(RateLimiter::new(RateLimits::default()));
        let settings = Settings::open(db.clone(), limiter.clone()).unwrap();
        assert_eq!(settings.rate_limits("a").unwrap(), rates);
        assert!(matches!(settings.rate_limits("nope"), Err(DbError::InvalidEnv(_))));
        assert!(matches!(
            store_rate_limits(&db, "nope", &rates),
            Err(DbError::InvalidEnv(_))
        ));
        store_rate_limits(&db, "a", &EnvRates::default())
            .unwrap()
            .wait_blocking()
            .unwrap();
        assert!(load_all_rate_limits(&db).unwrap().is_empty());
    }
}
