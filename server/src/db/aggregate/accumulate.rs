//! Accumulators of `$group`, `$bucket` and `$bucketAuto` (`$sum $avg $min $max $first $last
//! $push $addToSet $stdDevPop $stdDevSamp $mergeObjects $count`), and the same operators used as
//! expressions over their arguments or over one array (`{$sum: "$items.price"}`).
//!
//! MongoDB semantics: `$sum` ignores non-numbers (nothing sums to 0) and keeps integers as
//! integers until they overflow; `$avg` of nothing is null; `$min`/`$max` ignore null and missing;
//! `$push`/`$addToSet` skip missing values; the standard deviations ignore non-numbers and are null
//! without enough values.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::{Map, Value};

use super::expr::{Env, Expr};
use super::values::{cmd, compare_vals, double, key_of, mem_size, Num, Val};
use crate::db::DbError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AccOp {
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    Push,
    AddToSet,
    StdDevPop,
    StdDevSamp,
    MergeObjects,
    Count,
}

const NAMES: &[(&str, AccOp)] = &[
    ("$sum", AccOp::Sum),
    ("$avg", AccOp::Avg),
    ("$min", AccOp::Min),
    ("$max", AccOp::Max),
    ("$first", AccOp::First),
    ("$last", AccOp::Last),
    ("$push", AccOp::Push),
    ("$addToSet", AccOp::AddToSet),
    ("$stdDevPop", AccOp::StdDevPop),
    ("$stdDevSamp", AccOp::StdDevSamp),
    ("$mergeObjects", AccOp::MergeObjects),
    ("$count", AccOp::Count),
];

/// Accumulators MongoDB has that this server does not.
const UNSUPPORTED: &[&str] = &[
    "$accumulator",
    "$top",
    "$topN",
    "$bottom",
    "$bottomN",
    "$firstN",
    "$lastN",
    "$maxN",
    "$minN",
    "$median",
    "$percentile",
];

impl AccOp {
    pub fn from_name(name: &str) -> Option<AccOp> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, op)| *op)
    }

    /// The accumulators that are also expression operators (`$first`/`$last` are array
    /// operators there, `$mergeObjects` has its own).
    pub fn from_expression_name(name: &str) -> Option<AccOp> {
        match AccOp::from_name(name)? {
            op @ (AccOp::Sum | AccOp::Avg | AccOp::Min | AccOp::Max | AccOp::StdDevPop | AccOp::StdDevSamp) => Some(op),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        NAMES.iter().find(|(_, op)| *op == self).map_or("?", |(n, _)| n)
    }
}

/// One `field: {$acc: expr}` of a group specification.
#[derive(Debug)]
pub(super) struct AccSpec {
    pub field: String,
    pub op: AccOp,
    pub arg: Expr,
}

impl AccSpec {
    /// Parses the `output`/accumulator fields of `$group` (without `_id`), `$bucket`, `$bucketAuto`.
    pub fn parse(stage: &str, field: &str, spec: &Value, scope: &mut super::expr::Scope) -> Result<AccSpec, DbError> {
        if field.is_empty() || field.contains('.') || field.starts_with('$') {
            return Err(cmd(format!(
                "`{stage}`: the field name `{field}` cannot be empty, contain `.` or start with `$`"
            )));
        }
        let m = match spec {
            Value::Object(m) if m.len() == 1 => m,
            _ => {
                return Err(cmd(format!(
                    "`{stage}`: the field `{field}` must be an accumulator object such as {{\"$sum\": 1}}"
                )))
            }
        };
        let (name, operand) = m.iter().next().ok_or_else(|| cmd("empty accumulator"))?;
        let op = match AccOp::from_name(name) {
            Some(op) => op,
            None if UNSUPPORTED.contains(&name.as_str()) => {
                return Err(DbError::NotSupported(format!(
                    "the accumulator `{name}` is not supported"
                )))
            }
            None => {
                return Err(cmd(format!(
                    "`{stage}`: unknown accumulator `{name}` for the field `{field}`"
                )))
            }
        };
        let arg = if op == AccOp::Count {
            if !matches!(operand, Value::Object(o) if o.is_empty()) {
                return Err(cmd("the `$count` accumulator takes an empty object: {\"$count\": {}}"));
            }
            Expr::Const(Value::Null)
        } else {
            if operand.is_array() {
                return Err(cmd(format!(
                    "`{name}` is an accumulator here: it takes one expression, not an array"
                )));
            }
            Expr::compile(operand, scope)?
        };
        Ok(AccSpec {
            field: field.to_string(),
            op,
            arg,
        })
    }
}

/// A sum kept exactly in integers while it fits, and as a compensated double.
#[derive(Default, Debug, Clone)]
pub(super) struct Summer {
    int: Option<i64>,
    overflowed: bool,
    sum: f64,
    comp: f64,
    has_double: bool,
    count: u64,
}

impl Summer {
    pub fn add(&mut self, n: Num) {
        self.count += 1;
        match n {
            Num::Int(i) => {
                if !self.overflowed {
                    match self.int.unwrap_or(0).checked_add(i) {
                        Some(s) => self.int = Some(s),
                        None => self.overflowed = true,
                    }
                }
                self.add_f(i as f64);
            }
            Num::Double(f) => {
                self.has_double = true;
                self.add_f(f);
            }
        }
    }

    // Neumaier's compensated summation
    fn add_f(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.comp += (self.sum - t) + x;
        } else {
            self.comp += (x - t) + self.sum;
        }
        self.sum = t;
    }

    pub fn total(&self) -> f64 {
        self.sum + self.comp
    }

    pub fn value(&self, op: &str) -> Result<Value, DbError> {
        if !self.has_double && !self.overflowed {
            return Ok(Value::from(self.int.unwrap_or(0)));
        }
        double(op, self.total())
    }
}

/// The running state of one accumulator in one group.
#[derive(Debug)]
pub(super) enum AccState {
    Sum(Summer),
    Avg(Summer),
    Min(Option<Value>),
    Max(Option<Value>),
    /// `None` until the first document; then its value (null if missing).
    First(Option<Value>),
    Last(Option<Value>),
    Push(Vec<Value>),
    AddToSet(HashSet<Vec<u8>>, Vec<Value>),
    StdDev {
        n: u64,
        mean: f64,
        m2: f64,
        sample: bool,
    },
    Merge(Map<String, Value>),
    Count(u64),
}

impl AccState {
    pub fn new(op: AccOp) -> AccState {
        match op {
            AccOp::Sum => AccState::Sum(Summer::default()),
            AccOp::Avg => AccState::Avg(Summer::default()),
            AccOp::Min => AccState::Min(None),
            AccOp::Max => AccState::Max(None),
            AccOp::First => AccState::First(None),
            AccOp::Last => AccState::Last(None),
            AccOp::Push => AccState::Push(Vec::new()),
            AccOp::AddToSet => AccState::AddToSet(HashSet::new(), Vec::new()),
            AccOp::StdDevPop | AccOp::StdDevSamp => AccState::StdDev {
                n: 0,
                mean: 0.0,
                m2: 0.0,
                sample: op == AccOp::StdDevSamp,
            },
            AccOp::MergeObjects => AccState::Merge(Map::new()),
            AccOp::Count => AccState::Count(0),
        }
    }

    /// Adds one input value; returns the change in the bytes this state holds.
    pub fn add(&mut self, v: Option<&Value>) -> Result<isize, DbError> {
        Ok(match self {
            AccState::Sum(s) | AccState::Avg(s) => {
                if let Some(n) = v.and_then(Num::of) {
                    s.add(n);
                }
                0
            }
            AccState::Min(cur) => keep_extreme(cur, v, std::cmp::Ordering::Less),
            AccState::Max(cur) => keep_extreme(cur, v, std::cmp::Ordering::Greater),
            AccState::First(cur) => {
                if cur.is_none() {
                    let x = v.cloned().unwrap_or(Value::Null);
                    let n = mem_size(&x) as isize;
                    *cur = Some(x);
                    n
                } else {
                    0
                }
            }
            AccState::Last(cur) => {
                let x = v.cloned().unwrap_or(Value::Null);
                let delta = mem_size(&x) as isize - cur.as_ref().map_or(0, mem_size) as isize;
                *cur = Some(x);
                delta
            }
            AccState::Push(items) => match v {
                None => 0,
                Some(x) => {
                    items.push(x.clone());
                    mem_size(x) as isize
                }
            },
            AccState::AddToSet(seen, items) => match v {
                None => 0,
                Some(x) => {
                    let k = key_of(Some(x));
                    let n = k.len() + mem_size(x);
                    if seen.insert(k) {
                        items.push(x.clone());
                        n as isize
                    } else {
                        0
                    }
                }
            },
            AccState::StdDev { n, mean, m2, .. } => {
                if let Some(x) = v.and_then(Num::of) {
                    // Welford's online algorithm
                    let x = x.f();
                    *n += 1;
                    let delta = x - *mean;
                    *mean += delta / *n as f64;
                    *m2 += delta * (x - *mean);
                }
                0
            }
            AccState::Merge(out) => {
                let before = out.len();
                super::ops::merge_into(out, v)?;
                let after = out.len();
                (after.saturating_sub(before) * 96) as isize + v.map_or(0, mem_size) as isize
            }
            AccState::Count(n) => {
                *n += 1;
                0
            }
        })
    }

    pub fn result(self, op: AccOp) -> Result<Value, DbError> {
        let name = op.name();
        Ok(match self {
            AccState::Sum(s) => s.value(name)?,
            AccState::Avg(s) => {
                if s.count == 0 {
                    Value::Null
                } else {
                    double(name, s.total() / s.count as f64)?
                }
            }
            AccState::Min(v) | AccState::Max(v) | AccState::First(v) | AccState::Last(v) => v.unwrap_or(Value::Null),
            AccState::Push(items) | AccState::AddToSet(_, items) => Value::Array(items),
            AccState::StdDev { n, m2, sample, .. } => {
                let d = if sample { n.saturating_sub(1) } else { n };
                if d == 0 {
                    Value::Null
                } else {
                    double(name, (m2 / d as f64).max(0.0).sqrt())?
                }
            }
            AccState::Merge(m) => Value::Object(m),
            AccState::Count(n) => Value::from(n),
        })
    }
}

/// `$min`/`$max`: keeps `v` if it is more extreme than `cur` (null and missing are ignored).
fn keep_extreme(cur: &mut Option<Value>, v: Option<&Value>, want: std::cmp::Ordering) -> isize {
    match v {
        None | Some(Value::Null) => 0,
        Some(x) if cur.is_none() || compare_vals(Some(x), cur.as_ref()) == want => {
            let old = cur.as_ref().map_or(0, mem_size) as isize;
            *cur = Some(x.clone());
            mem_size(x) as isize - old
        }
        Some(_) => 0,
    }
}

/// `$sum`/`$avg`/`$min`/`$max`/`$stdDev*` as expressions: over the elements of the one argument
/// if it is an array, otherwise over the arguments.
pub(super) fn eval_expr<'a>(op: AccOp, args: &'a [Expr], root: &'a Value, env: &mut Env) -> Result<Val<'a>, DbError> {
    let mut state = AccState::new(op);
    if let [single] = args {
        match single.eval(root, env)?.as_deref() {
            Some(Value::Array(items)) => {
                env.spend(items.len(), op.name())?;
                for x in items {
                    state.add(Some(x))?;
                }
            }
            other => {
                state.add(other)?;
            }
        }
    } else {
        for a in args {
            let v = a.eval(root, env)?;
            // with several arguments, arrays are values like any other (not numbers)
            state.add(v.as_deref())?;
        }
    }
    Ok(Some(Cow::Owned(state.result(op)?)))
}
