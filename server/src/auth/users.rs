//! End users of an env: anonymous sign-in, sign-up (and the anonymous → registered upgrade that
//! keeps the uid), password sign-in, external identities (custom tickets, WeChat), and what admins
//! do with users (list/search, disable, delete).

use serde::Serialize;

use crate::db::database::now_ms;
use crate::db::kv::{Commit, Op};

use super::password::check_strength;
use super::store::{index_key, put, user_key, users_prefix, Index, UserRecord};
use super::tokens::random_id;
use super::{Auth, AuthError, Caller, Credentials, LoginType};

/// A sign-up request: a username or an email (or both) and a password.
#[derive(Debug, Clone, Default)]
pub struct SignUp {
    pub username: Option<String>,
    pub email: Option<String>,
    pub password: String,
}

/// An identity proven by someone else: a custom ticket signed with the env's key, or WeChat's
/// `jscode2session`. The routes for both live in their own adapters; they call
/// [`Auth::sign_in_external`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum External {
    /// The developer's own user id from a custom ticket (1–64 of `A-Za-z0-9_-#@(){}[]:.,<>+~`).
    Custom { uid: String },
    /// A WeChat openid (and unionid when WeChat gives one).
    WeChat { openid: String, unionid: Option<String> },
}

/// A user as admins and `user/me` see it (never the password hash). Times are ms since the epoch.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    pub uid: String,
    pub env: String,
    pub username: Option<String>,
    pub email: Option<String>,
    pub anonymous: bool,
    pub login_type: LoginType,
    pub openid: Option<String>,
    pub unionid: Option<String>,
    pub custom_id: Option<String>,
    /// Whether the user has a password (signed up with a username or email).
    pub has_password: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<UserRecord> for User {
    fn from(r: UserRecord) -> User {
        User {
            uid: r.uid,
            env: r.env,
            username: r.username,
            email: r.email,
            anonymous: r.anonymous,
            login_type: r.login_type,
            openid: r.openid,
            unionid: r.unionid,
            custom_id: r.custom_id,
            has_password: r.password.is_some(),
            disabled: r.disabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// One page of a user listing.
#[derive(Debug, Clone, Serialize)]
pub struct UserPage {
    pub users: Vec<User>,
    /// How many users match in all.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

pub const DEFAULT_USER_PAGE: usize = 50;
pub const MAX_USER_PAGE: usize = 1000;

fn new_user(env: &str, login_type: LoginType, now: i64) -> UserRecord {
    UserRecord {
        uid: random_id(),
        env: env.to_string(),
        username: None,
        email: None,
        password: None,
        anonymous: login_type == LoginType::Anonymous,
        login_type,
        openid: None,
        unionid: None,
        custom_id: None,
        disabled: false,
        created_at: now,
        updated_at: now,
    }
}

/// Usernames: 1–64 of `A-Za-z0-9_.-`.
pub fn validate_username(s: &str) -> Result<(), AuthError> {
    let ok = (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidParam(
            "invalid username: use 1-64 letters, digits, `_`, `.` or `-`".into(),
        ))
    }
}

/// Emails, loosely: `local@domain.tld`, at most 254 characters, no spaces or control characters.
pub fn validate_email(s: &str) -> Result<(), AuthError> {
    let ok = s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidParam("invalid email address".into()))
    }
}

fn validate_custom_id(s: &str) -> Result<(), AuthError> {
    let ok = (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-#@(){}[]:.,<>+~".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidParam(
            "invalid custom user id: use 1-64 letters, digits or `_-#@(){}[]:.,<>+~`".into(),
        ))
    }
}

fn validate_wechat_id(what: &str, s: &str) -> Result<(), AuthError> {
    let ok = (1..=128).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidParam(format!("invalid WeChat {what}")))
    }
}

impl Auth {
    /// `POST /auth/v1/signin/anonymously`: a new anonymous user and its first session.
    pub async fn sign_in_anonymously(&self, env: &str) -> Result<Credentials, AuthError> {
        self.db.check_env(env)?;
        let user = new_user(env, LoginType::Anonymous, now_ms());
        let (creds, mut ops) = self.open_session(&user, LoginType::Anonymous)?;
        ops.push(put(user_key(env, &user.uid), &user)?);
        self.apply(ops)?;
        self.kv.commit().wait().await?;
        Ok(creds)
    }

    /// `POST /auth/v1/signup`. With `bearer` = a valid token of an anonymous user of `env`, that
    /// user is upgraded in place (same uid, its anonymous sessions end); a token of a registered
    /// user or an admin is ignored (a new account is created); an invalid token is refused.
    pub async fn sign_up(&self, env: &str, req: SignUp, bearer: Option<&str>) -> Result<Credentials, AuthError> {
        self.db.check_env(env)?;
        if req.username.is_none() && req.email.is_none() {
            return Err(AuthError::InvalidParam("`username` or `email` is required".into()));
        }
        if let Some(u) = &req.username {
            validate_username(u)?;
        }
        if let Some(e) = &req.email {
            validate_email(e)?;
        }
        check_strength(&req.password)?;
        let upgrade = match bearer {
            Some(token) => match self.verify_for_env(token, env)? {
                Caller::User(id) if id.anonymous => Some(id.uid),
                Caller::User(_) | Caller::Admin | Caller::Guest => None,
            },
            None => None,
        };
        let hash = self.hasher.hash(&req.password).await?;
        let (creds, commit) = self.create_registered(env, req, hash, upgrade)?;
        commit.wait().await?;
        Ok(creds)
    }

    fn create_registered(
        &self,
        env: &str,
        req: SignUp,
        hash: String,
        upgrade: Option<String>,
    ) -> Result<(Credentials, Commit), AuthError> {
        let _guard = self.lock()?;
        if let Some(u) = &req.username {
            if self.kv.get(&index_key(env, Index::Username, u))?.is_some() {
                return Err(AuthError::UserExists(format!("username `{u}` is taken")));
            }
        }
        if let Some(e) = &req.email {
            if self.kv.get(&index_key(env, Index::Email, e))?.is_some() {
                return Err(AuthError::UserExists(format!("email `{e}` is already registered")));
            }
        }
        let now = now_ms();
        let lt = if req.username.is_some() {
            LoginType::Username
        } else {
            LoginType::Email
        };
        let mut ops = Vec::new();
        let mut user = match upgrade {
            Some(uid) => {
                let Some(user) = self.user_record(env, &uid)? else {
                    return Err(AuthError::Unauthenticated("the anonymous user no longer exists".into()));
                };
                if !user.anonymous {
                    return Err(AuthError::UserExists("this user is already registered".into()));
                }
                ops.extend(self.close_all_sessions(env, &uid)?);
                user
            }
            None => new_user(env, lt, now),
        };
        user.anonymous = false;
        user.login_type = lt;
        user.password = Some(hash);
        user.updated_at = now;
        if let Some(u) = &req.username {
            ops.push(Op::Put(
                index_key(env, Index::Username, u),
                user.uid.clone().into_bytes(),
            ));
        }
        if let Some(e) = &req.email {
            ops.push(Op::Put(index_key(env, Index::Email, e), user.uid.clone().into_bytes()));
        }
        user.username = req.username;
        user.email = req.email;
        let (creds, session_ops) = self.open_session(&user, lt)?;
        ops.extend(session_ops);
        ops.push(put(user_key(env, &user.uid), &user)?);
        self.apply(ops)?;
        Ok((creds, self.kv.commit()))
    }

    /// `POST /auth/v1/signin`: `login` is a username, or an email when it contains `@`. A wrong
    /// login and a wrong password take the same time and give the same error.
    pub async fn sign_in_password(&self, env: &str, login: &str, password: &str) -> Result<Credentials, AuthError> {
        self.db.check_env(env)?;
        if login.is_empty() || login.len() > 254 || password.len() > 4 * super::MAX_PASSWORD_LEN {
            return Err(AuthError::InvalidCredentials);
        }
        let (index, lt) = if login.contains('@') {
            (Index::Email, LoginType::Email)
        } else {
            (Index::Username, LoginType::Username)
        };
        let user = self.lookup(env, index, login)?;
        let phc = user.as_ref().and_then(|u| u.password.clone());
        if !self.hasher.verify(password, phc).await? {
            return Err(AuthError::InvalidCredentials);
        }
        let Some(user) = user else {
            return Err(AuthError::InvalidCredentials);
        };
        if user.disabled {
            return Err(AuthError::UserDisabled);
        }
        let (creds, ops) = self.open_session(&user, lt)?;
        self.apply(ops)?;
        self.kv.commit().wait().await?;
        Ok(creds)
    }

    /// Signs in an externally proven identity, creating its user on first sign-in: login type
    /// `CUSTOM` (found by custom id) or `WECHAT-OPEN` (found by openid; the unionid is recorded or
    /// updated when given).
    pub async fn sign_in_external(&self, env: &str, ext: External) -> Result<Credentials, AuthError> {
        self.db.check_env(env)?;
        match &ext {
            External::Custom { uid } => validate_custom_id(uid)?,
            External::WeChat { openid, unionid } => {
                validate_wechat_id("openid", openid)?;
                if let Some(u) = unionid {
                    validate_wechat_id("unionid", u)?;
                }
            }
        }
        let (creds, commit) = self.external_session(env, ext)?;
        commit.wait().await?;
        Ok(creds)
    }

    fn external_session(&self, env: &str, ext: External) -> Result<(Credentials, Commit), AuthError> {
        let _guard = self.lock()?;
        let now = now_ms();
        let (index, id, lt) = match &ext {
            External::Custom { uid } => (Index::Custom, uid.clone(), LoginType::Custom),
            External::WeChat { openid, .. } => (Index::OpenId, openid.clone(), LoginType::WeChatOpen),
        };
        let mut ops = Vec::new();
        let user = match self.lookup(env, index, &id)? {
            Some(mut user) => {
                if user.disabled {
                    return Err(AuthError::UserDisabled);
                }
                if let External::WeChat { unionid: Some(u), .. } = &ext {
                    if user.unionid.as_deref() != Some(u) {
                        user.unionid = Some(u.clone());
                        user.updated_at = now;
                        ops.push(put(user_key(env, &user.uid), &user)?);
                    }
                }
                user
            }
            None => {
                let mut user = new_user(env, lt, now);
                match ext {
                    External::Custom { uid } => user.custom_id = Some(uid),
                    External::WeChat { openid, unionid } => {
                        user.openid = Some(openid);
                        user.unionid = unionid;
                    }
                }
                ops.push(Op::Put(index_key(env, index, &id), user.uid.clone().into_bytes()));
                ops.push(put(user_key(env, &user.uid), &user)?);
                user
            }
        };
        let (creds, session_ops) = self.open_session(&user, lt)?;
        ops.extend(session_ops);
        self.apply(ops)?;
        Ok((creds, self.kv.commit()))
    }

    /// One user of `env`.
    pub fn user(&self, env: &str, uid: &str) -> Result<User, AuthError> {
        self.db.check_env(env)?;
        self.user_record(env, uid)?
            .map(User::from)
            .ok_or_else(|| AuthError::UserNotFound(uid.chars().take(64).collect()))
    }

    /// The users of `env` in uid order; `search` keeps those whose uid, username, email, openid,
    /// unionid or custom id contains it (case-insensitive). Scans the env's users: run it off the
    /// async workers.
    pub fn list_users(
        &self,
        env: &str,
        search: Option<&str>,
        limit: Option<usize>,
        offset: Option<usize>,
    ) -> Result<UserPage, AuthError> {
        self.db.check_env(env)?;
        let limit = limit.unwrap_or(DEFAULT_USER_PAGE);
        if !(1..=MAX_USER_PAGE).contains(&limit) {
            return Err(AuthError::InvalidParam(format!(
                "`limit` must be between 1 and {MAX_USER_PAGE}"
            )));
        }
        let offset = offset.unwrap_or(0);
        let needle = search.map(str::to_lowercase).filter(|s| !s.is_empty());
        let all: Vec<UserRecord> = self.records_under(&users_prefix(env))?;
        let matching: Vec<UserRecord> = all
            .into_iter()
            .filter(|u| match &needle {
                None => true,
                Some(n) => [
                    Some(&u.uid),
                    u.username.as_ref(),
                    u.email.as_ref(),
                    u.openid.as_ref(),
                    u.unionid.as_ref(),
                    u.custom_id.as_ref(),
                ]
                .into_iter()
                .flatten()
                .any(|f| f.to_lowercase().contains(n.as_str())),
            })
            .collect();
        let total = matching.len();
        let users = matching.into_iter().skip(offset).take(limit).map(User::from).collect();
        Ok(UserPage {
            users,
            total,
            offset,
            limit,
        })
    }

    /// Disables (every session ends at once, sign-in and refresh are refused) or re-enables a user.
    pub async fn set_user_disabled(&self, env: &str, uid: &str, disabled: bool) -> Result<User, AuthError> {
        self.db.check_env(env)?;
        let (user, commit) = {
            let _guard = self.lock()?;
            let Some(mut user) = self.user_record(env, uid)? else {
                return Err(AuthError::UserNotFound(uid.chars().take(64).collect()));
            };
            let mut ops = Vec::new();
            if disabled {
                ops.extend(self.close_all_sessions(env, uid)?);
            }
            user.disabled = disabled;
            user.updated_at = now_ms();
            ops.push(put(user_key(env, uid), &user)?);
            self.apply(ops)?;
            (user, self.kv.commit())
        };
        commit.wait().await?;
        Ok(User::from(user))
    }

    /// Deletes a user, its sign-in names and its sessions (its tokens stop at once).
    pub async fn delete_user(&self, env: &str, uid: &str) -> Result<(), AuthError> {
        self.db.check_env(env)?;
        let commit = {
            let _guard = self.lock()?;
            let Some(user) = self.user_record(env, uid)? else {
                return Err(AuthError::UserNotFound(uid.chars().take(64).collect()));
            };
            let mut ops = self.close_all_sessions(env, uid)?;
            let names = [
                (Index::Username, &user.username),
                (Index::Email, &user.email),
                (Index::OpenId, &user.openid),
                (Index::Custom, &user.custom_id),
            ];
            for (index, value) in names {
                if let Some(v) = value {
                    let key = index_key(env, index, v);
                    if self.get_string(&key)?.as_deref() == Some(uid) {
                        ops.push(Op::Delete(key));
                    }
                }
            }
            ops.push(Op::Delete(user_key(env, uid)));
            self.apply(ops)?;
            self.kv.commit()
        };
        commit.wait().await?;
        Ok(())
    }
}
