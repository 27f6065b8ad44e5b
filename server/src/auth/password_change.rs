//! Changing passwords. A signed-in user proves the current password, either in the same request
//! (`old_password`) or first for a short-lived sudo token (`POST /auth/v1/user/sudo`, as
//! `@cloudbase/js-sdk`'s `updatePasswordByOld` does: sudo, then `PATCH /auth/v1/user/password`
//! with `{sudo_token, new_password}`), and sets a new one; the user's other sessions end, the one
//! that made the change stays. An admin sets a registered user's password; all its sessions end.
//!
//! A sudo token is an HS256 JWT `{sub: uid, typ: "sudo", env, sid, iat, exp}` bound to the session
//! that proved the password and valid for [`SUDO_TOKEN_TTL_SECS`]; it is never accepted as an
//! access token (its `typ` differs).

use crate::db::database::now_ms;
use crate::db::kv::Op;

use super::password::check_strength;
use super::store::{put, session_key, user_key, UserRecord};
use super::tokens::{Claims, TYP_ACCESS};
use super::users::User;
use super::{Auth, AuthError, Identity};

/// How long a sudo token proves the password.
pub const SUDO_TOKEN_TTL_SECS: u64 = 300;

const TYP_SUDO: &str = "sudo";

/// What proves the current password of a password change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordProof {
    /// The current password itself.
    OldPassword(String),
    /// A sudo token from [`Auth::sudo`] of the same session.
    SudoToken(String),
}

fn no_password() -> AuthError {
    AuthError::PasswordNotSet(
        "this account has no password (anonymous, WeChat or custom-ticket sign-in): sign up with a username or \
         email to set one"
            .into(),
    )
}

impl Auth {
    /// The user and session of a valid user access token.
    fn session_of(&self, access_token: &str) -> Result<(Identity, String), AuthError> {
        let claims = self.decode(access_token, true)?;
        if claims.typ != TYP_ACCESS {
            return Err(AuthError::Unauthenticated("a user access token is required".into()));
        }
        let id = self.verify_access_claims(&claims)?;
        let sid = claims
            .sid
            .ok_or_else(|| AuthError::Unauthenticated("the token lacks its session".into()))?;
        Ok((id, sid))
    }

    /// The stored password hash of a signed-in user (refused for accounts without one).
    fn password_of(&self, id: &Identity) -> Result<(UserRecord, String), AuthError> {
        let user = self
            .user_record(&id.env, &id.uid)?
            .ok_or_else(|| AuthError::Unauthenticated("the user of this token no longer exists".into()))?;
        match user.password.clone() {
            Some(phc) if !user.anonymous => Ok((user, phc)),
            _ => Err(no_password()),
        }
    }

    async fn check_password(&self, password: &str, phc: String) -> Result<(), AuthError> {
        if password.len() > 4 * super::MAX_PASSWORD_LEN || !self.hasher.verify(password, Some(phc)).await? {
            return Err(AuthError::WrongPassword);
        }
        Ok(())
    }

    /// `POST /auth/v1/user/sudo {password}`: checks the current password of the token's user and
    /// returns a sudo token for this session.
    pub async fn sudo(&self, access_token: &str, password: &str) -> Result<String, AuthError> {
        let (id, sid) = self.session_of(access_token)?;
        let (_, phc) = self.password_of(&id)?;
        self.check_password(password, phc).await?;
        let iat = u64::try_from(now_ms() / 1000).unwrap_or(0);
        self.sign(&Claims {
            sub: id.uid,
            typ: TYP_SUDO.into(),
            env: Some(id.env),
            lt: None,
            oid: None,
            sid: Some(sid),
            iat,
            exp: iat.saturating_add(SUDO_TOKEN_TTL_SECS),
        })
    }

    fn check_sudo_token(&self, token: &str, id: &Identity, sid: &str) -> Result<(), AuthError> {
        let bad = |why: &str| AuthError::InvalidParam(format!("{why}; get a new one from POST /auth/v1/user/sudo"));
        let claims = match self.decode(token, true) {
            Ok(c) => c,
            Err(AuthError::TokenExpired) => return Err(bad("the sudo token has expired")),
            Err(_) => return Err(bad("the sudo token is invalid")),
        };
        let ours = claims.typ == TYP_SUDO
            && claims.sub == id.uid
            && claims.env.as_deref() == Some(id.env.as_str())
            && claims.sid.as_deref() == Some(sid);
        if ours {
            Ok(())
        } else {
            Err(bad("the sudo token was not issued to this session"))
        }
    }

    /// `PATCH /auth/v1/user/password`: sets a new password (validated like sign-up) for the token's
    /// user after `proof`; every other session of the user ends, this one stays.
    pub async fn change_password(
        &self,
        access_token: &str,
        proof: PasswordProof,
        new_password: &str,
    ) -> Result<(), AuthError> {
        let (id, sid) = self.session_of(access_token)?;
        let (_, phc) = self.password_of(&id)?;
        check_strength(new_password)?;
        match &proof {
            PasswordProof::OldPassword(old) => self.check_password(old, phc).await?,
            PasswordProof::SudoToken(token) => self.check_sudo_token(token, &id, &sid)?,
        }
        let hash = self.hasher.hash(new_password).await?;
        let commit = {
            let _guard = self.lock()?;
            let (mut user, _) = self.password_of(&id)?;
            let keep = session_key(&id.env, &id.uid, &sid);
            let mut ops: Vec<Op> = self
                .close_all_sessions(&id.env, &id.uid)?
                .into_iter()
                .filter(|op| !matches!(op, Op::Delete(k) if *k == keep))
                .collect();
            user.password = Some(hash);
            user.updated_at = now_ms();
            ops.push(put(user_key(&id.env, &id.uid), &user)?);
            self.apply(ops)?;
            self.kv.commit()
        };
        commit.wait().await?;
        Ok(())
    }

    /// An admin sets a user's password (validated like sign-up); every session of the user ends.
    /// Users without a username or email (anonymous, WeChat, custom ticket) could never sign in
    /// with a password, so they are refused.
    pub async fn set_user_password(&self, env: &str, uid: &str, new_password: &str) -> Result<User, AuthError> {
        self.db.check_env(env)?;
        let not_found = || AuthError::UserNotFound(uid.chars().take(64).collect());
        let unusable = |u: &UserRecord| u.anonymous || (u.username.is_none() && u.email.is_none());
        let user = self.user_record(env, uid)?.ok_or_else(not_found)?;
        if unusable(&user) {
            return Err(AuthError::PasswordNotSet(format!(
                "user `{}` has no username or email to sign in with a password",
                uid.chars().take(64).collect::<String>()
            )));
        }
        check_strength(new_password)?;
        let hash = self.hasher.hash(new_password).await?;
        let (user, commit) = {
            let _guard = self.lock()?;
            let mut user = self.user_record(env, uid)?.ok_or_else(not_found)?;
            let mut ops = self.close_all_sessions(env, uid)?;
            user.password = Some(hash);
            user.updated_at = now_ms();
            ops.push(put(user_key(env, uid), &user)?);
            self.apply(ops)?;
            (user, self.kv.commit())
        };
        commit.wait().await?;
        Ok(User::from(user))
    }
}
