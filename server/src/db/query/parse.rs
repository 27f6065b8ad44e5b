//! Compiling query JSON (already normalized) into nodes: query objects, operator objects, operands.

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::node::{type_mask, CmpOp, GeoTest, InList, Node, Path, Test};
use super::{ElementFilter, Near};
use crate::db::geo::{self, Geometry, Within};
use crate::db::value::{as_date, DEFAULT_MAX_DEPTH};
use crate::db::DbError;

/// Largest compiled regex accepted, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What an operator object applies to: a path of the document, or the value at hand.
#[derive(Clone)]
pub(super) enum Target {
    Path(Path),
    Value,
}

impl Target {
    fn node(&self, test: Test) -> Node {
        match self {
            Target::Path(p) => Node::Field(p.clone(), test),
            Target::Value => Node::Value(test),
        }
    }
}

fn cmd(msg: impl Into<String>) -> DbError {
    DbError::InvalidCommand(msg.into())
}

fn check_depth(depth: usize) -> Result<(), DbError> {
    if depth > DEFAULT_MAX_DEPTH {
        return Err(DbError::NestingTooDeep(DEFAULT_MAX_DEPTH));
    }
    Ok(())
}

fn unsupported(op: &str) -> DbError {
    cmd(format!("`{op}` is not supported yet"))
}

const UNSUPPORTED: &[&str] = &["$expr", "$text", "$where", "$jsonSchema"];

/// True if `v` is an object of operators (`{$gt: 1}`), as opposed to a value to compare with.
pub(super) fn is_operator_object(v: &Value) -> bool {
    match v {
        Value::Object(m) => as_date(v).is_none() && m.keys().next().is_some_and(|k| k.starts_with('$')),
        _ => false,
    }
}

/// A query object (`{a: 1, $or: [...]}`) as the list of its conjuncts.
pub(super) fn parse_query(q: &Map<String, Value>, depth: usize) -> Result<Vec<Node>, DbError> {
    check_depth(depth)?;
    let mut out = Vec::with_capacity(q.len());
    for (key, cond) in q {
        match key.as_str() {
            "$and" | "$or" | "$nor" => {
                let items = cond
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| cmd(format!("`{key}` must be a non-empty array of objects")))?;
                let mut subs = Vec::with_capacity(items.len());
                for item in items {
                    let sub = item
                        .as_object()
                        .ok_or_else(|| cmd(format!("`{key}` must be a non-empty array of objects")))?;
                    subs.push(Node::And(parse_query(sub, depth + 1)?));
                }
                out.push(match key.as_str() {
                    "$and" => Node::And(subs),
                    "$or" => Node::Or(subs),
                    _ => Node::Nor(subs),
                });
            }
            "$comment" => {}
            k if UNSUPPORTED.contains(&k) => return Err(unsupported(k)),
            k if k.starts_with('$') => return Err(cmd(format!("unknown query operator `{k}`"))),
            path => parse_condition(&Target::Path(Path::parse(path)), cond, depth + 1, &mut out)?,
        }
    }
    Ok(out)
}

/// The condition of one field: an operator object, or a value to be equal to.
pub(super) fn parse_condition(target: &Target, cond: &Value, depth: usize, out: &mut Vec<Node>) -> Result<(), DbError> {
    match cond {
        Value::Object(ops) if is_operator_object(cond) => parse_operators(target, ops, depth, out),
        _ => {
            out.push(target.node(Test::Eq(cond.clone())));
            Ok(())
        }
    }
}

/// An operator object such as `{$gt: 1, $lt: 5}`, each operator adding one conjunct.
pub(super) fn parse_operators(
    target: &Target,
    ops: &Map<String, Value>,
    depth: usize,
    out: &mut Vec<Node>,
) -> Result<(), DbError> {
    check_depth(depth)?;
    for (op, operand) in ops {
        let node = match op.as_str() {
            "$eq" => target.node(Test::Eq(operand.clone())),
            "$ne" => Node::Not(Box::new(target.node(Test::Eq(operand.clone())))),
            "$gt" => target.node(comparison(CmpOp::Gt, operand)),
            "$gte" => target.node(comparison(CmpOp::Gte, operand)),
            "$lt" => target.node(comparison(CmpOp::Lt, operand)),
            "$lte" => target.node(comparison(CmpOp::Lte, operand)),
            "$in" => target.node(Test::In(in_list("$in", operand)?)),
            "$nin" => Node::Not(Box::new(target.node(Test::In(in_list("$nin", operand)?)))),
            "$exists" => {
                let exists = match operand {
                    Value::Bool(b) => *b,
                    Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                    Value::Null => false,
                    _ => return Err(cmd("`$exists` needs true or false")),
                };
                let node = target.node(Test::Exists);
                if exists {
                    node
                } else {
                    Node::Not(Box::new(node))
                }
            }
            "$type" => {
                let names = match operand {
                    Value::Array(items) => items.as_slice(),
                    single => std::slice::from_ref(single),
                };
                let mut mask = 0;
                for name in names {
                    mask |= type_mask(name).ok_or_else(|| cmd(format!("`$type`: unknown type {name}")))?;
                }
                target.node(Test::Type(mask))
            }
            "$all" => {
                let items = operand.as_array().ok_or_else(|| cmd("`$all` needs an array"))?;
                if items.is_empty() {
                    target.node(Test::Never)
                } else {
                    let mut all = Vec::with_capacity(items.len());
                    for item in items {
                        all.push(target.node(all_item(item, depth)?));
                    }
                    Node::And(all)
                }
            }
            "$elemMatch" => {
                if !operand.is_object() || as_date(operand).is_some() {
                    return Err(cmd("`$elemMatch` needs an object"));
                }
                target.node(Test::ElemMatch(Box::new(ElementFilter::parse_at(operand, depth + 1)?)))
            }
            "$size" => {
                let n = match operand {
                    Value::Number(n) => n
                        .as_u64()
                        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64)),
                    _ => None,
                };
                let n = n
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| cmd("`$size` needs a non-negative integer"))?;
                target.node(Test::Size(n))
            }
            "$mod" => target.node(modulo(operand)?),
            "$regex" => {
                let options = match ops.get("$options") {
                    None => "",
                    Some(Value::String(s)) => s.as_str(),
                    Some(_) => return Err(cmd("`$options` needs a string")),
                };
                target.node(Test::Regex(regex_operand(operand, options)?))
            }
            "$options" => {
                if !ops.contains_key("$regex") {
                    return Err(cmd("`$options` needs a `$regex`"));
                }
                continue;
            }
            "$not" => {
                let inner = match operand {
                    Value::Object(m) if !m.is_empty() && is_operator_object(operand) => m,
                    _ => return Err(cmd("`$not` needs an operator object or a regex")),
                };
                let mut nodes = Vec::with_capacity(inner.len());
                parse_operators(target, inner, depth + 1, &mut nodes)?;
                Node::Not(Box::new(Node::And(nodes)))
            }
            // field-level logic (`{f: {$or: [{$lt: 1}, {$gt: 5}]}}`), an extension over MongoDB
            "$and" | "$or" | "$nor" => {
                let items = operand
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| cmd(format!("`{op}` must be a non-empty array")))?;
                let mut subs = Vec::with_capacity(items.len());
                for item in items {
                    let mut nodes = Vec::new();
                    parse_condition(target, item, depth + 1, &mut nodes)?;
                    subs.push(Node::And(nodes));
                }
                match op.as_str() {
                    "$and" => Node::And(subs),
                    "$or" => Node::Or(subs),
                    _ => Node::Nor(subs),
                }
            }
            "$geoWithin" | "$within" => target.node(Test::Geo(Box::new(GeoTest::Within(within(operand)?)))),
            "$geoIntersects" => {
                let g = geometry_of(operand, op)?;
                target.node(Test::Geo(Box::new(GeoTest::Intersects(g))))
            }
            "$near" | "$nearSphere" => {
                let Target::Path(path) = target else {
                    return Err(cmd(format!("`{op}` cannot be used inside `$elemMatch` or `$pull`")));
                };
                Node::Near(path.clone(), Box::new(near(op, operand, ops)?))
            }
            "$maxDistance" | "$minDistance" => {
                if !ops.contains_key("$near") && !ops.contains_key("$nearSphere") {
                    return Err(cmd(format!("`{op}` needs `$near` or `$nearSphere`")));
                }
                continue;
            }
            "$comment" => continue,
            k if UNSUPPORTED.contains(&k) => return Err(unsupported(k)),
            k => return Err(cmd(format!("unknown query operator `{k}`"))),
        };
        out.push(node);
    }
    Ok(())
}

/// `$gte: null` / `$lte: null` match null and missing values; `$gt`/`$lt` null match nothing.
fn comparison(op: CmpOp, operand: &Value) -> Test {
    match (operand, op) {
        (Value::Null, CmpOp::Gte | CmpOp::Lte) => Test::Eq(Value::Null),
        (Value::Null, _) => Test::Never,
        _ => Test::Cmp(op, operand.clone()),
    }
}

/// `{$regex, $options}` as a compiled regex, if `v` is one.
fn as_regex_object(v: &Value) -> Option<Result<Regex, DbError>> {
    let m = v.as_object()?;
    let pattern = m.get("$regex")?;
    if m.keys().any(|k| k != "$regex" && k != "$options") {
        return None;
    }
    let options = match m.get("$options") {
        None => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Some(Err(cmd("`$options` needs a string"))),
    };
    Some(regex_operand(pattern, options))
}

fn in_list(op: &str, operand: &Value) -> Result<InList, DbError> {
    let items = operand
        .as_array()
        .ok_or_else(|| cmd(format!("`{op}` needs an array")))?;
    let mut list = InList {
        strings: Vec::new(),
        others: Vec::new(),
        regexes: Vec::new(),
        has_null: false,
    };
    for item in items {
        if let Some(re) = as_regex_object(item) {
            list.regexes.push(re?);
            continue;
        }
        match item {
            Value::String(s) => list.strings.push(s.clone()),
            _ if is_operator_object(item) => return Err(cmd(format!("`{op}` values cannot be operator objects"))),
            Value::Null => {
                list.has_null = true;
                list.others.push(Value::Null);
            }
            other => list.others.push(other.clone()),
        }
    }
    list.strings.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    list.strings.dedup();
    Ok(list)
}

/// One element of `$all`: `{$elemMatch: …}`, a regex, or a value.
fn all_item(item: &Value, depth: usize) -> Result<Test, DbError> {
    if let Some(re) = as_regex_object(item) {
        return Ok(Test::Regex(re?));
    }
    if let Some(m) = item.as_object() {
        if let (1, Some(q)) = (m.len(), m.get("$elemMatch")) {
            if !q.is_object() || as_date(q).is_some() {
                return Err(cmd("`$elemMatch` needs an object"));
            }
            return Ok(Test::ElemMatch(Box::new(ElementFilter::parse_at(q, depth + 1)?)));
        }
        if is_operator_object(item) {
            return Err(cmd("`$all` values cannot be operator objects other than `$elemMatch`"));
        }
    }
    Ok(Test::Eq(item.clone()))
}

fn modulo(operand: &Value) -> Result<Test, DbError> {
    const MSG: &str = "`$mod` needs an array [divisor, remainder] of numbers";
    let [d, r] = operand.as_array().map(Vec::as_slice).unwrap_or_default() else {
        return Err(cmd(MSG));
    };
    let int = |v: &Value| -> Option<i64> {
        let n = v.as_number()?;
        n.as_i64().or_else(|| {
            let f = n.as_f64()?.trunc();
            (f.abs() < 9.2e18).then_some(f as i64)
        })
    };
    let (d, r) = (int(d).ok_or_else(|| cmd(MSG))?, int(r).ok_or_else(|| cmd(MSG))?);
    if d == 0 {
        return Err(cmd("`$mod` divisor cannot be 0"));
    }
    Ok(Test::Mod(d, r))
}

fn regex_operand(pattern: &Value, options: &str) -> Result<Regex, DbError> {
    let pattern = pattern.as_str().ok_or_else(|| cmd("`$regex` needs a string"))?;
    compile_regex(pattern, options)
}

/// Compiles a MongoDB-style regex with options i, m, s, x (u and g are accepted and ignored). The
/// options become inline flags, so the compiled pattern says everything about what it matches (the
/// index planner reads a literal prefix off it).
pub(crate) fn compile_regex(pattern: &str, options: &str) -> Result<Regex, DbError> {
    let mut flags = String::new();
    for c in options.chars() {
        match c {
            'i' | 'm' | 's' | 'x' => {
                if !flags.contains(c) {
                    flags.push(c);
                }
            }
            // `u` is implied; `g` (from a JS RegExp's flags) means nothing for a match test
            'u' | 'g' => {}
            other => return Err(DbError::InvalidRegex(format!("unknown regex option `{other}`"))),
        }
    }
    let full = if flags.is_empty() {
        pattern.to_string()
    } else {
        format!("(?{flags}){pattern}")
    };
    let mut b = RegexBuilder::new(&full);
    b.size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(64);
    b.build().map_err(|e| {
        let mut msg = e.to_string();
        if msg.len() > 500 {
            let mut cut = 500;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
        }
        DbError::InvalidRegex(msg)
    })
}

fn bad_geometry(op: &str, e: String) -> DbError {
    DbError::InvalidGeometry(format!("`{op}`: {e}"))
}

/// `{$geometry: <GeoJSON>}`, the operand of `$geoIntersects` (and of `$geoWithin`, `$near`).
fn geometry_of(operand: &Value, op: &str) -> Result<Geometry, DbError> {
    let g = operand
        .as_object()
        .and_then(|m| m.get("$geometry"))
        .ok_or_else(|| cmd(format!("`{op}` needs {{\"$geometry\": <GeoJSON>}}")))?;
    Geometry::parse(g).map_err(|e| bad_geometry(op, e))
}

/// The operand of `$geoWithin`: `{$geometry: Polygon | MultiPolygon}` or
/// `{$centerSphere: [[lon, lat], radians]}`.
fn within(operand: &Value) -> Result<Within, DbError> {
    let m = operand.as_object().ok_or_else(|| {
        cmd("`$geoWithin` needs {\"$geometry\": <Polygon>} or {\"$centerSphere\": [[lon, lat], radians]}")
    })?;
    if m.contains_key("$geometry") {
        return geometry_of(operand, "$geoWithin")?
            .into_within()
            .map_err(|e| bad_geometry("$geoWithin", e));
    }
    if let Some(c) = m.get("$centerSphere") {
        const MSG: &str = "`$centerSphere` is [[longitude, latitude], radius in radians]";
        let [center, radius] = c.as_array().map(Vec::as_slice).unwrap_or_default() else {
            return Err(cmd(MSG));
        };
        let center = geo::position(center).map_err(|e| bad_geometry("$centerSphere", e))?;
        let radius = radius
            .as_f64()
            .filter(|r| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| cmd(format!("{MSG}: the radius is a non-negative number")))?;
        return Ok(Within::Cap { center, radius });
    }
    for legacy in ["$box", "$center", "$polygon"] {
        if m.contains_key(legacy) {
            return Err(DbError::NotSupported(format!(
                "`$geoWithin` `{legacy}` (flat legacy coordinates) is not supported: use `$geometry` or `$centerSphere`"
            )));
        }
    }
    Err(cmd(
        "`$geoWithin` needs {\"$geometry\": <Polygon>} or {\"$centerSphere\": [[lon, lat], radians]}",
    ))
}

/// `$near`/`$nearSphere`: `{$geometry: Point, $maxDistance, $minDistance}` (metres; the distances
/// may also stand beside the operator, as MongoDB allows).
fn near(op: &str, operand: &Value, siblings: &Map<String, Value>) -> Result<Near, DbError> {
    let Some(m) = operand.as_object().filter(|m| m.contains_key("$geometry")) else {
        if operand.is_array() {
            return Err(DbError::NotSupported(format!(
                "`{op}` with legacy coordinate pairs is not supported: use {{\"$geometry\": {{\"type\": \"Point\", \"coordinates\": [lon, lat]}}}}"
            )));
        }
        return Err(cmd(format!(
            "`{op}` needs {{\"$geometry\": {{\"type\": \"Point\", \"coordinates\": [lon, lat]}}, \"$maxDistance\": metres}}"
        )));
    };
    if let Some(k) = m
        .keys()
        .find(|k| !["$geometry", "$maxDistance", "$minDistance"].contains(&k.as_str()))
    {
        return Err(cmd(format!("unknown `{op}` field `{k}`")));
    }
    let center = geometry_of(operand, op)?
        .as_point()
        .ok_or_else(|| bad_geometry(op, "the `$geometry` must be a Point".into()))?;
    let distance = |key: &str| -> Result<Option<f64>, DbError> {
        match m.get(key).or_else(|| siblings.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|d| d.is_finite() && *d >= 0.0)
                .map(|d| Some(geo::metres_to_radians(d)))
                .ok_or_else(|| cmd(format!("`{key}` must be a non-negative number of metres"))),
        }
    };
    Ok(Near {
        center,
        min: distance("$minDistance")?.unwrap_or(0.0),
        max: distance("$maxDistance")?.unwrap_or(f64::INFINITY),
    })
}
