//! Pipeline stages: parsing each `{$stage: spec}` (MongoDB syntax and rules) into a [`Stage`],
//! and the per-document logic of the stages that reshape documents (`$project`, `$addFields`,
//! `$unset`, `$unwind`, `$replaceRoot`, `$bucket` routing, `$lookup` matching). The buffering and
//! the flow of documents between stages are in `mod.rs`.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::accumulate::AccSpec;
use super::expr::{named_args, Deps, Env, Expr, Scope};
use super::values::{
    as_doc, as_doc_mut, cmd, get_path, get_plain, is_doc, key_bytes, key_of, remove_plain, set_plain, shown,
    split_path, type_name, Num,
};
use super::{Pipeline, Scan, MAX_LOOKUP_DEPTH};
use crate::db::database::validate_collection_name;
use crate::db::query::{Direction, Filter, Sort};
use crate::db::value::{compare, type_rank};
use crate::db::DbError;

/// Stages MongoDB has that this server does not run (a clear `NOT_SUPPORTED` names them).
const UNSUPPORTED: &[&str] = &[
    "$graphLookup",
    "$out",
    "$merge",
    "$unionWith",
    "$redact",
    "$collStats",
    "$indexStats",
    "$planCacheStats",
    "$setWindowFields",
    "$densify",
    "$fill",
    "$documents",
    "$changeStream",
    "$changeStreamSplitLargeEvent",
    "$currentOp",
    "$listSessions",
    "$listLocalSessions",
    "$listSearchIndexes",
    "$search",
    "$searchMeta",
    "$vectorSearch",
    "$shardedDataDistribution",
];

/// One stage of a pipeline, compiled.
pub(super) enum Stage {
    Match(MatchStage),
    Project(Projection),
    Group(Group),
    Sort(SortStage),
    Skip(u64),
    Limit(u64),
    Unwind(Unwind),
    Lookup(Box<Lookup>),
    Count(String),
    Sample(usize),
    ReplaceRoot(Expr),
    Bucket(Bucket),
    BucketAuto(BucketAuto),
    /// `$facet`: named sub-pipelines, each over every input document.
    Facet(Vec<(String, Vec<Stage>)>),
}

impl Stage {
    /// The stage's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Match(_) => "$match",
            Stage::Project(p) => match p.mode {
                Mode::AddFields => "$addFields",
                _ => "$project",
            },
            Stage::Group(_) => "$group",
            Stage::Sort(_) => "$sort",
            Stage::Skip(_) => "$skip",
            Stage::Limit(_) => "$limit",
            Stage::Unwind(_) => "$unwind",
            Stage::Lookup(_) => "$lookup",
            Stage::Count(_) => "$count",
            Stage::Sample(_) => "$sample",
            Stage::ReplaceRoot(_) => "$replaceRoot",
            Stage::Bucket(_) => "$bucket",
            Stage::BucketAuto(_) => "$bucketAuto",
            Stage::Facet(_) => "$facet",
        }
    }
}

/// What parsing a pipeline needs to know about where it is.
pub(super) struct ParseCtx {
    /// Variables in reach (`$lookup`'s `let` in a sub-pipeline).
    pub scope: Scope,
    /// How many `$lookup` pipelines this one is nested in.
    pub depth: usize,
    /// Gives every `$lookup` an id (its cache key for the run).
    pub next_id: usize,
    /// Stages parsed so far in the whole pipeline, nested ones included.
    pub total: usize,
}

/// `$match`: a query (the same matcher as `where()`), plus a top-level `$expr` if given.
pub(super) struct MatchStage {
    pub query: Value,
    pub filter: Filter,
    pub expr: Option<Expr>,
}

impl MatchStage {
    fn parse(spec: &Value, scope: &mut Scope) -> Result<MatchStage, DbError> {
        let Value::Object(m) = spec else {
            return Err(cmd("`$match` needs a query object"));
        };
        let mut query = m.clone();
        let expr = match query.shift_remove("$expr") {
            Some(e) => Some(Expr::compile(&e, scope)?),
            None => None,
        };
        let query = Value::Object(query);
        Ok(MatchStage {
            filter: Filter::parse(&query)?,
            query,
            expr,
        })
    }

    pub fn matches(&self, doc: &Value, env: &mut Env) -> Result<bool, DbError> {
        if !self.filter.matches(doc) {
            return Ok(false);
        }
        match &self.expr {
            None => Ok(true),
            Some(e) => Ok(super::values::truthy(e.evaluate(doc, env)?.as_deref())),
        }
    }
}

// ---- $project / $addFields / $unset ----------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Inclusion,
    Exclusion,
    AddFields,
}

#[derive(Debug)]
enum PNode {
    Include,
    Exclude,
    Computed(Expr),
    Sub(PTree),
}

#[derive(Debug, Default)]
struct PTree(Vec<(String, PNode)>);

impl PTree {
    fn get(&self, k: &str) -> Option<&PNode> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v)
    }

    /// Inserts `node` at `path`, creating sub-trees; a path that collides with another is an error.
    fn insert(&mut self, stage: &str, path: &[String], node: PNode) -> Result<(), DbError> {
        let collision = || {
            cmd(format!(
                "`{stage}`: the path `{}` collides with another path",
                path.join(".")
            ))
        };
        let (first, rest) = path.split_first().ok_or_else(collision)?;
        let pos = self.0.iter().position(|(n, _)| n == first);
        if rest.is_empty() {
            if pos.is_some() {
                return Err(collision());
            }
            self.0.push((first.clone(), node));
            return Ok(());
        }
        let i = match pos {
            Some(i) => i,
            None => {
                self.0.push((first.clone(), PNode::Sub(PTree::default())));
                self.0.len() - 1
            }
        };
        match &mut self.0[i].1 {
            PNode::Sub(sub) => sub.insert(stage, rest, node),
            _ => Err(collision()),
        }
    }

    fn walk(&self, top: bool, f: &mut impl FnMut(bool, &str, &PNode)) {
        for (k, n) in &self.0 {
            f(top, k, n);
            if let PNode::Sub(s) = n {
                s.walk(false, f);
            }
        }
    }

    fn deps(&self, prefix_head: Option<&str>, d: &mut Deps) {
        for (k, n) in &self.0 {
            let head = prefix_head.unwrap_or(k);
            match n {
                PNode::Include | PNode::Exclude => d.field(head),
                PNode::Computed(e) => e.deps(&mut Vec::new(), d),
                PNode::Sub(s) => {
                    d.field(head);
                    s.deps(Some(head), d);
                }
            }
        }
    }
}

/// A compiled `$project`, `$addFields`/`$set` or `$unset`.
#[derive(Debug)]
pub(super) struct Projection {
    tree: PTree,
    pub mode: Mode,
}

impl Projection {
    fn parse_project(spec: &Value, scope: &mut Scope) -> Result<Projection, DbError> {
        let m = match spec {
            Value::Object(m) if !m.is_empty() && is_doc(spec) => m,
            _ => return Err(cmd("`$project` needs a non-empty object of fields")),
        };
        let mut tree = PTree::default();
        fill_tree("$project", &mut tree, &[], m, scope, false)?;
        let (mut inc, mut exc, mut computed_id) = (false, false, false);
        tree.walk(true, &mut |top, k, n| match n {
            PNode::Include if !(top && k == "_id") => inc = true,
            PNode::Computed(_) if !(top && k == "_id") => inc = true,
            PNode::Computed(_) => computed_id = true,
            PNode::Exclude if !(top && k == "_id") => exc = true,
            _ => {}
        });
        if inc && exc {
            return Err(cmd(
                "`$project` cannot mix included (or computed) and excluded fields; only `_id` may be excluded from an inclusion",
            ));
        }
        let mode = if inc {
            Mode::Inclusion
        } else if exc {
            Mode::Exclusion
        } else {
            match tree.get("_id") {
                Some(PNode::Exclude) => Mode::Exclusion,
                _ => Mode::Inclusion,
            }
        };
        if mode == Mode::Exclusion && computed_id {
            return Err(cmd("`$project` cannot compute `_id` in an exclusion projection"));
        }
        if mode == Mode::Inclusion && tree.get("_id").is_none() {
            tree.0.insert(0, ("_id".into(), PNode::Include));
        }
        Ok(Projection { tree, mode })
    }

    fn parse_add_fields(stage: &str, spec: &Value, scope: &mut Scope) -> Result<Projection, DbError> {
        let m = match spec {
            Value::Object(m) if is_doc(spec) => m,
            _ => return Err(cmd(format!("`{stage}` needs an object of fields"))),
        };
        let mut tree = PTree::default();
        fill_tree(stage, &mut tree, &[], m, scope, true)?;
        Ok(Projection {
            tree,
            mode: Mode::AddFields,
        })
    }

    fn parse_unset(spec: &Value) -> Result<Projection, DbError> {
        let fields: Vec<&str> = match spec {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|i| i.as_str().ok_or_else(|| cmd("`$unset` takes field names (strings)")))
                .collect::<Result<_, _>>()?,
            _ => return Err(cmd("`$unset` takes a field name or a non-empty array of field names")),
        };
        let mut tree = PTree::default();
        for f in fields {
            tree.insert("$unset", &split_path(f, "$unset")?, PNode::Exclude)?;
        }
        Ok(Projection {
            tree,
            mode: Mode::Exclusion,
        })
    }

    pub fn apply(&self, doc: Value, env: &mut Env) -> Result<Value, DbError> {
        match self.mode {
            Mode::Exclusion => {
                let mut doc = doc;
                if let Some(m) = as_doc_mut(&mut doc) {
                    exclude(m, &self.tree);
                }
                Ok(doc)
            }
            Mode::Inclusion => {
                let values = computed(&self.tree, &doc, env)?;
                let mut out = match as_doc(&doc) {
                    Some(m) => include(m, &self.tree),
                    None => Map::new(),
                };
                apply_computed(&mut out, &values);
                // `_id` stays first, also when it is computed
                if out.keys().next().is_some_and(|k| k != "_id") {
                    if let Some(id) = out.shift_remove("_id") {
                        let mut first = Map::with_capacity(out.len() + 1);
                        first.insert("_id".into(), id);
                        first.extend(out);
                        out = first;
                    }
                }
                Ok(Value::Object(out))
            }
            Mode::AddFields => {
                let values = computed(&self.tree, &doc, env)?;
                let mut doc = doc;
                if let Some(m) = as_doc_mut(&mut doc) {
                    apply_computed(m, &values);
                }
                Ok(doc)
            }
        }
    }

    /// Adds what the stage reads; true if its output depends only on that (an inclusion).
    pub fn deps(&self, d: &mut Deps) -> bool {
        match self.mode {
            Mode::Inclusion => {
                self.tree.deps(None, d);
                true
            }
            Mode::Exclusion => {
                d.whole = true;
                false
            }
            Mode::AddFields => {
                self.tree.walk(true, &mut |_, _, n| {
                    if let PNode::Computed(e) = n {
                        e.deps(&mut Vec::new(), d);
                    }
                });
                false
            }
        }
    }
}

/// Fills a projection tree from a spec object; nested plain objects are nested fields.
fn fill_tree(
    stage: &str,
    tree: &mut PTree,
    prefix: &[String],
    m: &Map<String, Value>,
    scope: &mut Scope,
    add_fields: bool,
) -> Result<(), DbError> {
    for (k, v) in m {
        if k.starts_with('$') {
            return Err(cmd(format!(
                "`{stage}`: field names cannot start with `$`, found `{k}`"
            )));
        }
        let mut path = prefix.to_vec();
        path.extend(split_path(k, stage)?);
        match v {
            Value::Object(sub) if is_doc(v) && !sub.keys().any(|k| k.starts_with('$')) => {
                if sub.is_empty() {
                    if add_fields {
                        tree.insert(stage, &path, PNode::Computed(Expr::Const(v.clone())))?;
                        continue;
                    }
                    return Err(cmd(format!(
                        "`{stage}`: an empty object is not a valid value for `{k}`"
                    )));
                }
                fill_tree(stage, tree, &path, sub, scope, add_fields)?;
            }
            Value::Bool(_) | Value::Number(_) if !add_fields => {
                let keep = super::values::truthy(Some(v));
                tree.insert(stage, &path, if keep { PNode::Include } else { PNode::Exclude })?;
            }
            other => tree.insert(stage, &path, PNode::Computed(Expr::compile(other, scope)?))?,
        }
    }
    Ok(())
}

/// The values of a tree's computed fields, evaluated against the input document.
enum VNode {
    Val(Option<Value>),
    Sub(Vec<(String, VNode)>),
}

fn computed(tree: &PTree, root: &Value, env: &mut Env) -> Result<Vec<(String, VNode)>, DbError> {
    let mut out = Vec::new();
    for (k, n) in &tree.0 {
        match n {
            PNode::Computed(e) => out.push((k.clone(), VNode::Val(e.evaluate(root, env)?.map(|c| c.into_owned())))),
            PNode::Sub(s) => {
                let sub = computed(s, root, env)?;
                if !sub.is_empty() {
                    out.push((k.clone(), VNode::Sub(sub)));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Sets computed fields in a document: missing values remove the field; nested fields go into
/// every element of an array, and replace a value that is not an object.
fn apply_computed(m: &mut Map<String, Value>, values: &[(String, VNode)]) {
    for (k, n) in values {
        match n {
            VNode::Val(None) => {
                m.shift_remove(k);
            }
            VNode::Val(Some(v)) => {
                m.insert(k.clone(), v.clone());
            }
            VNode::Sub(sub) => {
                let slot = m.entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
                apply_to_value(slot, sub);
            }
        }
    }
}

fn apply_to_value(v: &mut Value, sub: &[(String, VNode)]) {
    if let Value::Array(items) = v {
        items.iter_mut().for_each(|i| apply_to_value(i, sub));
        return;
    }
    if !is_doc(v) {
        *v = Value::Object(Map::new());
    }
    if let Some(m) = as_doc_mut(v) {
        apply_computed(m, sub);
    }
}

/// The included fields of a document, in the document's order.
fn include(src: &Map<String, Value>, tree: &PTree) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in src {
        match tree.get(k) {
            Some(PNode::Include) => {
                out.insert(k.clone(), v.clone());
            }
            Some(PNode::Sub(sub)) => match v {
                Value::Array(items) => {
                    out.insert(k.clone(), Value::Array(include_array(items, sub)));
                }
                _ => {
                    if let Some(m) = as_doc(v) {
                        out.insert(k.clone(), Value::Object(include(m, sub)));
                    }
                }
            },
            _ => {}
        }
    }
    out
}

/// Nested inclusion inside an array: objects are projected, nested arrays entered, scalars dropped.
fn include_array(items: &[Value], sub: &PTree) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| match i {
            Value::Array(inner) => Some(Value::Array(include_array(inner, sub))),
            _ => as_doc(i).map(|m| Value::Object(include(m, sub))),
        })
        .collect()
}

fn exclude(m: &mut Map<String, Value>, tree: &PTree) {
    for (k, n) in &tree.0 {
        match n {
            PNode::Exclude => {
                m.shift_remove(k);
            }
            PNode::Sub(sub) => {
                if let Some(v) = m.get_mut(k) {
                    exclude_value(v, sub);
                }
            }
            _ => {}
        }
    }
}

fn exclude_value(v: &mut Value, sub: &PTree) {
    if let Value::Array(items) = v {
        items.iter_mut().for_each(|i| exclude_value(i, sub));
    } else if let Some(m) = as_doc_mut(v) {
        exclude(m, sub);
    }
}

// ---- $group, $bucket, $bucketAuto --------------------------------------------------------

#[derive(Debug)]
pub(super) struct Group {
    pub id: Expr,
    pub accs: Vec<AccSpec>,
}

impl Group {
    fn parse(spec: &Value, scope: &mut Scope) -> Result<Group, DbError> {
        let m = match spec {
            Value::Object(m) if is_doc(spec) => m,
            _ => return Err(cmd("`$group` needs an object with `_id` and accumulator fields")),
        };
        let id = m
            .get("_id")
            .ok_or_else(|| cmd("`$group` needs an `_id` (use null to group all documents together)"))?;
        let id = Expr::compile(id, scope)?;
        let mut accs = Vec::new();
        for (k, v) in m {
            if k != "_id" {
                accs.push(AccSpec::parse("$group", k, v, scope)?);
            }
        }
        Ok(Group { id, accs })
    }

    fn deps(&self, d: &mut Deps) {
        self.id.deps(&mut Vec::new(), d);
        self.accs.iter().for_each(|a| a.arg.deps(&mut Vec::new(), d));
    }
}

fn parse_outputs(stage: &str, output: Option<&Value>, scope: &mut Scope) -> Result<Vec<AccSpec>, DbError> {
    match output {
        None => Ok(vec![AccSpec {
            field: "count".into(),
            op: super::accumulate::AccOp::Sum,
            arg: Expr::Const(Value::from(1)),
        }]),
        Some(Value::Object(m)) => m.iter().map(|(k, v)| AccSpec::parse(stage, k, v, scope)).collect(),
        Some(_) => Err(cmd(format!("`{stage}`: `output` must be an object of accumulators"))),
    }
}

fn group_by(stage: &str, v: &Value, scope: &mut Scope) -> Result<Expr, DbError> {
    let ok = matches!(v, Value::String(s) if s.starts_with('$')) || is_doc(v);
    if !ok {
        return Err(cmd(format!(
            "`{stage}`: `groupBy` must be a `$`-prefixed field path or an expression object"
        )));
    }
    Expr::compile(v, scope)
}

#[derive(Debug)]
pub(super) struct Bucket {
    pub group_by: Expr,
    pub boundaries: Vec<Value>,
    pub default: Option<Value>,
    pub accs: Vec<AccSpec>,
}

impl Bucket {
    fn parse(spec: &Value, scope: &mut Scope) -> Result<Bucket, DbError> {
        const S: &str = "$bucket";
        let m = named_args(
            S,
            spec,
            &["groupBy", "boundaries", "default", "output"],
            &["groupBy", "boundaries"],
        )?;
        let boundaries = match &m["boundaries"] {
            Value::Array(b) if b.len() >= 2 => b.clone(),
            _ => return Err(cmd("`$bucket`: `boundaries` must be an array of at least two values")),
        };
        for w in boundaries.windows(2) {
            if type_rank(&w[0]) != type_rank(&w[1]) {
                return Err(cmd("`$bucket`: all `boundaries` must be of the same type"));
            }
            if compare(&w[0], &w[1]) != std::cmp::Ordering::Less {
                return Err(cmd(
                    "`$bucket`: `boundaries` must be sorted in ascending order without duplicates",
                ));
            }
        }
        let default = m.get("default").cloned();
        if let (Some(d), Some(lo), Some(hi)) = (&default, boundaries.first(), boundaries.last()) {
            if type_rank(d) == type_rank(lo)
                && compare(d, lo) != std::cmp::Ordering::Less
                && compare(d, hi) == std::cmp::Ordering::Less
            {
                return Err(cmd(
                    "`$bucket`: `default` must be less than the lowest boundary or at least the highest one",
                ));
            }
        }
        Ok(Bucket {
            group_by: group_by(S, &m["groupBy"], scope)?,
            boundaries,
            default,
            accs: parse_outputs(S, m.get("output"), scope)?,
        })
    }

    /// The bucket a value falls in: its index, or `boundaries.len() - 1` for the default bucket.
    pub fn route(&self, v: &Value) -> Result<usize, DbError> {
        let n = self.boundaries.len();
        let in_range = compare(v, &self.boundaries[0]) != std::cmp::Ordering::Less
            && compare(v, &self.boundaries[n - 1]) == std::cmp::Ordering::Less
            && type_rank(v) == type_rank(&self.boundaries[0]);
        if in_range {
            // the last boundary at or below v
            let i = self
                .boundaries
                .partition_point(|b| compare(b, v) != std::cmp::Ordering::Greater);
            return Ok(i - 1);
        }
        if self.default.is_some() {
            return Ok(n - 1);
        }
        Err(cmd(format!(
            "`$bucket`: the value {} is outside the boundaries and no `default` was given",
            shown(Some(v))
        )))
    }
}

#[derive(Debug)]
pub(super) struct BucketAuto {
    pub group_by: Expr,
    pub buckets: usize,
    pub accs: Vec<AccSpec>,
    pub granularity: Option<super::granularity::Granularity>,
}

impl BucketAuto {
    fn parse(spec: &Value, scope: &mut Scope) -> Result<BucketAuto, DbError> {
        const S: &str = "$bucketAuto";
        let m = named_args(
            S,
            spec,
            &["groupBy", "buckets", "output", "granularity"],
            &["groupBy", "buckets"],
        )?;
        let granularity = match m.get("granularity") {
            None => None,
            Some(Value::String(name)) => Some(super::granularity::Granularity::named(name).ok_or_else(|| {
                cmd(format!(
                    "`$bucketAuto`: unknown `granularity` `{}` (R5, R10, R20, R40, R80, 1-2-5, E6, E12, E24, E48, E96, E192, POWERSOF2)",
                    name.chars().take(32).collect::<String>()
                ))
            })?),
            Some(_) => return Err(cmd("`$bucketAuto`: `granularity` must be a string such as \"R5\"")),
        };
        let buckets = match Num::of(&m["buckets"]).and_then(Num::exact_int) {
            Some(n) if n > 0 && n <= i64::from(i32::MAX) => n as usize,
            _ => return Err(cmd("`$bucketAuto`: `buckets` must be a positive 32-bit integer")),
        };
        Ok(BucketAuto {
            group_by: group_by(S, &m["groupBy"], scope)?,
            buckets,
            accs: parse_outputs(S, m.get("output"), scope)?,
            granularity,
        })
    }
}

// ---- $sort -------------------------------------------------------------------------------

pub(super) struct SortStage {
    pub sort: Sort,
    pub fields: Vec<String>,
    /// Only this many documents are ever needed (a `$limit`, maybe after a `$skip`, follows).
    pub keep: Option<usize>,
}

impl SortStage {
    fn parse(spec: &Value) -> Result<SortStage, DbError> {
        let m = match spec {
            Value::Object(m) if !m.is_empty() && is_doc(spec) => m,
            _ => return Err(cmd("`$sort` needs a non-empty object such as {\"field\": 1}")),
        };
        if m.len() > 32 {
            return Err(cmd("`$sort` takes at most 32 fields"));
        }
        let mut fields = Vec::with_capacity(m.len());
        let mut heads = Vec::new();
        for (k, v) in m {
            let segs = split_path(k, "$sort")?;
            if v.is_object() {
                return Err(DbError::NotSupported(format!(
                    "`$sort`: {} (such as `$meta`) is not supported",
                    shown(Some(v))
                )));
            }
            let dir = match Num::of(v).and_then(Num::exact_int) {
                Some(1) => Direction::Asc,
                Some(-1) => Direction::Desc,
                _ => {
                    return Err(cmd(format!(
                        "`$sort`: the order of `{k}` must be 1 or -1, not {}",
                        shown(Some(v))
                    )))
                }
            };
            heads.push(segs[0].clone());
            fields.push((k.clone(), dir));
        }
        Ok(SortStage {
            sort: Sort::new(fields),
            fields: heads,
            keep: None,
        })
    }
}

// ---- $unwind -----------------------------------------------------------------------------

#[derive(Debug)]
pub(super) struct Unwind {
    pub path: Vec<String>,
    pub index: Option<Vec<String>>,
    pub preserve: bool,
}

impl Unwind {
    fn parse(spec: &Value) -> Result<Unwind, DbError> {
        let field_path = |v: &Value| -> Result<Vec<String>, DbError> {
            match v {
                Value::String(s) if s.starts_with('$') && !s.starts_with("$$") => split_path(&s[1..], "$unwind"),
                _ => Err(cmd(
                    "`$unwind`: the path must be a `$`-prefixed field path such as \"$tags\"",
                )),
            }
        };
        match spec {
            Value::String(_) => Ok(Unwind {
                path: field_path(spec)?,
                index: None,
                preserve: false,
            }),
            Value::Object(_) => {
                let m = named_args(
                    "$unwind",
                    spec,
                    &["path", "includeArrayIndex", "preserveNullAndEmptyArrays"],
                    &["path"],
                )?;
                let index = match m.get("includeArrayIndex") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if !s.starts_with('$') => Some(split_path(s, "$unwind")?),
                    Some(_) => {
                        return Err(cmd(
                            "`$unwind`: `includeArrayIndex` must be a field name that does not start with `$`",
                        ))
                    }
                };
                let preserve = match m.get("preserveNullAndEmptyArrays") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(cmd("`$unwind`: `preserveNullAndEmptyArrays` must be a boolean")),
                };
                Ok(Unwind {
                    path: field_path(&m["path"])?,
                    index,
                    preserve,
                })
            }
            _ => Err(cmd(
                "`$unwind` needs a field path or {path, includeArrayIndex, preserveNullAndEmptyArrays}",
            )),
        }
    }

    /// The documents one input document unwinds into.
    pub fn apply(&self, mut doc: Value) -> Vec<Value> {
        let with_index = |mut d: Value, i: Option<usize>| {
            if let (Some(idx), Some(m)) = (&self.index, as_doc_mut(&mut d)) {
                set_plain(m, idx, i.map_or(Value::Null, Value::from));
            }
            d
        };
        match get_plain(&doc, &self.path) {
            Some(Value::Array(items)) if !items.is_empty() => {
                let Some(Value::Array(items)) = as_doc_mut(&mut doc).and_then(|m| remove_plain(m, &self.path)) else {
                    return Vec::new();
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let mut d = doc.clone();
                    if let Some(m) = as_doc_mut(&mut d) {
                        set_plain(m, &self.path, item);
                    }
                    out.push(with_index(d, Some(i)));
                }
                out
            }
            Some(Value::Array(_)) => {
                if !self.preserve {
                    return Vec::new();
                }
                if let Some(m) = as_doc_mut(&mut doc) {
                    remove_plain(m, &self.path);
                }
                vec![with_index(doc, None)]
            }
            None | Some(Value::Null) => {
                if self.preserve {
                    vec![with_index(doc, None)]
                } else {
                    Vec::new()
                }
            }
            Some(_) => vec![with_index(doc, None)],
        }
    }
}

// ---- $lookup -----------------------------------------------------------------------------

pub(super) struct Lookup {
    pub id: usize,
    pub from: String,
    /// `localField` (an expression field path on the input document) and `foreignField` (a query
    /// path on the foreign documents).
    pub local: Option<Vec<String>>,
    pub foreign: Option<Vec<String>>,
    pub lets: Vec<(String, Expr)>,
    /// The foreign side: its scan (the leading `$match` of `pipeline`, narrowed by rules) and the
    /// rest of `pipeline` (empty for the `localField`/`foreignField` form).
    pub pipeline: Pipeline,
    pub as_path: Vec<String>,
    /// True when the result is the same for every input document (no `let`, no `localField`,
    /// no variables from outside): computed once.
    pub uncorrelated: bool,
}

impl Lookup {
    fn parse(spec: &Value, ctx: &mut ParseCtx) -> Result<Lookup, DbError> {
        const S: &str = "$lookup";
        let m = named_args(
            S,
            spec,
            &["from", "localField", "foreignField", "as", "let", "pipeline"],
            &["from", "as"],
        )?;
        let from = match &m["from"] {
            Value::String(s) => s.clone(),
            _ => return Err(cmd("`$lookup`: `from` must be a collection name")),
        };
        validate_collection_name(&from)?;
        let as_path = match &m["as"] {
            Value::String(s) if !s.starts_with('$') => split_path(s, S)?,
            _ => return Err(cmd("`$lookup`: `as` must be a field name that does not start with `$`")),
        };
        let path = |k: &str| -> Result<Option<Vec<String>>, DbError> {
            match m.get(k) {
                None => Ok(None),
                Some(Value::String(s)) if !s.starts_with('$') => Ok(Some(split_path(s, S)?)),
                Some(_) => Err(cmd(format!("`$lookup`: `{k}` must be a field path without `$`"))),
            }
        };
        let (local, foreign) = (path("localField")?, path("foreignField")?);
        if local.is_some() != foreign.is_some() {
            return Err(cmd("`$lookup`: `localField` and `foreignField` go together"));
        }
        if local.is_none() && !m.contains_key("pipeline") {
            return Err(cmd("`$lookup` needs `localField` and `foreignField`, or `pipeline`"));
        }
        let mut lets = Vec::new();
        match m.get("let") {
            None => {}
            Some(Value::Object(vars)) => {
                for (n, e) in vars {
                    check_let_name(n)?;
                    lets.push((n.clone(), Expr::compile(e, &mut ctx.scope)?));
                }
            }
            Some(_) => return Err(cmd("`$lookup`: `let` must be an object of variables")),
        }
        if ctx.depth >= MAX_LOOKUP_DEPTH {
            return Err(cmd(format!(
                "`$lookup` pipelines can be nested at most {MAX_LOOKUP_DEPTH} deep"
            )));
        }
        let mut names = ctx.scope.names().to_vec();
        names.extend(lets.iter().map(|(n, _)| n.clone()));
        let mut sub = ParseCtx {
            scope: Scope::new(names),
            depth: ctx.depth + 1,
            next_id: ctx.next_id,
            total: ctx.total,
        };
        let empty = Value::Array(Vec::new());
        let mut pipeline = Pipeline::parse_in(m.get("pipeline").unwrap_or(&empty), &mut sub)?;
        pipeline.source.coll = Some(from.clone());
        ctx.next_id = sub.next_id;
        ctx.total = sub.total;
        let id = ctx.next_id;
        ctx.next_id += 1;
        let uncorrelated = local.is_none() && lets.is_empty() && pipeline.free_vars().is_empty();
        Ok(Lookup {
            id,
            from,
            local,
            foreign,
            lets,
            pipeline,
            as_path,
            uncorrelated,
        })
    }

    /// The values of `localField` to match: the elements if it is an array, null if missing.
    pub fn local_values(&self, doc: &Value) -> Vec<Value> {
        let Some(path) = &self.local else { return Vec::new() };
        match get_path(doc, path).map(|c| c.into_owned()) {
            None => vec![Value::Null],
            Some(Value::Array(items)) => items,
            Some(v) => vec![v],
        }
    }
}

fn check_let_name(n: &str) -> Result<(), DbError> {
    let mut chars = n.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || !c.is_ascii())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii());
    if ok {
        Ok(())
    } else {
        Err(cmd(format!(
            "`$lookup`: invalid variable name `{n}` in `let` (start with a lowercase letter)"
        )))
    }
}

/// Foreign documents indexed by every value their `foreignField` reaches (as a query sees it:
/// arrays match by their elements too, and a missing field matches null).
pub(super) struct ForeignIndex {
    map: HashMap<Vec<u8>, Vec<u32>>,
}

impl ForeignIndex {
    pub fn build(docs: &[Value], path: &[String]) -> ForeignIndex {
        let mut map: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
        for (i, doc) in docs.iter().enumerate() {
            let mut reached = Vec::new();
            reach(doc, path, &mut reached);
            for v in reached {
                let mut add = |v: Option<&Value>| {
                    let list = map.entry(key_of(v)).or_default();
                    if list.last() != Some(&(i as u32)) {
                        list.push(i as u32);
                    }
                };
                match v {
                    Some(Value::Array(items)) => {
                        add(v);
                        items.iter().for_each(|e| add(Some(e)));
                        if items.is_empty() {
                            // an empty array is neither null nor missing
                        }
                    }
                    other => add(other),
                }
            }
        }
        ForeignIndex { map }
    }

    /// Positions (ascending) of the documents matching any of `values`.
    pub fn matches(&self, values: &[Value]) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        let mut k = Vec::new();
        for v in values {
            k.clear();
            key_bytes(Some(v), &mut k);
            if let Some(list) = self.map.get(&k) {
                out.extend_from_slice(list);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Memory the index holds (an estimate).
    pub fn size(&self) -> usize {
        self.map.iter().map(|(k, v)| k.len() + v.len() * 4 + 64).sum()
    }
}

/// Every value a query path reaches (MongoDB's traversal: objects entered, a field name applied
/// to each object in an array, a number also as an array index); `None` for a missing value.
fn reach<'a>(v: &'a Value, path: &[String], out: &mut Vec<Option<&'a Value>>) {
    let Some((seg, rest)) = path.split_first() else {
        out.push(Some(v));
        return;
    };
    match v {
        Value::Array(items) => {
            let mut reached = false;
            if let Some(item) = seg.parse::<usize>().ok().and_then(|i| items.get(i)) {
                reached = true;
                reach(item, rest, out);
            }
            for item in items {
                if let Some(m) = as_doc(item) {
                    match m.get(seg) {
                        Some(child) => {
                            reached = true;
                            reach(child, rest, out);
                        }
                        None => out.push(None),
                    }
                }
            }
            if !reached {
                out.push(None);
            }
        }
        _ => match as_doc(v).and_then(|m| m.get(seg)) {
            Some(child) => reach(child, rest, out),
            None => out.push(None),
        },
    }
}

// ---- parsing -----------------------------------------------------------------------------

fn count_of(stage: &str, v: &Value, min: i64) -> Result<u64, DbError> {
    match Num::of(v).and_then(Num::exact_int) {
        Some(n) if n >= min => Ok(n as u64),
        _ => Err(cmd(format!(
            "`{stage}` needs an integer of at least {min}, not {}",
            shown(Some(v))
        ))),
    }
}

/// Parses one `{$stage: spec}` object into the stages it stands for (`$sortByCount` is two).
pub(super) fn parse_stage(stage: &Value, ctx: &mut ParseCtx) -> Result<Vec<Stage>, DbError> {
    let (name, spec) = match stage {
        Value::Object(m) if m.len() == 1 => m.iter().next().ok_or_else(|| cmd("empty stage"))?,
        other => {
            return Err(cmd(format!(
                "each stage must be an object with exactly one field, such as {{\"$match\": {{}}}}; got {}",
                shown(Some(other))
            )))
        }
    };
    let scope = &mut ctx.scope;
    Ok(vec![match name.as_str() {
        "$match" => Stage::Match(MatchStage::parse(spec, scope)?),
        "$project" => Stage::Project(Projection::parse_project(spec, scope)?),
        "$addFields" | "$set" => Stage::Project(Projection::parse_add_fields(name, spec, scope)?),
        "$unset" => Stage::Project(Projection::parse_unset(spec)?),
        "$group" => Stage::Group(Group::parse(spec, scope)?),
        "$sort" => Stage::Sort(SortStage::parse(spec)?),
        "$skip" => Stage::Skip(count_of("$skip", spec, 0)?),
        "$limit" => Stage::Limit(count_of("$limit", spec, 1)?),
        "$unwind" => Stage::Unwind(Unwind::parse(spec)?),
        "$lookup" => Stage::Lookup(Box::new(Lookup::parse(spec, ctx)?)),
        "$count" => match spec {
            Value::String(s) if !s.is_empty() && !s.starts_with('$') && !s.contains('.') => Stage::Count(s.clone()),
            _ => {
                return Err(cmd(
                    "`$count` needs the name of the output field (not empty, no `$` prefix, no `.`)",
                ))
            }
        },
        "$sortByCount" => {
            let ok = matches!(spec, Value::String(s) if s.starts_with('$')) || is_doc(spec);
            if !ok || matches!(spec, Value::Object(m) if m.is_empty()) {
                return Err(cmd(
                    "`$sortByCount` needs a `$`-prefixed field path or an expression object",
                ));
            }
            let group = Group {
                id: Expr::compile(spec, scope)?,
                accs: vec![AccSpec {
                    field: "count".into(),
                    op: super::accumulate::AccOp::Sum,
                    arg: Expr::Const(Value::from(1)),
                }],
            };
            let sort = SortStage {
                sort: Sort::new(vec![("count".into(), Direction::Desc)]),
                fields: vec!["count".into()],
                keep: None,
            };
            return Ok(vec![Stage::Group(group), Stage::Sort(sort)]);
        }
        "$sample" => {
            let m = named_args("$sample", spec, &["size"], &["size"])?;
            let n = count_of("$sample", &m["size"], 0)?;
            Stage::Sample(usize::try_from(n).unwrap_or(usize::MAX))
        }
        "$replaceRoot" => {
            let m = named_args("$replaceRoot", spec, &["newRoot"], &["newRoot"])?;
            Stage::ReplaceRoot(Expr::compile(&m["newRoot"], scope)?)
        }
        "$replaceWith" => Stage::ReplaceRoot(Expr::compile(spec, scope)?),
        "$bucket" => Stage::Bucket(Bucket::parse(spec, scope)?),
        "$bucketAuto" => Stage::BucketAuto(BucketAuto::parse(spec, scope)?),
        "$facet" => Stage::Facet(parse_facet(spec, ctx)?),
        "$geoNear" => {
            return Err(cmd(
                "`$geoNear` is only allowed as the first stage of a pipeline (not later, nor in `$facet`)",
            ))
        }
        n if UNSUPPORTED.contains(&n) => {
            return Err(DbError::NotSupported(format!(
                "the aggregation stage `{n}` is not supported"
            )))
        }
        n => {
            return Err(cmd(format!(
                "unknown aggregation stage `{}`",
                n.chars().take(64).collect::<String>()
            )))
        }
    }])
}

/// `$facet`: `{name: [stages], …}`; the branches cannot hold another `$facet`.
fn parse_facet(spec: &Value, ctx: &mut ParseCtx) -> Result<Vec<(String, Vec<Stage>)>, DbError> {
    let m = match spec {
        Value::Object(m) if !m.is_empty() && is_doc(spec) => m,
        _ => return Err(cmd("`$facet` needs a non-empty object of named pipelines")),
    };
    let mut out = Vec::with_capacity(m.len());
    for (name, branch) in m {
        if name.is_empty() || name.starts_with('$') || name.contains('.') {
            return Err(cmd(format!(
                "`$facet`: the name `{name}` cannot be empty, start with `$` or contain `.`"
            )));
        }
        let items = branch
            .as_array()
            .ok_or_else(|| cmd(format!("`$facet`: `{name}` must be an array of stages")))?;
        ctx.total += items.len();
        if items.len() > super::MAX_STAGES || ctx.total > super::MAX_TOTAL_STAGES {
            return Err(DbError::InvalidParam(format!(
                "a pipeline has at most {} stages ({} with every nested one)",
                super::MAX_STAGES,
                super::MAX_TOTAL_STAGES
            )));
        }
        let mut stages = Vec::with_capacity(items.len());
        for item in items {
            if item.as_object().is_some_and(|s| s.contains_key("$facet")) {
                return Err(cmd("`$facet` cannot be used inside `$facet`"));
            }
            stages.extend(parse_stage(item, ctx)?);
        }
        out.push((name.clone(), stages));
    }
    Ok(out)
}

/// `$replaceRoot`: the new document, which must be an object.
pub(super) fn new_root(e: &Expr, doc: &Value, env: &mut Env) -> Result<Value, DbError> {
    match e.evaluate(doc, env)?.map(|c| c.into_owned()) {
        Some(v) if is_doc(&v) => Ok(v),
        other => Err(cmd(format!(
            "`$replaceRoot`: `newRoot` must evaluate to an object, not {} ({})",
            type_name(other.as_ref()),
            shown(other.as_ref())
        ))),
    }
}

/// Adds what a stage reads to `d`; true if the stage's output depends only on what it read
/// (so nothing else of the input documents is ever needed).
pub(super) fn stage_deps(stage: &Stage, d: &mut Deps) -> bool {
    let mut bound = Vec::new();
    match stage {
        Stage::Match(m) => {
            d.fields.extend(
                m.filter
                    .fields()
                    .into_iter()
                    .map(str::to_string)
                    .filter(|f| !d.fields.contains(f))
                    .collect::<Vec<_>>(),
            );
            if let Some(e) = &m.expr {
                e.deps(&mut bound, d);
            }
            false
        }
        Stage::Project(p) => p.deps(d),
        Stage::Group(g) => {
            g.deps(d);
            true
        }
        Stage::Sort(s) => {
            s.fields.iter().for_each(|f| d.field(f));
            false
        }
        Stage::Skip(_) | Stage::Limit(_) | Stage::Sample(_) => false,
        Stage::Unwind(u) => {
            d.field(&u.path[0]);
            false
        }
        Stage::Lookup(l) => {
            if let Some(p) = &l.local {
                d.field(&p[0]);
            }
            l.lets.iter().for_each(|(_, e)| e.deps(&mut bound, d));
            false
        }
        Stage::Count(_) => true,
        Stage::ReplaceRoot(e) => {
            e.deps(&mut bound, d);
            true
        }
        Stage::Bucket(b) => {
            b.group_by.deps(&mut bound, d);
            b.accs.iter().for_each(|a| a.arg.deps(&mut bound, d));
            true
        }
        Stage::BucketAuto(b) => {
            b.group_by.deps(&mut bound, d);
            b.accs.iter().for_each(|a| a.arg.deps(&mut bound, d));
            true
        }
        Stage::Facet(branches) => {
            for (_, b) in branches {
                match super::fields_of(b) {
                    Some(fields) => fields.iter().for_each(|f| d.field(f)),
                    None => d.whole = true,
                }
            }
            true
        }
    }
}

/// A scan of the source or of a `$lookup`'s collection, built from a leading `$match` query.
pub(super) fn scan_of(query: Option<Value>) -> Result<Scan, DbError> {
    let filter = match &query {
        None => Filter::parse(&Value::Object(Map::new()))?,
        Some(q) => Filter::parse(q)?,
    };
    Ok(Scan {
        coll: None,
        query,
        filter,
    })
}
