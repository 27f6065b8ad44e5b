//! The admin API under `/admin/v1/` (envs and collections so far; the CLI and console use it).
//! Errors: `{code, type, message, details}` with the code's HTTP status. Open until auth exists.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{blocking, read_json, req_str, require_object, RequestId, State};
use crate::error::{ApiError, Code};

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
    );
}

fn respond(rid: &RequestId, status: StatusCode, r: Result<Value, ApiError>) -> HttpResponse {
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

async fn admin_method_not_allowed(req: HttpRequest, rid: RequestId) -> HttpResponse {
    let err = ApiError::new(
        Code::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    );
    admin_error(&rid, &err)
}

async fn list_envs(state: State, rid: RequestId) -> HttpResponse {
    let r = state
        .db
        .envs()
        .map(|envs| json!({ "envs": envs }))
        .map_err(ApiError::from);
    respond(&rid, StatusCode::OK, r)
}

async fn create_env(req: HttpRequest, payload: web::Payload, state: State, rid: RequestId) -> HttpResponse {
    let r = async {
        let body = read_json(&req, payload, state.config.max_body_bytes).await?;
        require_object(&body)?;
        let name = req_str(&body, "name")?;
        state.db.create_env(name)?.wait().await?;
        Ok(json!({ "name": name }))
    };
    respond(&rid, StatusCode::CREATED, r.await)
}

async fn list_collections(path: web::Path<String>, state: State, rid: RequestId) -> HttpResponse {
    let db = state.db.clone();
    let env = path.into_inner();
    let r = blocking(&state, move || Ok(json!({ "collections": db.collections(&env)? }))).await;
    respond(&rid, StatusCode::OK, r)
}

async fn create_collection(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let r = async {
        let body = read_json(&req, payload, state.config.max_body_bytes).await?;
        require_object(&body)?;
        let name = req_str(&body, "name")?;
        state.db.create_collection(&path, name)?.wait().await?;
        Ok(json!({ "env": path.as_str(), "name": name }))
    };
    respond(&rid, StatusCode::CREATED, r.await)
}
