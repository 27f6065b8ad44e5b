//! GATEWAY REST (`/v1/database/...`), the default protocol of `@cloudbase/js-sdk` 3.x
//! (cloudbase-protocol.md §3.3). Errors: `{code, message, requestId}` with an HTTP status.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::auth_api;
use super::db_calls::{self, documents_of, query_of, update_data_of, FindRequest, Target, UpdateRequest};
use super::transactions as tx;
use super::{
    caller_of, gateway_error, method_not_allowed, opt_bool, parse_json, read_json, require_object, with_request_id,
    RequestId, State,
};
use crate::auth::Caller;
use crate::db::DEFAULT_ENV;
use crate::error::{ApiError, Code};

const PREFIX: &str = "/v1/database/instances/{instance}/databases/{database}";

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Nested scopes: the router matches the long shared prefix once, not once per resource.
    let documents = web::scope("/collections/{coll}/documents")
        .service(
            web::resource("")
                .route(web::get().to(list_documents))
                .route(web::post().to(add_or_override))
                .route(web::patch().to(update_documents))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/remove")
                .route(web::post().to(remove_documents))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/aggregations")
                .route(web::post().to(aggregate_documents))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/{id}")
                .route(web::get().to(get_document))
                .default_service(web::to(method_not_allowed)),
        );
    cfg.service(
        web::scope(PREFIX)
            .service(
                web::resource("/collections")
                    .route(web::post().to(add_collection))
                    .default_service(web::to(method_not_allowed)),
            )
            .configure(tx::gateway_routes)
            .service(documents),
    );
}

/// `{instance}/{database}` are always `(default)`: one database per env.
#[derive(serde::Deserialize)]
pub(super) struct DbPath {
    instance: String,
    database: String,
    coll: Option<String>,
    id: Option<String>,
    /// A transaction id (`P/transactions/{txid}/…`).
    pub(super) txid: Option<String>,
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
/// The env of a request: `?env=` when given; else the env of the end user's access token (the
/// SDK never sends its env on GATEWAY: on CloudBase it is part of the host name, so this is how
/// `init({env: 'staging'})` reaches `staging` once signed in); else `default`.
pub(super) fn env_of(req: &HttpRequest, path: &DbPath, state: &State) -> Result<String, ApiError> {
    for part in [&path.instance, &path.database] {
        if part != "(default)" {
            return Err(ApiError::new(
                Code::InvalidParam,
                format!("unknown database instance `{part}`: only `(default)` exists"),
            ));
        }
    }
    if let Some((_, env)) = query_pairs(req)?.into_iter().find(|(k, _)| k == "env") {
        return Ok(env);
    }
    // A token that does not verify falls through to `default`; `caller_of` then refuses it with
    // the precise error (expired, revoked, malformed).
    let user_env = auth_api::bearer_token(req).and_then(|token| match state.auth.verify_bearer(token) {
        Ok(Caller::User(id)) => Some(id.env),
        _ => None,
    });
    Ok(user_env.unwrap_or_else(|| DEFAULT_ENV.to_string()))
}

fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::new(Code::InvalidParam, format!("malformed query string: {e}")))
}

/// Who asks (the Bearer token, or a guest), in which env, on which collection.
fn target_of(req: &HttpRequest, path: &DbPath, state: &State) -> Result<Target, ApiError> {
    let env = env_of(req, path, state)?;
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
    let mut txid = None;
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
            "transactionId" => {
                txid = tx::id_of_param(&v);
                continue;
            }
            _ => continue,
        };
        if !v.is_empty() {
            *slot = Some(parse_json(v.as_bytes(), &format!("query parameter `{k}`"))?);
        }
    }
    let query = query_of(find.query.take())?;
    if let Some(txid) = txid {
        if count {
            return Err(tx::refuse("count"));
        }
        find.query = query;
        let read = tx::get(state, t, txid, find).await?;
        let list: Vec<Value> = read.doc.into_iter().collect();
        return Ok(Reply::Json(
            json!({ "list": list, "offset": read.offset, "limit": read.limit }),
        ));
    }
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
    let r = async {
        let t = target_of(&req, &path, &state)?;
        let id = path.id.clone().unwrap_or_default();
        let not_found = || ApiError::new(Code::DocumentNotExist, format!("document `{id}` does not exist"));
        let pairs = query_pairs(&req)?;
        let projection = pairs.iter().find(|(k, v)| k == "projection" && !v.is_empty());
        let projection = projection
            .map(|(_, p)| parse_json(p.as_bytes(), "query parameter `projection`"))
            .transpose()?;
        let txid = match pairs.iter().find(|(k, _)| k == "transactionId") {
            Some((_, v)) => tx::id_of_param(v),
            None => None,
        };
        if let Some(txid) = txid {
            let find = FindRequest {
                query: Some(json!({ "_id": id })),
                projection,
                ..FindRequest::default()
            };
            let doc = tx::get(&state, t, txid, find).await?.doc.ok_or_else(not_found)?;
            return Ok(Reply::Raw(HttpResponse::Ok().json(doc)));
        }
        let json = |body: Vec<u8>| Reply::Raw(HttpResponse::Ok().content_type("application/json").body(body));
        // admins without a projection get the stored bytes as they are: the fastest read there is
        if let (Caller::Admin, None) = (&t.caller, &projection) {
            return state.db.get_raw(&t.env, &t.coll, &id)?.map(json).ok_or_else(not_found);
        }
        let doc = db_calls::get_one(&state, &t, &id, projection)?.ok_or_else(not_found)?;
        Ok(json(doc))
    };
    respond(&rid, r.await)
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
        if tx::id_of(body.get("transactionId"))?.is_some() {
            return Err(ApiError::new(
                Code::NotSupported,
                "aggregation cannot run inside a transaction (CloudBase allows only single-document operations there)",
            ));
        }
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
    let txid = tx::id_of(body.get("transactionId"))?;
    let (docs, _) = documents_of(body.get_mut("data").map(Value::take))?;
    let ids = match txid {
        Some(txid) => tx::add(state, t, txid, docs).await?,
        None => db_calls::add(state, &t, docs).await?,
    };
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
    let txid = tx::id_of(body.get("transactionId"))?;
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
    let r = match txid {
        Some(txid) => tx::update(state, t, txid, request).await?,
        None => db_calls::update(state, t, request).await?,
    };
    let upserted = r.upserted_id.unwrap_or_default();
    // `upsert_id` is what `where().update()` reads, `upserted_id` what `doc().set()` reads
    // (js-sdk 3.x's bundled @cloudbase/database); both carry the upserted `_id`, else "".
    Ok(Reply::Json(json!({
        "matched": r.matched,
        "updated": r.updated,
        "upsert_id": upserted,
        "upserted_id": upserted,
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
        let txid = tx::id_of(body.get("transactionId"))?;
        let multi = opt_bool(&body, "multi")?.unwrap_or(false);
        let query = query_of(body.get_mut("query").map(Value::take))?;
        let deleted = match txid {
            Some(txid) => tx::remove(&state, t, txid, query, multi).await?,
            None => db_calls::remove(&state, t, query, multi).await?,
        };
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
