//! The admin API under `/admin/v1/`: envs, collections, their security rules and their schemas
//! (users, keys and admin login are in `auth_api.rs`). Every route needs an admin token or server API key.
//! Errors: `{code, type, message, details}` with the code's HTTP status.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::auth_api::require_admin;
use super::{blocking, read_json, req_str, require_object, RequestId, State};
use crate::db::schema::MAX_SCHEMA_BYTES;
use crate::error::{ApiError, Code};
use crate::rules::CollectionRules;

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
        web::resource("/admin/v1/envs/{env}/collections/{coll}/rules")
            .route(web::get().to(get_rules))
            .route(web::put().to(put_rules))
            .default_service(web::to(admin_method_not_allowed)),
    )
    .service(
        web::resource("/admin/v1/envs/{env}/collections/{coll}/schema")
            .route(web::get().to(get_schema))
            .route(web::put().to(put_schema))
            .route(web::delete().to(delete_schema))
            .default_service(web::to(admin_method_not_allowed)),
    )
    .service(
        web::resource("/admin/v1/envs/{env}/collections/{coll}/schema/violations")
            .route(web::get().to(schema_violations))
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
    HttpResponse::build(status).json(json!({
        "code": e.code.as_str(),
        "type": e.code.kind().as_str(),
        "message": e.message,
        "details": { "requestId": rid.0 },
    }))
}

pub(super) async fn admin_method_not_allowed(req: HttpRequest, rid: RequestId) -> HttpResponse {
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

/// A collection's schema: `{"schema": <as set>}`, `null` when it has none.
async fn get_schema(req: HttpRequest, path: web::Path<(String, String)>, state: State, rid: RequestId) -> HttpResponse {
    let r = (|| {
        require_admin(&req, &state)?;
        let (env, coll) = path.into_inner();
        Ok(json!({ "schema": state.db.collection_schema(&env, &coll)? }))
    })();
    admin_reply(&rid, StatusCode::OK, r)
}

/// Sets a collection's schema from `{"schema": <JSON Schema>}`. It is compiled first (on the
/// blocking pool); one that does not compile is refused with `INVALID_SCHEMA` and nothing changes.
/// Existing documents are not checked or rewritten (see `…/schema/violations`).
async fn put_schema(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let (env, coll) = path.into_inner();
        // room for the envelope around the largest schema; the schema itself is measured when compiled
        let mut body = read_json(&req, payload, MAX_SCHEMA_BYTES + 1024).await?;
        require_object(&body)?;
        if let Some(k) = body.as_object().and_then(|m| m.keys().find(|k| *k != "schema")) {
            return Err(ApiError::new(
                Code::InvalidParam,
                format!(
                    "unknown field `{}`: the body is {{\"schema\": <JSON Schema>}}",
                    k.chars().take(64).collect::<String>()
                ),
            ));
        }
        let schema = match body.get_mut("schema").map(Value::take) {
            None | Some(Value::Null) => {
                return Err(ApiError::new(
                    Code::InvalidParam,
                    "`schema` is required (the body is {\"schema\": <JSON Schema>}); DELETE removes a schema",
                ))
            }
            Some(s) => s,
        };
        let db = state.db.clone();
        let (compiled, commit) = blocking(&state, move || {
            Ok(db.set_collection_schema(&env, &coll, Some(schema))?)
        })
        .await?;
        commit.wait().await?;
        Ok(json!({ "schema": compiled.as_ref().map(|s| s.source()) }))
    };
    admin_reply(&rid, StatusCode::OK, r.await)
}

/// Removes a collection's schema (idempotent): `{"schema": null}`.
async fn delete_schema(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let (env, coll) = path.into_inner();
        let (_, commit) = state.db.set_collection_schema(&env, &coll, None)?;
        commit.wait().await?;
        Ok(json!({ "schema": null }))
    };
    admin_reply(&rid, StatusCode::OK, r.await)
}

/// Checks every stored document against the current schema (on the blocking pool):
/// `{schema_set, checked, violating, sample: [{_id, failures: [{path, reason}], failure_count}]}`.
/// `?sample=N` (0-100, default 10) sets how many violating documents are listed.
async fn schema_violations(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let (env, coll) = path.into_inner();
        let sample = sample_param(&req)?;
        let db = state.db.clone();
        let report = blocking(&state, move || Ok(db.schema_violations(&env, &coll, sample)?)).await?;
        serde_json::to_value(report).map_err(|e| ApiError::new(Code::Internal, e.to_string()))
    };
    admin_reply(&rid, StatusCode::OK, r.await)
}

fn sample_param(req: &HttpRequest) -> Result<usize, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::new(Code::InvalidParam, format!("malformed query string: {e}")))?;
    match pairs.iter().find(|(k, _)| k == "sample") {
        None => Ok(10),
        Some((_, v)) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= 100)
            .ok_or_else(|| ApiError::new(Code::InvalidParam, "`sample` must be an integer between 0 and 100")),
    }
}
