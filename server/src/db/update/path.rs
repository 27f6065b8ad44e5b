//! Dot-path parsing and the read / create-on-write / remove walks used by update operators.

use serde_json::{Map, Value};

use crate::db::value::DEFAULT_MAX_DEPTH;
use crate::db::DbError;

/// Longest field name, as `value::validate_document` enforces for stored documents.
const MAX_KEY_BYTES: usize = 128;

/// Highest array index an update may create by padding with nulls.
pub(super) const MAX_ARRAY_INDEX: usize = 100_000;

/// Splits and checks a dot path: no empty segment, no segment starting with `$`, no NUL byte,
/// at most [`DEFAULT_MAX_DEPTH`] segments.
pub(super) fn parse_path(path: &str) -> Result<Vec<String>, DbError> {
    if path.is_empty() {
        return Err(DbError::InvalidName("a field path may not be empty".into()));
    }
    let segs: Vec<String> = path.split('.').map(str::to_string).collect();
    if segs.len() > DEFAULT_MAX_DEPTH {
        return Err(DbError::NestingTooDeep(DEFAULT_MAX_DEPTH));
    }
    for seg in &segs {
        if seg.is_empty() {
            return Err(DbError::InvalidName(format!(
                "field path `{path}` has an empty segment"
            )));
        }
        if seg.starts_with('$') {
            return Err(DbError::InvalidName(format!(
                "field path `{path}`: segment `{seg}` may not start with `$` \
                 (positional operators are not supported)"
            )));
        }
        if seg.len() > MAX_KEY_BYTES {
            return Err(DbError::InvalidName(format!(
                "field path `{path}`: field names must be at most {MAX_KEY_BYTES} bytes"
            )));
        }
        if seg.contains('\0') {
            return Err(DbError::InvalidName(format!(
                "field path `{path}` contains a NUL character"
            )));
        }
    }
    Ok(segs)
}

/// A segment used as an array index: ASCII digits only.
fn array_index(seg: &str) -> Option<usize> {
    if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // too many digits to parse is simply "too large"
    Some(seg.parse::<usize>().unwrap_or(usize::MAX))
}

/// Short name of a JSON value's type for error messages.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) if crate::db::value::as_date(v).is_some() => "date",
        Value::Object(_) => "object",
    }
}

/// Result of reading a path.
pub(super) enum Lookup<'a> {
    Found(&'a Value),
    Missing,
    /// The walk hit a value that cannot hold the next segment (a scalar, null, or an array
    /// addressed by a non-numeric segment); `prefix` is the path of that value.
    Blocked {
        prefix: String,
        holds: &'static str,
    },
}

pub(super) fn lookup<'a>(doc: &'a Map<String, Value>, segs: &[String]) -> Lookup<'a> {
    let Some((first, rest)) = segs.split_first() else {
        return Lookup::Missing;
    };
    let Some(mut cur) = doc.get(first) else {
        return Lookup::Missing;
    };
    for (i, seg) in rest.iter().enumerate() {
        let next = match cur {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => match array_index(seg) {
                Some(idx) => a.get(idx),
                None => return blocked(segs, i + 1, cur),
            },
            other => return blocked(segs, i + 1, other),
        };
        match next {
            Some(v) => cur = v,
            None => return Lookup::Missing,
        }
    }
    Lookup::Found(cur)
}

fn blocked<'a>(segs: &[String], upto: usize, at: &Value) -> Lookup<'a> {
    Lookup::Blocked {
        prefix: segs[..upto.min(segs.len())].join("."),
        holds: type_name(at),
    }
}

/// True when some proper prefix of the path resolves to an array.
pub(super) fn crosses_array(doc: &Map<String, Value>, segs: &[String]) -> bool {
    let Some((first, rest)) = segs.split_first() else {
        return false;
    };
    let mut cur = doc.get(first);
    for seg in rest {
        cur = match cur {
            Some(Value::Array(_)) => return true,
            Some(Value::Object(m)) => m.get(seg),
            _ => return false,
        };
    }
    false
}

pub(super) fn blocked_error(path: &str, prefix: &str, holds: &str) -> DbError {
    DbError::InvalidCommand(format!(
        "cannot set `{path}`: `{prefix}` holds {} {holds}, not an object",
        article(holds)
    ))
}

pub(super) fn article(word: &str) -> &'static str {
    match word.as_bytes().first() {
        Some(b'a' | b'e' | b'i' | b'o' | b'u') => "an",
        _ => "a",
    }
}

/// Sets `value` at `segs`, creating missing intermediate objects; numeric segments index
/// existing arrays, padding with null up to [`MAX_ARRAY_INDEX`].
pub(super) fn set_segs(doc: &mut Map<String, Value>, segs: &[String], path: &str, value: Value) -> Result<(), DbError> {
    let Some((first, rest)) = segs.split_first() else {
        return Err(DbError::InvalidName("a field path may not be empty".into()));
    };
    if rest.is_empty() {
        doc.insert(first.clone(), value);
        return Ok(());
    }
    let child = doc.entry(first.clone()).or_insert_with(|| Value::Object(Map::new()));
    set_in(child, segs, 1, path, value)
}

/// `cur` is the value at `segs[..at]`; sets `segs[at..]` inside it.
fn set_in(cur: &mut Value, segs: &[String], at: usize, path: &str, value: Value) -> Result<(), DbError> {
    let Some(seg) = segs.get(at) else {
        *cur = value;
        return Ok(());
    };
    let last = at + 1 == segs.len();
    match cur {
        Value::Object(m) => {
            if last {
                m.insert(seg.clone(), value);
                return Ok(());
            }
            let child = m.entry(seg.clone()).or_insert_with(|| Value::Object(Map::new()));
            set_in(child, segs, at + 1, path, value)
        }
        Value::Array(a) => {
            let Some(idx) = array_index(seg) else {
                return Err(DbError::InvalidCommand(format!(
                    "cannot set `{path}`: `{}` is an array and `{seg}` is not an index",
                    segs[..at].join(".")
                )));
            };
            if idx >= a.len() {
                if idx > MAX_ARRAY_INDEX {
                    return Err(DbError::InvalidCommand(format!(
                        "cannot set `{path}`: array index {seg} is larger than {MAX_ARRAY_INDEX}"
                    )));
                }
                a.resize(idx, Value::Null);
                if last {
                    a.push(value);
                    return Ok(());
                }
                a.push(Value::Object(Map::new()));
                return match a.last_mut() {
                    Some(child) => set_in(child, segs, at + 1, path, value),
                    None => Ok(()),
                };
            }
            match a.get_mut(idx) {
                Some(slot) if last => {
                    *slot = value;
                    Ok(())
                }
                Some(slot) => set_in(slot, segs, at + 1, path, value),
                None => Ok(()),
            }
        }
        other => Err(blocked_error(path, &segs[..at].join("."), type_name(other))),
    }
}

/// What [`remove_segs`] did.
#[derive(Debug, PartialEq)]
pub(super) enum Removed {
    Nothing,
    /// An object field was removed.
    Field,
    /// An array element was set to null (MongoDB's `$unset` on an index).
    Nulled,
}

/// Removes the value at `segs` if it exists; walks only through existing values.
pub(super) fn remove_segs(doc: &mut Map<String, Value>, segs: &[String]) -> Removed {
    let Some((last, parents)) = segs.split_last() else {
        return Removed::Nothing;
    };
    let Some((first, mids)) = parents.split_first() else {
        return match doc.shift_remove(last) {
            Some(_) => Removed::Field,
            None => Removed::Nothing,
        };
    };
    let mut cur = match doc.get_mut(first) {
        Some(v) => v,
        None => return Removed::Nothing,
    };
    for seg in mids {
        let next = match cur {
            Value::Object(m) => m.get_mut(seg),
            Value::Array(a) => match array_index(seg) {
                Some(idx) => a.get_mut(idx),
                None => None,
            },
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => return Removed::Nothing,
        }
    }
    match cur {
        Value::Object(m) => match m.shift_remove(last) {
            Some(_) => Removed::Field,
            None => Removed::Nothing,
        },
        Value::Array(a) => match array_index(last).and_then(|idx| a.get_mut(idx)) {
            Some(slot) if slot.is_null() => Removed::Nothing,
            Some(slot) => {
                *slot = Value::Null;
                Removed::Nulled
            }
            None => Removed::Nothing,
        },
        _ => Removed::Nothing,
    }
}
