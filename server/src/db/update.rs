//! Update specs of CloudBase's `updateDocument`: parsing `data` (MongoDB update operators mixed
//! with plain fields, or a whole replacement document) and applying it to one document.

mod array;
mod path;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

use self::array::{PullCond, Push};
use self::path::{blocked_error, crosses_array, lookup, parse_path, type_name, Lookup, Removed};
use crate::db::value::{self, as_date, compare, values_equal, DEFAULT_MAX_DEPTH};
use crate::db::DbError;

/// A compiled update.
pub struct Update {
    kind: Kind,
}

enum Kind {
    /// `set()`: the new document (without `_id` handling applied yet).
    Replace(Map<String, Value>),
    /// `update()`: operators sorted by path.
    Ops(Vec<Op>),
}

struct Op {
    name: &'static str,
    path: String,
    segs: Vec<String>,
    action: Action,
}

enum Action {
    Set(Value),
    Unset,
    Inc(Num),
    Mul(Num),
    Min(Value),
    Max(Value),
    Rename { to: String, to_segs: Vec<String> },
    Push(Push),
    AddToSet(Vec<Value>),
    Pop { first: bool },
    Pull(PullCond),
    PullAll(Vec<Value>),
    Bit(Vec<(BitOp, i64)>),
}

#[derive(Clone, Copy)]
enum BitOp {
    And,
    Or,
    Xor,
}

/// What an update changed in one document: dot paths set (with their new values) and dot paths
/// removed. Both empty means the document was not modified.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    pub updated_fields: Map<String, Value>,
    pub removed_fields: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.updated_fields.is_empty() && self.removed_fields.is_empty()
    }
}

impl fmt::Debug for Update {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Replace(doc) => f.debug_tuple("Update::Replace").field(doc).finish(),
            Kind::Ops(ops) => f
                .debug_list()
                .entries(ops.iter().map(|op| format!("{} {}", op.name, op.path)))
                .finish(),
        }
    }
}

const OPERATORS: &[&str] = &[
    "$set",
    "$unset",
    "$inc",
    "$mul",
    "$min",
    "$max",
    "$rename",
    "$push",
    "$addToSet",
    "$pop",
    "$pull",
    "$pullAll",
    "$bit",
];

impl Update {
    /// Compiles the normalized `data` of `updateDocument`. `merge == true` is `update()`
    /// (operators and plain fields), `merge == false` is `set()` (a replacement document).
    /// Nothing is applied anywhere when this fails.
    pub fn parse(data: &Value, merge: bool) -> Result<Update, DbError> {
        let Value::Object(obj) = data else {
            return Err(DbError::InvalidParam(format!(
                "update data must be an object, got {}",
                type_name(data)
            )));
        };
        if !merge {
            return parse_replacement(obj);
        }
        if obj.is_empty() {
            return Err(DbError::InvalidParam("update data is empty: nothing to update".into()));
        }
        let mut ops = Vec::new();
        for (key, val) in obj {
            if key.starts_with('$') {
                let Some(name) = OPERATORS.iter().copied().find(|n| *n == key) else {
                    return Err(DbError::InvalidCommand(format!("unknown update operator `{key}`")));
                };
                let Value::Object(fields) = val else {
                    return Err(DbError::InvalidCommand(format!(
                        "`{name}` needs an object of field paths, got {}",
                        type_name(val)
                    )));
                };
                for (p, operand) in fields {
                    ops.push(make_op(name, p, operand)?);
                }
            } else {
                flatten_plain(key.clone(), val, &mut ops)?;
            }
        }
        if ops.is_empty() {
            return Err(DbError::InvalidParam("update data has no fields to update".into()));
        }
        check_conflicts(&ops)?;
        ops.sort_by(|a, b| a.segs.cmp(&b.segs));
        Ok(Update { kind: Kind::Ops(ops) })
    }

    pub fn is_replacement(&self) -> bool {
        matches!(self.kind, Kind::Replace(_))
    }

    /// Applies the update to one document. All or nothing: on `Err`, `doc` is unchanged.
    pub fn apply(&self, doc: &mut Map<String, Value>) -> Result<Changes, DbError> {
        match &self.kind {
            Kind::Replace(repl) => apply_replacement(doc, repl),
            Kind::Ops(ops) => {
                let mut work = doc.clone();
                let mut changes = Changes::default();
                for op in ops {
                    apply_op(&mut work, op, &mut changes)?;
                }
                if !changes.is_empty() {
                    *doc = work;
                }
                Ok(changes)
            }
        }
    }
}

/// Sets `value` at a dot path, creating intermediate objects; numeric segments index existing
/// arrays (padding with null). Used to seed upserted documents from query equality fields.
pub fn set_path(doc: &mut Map<String, Value>, path: &str, value: Value) -> Result<(), DbError> {
    let segs = parse_path(path)?;
    let mut work = doc.clone();
    path::set_segs(&mut work, &segs, path, value)?;
    *doc = work;
    Ok(())
}

fn parse_replacement(obj: &Map<String, Value>) -> Result<Update, DbError> {
    if obj.keys().any(|k| k.starts_with('$')) {
        return Err(DbError::InvalidCommand(
            "update operators are not allowed in set()".into(),
        ));
    }
    value::validate_document(&Value::Object(obj.clone()), DEFAULT_MAX_DEPTH)?;
    Ok(Update {
        kind: Kind::Replace(obj.clone()),
    })
}

/// A plain `update()` field: nested plain objects become dot paths, as the CloudBase client does;
/// dates, GeoJSON, empty objects, `$`-keyed objects and non-objects are set whole.
fn flatten_plain(path: String, val: &Value, ops: &mut Vec<Op>) -> Result<(), DbError> {
    match val {
        Value::Object(m) if !m.is_empty() && !is_atomic_object(val, m) => {
            for (k, v) in m {
                flatten_plain(format!("{path}.{k}"), v, ops)?;
            }
            Ok(())
        }
        _ => {
            ops.push(make_op("$set", &path, val)?);
            Ok(())
        }
    }
}

fn is_atomic_object(val: &Value, m: &Map<String, Value>) -> bool {
    as_date(val).is_some()
        || m.keys().any(|k| k.starts_with('$'))
        || (m.get("type").is_some_and(Value::is_string)
            && (m.contains_key("coordinates") || m.contains_key("geometries")))
}

fn make_op(name: &'static str, p: &str, operand: &Value) -> Result<Op, DbError> {
    let segs = parse_path(p)?;
    check_not_id(&segs)?;
    let action = parse_action(name, p, &segs, operand)?;
    Ok(Op {
        name,
        path: p.to_string(),
        segs,
        action,
    })
}

fn check_not_id(segs: &[String]) -> Result<(), DbError> {
    if segs.first().is_some_and(|s| s == "_id") {
        return Err(DbError::InvalidCommand("_id cannot be updated".into()));
    }
    Ok(())
}

fn bad_operand(name: &str, path: &str, why: impl fmt::Display) -> DbError {
    DbError::InvalidCommand(format!("`{name}` on `{path}`: {why}"))
}

/// Checks a value about to be stored at `segs` (field names, and depth once in place);
/// `in_array` when it becomes an element of the array at `segs`.
fn check_value(segs: &[String], v: &Value, in_array: bool) -> Result<(), DbError> {
    let mut wrapper = Map::with_capacity(1);
    wrapper.insert("v".into(), v.clone());
    // `v` sits at depth 2 in the wrapper and at depth segs.len() + 1 (+1 in an array) in place
    let above = segs.len() + usize::from(in_array);
    let max = (DEFAULT_MAX_DEPTH + 1).saturating_sub(above).max(1);
    value::validate_document(&Value::Object(wrapper), max)
}

fn parse_action(name: &str, p: &str, segs: &[String], operand: &Value) -> Result<Action, DbError> {
    let number = |operand: &Value| {
        Num::of(operand).ok_or_else(|| bad_operand(name, p, format!("needs a number, got {}", type_name(operand))))
    };
    Ok(match name {
        "$set" => {
            check_value(segs, operand, false)?;
            Action::Set(operand.clone())
        }
        "$unset" => Action::Unset,
        "$inc" => Action::Inc(number(operand)?),
        "$mul" => Action::Mul(number(operand)?),
        "$min" | "$max" => {
            check_value(segs, operand, false)?;
            if name == "$min" {
                Action::Min(operand.clone())
            } else {
                Action::Max(operand.clone())
            }
        }
        "$rename" => {
            let Value::String(to) = operand else {
                return Err(bad_operand(
                    name,
                    p,
                    format!("the new name must be a string, got {}", type_name(operand)),
                ));
            };
            let to_segs = parse_path(to)?;
            check_not_id(&to_segs)?;
            if to_segs == segs {
                return Err(bad_operand(name, p, "the new name is the same as the old one"));
            }
            Action::Rename {
                to: to.clone(),
                to_segs,
            }
        }
        "$push" => {
            let push = Push::parse(p, operand)?;
            for v in push.values() {
                check_value(segs, v, true)?;
            }
            Action::Push(push)
        }
        "$addToSet" => {
            let values = array::parse_add_to_set(p, operand)?;
            for v in &values {
                check_value(segs, v, true)?;
            }
            Action::AddToSet(values)
        }
        "$pop" => Action::Pop {
            first: array::parse_pop(p, operand)?,
        },
        "$pull" => Action::Pull(PullCond::parse(operand)?),
        "$pullAll" => Action::PullAll(array::parse_pull_all(p, operand)?),
        "$bit" => Action::Bit(parse_bit(p, operand)?),
        other => return Err(DbError::InvalidCommand(format!("unknown update operator `{other}`"))),
    })
}

fn parse_bit(p: &str, operand: &Value) -> Result<Vec<(BitOp, i64)>, DbError> {
    let Value::Object(m) = operand else {
        return Err(bad_operand("$bit", p, "needs {and|or|xor: integer}"));
    };
    if m.is_empty() {
        return Err(bad_operand("$bit", p, "needs {and|or|xor: integer}"));
    }
    let mut out = Vec::with_capacity(m.len());
    for (k, v) in m {
        let op = match k.as_str() {
            "and" => BitOp::And,
            "or" => BitOp::Or,
            "xor" => BitOp::Xor,
            other => return Err(bad_operand("$bit", p, format!("unknown bitwise operation `{other}`"))),
        };
        let Some(n) = v.as_i64() else {
            return Err(bad_operand("$bit", p, format!("`{k}` needs an integer")));
        };
        out.push((op, n));
    }
    Ok(out)
}

/// MongoDB's rule: no two operators may touch the same path or a path and its prefix.
fn check_conflicts(ops: &[Op]) -> Result<(), DbError> {
    let mut paths: Vec<(&[String], &str)> = Vec::with_capacity(ops.len());
    for op in ops {
        paths.push((&op.segs, &op.path));
        if let Action::Rename { to, to_segs } = &op.action {
            paths.push((to_segs, to));
        }
    }
    paths.sort_by(|a, b| a.0.cmp(b.0));
    for pair in paths.windows(2) {
        if let [(a, a_path), (b, b_path)] = pair {
            if b.starts_with(a) {
                return Err(DbError::InvalidCommand(if a.len() == b.len() {
                    format!("`{a_path}` is updated twice in one update")
                } else {
                    format!("updating `{b_path}` would conflict with updating `{a_path}`")
                }));
            }
        }
    }
    Ok(())
}

fn apply_replacement(doc: &mut Map<String, Value>, repl: &Map<String, Value>) -> Result<Changes, DbError> {
    let mut out = Map::with_capacity(repl.len() + 1);
    match (doc.get("_id"), repl.get("_id")) {
        (Some(old), Some(new)) if !values_equal(old, new) => {
            return Err(DbError::InvalidCommand("_id cannot be updated".into()));
        }
        (Some(id), _) | (None, Some(id)) => {
            out.insert("_id".into(), id.clone());
        }
        (None, None) => {}
    }
    for (k, v) in repl {
        if k != "_id" {
            out.insert(k.clone(), v.clone());
        }
    }
    let mut changes = Changes::default();
    for (k, v) in &out {
        if doc.get(k) != Some(v) {
            changes.updated_fields.insert(k.clone(), v.clone());
        }
    }
    changes.removed_fields = doc.keys().filter(|k| !out.contains_key(*k)).cloned().collect();
    if !changes.is_empty() {
        *doc = out;
    }
    Ok(changes)
}

fn apply_op(doc: &mut Map<String, Value>, op: &Op, changes: &mut Changes) -> Result<(), DbError> {
    match &op.action {
        Action::Unset => {
            match path::remove_segs(doc, &op.segs) {
                Removed::Field => changes.removed_fields.push(op.path.clone()),
                Removed::Nulled => {
                    changes.updated_fields.insert(op.path.clone(), Value::Null);
                }
                Removed::Nothing => {}
            }
            return Ok(());
        }
        Action::Rename { to, to_segs } => return rename(doc, op, to, to_segs, changes),
        _ => {}
    }
    let new = match lookup(doc, &op.segs) {
        Lookup::Found(cur) => match compute(op, Some(cur))? {
            Some(new) if new != *cur => new,
            _ => return Ok(()),
        },
        Lookup::Missing => match compute(op, None)? {
            Some(new) => new,
            None => return Ok(()),
        },
        Lookup::Blocked { prefix, holds } => {
            if matches!(op.action, Action::Pop { .. } | Action::Pull(_) | Action::PullAll(_)) {
                return Ok(());
            }
            return Err(blocked_error(&op.path, &prefix, holds));
        }
    };
    path::set_segs(doc, &op.segs, &op.path, new.clone())?;
    changes.updated_fields.insert(op.path.clone(), new);
    Ok(())
}

fn rename(
    doc: &mut Map<String, Value>,
    op: &Op,
    to: &str,
    to_segs: &[String],
    changes: &mut Changes,
) -> Result<(), DbError> {
    if crosses_array(doc, &op.segs) {
        return Err(bad_operand(
            "$rename",
            &op.path,
            "the source field may not be inside an array",
        ));
    }
    if crosses_array(doc, to_segs) {
        return Err(bad_operand(
            "$rename",
            &op.path,
            "the new name may not be inside an array",
        ));
    }
    let value = match lookup(doc, &op.segs) {
        Lookup::Found(v) => v.clone(),
        Lookup::Missing | Lookup::Blocked { .. } => return Ok(()),
    };
    path::remove_segs(doc, &op.segs);
    path::set_segs(doc, to_segs, to, value.clone())?;
    changes.removed_fields.push(op.path.clone());
    changes.updated_fields.insert(to.to_string(), value);
    Ok(())
}

fn overflow(name: &str, path: &str) -> DbError {
    bad_operand(name, path, "integer overflow (the result does not fit in 64 bits)")
}

fn not_a(name: &str, path: &str, cur: &Value, want: &str) -> DbError {
    let holds = type_name(cur);
    DbError::InvalidCommand(format!(
        "`{name}` cannot be applied to `{path}`: it holds {} {holds}, not {want}",
        path::article(holds)
    ))
}

/// The new value of the op's field given its current value; `None` = leave it alone.
fn compute(op: &Op, cur: Option<&Value>) -> Result<Option<Value>, DbError> {
    let (name, p) = (op.name, op.path.as_str());
    let number = |c: &Value| Num::of(c).ok_or_else(|| not_a(name, p, c, "a number"));
    let new = match (&op.action, cur) {
        // handled by apply_op itself
        (Action::Unset | Action::Rename { .. }, _) => return Ok(None),
        (Action::Set(v), _) => v.clone(),
        (Action::Inc(n), None) => n.to_value(name, p)?,
        (Action::Inc(n), Some(c)) => number(c)?.add(*n).ok_or_else(|| overflow(name, p))?.to_value(name, p)?,
        (Action::Mul(n), None) => n.zero().to_value(name, p)?,
        (Action::Mul(n), Some(c)) => number(c)?.mul(*n).ok_or_else(|| overflow(name, p))?.to_value(name, p)?,
        (Action::Min(v), Some(c)) if compare(v, c) != Ordering::Less => return Ok(None),
        (Action::Max(v), Some(c)) if compare(v, c) != Ordering::Greater => return Ok(None),
        (Action::Min(v) | Action::Max(v), _) => v.clone(),
        (Action::Bit(ops), cur) => {
            let mut acc = match cur {
                None => 0,
                Some(c) => match Num::of(c) {
                    Some(Num::Int(i)) => i,
                    _ => return Err(not_a(name, p, c, "an integer")),
                },
            };
            for (op, n) in ops {
                acc = match op {
                    BitOp::And => acc & n,
                    BitOp::Or => acc | n,
                    BitOp::Xor => acc ^ n,
                };
            }
            Value::from(acc)
        }
        (Action::Pop { .. } | Action::Pull(_) | Action::PullAll(_), None) => return Ok(None),
        (_, Some(c)) if !c.is_array() => return Err(not_a(name, p, c, "an array")),
        (action, cur) => {
            let arr: &[Value] = match cur {
                Some(Value::Array(a)) => a,
                _ => &[],
            };
            Value::Array(match action {
                Action::Push(push) => push.apply(arr),
                Action::AddToSet(values) => array::add_to_set(arr, values),
                Action::Pop { first } => match array::pop(arr, *first) {
                    Some(a) => a,
                    None => return Ok(None),
                },
                Action::Pull(cond) => array::pull(arr, cond),
                Action::PullAll(values) => array::pull_all(arr, values),
                _ => return Ok(None),
            })
        }
    };
    Ok(Some(new))
}

/// A number operand or field: integers stay integers (checked), anything else is a float.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn of(v: &Value) -> Option<Num> {
        let n = v.as_number()?;
        match n.as_i64() {
            Some(i) => Some(Num::Int(i)),
            None => n.as_f64().map(Num::Float),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn zero(self) -> Num {
        match self {
            Num::Int(_) => Num::Int(0),
            Num::Float(_) => Num::Float(0.0),
        }
    }

    /// `None` inside means an integer overflow.
    fn add(self, other: Num) -> Option<Num> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.checked_add(b).map(Num::Int),
            (a, b) => Some(Num::Float(a.as_f64() + b.as_f64())),
        }
    }

    fn mul(self, other: Num) -> Option<Num> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.checked_mul(b).map(Num::Int),
            (a, b) => Some(Num::Float(a.as_f64() * b.as_f64())),
        }
    }

    fn to_value(self, name: &str, path: &str) -> Result<Value, DbError> {
        match self {
            Num::Int(i) => Ok(Value::from(i)),
            Num::Float(f) => serde_json::Number::from_f64(f)
                .filter(|_| f.is_finite())
                .map(Value::Number)
                .ok_or_else(|| bad_operand(name, path, "the result is not a finite number")),
        }
    }
}
