//! CLOUD_API action RPC: `POST /web?env=…` with `{action, …}` (cloudbase-protocol.md §3.5), spoken
//! by js-sdk 1.x/2.x and `endPointMode: 'CLOUD_API'`. Every reply is HTTP 200:
//! `{requestId, data}` on success, `{requestId, code, message}` on error.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::db_calls::{self, documents_of, query_of, update_data_of, FindRequest, Target, UpdateRequest};
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

/// CloudBase answers CLOUD_API errors with HTTP 200; the SDK branches on `code`.
fn error(rid: &RequestId, e: &ApiError) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "requestId": rid.0, "code": e.code.as_str(), "message": e.message }))
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
            let ids = db_calls::add(state, &target(coll), docs).await?;
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
            let r = db_calls::update(state, target(coll), request).await?;
            Ok(ok(
                rid,
                json!({ "updated": r.updated, "upsert_id": r.upserted_id.unwrap_or_default(), "matched": r.matched }),
            ))
        }
        "database.deleteDocument" => {
            let coll = collection(&body)?;
            let multi = opt_bool(&body, "multi")?.unwrap_or(false);
            let query = query_of(body.get_mut("query").map(Value::take))?;
            let deleted = db_calls::remove(state, target(coll), query, multi).await?;
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
