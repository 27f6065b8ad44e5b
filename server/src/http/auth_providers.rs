//! External sign-in over HTTP: custom tickets (`POST /auth/v1/signin/custom`) and WeChat
//! mini-program sign-in (`POST /auth/v1/provider/token` + `POST /auth/v1/signin/with/provider`),
//! with CloudBase's shapes (cloudbase-protocol.md §3.2, §3.9; errors `{error, error_description}`),
//! and their admin routes: `GET /admin/v1/envs/{env}/ticket-key` and
//! `GET|PUT /admin/v1/envs/{env}/settings/wechat` (errors `{code, type, message, details}`).
//!
//! The env of an `/auth/v1` request is `?client_id=` (or `?env=`), else `default`.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::admin::{admin_method_not_allowed, admin_reply};
use super::auth_api::{auth_error, auth_method_not_allowed, env_of, require_admin, AUTH_BODY_LIMIT};
use super::{parse_json, RequestId, State};
use crate::auth::PROVIDER_TOKEN_TTL_SECS;
use crate::error::{ApiError, Code};

pub fn routes(cfg: &mut web::ServiceConfig) {
    let auth = |path: &str, route: actix_web::Route| {
        web::resource(path.to_string())
            .app_data(body_config())
            .route(route)
            .default_service(web::to(auth_method_not_allowed))
    };
    cfg.service(auth("/auth/v1/signin/custom", web::post().to(signin_custom)))
        .service(auth("/auth/v1/provider/token", web::post().to(provider_token)))
        .service(auth(
            "/auth/v1/signin/with/provider",
            web::post().to(signin_with_provider),
        ));
    let admin = |path: &str| {
        web::resource(path.to_string())
            .app_data(body_config())
            .default_service(web::to(admin_method_not_allowed))
    };
    cfg.service(admin("/admin/v1/envs/{env}/ticket-key").route(web::get().to(ticket_key)))
        .service(
            admin("/admin/v1/envs/{env}/settings/wechat")
                .route(web::get().to(get_wechat))
                .route(web::put().to(put_wechat)),
        );
}

fn auth_reply(r: Result<Value, ApiError>) -> HttpResponse {
    match r {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(e) => auth_error(&e),
    }
}

/// A JSON object body of at most [`AUTH_BODY_LIMIT`] bytes.
fn object(body: &web::Bytes) -> Result<Value, ApiError> {
    if body.len() > AUTH_BODY_LIMIT {
        return Err(ApiError::new(
            Code::BodyTooLarge,
            format!("request body is larger than {AUTH_BODY_LIMIT} bytes"),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            Code::InvalidJson,
            "request body is empty; a JSON object is required",
        ));
    }
    let v = parse_json(body, "body")?;
    if !v.is_object() {
        return Err(ApiError::new(
            Code::InvalidJson,
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

/// A required non-empty string field.
fn req_str<'a>(v: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    match v.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(ApiError::new(
            Code::InvalidParam,
            format!("`{key}` is required and must be a non-empty string"),
        )),
    }
}

/// Bodies are limited before they are buffered (the default payload limit would be larger).
fn body_config() -> web::PayloadConfig {
    web::PayloadConfig::new(AUTH_BODY_LIMIT)
}

// ---- /auth/v1 -------------------------------------------------------------------------------

async fn signin_custom(req: HttpRequest, body: Result<web::Bytes, actix_web::Error>, state: State) -> HttpResponse {
    let r = async {
        let body = object(&body.map_err(too_large)?)?;
        let env = env_of(&req, &state)?;
        if let Some(p) = body.get("provider_id") {
            if p != "custom" {
                return Err(ApiError::new(Code::InvalidParam, "`provider_id` must be `custom`"));
            }
        }
        let ticket = req_str(&body, "ticket")?;
        Ok(json!(state.auth.sign_in_custom_ticket(&env, ticket).await?))
    };
    auth_reply(r.await)
}

async fn provider_token(req: HttpRequest, body: Result<web::Bytes, actix_web::Error>, state: State) -> HttpResponse {
    let r = async {
        let body = object(&body.map_err(too_large)?)?;
        let env = env_of(&req, &state)?;
        let params = body.get("provider_params").cloned().unwrap_or(Value::Null);
        if let Some(t) = params.get("provider_code_type").and_then(Value::as_str) {
            if t != "open_id" {
                return Err(ApiError::new(
                    Code::NotSupported,
                    format!(
                        "provider_code_type `{}` is not supported: only open_id",
                        t.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
        let appid = match params.get("appid").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(a) => a,
            None => req_str(&body, "provider_id")?,
        };
        let code = req_str(&body, "provider_code")?;
        let token = state
            .auth
            .wechat_provider_token(&env, &state.config.wechat_api_base, appid, code)
            .await?;
        Ok(json!({ "provider_token": token, "expires_in": PROVIDER_TOKEN_TTL_SECS }))
    };
    auth_reply(r.await)
}

async fn signin_with_provider(
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    state: State,
) -> HttpResponse {
    let r = async {
        let body = object(&body.map_err(too_large)?)?;
        let env = env_of(&req, &state)?;
        let token = req_str(&body, "provider_token")?;
        Ok(json!(state.auth.sign_in_with_provider(&env, token).await?))
    };
    auth_reply(r.await)
}

fn too_large(e: actix_web::Error) -> ApiError {
    ApiError::new(Code::BodyTooLarge, format!("cannot read the request body: {e}"))
}

// ---- admin ----------------------------------------------------------------------------------

async fn ticket_key(req: HttpRequest, path: web::Path<String>, state: State, rid: RequestId) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let env = path.into_inner();
        let key = state.auth.ticket_key(&env).await?;
        Ok(json!({ "env": env, "key": URL_SAFE_NO_PAD.encode(key), "alg": "HS256" }))
    };
    admin_reply(&rid, actix_web::http::StatusCode::OK, r.await)
}

async fn get_wechat(req: HttpRequest, path: web::Path<String>, state: State, rid: RequestId) -> HttpResponse {
    let r = (|| {
        require_admin(&req, &state)?;
        Ok(json!(state.auth.wechat_settings(&path)?))
    })();
    admin_reply(&rid, actix_web::http::StatusCode::OK, r)
}

async fn put_wechat(
    req: HttpRequest,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let body = object(&body.map_err(too_large)?)?;
        let appid = req_str(&body, "appid")?;
        let secret = req_str(&body, "secret")?;
        Ok(json!(state.auth.set_wechat_settings(&path, appid, secret).await?))
    };
    admin_reply(&rid, actix_web::http::StatusCode::OK, r.await)
}
