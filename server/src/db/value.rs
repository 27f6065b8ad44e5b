//! The internal value model: normalizing client encodings (EJSON, legacy dates, server dates),
//! the cross-type total order, and validation of documents about to be stored.
//!
//! Internally a date is the object `{"$date": <i64 ms>}`; everything else is plain JSON.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::db::DbError;

pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Longest field name accepted in a stored document, in bytes.
const MAX_KEY_BYTES: usize = 128;

/// Converts client encodings into the internal form, recursively, and enforces max nesting depth
/// (an object or array counts as one level; the top-level container is level 1).
pub fn normalize(v: Value, now_ms: i64, max_depth: usize) -> Result<Value, DbError> {
    normalize_at(v, now_ms, max_depth, 1)
}

fn normalize_at(v: Value, now_ms: i64, max: usize, depth: usize) -> Result<Value, DbError> {
    match v {
        Value::Object(map) => {
            if depth > max {
                return Err(DbError::NestingTooDeep(max));
            }
            if map.len() == 1 {
                if let Some((key, inner)) = map.iter().next() {
                    if let Some(converted) = convert_wrapper(key, inner, now_ms)? {
                        return Ok(converted);
                    }
                }
            }
            let mut out = Map::with_capacity(map.len());
            for (k, val) in map {
                out.insert(k, normalize_at(val, now_ms, max, depth + 1)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => {
            if depth > max {
                return Err(DbError::NestingTooDeep(max));
            }
            items
                .into_iter()
                .map(|item| normalize_at(item, now_ms, max, depth + 1))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        scalar => Ok(scalar),
    }
}

/// Converts a one-key `$wrapper` object; `Ok(None)` if `key` is not a known wrapper.
fn convert_wrapper(key: &str, inner: &Value, now_ms: i64) -> Result<Option<Value>, DbError> {
    let converted = match key {
        "$date" => date_value(parse_date(inner, now_ms)?),
        "$numberInt" => {
            let n = wrapped_integer(inner, "$numberInt")?;
            if i32::try_from(n).is_err() {
                return Err(bad_wrapper("$numberInt", inner, "out of the 32-bit range"));
            }
            Value::from(n)
        }
        "$numberLong" => Value::from(wrapped_integer(inner, "$numberLong")?),
        "$numberDouble" | "$numberDecimal" => {
            let f = match inner {
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| bad_wrapper(key, inner, "not a number"))?,
                Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                _ => return Err(bad_wrapper(key, inner, "expected a string")),
            };
            match Number::from_f64(f) {
                Some(n) if f.is_finite() => Value::Number(n),
                _ => return Err(bad_wrapper(key, inner, "non-finite numbers are not supported")),
            }
        }
        "$timestamp" => {
            let secs = match inner {
                Value::Object(m) => m.get("t").and_then(Value::as_i64),
                other => other.as_i64(),
            };
            let secs = secs.ok_or_else(|| bad_wrapper(key, inner, "expected {\"t\": seconds}"))?;
            let ms = secs
                .checked_mul(1000)
                .ok_or_else(|| bad_wrapper(key, inner, "out of range"))?;
            date_value(ms)
        }
        "$regularExpression" => {
            let pattern = inner.get("pattern").and_then(Value::as_str);
            let options = inner.get("options").and_then(Value::as_str).unwrap_or("");
            let pattern = pattern.ok_or_else(|| bad_wrapper(key, inner, "expected {pattern, options}"))?;
            let mut m = Map::new();
            m.insert("$regex".into(), Value::from(pattern));
            m.insert("$options".into(), Value::from(options));
            Value::Object(m)
        }
        _ => return Ok(None),
    };
    Ok(Some(converted))
}

fn bad_wrapper(key: &str, inner: &Value, why: &str) -> DbError {
    let mut shown = inner.to_string();
    if shown.len() > 64 {
        let mut cut = 64;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    DbError::InvalidParam(format!("invalid `{key}` value {shown}: {why}"))
}

fn date_value(ms: i64) -> Value {
    let mut m = Map::with_capacity(1);
    m.insert("$date".into(), Value::from(ms));
    Value::Object(m)
}

/// An integer given as a decimal string or a JSON integer.
fn wrapped_integer(inner: &Value, key: &str) -> Result<i64, DbError> {
    match inner {
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| bad_wrapper(key, inner, "not an integer")),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| bad_wrapper(key, inner, "not a 64-bit integer")),
        _ => Err(bad_wrapper(key, inner, "expected a string")),
    }
}

/// Milliseconds since the epoch from the operand of `$date`.
fn parse_date(inner: &Value, now_ms: i64) -> Result<i64, DbError> {
    match inner {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(i);
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && f.abs() < 9.0e18 => Ok(f.floor() as i64),
                _ => Err(bad_wrapper("$date", inner, "out of range")),
            }
        }
        Value::String(s) => parse_rfc3339(s).ok_or_else(|| bad_wrapper("$date", inner, "not an ISO 8601 date-time")),
        Value::Object(m) if m.len() == 1 => {
            if let Some(long) = m.get("$numberLong") {
                wrapped_integer(long, "$numberLong")
            } else if let Some(offset) = m.get("offset") {
                let off = match offset {
                    Value::Object(w) if w.len() == 1 => {
                        let (k, v) = w
                            .iter()
                            .next()
                            .ok_or_else(|| bad_wrapper("$date", inner, "bad offset"))?;
                        match convert_wrapper(k, v, now_ms)? {
                            Some(Value::Number(n)) => n.as_f64(),
                            _ => None,
                        }
                    }
                    other => other.as_f64(),
                };
                match off {
                    Some(f) if f.is_finite() && f.abs() < 9.0e18 => Ok(now_ms.saturating_add(f.floor() as i64)),
                    _ => Err(bad_wrapper("$date", inner, "offset must be a number of milliseconds")),
                }
            } else {
                Err(bad_wrapper(
                    "$date",
                    inner,
                    "expected milliseconds, {\"$numberLong\"} or {\"offset\"}",
                ))
            }
        }
        _ => Err(bad_wrapper(
            "$date",
            inner,
            "expected milliseconds or an ISO 8601 string",
        )),
    }
}

/// Parses `YYYY-MM-DD[Thh:mm[:ss[.fff]]][Z|±hh:mm]` (no zone = UTC) into epoch milliseconds.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    let mut i = 10;
    if matches!(b.get(i), Some(b'T' | b't' | b' ')) {
        let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
        if b.get(i + 3) != Some(&b':') || h > 23 || m > 59 {
            return None;
        }
        ms += (h * 3600 + m * 60) * 1000;
        i += 6;
        if b.get(i) == Some(&b':') {
            let sec = num(i + 1, 2)?;
            if sec > 60 {
                return None;
            }
            ms += sec * 1000;
            i += 3;
            if b.get(i) == Some(&b'.') {
                i += 1;
                let start = i;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                let digits = b.get(start..i)?;
                if digits.is_empty() {
                    return None;
                }
                for (d, scale) in digits.iter().zip([100, 10, 1]) {
                    ms += i64::from(d - b'0') * scale;
                }
            }
        }
    }
    match b.get(i) {
        None => {}
        Some(b'Z' | b'z') if i + 1 == b.len() => {}
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b.get(i + 3) == Some(&b':') => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            let off = (h * 60 + m) * 60_000;
            ms += if *sign == b'+' { -off } else { off };
        }
        _ => return None,
    }
    Some(ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Some(ms) if v is an internal date.
pub fn as_date(v: &Value) -> Option<i64> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get("$date").and_then(Value::as_i64),
        _ => None,
    }
}

/// The rank of a value's type in MongoDB's comparison order.
pub fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Object(_) if as_date(v).is_some() => 9,
        Value::Object(_) => 4,
        Value::Array(_) => 5,
        Value::Bool(_) => 8,
    }
}

/// MongoDB's cross-type total order: null < numbers < strings < objects < arrays < booleans < dates.
/// Objects compare pair by pair (value type, then key, then value), then by length.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    let (ra, rb) = (type_rank(a), type_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (u, v) in x.iter().zip(y) {
                let o = compare(u, v);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            if ra == 9 {
                return as_date(a).cmp(&as_date(b));
            }
            for ((ka, va), (kb, vb)) in x.iter().zip(y) {
                let o = type_rank(va)
                    .cmp(&type_rank(vb))
                    .then_with(|| ka.as_bytes().cmp(kb.as_bytes()))
                    .then_with(|| compare(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => Ordering::Equal, // both null
    }
}

/// Numeric comparison across i64, u64 and f64 without precision loss.
pub fn compare_numbers(x: &Number, y: &Number) -> Ordering {
    match (as_int(x), as_int(y)) {
        (Some(i), Some(j)) => i.cmp(&j),
        (Some(i), None) => compare_int_float(i, y.as_f64().unwrap_or(0.0)),
        (None, Some(j)) => compare_int_float(j, x.as_f64().unwrap_or(0.0)).reverse(),
        (None, None) => {
            let (f, g) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            f.partial_cmp(&g).unwrap_or(Ordering::Equal)
        }
    }
}

fn as_int(n: &Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

fn compare_int_float(i: i128, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    if f >= 1.0e38 {
        return Ordering::Less;
    }
    if f <= -1.0e38 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    match i.cmp(&(t as i128)) {
        Ordering::Equal if f > t => Ordering::Less,
        Ordering::Equal if f < t => Ordering::Greater,
        o => o,
    }
}

/// compare(a, b) == Equal, without building an ordering where a cheaper test suffices.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Ordering::Equal,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(u, v)| values_equal(u, v)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && as_date(a).is_some() == as_date(b).is_some()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && values_equal(va, vb))
        }
        _ => false,
    }
}

/// Checks a document that is about to be stored: a top-level object whose field names are valid
/// and whose nesting is at most `max_depth` levels.
pub fn validate_document(doc: &Value, max_depth: usize) -> Result<(), DbError> {
    if !doc.is_object() {
        return Err(DbError::InvalidParam("a document must be a JSON object".into()));
    }
    validate_at(doc, max_depth, 1)
}

fn validate_at(v: &Value, max: usize, depth: usize) -> Result<(), DbError> {
    match v {
        Value::Object(m) => {
            if depth > max {
                return Err(DbError::NestingTooDeep(max));
            }
            if as_date(v).is_some() && depth > 1 {
                return Ok(());
            }
            for (k, val) in m {
                check_key(k)?;
                validate_at(val, max, depth + 1)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            if depth > max {
                return Err(DbError::NestingTooDeep(max));
            }
            items.iter().try_for_each(|item| validate_at(item, max, depth + 1))
        }
        _ => Ok(()),
    }
}

fn check_key(k: &str) -> Result<(), DbError> {
    let why = if k.is_empty() {
        "field names must not be empty"
    } else if k.len() > MAX_KEY_BYTES {
        "field names must be at most 128 bytes"
    } else if k.contains('.') {
        "field names must not contain '.'"
    } else if k.starts_with('$') {
        "field names must not start with '$'"
    } else if k.contains('\0') {
        "field names must not contain NUL"
    } else {
        return Ok(());
    };
    let mut shown: String = k.chars().take(64).collect();
    if shown.len() < k.len() {
        shown.push('…');
    }
    Err(DbError::InvalidName(format!("invalid field name `{shown}`: {why}")))
}

#[cfg(test)]
mod tests;
