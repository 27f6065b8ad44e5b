//! Database calls shared by both wire protocols: parse the request parts, run the operation on the
//! right thread, wait for durability, and return domain results for each protocol to shape.

use serde_json::value::RawValue;
use serde_json::Value;

use super::{blocking, State};
use crate::db::{FindParts, UpdateResult};
use crate::error::{ApiError, Code};

/// The parts of a list query, owned (both protocols carry them as JSON values).
#[derive(Default)]
pub struct FindRequest {
    pub query: Option<Value>,
    pub order: Option<Value>,
    pub offset: Option<Value>,
    pub limit: Option<Value>,
    pub projection: Option<Value>,
}

/// One page of a list query, with the offset and limit actually applied.
pub struct Page {
    pub list: Vec<Box<RawValue>>,
    pub offset: usize,
    pub limit: usize,
}

pub async fn query(state: &State, env: String, coll: String, req: FindRequest) -> Result<Page, ApiError> {
    let db = state.db.clone();
    blocking(state, move || {
        let find = db.find_spec(FindParts {
            query: req.query.as_ref(),
            order: req.order.as_ref(),
            offset: req.offset.as_ref(),
            limit: req.limit.as_ref(),
            projection: req.projection.as_ref(),
            cap: None,
        })?;
        let list = db.find(&env, &coll, &find)?;
        Ok(Page {
            list,
            offset: find.skip,
            limit: find.limit,
        })
    })
    .await
}

pub async fn count(state: &State, env: String, coll: String, query: Option<Value>) -> Result<u64, ApiError> {
    let db = state.db.clone();
    blocking(state, move || {
        let filter = db.filter(query.as_ref())?;
        Ok(db.count(&env, &coll, &filter)?)
    })
    .await
}

/// Inserts one document or a batch (all or none); acknowledged once durable.
pub async fn add(state: &State, env: &str, coll: &str, docs: Vec<Value>) -> Result<Vec<String>, ApiError> {
    let (ids, commit) = state.db.insert(env, coll, docs)?;
    commit.wait().await?;
    Ok(ids)
}

/// `merge == true`: an update (operators, plain fields as `$set`); `false`: a replacement (`set()`).
pub struct UpdateRequest {
    pub query: Option<Value>,
    pub data: Value,
    pub merge: bool,
    pub multi: bool,
    pub upsert: bool,
}

pub async fn update(state: &State, env: String, coll: String, req: UpdateRequest) -> Result<UpdateResult, ApiError> {
    let db = state.db.clone();
    let commit = blocking(state, move || {
        let filter = db.filter(req.query.as_ref())?;
        let update = db.update_spec(&req.data, req.merge)?;
        Ok(db.update(&env, &coll, &filter, &update, req.multi, req.upsert)?)
    })
    .await;
    let (result, commit) = commit?;
    commit.wait().await?;
    Ok(result)
}

pub async fn remove(
    state: &State,
    env: String,
    coll: String,
    query: Option<Value>,
    multi: bool,
) -> Result<u64, ApiError> {
    let db = state.db.clone();
    let (n, commit) = blocking(state, move || {
        let filter = db.filter(query.as_ref())?;
        Ok(db.remove(&env, &coll, &filter, multi)?)
    })
    .await?;
    commit.wait().await?;
    Ok(n)
}

pub async fn add_collection(state: &State, env: &str, name: &str) -> Result<(), ApiError> {
    state.db.create_collection(env, name)?.wait().await?;
    Ok(())
}

/// `data` of an update: a non-empty object.
pub fn update_data_of(data: Option<Value>) -> Result<Value, ApiError> {
    match data {
        Some(Value::Object(m)) if m.is_empty() => Err(ApiError::new(
            Code::InvalidParam,
            "`data` is empty: nothing to update (use remove to delete)",
        )),
        Some(d @ Value::Object(_)) => Ok(d),
        _ => Err(ApiError::new(Code::InvalidParam, "`data` must be a JSON object")),
    }
}

/// `data` of an add: one object or a non-empty array of objects.
pub fn documents_of(data: Option<Value>) -> Result<(Vec<Value>, bool), ApiError> {
    match data {
        Some(Value::Array(docs)) if !docs.is_empty() => Ok((docs, true)),
        Some(doc @ Value::Object(_)) => Ok((vec![doc], false)),
        _ => Err(ApiError::new(
            Code::InvalidParam,
            "`data` must be a document or a non-empty array of documents",
        )),
    }
}

/// Absent and `null` queries mean "everything"; anything else must be an object.
pub fn query_of(v: Option<Value>) -> Result<Option<Value>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(q @ Value::Object(_)) => Ok(Some(q)),
        Some(_) => Err(ApiError::new(Code::InvalidParam, "`query` must be a JSON object")),
    }
}
