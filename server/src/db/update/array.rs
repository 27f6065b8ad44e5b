//! Array update operators: `$push` (with `$each $position $sort $slice`), `$addToSet`, `$pop`,
//! `$pull` and `$pullAll` — operand parsing and the new array each one computes.

use serde_json::{Map, Value};

use super::path::{parse_path, type_name};
use crate::db::query::{Direction, ElementFilter, Sort};
use crate::db::value::{as_date, compare, values_equal};
use crate::db::DbError;

/// An integer operand: a JSON integer or an integral float.
pub(super) fn int_operand(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    if f.fract() == 0.0 && f.abs() < 9.0e18 {
        Some(f as i64)
    } else {
        None
    }
}

fn bad(op: &str, path: &str, why: impl std::fmt::Display) -> DbError {
    DbError::InvalidCommand(format!("`{op}` on `{path}`: {why}"))
}

/// True when an object operand uses `$` modifier keys (`{$each: …}`) rather than being a value.
fn has_dollar_key(m: &Map<String, Value>) -> bool {
    m.keys().any(|k| k.starts_with('$'))
}

/// How `$push … $sort` orders the array.
pub(super) enum PushSort {
    /// `$sort: 1 | -1` — whole elements.
    Whole(Direction),
    /// `$sort: {field: ±1, …}` — elements as documents.
    Fields(Sort),
}

pub(super) struct Push {
    each: Vec<Value>,
    position: Option<i64>,
    sort: Option<PushSort>,
    slice: Option<i64>,
}

impl Push {
    pub(super) fn parse(path: &str, operand: &Value) -> Result<Push, DbError> {
        let m = match operand {
            Value::Object(m) if has_dollar_key(m) && as_date(operand).is_none() => m,
            single => {
                return Ok(Push {
                    each: vec![single.clone()],
                    position: None,
                    sort: None,
                    slice: None,
                })
            }
        };
        let mut push = Push {
            each: Vec::new(),
            position: None,
            sort: None,
            slice: None,
        };
        let mut saw_each = false;
        for (k, v) in m {
            match k.as_str() {
                "$each" => {
                    let Value::Array(items) = v else {
                        return Err(bad(
                            "$push",
                            path,
                            format!("$each needs an array, got {}", type_name(v)),
                        ));
                    };
                    push.each = items.clone();
                    saw_each = true;
                }
                "$position" => {
                    let p = int_operand(v).ok_or_else(|| bad("$push", path, "$position needs an integer"))?;
                    push.position = Some(p);
                }
                "$slice" => {
                    let s = int_operand(v).ok_or_else(|| bad("$push", path, "$slice needs an integer"))?;
                    push.slice = Some(s);
                }
                "$sort" => push.sort = Some(parse_sort(path, v)?),
                other => {
                    return Err(bad(
                        "$push",
                        path,
                        format!("unknown modifier `{other}` (expected $each, $position, $sort, $slice)"),
                    ))
                }
            }
        }
        if !saw_each {
            return Err(bad("$push", path, "modifiers $position, $sort and $slice need $each"));
        }
        Ok(push)
    }

    /// The values pushed.
    pub(super) fn values(&self) -> &[Value] {
        &self.each
    }

    /// The array after pushing into `current` (insert at position, then sort, then slice).
    pub(super) fn apply(&self, current: &[Value]) -> Vec<Value> {
        let mut arr = current.to_vec();
        let len = i64::try_from(arr.len()).unwrap_or(i64::MAX);
        let pos = match self.position {
            None => len,
            Some(p) if p >= 0 => p.min(len),
            Some(p) => len.saturating_add(p).max(0),
        };
        let pos = usize::try_from(pos).unwrap_or(arr.len()).min(arr.len());
        arr.splice(pos..pos, self.each.iter().cloned());
        match &self.sort {
            Some(PushSort::Whole(Direction::Asc)) => arr.sort_by(compare),
            Some(PushSort::Whole(Direction::Desc)) => arr.sort_by(|a, b| compare(b, a)),
            Some(PushSort::Fields(sort)) => arr.sort_by(|a, b| sort.compare(a, b)),
            None => {}
        }
        if let Some(n) = self.slice {
            let keep = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
            if n >= 0 {
                arr.truncate(keep);
            } else if arr.len() > keep {
                arr.drain(..arr.len() - keep);
            }
        }
        arr
    }
}

fn direction(path: &str, v: &Value) -> Result<Direction, DbError> {
    match int_operand(v) {
        Some(1) => Ok(Direction::Asc),
        Some(-1) => Ok(Direction::Desc),
        _ => Err(bad("$push", path, "$sort directions must be 1 or -1")),
    }
}

fn parse_sort(path: &str, v: &Value) -> Result<PushSort, DbError> {
    match v {
        Value::Object(fields) => {
            if fields.is_empty() {
                return Err(bad(
                    "$push",
                    path,
                    "$sort needs 1, -1 or a non-empty {field: ±1} object",
                ));
            }
            let mut spec = Vec::with_capacity(fields.len());
            for (field, dir) in fields {
                parse_path(field)?;
                spec.push((field.clone(), direction(path, dir)?));
            }
            Ok(PushSort::Fields(Sort::new(spec)))
        }
        other => Ok(PushSort::Whole(direction(path, other)?)),
    }
}

/// The values `$addToSet` adds: the operand, or the items of `{$each: [...]}`.
pub(super) fn parse_add_to_set(path: &str, operand: &Value) -> Result<Vec<Value>, DbError> {
    match operand {
        Value::Object(m) if has_dollar_key(m) && as_date(operand).is_none() => {
            if m.len() != 1 {
                return Err(bad("$addToSet", path, "only the $each modifier is allowed"));
            }
            match m.get("$each") {
                Some(Value::Array(items)) => Ok(items.clone()),
                Some(other) => Err(bad(
                    "$addToSet",
                    path,
                    format!("$each needs an array, got {}", type_name(other)),
                )),
                None => Err(bad("$addToSet", path, "only the $each modifier is allowed")),
            }
        }
        single => Ok(vec![single.clone()]),
    }
}

pub(super) fn add_to_set(current: &[Value], values: &[Value]) -> Vec<Value> {
    let mut arr = current.to_vec();
    for v in values {
        if !arr.iter().any(|x| values_equal(x, v)) {
            arr.push(v.clone());
        }
    }
    arr
}

/// `$pop: 1` removes the last element, `-1` the first.
pub(super) fn parse_pop(path: &str, operand: &Value) -> Result<bool, DbError> {
    match int_operand(operand) {
        Some(1) => Ok(false),
        Some(-1) => Ok(true),
        _ => Err(bad("$pop", path, "needs 1 (remove the last element) or -1 (the first)")),
    }
}

/// `None` when the array is empty (nothing to pop).
pub(super) fn pop(current: &[Value], first: bool) -> Option<Vec<Value>> {
    if current.is_empty() {
        return None;
    }
    let (from, to) = if first {
        (1, current.len())
    } else {
        (0, current.len() - 1)
    };
    current.get(from..to).map(<[Value]>::to_vec)
}

/// What `$pull` removes.
pub(super) enum PullCond {
    /// Elements equal to a value (scalars, arrays, dates).
    Equal(Value),
    /// Elements matching an operator condition (`{$gt: 3}`) or a sub-document query (`{n: 1}`).
    Matches(ElementFilter),
}

impl PullCond {
    pub(super) fn parse(operand: &Value) -> Result<PullCond, DbError> {
        match operand {
            Value::Object(_) if as_date(operand).is_none() => Ok(PullCond::Matches(ElementFilter::parse(operand)?)),
            other => Ok(PullCond::Equal(other.clone())),
        }
    }

    fn matches(&self, v: &Value) -> bool {
        match self {
            PullCond::Equal(x) => values_equal(x, v),
            PullCond::Matches(f) => f.matches(v),
        }
    }
}

pub(super) fn pull(current: &[Value], cond: &PullCond) -> Vec<Value> {
    current.iter().filter(|v| !cond.matches(v)).cloned().collect()
}

pub(super) fn parse_pull_all(path: &str, operand: &Value) -> Result<Vec<Value>, DbError> {
    match operand {
        Value::Array(items) => Ok(items.clone()),
        other => Err(bad(
            "$pullAll",
            path,
            format!("needs an array, got {}", type_name(other)),
        )),
    }
}

pub(super) fn pull_all(current: &[Value], values: &[Value]) -> Vec<Value> {
    current
        .iter()
        .filter(|v| !values.iter().any(|x| values_equal(x, v)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
