//! Transactions over both protocols: the GATEWAY routes `P/transactions`, `…/{id}/commit` and
//! `…/{id}/rollback`, and the calls both protocols share for the operations inside a transaction
//! (document routes and CLOUD_API actions carrying a `transactionId`). Each operation goes through
//! the caller's security rules exactly as it would outside a transaction; a transaction id works
//! only for the caller that started it, in its env. The machinery is `db::transaction`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::db_calls::{gate, FindRequest, Target, UpdateRequest};
use super::gateway::{env_of, DbPath};
use super::{blocking, caller_of, gateway_error, method_not_allowed, with_request_id, RequestId, State};
use crate::access::Gate;
use crate::auth::Caller;
use crate::db::transaction::MAX_OPEN_PER_USER;
use crate::db::{FindParts, UpdateResult};
use crate::error::{ApiError, Code};

/// GATEWAY transaction routes, inside the database prefix scope.
pub fn gateway_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/transactions")
            .route(web::post().to(start_route))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/transactions/{txid}/commit")
            .route(web::post().to(commit_route))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/transactions/{txid}/rollback")
            .route(web::post().to(rollback_route))
            .default_service(web::to(method_not_allowed)),
    );
}

fn respond(rid: &RequestId, r: Result<Value, ApiError>) -> HttpResponse {
    match r {
        Ok(body) => HttpResponse::Ok().json(with_request_id(rid, body)),
        Err(e) => gateway_error(rid, &e),
    }
}

/// `POST P/transactions` → `{transactionId}`. The body, if any, is ignored.
async fn start_route(req: HttpRequest, path: web::Path<DbPath>, state: State, rid: RequestId) -> HttpResponse {
    let r = (|| {
        let env = env_of(&req, &path, &state)?;
        let caller = caller_of(&req, &state, &env, None)?;
        Ok(json!({ "transactionId": start(&state, &caller, &env)? }))
    })();
    respond(&rid, r)
}

/// `POST P/transactions/{id}/commit` → `{transactionId}` once the writes are durable.
async fn commit_route(req: HttpRequest, path: web::Path<DbPath>, state: State, rid: RequestId) -> HttpResponse {
    let r = async {
        let env = env_of(&req, &path, &state)?;
        let caller = caller_of(&req, &state, &env, None)?;
        let id = path.txid.clone().unwrap_or_default();
        commit(&state, &caller, &env, &id).await?;
        Ok(json!({ "transactionId": id }))
    };
    respond(&rid, r.await)
}

/// `POST P/transactions/{id}/rollback` → `{transactionId}`.
async fn rollback_route(req: HttpRequest, path: web::Path<DbPath>, state: State, rid: RequestId) -> HttpResponse {
    let r = (|| {
        let env = env_of(&req, &path, &state)?;
        let caller = caller_of(&req, &state, &env, None)?;
        let id = path.txid.clone().unwrap_or_default();
        rollback(&state, &caller, &env, &id)?;
        Ok(json!({ "transactionId": id }))
    })();
    respond(&rid, r)
}

/// A `transactionId` field of a request body: absent, `null` and `""` mean none.
pub fn id_of(v: Option<&Value>) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::new(Code::InvalidParam, "`transactionId` must be a string")),
    }
}

/// A `transactionId` query parameter: the SDK `JSON.stringify`s every parameter, so `"abc"`
/// (quoted) and `abc` are the same id.
pub fn id_of_param(v: &str) -> Option<String> {
    let id = match serde_json::from_str::<Value>(v) {
        Ok(Value::String(s)) => s,
        _ => v.to_string(),
    };
    Some(id).filter(|s| !s.is_empty())
}

/// Who owns a transaction: admins share one owner, each end user is their own; guests cannot
/// open transactions. The second part caps how many the owner may have open.
fn owner_of(caller: &Caller) -> Result<(String, Option<usize>), ApiError> {
    match caller {
        Caller::Admin => Ok(("admin".to_string(), None)),
        Caller::User(id) => Ok((format!("user:{}", id.uid), Some(MAX_OPEN_PER_USER))),
        Caller::Guest => Err(ApiError::new(
            Code::Unauthenticated,
            "transactions need a signed-in user or an admin: send an access token",
        )),
    }
}

pub fn start(state: &State, caller: &Caller, env: &str) -> Result<String, ApiError> {
    let (owner, cap) = owner_of(caller)?;
    Ok(state.txns.begin(&state.db, env, &owner, cap)?)
}

/// Commits, then waits until the writes are durable.
pub async fn commit(state: &State, caller: &Caller, env: &str, id: &str) -> Result<(), ApiError> {
    let (owner, _) = owner_of(caller)?;
    let st = state.clone();
    let (env, id) = (env.to_string(), id.to_string());
    let commit = blocking(state, move || Ok(st.txns.commit(&st.db, &id, &owner, &env)?)).await?;
    commit.wait().await?;
    Ok(())
}

pub fn rollback(state: &State, caller: &Caller, env: &str, id: &str) -> Result<(), ApiError> {
    let (owner, _) = owner_of(caller)?;
    Ok(state.txns.rollback(id, &owner, env)?)
}

/// A read inside a transaction: the query must pin one `_id`; the document as the transaction
/// sees it (its own writes included), projected, if the caller's rules let them see it.
pub struct TxRead {
    pub doc: Option<Value>,
    pub offset: usize,
    pub limit: usize,
}

pub async fn get(state: &State, t: Target, txid: String, req: FindRequest) -> Result<TxRead, ApiError> {
    let (owner, _) = owner_of(&t.caller)?;
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
        let doc = st
            .txns
            .with(&txid, &owner, &t.env, |txn| txn.get(&st.db, &t.coll, &find.filter))?;
        let doc = doc
            .filter(|_| find.skip == 0 && find.limit > 0)
            .map(|d| find.projection.apply(&d));
        Ok(TxRead {
            doc,
            offset: find.skip,
            limit: find.limit,
        })
    })
    .await
}

/// Inserts documents inside a transaction (each one operation), all or none.
pub async fn add(state: &State, t: Target, txid: String, docs: Vec<Value>) -> Result<Vec<String>, ApiError> {
    let (owner, _) = owner_of(&t.caller)?;
    let st = state.clone();
    blocking(state, move || {
        let docs = gate(&st, &t)?.new_documents(&st.db, &t.env, docs)?;
        Ok(st
            .txns
            .with(&txid, &owner, &t.env, |txn| txn.insert(&st.db, &t.coll, docs))?)
    })
    .await
}

/// Updates (or with `upsert`, creates) the one document the query pins, inside a transaction.
/// A client's upsert that matches nothing is an insert: it gets an owner and must pass `create`.
pub async fn update(state: &State, t: Target, txid: String, req: UpdateRequest) -> Result<UpdateResult, ApiError> {
    if req.multi {
        return Err(ApiError::new(
            Code::InvalidParam,
            "a transaction changes one document per operation: `multi` must be false",
        ));
    }
    let (owner, _) = owner_of(&t.caller)?;
    let st = state.clone();
    blocking(state, move || {
        let gate = gate(&st, &t)?;
        let original = st.db.filter(req.query.as_ref())?;
        let (query, data) = gate.update(&st.db, &t.env, req.query, req.data)?;
        let filter = st.db.filter(query.as_ref())?;
        let update = st.db.update_spec(&data, req.merge)?;
        let admin = matches!(gate, Gate::Admin);
        let mut result = st.txns.with(&txid, &owner, &t.env, |txn| {
            txn.update(&st.db, &t.coll, &filter, &update, req.upsert && admin)
        })?;
        if req.upsert && !admin && result.matched == 0 {
            // nothing was changed above: the insert is the operation's only write
            let doc = st.db.upsert_document(&original, &update)?;
            let docs = gate.new_documents(&st.db, &t.env, vec![doc])?;
            let ids = st
                .txns
                .with(&txid, &owner, &t.env, |txn| txn.insert(&st.db, &t.coll, docs))?;
            result.upserted_id = ids.into_iter().next();
        }
        Ok(result)
    })
    .await
}

/// Deletes the one document the query pins, inside a transaction.
pub async fn remove(
    state: &State,
    t: Target,
    txid: String,
    query: Option<Value>,
    multi: bool,
) -> Result<u64, ApiError> {
    if multi {
        return Err(ApiError::new(
            Code::InvalidParam,
            "a transaction removes one document per operation: `multi` must be false",
        ));
    }
    let (owner, _) = owner_of(&t.caller)?;
    let st = state.clone();
    blocking(state, move || {
        let query = gate(&st, &t)?.delete(&st.db, &t.env, query)?;
        let filter = st.db.filter(query.as_ref())?;
        Ok(st
            .txns
            .with(&txid, &owner, &t.env, |txn| txn.remove(&st.db, &t.coll, &filter))?)
    })
    .await
}

/// Counting and aggregating are not transactional operations in CloudBase.
pub fn refuse(what: &str) -> ApiError {
    ApiError::new(
        Code::InvalidParam,
        format!("{what} is not available inside a transaction: only get, add, update, set and remove of one document by _id are"),
    )
}
