//! Auth over HTTP: CloudBase's end-user routes under `/auth/v1/*` (cloudbase-protocol.md §3.2;
//! errors `{error, error_description}`), and the admin routes of auth under `/admin/v1/` (login,
//! admins, users, API keys; errors `{code, type, message, details}`).
//!
//! The env of an `/auth/v1` request is `?client_id=` (the SDK sends its clientId, which is the env)
//! or `?env=`, else `default`; routes that take a user token use the token's env when neither is
//! given, and refuse a token of another env when one is.

use std::net::IpAddr;

use actix_web::http::header::AUTHORIZATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::admin::{admin_method_not_allowed, admin_reply};
use super::{blocking, parse_json, ratelimit, read_body, RequestId, State};
use crate::auth::{Caller, Identity, LoginType, PasswordProof, SignUp, User, SUDO_TOKEN_TTL_SECS};
use crate::db::DEFAULT_ENV;
use crate::error::{ApiError, Code};

/// Auth bodies are a few fields: anything larger is refused before it is buffered.
pub const AUTH_BODY_LIMIT: usize = 64 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let auth = |path: &str, route: actix_web::Route| {
        web::resource(path.to_string())
            .route(route)
            .default_service(web::to(auth_method_not_allowed))
    };
    cfg.service(auth("/auth/v1/signin/anonymously", web::post().to(signin_anonymously)))
        .service(auth("/auth/v1/signup", web::post().to(signup)))
        .service(auth("/auth/v1/signin", web::post().to(signin)))
        .service(auth("/auth/v1/token", web::post().to(token)))
        .service(auth("/auth/v1/user/me", web::get().to(user_me)))
        .service(auth("/auth/v1/user/sudo", web::post().to(user_sudo)))
        .service(auth("/auth/v1/user/password", web::patch().to(user_password)))
        .service(auth("/auth/v1/revoke", web::post().to(revoke)))
        .service(auth("/auth/v1/user/signout", web::post().to(signout)));
    let admin = |path: &str| web::resource(path.to_string()).default_service(web::to(admin_method_not_allowed));
    cfg.service(admin("/admin/v1/login").route(web::post().to(admin_login)))
        .service(admin("/admin/v1/admins").route(web::post().to(create_admin)))
        .service(admin("/admin/v1/envs/{env}/users").route(web::get().to(list_users)))
        .service(
            admin("/admin/v1/envs/{env}/users/{uid}")
                .route(web::get().to(get_user))
                .route(web::patch().to(patch_user))
                .route(web::delete().to(delete_user)),
        )
        .service(
            admin("/admin/v1/keys")
                .route(web::get().to(list_keys))
                .route(web::post().to(create_key)),
        )
        .service(admin("/admin/v1/keys/{id}").route(web::delete().to(revoke_key)));
}

// ---- shapes ---------------------------------------------------------------------------------

/// The OAuth-style `error` string of a code (what the SDK branches on; `unauthenticated` makes it
/// drop its stored credentials).
pub fn oauth_error(code: Code) -> &'static str {
    match code {
        Code::InvalidCredentials | Code::InvalidRefreshToken => "invalid_grant",
        // the SDK's ErrorType.PASSWORD_NOT_SET
        Code::PasswordNotSet => "password_not_set",
        _ => match code.http_status() {
            401 => "unauthenticated",
            403 => "permission_denied",
            404 => "not_found",
            409 => "already_exists",
            429 => "resource_exhausted",
            503 => "unavailable",
            500..=599 => "internal",
            _ => "invalid_argument",
        },
    }
}

/// `{error, error_description}` with the code's HTTP status.
pub fn auth_error(err: &ApiError) -> HttpResponse {
    let status = StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let res =
        HttpResponse::build(status).json(json!({ "error": oauth_error(err.code), "error_description": err.message }));
    super::with_retry_after(res, err)
}

fn auth_reply(r: Result<Value, ApiError>) -> HttpResponse {
    match r {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(e) => auth_error(&e),
    }
}

pub(super) async fn auth_method_not_allowed(req: HttpRequest) -> HttpResponse {
    auth_error(&ApiError::new(
        Code::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    ))
}

/// ISO 8601 / RFC 3339 UTC time of milliseconds since the epoch (`2024-05-01T12:00:00Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// CloudBase's user object (`GET /auth/v1/user/me`): the fields the SDK's `convertToUser` reads.
pub fn user_me_json(user: &User, login_type: LoginType) -> Value {
    let name = if user.anonymous {
        "anonymous".to_string()
    } else {
        [&user.username, &user.email, &user.custom_id, &user.openid]
            .into_iter()
            .flatten()
            .next()
            .cloned()
            .unwrap_or_default()
    };
    let mut providers = Vec::new();
    if let Some(openid) = &user.openid {
        providers.push(json!({ "id": "wx_open", "provider_user_id": openid }));
    }
    if let Some(custom) = &user.custom_id {
        providers.push(json!({ "id": "custom", "provider_user_id": custom }));
    }
    json!({
        "sub": user.uid,
        "uid": user.uid,
        "name": name,
        "picture": "",
        "username": user.username.clone().unwrap_or_default(),
        "email": user.email.clone().unwrap_or_default(),
        "phone_number": "",
        "gender": "",
        "groups": [],
        "providers": providers,
        "loginType": login_type.as_str(),
        "open_id": user.openid.clone().unwrap_or_default(),
        "union_id": user.unionid.clone().unwrap_or_default(),
        "custom_user_id": user.custom_id.clone().unwrap_or_default(),
        // the SDK's `user_metadata.hasPassword` (apps choose "set" or "change password" by it)
        "hasPassword": user.has_password,
        "is_anonymous": user.anonymous,
        "status": if user.disabled { "BLOCKED" } else { "ACTIVE" },
        "created_at": rfc3339(user.created_at),
        "updated_at": rfc3339(user.updated_at),
    })
}

// ---- request parts --------------------------------------------------------------------------

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive), if any.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `?client_id=` or `?env=` of an `/auth/v1` request.
fn env_param(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::new(Code::InvalidParam, format!("malformed query string: {e}")))?;
    let find = |key: &str| {
        pairs
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    Ok(find("client_id").or_else(|| find("env")))
}

/// The env of an `/auth/v1` request: `?client_id=`, `?env=`, else `default`. Charges the env's
/// per-IP bucket of the route's class when the env overrides its quota.
pub(super) fn env_of(req: &HttpRequest, state: &State) -> Result<String, ApiError> {
    let env = env_param(req)?.unwrap_or_else(|| DEFAULT_ENV.to_string());
    ratelimit::check_env(req, state, &env)?;
    Ok(env)
}

/// The verified end user of a request that needs one, in the request's env (if it names one; else
/// the token's). Charges the env's per-IP bucket like [`env_of`].
fn user_of(req: &HttpRequest, state: &State) -> Result<(Identity, String), ApiError> {
    let token = bearer_token(req).ok_or_else(|| ApiError::new(Code::Unauthenticated, "an access token is required"))?;
    let caller = match env_param(req)? {
        Some(env) => state.auth.verify_for_env(token, &env)?,
        None => state.auth.verify_bearer(token)?,
    };
    match caller {
        Caller::User(id) => {
            ratelimit::check_env(req, state, &id.env)?;
            Ok((id, token.to_string()))
        }
        Caller::Admin | Caller::Guest => Err(ApiError::new(Code::Unauthenticated, "a user access token is required")),
    }
}

/// Reads a JSON object body of at most [`AUTH_BODY_LIMIT`] bytes; an empty body is `{}` when
/// `allow_empty`.
async fn read_object(req: &HttpRequest, payload: web::Payload, allow_empty: bool) -> Result<Value, ApiError> {
    let buf = read_body(req, payload, AUTH_BODY_LIMIT).await?;
    if buf.iter().all(u8::is_ascii_whitespace) {
        return if allow_empty {
            Ok(json!({}))
        } else {
            Err(ApiError::new(
                Code::InvalidJson,
                "request body is empty; a JSON object is required",
            ))
        };
    }
    let body = parse_json(&buf, "body")?;
    if !body.is_object() {
        return Err(ApiError::new(
            Code::InvalidJson,
            "the request body must be a JSON object",
        ));
    }
    Ok(body)
}

/// An optional string field; absent, null and `""` are `None`, any other non-string is a 400.
fn opt_str(body: &Value, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::new(Code::InvalidParam, format!("`{key}` must be a string"))),
    }
}

fn req_str(body: &Value, key: &str) -> Result<String, ApiError> {
    opt_str(body, key)?
        .ok_or_else(|| ApiError::new(Code::InvalidParam, format!("`{key}` is required and must be a string")))
}

/// Longest sign-in name that can exist (emails are at most 254 characters); longer ones are
/// refused without a password check, so they need no bucket.
const MAX_LOGIN_LEN: usize = 254;

/// Takes one sign-in attempt from the bucket of one account: `env`'s username or email (lower-cased),
/// or with `env: None` an admin's email. Charged before the account is looked up, for names that
/// do not exist too, so the reply never tells whether an account exists; a guess at one account
/// from many addresses meets this bucket whatever the per-address ones say.
fn charge_account(state: &State, env: Option<&str>, login: &str) -> Result<(), ApiError> {
    if login.len() > MAX_LOGIN_LEN {
        return Ok(());
    }
    let key = match env {
        Some(env) => crate::ratelimit::account_key(env, login),
        None => format!("admin:{}", login.to_lowercase()),
    };
    ratelimit::check_user(state, env, crate::ratelimit::Class::Signin, &key)
}

// ---- /auth/v1 -------------------------------------------------------------------------------

async fn signin_anonymously(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let r = async {
        read_object(&req, payload, true).await?;
        let env = env_of(&req, &state)?;
        Ok(json!(state.auth.sign_in_anonymously(&env).await?))
    };
    auth_reply(r.await)
}

async fn signup(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let r = async {
        let body = read_object(&req, payload, false).await?;
        let env = env_of(&req, &state)?;
        if opt_str(&body, "phone_number")?.is_some()
            && opt_str(&body, "username")?.is_none()
            && opt_str(&body, "email")?.is_none()
        {
            return Err(ApiError::new(
                Code::NotSupported,
                "sign-up by phone number is not supported",
            ));
        }
        let signup = SignUp {
            username: opt_str(&body, "username")?,
            email: opt_str(&body, "email")?,
            password: req_str(&body, "password")?,
        };
        Ok(json!(state.auth.sign_up(&env, signup, bearer_token(&req)).await?))
    };
    auth_reply(r.await)
}

async fn signin(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let r = async {
        let body = read_object(&req, payload, false).await?;
        let env = env_of(&req, &state)?;
        let login = match (opt_str(&body, "username")?, opt_str(&body, "email")?) {
            (Some(u), _) => u,
            (None, Some(e)) => e,
            (None, None) if opt_str(&body, "phone_number")?.is_some() => {
                return Err(ApiError::new(
                    Code::NotSupported,
                    "sign-in by phone number is not supported",
                ))
            }
            (None, None) => return Err(ApiError::new(Code::InvalidParam, "`username` or `email` is required")),
        };
        let password = req_str(&body, "password")?;
        state.db.check_env(&env)?;
        charge_account(&state, Some(&env), &login)?;
        Ok(json!(state.auth.sign_in_password(&env, &login, &password).await?))
    };
    auth_reply(r.await)
}

async fn token(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let r = async {
        let body = read_object(&req, payload, false).await?;
        let env = match env_param(&req)? {
            Some(env) => env,
            None => opt_str(&body, "client_id")?.unwrap_or_else(|| DEFAULT_ENV.to_string()),
        };
        ratelimit::check_env(&req, &state, &env)?;
        let grant = req_str(&body, "grant_type")?;
        if grant != "refresh_token" {
            return Err(ApiError::new(
                Code::InvalidParam,
                format!(
                    "unsupported grant_type `{}`: only refresh_token",
                    grant.chars().take(64).collect::<String>()
                ),
            ));
        }
        let refresh_token = req_str(&body, "refresh_token")?;
        Ok(json!(state.auth.refresh(&env, &refresh_token).await?))
    };
    auth_reply(r.await)
}

async fn user_me(req: HttpRequest, state: State) -> HttpResponse {
    let r = (|| {
        let (id, _) = user_of(&req, &state)?;
        let user = state.auth.user(&id.env, &id.uid)?;
        Ok(user_me_json(&user, id.login_type))
    })();
    auth_reply(r)
}

/// Charges the account bucket of a signed-in user before their current password is checked: the
/// same bucket as a password sign-in with their username (else email), so a stolen session cannot
/// guess the password faster than sign-in could. Users without a name have no password to guess.
fn charge_signed_in_account(state: &State, id: &Identity) -> Result<(), ApiError> {
    let user = state.auth.user(&id.env, &id.uid)?;
    match user.username.or(user.email) {
        Some(name) => charge_account(state, Some(&id.env), &name),
        None => Ok(()),
    }
}

/// `POST /auth/v1/user/sudo {password}` → `{sudo_token, expires_in}`: proves the current password
/// for a following sensitive change (the SDK's `sudo`, used by `updatePasswordByOld`).
async fn user_sudo(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let r = async {
        let (id, token) = user_of(&req, &state)?;
        let body = read_object(&req, payload, false).await?;
        if opt_str(&body, "password")?.is_none() && opt_str(&body, "verification_token")?.is_some() {
            return Err(ApiError::new(
                Code::NotSupported,
                "sudo with a verification code is not supported: send the current `password`",
            ));
        }
        let password = req_str(&body, "password")?;
        charge_signed_in_account(&state, &id)?;
        let sudo_token = state.auth.sudo(&token, &password).await?;
        Ok(json!({ "sudo_token": sudo_token, "expires_in": SUDO_TOKEN_TTL_SECS }))
    };
    auth_reply(r.await)
}

/// `PATCH /auth/v1/user/password {new_password, sudo_token | old_password}` (the sudo token may
/// also be in the query string) → `{}`: the user's other sessions end, this one stays.
async fn user_password(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let r = async {
        let (id, token) = user_of(&req, &state)?;
        let body = read_object(&req, payload, false).await?;
        let new_password = req_str(&body, "new_password")?;
        let query: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|e| ApiError::new(Code::InvalidParam, format!("malformed query string: {e}")))?;
        let sudo = match opt_str(&body, "sudo_token")? {
            Some(t) => Some(t),
            None => query
                .into_iter()
                .find(|(k, v)| k == "sudo_token" && !v.is_empty())
                .map(|(_, v)| v),
        };
        let proof = match (sudo, opt_str(&body, "old_password")?) {
            (Some(t), _) => PasswordProof::SudoToken(t),
            (None, Some(old)) => {
                charge_signed_in_account(&state, &id)?;
                PasswordProof::OldPassword(old)
            }
            (None, None) => {
                return Err(ApiError::new(
                    Code::InvalidParam,
                    "`sudo_token` (from POST /auth/v1/user/sudo) or `old_password` is required",
                ))
            }
        };
        state.auth.change_password(&token, proof, &new_password).await?;
        Ok(json!({}))
    };
    auth_reply(r.await)
}

async fn revoke(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let r = async {
        let body = read_object(&req, payload, false).await?;
        let token = req_str(&body, "token")?;
        state.auth.revoke(&token).await?;
        Ok(json!({}))
    };
    auth_reply(r.await)
}

async fn signout(req: HttpRequest, state: State) -> HttpResponse {
    let r = async {
        let (_, token) = user_of(&req, &state)?;
        state.auth.sign_out(&token).await?;
        Ok(json!({}))
    };
    auth_reply(r.await)
}

// ---- admin ----------------------------------------------------------------------------------

/// Admin routes need an admin token or an API key: 401 without valid credentials, 403 with a
/// user token.
pub fn require_admin(req: &HttpRequest, state: &State) -> Result<(), ApiError> {
    let token = bearer_token(req).ok_or_else(|| {
        ApiError::new(
            Code::Unauthenticated,
            "an admin token or API key is required (Authorization: Bearer …)",
        )
    })?;
    match state.auth.verify_bearer(token)? {
        Caller::Admin => Ok(()),
        Caller::User(_) | Caller::Guest => Err(ApiError::new(
            Code::AdminRequired,
            "this needs an admin token or API key, not a user token",
        )),
    }
}

/// The very first admin may be created without a token, from the machine itself: the peer is a
/// loopback address and no proxy header says the request came from further away.
fn is_local_bootstrap(req: &HttpRequest) -> bool {
    let loopback = req.peer_addr().is_some_and(|a| match a.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    });
    let proxied = ["x-forwarded-for", "forwarded", "x-real-ip"]
        .iter()
        .any(|h| req.headers().contains_key(*h));
    loopback && !proxied
}

async fn admin_login(req: HttpRequest, payload: web::Payload, state: State, rid: RequestId) -> HttpResponse {
    let r = async {
        let body = read_object(&req, payload, false).await?;
        let email = req_str(&body, "email")?;
        let password = req_str(&body, "password")?;
        charge_account(&state, None, &email)?;
        Ok(json!(state.auth.admin_login(&email, &password).await?))
    };
    admin_reply(&rid, StatusCode::OK, r.await)
}

async fn create_admin(req: HttpRequest, payload: web::Payload, state: State, rid: RequestId) -> HttpResponse {
    let r = async {
        let bootstrap = !state.auth.has_admin()? && is_local_bootstrap(&req);
        if !bootstrap {
            require_admin(&req, &state)?;
        }
        let body = read_object(&req, payload, false).await?;
        let email = req_str(&body, "email")?;
        let password = req_str(&body, "password")?;
        state.auth.create_admin(&email, &password).await?;
        Ok(json!({ "email": email }))
    };
    admin_reply(&rid, StatusCode::CREATED, r.await)
}

#[derive(serde::Deserialize)]
struct EnvUser {
    env: String,
    uid: String,
}

fn query_usize(pairs: &[(String, String)], key: &str) -> Result<Option<usize>, ApiError> {
    match pairs.iter().find(|(k, _)| k == key) {
        None => Ok(None),
        Some((_, v)) if v.is_empty() => Ok(None),
        Some((_, v)) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::new(Code::InvalidParam, format!("`{key}` must be a non-negative integer"))),
    }
}

async fn list_users(req: HttpRequest, path: web::Path<String>, state: State, rid: RequestId) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|e| ApiError::new(Code::InvalidParam, format!("malformed query string: {e}")))?;
        let search = pairs.iter().find(|(k, _)| k == "search").map(|(_, v)| v.clone());
        let (limit, offset) = (query_usize(&pairs, "limit")?, query_usize(&pairs, "offset")?);
        let auth = state.auth.clone();
        let env = path.into_inner();
        blocking(&state, move || {
            Ok(json!(auth.list_users(&env, search.as_deref(), limit, offset)?))
        })
        .await
    };
    admin_reply(&rid, StatusCode::OK, r.await)
}

async fn get_user(req: HttpRequest, path: web::Path<EnvUser>, state: State, rid: RequestId) -> HttpResponse {
    let r = (|| {
        require_admin(&req, &state)?;
        Ok(json!(state.auth.user(&path.env, &path.uid)?))
    })();
    admin_reply(&rid, StatusCode::OK, r)
}

async fn patch_user(
    req: HttpRequest,
    path: web::Path<EnvUser>,
    payload: web::Payload,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let body = read_object(&req, payload, false).await?;
        let disabled = match body.get("disabled") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(ApiError::new(Code::InvalidParam, "`disabled` must be a boolean")),
        };
        let password = match body.get("password") {
            None => None,
            Some(Value::String(p)) => Some(p.clone()),
            Some(_) => return Err(ApiError::new(Code::InvalidParam, "`password` must be a string")),
        };
        let mut user = match &password {
            Some(p) => Some(state.auth.set_user_password(&path.env, &path.uid, p).await?),
            None => None,
        };
        if let Some(d) = disabled {
            user = Some(state.auth.set_user_disabled(&path.env, &path.uid, d).await?);
        }
        user.map(|u| json!(u)).ok_or_else(|| {
            ApiError::new(
                Code::InvalidParam,
                "`disabled` (a boolean) or `password` (a string) is required",
            )
        })
    };
    admin_reply(&rid, StatusCode::OK, r.await)
}

async fn delete_user(req: HttpRequest, path: web::Path<EnvUser>, state: State, rid: RequestId) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        state.auth.delete_user(&path.env, &path.uid).await?;
        Ok(json!({ "uid": path.uid, "deleted": true }))
    };
    admin_reply(&rid, StatusCode::OK, r.await)
}

async fn list_keys(req: HttpRequest, state: State, rid: RequestId) -> HttpResponse {
    let r = (|| {
        require_admin(&req, &state)?;
        Ok(json!({ "keys": state.auth.api_keys()? }))
    })();
    admin_reply(&rid, StatusCode::OK, r)
}

async fn create_key(req: HttpRequest, payload: web::Payload, state: State, rid: RequestId) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let body = read_object(&req, payload, false).await?;
        let name = req_str(&body, "name")?;
        let (key, commit) = state.auth.create_api_key(&name)?;
        commit.wait().await?;
        Ok(json!(key))
    };
    admin_reply(&rid, StatusCode::CREATED, r.await)
}

async fn revoke_key(req: HttpRequest, path: web::Path<String>, state: State, rid: RequestId) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        state.auth.revoke_api_key(&path)?.wait().await?;
        Ok(json!({ "id": path.as_str(), "revoked": true }))
    };
    admin_reply(&rid, StatusCode::OK, r.await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn oauth_errors_follow_the_status() {
        assert_eq!(oauth_error(Code::InvalidCredentials), "invalid_grant");
        assert_eq!(oauth_error(Code::InvalidRefreshToken), "invalid_grant");
        assert_eq!(oauth_error(Code::Unauthenticated), "unauthenticated");
        assert_eq!(oauth_error(Code::AccessTokenExpired), "unauthenticated");
        assert_eq!(oauth_error(Code::UserExists), "already_exists");
        assert_eq!(oauth_error(Code::UserNotExist), "not_found");
        assert_eq!(oauth_error(Code::InvalidJson), "invalid_argument");
        assert_eq!(oauth_error(Code::Internal), "internal");
    }
}
