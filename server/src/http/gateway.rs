//! GATEWAY REST (`/v1/database/...`), the default protocol of `@cloudbase/js-sdk` 3.x
//! (cloudbase-protocol.md §3.3). Errors: `{code, message, requestId}` with an HTTP status.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::db_calls::{self, documents_of, query_of, update_data_of, FindRequest, Target, UpdateRequest};
use super::{
    caller_of, gateway_error, method_not_allowed, opt_bool, parse_json, read_json, require_object, with_request_id,
    RequestId, State,
};
use crate::auth::Caller;
use crate::db::DEFAULT_ENV;
use crate::error::{ApiError, Code};

const PREFIX: &str = "/v1/database/instances/{instance}/databases/{database}";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(format!("{PREFIX}/collections"))
            .route(web::post().to(add_collection))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(format!("{PREFIX}/collections/{{coll}}/documents"))
            .route(web::get().to(list_documents))
            .route(web::post().to(add_or_override))
            .route(web::patch().to(update_documents))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(format!("{PREFIX}/collections/{{coll}}/documents/remove"))
            .route(web::post().to(remove_documents))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(format!("{PREFIX}/collections/{{coll}}/documents/aggregations"))
            .route(web::post().to(aggregate_documents))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(format!("{PREFIX}/collections/{{coll}}/documents/{{id}}"))
            .route(web::get().to(get_document))
            .default_service(web::to(method_not_allowed)),
    );
}

/// `{instance}/{database}` are always `(default)`: one database per env.
#[derive(serde::Deserialize)]
struct DbPath {
    instance: String,
    database: String,
    coll: Option<String>,
    id: Option<String>,
}

/// What a handler produces: a JSON object (gets `requestId`) or a finished response.
enum Reply {
    Json(Value),
    Raw(HttpResponse),
}

fn respond(rid: &RequestId, r: Result<Reply, ApiError>) -> HttpResponse {
    match r {
        Ok(Reply::Json(body)) => HttpResponse::Ok().json(with_request_id(rid, body)),
        Ok(Reply::Raw(res)) => res,
        Err(e) => gateway_error(rid, &e),
    }
}

/// The env of a GATEWAY request: `?env=` or the default (a token claim once auth exists).
fn env_of(req: &HttpRequest, path: &DbPath) -> Result<String, ApiError> {
    for part in [&path.instance, &path.database] {
        if part != "(default)" {
            return Err(ApiError::new(
                Code::InvalidParam,
                format!("unknown database instance `{part}`: only `(default)` exists"),
            ));
        }
    }
    let env = query_pairs(req)?.into_iter().find(|(k, _)| k == "env").map(|(_, v)| v);
    Ok(env.unwrap_or_else(|| DEFAULT_ENV.to_string()))
}

fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::new(Code::InvalidParam, format!("malformed query string: {e}")))
}

/// Who asks (the Bearer token, or a guest), in which env, on which collection.
fn target_of(req: &HttpRequest, path: &DbPath, state: &State) -> Result<Target, ApiError> {
    let env = env_of(req, path)?;
    let caller = caller_of(req, state, &env, None)?;
    Ok(Target {
        caller,
        env,
        coll: coll_of(path),
    })
}

fn coll_of(path: &DbPath) -> String {
    path.coll.clone().unwrap_or_default()
}

async fn list_documents(req: HttpRequest, path: web::Path<DbPath>, state: State, rid: RequestId) -> HttpResponse {
    respond(&rid, list(&req, &path, &state, &rid).await)
}

/// The list reply, serialized without re-parsing the stored documents.
#[derive(serde::Serialize)]
struct ListReply<'a> {
    list: &'a [Box<serde_json::value::RawValue>],
    offset: usize,
    limit: usize,
    #[serde(rename = "requestId")]
    request_id: &'a str,
}

async fn list(req: &HttpRequest, path: &DbPath, state: &State, rid: &RequestId) -> Result<Reply, ApiError> {
    let t = target_of(req, path, state)?;
    let mut find = FindRequest::default();
    let mut count = false;
    for (k, v) in query_pairs(req)? {
        let slot = match k.as_str() {
            "query" => &mut find.query,
            "order" => &mut find.order,
            "offset" => &mut find.offset,
            "limit" => &mut find.limit,
            "projection" => &mut find.projection,
            "count" => {
                count = v == "true";
                continue;
            }
            "transactionId" if !v.is_empty() => {
                return Err(ApiError::new(Code::NotSupported, "transactions are not supported yet"))
            }
            _ => continue,
        };
        if !v.is_empty() {
            *slot = Some(parse_json(v.as_bytes(), &format!("query parameter `{k}`"))?);
        }
    }
    let query = query_of(find.query.take())?;
    if count {
        let total = db_calls::count(state, t, query).await?;
        return Ok(Reply::Json(json!({ "total": total })));
    }
    find.query = query;
    let page = db_calls::query(state, t, find).await?;
    let reply = ListReply {
        list: &page.list,
        offset: page.offset,
        limit: page.limit,
        request_id: &rid.0,
    };
    Ok(Reply::Raw(HttpResponse::Ok().json(reply)))
}

/// The document itself (CloudBase's reply shape: no envelope). `?projection=` is honoured.
async fn get_document(req: HttpRequest, path: web::Path<DbPath>, state: State, rid: RequestId) -> HttpResponse {
    let r = (|| {
        let t = target_of(&req, &path, &state)?;
        let id = path.id.clone().unwrap_or_default();
        let not_found = || ApiError::new(Code::DocumentNotExist, format!("document `{id}` does not exist"));
        let projection = query_pairs(&req)?
            .into_iter()
            .find(|(k, v)| k == "projection" && !v.is_empty());
        let projection = projection
            .map(|(_, p)| parse_json(p.as_bytes(), "query parameter `projection`"))
            .transpose()?;
        let json = |body: Vec<u8>| Reply::Raw(HttpResponse::Ok().content_type("application/json").body(body));
        // admins without a projection get the stored bytes as they are: the fastest read there is
        if let (Caller::Admin, None) = (&t.caller, &projection) {
            return state.db.get_raw(&t.env, &t.coll, &id)?.map(json).ok_or_else(not_found);
        }
        let doc = db_calls::get_one(&state, &t, &id, projection)?.ok_or_else(not_found)?;
        Ok(json(doc))
    })();
    respond(&rid, r)
}

/// `{pipeline: [{$stage: spec}, …]}` → `{list: [documents]}` (cloudbase-protocol.md §3.3).
async fn aggregate_documents(
    req: HttpRequest,
    path: web::Path<DbPath>,
    payload: web::Payload,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let r = async {
        let t = target_of(&req, &path, &state)?;
        let mut body = read_json(&req, payload, state.config.max_body_bytes).await?;
        require_object(&body)?;
        reject_transaction(&body)?;
        let pipeline = match body.get_mut("pipeline").map(Value::take) {
            Some(p @ Value::Array(_)) => p,
            _ => {
                return Err(ApiError::new(
                    Code::InvalidParam,
                    "`pipeline` is required and must be an array of stages",
                ))
            }
        };
        let list = db_calls::aggregate(&state, t, pipeline).await?;
        Ok(Reply::Raw(HttpResponse::Ok().json(AggregateReply {
            list: &list,
            request_id: &rid.0,
        })))
    };
    respond(&rid, r.await)
}

#[derive(serde::Serialize)]
struct AggregateReply<'a> {
    list: &'a [Box<serde_json::value::RawValue>],
    #[serde(rename = "requestId")]
    request_id: &'a str,
}

/// POST on documents is an add, or an update when `X-HTTP-Method-Override: PATCH` (mini-programs
/// cannot send PATCH).
async fn add_or_override(
    req: HttpRequest,
    path: web::Path<DbPath>,
    payload: web::Payload,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let overridden = req
        .headers()
        .get("x-http-method-override")
        .and_then(|v| v.to_str().ok());
    let r = match overridden {
        Some(m) if m.eq_ignore_ascii_case("PATCH") => update(&req, &path, payload, &state).await,
        Some(m) => Err(ApiError::new(
            Code::MethodNotAllowed,
            format!("method override `{m}` is not supported"),
        )),
        None => add(&req, &path, payload, &state).await,
    };
    respond(&rid, r)
}

async fn add(req: &HttpRequest, path: &DbPath, payload: web::Payload, state: &State) -> Result<Reply, ApiError> {
    let t = target_of(req, path, state)?;
    let mut body = read_json(req, payload, state.config.max_body_bytes).await?;
    require_object(&body)?;
    reject_transaction(&body)?;
    let (docs, _) = documents_of(body.get_mut("data").map(Value::take))?;
    let ids = db_calls::add(state, &t, docs).await?;
    Ok(Reply::Json(json!({ "insertedIds": ids })))
}

async fn update_documents(
    req: HttpRequest,
    path: web::Path<DbPath>,
    payload: web::Payload,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    respond(&rid, update(&req, &path, payload, &state).await)
}

/// `{query, data, multi, upsert, replaceMode}`. The SDK sends `update()` data as operators and
/// `set()` data as a plain document, so plain data (or `replaceMode: true`) is a replacement.
async fn update(req: &HttpRequest, path: &DbPath, payload: web::Payload, state: &State) -> Result<Reply, ApiError> {
    let t = target_of(req, path, state)?;
    let mut body = read_json(req, payload, state.config.max_body_bytes).await?;
    require_object(&body)?;
    reject_transaction(&body)?;
    let data = update_data_of(body.get_mut("data").map(Value::take))?;
    let has_operators = data.as_object().is_some_and(|m| m.keys().any(|k| k.starts_with('$')));
    let merge = match (opt_bool(&body, "replaceMode")?, opt_bool(&body, "merge")?) {
        (Some(true), _) => false,
        (_, Some(merge)) => merge,
        _ => has_operators,
    };
    let request = UpdateRequest {
        query: query_of(body.get_mut("query").map(Value::take))?,
        data,
        merge,
        multi: opt_bool(&body, "multi")?.unwrap_or(false),
        upsert: opt_bool(&body, "upsert")?.unwrap_or(false),
    };
    let r = db_calls::update(state, t, request).await?;
    Ok(Reply::Json(json!({
        "matched": r.matched,
        "updated": r.updated,
        "upsert_id": r.upserted_id.unwrap_or_default(),
    })))
}

async fn remove_documents(
    req: HttpRequest,
    path: web::Path<DbPath>,
    payload: web::Payload,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let r = async {
        let t = target_of(&req, &path, &state)?;
        let mut body = read_json(&req, payload, state.config.max_body_bytes).await?;
        require_object(&body)?;
        reject_transaction(&body)?;
        let multi = opt_bool(&body, "multi")?.unwrap_or(false);
        let query = query_of(body.get_mut("query").map(Value::take))?;
        let deleted = db_calls::remove(&state, t, query, multi).await?;
        Ok(Reply::Json(json!({ "deleted": deleted })))
    };
    respond(&rid, r.await)
}

async fn add_collection(
    req: HttpRequest,
    path: web::Path<DbPath>,
    payload: web::Payload,
    state: State,
    rid: RequestId,
) -> HttpResponse {
    let r = async {
        let t = target_of(&req, &path, &state)?;
        let body = read_json(&req, payload, state.config.max_body_bytes).await?;
        require_object(&body)?;
        let name = super::req_str(&body, "collectionName")?;
        db_calls::add_collection(&state, &t.caller, &t.env, name).await?;
        Ok(Reply::Json(json!({ "collectionName": name })))
    };
    respond(&rid, r.await)
}

fn reject_transaction(body: &Value) -> Result<(), ApiError> {
    match body.get("transactionId") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s.is_empty() => Ok(()),
        Some(_) => Err(ApiError::new(Code::NotSupported, "transactions are not supported yet")),
    }
}
