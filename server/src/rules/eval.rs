//! Evaluating rule expressions: values, operators, `get()`, and where `doc` comes from (a real
//! document, values the query pins, or nowhere).
//!
//! Semantics (documented in docs/rules.md): values are JSON; a missing field reads as `null`;
//! reading a field of `null` *fails*. A failure is "unknown" in Kleene's three-valued logic: `||`
//! with a true side is true, `&&` with a false side is false, everything else involving it fails,
//! and a rule that fails denies. `!` never turns a failure into true.

use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{Number, Value};

use super::expr::{negate, CmpOp, Expr, Part, Var};
use super::DocLookup;
use crate::db::value::{as_date, compare_numbers, values_equal};

/// Most distinct documents `get()` reads while checking one request (CloudBase's limit).
pub const MAX_GET_DOCS: usize = 10;

/// Why an expression has no value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Fail {
    /// A runtime error (field of null, bad get() path, too many documents, wrong operand type).
    Unknown(String),
    /// The query does not pin this document path (only when `doc` comes from a query).
    NotPinned(Vec<String>),
}

fn unknown(why: impl Into<String>) -> Fail {
    Fail::Unknown(why.into())
}

pub(super) type Evaluated<'s> = Result<Cow<'s, Value>, Fail>;

/// Everything an expression can read except `doc`, shared by all evaluations of one request.
pub(super) struct Scope<'a> {
    pub auth: Value,
    pub now: Value,
    pub request: Value,
    pub lookup: &'a dyn DocLookup,
    /// Documents read by `get()` so far, by (collection, id).
    memo: RefCell<HashMap<(String, String), Value>>,
}

impl<'a> Scope<'a> {
    pub(super) fn new(auth: Value, now: Value, request: Value, lookup: &'a dyn DocLookup) -> Scope<'a> {
        Scope {
            auth,
            now,
            request,
            lookup,
            memo: RefCell::new(HashMap::new()),
        }
    }

    fn get(&self, path: &str) -> Result<Value, Fail> {
        let bad = || unknown("get() reads 'database.<collection>.<id>'");
        let rest = path.strip_prefix("database.").ok_or_else(bad)?;
        let (coll, id) = rest.split_once('.').ok_or_else(bad)?;
        if coll.is_empty() || id.is_empty() {
            return Err(bad());
        }
        let key = (coll.to_string(), id.to_string());
        if let Some(v) = self.memo.borrow().get(&key) {
            return Ok(v.clone());
        }
        if self.memo.borrow().len() >= MAX_GET_DOCS {
            return Err(unknown(format!(
                "get() may read at most {MAX_GET_DOCS} documents per request"
            )));
        }
        let v = self.lookup.get(coll, id).unwrap_or(Value::Null);
        self.memo.borrow_mut().insert(key, v.clone());
        Ok(v)
    }
}

/// Values of the document paths a query pins, for evaluating `doc` symbolically.
pub(super) type Pins = [(Vec<String>, Value)];

/// Where `doc` comes from.
#[derive(Clone, Copy)]
pub(super) enum DocSource<'s> {
    /// `doc` is not available (the expression is known not to use it).
    None,
    /// A real document (create).
    Concrete(&'s Value),
    /// Exactly these paths, with these values (a query's pins); any other use of `doc` fails.
    Pinned(&'s Pins),
}

pub(super) struct Eval<'s> {
    pub scope: &'s Scope<'s>,
    pub doc: DocSource<'s>,
}

/// JavaScript truthiness.
pub(super) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Order between two values of comparable types: numbers, strings (by Unicode code point, as the
/// database orders them), dates, and dates with numbers (milliseconds). `None` for anything else.
pub(super) fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b, as_date(a), as_date(b)) {
        (Value::Number(x), Value::Number(y), ..) => Some(compare_numbers(x, y)),
        (Value::String(x), Value::String(y), ..) => Some(x.as_bytes().cmp(y.as_bytes())),
        (_, _, Some(x), Some(y)) => Some(x.cmp(&y)),
        (_, Value::Number(y), Some(x), None) => Some(compare_numbers(&Number::from(x), y)),
        (Value::Number(x), _, None, Some(y)) => Some(compare_numbers(x, &Number::from(y))),
        _ => None,
    }
}

/// `a OP b` for two values.
pub(super) fn compare(op: CmpOp, a: &Value, b: &Value) -> bool {
    match op {
        CmpOp::Eq => values_equal(a, b),
        CmpOp::Ne => !values_equal(a, b),
        CmpOp::In => matches!(b, Value::Array(items) if items.iter().any(|x| values_equal(a, x))),
        CmpOp::Lt => order(a, b) == Some(Ordering::Less),
        CmpOp::Le => matches!(order(a, b), Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => order(a, b) == Some(Ordering::Greater),
        CmpOp::Ge => matches!(order(a, b), Some(Ordering::Greater | Ordering::Equal)),
    }
}

/// The path segment a key value names: strings as they are, non-negative integers in decimal.
pub(super) fn segment(key: &Value) -> Result<String, Fail> {
    match key {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => match n.as_u64() {
            Some(i) => Ok(i.to_string()),
            None => match n.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 9.0e15 => Ok((f as u64).to_string()),
                _ => Err(unknown("a member key must be a string or a non-negative integer")),
            },
        },
        _ => Err(unknown("a member key must be a string or a non-negative integer")),
    }
}

fn canonical_index(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// `v[seg]`: a field of an object, an element or the `length` of an array, the `length` of a
/// string (UTF-16 units, as JavaScript); `null` when absent; fails on `null`.
pub(super) fn member<'s>(v: Cow<'s, Value>, seg: &str) -> Evaluated<'s> {
    let absent = Ok(Cow::Owned(Value::Null));
    match v {
        Cow::Borrowed(b) => match b {
            Value::Null => Err(unknown(format!("cannot read `{seg}` of null"))),
            Value::Object(m) if as_date(b).is_none() => Ok(m.get(seg).map_or(Cow::Owned(Value::Null), Cow::Borrowed)),
            Value::Array(items) => match (seg, canonical_index(seg)) {
                ("length", _) => Ok(Cow::Owned(Value::from(items.len()))),
                (_, Some(i)) => Ok(items.get(i).map_or(Cow::Owned(Value::Null), Cow::Borrowed)),
                _ => absent,
            },
            Value::String(s) if seg == "length" => Ok(Cow::Owned(Value::from(s.encode_utf16().count()))),
            _ => absent,
        },
        Cow::Owned(o) => match o {
            Value::Null => Err(unknown(format!("cannot read `{seg}` of null"))),
            Value::Object(_) if as_date(&o).is_some() => absent,
            Value::Object(mut m) => Ok(Cow::Owned(m.remove(seg).unwrap_or(Value::Null))),
            Value::Array(mut items) => match (seg, canonical_index(seg)) {
                ("length", _) => Ok(Cow::Owned(Value::from(items.len()))),
                (_, Some(i)) if i < items.len() => Ok(Cow::Owned(items.swap_remove(i))),
                _ => absent,
            },
            Value::String(s) if seg == "length" => Ok(Cow::Owned(Value::from(s.encode_utf16().count()))),
            _ => absent,
        },
    }
}

/// A value as template strings print it; arrays and objects fail (JavaScript would print
/// `1,2` or `[object Object]`, never what a get() path wants).
fn to_text(v: &Value) -> Result<String, Fail> {
    Ok(match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), ..) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1.0e15 => (f as i64).to_string(),
            _ => n.to_string(),
        },
        Value::Array(_) | Value::Object(_) => return Err(unknown("only strings, numbers, booleans and null print")),
    })
}

/// If `e` is `doc` followed by `.name`/`[key]` accesses, the path it names (keys evaluated with
/// `ev`; a key that itself reads `doc` fails).
pub(super) fn doc_path(ev: &Eval<'_>, e: &Expr) -> Option<Result<Vec<String>, Fail>> {
    fn walk(ev: &Eval<'_>, e: &Expr, out: &mut Vec<String>) -> Option<Result<(), Fail>> {
        match e {
            Expr::Var(Var::Doc) => Some(Ok(())),
            Expr::Member(obj, key) => {
                let inner = walk(ev, obj, out)?;
                Some(inner.and_then(|()| {
                    if key.mentions_doc() {
                        return Err(unknown("a member key cannot read `doc`"));
                    }
                    let k = ev.eval(key)?;
                    out.push(segment(&k)?);
                    Ok(())
                }))
            }
            _ => None,
        }
    }
    let mut out = Vec::new();
    Some(walk(ev, e, &mut out)?.map(|()| out))
}

impl<'s> Eval<'s> {
    /// The value of `doc` at `path`.
    fn doc_at(&self, path: Vec<String>) -> Evaluated<'s> {
        match self.doc {
            DocSource::None => Err(unknown("`doc` is not available here")),
            DocSource::Concrete(doc) => {
                let mut v = Cow::Borrowed(doc);
                for seg in &path {
                    v = member(v, seg)?;
                }
                Ok(v)
            }
            DocSource::Pinned(pins) => match pins.iter().find(|(p, _)| *p == path) {
                Some((_, v)) => Ok(Cow::Borrowed(v)),
                None => Err(Fail::NotPinned(path)),
            },
        }
    }

    /// The value of `e`, or why it has none.
    pub(super) fn eval(&self, e: &Expr) -> Evaluated<'s> {
        match e {
            Expr::Lit(v) => Ok(Cow::Owned(v.clone())),
            Expr::Array(items) => items
                .iter()
                .map(|i| self.eval(i).map(Cow::into_owned))
                .collect::<Result<Vec<_>, _>>()
                .map(|v| Cow::Owned(Value::Array(v))),
            Expr::Template(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        Part::Str(s) => out.push_str(s),
                        Part::Expr(e) => out.push_str(&to_text(&*self.eval(e)?)?),
                    }
                }
                Ok(Cow::Owned(Value::String(out)))
            }
            Expr::Var(Var::Doc) => self.doc_at(Vec::new()),
            Expr::Var(Var::Auth) => Ok(Cow::Borrowed(&self.scope.auth)),
            Expr::Var(Var::Now) => Ok(Cow::Borrowed(&self.scope.now)),
            Expr::Var(Var::Request) => Ok(Cow::Borrowed(&self.scope.request)),
            Expr::Member(obj, key) => {
                // a query pins whole paths, so resolve the chain at once
                if let DocSource::Pinned(_) = self.doc {
                    if let Some(path) = doc_path(self, e) {
                        return self.doc_at(path?);
                    }
                }
                let o = self.eval(obj)?;
                let k = self.eval(key)?;
                member(o, &segment(&k)?)
            }
            Expr::Get(path) => match &*self.eval(path)? {
                Value::String(p) => self.scope.get(p).map(Cow::Owned),
                _ => Err(unknown("get() needs a string path")),
            },
            Expr::Not(inner) => Ok(Cow::Owned(Value::Bool(!truthy(&*self.eval(inner)?)))),
            Expr::Neg(inner) => match &*self.eval(inner)? {
                Value::Number(n) => negate(n)
                    .map(|m| Cow::Owned(Value::Number(m)))
                    .ok_or_else(|| unknown("number out of range")),
                _ => Err(unknown("`-` needs a number")),
            },
            Expr::Cmp(op, a, b) => {
                let (a, b) = (self.eval(a)?, self.eval(b)?);
                Ok(Cow::Owned(Value::Bool(compare(*op, &a, &b))))
            }
            Expr::And(items) => {
                // false wins over a failure; a failure wins over true
                let mut failed = None;
                for item in items {
                    match self.eval(item) {
                        Ok(v) if !truthy(&v) => return Ok(Cow::Owned(Value::Bool(false))),
                        Ok(_) => {}
                        Err(f) => {
                            failed.get_or_insert(f);
                        }
                    }
                }
                failed.map_or(Ok(Cow::Owned(Value::Bool(true))), Err)
            }
            Expr::Or(items) => {
                // true wins over a failure; a failure wins over false
                let mut failed = None;
                for item in items {
                    match self.eval(item) {
                        Ok(v) if truthy(&v) => return Ok(Cow::Owned(Value::Bool(true))),
                        Ok(_) => {}
                        Err(f) => {
                            failed.get_or_insert(f);
                        }
                    }
                }
                failed.map_or(Ok(Cow::Owned(Value::Bool(false))), Err)
            }
        }
    }

    /// True only if `e` evaluates to a truthy value.
    pub(super) fn holds(&self, e: &Expr) -> Result<bool, Fail> {
        self.eval(e).map(|v| truthy(&v))
    }
}
