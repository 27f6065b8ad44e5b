//! Database calls shared by both wire protocols: apply the caller's access (security rules,
//! `_openid`, `'{openid}'`, the client limit cap), parse the request parts, run the operation on
//! the right thread, wait for durability, and return domain results for each protocol to shape.

use serde_json::value::RawValue;
use serde_json::Value;

use super::{blocking, State};
use crate::access::{Gate, ReadScope};
use crate::auth::Caller;
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

/// Who asks, in which env, on which collection.
#[derive(Clone)]
pub struct Target {
    pub caller: Caller,
    pub env: String,
    pub coll: String,
}

pub(super) fn gate(state: &State, t: &Target) -> Result<Gate, ApiError> {
    Gate::open(
        &state.db,
        &state.rules,
        &t.env,
        &t.coll,
        &t.caller,
        state.client_limits(),
    )
}

/// One page of a list query, with the offset and limit actually applied.
pub struct Page {
    pub list: Vec<Box<RawValue>>,
    pub offset: usize,
    pub limit: usize,
}

pub async fn query(state: &State, t: Target, req: FindRequest) -> Result<Page, ApiError> {
    let st = state.clone();
    blocking(state, move || {
        let gate = gate(&st, &t)?;
        let query = gate.read(&st.db, &t.env, req.query)?;
        let find = st.db.find_spec(FindParts {
            query: query.as_ref(),
            order: req.order.as_ref(),
            offset: req.offset.as_ref(),
            limit: req.limit.as_ref(),
            projection: req.projection.as_ref(),
            cap: gate.limit_cap(),
        })?;
        let list = st.db.find(&t.env, &t.coll, &find)?;
        Ok(Page {
            list,
            offset: find.skip,
            limit: find.limit,
        })
    })
    .await
}

/// Runs an aggregation pipeline (a JSON array of `{$stage: spec}`) through the caller's rules:
/// `'{openid}'` replaced, the source and every `$lookup` checked and narrowed by their
/// collections' read rules, the result capped at the client limit.
pub async fn aggregate(state: &State, t: Target, mut stages: Value) -> Result<Vec<Box<RawValue>>, ApiError> {
    let st = state.clone();
    blocking(state, move || {
        let gate = gate(&st, &t)?;
        gate.replace_openid(&mut stages);
        let mut pipeline = st.db.pipeline(&stages)?;
        gate.aggregate(&st.db, &st.rules, &t.env, &mut pipeline)?;
        if let Some(cap) = gate.limit_cap() {
            pipeline.cap_output(cap);
        }
        Ok(st.db.aggregate(&t.env, &t.coll, &pipeline)?)
    })
    .await
}

/// One document by id, read inline (a point lookup), through the caller's rules.
pub fn get_one(state: &State, t: &Target, id: &str, projection: Option<Value>) -> Result<Option<Vec<u8>>, ApiError> {
    let gate = gate(state, t)?;
    if projection.is_none() {
        // the stored bytes, when the rules allow them: no query to build or run
        return Ok(
            match gate.read_scope(&state.db, &t.env, serde_json::json!({ "_id": id }))? {
                ReadScope::All => state.db.get_raw(&t.env, &t.coll, id)?,
                ReadScope::Owner(owner) => state.db.get_raw_owned_by(&t.env, &t.coll, id, &owner)?,
                ReadScope::Only(condition) => {
                    let filter = state.db.filter(Some(&condition))?;
                    state.db.get_raw_matching(&t.env, &t.coll, id, &filter)?
                }
            },
        );
    }
    let query = gate.read(&state.db, &t.env, Some(serde_json::json!({ "_id": id })))?;
    let find = state.db.find_spec(FindParts {
        query: query.as_ref(),
        projection: projection.as_ref(),
        limit: Some(&serde_json::json!(1)),
        ..FindParts::default()
    })?;
    Ok(state
        .db
        .find(&t.env, &t.coll, &find)?
        .into_iter()
        .next()
        .map(|d| d.get().as_bytes().to_vec()))
}

pub async fn count(state: &State, t: Target, query: Option<Value>) -> Result<u64, ApiError> {
    let st = state.clone();
    blocking(state, move || {
        let query = gate(&st, &t)?.read(&st.db, &t.env, query)?;
        let filter = st.db.filter(query.as_ref())?;
        Ok(st.db.count(&t.env, &t.coll, &filter)?)
    })
    .await
}

/// Inserts one document or a batch (all or none); acknowledged once durable.
pub async fn add(state: &State, t: &Target, docs: Vec<Value>) -> Result<Vec<String>, ApiError> {
    let docs = gate(state, t)?.new_documents(&state.db, &t.env, docs)?;
    let (ids, commit) = state.db.insert(&t.env, &t.coll, docs)?;
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

pub async fn update(state: &State, t: Target, req: UpdateRequest) -> Result<UpdateResult, ApiError> {
    let st = state.clone();
    let (env, coll) = (t.env.clone(), t.coll.clone());
    let (mut result, commit, insert) = blocking(state, move || {
        let gate = gate(&st, &t)?;
        let original = st.db.filter(req.query.as_ref())?;
        let (query, data) = gate.update(&st.db, &t.env, req.query, req.data)?;
        let filter = st.db.filter(query.as_ref())?;
        let update = st.db.update_spec(&data, req.merge)?;
        if let Gate::Admin = gate {
            let (result, commit) = st.db.update(&t.env, &t.coll, &filter, &update, req.multi, req.upsert)?;
            return Ok((result, commit, None));
        }
        // a client upsert that matches nothing is an insert: it gets an owner and must pass `create`
        let (result, commit) = st.db.update(&t.env, &t.coll, &filter, &update, req.multi, false)?;
        let insert = if req.upsert && result.matched == 0 {
            let doc = st.db.upsert_document(&original, &update)?;
            Some(gate.new_documents(&st.db, &t.env, vec![doc])?)
        } else {
            None
        };
        Ok((result, commit, insert))
    })
    .await?;
    commit.wait().await?;
    if let Some(docs) = insert {
        let (ids, commit) = state.db.insert(&env, &coll, docs)?;
        commit.wait().await?;
        result.upserted_id = ids.into_iter().next();
    }
    Ok(result)
}

pub async fn remove(state: &State, t: Target, query: Option<Value>, multi: bool) -> Result<u64, ApiError> {
    let st = state.clone();
    let (n, commit) = blocking(state, move || {
        let query = gate(&st, &t)?.delete(&st.db, &t.env, query)?;
        let filter = st.db.filter(query.as_ref())?;
        Ok(st.db.remove(&t.env, &t.coll, &filter, multi)?)
    })
    .await?;
    commit.wait().await?;
    Ok(n)
}

/// Creating collections is an admin action (CloudBase's client `createCollection` needs admin
/// rights too).
pub async fn add_collection(state: &State, caller: &Caller, env: &str, name: &str) -> Result<(), ApiError> {
    if !matches!(caller, Caller::Admin) {
        return Err(ApiError::new(
            Code::AdminRequired,
            "only an admin can create collections",
        ));
    }
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
