//! The expression operators with plain arguments (MongoDB semantics): arithmetic, comparison,
//! boolean, `$ifNull`, strings, arrays, sets, objects and type conversions. Null or missing
//! arguments give null where MongoDB does; a wrong argument type is an error naming the operator.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashSet;

use serde_json::{Map, Value};

use super::expr::{Env, Expr};
use super::values::{
    add, as_doc, cmd, compare_vals, double, is_doc, key_of, mul, shown, sub, truthy, type_name, Num, Val,
};
use crate::db::query::compile_regex;
use crate::db::value::{as_date, parse_rfc3339};
use crate::db::DbError;
use regex::Regex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Abs,
    Add,
    Ceil,
    Divide,
    Exp,
    Floor,
    Ln,
    Log,
    Log10,
    Mod,
    Multiply,
    Pow,
    Round,
    Sqrt,
    Subtract,
    Trunc,
    Cmp,
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    And,
    Or,
    Not,
    IfNull,
    Concat,
    SubstrBytes,
    SubstrCP,
    ToLower,
    ToUpper,
    StrLenBytes,
    StrLenCP,
    StrCaseCmp,
    IndexOfBytes,
    IndexOfCP,
    Split,
    ArrayElemAt,
    ArrayToObject,
    ConcatArrays,
    In,
    IndexOfArray,
    IsArray,
    Range,
    ReverseArray,
    Size,
    Slice,
    First,
    Last,
    SetEquals,
    SetIntersection,
    SetUnion,
    SetDifference,
    SetIsSubset,
    AnyElementTrue,
    AllElementsTrue,
    MergeObjects,
    ObjectToArray,
    Type,
    ToString,
    ToInt,
    ToLong,
    ToDouble,
    ToBool,
    ToDate,
    IsNumber,
}

const ANY: usize = usize::MAX;

/// Operator name, operator, fewest and most arguments.
const TABLE: &[(&str, Op, usize, usize)] = &[
    ("$abs", Op::Abs, 1, 1),
    ("$add", Op::Add, 0, ANY),
    ("$ceil", Op::Ceil, 1, 1),
    ("$divide", Op::Divide, 2, 2),
    ("$exp", Op::Exp, 1, 1),
    ("$floor", Op::Floor, 1, 1),
    ("$ln", Op::Ln, 1, 1),
    ("$log", Op::Log, 2, 2),
    ("$log10", Op::Log10, 1, 1),
    ("$mod", Op::Mod, 2, 2),
    ("$multiply", Op::Multiply, 0, ANY),
    ("$pow", Op::Pow, 2, 2),
    ("$round", Op::Round, 1, 2),
    ("$sqrt", Op::Sqrt, 1, 1),
    ("$subtract", Op::Subtract, 2, 2),
    ("$trunc", Op::Trunc, 1, 2),
    ("$cmp", Op::Cmp, 2, 2),
    ("$eq", Op::Eq, 2, 2),
    ("$ne", Op::Ne, 2, 2),
    ("$gt", Op::Gt, 2, 2),
    ("$gte", Op::Gte, 2, 2),
    ("$lt", Op::Lt, 2, 2),
    ("$lte", Op::Lte, 2, 2),
    ("$and", Op::And, 0, ANY),
    ("$or", Op::Or, 0, ANY),
    ("$not", Op::Not, 1, 1),
    ("$ifNull", Op::IfNull, 2, ANY),
    ("$concat", Op::Concat, 0, ANY),
    ("$substr", Op::SubstrBytes, 3, 3),
    ("$substrBytes", Op::SubstrBytes, 3, 3),
    ("$substrCP", Op::SubstrCP, 3, 3),
    ("$toLower", Op::ToLower, 1, 1),
    ("$toUpper", Op::ToUpper, 1, 1),
    ("$strLenBytes", Op::StrLenBytes, 1, 1),
    ("$strLenCP", Op::StrLenCP, 1, 1),
    ("$strcasecmp", Op::StrCaseCmp, 2, 2),
    ("$indexOfBytes", Op::IndexOfBytes, 2, 4),
    ("$indexOfCP", Op::IndexOfCP, 2, 4),
    ("$split", Op::Split, 2, 2),
    ("$arrayElemAt", Op::ArrayElemAt, 2, 2),
    ("$arrayToObject", Op::ArrayToObject, 1, 1),
    ("$concatArrays", Op::ConcatArrays, 0, ANY),
    ("$in", Op::In, 2, 2),
    ("$indexOfArray", Op::IndexOfArray, 2, 4),
    ("$isArray", Op::IsArray, 1, 1),
    ("$range", Op::Range, 2, 3),
    ("$reverseArray", Op::ReverseArray, 1, 1),
    ("$size", Op::Size, 1, 1),
    ("$slice", Op::Slice, 2, 3),
    ("$first", Op::First, 1, 1),
    ("$last", Op::Last, 1, 1),
    ("$setEquals", Op::SetEquals, 2, ANY),
    ("$setIntersection", Op::SetIntersection, 0, ANY),
    ("$setUnion", Op::SetUnion, 0, ANY),
    ("$setDifference", Op::SetDifference, 2, 2),
    ("$setIsSubset", Op::SetIsSubset, 2, 2),
    ("$anyElementTrue", Op::AnyElementTrue, 1, 1),
    ("$allElementsTrue", Op::AllElementsTrue, 1, 1),
    ("$mergeObjects", Op::MergeObjects, 0, ANY),
    ("$objectToArray", Op::ObjectToArray, 1, 1),
    ("$type", Op::Type, 1, 1),
    ("$toString", Op::ToString, 1, 1),
    ("$toInt", Op::ToInt, 1, 1),
    ("$toLong", Op::ToLong, 1, 1),
    ("$toDouble", Op::ToDouble, 1, 1),
    ("$toBool", Op::ToBool, 1, 1),
    ("$toDate", Op::ToDate, 1, 1),
    ("$isNumber", Op::IsNumber, 1, 1),
];

pub(super) fn lookup(name: &str) -> Option<(Op, usize, usize)> {
    TABLE.iter().find(|t| t.0 == name).map(|t| (t.1, t.2, t.3))
}

fn name(op: Op) -> &'static str {
    TABLE.iter().find(|t| t.1 == op).map_or("?", |t| t.0)
}

fn nullish(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

fn arg<'v>(vals: &'v [Val<'_>], i: usize) -> Option<&'v Value> {
    vals.get(i).and_then(|v| v.as_deref())
}

const NULL: Option<Value> = Some(Value::Null);

/// Evaluates an operator: `$and`, `$or` and `$ifNull` stop at the first argument that decides.
pub(super) fn eval<'a>(op: Op, args: &'a [Expr], root: &'a Value, env: &mut Env) -> Result<Val<'a>, DbError> {
    match op {
        Op::And | Op::Or => {
            let want = op == Op::Or;
            for a in args {
                if truthy(a.eval(root, env)?.as_deref()) == want {
                    return Ok(Some(Cow::Owned(Value::Bool(want))));
                }
            }
            return Ok(Some(Cow::Owned(Value::Bool(!want))));
        }
        Op::IfNull => {
            if let Some((last, rest)) = args.split_last() {
                for a in rest {
                    let v = a.eval(root, env)?;
                    if !nullish(v.as_deref()) {
                        return Ok(v);
                    }
                }
                return last.eval(root, env);
            }
            return Ok(None);
        }
        _ => {}
    }
    let mut vals: Vec<Val<'a>> = Vec::with_capacity(args.len());
    for a in args {
        vals.push(a.eval(root, env)?);
    }
    Ok(apply(op, &vals, env)?.map(Cow::Owned))
}

fn apply(op: Op, vals: &[Val<'_>], env: &mut Env) -> Result<Option<Value>, DbError> {
    let n = name(op);
    let a0 = arg(vals, 0);
    let a1 = arg(vals, 1);
    Ok(match op {
        Op::And | Op::Or | Op::IfNull => None, // handled in `eval`
        Op::Abs => match num_arg(n, a0)? {
            None => NULL,
            Some(Num::Int(i)) => Some(
                i.checked_abs()
                    .map_or(Num::Double((i as f64).abs()), Num::Int)
                    .value(n)?,
            ),
            Some(Num::Double(f)) => Some(double(n, f.abs())?),
        },
        Op::Add => {
            let mut total = Num::Int(0);
            let mut date: Option<i64> = None;
            for v in vals {
                let v = v.as_deref();
                if nullish(v) {
                    return Ok(NULL);
                }
                let v = v.unwrap_or(&Value::Null);
                if let Some(ms) = as_date(v) {
                    if date.replace(ms).is_some() {
                        return Err(cmd("`$add` takes at most one date"));
                    }
                } else if let Some(x) = Num::of(v) {
                    total = add(total, x);
                } else {
                    return Err(cmd(format!(
                        "`$add` only supports numeric or date types, not {}",
                        type_name(Some(v))
                    )));
                }
            }
            Some(match date {
                Some(ms) => date_plus(n, ms, total)?,
                None => total.value(n)?,
            })
        }
        Op::Subtract => {
            if nullish(a0) || nullish(a1) {
                return Ok(NULL);
            }
            let (x, y) = (a0.unwrap_or(&Value::Null), a1.unwrap_or(&Value::Null));
            match (as_date(x), as_date(y)) {
                (Some(p), Some(q)) => Some(Value::from(
                    p.checked_sub(q)
                        .ok_or_else(|| cmd("`$subtract`: date difference out of range"))?,
                )),
                (Some(p), None) => {
                    let d = num_or_date_arg(n, y)?;
                    Some(date_plus(n, p, sub(Num::Int(0), d))?)
                }
                (None, Some(_)) => return Err(cmd("`$subtract` cannot subtract a date from a number")),
                (None, None) => Some(sub(num_or_date_arg(n, x)?, num_or_date_arg(n, y)?).value(n)?),
            }
        }
        Op::Multiply => {
            let mut total = Num::Int(1);
            for v in vals {
                match num_arg(n, v.as_deref())? {
                    None => return Ok(NULL),
                    Some(x) => total = mul(total, x),
                }
            }
            Some(total.value(n)?)
        }
        Op::Divide => match (num_arg(n, a0)?, num_arg(n, a1)?) {
            (Some(x), Some(y)) => {
                if y.is_zero() {
                    return Err(cmd("`$divide` cannot divide by zero"));
                }
                Some(double(n, x.f() / y.f())?)
            }
            _ => NULL,
        },
        Op::Mod => match (num_arg(n, a0)?, num_arg(n, a1)?) {
            (Some(x), Some(y)) => {
                if y.is_zero() {
                    return Err(cmd("`$mod` cannot divide by zero"));
                }
                Some(match (x, y) {
                    (Num::Int(i), Num::Int(j)) => Value::from(i.checked_rem(j).unwrap_or(0)),
                    _ => double(n, x.f() % y.f())?,
                })
            }
            _ => NULL,
        },
        Op::Ceil | Op::Floor => match num_arg(n, a0)? {
            None => NULL,
            Some(Num::Int(i)) => Some(Value::from(i)),
            Some(Num::Double(f)) => Some(double(n, if op == Op::Ceil { f.ceil() } else { f.floor() })?),
        },
        Op::Exp => match num_arg(n, a0)? {
            None => NULL,
            Some(x) => Some(double(n, x.f().exp())?),
        },
        Op::Ln | Op::Log10 | Op::Sqrt => match num_arg(n, a0)? {
            None => NULL,
            Some(x) => {
                let f = x.f();
                if op == Op::Sqrt {
                    if f < 0.0 {
                        return Err(cmd(format!("`$sqrt`'s argument must be at least 0, not {f}")));
                    }
                    Some(double(n, f.sqrt())?)
                } else {
                    if f <= 0.0 {
                        return Err(cmd(format!("`{n}`'s argument must be a positive number, not {f}")));
                    }
                    Some(double(n, if op == Op::Ln { f.ln() } else { f.log10() })?)
                }
            }
        },
        Op::Log => match (num_arg(n, a0)?, num_arg(n, a1)?) {
            (Some(x), Some(b)) => {
                if x.f() <= 0.0 {
                    return Err(cmd(format!(
                        "`$log`'s argument must be a positive number, not {}",
                        x.f()
                    )));
                }
                if b.f() <= 0.0 || b.f() == 1.0 {
                    return Err(cmd(format!(
                        "`$log`'s base must be a positive number other than 1, not {}",
                        b.f()
                    )));
                }
                Some(double(n, x.f().ln() / b.f().ln())?)
            }
            _ => NULL,
        },
        Op::Pow => match (num_arg(n, a0)?, num_arg(n, a1)?) {
            (Some(b), Some(e)) => Some(pow(b, e)?),
            _ => NULL,
        },
        Op::Round | Op::Trunc => {
            let place = match vals.len() {
                1 => 0,
                _ => match a1 {
                    v if nullish(v) => return Ok(NULL),
                    Some(v) => match Num::of(v).and_then(Num::exact_int) {
                        Some(p) if p > -20 && p < 100 => p as i32,
                        _ => return Err(cmd(format!("`{n}`: the place must be an integer between -20 and 100"))),
                    },
                    None => 0,
                },
            };
            let even = op == Op::Round;
            match num_arg(n, a0)? {
                None => NULL,
                Some(Num::Int(i)) => Some(round_int(i, place, even).value(n)?),
                Some(Num::Double(f)) => Some(double(n, round_double(f, place, even))?),
            }
        }
        Op::Cmp => Some(Value::from(match compare_vals(a0, a1) {
            Ordering::Less => -1,
            Ordering::Equal => 0,
            Ordering::Greater => 1,
        })),
        Op::Eq | Op::Ne | Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
            let o = compare_vals(a0, a1);
            Some(Value::Bool(match op {
                Op::Eq => o == Ordering::Equal,
                Op::Ne => o != Ordering::Equal,
                Op::Gt => o == Ordering::Greater,
                Op::Gte => o != Ordering::Less,
                Op::Lt => o == Ordering::Less,
                _ => o != Ordering::Greater,
            }))
        }
        Op::Not => Some(Value::Bool(!truthy(a0))),
        Op::Concat => {
            let mut out = String::new();
            for v in vals {
                match v.as_deref() {
                    None | Some(Value::Null) => return Ok(NULL),
                    Some(Value::String(s)) => out.push_str(s),
                    Some(other) => {
                        return Err(cmd(format!(
                            "`$concat` only supports strings, not {}",
                            type_name(Some(other))
                        )))
                    }
                }
            }
            env.spend(out.len() / 16, n)?;
            Some(Value::String(out))
        }
        Op::SubstrBytes => {
            let s = coerce_str(n, a0)?;
            let start = int_arg(n, a1, "the starting index")?;
            let len = int_arg(n, arg(vals, 2), "the length")?;
            if start < 0 || start as usize >= s.len() {
                return Ok(Some(Value::String(String::new())));
            }
            let start = start as usize;
            let end = if len < 0 {
                s.len()
            } else {
                start.saturating_add(len as usize).min(s.len())
            };
            if !s.is_char_boundary(start) {
                return Err(cmd(format!("`{n}`: the starting index is inside a UTF-8 character")));
            }
            if !s.is_char_boundary(end) {
                return Err(cmd(format!("`{n}`: the end of the range is inside a UTF-8 character")));
            }
            Some(Value::String(s[start..end].to_string()))
        }
        Op::SubstrCP => {
            let s = coerce_str(n, a0)?;
            let start = int_arg(n, a1, "the starting index")?;
            let len = int_arg(n, arg(vals, 2), "the length")?;
            if start < 0 || len < 0 {
                return Err(cmd(
                    "`$substrCP`: the starting index and the length must not be negative",
                ));
            }
            Some(Value::String(
                s.chars().skip(start as usize).take(len as usize).collect(),
            ))
        }
        Op::ToLower => Some(Value::String(coerce_str(n, a0)?.to_ascii_lowercase())),
        Op::ToUpper => Some(Value::String(coerce_str(n, a0)?.to_ascii_uppercase())),
        Op::StrLenBytes | Op::StrLenCP => match a0 {
            Some(Value::String(s)) => Some(Value::from(if op == Op::StrLenBytes {
                s.len()
            } else {
                s.chars().count()
            })),
            other => return Err(cmd(format!("`{n}` needs a string, not {}", type_name(other)))),
        },
        Op::StrCaseCmp => {
            let (x, y) = (
                coerce_str(n, a0)?.to_ascii_lowercase(),
                coerce_str(n, a1)?.to_ascii_lowercase(),
            );
            Some(Value::from(match x.as_bytes().cmp(y.as_bytes()) {
                Ordering::Less => -1,
                Ordering::Equal => 0,
                Ordering::Greater => 1,
            }))
        }
        Op::IndexOfBytes | Op::IndexOfCP => {
            let s = match a0 {
                v if nullish(v) => return Ok(NULL),
                Some(Value::String(s)) => s,
                other => {
                    return Err(cmd(format!(
                        "`{n}` needs a string to search in, not {}",
                        type_name(other)
                    )))
                }
            };
            let needle = match a1 {
                Some(Value::String(t)) => t,
                other => {
                    return Err(cmd(format!(
                        "`{n}` needs a string to search for, not {}",
                        type_name(other)
                    )))
                }
            };
            let bounds = range_args(n, arg(vals, 2), arg(vals, 3))?;
            Some(Value::from(if op == Op::IndexOfBytes {
                index_of(s.as_bytes(), needle.as_bytes(), bounds)
            } else {
                let hay: Vec<char> = s.chars().collect();
                let needle: Vec<char> = needle.chars().collect();
                env.spend(hay.len(), n)?;
                index_of(&hay, &needle, bounds)
            }))
        }
        Op::Split => {
            let s = match a0 {
                v if nullish(v) => return Ok(NULL),
                Some(Value::String(s)) => s,
                other => {
                    return Err(cmd(format!(
                        "`$split` needs a string to split, not {}",
                        type_name(other)
                    )))
                }
            };
            let sep = match a1 {
                Some(Value::String(t)) if !t.is_empty() => t,
                _ => return Err(cmd("`$split` needs a non-empty string separator")),
            };
            let parts: Vec<Value> = s.split(sep.as_str()).map(|p| Value::String(p.to_string())).collect();
            env.spend(parts.len(), n)?;
            Some(Value::Array(parts))
        }
        Op::ArrayElemAt => {
            if nullish(a0) || nullish(a1) {
                return Ok(NULL);
            }
            let items = array_arg(n, a0, "its first argument")?;
            let i = int_arg(n, a1, "the index")?;
            let i = if i < 0 { items.len() as i64 + i } else { i };
            if i < 0 {
                None
            } else {
                items.get(i as usize).cloned()
            }
        }
        Op::ArrayToObject => {
            if nullish(a0) {
                return Ok(NULL);
            }
            Some(array_to_object(array_arg(n, a0, "its argument")?)?)
        }
        Op::ConcatArrays => {
            let mut out = Vec::new();
            for v in vals {
                match v.as_deref() {
                    None | Some(Value::Null) => return Ok(NULL),
                    Some(Value::Array(items)) => {
                        env.spend(items.len(), n)?;
                        out.extend(items.iter().cloned());
                    }
                    Some(other) => {
                        return Err(cmd(format!(
                            "`$concatArrays` only supports arrays, not {}",
                            type_name(Some(other))
                        )))
                    }
                }
            }
            Some(Value::Array(out))
        }
        Op::In => match a1 {
            Some(Value::Array(items)) => {
                env.spend(items.len(), n)?;
                Some(Value::Bool(
                    items.iter().any(|x| compare_vals(a0, Some(x)) == Ordering::Equal),
                ))
            }
            other => {
                return Err(cmd(format!(
                    "`$in` needs an array as its second argument, not {}",
                    type_name(other)
                )))
            }
        },
        Op::IndexOfArray => {
            if nullish(a0) {
                return Ok(NULL);
            }
            let items = array_arg(n, a0, "its first argument")?;
            let (start, end) = range_args(n, arg(vals, 2), arg(vals, 3))?;
            let end = end.min(items.len());
            env.spend(end.saturating_sub(start), n)?;
            let found = (start..end).find(|i| compare_vals(items.get(*i), a1) == Ordering::Equal);
            Some(Value::from(found.map_or(-1, |i| i as i64)))
        }
        Op::IsArray => Some(Value::Bool(matches!(a0, Some(Value::Array(_))))),
        Op::Range => {
            let start = int_arg(n, a0, "the start")?;
            let end = int_arg(n, a1, "the end")?;
            let step = if vals.len() > 2 {
                int_arg(n, arg(vals, 2), "the step")?
            } else {
                1
            };
            if step == 0 {
                return Err(cmd("`$range`: the step cannot be 0"));
            }
            let count = if (step > 0 && end > start) || (step < 0 && end < start) {
                ((end as i128 - start as i128).abs() + step.unsigned_abs() as i128 - 1) / step.unsigned_abs() as i128
            } else {
                0
            };
            env.spend(usize::try_from(count).unwrap_or(usize::MAX), n)?;
            // every element lies between start and end, so it fits in an i64
            Some(Value::Array(
                (0..count)
                    .map(|k| Value::from((i128::from(start) + k * i128::from(step)) as i64))
                    .collect(),
            ))
        }
        Op::ReverseArray => {
            if nullish(a0) {
                return Ok(NULL);
            }
            let mut items = array_arg(n, a0, "its argument")?.clone();
            items.reverse();
            Some(Value::Array(items))
        }
        Op::Size => match a0 {
            Some(Value::Array(items)) => Some(Value::from(items.len())),
            other => return Err(cmd(format!("`$size` needs an array, not {}", type_name(other)))),
        },
        Op::Slice => {
            if vals.iter().any(|v| nullish(v.as_deref())) {
                return Ok(NULL);
            }
            let items = array_arg(n, a0, "its first argument")?;
            let len = items.len() as i64;
            let (from, count) = if vals.len() == 2 {
                let k = int_arg(n, a1, "the count")?;
                if k >= 0 {
                    (0, k as u64)
                } else {
                    ((len + k).max(0), k.unsigned_abs())
                }
            } else {
                let pos = int_arg(n, a1, "the position")?;
                let k = int_arg(n, arg(vals, 2), "the count")?;
                if k <= 0 {
                    return Err(cmd("`$slice`: the count must be positive when a position is given"));
                }
                (if pos >= 0 { pos.min(len) } else { (len + pos).max(0) }, k as u64)
            };
            Some(Value::Array(
                items
                    .iter()
                    .skip(from as usize)
                    .take(usize::try_from(count).unwrap_or(usize::MAX))
                    .cloned()
                    .collect(),
            ))
        }
        Op::First | Op::Last => {
            if nullish(a0) {
                return Ok(NULL);
            }
            let items = array_arg(n, a0, "its argument")?;
            if op == Op::First {
                items.first().cloned()
            } else {
                items.last().cloned()
            }
        }
        Op::SetEquals => {
            let mut first: Option<HashSet<Vec<u8>>> = None;
            for v in vals {
                let set: HashSet<Vec<u8>> = strict_array(n, v.as_deref())?.iter().map(|x| key_of(Some(x))).collect();
                match &first {
                    None => first = Some(set),
                    Some(f) if *f != set => return Ok(Some(Value::Bool(false))),
                    Some(_) => {}
                }
            }
            Some(Value::Bool(true))
        }
        Op::SetIsSubset => {
            let sup: HashSet<Vec<u8>> = strict_array(n, a1)?.iter().map(|x| key_of(Some(x))).collect();
            let sub = strict_array(n, a0)?;
            Some(Value::Bool(sub.iter().all(|x| sup.contains(&key_of(Some(x))))))
        }
        Op::SetIntersection | Op::SetUnion | Op::SetDifference => {
            let mut sets: Vec<&Vec<Value>> = Vec::with_capacity(vals.len());
            for v in vals {
                match v.as_deref() {
                    None | Some(Value::Null) => return Ok(NULL),
                    Some(Value::Array(items)) => {
                        env.spend(items.len(), n)?;
                        sets.push(items);
                    }
                    Some(other) => {
                        return Err(cmd(format!(
                            "`{n}` only supports arrays, not {}",
                            type_name(Some(other))
                        )))
                    }
                }
            }
            Some(Value::Array(set_op(op, &sets)))
        }
        Op::AnyElementTrue | Op::AllElementsTrue => {
            let items = strict_array(n, a0)?;
            Some(Value::Bool(if op == Op::AnyElementTrue {
                items.iter().any(|x| truthy(Some(x)))
            } else {
                items.iter().all(|x| truthy(Some(x)))
            }))
        }
        Op::MergeObjects => {
            let mut out = Map::new();
            for v in vals {
                merge_into(&mut out, v.as_deref())?;
            }
            Some(Value::Object(out))
        }
        Op::ObjectToArray => match a0 {
            v if nullish(v) => NULL,
            Some(v) if is_doc(v) => Some(Value::Array(
                as_doc(v)
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        let mut pair = Map::new();
                        pair.insert("k".into(), Value::String(k.clone()));
                        pair.insert("v".into(), v.clone());
                        Value::Object(pair)
                    })
                    .collect(),
            )),
            other => {
                return Err(cmd(format!(
                    "`$objectToArray` needs an object, not {}",
                    type_name(other)
                )))
            }
        },
        Op::Type => Some(Value::String(type_name(a0).to_string())),
        Op::IsNumber => Some(Value::Bool(matches!(a0, Some(Value::Number(_))))),
        Op::ToString => match a0 {
            v if nullish(v) => NULL,
            Some(Value::String(s)) => Some(Value::String(s.clone())),
            Some(Value::Bool(b)) => Some(Value::String(b.to_string())),
            Some(v) => Some(Value::String(coerce_str(n, Some(v))?)),
            None => NULL,
        },
        Op::ToInt | Op::ToLong => match a0 {
            v if nullish(v) => NULL,
            Some(v) => {
                let i = to_integer(n, v)?;
                if op == Op::ToInt && i32::try_from(i).is_err() {
                    return Err(cmd(format!("`$toInt`: {i} is outside the 32-bit integer range")));
                }
                Some(Value::from(i))
            }
            None => NULL,
        },
        Op::ToDouble => match a0 {
            v if nullish(v) => NULL,
            Some(v) => Some(double(n, to_double(n, v)?)?),
            None => NULL,
        },
        Op::ToBool => match a0 {
            v if nullish(v) => NULL,
            Some(Value::Bool(b)) => Some(Value::Bool(*b)),
            Some(Value::Number(x)) => Some(Value::Bool(x.as_f64().is_some_and(|f| f != 0.0))),
            Some(_) => Some(Value::Bool(true)),
            None => NULL,
        },
        Op::ToDate => match a0 {
            v if nullish(v) => NULL,
            Some(v) if as_date(v).is_some() => Some(v.clone()),
            Some(v @ Value::Number(_)) => match Num::of(v) {
                Some(Num::Int(i)) => Some(super::values::date(i)),
                Some(Num::Double(f)) if f.is_finite() && f.abs() < 9.0e18 => Some(super::values::date(f as i64)),
                _ => return Err(cmd("`$toDate`: the number is out of range")),
            },
            Some(Value::String(s)) => match parse_rfc3339(s) {
                Some(ms) => Some(super::values::date(ms)),
                None => return Err(cmd(format!("`$toDate`: cannot parse {} as a date", shown(a0)))),
            },
            other => return Err(cmd(format!("`$toDate` cannot convert {} to a date", type_name(other)))),
        },
    })
}

fn num_arg(op: &str, v: Option<&Value>) -> Result<Option<Num>, DbError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(x) => Num::of(x)
            .map(Some)
            .ok_or_else(|| cmd(format!("`{op}` only supports numeric types, not {}", type_name(v)))),
    }
}

fn num_or_date_arg(op: &str, v: &Value) -> Result<Num, DbError> {
    Num::of(v).ok_or_else(|| {
        cmd(format!(
            "`{op}` only supports numeric or date types, not {}",
            type_name(Some(v))
        ))
    })
}

/// An integral number argument (`2` or `2.0`).
fn int_arg(op: &str, v: Option<&Value>, what: &str) -> Result<i64, DbError> {
    v.and_then(Num::of)
        .and_then(Num::exact_int)
        .ok_or_else(|| cmd(format!("`{op}`: {what} must be an integer, not {}", shown(v))))
}

fn array_arg<'v>(op: &str, v: Option<&'v Value>, what: &str) -> Result<&'v Vec<Value>, DbError> {
    match v {
        Some(Value::Array(items)) => Ok(items),
        other => Err(cmd(format!(
            "`{op}`: {what} must be an array, not {}",
            type_name(other)
        ))),
    }
}

/// An array argument that may not be null either (the set predicates).
fn strict_array<'v>(op: &str, v: Option<&'v Value>) -> Result<&'v Vec<Value>, DbError> {
    array_arg(op, v, "every argument")
}

/// Optional start/end index arguments (non-negative integers; the end defaults to unbounded).
fn range_args(op: &str, start: Option<&Value>, end: Option<&Value>) -> Result<(usize, usize), DbError> {
    let idx = |v: Option<&Value>, what: &str| -> Result<Option<usize>, DbError> {
        match v {
            None => Ok(None),
            Some(x) => match Num::of(x).and_then(Num::exact_int) {
                Some(i) if i >= 0 => Ok(Some(i as usize)),
                _ => Err(cmd(format!("`{op}`: {what} must be a non-negative integer"))),
            },
        }
    };
    Ok((
        idx(start, "the starting index")?.unwrap_or(0),
        idx(end, "the ending index")?.unwrap_or(usize::MAX),
    ))
}

fn index_of<T: PartialEq>(hay: &[T], needle: &[T], (start, end): (usize, usize)) -> i64 {
    let end = end.min(hay.len());
    if start > end {
        return -1;
    }
    if needle.is_empty() {
        return start as i64;
    }
    hay[start..end]
        .windows(needle.len())
        .position(|w| w == needle)
        .map_or(-1, |p| (p + start) as i64)
}

/// A value as a string where MongoDB converts implicitly: null and missing become "", numbers
/// and dates their text.
pub(super) fn coerce_str(op: &str, v: Option<&Value>) -> Result<String, DbError> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(match Num::of(&Value::Number(n.clone())) {
            Some(Num::Int(i)) => i.to_string(),
            Some(Num::Double(f)) => f.to_string(),
            None => n.to_string(),
        }),
        Some(d) if as_date(d).is_some() => super::date::iso_string(as_date(d).unwrap_or(0)),
        Some(other) => Err(cmd(format!(
            "`{op}` cannot convert {} to a string",
            type_name(Some(other))
        ))),
    }
}

fn to_integer(op: &str, v: &Value) -> Result<i64, DbError> {
    match v {
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Number(_) => match Num::of(v) {
            Some(Num::Int(i)) => Ok(i),
            Some(Num::Double(f)) if f.is_finite() && f.abs() < 9.2e18 => Ok(f.trunc() as i64),
            _ => Err(cmd(format!("`{op}`: {} is out of range", shown(Some(v))))),
        },
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| cmd(format!("`{op}`: cannot parse {} as an integer", shown(Some(v))))),
        _ if as_date(v).is_some() && op == "$toLong" => Ok(as_date(v).unwrap_or(0)),
        _ => Err(cmd(format!(
            "`{op}` cannot convert {} to an integer",
            type_name(Some(v))
        ))),
    }
}

fn to_double(op: &str, v: &Value) -> Result<f64, DbError> {
    match v {
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(f),
            _ => Err(cmd(format!("`{op}`: cannot parse {} as a number", shown(Some(v))))),
        },
        _ if as_date(v).is_some() => Ok(as_date(v).unwrap_or(0) as f64),
        _ => Err(cmd(format!("`{op}` cannot convert {} to a number", type_name(Some(v))))),
    }
}

/// A date moved by a number of milliseconds (doubles rounded).
fn date_plus(op: &str, ms: i64, delta: Num) -> Result<Value, DbError> {
    let out = match delta {
        Num::Int(i) => ms.checked_add(i),
        Num::Double(f) if f.is_finite() && f.abs() < 9.0e18 => ms.checked_add(f.round() as i64),
        Num::Double(_) => None,
    };
    out.map(super::values::date)
        .ok_or_else(|| cmd(format!("`{op}`: the resulting date is out of range")))
}

fn pow(b: Num, e: Num) -> Result<Value, DbError> {
    if b.is_zero() && e.f() < 0.0 {
        return Err(cmd("`$pow` cannot raise 0 to a negative exponent"));
    }
    if let (Num::Int(x), Num::Int(y)) = (b, e) {
        if y >= 0 {
            if let Some(r) = u32::try_from(y).ok().and_then(|y| x.checked_pow(y)) {
                return Ok(Value::from(r));
            }
        } else if x == 1 {
            return Ok(Value::from(1));
        } else if x == -1 {
            return Ok(Value::from(if y % 2 == 0 { 1 } else { -1 }));
        }
    }
    double("$pow", b.f().powf(e.f()))
}

/// `$round` (half to even) or `$trunc` of an integer to `place` decimal places (only negative
/// places change an integer).
fn round_int(i: i64, place: i32, even: bool) -> Num {
    if place >= 0 {
        return Num::Int(i);
    }
    let q = 10i128.pow(place.unsigned_abs());
    let x = i128::from(i);
    let r = x % q;
    let t = x - r;
    let out = if even {
        let twice = r.abs() * 2;
        if twice > q || (twice == q && (t / q) % 2 != 0) {
            t + q * x.signum()
        } else {
            t
        }
    } else {
        t
    };
    i64::try_from(out).map_or(Num::Double(out as f64), Num::Int)
}

fn round_double(f: f64, place: i32, even: bool) -> f64 {
    let m = 10f64.powi(place);
    let scaled = f * m;
    if !scaled.is_finite() || m == 0.0 {
        return f;
    }
    let r = if even { scaled.round_ties_even() } else { scaled.trunc() };
    r / m
}

fn array_to_object(items: &[Value]) -> Result<Value, DbError> {
    let mut out = Map::new();
    let mut pairs: Option<bool> = None;
    for item in items {
        let (k, v) = match item {
            Value::Array(kv) if pairs != Some(false) && kv.len() == 2 => {
                pairs = Some(true);
                (&kv[0], &kv[1])
            }
            Value::Object(m) if pairs != Some(true) && m.len() == 2 && m.contains_key("k") && m.contains_key("v") => {
                pairs = Some(false);
                (&m["k"], &m["v"])
            }
            _ => {
                return Err(cmd(
                    "`$arrayToObject` needs an array of [key, value] pairs or of {k, v} objects, all of one form",
                ))
            }
        };
        let Value::String(k) = k else {
            return Err(cmd(format!(
                "`$arrayToObject`: keys must be strings, not {}",
                type_name(Some(k))
            )));
        };
        if k.contains('\0') {
            return Err(cmd("`$arrayToObject`: keys cannot contain a NUL character"));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(Value::Object(out))
}

/// Adds the fields of an object (null and missing add nothing) to `out`, later ones winning.
pub(super) fn merge_into(out: &mut Map<String, Value>, v: Option<&Value>) -> Result<(), DbError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(x) if is_doc(x) => {
            for (k, val) in as_doc(x).into_iter().flatten() {
                out.insert(k.clone(), val.clone());
            }
            Ok(())
        }
        other => Err(cmd(format!("`$mergeObjects` needs objects, not {}", type_name(other)))),
    }
}

fn set_op(op: Op, sets: &[&Vec<Value>]) -> Vec<Value> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    match op {
        Op::SetUnion => {
            for x in sets.iter().flat_map(|s| s.iter()) {
                if seen.insert(key_of(Some(x))) {
                    out.push(x.clone());
                }
            }
        }
        Op::SetIntersection => {
            let Some((first, rest)) = sets.split_first() else {
                return out;
            };
            let others: Vec<HashSet<Vec<u8>>> = rest
                .iter()
                .map(|s| s.iter().map(|x| key_of(Some(x))).collect())
                .collect();
            for x in first.iter() {
                let k = key_of(Some(x));
                if others.iter().all(|o| o.contains(&k)) && seen.insert(k) {
                    out.push(x.clone());
                }
            }
        }
        _ => {
            let remove: HashSet<Vec<u8>> = sets
                .get(1)
                .map(|s| s.iter().map(|x| key_of(Some(x))).collect())
                .unwrap_or_default();
            for x in sets.first().map(|s| s.as_slice()).unwrap_or_default() {
                let k = key_of(Some(x));
                if !remove.contains(&k) && seen.insert(k) {
                    out.push(x.clone());
                }
            }
        }
    }
    out
}

/// `$zip`: transposes arrays; null if any input is null or missing.
pub(super) fn zip<'a>(
    inputs: &'a [Expr],
    longest: bool,
    defaults: Option<&'a [Expr]>,
    root: &'a Value,
    env: &mut Env,
) -> Result<Val<'a>, DbError> {
    let mut arrays = Vec::with_capacity(inputs.len());
    for e in inputs {
        match e.eval(root, env)?.map(Cow::into_owned) {
            None | Some(Value::Null) => return Ok(Some(Cow::Owned(Value::Null))),
            Some(Value::Array(items)) => arrays.push(items),
            Some(other) => {
                return Err(cmd(format!(
                    "`$zip`: every input must be an array, not {}",
                    type_name(Some(&other))
                )))
            }
        }
    }
    let mut fill = Vec::with_capacity(arrays.len());
    for i in 0..arrays.len() {
        fill.push(match defaults.and_then(|d| d.get(i)) {
            Some(e) => e.eval(root, env)?.map_or(Value::Null, Cow::into_owned),
            None => Value::Null,
        });
    }
    let lens = arrays.iter().map(Vec::len);
    let len = if longest { lens.max() } else { lens.min() }.unwrap_or(0);
    env.spend(len.saturating_mul(arrays.len()), "$zip")?;
    let out = (0..len)
        .map(|i| {
            Value::Array(
                arrays
                    .iter()
                    .zip(&fill)
                    .map(|(a, d)| a.get(i).cloned().unwrap_or_else(|| d.clone()))
                    .collect(),
            )
        })
        .collect();
    Ok(Some(Cow::Owned(Value::Array(out))))
}

/// `$trim`, `$ltrim`, `$rtrim`: whitespace (and NUL) by default, or the characters of `chars`.
pub(super) fn trim<'a>(
    input: &'a Expr,
    chars: Option<&'a Expr>,
    left: bool,
    right: bool,
    root: &'a Value,
    env: &mut Env,
) -> Result<Val<'a>, DbError> {
    let op = match (left, right) {
        (true, true) => "$trim",
        (true, false) => "$ltrim",
        _ => "$rtrim",
    };
    let s = match input.eval(root, env)?.map(Cow::into_owned) {
        None | Some(Value::Null) => return Ok(Some(Cow::Owned(Value::Null))),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(cmd(format!(
                "`{op}` needs a string `input`, not {}",
                type_name(Some(&other))
            )))
        }
    };
    let set: Option<Vec<char>> = match chars {
        None => None,
        Some(c) => match c.eval(root, env)?.map(Cow::into_owned) {
            None | Some(Value::Null) => return Ok(Some(Cow::Owned(Value::Null))),
            Some(Value::String(c)) => Some(c.chars().collect()),
            Some(other) => {
                return Err(cmd(format!(
                    "`{op}`: `chars` must be a string, not {}",
                    type_name(Some(&other))
                )))
            }
        },
    };
    let strip = |c: char| match &set {
        None => c.is_whitespace() || c == '\0',
        Some(s) => s.contains(&c),
    };
    let mut t: &str = &s;
    if left {
        t = t.trim_start_matches(strip);
    }
    if right {
        t = t.trim_end_matches(strip);
    }
    Ok(Some(Cow::Owned(Value::String(t.to_string()))))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegexKind {
    Match,
    Find,
    FindAll,
}

/// `$regexMatch`, `$regexFind`, `$regexFindAll`: `{input, regex, options}`; the regex is compiled
/// once when it is a constant.
#[derive(Debug)]
pub(super) struct RegexExpr {
    name: &'static str,
    kind: RegexKind,
    input: Expr,
    regex: Expr,
    options: Option<Expr>,
    fixed: Option<Regex>,
}

impl RegexExpr {
    pub fn compile(name: &str, operand: &Value, scope: &mut super::expr::Scope) -> Result<RegexExpr, DbError> {
        let (name, kind) = match name {
            "$regexMatch" => ("$regexMatch", RegexKind::Match),
            "$regexFind" => ("$regexFind", RegexKind::Find),
            _ => ("$regexFindAll", RegexKind::FindAll),
        };
        let m = super::expr::named_args(name, operand, &["input", "regex", "options"], &["input", "regex"])?;
        // a regular expression value ({$regex, $options}) is a constant, not an operator
        let regex = match &m["regex"] {
            r @ Value::Object(o) if o.contains_key("$regex") => Expr::Const(r.clone()),
            other => Expr::compile(other, scope)?,
        };
        let options = m.get("options").map(|o| Expr::compile(o, scope)).transpose()?;
        let fixed = match (&regex, &options) {
            (Expr::Const(r), None) => pattern(name, Some(r), None)?
                .map(|(p, o)| compile_regex(&p, &o))
                .transpose()?,
            (Expr::Const(r), Some(Expr::Const(o))) => pattern(name, Some(r), Some(o))?
                .map(|(p, o)| compile_regex(&p, &o))
                .transpose()?,
            _ => None,
        };
        Ok(RegexExpr {
            name,
            kind,
            input: Expr::compile(&m["input"], scope)?,
            regex,
            options,
            fixed,
        })
    }

    pub fn deps(&self, bound: &mut Vec<String>, d: &mut super::expr::Deps) {
        self.input.deps(bound, d);
        self.regex.deps(bound, d);
        if let Some(o) = &self.options {
            o.deps(bound, d);
        }
    }

    pub fn eval<'a>(&'a self, root: &'a Value, env: &mut Env) -> Result<Val<'a>, DbError> {
        let nothing = || {
            Some(Cow::Owned(match self.kind {
                RegexKind::Match => Value::Bool(false),
                RegexKind::Find => Value::Null,
                RegexKind::FindAll => Value::Array(Vec::new()),
            }))
        };
        let input = self.input.eval(root, env)?;
        let s = match input.as_deref() {
            None | Some(Value::Null) => return Ok(nothing()),
            Some(Value::String(s)) => s.clone(),
            other => {
                return Err(cmd(format!(
                    "`{}` needs a string `input`, not {}",
                    self.name,
                    type_name(other)
                )))
            }
        };
        let compiled;
        let re = match &self.fixed {
            Some(re) => re,
            None => {
                let r = self.regex.eval(root, env)?;
                let o = match &self.options {
                    Some(o) => o.eval(root, env)?,
                    None => None,
                };
                match pattern(self.name, r.as_deref(), o.as_deref())? {
                    None => return Ok(nothing()),
                    Some((p, o)) => {
                        compiled = compile_regex(&p, &o)?;
                        &compiled
                    }
                }
            }
        };
        env.spend(s.len() / 16, self.name)?;
        let found = |c: regex::Captures<'_>| -> Value {
            let whole = c.get(0);
            let mut m = Map::new();
            m.insert(
                "match".into(),
                Value::String(whole.map_or("", |w| w.as_str()).to_string()),
            );
            let idx = whole.map_or(0, |w| s[..w.start()].chars().count());
            m.insert("idx".into(), Value::from(idx));
            let groups = c
                .iter()
                .skip(1)
                .map(|g| g.map_or(Value::Null, |g| Value::String(g.as_str().to_string())))
                .collect();
            m.insert("captures".into(), Value::Array(groups));
            Value::Object(m)
        };
        Ok(Some(Cow::Owned(match self.kind {
            RegexKind::Match => Value::Bool(re.is_match(&s)),
            RegexKind::Find => re.captures(&s).map_or(Value::Null, found),
            RegexKind::FindAll => {
                let mut out = Vec::new();
                for c in re.captures_iter(&s) {
                    env.spend(1, self.name)?;
                    out.push(found(c));
                }
                Value::Array(out)
            }
        })))
    }
}

/// The pattern and options of a `regex` argument (a string or `{$regex, $options}`) and an
/// `options` argument; `None` when the regex is null or missing.
fn pattern(op: &str, regex: Option<&Value>, options: Option<&Value>) -> Result<Option<(String, String)>, DbError> {
    let extra = match options {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(o)) => o.clone(),
        Some(other) => {
            return Err(cmd(format!(
                "`{op}`: `options` must be a string, not {}",
                type_name(Some(other))
            )))
        }
    };
    match regex {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(p)) => Ok(Some((p.clone(), extra))),
        Some(Value::Object(m)) if m.contains_key("$regex") => {
            let p = m
                .get("$regex")
                .and_then(Value::as_str)
                .ok_or_else(|| cmd(format!("`{op}`: `$regex` must be a string")))?;
            let own = m.get("$options").and_then(Value::as_str).unwrap_or("");
            if !own.is_empty() && !extra.is_empty() {
                return Err(cmd(format!(
                    "`{op}`: give the options either in the regex or in `options`, not both"
                )));
            }
            Ok(Some((p.to_string(), format!("{own}{extra}"))))
        }
        Some(other) => Err(cmd(format!(
            "`{op}`: `regex` must be a string or a regular expression, not {}",
            type_name(Some(other))
        ))),
    }
}

/// `$replaceOne` / `$replaceAll`: literal (not regex) replacement; null if any argument is null.
pub(super) fn replace<'a>(all: bool, args: &'a [Expr; 3], root: &'a Value, env: &mut Env) -> Result<Val<'a>, DbError> {
    let op = if all { "$replaceAll" } else { "$replaceOne" };
    let mut strs = Vec::with_capacity(3);
    for (e, what) in args.iter().zip(["input", "find", "replacement"]) {
        match e.eval(root, env)?.as_deref() {
            None | Some(Value::Null) => return Ok(Some(Cow::Owned(Value::Null))),
            Some(Value::String(s)) => strs.push(s.clone()),
            other => {
                return Err(cmd(format!(
                    "`{op}`: `{what}` must be a string, not {}",
                    type_name(other)
                )))
            }
        }
    }
    let out = if all {
        strs[0].replace(&strs[1], &strs[2])
    } else {
        strs[0].replacen(&strs[1], &strs[2], 1)
    };
    env.spend(out.len() / 16, op)?;
    Ok(Some(Cow::Owned(Value::String(out))))
}
