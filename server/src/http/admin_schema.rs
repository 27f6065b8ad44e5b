//! The admin API of collection schemas: get, set, clear, and the report of stored documents that
//! violate the current schema. Admin token or server API key only; errors in the admin shape.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::admin::{admin_method_not_allowed, admin_reply};
use super::auth_api::require_admin;
use super::{blocking, read_json, require_object, RequestId, State};
use crate::db::schema::MAX_SCHEMA_BYTES;
use crate::error::{ApiError, Code};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
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
