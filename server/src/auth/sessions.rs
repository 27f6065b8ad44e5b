//! Sessions: issuing credentials, refresh-token rotation with reuse detection, revocation and
//! sign-out, and the verification of user access tokens.
//!
//! A session is one sign-in on one device: a `a/ses/…` record plus a family of refresh tokens.
//! Each access token carries its session id (`sid`); deleting the session record makes every
//! access and refresh token of the session stop at once.

use crate::db::database::now_ms;
use crate::db::kv::{Commit, Op};

use super::store::{put, refresh_key, session_key, sessions_prefix, RefreshRecord, SessionRecord, UserRecord};
use super::tokens::{random_id, random_secret, sha256_hex, Claims, TYP_ACCESS};
use super::{Auth, AuthError, Credentials, Identity, LoginType};

/// Longest token accepted anywhere (JWTs here are ~400 bytes).
const MAX_TOKEN_LEN: usize = 4096;

impl Auth {
    /// The ops that open a new session for `user`, and its credentials.
    pub(super) fn open_session(&self, user: &UserRecord, lt: LoginType) -> Result<(Credentials, Vec<Op>), AuthError> {
        let now = now_ms();
        let sid = random_id();
        let refresh = random_secret();
        let expires_at = now + self.refresh_ttl_ms();
        let ops = vec![
            put(
                session_key(&user.env, &user.uid, &sid),
                &SessionRecord {
                    login_type: lt,
                    created_at: now,
                    expires_at,
                },
            )?,
            put(
                refresh_key(&sha256_hex(&refresh)),
                &RefreshRecord {
                    env: user.env.clone(),
                    uid: user.uid.clone(),
                    sid: sid.clone(),
                    login_type: lt,
                    expires_at,
                    used: false,
                },
            )?,
        ];
        let creds = self.credentials(user, lt, &sid, refresh, now)?;
        Ok((creds, ops))
    }

    fn refresh_ttl_ms(&self) -> i64 {
        i64::try_from(self.settings.refresh_token_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
    }

    fn credentials(
        &self,
        user: &UserRecord,
        lt: LoginType,
        sid: &str,
        refresh_token: String,
        now_ms: i64,
    ) -> Result<Credentials, AuthError> {
        let iat = u64::try_from(now_ms / 1000).unwrap_or(0);
        let ttl = self.settings.access_token_ttl_secs;
        let claims = Claims {
            sub: user.uid.clone(),
            typ: TYP_ACCESS.into(),
            env: Some(user.env.clone()),
            lt: Some(lt),
            oid: user.openid.clone(),
            sid: Some(sid.to_string()),
            iat,
            exp: iat.saturating_add(ttl),
        };
        Ok(Credentials {
            token_type: "Bearer",
            access_token: self.sign(&claims)?,
            refresh_token,
            expires_in: ttl,
            scope: if user.anonymous { "anonymous" } else { "user" },
            sub: user.uid.clone(),
        })
    }

    /// Ops deleting every session of a user (their tokens stop at once).
    pub(super) fn close_all_sessions(&self, env: &str, uid: &str) -> Result<Vec<Op>, AuthError> {
        Ok(self
            .keys_under(&sessions_prefix(env, uid))?
            .into_iter()
            .map(Op::Delete)
            .collect())
    }

    /// `POST /auth/v1/token` with `grant_type=refresh_token`: exchanges a refresh token of `env`
    /// for new credentials of the same session. The old token is spent; presenting a spent token
    /// again revokes the whole session (every token of it stops).
    pub async fn refresh(&self, env: &str, refresh_token: &str) -> Result<Credentials, AuthError> {
        let (result, commit) = self.rotate(env, refresh_token)?;
        commit.wait().await?;
        result
    }

    fn rotate(&self, env: &str, token: &str) -> Result<(Result<Credentials, AuthError>, Commit), AuthError> {
        let bad = |m: &str| AuthError::InvalidRefreshToken(m.to_string());
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(bad("the refresh token is invalid"));
        }
        let key = refresh_key(&sha256_hex(token));
        let _guard = self.lock()?;
        let Some(rec) = self.get::<RefreshRecord>(&key)? else {
            return Err(bad("the refresh token is invalid"));
        };
        if rec.env != env {
            return Err(bad("the refresh token was issued for another environment"));
        }
        let skey = session_key(&rec.env, &rec.uid, &rec.sid);
        if rec.used {
            tracing::warn!(env = %rec.env, uid = %rec.uid, "a spent refresh token was presented again; revoking its session");
            self.apply(vec![Op::Delete(skey)])?;
            let err = bad("the refresh token was already used; its session has been revoked");
            return Ok((Err(err), self.kv.commit()));
        }
        let now = now_ms();
        if rec.expires_at <= now {
            return Err(bad("the refresh token has expired"));
        }
        let Some(session) = self.get::<SessionRecord>(&skey)? else {
            return Err(bad("the session of this refresh token has been revoked"));
        };
        let Some(user) = self.user_record(&rec.env, &rec.uid)? else {
            return Err(bad("the user of this refresh token no longer exists"));
        };
        if user.disabled {
            return Err(AuthError::UserDisabled);
        }
        let new_refresh = random_secret();
        let expires_at = now + self.refresh_ttl_ms();
        let creds = self.credentials(&user, rec.login_type, &rec.sid, new_refresh.clone(), now)?;
        let ops = vec![
            put(
                refresh_key(&sha256_hex(&new_refresh)),
                &RefreshRecord {
                    expires_at,
                    ..rec.clone()
                },
            )?,
            put(key, &RefreshRecord { used: true, ..rec })?,
            put(skey, &SessionRecord { expires_at, ..session })?,
        ];
        self.apply(ops)?;
        Ok((Ok(creds), self.kv.commit()))
    }

    /// `POST /auth/v1/revoke {token}`: ends the session of an access token (even an expired one)
    /// or of a refresh token. Unknown, foreign or badly signed tokens are ignored (RFC 7009: the
    /// reply is the same, so revocation cannot be used to probe tokens).
    pub async fn revoke(&self, token: &str) -> Result<(), AuthError> {
        let key = if token.len() > MAX_TOKEN_LEN {
            None
        } else if token.contains('.') {
            match self.decode(token, false) {
                Ok(Claims {
                    typ,
                    env: Some(env),
                    sid: Some(sid),
                    sub,
                    ..
                }) if typ == TYP_ACCESS => Some(session_key(&env, &sub, &sid)),
                _ => None,
            }
        } else {
            self.get::<RefreshRecord>(&refresh_key(&sha256_hex(token)))?
                .map(|r| session_key(&r.env, &r.uid, &r.sid))
        };
        if let Some(key) = key {
            self.apply(vec![Op::Delete(key)])?;
            self.kv.commit().wait().await?;
        }
        Ok(())
    }

    /// `POST /auth/v1/user/signout`: ends the session of a valid (unexpired) user access token.
    pub async fn sign_out(&self, access_token: &str) -> Result<(), AuthError> {
        let claims = self.decode(access_token, true)?;
        let (Some(env), Some(sid)) = (claims.env.as_deref(), claims.sid.as_deref()) else {
            return Err(AuthError::Unauthenticated("not a user access token".into()));
        };
        if claims.typ != TYP_ACCESS {
            return Err(AuthError::Unauthenticated("not a user access token".into()));
        }
        self.apply(vec![Op::Delete(session_key(env, &claims.sub, sid))])?;
        self.kv.commit().wait().await?;
        Ok(())
    }

    /// The identity behind verified access-token claims: the user must exist and not be disabled,
    /// and the session must not be revoked (two point reads).
    pub(super) fn verify_access_claims(&self, claims: &Claims) -> Result<Identity, AuthError> {
        let (Some(env), Some(sid), Some(lt)) = (claims.env.as_deref(), claims.sid.as_deref(), claims.lt) else {
            return Err(AuthError::Unauthenticated(
                "the token lacks its env, session or login type".into(),
            ));
        };
        let Some(user) = self.user_record(env, &claims.sub)? else {
            return Err(AuthError::Unauthenticated(
                "the user of this token no longer exists".into(),
            ));
        };
        if user.disabled {
            return Err(AuthError::Unauthenticated(
                "the user of this token has been disabled".into(),
            ));
        }
        if self.kv.get(&session_key(env, &claims.sub, sid))?.is_none() {
            return Err(AuthError::Unauthenticated(
                "this session has been signed out or revoked".into(),
            ));
        }
        Ok(Identity {
            env: user.env,
            uid: user.uid,
            openid: user.openid,
            unionid: user.unionid,
            login_type: lt,
            anonymous: user.anonymous,
        })
    }
}
