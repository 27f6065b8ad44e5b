//! Client access to the database: applies a collection's security rules and the caller's identity
//! to each request — the query a client may run, `_openid` on inserts, `'{openid}'`, the client
//! `limit` cap. Admins (admin tokens, server API keys, later functions) pass through untouched.
//!
//! The protocols call this between parsing a request and calling the database, so both
//! protocols enforce exactly the same thing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{json, Map, Value};

use crate::auth::{Caller, Identity, LoginType};
use crate::db::aggregate::Pipeline;
use crate::db::Database;
use crate::error::{ApiError, Code};
use crate::rules::{preset_scope, AuthVars, CollectionRules, Decision, DocLookup, PresetScope, QueryOp, RuleContext};

/// The placeholder CloudBase replaces by the caller's id in queries and data.
pub const OPENID_PLACEHOLDER: &str = "{openid}";

/// Compiled rules per collection, reused while no collection's metadata has changed.
#[derive(Default)]
pub struct RulesCache {
    map: RwLock<HashMap<String, (u64, Arc<CollectionRules>)>>,
}

impl RulesCache {
    fn get(&self, db: &Database, env: &str, coll: &str) -> Result<Arc<CollectionRules>, ApiError> {
        let key = format!("{env}/{coll}");
        let epoch = db.meta_epoch();
        if let Some((seen, rules)) = self.map.read().ok().and_then(|m| m.get(&key).cloned()) {
            if seen == epoch {
                return Ok(rules);
            }
        }
        let rules = match db.collection_rules(env, coll)? {
            None => Arc::new(CollectionRules::default_for_new_collection()),
            Some(saved) => Arc::new(CollectionRules::parse(&saved).map_err(|e| {
                tracing::error!(env, coll, error = %e, "stored rules do not parse");
                ApiError::new(Code::Internal, "the collection's stored rules are invalid")
            })?),
        };
        if let Ok(mut m) = self.map.write() {
            m.retain(|_, (seen, _)| *seen == epoch);
            m.insert(key, (epoch, rules.clone()));
        }
        Ok(rules)
    }
}

/// Limits on what a client may ask for in one request.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// Most documents per list request for web and app clients.
    pub max_limit: usize,
    /// Most documents per list request for mini-program (WeChat) callers, as `wx.cloud` (20).
    pub wx_max_limit: usize,
}

/// What a permitted read may see.
pub enum ReadScope {
    All,
    /// Only documents that also match this condition.
    Only(Value),
    /// Only the caller's own documents: `_openid` equal to this id (the presets' condition).
    Owner(String),
}

/// The access decision for one request on one collection.
pub enum Gate {
    Admin,
    Client {
        identity: Option<Identity>,
        rules: Arc<CollectionRules>,
        limits: ClientLimits,
    },
}

impl Gate {
    pub fn open(
        db: &Database,
        cache: &RulesCache,
        env: &str,
        coll: &str,
        caller: &Caller,
        limits: ClientLimits,
    ) -> Result<Gate, ApiError> {
        match caller {
            Caller::Admin => Ok(Gate::Admin),
            Caller::User(identity) => Ok(Gate::Client {
                identity: Some(identity.clone()),
                rules: cache.get(db, env, coll)?,
                limits,
            }),
            Caller::Guest => Ok(Gate::Client {
                identity: None,
                rules: cache.get(db, env, coll)?,
                limits,
            }),
        }
    }

    fn caller_id(&self) -> Option<String> {
        match self {
            Gate::Client { identity: Some(i), .. } => Some(i.caller_id().to_string()),
            _ => None,
        }
    }

    /// Which documents a read of `query` may see: all it matches, or only those that also match
    /// a condition (presets' `_openid == caller`); refused if the rules forbid the read.
    pub fn read_scope(&self, db: &Database, env: &str, query: Value) -> Result<ReadScope, ApiError> {
        if let Gate::Client { rules, .. } = self {
            if let Some(preset) = rules.preset() {
                // a preset decides without looking at the query: no query to build or check
                let caller = self.caller_id();
                match preset_scope(preset, &QueryOp::Read, caller.as_deref()) {
                    PresetScope::All => return Ok(ReadScope::All),
                    PresetScope::Own => return Ok(ReadScope::Owner(caller.unwrap_or_default())),
                    PresetScope::None => {} // refused below, with the rules' own message
                }
            }
        }
        match self.decide(db, env, query, QueryOp::Read)? {
            (_, None) => Ok(ReadScope::All),
            (_, Some(condition)) => Ok(ReadScope::Only(condition)),
        }
    }

    /// The query a read (list, get, count, aggregate) runs: `'{openid}'` replaced, and narrowed to
    /// the caller's own documents where the rules say so; refused if the rules forbid it.
    pub fn read(&self, db: &Database, env: &str, query: Option<Value>) -> Result<Option<Value>, ApiError> {
        self.scoped(db, env, query, QueryOp::Read)
    }

    /// Replaces `'{openid}'` by the caller's id everywhere in `v` (a client's aggregation
    /// pipeline); nothing changes for admins.
    pub fn replace_openid(&self, v: &mut Value) {
        if let Gate::Client { .. } = self {
            substitute_openid(v, self.caller_id().as_deref().unwrap_or(""));
        }
    }

    /// The collections an aggregation reads, under the caller's rules: the pipeline's source
    /// (its leading `$match`, or its `$geoNear`'s `query`, or everything) is checked and narrowed
    /// exactly like a `where()` read, and every `$lookup` by the read rules of the collection it
    /// reads (its pipeline's leading `$match`, or everything). A `$geoNear` reads nothing but
    /// the documents of that narrowed source, so a `PRIVATE` user's nearest documents are their
    /// own. Admins pass untouched.
    pub fn aggregate(
        &self,
        db: &Database,
        cache: &RulesCache,
        env: &str,
        pipeline: &mut Pipeline,
    ) -> Result<(), ApiError> {
        let Gate::Client { identity, limits, .. } = self else {
            return Ok(());
        };
        for scan in pipeline.scans_mut() {
            let query = scan.query().cloned();
            let narrowed = match scan.collection() {
                None => self.read(db, env, query)?,
                Some(from) => {
                    let gate = Gate::Client {
                        identity: identity.clone(),
                        rules: cache.get(db, env, from)?,
                        limits: *limits,
                    };
                    gate.read(db, env, query).map_err(|e| ApiError {
                        message: format!("`$lookup` from `{from}`: {}", e.message),
                        ..e
                    })?
                }
            };
            scan.set_query(narrowed)?;
        }
        Ok(())
    }

    /// The most documents one list request may return to this caller (`None`: the database's
    /// own limit, for admins). Larger requested limits are lowered silently, as CloudBase does.
    pub fn limit_cap(&self) -> Option<usize> {
        let Gate::Client { identity, limits, .. } = self else {
            return None;
        };
        let wx = identity.as_ref().is_some_and(|i| i.login_type == LoginType::WeChatOpen);
        Some(if wx { limits.wx_max_limit } else { limits.max_limit })
    }

    /// New documents of a client insert: `_openid` set to the caller, `'{openid}'` replaced, each
    /// checked against the `create` rule.
    pub fn new_documents(&self, db: &Database, env: &str, docs: Vec<Value>) -> Result<Vec<Value>, ApiError> {
        let Gate::Client { identity, rules, .. } = self else {
            return Ok(docs);
        };
        let owner = self.caller_id();
        let mut out = Vec::with_capacity(docs.len());
        for doc in docs {
            let Value::Object(mut fields) = doc else {
                return Err(ApiError::new(Code::InvalidParam, "a document must be a JSON object"));
            };
            if fields.contains_key("_openid") {
                return Err(ApiError::new(
                    Code::InvalidParam,
                    "invalid key name: _openid (the server sets it)",
                ));
            }
            if let Some(owner) = &owner {
                fields.insert("_openid".into(), Value::String(owner.clone()));
            }
            let mut doc = Value::Object(fields);
            substitute_openid(&mut doc, owner.as_deref().unwrap_or(""));
            let lookup = Lookup { db, env };
            let ctx = context(identity.as_ref(), &lookup);
            if !rules.check_create(&ctx, &doc).map_err(rule_error)? {
                return Err(denied(
                    "the collection's rules do not allow this caller to create documents",
                ));
            }
            out.push(doc);
        }
        Ok(out)
    }

    /// The query and data of a client update: `_openid` untouchable, `'{openid}'` replaced, the
    /// query narrowed or refused by the `update` rule.
    pub fn update(
        &self,
        db: &Database,
        env: &str,
        query: Option<Value>,
        mut data: Value,
    ) -> Result<(Option<Value>, Value), ApiError> {
        if let Gate::Admin = self {
            return Ok((query, data));
        }
        if touches_openid(&data) {
            return Err(ApiError::new(
                Code::InvalidParam,
                "invalid key name: _openid (it cannot be changed)",
            ));
        }
        substitute_openid(&mut data, self.caller_id().as_deref().unwrap_or(""));
        let query = self.scoped(db, env, query, QueryOp::Update { data: data.clone() })?;
        Ok((query, data))
    }

    /// The query of a client remove, narrowed or refused by the `delete` rule.
    pub fn delete(&self, db: &Database, env: &str, query: Option<Value>) -> Result<Option<Value>, ApiError> {
        self.scoped(db, env, query, QueryOp::Delete)
    }

    fn scoped(&self, db: &Database, env: &str, query: Option<Value>, op: QueryOp) -> Result<Option<Value>, ApiError> {
        if let Gate::Admin = self {
            return Ok(query);
        }
        match self.decide(db, env, query.unwrap_or_else(|| json!({})), op)? {
            (query, None) => Ok(Some(query)),
            (query, Some(condition)) => Ok(Some(json!({ "$and": [query, condition] }))),
        }
    }

    /// The rules' decision on a client's query: the query with `'{openid}'` replaced, and the
    /// condition to AND into it if any; refused as a whole if the rules forbid it.
    fn decide(
        &self,
        db: &Database,
        env: &str,
        mut query: Value,
        op: QueryOp,
    ) -> Result<(Value, Option<Value>), ApiError> {
        let Gate::Client { identity, rules, .. } = self else {
            return Ok((query, None));
        };
        substitute_openid(&mut query, self.caller_id().as_deref().unwrap_or(""));
        let normalized = db.normalize(query.clone())?;
        let lookup = Lookup { db, env };
        let ctx = context(identity.as_ref(), &lookup);
        match rules.check_query(op, &ctx, &normalized).map_err(rule_error)? {
            Decision::Allow => Ok((query, None)),
            Decision::AllowWith(condition) => Ok((query, Some(condition))),
            Decision::Deny(why) => Err(denied(&why)),
        }
    }
}

fn context<'a>(identity: Option<&Identity>, get: &'a dyn DocLookup) -> RuleContext<'a> {
    RuleContext {
        auth: identity.map(|i| AuthVars {
            uid: i.uid.clone(),
            openid: i.caller_id().to_string(),
            login_type: i.login_type.as_str().to_string(),
        }),
        now_ms: crate::db::database::now_ms(),
        get,
    }
}

/// `get('database.coll.id')` in rules: a document of the same env, read without rules.
struct Lookup<'a> {
    db: &'a Database,
    env: &'a str,
}

impl DocLookup for Lookup<'_> {
    fn get(&self, coll: &str, id: &str) -> Option<Value> {
        let bytes = self.db.get_raw(self.env, coll, id).ok()??;
        serde_json::from_slice(&bytes).ok()
    }
}

fn denied(why: &str) -> ApiError {
    ApiError::new(Code::PermissionDenied, format!("database permission denied: {why}"))
}

fn rule_error(e: impl std::fmt::Display) -> ApiError {
    denied(&e.to_string())
}

/// Replaces every string value equal to `'{openid}'` by the caller's id.
pub fn substitute_openid(v: &mut Value, caller_id: &str) {
    match v {
        Value::String(s) if s == OPENID_PLACEHOLDER => *s = caller_id.to_string(),
        Value::Array(items) => items.iter_mut().for_each(|i| substitute_openid(i, caller_id)),
        Value::Object(m) => m.values_mut().for_each(|i| substitute_openid(i, caller_id)),
        _ => {}
    }
}

/// Whether update data would set, unset or rename `_openid` (plain field or under any operator).
fn touches_openid(data: &Value) -> bool {
    let Value::Object(top) = data else { return false };
    let is_openid = |path: &str| path == "_openid" || path.starts_with("_openid.");
    top.iter().any(|(k, v)| {
        if k.starts_with('$') {
            match v {
                Value::Object(fields) => fields_touch(fields, k == "$rename", &is_openid),
                _ => false,
            }
        } else {
            is_openid(k)
        }
    })
}

fn fields_touch(fields: &Map<String, Value>, rename: bool, is_openid: &dyn Fn(&str) -> bool) -> bool {
    fields
        .iter()
        .any(|(path, v)| is_openid(path) || (rename && v.as_str().is_some_and(is_openid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openid_placeholders_are_replaced_everywhere() {
        let mut v = json!({"a": "{openid}", "b": ["{openid}", {"c": "{openid}"}], "d": "x{openid}"});
        substitute_openid(&mut v, "u1");
        assert_eq!(v, json!({"a": "u1", "b": ["u1", {"c": "u1"}], "d": "x{openid}"}));
    }

    #[test]
    fn updates_cannot_touch_openid() {
        for data in [
            json!({"_openid": "x"}),
            json!({"$set": {"_openid": "x"}}),
            json!({"$unset": {"_openid": ""}}),
            json!({"$rename": {"_openid": "y"}}),
            json!({"$rename": {"y": "_openid"}}),
            json!({"$set": {"_openid.a": 1}}),
        ] {
            assert!(touches_openid(&data), "{data}");
        }
        for data in [
            json!({"title": "x"}),
            json!({"$set": {"openid": 1, "a._openid": 2}}),
            json!({"$inc": {"n": 1}}),
        ] {
            assert!(!touches_openid(&data), "{data}");
        }
    }
}
