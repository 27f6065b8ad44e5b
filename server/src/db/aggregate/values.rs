//! Value helpers of the aggregation engine: "missing" versus null, numbers with MongoDB's int and
//! double rules, truthiness, type names, hashable group keys, memory estimates, and dot-path reads
//! and writes as aggregation expressions and stages see them.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::db::value::{as_date, compare};
use crate::db::DbError;

/// The result of evaluating an expression: `None` is a missing value (a field that does not
/// exist, `$$REMOVE`), which MongoDB keeps apart from null. Values read from the document are
/// borrowed; computed ones are owned.
pub(super) type Val<'a> = Option<Cow<'a, Value>>;

pub(super) fn cmd(msg: impl Into<String>) -> DbError {
    DbError::InvalidCommand(msg.into())
}

/// A number as the arithmetic operators see it: a 64-bit integer or a double.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Num {
    Int(i64),
    Double(f64),
}

impl Num {
    pub fn of(v: &Value) -> Option<Num> {
        match v {
            Value::Number(n) => Some(match n.as_i64() {
                Some(i) => Num::Int(i),
                None => Num::Double(n.as_f64().unwrap_or(0.0)),
            }),
            _ => None,
        }
    }

    pub fn f(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Double(f) => f,
        }
    }

    /// The JSON value; a non-finite double (which JSON cannot hold) is an error naming `op`.
    pub fn value(self, op: &str) -> Result<Value, DbError> {
        match self {
            Num::Int(i) => Ok(Value::from(i)),
            Num::Double(f) => double(op, f),
        }
    }

    pub fn is_zero(self) -> bool {
        self.f() == 0.0
    }

    /// The integer this number holds exactly, if any (`2.0` counts, `2.5` does not).
    pub fn exact_int(self) -> Option<i64> {
        match self {
            Num::Int(i) => Some(i),
            Num::Double(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
            Num::Double(_) => None,
        }
    }
}

/// An internal date value (`{"$date": ms}`).
pub(super) fn date(ms: i64) -> Value {
    let mut m = Map::with_capacity(1);
    m.insert("$date".into(), Value::from(ms));
    Value::Object(m)
}

/// A double as a JSON value, refusing NaN and infinities.
pub(super) fn double(op: &str, f: f64) -> Result<Value, DbError> {
    match Number::from_f64(f) {
        Some(n) if f.is_finite() => Ok(Value::Number(n)),
        _ => Err(cmd(format!(
            "`{op}` produced {}, which JSON cannot represent",
            if f.is_nan() { "NaN" } else { "an infinite number" }
        ))),
    }
}

/// a + b with MongoDB's promotion: integers stay integers until they overflow, then double.
pub(super) fn add(a: Num, b: Num) -> Num {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.checked_add(y).map_or(Num::Double(x as f64 + y as f64), Num::Int),
        _ => Num::Double(a.f() + b.f()),
    }
}

pub(super) fn sub(a: Num, b: Num) -> Num {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.checked_sub(y).map_or(Num::Double(x as f64 - y as f64), Num::Int),
        _ => Num::Double(a.f() - b.f()),
    }
}

pub(super) fn mul(a: Num, b: Num) -> Num {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.checked_mul(y).map_or(Num::Double(x as f64 * y as f64), Num::Int),
        _ => Num::Double(a.f() * b.f()),
    }
}

/// MongoDB's truthiness: false, null, missing and every numeric zero are false; all else is true
/// (including empty strings, arrays and objects).
pub(super) fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(_) => true,
    }
}

/// MongoDB's name of a value's type, for error messages and `$type`.
pub(super) fn type_name(v: Option<&Value>) -> &'static str {
    match v {
        None => "missing",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "bool",
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) if i32::try_from(i).is_ok() => "int",
            Some(_) => "long",
            None => "double",
        },
        Some(Value::String(_)) => "string",
        Some(Value::Array(_)) => "array",
        Some(v @ Value::Object(_)) if as_date(v).is_some() => "date",
        Some(Value::Object(_)) => "object",
    }
}

/// Expression comparison: MongoDB's cross-type order, with missing below null.
pub(super) fn compare_vals(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => compare(x, y),
    }
}

/// True for a plain object (not an internal date).
pub(super) fn is_doc(v: &Value) -> bool {
    matches!(v, Value::Object(_)) && as_date(v).is_none()
}

pub(super) fn as_doc(v: &Value) -> Option<&Map<String, Value>> {
    match v {
        Value::Object(m) if as_date(v).is_none() => Some(m),
        _ => None,
    }
}

pub(super) fn as_doc_mut(v: &mut Value) -> Option<&mut Map<String, Value>> {
    if as_date(v).is_some() {
        return None;
    }
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// A hashable key with the equality of `value::values_equal` (numbers by value, so `1` and `1.0`
/// are the same key; objects field by field in order), used for `$group` keys and sets.
pub(super) fn key_bytes(v: Option<&Value>, out: &mut Vec<u8>) {
    match v {
        None | Some(Value::Null) => out.push(b'n'),
        Some(Value::Bool(b)) => out.extend_from_slice(if *b { b"t" } else { b"f" }),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                out.push(b'i');
                out.extend_from_slice(&i.to_le_bytes());
            } else if let Some(u) = n.as_u64() {
                out.push(b'u');
                out.extend_from_slice(&u.to_le_bytes());
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                // 2^63: every integral double in [-2^63, 2^63) is an i64
                const TWO_63: f64 = 9_223_372_036_854_775_808.0;
                if f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f) {
                    out.push(b'i');
                    out.extend_from_slice(&(f as i64).to_le_bytes());
                } else if f.fract() == 0.0 && (0.0..2.0 * TWO_63).contains(&f) {
                    out.push(b'u');
                    out.extend_from_slice(&(f as u64).to_le_bytes());
                } else {
                    out.push(b'd');
                    out.extend_from_slice(&f.to_bits().to_le_bytes());
                }
            }
        }
        Some(Value::String(s)) => {
            out.push(b's');
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Some(Value::Array(items)) => {
            out.push(b'a');
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|i| key_bytes(Some(i), out));
        }
        Some(v @ Value::Object(m)) => {
            if let Some(ms) = as_date(v) {
                out.push(b'D');
                out.extend_from_slice(&ms.to_le_bytes());
                return;
            }
            out.push(b'o');
            out.extend_from_slice(&(m.len() as u64).to_le_bytes());
            for (k, val) in m {
                out.extend_from_slice(&(k.len() as u64).to_le_bytes());
                out.extend_from_slice(k.as_bytes());
                key_bytes(Some(val), out);
            }
        }
    }
}

pub(super) fn key_of(v: Option<&Value>) -> Vec<u8> {
    let mut out = Vec::new();
    key_bytes(v, &mut out);
    out
}

/// Bytes a value takes in memory (an estimate: the `Value` itself plus what it owns on the heap).
/// `$group`, `$sort` and the other buffering stages count what they hold with this.
pub(super) fn mem_size(v: &Value) -> usize {
    const VALUE: usize = std::mem::size_of::<Value>();
    VALUE + heap_size(v)
}

fn heap_size(v: &Value) -> usize {
    // per object entry: the key string, the value, the index map's hash and table slot
    const ENTRY: usize = 24 + std::mem::size_of::<Value>() + 8 + 16;
    // what the allocator adds to each allocation (header, rounding)
    const ALLOC: usize = 16;
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) if s.is_empty() => 0,
        Value::String(s) => s.len() + ALLOC,
        Value::Array(items) => ALLOC + items.iter().map(mem_size).sum::<usize>(),
        Value::Object(m) => {
            48 + 2 * ALLOC
                + m.iter()
                    .map(|(k, v)| ENTRY + k.len() + ALLOC + heap_size(v))
                    .sum::<usize>()
        }
    }
}

/// A field path of an expression (`$a.b.c`) on a value: objects are entered; an array yields
/// the array of what the rest of the path gives on each element (missing ones left out, nested
/// arrays kept nested). Numeric components name fields, never array positions.
pub(super) fn get_path<'a>(v: &'a Value, path: &[String]) -> Val<'a> {
    let Some((first, rest)) = path.split_first() else {
        return Some(Cow::Borrowed(v));
    };
    match v {
        Value::Object(m) if as_date(v).is_none() => get_path(m.get(first)?, rest),
        Value::Array(items) => Some(Cow::Owned(Value::Array(path_in_array(items, path)))),
        _ => None,
    }
}

fn path_in_array(items: &[Value], path: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::Array(inner) => out.push(Value::Array(path_in_array(inner, path))),
            Value::Object(_) if as_date(item).is_some() => {}
            Value::Object(_) => {
                if let Some(v) = get_path(item, path) {
                    out.push(v.into_owned());
                }
            }
            _ => {}
        }
    }
    out
}

/// A dot path through objects only (no array traversal), as `$unwind` reads its field.
pub(super) fn get_plain<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, seg| as_doc(cur)?.get(seg))
}

/// Sets a dot path through objects, creating (or replacing non-objects by) objects on the way.
pub(super) fn set_plain(doc: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = doc;
    for seg in parents {
        let slot = cur.entry(seg.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !is_doc(slot) {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        cur = next;
    }
    cur.insert(last.clone(), value);
}

/// Removes a dot path through objects; returns the removed value.
pub(super) fn remove_plain(doc: &mut Map<String, Value>, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut cur = doc;
    for seg in parents {
        cur = as_doc_mut(cur.get_mut(seg)?)?;
    }
    cur.shift_remove(last)
}

/// Splits and checks a field path written without its `$` (`a.b.c`).
pub(super) fn split_path(path: &str, what: &str) -> Result<Vec<String>, DbError> {
    if path.is_empty() {
        return Err(cmd(format!("{what}: a field path cannot be empty")));
    }
    let segs: Vec<String> = path.split('.').map(str::to_string).collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(cmd(format!("{what}: field path `{path}` has an empty component")));
    }
    if segs.iter().any(|s| s.starts_with('$')) {
        return Err(cmd(format!(
            "{what}: field path `{path}` has a component starting with `$`"
        )));
    }
    Ok(segs)
}

/// A JSON value shortened for an error message.
pub(super) fn shown(v: Option<&Value>) -> String {
    let Some(v) = v else { return "missing".into() };
    let mut s = v.to_string();
    if s.len() > 80 {
        let mut cut = 80;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
