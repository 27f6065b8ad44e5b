//! Security rules of a collection, as CloudBase has them: the four presets (`READONLY`,
//! `PRIVATE`, `ADMINWRITE`, `ADMINONLY`) and custom rules (`read`/`write`/`create`/`update`/
//! `delete` expressions over `auth`, `doc`, `request.data`, `now` and `get()`), parsed when an
//! admin saves them and checked on every client request. Reads and query-scoped writes are
//! decided from the query alone ("the query must be a subset of the rule"); inserts from the new
//! document. Owns `server/src/rules/**`; a domain module (no web framework, no HTTP layer).
//!
//! - `expr`    — the expression language: syntax tree, parser with error positions, printer
//! - `eval`    — values, operators, `get()`, three-valued evaluation
//! - `implies` — the query check (which query shapes imply which rule shapes)
//!
//! The user documentation is docs/rules.md.

mod eval;
mod expr;
mod implies;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::error::{ApiError, Code};
use eval::{DocSource, Eval, Scope};
use expr::Expr;

pub use eval::MAX_GET_DOCS;
pub use expr::{MAX_DEPTH, MAX_EXPR_CHARS, MAX_GETS, MAX_GET_NESTING};
pub use implies::MAX_BRANCHES;

/// A simple permission preset; the wire names are CloudBase's API tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// All users read; the creator writes (`{"read": true, "write": "doc._openid == auth.openid"}`).
    ReadOnly,
    /// Only the creator reads and writes (`doc._openid == auth.openid` for both).
    Private,
    /// All users read; clients never write (`{"read": true, "write": false}`).
    AdminWrite,
    /// Clients never read or write (`{"read": false, "write": false}`).
    AdminOnly,
}

impl Preset {
    pub const ALL: [Preset; 4] = [Preset::ReadOnly, Preset::Private, Preset::AdminWrite, Preset::AdminOnly];

    /// The wire name (`READONLY`, `PRIVATE`, `ADMINWRITE`, `ADMINONLY`).
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::ReadOnly => "READONLY",
            Preset::Private => "PRIVATE",
            Preset::AdminWrite => "ADMINWRITE",
            Preset::AdminOnly => "ADMINONLY",
        }
    }

    /// The preset with this wire name (exact spelling).
    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// Errors of saving rules; every one maps to a row of the error table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// An expression does not parse: the rule key, the 1-based character position, what is wrong.
    #[error("{key}: {message} at {pos}")]
    Syntax { key: String, pos: usize, message: String },
    /// The rules object has the wrong shape (unknown key or preset, wrong value type, too long).
    #[error("{0}")]
    Invalid(String),
}

impl RuleError {
    pub fn code(&self) -> Code {
        match self {
            RuleError::Syntax { .. } => Code::InvalidRule,
            RuleError::Invalid(_) => Code::InvalidRule,
        }
    }
}

impl From<RuleError> for ApiError {
    fn from(e: RuleError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

/// What a client request is, for [`CollectionRules::check_query`].
#[derive(Debug, Clone, PartialEq)]
pub enum QueryOp {
    /// list, get, count, aggregate, watch
    Read,
    /// A query-scoped update; `data` is the update as the client sent it (`{"$set": {...}, ...}`
    /// or plain fields), after `'{openid}'` replacement.
    Update { data: Value },
    /// A query-scoped remove.
    Delete,
}

/// The caller as rules see it (`auth` in expressions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthVars {
    pub uid: String,
    /// The caller id (`Identity::caller_id()`): openid if there is one, else uid.
    pub openid: String,
    /// `ANONYMOUS`, `USERNAME`, `EMAIL`, `CUSTOM`, `WECHAT-OPEN`.
    pub login_type: String,
}

/// Reads documents for `get('database.<coll>.<id>')` in rules: same env, no rules applied.
pub trait DocLookup {
    fn get(&self, coll: &str, id: &str) -> Option<Value>;
}

/// A [`DocLookup`] that finds nothing (every `get()` returns null).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDocs;

impl DocLookup for NoDocs {
    fn get(&self, _coll: &str, _id: &str) -> Option<Value> {
        None
    }
}

/// What one request is checked with.
pub struct RuleContext<'a> {
    /// `None` when the caller is not signed in (`auth == null`).
    pub auth: Option<AuthVars>,
    /// `now` in expressions: milliseconds since the epoch.
    pub now_ms: i64,
    pub get: &'a dyn DocLookup,
}

/// The outcome of [`CollectionRules::check_query`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow,
    /// Allowed on the documents that also match this condition, which the caller ANDs into the
    /// query (presets: `{"_openid": <caller id>}`, the caller's own documents).
    AllowWith(Value),
    /// Refused as a whole; why, in words safe to show the client (names at most field paths).
    Deny(String),
}

/// One operation's rule: a constant or a parsed expression.
#[derive(Debug, Clone)]
enum Rule {
    Const(bool),
    Expr(Arc<Expr>),
}

#[derive(Debug, Clone)]
struct Custom {
    read: Rule,
    create: Rule,
    update: Rule,
    delete: Rule,
}

#[derive(Debug, Clone)]
enum Kind {
    Preset(Preset),
    Custom(Box<Custom>),
}

/// The compiled rules of one collection.
#[derive(Debug, Clone)]
pub struct CollectionRules {
    kind: Kind,
    saved: Value,
}

const RULE_KEYS: [&str; 5] = ["read", "write", "create", "update", "delete"];

impl CollectionRules {
    /// Parses what an admin saves: `{"preset": "PRIVATE"}` or a custom rule object
    /// `{"read": true|false|"expr", "write": …, "create"|"update"|"delete": …}` (create, update
    /// and delete fall back to write; a missing key denies). Errors carry the key and the 1-based
    /// character position inside the expression.
    pub fn parse(v: &Value) -> Result<CollectionRules, RuleError> {
        let Value::Object(m) = v else {
            return Err(RuleError::Invalid(
                "rules must be a JSON object: {\"preset\": \"PRIVATE\"} or {\"read\": …, \"write\": …}".into(),
            ));
        };
        if let Some(p) = m.get("preset") {
            if m.len() != 1 {
                return Err(RuleError::Invalid(
                    "`preset` cannot be combined with other keys (use either a preset or custom rules)".into(),
                ));
            }
            let preset = p.as_str().and_then(Preset::from_name).ok_or_else(|| {
                RuleError::Invalid(format!(
                    "unknown preset {p} (one of READONLY, PRIVATE, ADMINWRITE, ADMINONLY)"
                ))
            })?;
            return Ok(CollectionRules {
                kind: Kind::Preset(preset),
                saved: v.clone(),
            });
        }
        Ok(CollectionRules {
            kind: Kind::Custom(Box::new(custom(m)?)),
            saved: v.clone(),
        })
    }

    /// The rules of a preset, saved as `{"preset": "<NAME>"}`.
    pub fn from_preset(preset: Preset) -> CollectionRules {
        CollectionRules {
            kind: Kind::Preset(preset),
            saved: json!({ "preset": preset.as_str() }),
        }
    }

    /// What was saved, as it was saved (what the admin API returns).
    pub fn to_json(&self) -> Value {
        self.saved.clone()
    }

    /// A new collection is `PRIVATE` (creator only), as in CloudBase.
    pub fn default_for_new_collection() -> CollectionRules {
        CollectionRules::from_preset(Preset::Private)
    }

    /// The preset, if these rules are one.
    pub fn preset(&self) -> Option<Preset> {
        match &self.kind {
            Kind::Preset(p) => Some(*p),
            Kind::Custom(_) => None,
        }
    }

    /// A read (list/get/count/aggregate/watch) or a query-scoped update/delete by a client.
    /// `query` is the normalized query (`'{openid}'` already replaced). Custom rules must hold
    /// for every document the query can match, decided from the query; anything the checker
    /// does not understand is denied.
    pub fn check_query(&self, op: QueryOp, ctx: &RuleContext, query: &Value) -> Result<Decision, RuleError> {
        let custom = match &self.kind {
            Kind::Preset(p) => return Ok(preset_query(*p, &op, ctx)),
            Kind::Custom(c) => c,
        };
        let (rule, name) = match &op {
            QueryOp::Read => (&custom.read, "read"),
            QueryOp::Update { .. } => (&custom.update, "update"),
            QueryOp::Delete => (&custom.delete, "delete"),
        };
        let e = match rule {
            Rule::Const(true) => return Ok(Decision::Allow),
            Rule::Const(false) => {
                return Ok(Decision::Deny(format!(
                    "the collection's `{name}` rule does not allow clients"
                )))
            }
            Rule::Expr(e) => e,
        };
        let request = match &op {
            QueryOp::Update { data } => {
                let (data, opaque) = update_data(data);
                if let (Some(op), true) = (opaque, e.mentions_request()) {
                    return Ok(Decision::Deny(format!(
                        "the `update` rule reads request.data, which is known only for `$set` and plain \
                         fields, not for `{op}`"
                    )));
                }
                json!({ "data": data })
            }
            QueryOp::Read | QueryOp::Delete => json!({}),
        };
        let scope = Scope::new(auth_value(ctx), json!(ctx.now_ms), request, ctx.get);
        let deny = |why: String| Decision::Deny(format!("`{name}` rule: {why}"));
        if !e.mentions_doc() {
            let ev = Eval {
                scope: &scope,
                doc: DocSource::None,
            };
            return Ok(match ev.holds(e) {
                Ok(true) => Decision::Allow,
                Ok(false) => deny("it does not allow this caller".into()),
                Err(_) => deny("it cannot be evaluated for this caller".into()),
            });
        }
        let branches = match implies::branches(query) {
            Ok(b) => b,
            Err(why) => return Ok(deny(why)),
        };
        for branch in &branches {
            if let Err(why) = implies::implied(&scope, e, branch) {
                return Ok(deny(why));
            }
        }
        Ok(Decision::Allow)
    }

    /// A client insert: `doc` is the document about to be stored (with `_openid` already set).
    /// Presets `READONLY`/`PRIVATE` allow signed-in callers whose id is the document's `_openid`;
    /// custom rules evaluate `create` with `doc` and `request.data` both the document.
    pub fn check_create(&self, ctx: &RuleContext, doc: &Value) -> Result<bool, RuleError> {
        let custom = match &self.kind {
            Kind::Preset(Preset::ReadOnly | Preset::Private) => {
                return Ok(ctx.auth.as_ref().is_some_and(|a| {
                    !a.openid.is_empty() && doc.get("_openid").and_then(Value::as_str) == Some(a.openid.as_str())
                }))
            }
            Kind::Preset(Preset::AdminWrite | Preset::AdminOnly) => return Ok(false),
            Kind::Custom(c) => c,
        };
        let e = match &custom.create {
            Rule::Const(b) => return Ok(*b),
            Rule::Expr(e) => e,
        };
        let scope = Scope::new(auth_value(ctx), json!(ctx.now_ms), json!({ "data": doc }), ctx.get);
        let ev = Eval {
            scope: &scope,
            doc: DocSource::Concrete(doc),
        };
        Ok(ev.holds(e) == Ok(true))
    }
}

/// Custom rules from their JSON object.
fn custom(m: &Map<String, Value>) -> Result<Custom, RuleError> {
    let mut compiled: [Option<Rule>; 5] = Default::default();
    for (key, v) in m {
        let slot = RULE_KEYS.iter().position(|k| k == key).ok_or_else(|| {
            RuleError::Invalid(format!(
                "unknown rule key `{key}` (read, write, create, update, delete, or preset)"
            ))
        })?;
        compiled[slot] = Some(compile(key, v)?);
    }
    let [read, write, create, update, delete] = compiled;
    let write = write.unwrap_or(Rule::Const(false));
    Ok(Custom {
        read: read.unwrap_or(Rule::Const(false)),
        create: create.unwrap_or_else(|| write.clone()),
        update: update.unwrap_or_else(|| write.clone()),
        delete: delete.unwrap_or(write),
    })
}

fn compile(key: &str, v: &Value) -> Result<Rule, RuleError> {
    match v {
        Value::Bool(b) => Ok(Rule::Const(*b)),
        Value::String(s) => {
            let chars = s.chars().count();
            if chars > MAX_EXPR_CHARS {
                return Err(RuleError::Invalid(format!(
                    "{key}: the expression is {chars} characters long, more than {MAX_EXPR_CHARS}"
                )));
            }
            expr::parse(s)
                .map(|e| Rule::Expr(Arc::new(e)))
                .map_err(|e| RuleError::Syntax {
                    key: key.to_string(),
                    pos: e.pos,
                    message: e.message,
                })
        }
        _ => Err(RuleError::Invalid(format!(
            "{key}: must be true, false or an expression string"
        ))),
    }
}

/// `auth` in expressions: `{uid, openid, loginType}`, or null for a caller not signed in.
fn auth_value(ctx: &RuleContext) -> Value {
    match &ctx.auth {
        Some(a) => json!({ "uid": a.uid, "openid": a.openid, "loginType": a.login_type }),
        None => Value::Null,
    }
}

/// Whom a preset lets a client read, update or delete, whatever the query: every document, only
/// the caller's own (`_openid == auth.openid`), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetScope {
    All,
    Own,
    None,
}

/// [`PresetScope`] of `preset` for `op`, for a caller with this openid (`None`: not signed in).
pub fn preset_scope(preset: Preset, op: &QueryOp, openid: Option<&str>) -> PresetScope {
    match (preset, op) {
        (Preset::ReadOnly | Preset::AdminWrite, QueryOp::Read) => PresetScope::All,
        (Preset::AdminWrite | Preset::AdminOnly, _) => PresetScope::None,
        (Preset::ReadOnly | Preset::Private, _) => match openid {
            Some(id) if !id.is_empty() => PresetScope::Own,
            _ => PresetScope::None,
        },
    }
}

/// Presets on reads and query-scoped writes.
fn preset_query(preset: Preset, op: &QueryOp, ctx: &RuleContext) -> Decision {
    let verb = match op {
        QueryOp::Read => "read",
        QueryOp::Update { .. } => "update",
        QueryOp::Delete => "delete",
    };
    let openid = ctx.auth.as_ref().map(|a| a.openid.as_str());
    match preset_scope(preset, op, openid) {
        PresetScope::All => Decision::Allow,
        PresetScope::Own => Decision::AllowWith(json!({ "_openid": openid.unwrap_or_default() })),
        PresetScope::None => match preset {
            Preset::AdminWrite | Preset::AdminOnly => Decision::Deny(format!(
                "the collection's rules ({}) do not let clients {verb} documents",
                preset.as_str()
            )),
            Preset::ReadOnly | Preset::Private => Decision::Deny(format!(
                "the collection's rules ({}) let only the creator {verb} a document: sign in first",
                preset.as_str()
            )),
        },
    }
}

/// `request.data` of an update: the `$set` values and plain fields as one nested object, and the
/// first operator (or problem) whose effect on the data is not known before the update runs.
fn update_data(data: &Value) -> (Value, Option<String>) {
    let Value::Object(top) = data else {
        return (Value::Null, Some("update data that is not an object".into()));
    };
    let mut out = Map::new();
    let mut opaque = None;
    for (key, v) in top {
        if key == "$set" {
            match v {
                Value::Object(fields) => {
                    for (path, x) in fields {
                        if !insert_path(&mut out, path, x) {
                            opaque.get_or_insert_with(|| format!("conflicting paths at `{path}`"));
                        }
                    }
                }
                _ => {
                    opaque.get_or_insert_with(|| "$set".to_string());
                }
            }
        } else if key.starts_with('$') {
            opaque.get_or_insert_with(|| key.clone());
        } else if !insert_path(&mut out, key, v) {
            opaque.get_or_insert_with(|| format!("conflicting paths at `{key}`"));
        }
    }
    (Value::Object(out), opaque)
}

/// Puts `v` at dot path `path` in `out`; false if another value is already in the way.
fn insert_path(out: &mut Map<String, Value>, path: &str, v: &Value) -> bool {
    let mut segs = path.split('.').peekable();
    let mut cur = out;
    while let Some(seg) = segs.next() {
        if segs.peek().is_none() {
            if cur.contains_key(seg) {
                return false;
            }
            cur.insert(seg.to_string(), v.clone());
            return true;
        }
        let next = cur.entry(seg.to_string()).or_insert_with(|| Value::Object(Map::new()));
        match next {
            Value::Object(m) => cur = m,
            _ => return false,
        }
    }
    false
}
