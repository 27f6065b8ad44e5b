//! The admin API under `/admin/v1/`: envs, env settings (rate limits), collections and their
//! security rules (users, keys and admin login are in `auth_api.rs`). Every route needs an admin token or server API key.
//! Errors: `{code, type, message, details}` with the code's HTTP status.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::auth_api::require_admin;
use super::{blocking, read_json, req_str, require_object, RequestId, State};
use crate::error::{ApiError, Code};
use crate::rules::CollectionRules;
use crate::settings::{parse_settings, settings_json};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/v1/envs")
            .route(web::get().to(list_envs))
            .route(web::post().to(create_env))
            .default_service(web::to(admin_method_not_allowed)),
    )
    .service(
        web::resource("/admin/v1/envs/{env}/collections")
            .route(web::get().to(list_collections))
            .route(web::post().to(create_collection))
            .default_service(web::to(admin_method_not_allowed)),
    )
    .service(
        web::resource("/admin/v1/envs/{env}/settings")
            .route(web::get().to(get_settings))
            .route(web::put().to(put_settings))
            .default_service(web::to(admin_method_not_allowed)),
    )
    .service(
        web::resource("/admin/v1/envs/{env}/collections/{coll}/rules")
            .route(web::get().to(get_rules))
            .route(web::put().to(put_rules))
            .default_service(web::to(admin_method_not_allowed)),
    );
}

/// An admin API reply: the body with `status`, or the error in the admin shape.
pub(super) fn admin_reply(rid: &RequestId, status: StatusCode, r: Result<Value, ApiError>) -> HttpResponse {
    match r {
        Ok(body) => HttpResponse::build(status).json(body),
        Err(e) => admin_error(rid, &e),
    }
}

pub fn admin_error(rid: &RequestId, e: &ApiError) -> HttpResponse {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let res = HttpResponse::build(status).json(json!({
        "code": e.code.as_str(),
        "type": e.code.kind().as_str(),
        "message": e.message,
        "details": { "requestId": rid.0 },
    }));
    super::with_retry_after(res, e)
}

pub async fn admin_method_not_allowed(req: HttpRequest, rid: RequestId) -> HttpResponse {
    let err = ApiError::new(
        Code::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    );
    admin_error(&rid, &err)
}

async fn list_envs(req: HttpRequest, state: State, rid: RequestId) -> HttpResponse {
    let r = require_admin(&req, &state).and_then(|()| Ok(json!({ "envs": state.db.envs()? })));
    admin_reply(&rid, StatusCode::OK, r)
}

async fn create_env(req: HttpRequest, payload: web::Payload, state: State, rid: RequestId) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let body = read_json(&req, payload, state.config.max_body_bytes).await?;
        require_object(&body)?;
        let name = req_str(&body, "name")?;
        state.db.create_env(name)?.wait().await?;
        Ok(json!({ "name": name }))
    };
    admin_reply(&rid, StatusCode::CREATED, r.await)
}

async fn list_collections(req: HttpRequest, path: web::Path<String>, state: State, rid: RequestId) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let db = state.db.clone();
        let env = path.into_inner();
        blocking(&state, move || Ok(json!({ "collections": db.collections(&env)? }))).await
    };
    admin_reply(&rid, StatusCode::OK, r.await)
}

async fn create_collection(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let body = read_json(&req, payload, state.config.max_body_bytes).await?;
        require_object(&body)?;
        let name = req_str(&body, "name")?;
        state.db.create_collection(&path, name)?.wait().await?;
        Ok(json!({ "env": path.as_str(), "name": name }))
    };
    admin_reply(&rid, StatusCode::CREATED, r.await)
}

/// The security rules of a collection: `{"rules": <what was saved>}` (PRIVATE when never set).
async fn get_rules(req: HttpRequest, path: web::Path<(String, String)>, state: State, rid: RequestId) -> HttpResponse {
    let r = (|| {
        require_admin(&req, &state)?;
        let (env, coll) = path.into_inner();
        let rules = match state.db.collection_rules(&env, &coll)? {
            Some(saved) => saved,
            None => CollectionRules::default_for_new_collection().to_json(),
        };
        Ok(json!({ "rules": rules }))
    })();
    admin_reply(&rid, StatusCode::OK, r)
}

/// Saves a collection's rules after parsing them: a preset `{"preset": "READONLY"}` or a custom
/// rule object; a bad rule is refused with `INVALID_RULE` and the position of the error.
async fn put_rules(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let (env, coll) = path.into_inner();
        let body = read_json(&req, payload, state.config.max_body_bytes).await?;
        let rules = CollectionRules::parse(&body)?;
        state
            .db
            .set_collection_rules(&env, &coll, rules.to_json())?
            .wait()
            .await?;
        Ok(json!({ "rules": rules.to_json() }))
    };
    admin_reply(&rid, StatusCode::OK, r.await)
}

/// Settings bodies are a few fields.
const SETTINGS_BODY_LIMIT: usize = 64 * 1024;

/// An env's runtime settings: `{"rateLimits": {class: rate | null}, "serverRateLimits": {…}}`.
async fn get_settings(req: HttpRequest, path: web::Path<String>, state: State, rid: RequestId) -> HttpResponse {
    let r = (|| {
        require_admin(&req, &state)?;
        let rates = state.settings.rate_limits(&path)?;
        Ok(settings_json(&rates, state.settings.server_limits()))
    })();
    admin_reply(&rid, StatusCode::OK, r)
}

/// Replaces an env's rate-limit overrides (`{"rateLimits": {…}}`; null or absent classes use the
/// server's quota); in force from the next request on.
async fn put_settings(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let body = read_json(&req, payload, SETTINGS_BODY_LIMIT).await?;
        let rates = parse_settings(&body)?;
        let rates = state.settings.set_rate_limits(&path, rates).await?;
        Ok(settings_json(&rates, state.settings.server_limits()))
    };
    admin_reply(&rid, StatusCode::OK, r.await)
}
