//! The query check: does every document a query can match satisfy a rule? Decided from the query
//! alone (CloudBase's "query must be a subset of the rule"), never by looking at results.
//!
//! The query is reduced to branches (one per combination of `$or` alternatives), each a set of
//! facts per field path: values it is pinned to (`{f: v}`, `$eq`, one-value `$in`), `$in` sets,
//! range bounds and excluded values. Conditions the checker does not use only narrow the query
//! further, so ignoring them is safe. The rule must then be implied in every branch; see
//! docs/rules.md for exactly which rule shapes are understood. Anything else is refused.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::eval::{doc_path, member, order, DocSource, Eval, Scope};
use super::expr::{CmpOp, Expr, Part};
use crate::db::value::{as_date, values_equal};

/// Most branches (combinations of `$or` alternatives) a query may expand to.
pub const MAX_BRANCHES: usize = 64;
/// Deepest query nesting the checker follows.
const MAX_QUERY_DEPTH: usize = 64;

/// What one branch of a query says about one field path.
#[derive(Debug, Default, Clone)]
pub(super) struct Facts {
    /// `doc.f == v` for each `v` (`{f: v}`, `{f: {$eq: v}}`, `{f: {$in: [v]}}`).
    eq: Vec<Value>,
    /// `doc.f` is one of these (`{f: {$in: [...]}}`).
    sets: Vec<Vec<Value>>,
    /// Lower bounds `(value, inclusive)` (`$gt`, `$gte`).
    lower: Vec<(Value, bool)>,
    /// Upper bounds `(value, inclusive)` (`$lt`, `$lte`).
    upper: Vec<(Value, bool)>,
    /// `doc.f != v` for each `v` (`$ne`, `$nin`).
    ne: Vec<Value>,
}

impl Facts {
    fn merge(&mut self, other: &Facts) {
        self.eq.extend(other.eq.iter().cloned());
        self.sets.extend(other.sets.iter().cloned());
        self.lower.extend(other.lower.iter().cloned());
        self.upper.extend(other.upper.iter().cloned());
        self.ne.extend(other.ne.iter().cloned());
    }
}

/// One conjunction of conditions of a query.
#[derive(Debug, Default, Clone)]
pub(super) struct Branch {
    fields: BTreeMap<Vec<String>, Facts>,
}

impl Branch {
    fn facts(&mut self, path: Vec<String>) -> &mut Facts {
        self.fields.entry(path).or_default()
    }

    fn merged(&self, other: &Branch) -> Branch {
        let mut out = self.clone();
        for (path, facts) in &other.fields {
            out.facts(path.clone()).merge(facts);
        }
        out
    }

    /// Values `doc.<path>` is known to equal: pins of the path itself, then values reached
    /// through a pinned ancestor (`{owner: {id: 'a'}}` pins `owner.id`).
    fn eq_candidates(&self, path: &[String]) -> Vec<Value> {
        let mut out: Vec<Value> = self.fields.get(path).map(|f| f.eq.clone()).unwrap_or_default();
        for cut in (1..path.len()).rev() {
            let Some(facts) = self.fields.get(&path[..cut]) else {
                continue;
            };
            for pinned in &facts.eq {
                let mut v = std::borrow::Cow::Borrowed(pinned);
                let mut ok = true;
                for seg in &path[cut..] {
                    match member(v, seg) {
                        Ok(next) => v = next,
                        Err(_) => {
                            ok = false;
                            v = std::borrow::Cow::Owned(Value::Null);
                            break;
                        }
                    }
                }
                if ok {
                    out.push(v.into_owned());
                }
            }
        }
        out
    }
}

/// The branches of a (normalized) query.
pub(super) fn branches(query: &Value) -> Result<Vec<Branch>, String> {
    match query {
        Value::Object(q) => object_branches(q, 1),
        _ => Err("the query is not a JSON object".into()),
    }
}

fn object_branches(q: &Map<String, Value>, depth: usize) -> Result<Vec<Branch>, String> {
    if depth > MAX_QUERY_DEPTH {
        return Err("the query is nested too deeply for the rules check".into());
    }
    let mut base = Branch::default();
    let mut groups: Vec<Vec<Branch>> = Vec::new();
    for (key, cond) in q {
        match key.as_str() {
            "$and" | "$or" => {
                let items = cond
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| format!("`{key}` must be a non-empty array of objects"))?;
                let mut subs = Vec::with_capacity(items.len());
                for item in items {
                    let sub = item
                        .as_object()
                        .ok_or_else(|| format!("`{key}` must be a non-empty array of objects"))?;
                    subs.push(object_branches(sub, depth + 1)?);
                }
                if key == "$and" {
                    groups.extend(subs);
                } else {
                    let alternatives: Vec<Branch> = subs.into_iter().flatten().collect();
                    if alternatives.len() > MAX_BRANCHES {
                        return Err(too_many());
                    }
                    groups.push(alternatives);
                }
            }
            // every other top-level operator is one more conjunct: ignoring it only widens the
            // set of documents considered, which is safe
            k if k.starts_with('$') => {}
            path => {
                if let Some(path) = split_path(path) {
                    condition(&mut base, &path, cond, depth + 1);
                }
            }
        }
    }
    let mut out = vec![base];
    for group in groups {
        if out.len().saturating_mul(group.len()) > MAX_BRANCHES {
            return Err(too_many());
        }
        out = out
            .iter()
            .flat_map(|a| group.iter().map(move |b| a.merged(b)))
            .collect();
    }
    Ok(out)
}

fn too_many() -> String {
    format!("the query has more than {MAX_BRANCHES} combinations of `$or` alternatives for the rules check")
}

fn split_path(path: &str) -> Option<Vec<String>> {
    let segs: Vec<String> = path.split('.').map(str::to_string).collect();
    segs.iter().all(|s| !s.is_empty()).then_some(segs)
}

/// True if `v` is an operator object (`{$gt: 1}`) rather than a value (dates are values).
fn is_operator_object(v: &Value) -> bool {
    match v {
        Value::Object(m) => as_date(v).is_none() && m.keys().next().is_some_and(|k| k.starts_with('$')),
        _ => false,
    }
}

/// A plain value a fact can be about: no operator objects (regexes and the like) anywhere.
fn plain(v: &Value, depth: usize) -> bool {
    if depth > MAX_QUERY_DEPTH {
        return false;
    }
    match v {
        Value::Object(m) => as_date(v).is_some() || m.iter().all(|(k, x)| !k.starts_with('$') && plain(x, depth + 1)),
        Value::Array(items) => items.iter().all(|x| plain(x, depth + 1)),
        _ => true,
    }
}

/// Records what the condition of one field says; conditions not understood add nothing.
fn condition(branch: &mut Branch, path: &[String], cond: &Value, depth: usize) {
    if depth > MAX_QUERY_DEPTH {
        return;
    }
    let Value::Object(ops) = cond else {
        branch.facts(path.to_vec()).eq.push(cond.clone());
        return;
    };
    if !is_operator_object(cond) {
        if plain(cond, depth) {
            branch.facts(path.to_vec()).eq.push(cond.clone());
        }
        return;
    }
    for (op, x) in ops {
        let usable = plain(x, depth + 1);
        match op.as_str() {
            "$eq" if usable => branch.facts(path.to_vec()).eq.push(x.clone()),
            "$in" if usable => {
                if let Some(items) = x.as_array().filter(|a| !a.is_empty()) {
                    let facts = branch.facts(path.to_vec());
                    if items.len() == 1 {
                        facts.eq.push(items[0].clone());
                    }
                    facts.sets.push(items.clone());
                }
            }
            // a null bound matches null/missing (`$gte`, `$lte`) or nothing: no fact
            "$gt" | "$gte" if usable && !x.is_null() => {
                branch.facts(path.to_vec()).lower.push((x.clone(), op == "$gte"));
            }
            "$lt" | "$lte" if usable && !x.is_null() => {
                branch.facts(path.to_vec()).upper.push((x.clone(), op == "$lte"));
            }
            "$ne" if usable => branch.facts(path.to_vec()).ne.push(x.clone()),
            "$nin" if usable => {
                if let Some(items) = x.as_array() {
                    branch.facts(path.to_vec()).ne.extend(items.iter().cloned());
                }
            }
            // field-level `$and`: each item is a condition on the same field
            "$and" => {
                if let Some(items) = x.as_array() {
                    for item in items {
                        condition(branch, path, item, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
}

fn dotted(path: &[String]) -> String {
    path.join(".")
}

/// Ok if `rule` holds for every document that `branch` can match; otherwise why not.
pub(super) fn implied(scope: &Scope<'_>, rule: &Expr, branch: &Branch) -> Result<(), String> {
    if !rule.mentions_doc() {
        let ev = Eval {
            scope,
            doc: DocSource::None,
        };
        return match ev.holds(rule) {
            Ok(true) => Ok(()),
            Ok(false) => Err("the rule does not allow this caller".into()),
            Err(_) => Err("the rule cannot be evaluated for this caller".into()),
        };
    }
    match rule {
        Expr::And(items) => items.iter().try_for_each(|i| implied(scope, i, branch)),
        Expr::Or(items) => {
            let mut reasons = Vec::new();
            for item in items {
                match implied(scope, item, branch) {
                    Ok(()) => return Ok(()),
                    Err(r) => reasons.push(r),
                }
            }
            reasons.dedup();
            Err(reasons.join("; and "))
        }
        _ => atom(scope, rule, branch),
    }
}

/// Every document path `e` reads (each `doc.a.b` chain once).
fn collect_paths(ev: &Eval<'_>, e: &Expr, out: &mut Vec<Vec<String>>) -> Result<(), String> {
    if let Some(path) = doc_path(ev, e) {
        let path = path.map_err(|_| "a key inside `doc[...]` cannot be evaluated here".to_string())?;
        if path.is_empty() {
            return Err("the rule uses `doc` as a whole; only its fields can be checked against a query".into());
        }
        if path.iter().any(|s| s.is_empty() || s.contains('.')) {
            return Err("a field name used with `doc[...]` is empty or contains `.`".into());
        }
        if !out.contains(&path) {
            out.push(path);
        }
        return Ok(());
    }
    match e {
        Expr::Lit(_) | Expr::Var(_) => Ok(()),
        Expr::Array(items) | Expr::And(items) | Expr::Or(items) => {
            items.iter().try_for_each(|i| collect_paths(ev, i, out))
        }
        Expr::Template(parts) => parts.iter().try_for_each(|p| match p {
            Part::Expr(e) => collect_paths(ev, e, out),
            Part::Str(_) => Ok(()),
        }),
        Expr::Member(a, b) | Expr::Cmp(_, a, b) => {
            collect_paths(ev, a, out)?;
            collect_paths(ev, b, out)
        }
        Expr::Get(a) | Expr::Not(a) | Expr::Neg(a) => collect_paths(ev, a, out),
    }
}

/// A rule term that reads `doc` and is not `&&`/`||`.
fn atom(scope: &Scope<'_>, e: &Expr, branch: &Branch) -> Result<(), String> {
    if e.any(&|x| matches!(x, Expr::Not(inner) if inner.mentions_doc())) {
        return Err("`!` over document fields cannot be checked against a query; \
                    state the condition positively (`doc.f != v` rather than `!(doc.f == v)`)"
            .into());
    }
    let plain_ev = Eval {
        scope,
        doc: DocSource::None,
    };
    let mut paths = Vec::new();
    collect_paths(&plain_ev, e, &mut paths)?;
    let doc_in_get = e.any(&|x| matches!(x, Expr::Get(arg) if arg.mentions_doc()));
    if let ([path], false) = (paths.as_slice(), doc_in_get) {
        return single_path(scope, e, path, branch);
    }
    // several fields, or a get() whose path reads doc: every field must be pinned by equality
    let mut pins = Vec::with_capacity(paths.len());
    for path in &paths {
        match branch.eq_candidates(path).into_iter().next() {
            Some(v) => pins.push((path.clone(), v)),
            None => {
                return Err(format!(
                    "the query must fix `{}` with an equality or a one-value `$in`",
                    dotted(path)
                ))
            }
        }
    }
    let ev = Eval {
        scope,
        doc: DocSource::Pinned(&pins),
    };
    match ev.holds(e) {
        Ok(true) => Ok(()),
        _ => Err(not_implied(&paths)),
    }
}

fn not_implied(paths: &[Vec<String>]) -> String {
    let names: Vec<String> = paths.iter().map(|p| format!("`{}`", dotted(p))).collect();
    format!(
        "the query's conditions on {} do not guarantee the rule for every document it can match",
        names.join(", ")
    )
}

/// A term reading one field: implied by a pinned value, an `$in` set, a range or a `$ne`.
fn single_path(scope: &Scope<'_>, e: &Expr, path: &[String], branch: &Branch) -> Result<(), String> {
    let holds_with = |v: &Value| {
        let pins = [(path.to_vec(), v.clone())];
        let ev = Eval {
            scope,
            doc: DocSource::Pinned(&pins),
        };
        ev.holds(e) == Ok(true)
    };
    if branch.eq_candidates(path).iter().any(holds_with) {
        return Ok(());
    }
    let Some(facts) = branch.fields.get(path) else {
        let hint = if path == ["_openid"] {
            "add `_openid: '{openid}'` to the query"
        } else {
            "add a condition on it to the query"
        };
        return Err(format!("the query does not constrain `{}` ({hint})", dotted(path)));
    };
    if facts.sets.iter().any(|set| set.iter().all(holds_with)) {
        return Ok(());
    }
    if let Some((op, w)) = comparison_with_path(scope, e, path) {
        let bound_ok = |bounds: &[(Value, bool)]| bounds.iter().any(|(b, inclusive)| within(op, b, *inclusive, &w));
        let ok = match op {
            CmpOp::Gt | CmpOp::Ge => bound_ok(&facts.lower),
            CmpOp::Lt | CmpOp::Le => bound_ok(&facts.upper),
            CmpOp::Ne => facts.ne.iter().any(|x| values_equal(x, &w)),
            CmpOp::Eq | CmpOp::In => false,
        };
        if ok {
            return Ok(());
        }
    }
    Err(not_implied(&[path.to_vec()]))
}

/// If `e` is `doc.<path> OP w` (or `w OP doc.<path>`) with `w` not reading `doc`: `OP` as seen
/// from the field, and the value of `w`.
fn comparison_with_path(scope: &Scope<'_>, e: &Expr, path: &[String]) -> Option<(CmpOp, Value)> {
    let Expr::Cmp(op, l, r) = e else { return None };
    let ev = Eval {
        scope,
        doc: DocSource::None,
    };
    let is_path = |x: &Expr| matches!(doc_path(&ev, x), Some(Ok(p)) if p == path);
    let (op, other) = if is_path(l) {
        (*op, r)
    } else if is_path(r) {
        (op.flipped()?, l)
    } else {
        return None;
    };
    if other.mentions_doc() {
        return None;
    }
    let w = ev.eval(other).ok()?.into_owned();
    Some((op, w))
}

/// True if every value beyond `bound` (inclusive or not) satisfies `value OP w`.
fn within(op: CmpOp, bound: &Value, inclusive: bool, w: &Value) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match (op, order(bound, w)) {
        (CmpOp::Gt, Some(Greater)) | (CmpOp::Ge, Some(Greater | Equal)) => true,
        (CmpOp::Lt, Some(Less)) | (CmpOp::Le, Some(Less | Equal)) => true,
        (CmpOp::Gt | CmpOp::Lt, Some(Equal)) => !inclusive,
        _ => false,
    }
}
