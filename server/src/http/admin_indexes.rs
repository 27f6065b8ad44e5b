//! The admin API of indexes: list, create (built in the background), drop, and `explain` of a
//! query. Admin token or server API key only; errors in the admin shape.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::admin::{admin_method_not_allowed, admin_reply};
use super::auth_api::require_admin;
use super::{blocking, opt_bool, read_json, require_object, RequestId, State};
use crate::db::index::{IndexField, IndexSpec};
use crate::db::FindParts;
use crate::error::{ApiError, Code};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/v1/envs/{env}/collections/{coll}/indexes")
            .route(web::get().to(list))
            .route(web::post().to(create))
            .default_service(web::to(admin_method_not_allowed)),
    )
    .service(
        web::resource("/admin/v1/envs/{env}/collections/{coll}/indexes/{name}")
            .route(web::delete().to(drop_index))
            .default_service(web::to(admin_method_not_allowed)),
    )
    .service(
        web::resource("/admin/v1/envs/{env}/collections/{coll}/explain")
            .route(web::post().to(explain))
            .default_service(web::to(admin_method_not_allowed)),
    );
}

async fn list(req: HttpRequest, path: web::Path<(String, String)>, state: State, rid: RequestId) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let (env, coll) = path.into_inner();
        let db = state.db.clone();
        blocking(&state, move || Ok(json!({ "indexes": db.list_indexes(&env, &coll)? }))).await
    };
    admin_reply(&rid, StatusCode::OK, r.await)
}

/// `{"fields": "n:desc,a" | [{"field": "n", "direction": "desc"}, …], "unique": false, "name": …}`
/// → 202 with the new index in state `building`.
async fn create(
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
        require_object(&body)?;
        let spec = spec_of(&body)?;
        let db = state.db.clone();
        let def = blocking(&state, move || Ok(db.create_index(&env, &coll, &spec, true)?)).await?;
        state.db.kv().commit().wait().await?;
        Ok(json!({ "index": def_reply(&def) }))
    };
    admin_reply(&rid, StatusCode::ACCEPTED, r.await)
}

fn spec_of(body: &Value) -> Result<IndexSpec, ApiError> {
    let bad = |m: &str| ApiError::new(Code::InvalidParam, m);
    let fields = match body.get("fields") {
        Some(Value::String(s)) => IndexSpec::parse_fields(s)?,
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                serde_json::from_value::<IndexField>(item.clone())
                    .map_err(|_| bad("each of `fields` is {\"field\": <path>, \"direction\": \"asc\"|\"desc\"}"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(bad(
                "`fields` is required: \"a,b:desc\" or [{\"field\", \"direction\"}]",
            ))
        }
    };
    let name = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("`name` must be a string")),
    };
    Ok(IndexSpec {
        fields,
        unique: opt_bool(body, "unique")?.unwrap_or(false),
        name,
    })
}

/// What admins see of a definition (the storage id and build cursor are internal).
fn def_reply(def: &crate::db::index::IndexDef) -> Value {
    let mut v = serde_json::to_value(def).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.remove("id");
        m.remove("cursor");
    }
    v
}

async fn drop_index(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let r = async {
        require_admin(&req, &state)?;
        let (env, coll, name) = path.into_inner();
        let db = state.db.clone();
        let dropped = name.clone();
        blocking(&state, move || Ok(db.drop_index(&env, &coll, &name, true)?)).await?;
        state.db.kv().commit().wait().await?;
        Ok(json!({ "name": dropped, "state": "dropping" }))
    };
    admin_reply(&rid, StatusCode::ACCEPTED, r.await)
}

/// `{"query", "order", "offset", "limit"}` (as a GATEWAY list) → the plan and what it read.
async fn explain(
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
        require_object(&body)?;
        let db = state.db.clone();
        blocking(&state, move || {
            let find = db.find_spec(FindParts {
                query: body.get("query"),
                order: body.get("order"),
                offset: body.get("offset"),
                limit: body.get("limit"),
                projection: body.get("projection"),
                cap: None,
            })?;
            Ok(db.explain(&env, &coll, &find)?)
        })
        .await
    };
    admin_reply(&rid, StatusCode::OK, r.await)
}
