//! CLOUD_API action RPC: `POST /web?env=…` with `{action, …}` (cloudbase-protocol.md §3.5), spoken
//! by js-sdk 1.x/2.x and `endPointMode: 'CLOUD_API'`. Every reply is HTTP 200:
//! `{requestId, data}` on success, `{requestId, code, message}` on error.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::db_calls::{self, documents_of, query_of, update_data_of, FindRequest, Target, UpdateRequest};
use super::transactions as tx;
use super::{caller_of, method_not_allowed, opt_bool, read_json, req_str, require_object, RequestId, State};
use crate::db::DEFAULT_ENV;
use crate::error::{ApiError, Code};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/web")
            .route(web::post().to(action))
            .default_service(web::to(method_not_allowed)),
    );
}

#[derive(Serialize)]
struct Success<'a, T: Serialize> {
    #[serde(rename = "requestId")]
    request_id: &'a str,
    data: T,
}

#[derive(Serialize)]
struct ListData {
    list: Vec<Box<RawValue>>,
    offset: usize,
    limit: usize,
}

fn ok<T: Serialize>(rid: &RequestId, data: T) -> HttpResponse {
    HttpResponse::Ok().json(Success {
        request_id: &rid.0,
        data,
    })
}

/// CloudBase answers CLOUD_API errors with HTTP 200 (the SDK treats any other status as a network
/// failure and would hide the code); the SDK branches on `code`. `Retry-After` is still sent.
pub(super) fn error(rid: &RequestId, e: &ApiError) -> HttpResponse {
    let res = HttpResponse::Ok().json(json!({ "requestId": rid.0, "code": e.code.as_str(), "message": e.message }));
    super::with_retry_after(res, e)
}

async fn action(req: HttpRequest, payload: web::Payload, state: State, rid: RequestId) -> HttpResponse {
    match dispatch(&req, payload, &state, &rid).await {
        Ok(res) => res,
        Err(e) => error(&rid, &e),
    }
}

async fn dispatch(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    rid: &RequestId,
) -> Result<HttpResponse, ApiError> {
    let mut body = read_json(req, payload, state.config.max_body_bytes).await?;
    require_object(&body)?;
    let action = req_str(&body, "action")?.to_string();
    let env = env_of(req, &body)?;
    let token = body.get("access_token").and_then(Value::as_str).map(str::to_string);
    let caller = caller_of(req, state, &env, token.as_deref())?;
    let target = |coll: String| Target {
        caller: caller.clone(),
        env: env.clone(),
        coll,
    };
    let txid = tx::id_of(body.get("transactionId"))?;
    if action.starts_with("database.") && action.ends_with("Transaction") {
        return transaction_action(&action, body, state, rid, &caller, &env).await;
    }
    match action.as_str() {
        "database.addCollection" => {
            let name = req_str(&body, "collectionName")?;
            db_calls::add_collection(state, &caller, &env, name).await?;
            Ok(ok(rid, json!({})))
        }
        "database.queryDocument" => {
            let coll = collection(&body)?;
            let mut take = |k: &str| body.get_mut(k).map(Value::take).filter(|v| !v.is_null());
            let find = FindRequest {
                query: query_of(take("query"))?,
                order: take("order"),
                offset: take("offset"),
                limit: take("limit"),
                projection: take("projection"),
            };
            if let Some(txid) = txid {
                let read = tx::get(state, target(coll), txid, find).await?;
                let list: Vec<Box<RawValue>> = read.doc.iter().map(raw).collect::<Result<_, _>>()?;
                return Ok(ok(
                    rid,
                    ListData {
                        list,
                        offset: read.offset,
                        limit: read.limit,
                    },
                ));
            }
            let page = db_calls::query(state, target(coll), find).await?;
            Ok(ok(
                rid,
                ListData {
                    list: page.list,
                    offset: page.offset,
                    limit: page.limit,
                },
            ))
        }
        "database.countDocument" => {
            let coll = collection(&body)?;
            if txid.is_some() {
                return Err(tx::refuse("count"));
            }
            let query = query_of(body.get_mut("query").map(Value::take))?;
            let total = db_calls::count(state, target(coll), query).await?;
            Ok(ok(rid, json!({ "total": total })))
        }
        "database.addDocument" => {
            let coll = collection(&body)?;
            let (mut docs, batch) = documents_of(body.get_mut("data").map(Value::take))?;
            // js-sdk 1.x may send the id beside the data
            if let (Some(id), false, Some(Value::Object(doc))) = (body.get("_id"), batch, docs.first_mut()) {
                doc.entry("_id").or_insert_with(|| id.clone());
            }
            let ids = match txid {
                Some(txid) => tx::add(state, target(coll), txid, docs).await?,
                None => db_calls::add(state, &target(coll), docs).await?,
            };
            match (batch, ids.first()) {
                (false, Some(id)) => Ok(ok(rid, json!({ "_id": id }))),
                _ => Ok(ok(rid, json!({ "insertedIds": ids }))),
            }
        }
        "database.updateDocument" => {
            let coll = collection(&body)?;
            let data = update_data_of(body.get_mut("data").map(Value::take))?;
            let request = UpdateRequest {
                query: query_of(body.get_mut("query").map(Value::take))?,
                data,
                merge: opt_bool(&body, "merge")?.unwrap_or(true),
                multi: opt_bool(&body, "multi")?.unwrap_or(false),
                upsert: opt_bool(&body, "upsert")?.unwrap_or(false),
            };
            let r = match txid {
                Some(txid) => tx::update(state, target(coll), txid, request).await?,
                None => db_calls::update(state, target(coll), request).await?,
            };
            let upserted = r.upserted_id.unwrap_or_default();
            // both names, as on GATEWAY: `doc().set()` reads `upserted_id`, `where().update()` `upsert_id`
            Ok(ok(
                rid,
                json!({ "updated": r.updated, "upsert_id": upserted, "upserted_id": upserted, "matched": r.matched }),
            ))
        }
        "database.deleteDocument" => {
            let coll = collection(&body)?;
            let multi = opt_bool(&body, "multi")?.unwrap_or(false);
            let query = query_of(body.get_mut("query").map(Value::take))?;
            let deleted = match txid {
                Some(txid) => tx::remove(state, target(coll), txid, query, multi).await?,
                None => db_calls::remove(state, target(coll), query, multi).await?,
            };
            Ok(ok(rid, json!({ "deleted": deleted })))
        }
        "database.aggregate" => {
            let coll = collection(&body)?;
            let stages = stages_of(body.get_mut("stages").map(Value::take))?;
            let list = db_calls::aggregate(state, target(coll), stages).await?;
            // CloudBase's shape: a JSON string of an array of JSON strings (one per document)
            let docs: Vec<&str> = list.iter().map(|d| d.get()).collect();
            let encoded = serde_json::to_string(&docs)
                .map_err(|e| ApiError::new(Code::Internal, format!("cannot encode the result: {e}")))?;
            Ok(ok(rid, json!({ "list": encoded })))
        }
        other => Err(ApiError::new(
            Code::InvalidAction,
            format!(
                "action `{}` is not supported",
                other.chars().take(64).collect::<String>()
            ),
        )),
    }
}

/// The transaction actions of `@cloudbase/database` (server SDK dialect). Their replies carry the
/// fields at the top level beside `requestId` (no `data` envelope), and documents and counts as
/// EJSON text, as the SDK's `Transaction` reads them.
async fn transaction_action(
    action: &str,
    mut body: Value,
    state: &State,
    rid: &RequestId,
    caller: &crate::auth::Caller,
    env: &str,
) -> Result<HttpResponse, ApiError> {
    let top = |mut fields: Value| {
        fields["requestId"] = json!(rid.0);
        HttpResponse::Ok().json(fields)
    };
    let txid = || {
        tx::id_of(body.get("transactionId"))?
            .ok_or_else(|| ApiError::new(Code::InvalidParam, "`transactionId` is required and must be a string"))
    };
    match action {
        "database.startTransaction" => Ok(top(json!({ "transactionId": tx::start(state, caller, env)? }))),
        "database.commitTransaction" => {
            tx::commit(state, caller, env, &txid()?).await?;
            Ok(top(json!({})))
        }
        "database.abortTransaction" => {
            tx::rollback(state, caller, env, &txid()?)?;
            Ok(top(json!({})))
        }
        "database.getInTransaction" | "database.updateDocInTransaction" | "database.deleteDocInTransaction" => {
            let id = txid()?;
            let coll = collection(&body)?;
            let query = doc_query(&mut body)?;
            let t = Target {
                caller: caller.clone(),
                env: env.to_string(),
                coll,
            };
            match action {
                "database.getInTransaction" => {
                    let projection = body.get_mut("projection").map(Value::take).filter(|v| !v.is_null());
                    let find = FindRequest {
                        query,
                        projection,
                        ..FindRequest::default()
                    };
                    let doc = tx::get(state, t, id, find).await?.doc.unwrap_or(Value::Null);
                    Ok(top(json!({ "data": doc.to_string() })))
                }
                "database.updateDocInTransaction" => {
                    let data = update_data_of(ejson_field(&mut body, "data")?)?;
                    let merge = data.as_object().is_some_and(|m| m.keys().any(|k| k.starts_with('$')));
                    let request = UpdateRequest {
                        query,
                        data,
                        merge,
                        multi: false,
                        upsert: opt_bool(&body, "upsert")?.unwrap_or(false),
                    };
                    let r = tx::update(state, t, id, request).await?;
                    let mut reply = json!({ "updated": r.updated, "matched": r.matched });
                    if let Some(up) = r.upserted_id {
                        reply["upserted"] = json!(json!([{ "index": 0, "_id": up }]).to_string());
                    }
                    Ok(top(reply))
                }
                _ => {
                    let deleted = tx::remove(state, t, id, query, false).await?;
                    Ok(top(json!({ "deleted": deleted })))
                }
            }
        }
        "database.insertDocInTransaction" => {
            let id = txid()?;
            let coll = collection(&body)?;
            let Some(Value::Object(mut doc)) = ejson_field(&mut body, "data")? else {
                return Err(ApiError::new(
                    Code::InvalidParam,
                    "`data` must be one document (an object)",
                ));
            };
            if let Some(given) = body.get("_id").filter(|v| !v.is_null()) {
                doc.entry("_id").or_insert_with(|| given.clone());
            }
            let t = Target {
                caller: caller.clone(),
                env: env.to_string(),
                coll,
            };
            let ids = tx::add(state, t, id, vec![Value::Object(doc)]).await?;
            Ok(top(json!({ "inserted": 1, "ok": 1, "_id": ids.first() })))
        }
        other => Err(ApiError::new(
            Code::InvalidAction,
            format!(
                "action `{}` is not supported",
                other.chars().take(64).collect::<String>()
            ),
        )),
    }
}

/// A field the server SDK sends as EJSON text (`EJSON.stringify`) or as JSON.
fn ejson_field(body: &mut Value, key: &str) -> Result<Option<Value>, ApiError> {
    match body.get_mut(key).map(Value::take) {
        Some(Value::String(text)) => super::parse_json(text.as_bytes(), &format!("`{key}`")).map(Some),
        other => Ok(other.filter(|v| !v.is_null())),
    }
}

/// The document a transaction action names: `query` (`{_id: {$eq: id}}`, as JSON or EJSON
/// text) or the older SDKs' top-level `_id`.
fn doc_query(body: &mut Value) -> Result<Option<Value>, ApiError> {
    match ejson_field(body, "query")? {
        Some(q) => query_of(Some(q)),
        None => match body.get("_id") {
            Some(id @ Value::String(_)) => Ok(Some(json!({ "_id": id }))),
            _ => Err(ApiError::new(
                Code::InvalidParam,
                "`query` (pinning `_id`) or `_id` is required",
            )),
        },
    }
}

fn raw(doc: &Value) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(doc.to_string()).map_err(|e| ApiError::new(Code::Internal, e.to_string()))
}

/// `stages: [{stageKey: "$match", stageValue: "<JSON text>"}, …]` as a pipeline
/// (`[{"$match": …}, …]`). A `stageValue` that is not a string is taken as the value itself.
fn stages_of(v: Option<Value>) -> Result<Value, ApiError> {
    let bad = |msg: String| ApiError::new(Code::InvalidParam, msg);
    let Some(Value::Array(items)) = v else {
        return Err(bad(
            "`stages` is required and must be an array of {stageKey, stageValue}".into(),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut m) = item else {
            return Err(bad(format!("`stages[{i}]` must be an object {{stageKey, stageValue}}")));
        };
        let key = match m.get("stageKey") {
            Some(Value::String(k)) => k.clone(),
            _ => {
                return Err(bad(format!(
                    "`stages[{i}].stageKey` must be a stage name such as \"$match\""
                )))
            }
        };
        let value = match m.remove("stageValue") {
            Some(Value::String(text)) => super::parse_json(text.as_bytes(), &format!("`stages[{i}].stageValue`"))?,
            Some(other) => other,
            None => return Err(bad(format!("`stages[{i}].stageValue` is required"))),
        };
        let mut stage = serde_json::Map::new();
        stage.insert(key, value);
        out.push(Value::Object(stage));
    }
    Ok(Value::Array(out))
}

fn collection(body: &Value) -> Result<String, ApiError> {
    Ok(req_str(body, "collectionName")?.to_string())
}

/// `?env=` first, then the envelope's `env`, then the default env.
fn env_of(req: &HttpRequest, body: &Value) -> Result<String, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::new(Code::InvalidParam, format!("malformed query string: {e}")))?;
    if let Some((_, env)) = pairs.into_iter().find(|(k, _)| k == "env") {
        return Ok(env);
    }
    match body.get("env") {
        None | Some(Value::Null) => Ok(DEFAULT_ENV.to_string()),
        Some(Value::String(s)) if s.is_empty() => Ok(DEFAULT_ENV.to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::new(Code::InvalidParam, "`env` must be a string")),
    }
}
