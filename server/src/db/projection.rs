//! `.field()` projections: parsing `{f: 1|0|true|false | {$slice} | {$elemMatch}}` (MongoDB's
//! rules) and shaping result documents with them.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::db::query::ElementFilter;
use crate::db::value::{self, DEFAULT_MAX_DEPTH};
use crate::db::DbError;

/// A compiled projection.
pub struct Projection {
    /// Top-level tree of the projected paths; empty = whole document.
    tree: Tree,
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Only the listed fields (and `_id` unless excluded).
    Include,
    /// Everything but the excluded fields (also used when only `$slice`s are given).
    Exclude,
}

type Tree = BTreeMap<String, Node>;

enum Node {
    Include,
    Exclude,
    Slice { skip: i64, limit: Option<i64> },
    ElemMatch(ElementFilter),
    Inner(Tree),
}

impl fmt::Debug for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Projection")
            .field("mode", &self.mode)
            .field("fields", &self.tree.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Projection {
    /// Compiles a `.field()` spec. Values: truthy/falsy numbers or booleans, `{$slice: n}`,
    /// `{$slice: [skip, n]}`, `{$elemMatch: cond}`, or a nested object of such (= dot paths).
    pub fn parse(spec: &Value) -> Result<Projection, DbError> {
        // GET query strings carry canonical EJSON ({"$numberInt": "2"}); normalizing is idempotent
        let spec = value::normalize(spec.clone(), 0, DEFAULT_MAX_DEPTH)?;
        let obj = match &spec {
            Value::Null => return Ok(Projection::identity()),
            Value::Object(m) => m,
            other => {
                return Err(DbError::InvalidParam(format!(
                    "projection must be an object, got {}",
                    kind(other)
                )))
            }
        };
        let mut leaves = Vec::new();
        flatten(String::new(), obj, &mut leaves)?;
        let mut tree = Tree::new();
        let (mut inc, mut exc, mut id_explicit) = (false, false, None);
        for (path, node) in leaves {
            if path == "_id" {
                id_explicit = Some(matches!(node, Node::Include));
            } else {
                match node {
                    Node::Include | Node::ElemMatch(_) => inc = true,
                    Node::Exclude => exc = true,
                    _ => {}
                }
            }
            insert(&mut tree, &path, node)?;
        }
        if inc && exc {
            return Err(DbError::InvalidParam(
                "a projection cannot mix included and excluded fields (except `_id: 0`)".into(),
            ));
        }
        let mode = if inc || (!exc && id_explicit == Some(true)) {
            Mode::Include
        } else {
            Mode::Exclude
        };
        if mode == Mode::Include && id_explicit.is_none() {
            tree.insert("_id".into(), Node::Include);
        }
        Ok(Projection { tree, mode })
    }

    fn identity() -> Projection {
        Projection {
            tree: Tree::new(),
            mode: Mode::Exclude,
        }
    }

    /// True when the projection returns whole documents.
    pub fn is_identity(&self) -> bool {
        self.tree.is_empty()
    }

    pub fn apply(&self, doc: &Value) -> Value {
        let Value::Object(m) = doc else {
            return doc.clone();
        };
        if self.tree.is_empty() {
            return doc.clone();
        }
        Value::Object(match self.mode {
            Mode::Include => include(m, &self.tree),
            Mode::Exclude => {
                let mut out = m.clone();
                exclude(&mut out, &self.tree);
                out
            }
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Turns the spec into (dot path, leaf) pairs; nested plain objects are dot paths.
fn flatten(prefix: String, obj: &Map<String, Value>, out: &mut Vec<(String, Node)>) -> Result<(), DbError> {
    for (key, v) in obj {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        check_path(&path)?;
        let node = match v {
            Value::Bool(b) => {
                if *b {
                    Node::Include
                } else {
                    Node::Exclude
                }
            }
            Value::Number(n) => {
                if n.as_f64().is_some_and(|f| f != 0.0) {
                    Node::Include
                } else {
                    Node::Exclude
                }
            }
            Value::Object(m) if m.keys().any(|k| k.starts_with('$')) => operator(&path, m)?,
            Value::Object(m) if m.is_empty() => {
                return Err(DbError::InvalidParam(format!(
                    "projection of `{path}` is an empty object"
                )))
            }
            Value::Object(m) => {
                flatten(path, m, out)?;
                continue;
            }
            other => {
                return Err(DbError::InvalidParam(format!(
                    "projection of `{path}` must be 1, 0, true, false, $slice or $elemMatch, got {}",
                    kind(other)
                )))
            }
        };
        out.push((path, node));
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), DbError> {
    let segs: Vec<&str> = path.split('.').collect();
    if segs.len() > DEFAULT_MAX_DEPTH {
        return Err(DbError::NestingTooDeep(DEFAULT_MAX_DEPTH));
    }
    for seg in segs {
        if seg.is_empty() || seg.starts_with('$') || seg.contains('\0') {
            return Err(DbError::InvalidName(format!(
                "invalid projection path `{path}` (empty segment, or a segment starting with `$`; \
                 positional projection is not supported)"
            )));
        }
    }
    Ok(())
}

fn int_of(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.0e18).then_some(f as i64)
}

fn operator(path: &str, m: &Map<String, Value>) -> Result<Node, DbError> {
    if m.len() != 1 {
        return Err(DbError::InvalidCommand(format!(
            "projection of `{path}` must hold exactly one operator ($slice or $elemMatch)"
        )));
    }
    let Some((op, arg)) = m.iter().next() else {
        return Err(DbError::InvalidCommand(format!("projection of `{path}` is empty")));
    };
    match op.as_str() {
        "$slice" => {
            let bad = || {
                DbError::InvalidCommand(format!(
                    "`$slice` on `{path}` needs an integer or [skip, limit] with a positive limit"
                ))
            };
            match arg {
                Value::Array(pair) => match pair.as_slice() {
                    [skip, limit] => {
                        let skip = int_of(skip).ok_or_else(bad)?;
                        let limit = int_of(limit).filter(|l| *l > 0).ok_or_else(bad)?;
                        Ok(Node::Slice {
                            skip,
                            limit: Some(limit),
                        })
                    }
                    _ => Err(bad()),
                },
                other => Ok(Node::Slice {
                    skip: int_of(other).ok_or_else(bad)?,
                    limit: None,
                }),
            }
        }
        "$elemMatch" => {
            if path.contains('.') {
                return Err(DbError::InvalidParam(format!(
                    "`$elemMatch` projection is not allowed on the nested field `{path}`"
                )));
            }
            if !arg.is_object() {
                return Err(DbError::InvalidCommand(format!(
                    "`$elemMatch` on `{path}` needs an object"
                )));
            }
            Ok(Node::ElemMatch(ElementFilter::parse(arg)?))
        }
        other => Err(DbError::InvalidCommand(format!(
            "unknown projection operator `{other}`"
        ))),
    }
}

fn collision(path: &str) -> DbError {
    DbError::InvalidParam(format!("projection path `{path}` collides with another projected path"))
}

fn insert(tree: &mut Tree, path: &str, node: Node) -> Result<(), DbError> {
    let mut segs = path.split('.').peekable();
    let mut cur = tree;
    while let Some(seg) = segs.next() {
        if segs.peek().is_none() {
            if cur.contains_key(seg) {
                return Err(collision(path));
            }
            cur.insert(seg.to_string(), node);
            return Ok(());
        }
        let entry = cur.entry(seg.to_string()).or_insert_with(|| Node::Inner(Tree::new()));
        cur = match entry {
            Node::Inner(sub) => sub,
            _ => return Err(collision(path)),
        };
    }
    Ok(())
}

/// `$slice` on an array value; other values are returned as they are.
fn slice(v: &Value, skip: i64, limit: Option<i64>) -> Value {
    let Value::Array(a) = v else {
        return v.clone();
    };
    let len = i64::try_from(a.len()).unwrap_or(i64::MAX);
    let (from, count) = match limit {
        None if skip >= 0 => (0, skip),
        None => ((len + skip).max(0), len),
        Some(l) if skip >= 0 => (skip.min(len), l),
        Some(l) => ((len + skip).max(0), l),
    };
    let from = usize::try_from(from).unwrap_or(a.len()).min(a.len());
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    Value::Array(a.iter().skip(from).take(count).cloned().collect())
}

/// Inclusion: the listed fields of `obj`, in document order.
fn include(obj: &Map<String, Value>, tree: &Tree) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in obj {
        let Some(node) = tree.get(k) else { continue };
        match node {
            Node::Include | Node::Exclude => {
                // `_id: 0` is the only exclusion an inclusion projection holds
                if matches!(node, Node::Include) {
                    out.insert(k.clone(), v.clone());
                }
            }
            Node::Slice { skip, limit } => {
                out.insert(k.clone(), slice(v, *skip, *limit));
            }
            Node::ElemMatch(f) => {
                if let Value::Array(a) = v {
                    if let Some(first) = a.iter().find(|e| f.matches(e)) {
                        out.insert(k.clone(), Value::Array(vec![first.clone()]));
                    }
                }
            }
            Node::Inner(sub) => match v {
                Value::Object(m) => {
                    out.insert(k.clone(), Value::Object(include(m, sub)));
                }
                Value::Array(a) => {
                    out.insert(k.clone(), Value::Array(include_array(a, sub)));
                }
                _ => {}
            },
        }
    }
    out
}

/// Sub-field inclusion through an array: documents are projected, nested arrays recursed,
/// scalars dropped (MongoDB).
fn include_array(a: &[Value], sub: &Tree) -> Vec<Value> {
    a.iter()
        .filter_map(|e| match e {
            Value::Object(m) => Some(Value::Object(include(m, sub))),
            Value::Array(inner) => Some(Value::Array(include_array(inner, sub))),
            _ => None,
        })
        .collect()
}

/// Exclusion (and `$slice`s) in place.
fn exclude(obj: &mut Map<String, Value>, tree: &Tree) {
    for (k, node) in tree {
        match node {
            Node::Exclude => {
                obj.shift_remove(k);
            }
            Node::Include | Node::ElemMatch(_) => {}
            Node::Slice { skip, limit } => {
                if let Some(v) = obj.get_mut(k) {
                    *v = slice(v, *skip, *limit);
                }
            }
            Node::Inner(sub) => {
                if let Some(v) = obj.get_mut(k) {
                    exclude_value(v, sub);
                }
            }
        }
    }
}

fn exclude_value(v: &mut Value, sub: &Tree) {
    match v {
        Value::Object(m) => exclude(m, sub),
        Value::Array(a) => a.iter_mut().for_each(|e| exclude_value(e, sub)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
