//! Aggregation expressions: compiling `$field` paths, `$$variables`, literals, expression objects
//! and operator objects (MongoDB syntax) into a tree once per pipeline, and evaluating that tree
//! against each document. The operators themselves live in `ops.rs` (arithmetic, comparison,
//! strings, arrays, sets, objects, conversions), `date.rs` and `accumulate.rs`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::accumulate::AccOp;
use super::date::DateExpr;
use super::ops::{self, Op};
use super::values::{cmd, get_path, split_path, truthy, Val};
use crate::db::value::as_date;
use crate::db::DbError;

/// Most units of work (array elements visited or built, string bytes built / 16) one evaluation
/// of one expression on one document may take: a `$reduce` that rebuilds a large array on every
/// step is refused instead of running for hours.
pub(super) const MAX_WORK: u64 = 10_000_000;

/// Variables and clock of an evaluation.
pub(super) struct Env {
    vars: Vec<(String, Value)>,
    pub now: i64,
    work: u64,
}

impl Env {
    pub fn new(now: i64) -> Env {
        Env {
            vars: Vec::new(),
            now,
            work: 0,
        }
    }

    /// An environment with variables already bound (`$lookup`'s `let`).
    pub fn with_vars(now: i64, vars: Vec<(String, Value)>) -> Env {
        Env { vars, now, work: 0 }
    }

    pub fn vars(&self) -> &[(String, Value)] {
        &self.vars
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub(super) fn push(&mut self, name: &str, v: Value) {
        self.vars.push((name.to_string(), v));
    }

    pub(super) fn pop(&mut self) {
        self.vars.pop();
    }

    /// Counts `n` units of work of `op` against [`MAX_WORK`].
    pub(super) fn spend(&mut self, n: usize, op: &str) -> Result<(), DbError> {
        self.work = self.work.saturating_add(n as u64);
        if self.work > MAX_WORK {
            return Err(cmd(format!(
                "`{op}` needs more than {MAX_WORK} steps on one document; simplify the expression"
            )));
        }
        Ok(())
    }
}

/// Names of the user variables visible where an expression is compiled.
#[derive(Clone, Default)]
pub(super) struct Scope {
    names: Vec<String>,
}

impl Scope {
    pub fn new(names: Vec<String>) -> Scope {
        Scope { names }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    fn with<T>(&mut self, names: &[String], f: impl FnOnce(&mut Scope) -> T) -> T {
        let len = self.names.len();
        self.names.extend(names.iter().cloned());
        let out = f(self);
        self.names.truncate(len);
        out
    }
}

/// What an expression reads: top-level fields of the document, the whole document, variables.
#[derive(Default, Debug)]
pub(super) struct Deps {
    pub fields: Vec<String>,
    pub whole: bool,
    /// User variables used but not bound inside the expression.
    pub vars: Vec<String>,
}

impl Deps {
    pub fn field(&mut self, head: &str) {
        if !self.fields.iter().any(|f| f == head) {
            self.fields.push(head.to_string());
        }
    }
}

/// A compiled expression.
#[derive(Debug)]
pub(super) enum Expr {
    Const(Value),
    /// `$$REMOVE`: a missing value.
    Remove,
    /// `$a.b.c`: a path on the current document.
    Field(Vec<String>),
    /// `$$ROOT` / `$$CURRENT`, optionally with a path.
    Root(Vec<String>),
    /// `$$NOW`.
    Now,
    /// `$$name.path`.
    Var(String, Vec<String>),
    Object(Vec<(String, Expr)>),
    Array(Vec<Expr>),
    Op(Op, Vec<Expr>),
    /// `$sum`, `$avg`, ... used as expressions (over their arguments or one array).
    Acc(AccOp, Vec<Expr>),
    Cond(Box<[Expr; 3]>),
    Switch(Vec<(Expr, Expr)>, Option<Box<Expr>>),
    Let(Vec<(String, Expr)>, Box<Expr>),
    Map {
        input: Box<Expr>,
        var: String,
        body: Box<Expr>,
    },
    Filter {
        input: Box<Expr>,
        var: String,
        cond: Box<Expr>,
        limit: Option<Box<Expr>>,
    },
    Reduce {
        input: Box<Expr>,
        initial: Box<Expr>,
        body: Box<Expr>,
    },
    Zip {
        inputs: Vec<Expr>,
        longest: bool,
        defaults: Option<Vec<Expr>>,
    },
    Trim {
        input: Box<Expr>,
        chars: Option<Box<Expr>>,
        left: bool,
        right: bool,
    },
    Date(Box<DateExpr>),
    /// `$regexMatch`, `$regexFind`, `$regexFindAll`.
    Regex(Box<ops::RegexExpr>),
    /// `$replaceOne`, `$replaceAll`.
    Replace {
        all: bool,
        args: Box<[Expr; 3]>,
    },
}

/// MongoDB expression operators this server does not implement (a clear error names them).
const UNSUPPORTED: &[&str] = &[
    "$meta",
    "$function",
    "$accumulator",
    "$getField",
    "$setField",
    "$unsetField",
    "$rand",
    "$sampleRate",
    "$binarySize",
    "$bsonSize",
    "$convert",
    "$dateAdd",
    "$dateSubtract",
    "$dateDiff",
    "$dateTrunc",
    "$sortArray",
    "$maxN",
    "$minN",
    "$firstN",
    "$lastN",
    "$top",
    "$topN",
    "$bottom",
    "$bottomN",
    "$median",
    "$percentile",
    "$tsIncrement",
    "$tsSecond",
    "$toObjectId",
    "$toDecimal",
    "$sin",
    "$cos",
    "$tan",
    "$asin",
    "$acos",
    "$atan",
    "$atan2",
    "$asinh",
    "$acosh",
    "$atanh",
    "$sinh",
    "$cosh",
    "$tanh",
    "$degreesToRadians",
    "$radiansToDegrees",
    "$bitAnd",
    "$bitOr",
    "$bitXor",
    "$bitNot",
];

/// The arguments of an operator: an array is the argument list, anything else one argument.
pub(super) fn arg_list(operand: &Value) -> &[Value] {
    match operand {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    }
}

/// User variable names: a lowercase ASCII letter or a non-ASCII character first, then letters,
/// digits, `_` or non-ASCII characters.
fn check_var_name(name: &str, what: &str) -> Result<(), DbError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || !c.is_ascii());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii()) {
        Ok(())
    } else {
        Err(cmd(format!(
            "{what}: invalid variable name `{name}` (it must start with a lowercase letter and contain only letters, digits and `_`)"
        )))
    }
}

/// An object operand with named fields: each allowed name once, the required ones present.
pub(super) fn named_args(
    op: &str,
    operand: &Value,
    allowed: &[&str],
    required: &[&str],
) -> Result<Map<String, Value>, DbError> {
    let m = match operand {
        Value::Object(m) if as_date(operand).is_none() => m,
        _ => return Err(cmd(format!("`{op}` needs an object of named arguments"))),
    };
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(cmd(format!("`{op}` does not take an argument named `{k}`")));
        }
    }
    for r in required {
        if !m.contains_key(*r) {
            return Err(cmd(format!("`{op}` needs `{r}`")));
        }
    }
    Ok(m.clone())
}

impl Expr {
    /// Compiles an (already normalized) expression; `scope` names the variables in reach.
    pub fn compile(v: &Value, scope: &mut Scope) -> Result<Expr, DbError> {
        match v {
            Value::String(s) if s.starts_with("$$") => compile_var(&s[2..], scope),
            Value::String(s) if s.starts_with('$') => Ok(Expr::Field(split_path(&s[1..], "field path")?)),
            Value::Array(items) => {
                let items = items
                    .iter()
                    .map(|i| Expr::compile(i, scope))
                    .collect::<Result<Vec<_>, _>>()?;
                if items.iter().all(|e| matches!(e, Expr::Const(_))) {
                    return Ok(Expr::Const(Value::Array(
                        items
                            .into_iter()
                            .filter_map(|e| match e {
                                Expr::Const(v) => Some(v),
                                _ => None,
                            })
                            .collect(),
                    )));
                }
                Ok(Expr::Array(items))
            }
            Value::Object(_) if as_date(v).is_some() => Ok(Expr::Const(v.clone())),
            Value::Object(m) => {
                if let Some((k, operand)) = m.iter().next().filter(|(k, _)| k.starts_with('$')) {
                    if m.len() != 1 {
                        return Err(cmd(format!(
                            "an expression object with the operator `{k}` must have exactly one field, found {}",
                            m.len()
                        )));
                    }
                    return compile_op(k, operand, scope);
                }
                let mut fields = Vec::with_capacity(m.len());
                for (k, val) in m {
                    if k.starts_with('$') {
                        return Err(cmd(format!(
                            "`{k}`: an expression object cannot mix operators and field names"
                        )));
                    }
                    if k.contains('.') || k.is_empty() {
                        return Err(cmd(format!(
                            "`{k}`: field names in an expression object cannot be empty or contain `.`"
                        )));
                    }
                    fields.push((k.clone(), Expr::compile(val, scope)?));
                }
                if fields.iter().all(|(_, e)| matches!(e, Expr::Const(_))) {
                    let mut out = Map::new();
                    for (k, e) in fields {
                        if let Expr::Const(v) = e {
                            out.insert(k, v);
                        }
                    }
                    return Ok(Expr::Const(Value::Object(out)));
                }
                Ok(Expr::Object(fields))
            }
            other => Ok(Expr::Const(other.clone())),
        }
    }

    /// Evaluates against `root` (`$$ROOT`, `$$CURRENT`) with a fresh work budget.
    pub fn evaluate<'a>(&'a self, root: &'a Value, env: &mut Env) -> Result<Val<'a>, DbError> {
        env.work = 0;
        self.eval(root, env)
    }

    pub(super) fn eval<'a>(&'a self, root: &'a Value, env: &mut Env) -> Result<Val<'a>, DbError> {
        Ok(match self {
            Expr::Const(v) => Some(Cow::Borrowed(v)),
            Expr::Remove => None,
            Expr::Field(path) | Expr::Root(path) => get_path(root, path),
            Expr::Now => Some(Cow::Owned(super::values::date(env.now))),
            Expr::Var(name, path) => match env.get(name) {
                Some(v) => get_path(v, path).map(|c| Cow::Owned(c.into_owned())),
                None => return Err(cmd(format!("use of undefined variable `{name}`"))),
            },
            Expr::Object(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for (k, e) in fields {
                    if let Some(v) = e.eval(root, env)? {
                        out.insert(k.clone(), v.into_owned());
                    }
                }
                Some(Cow::Owned(Value::Object(out)))
            }
            Expr::Array(items) => {
                env.spend(items.len(), "array")?;
                let mut out = Vec::with_capacity(items.len());
                for e in items {
                    // a missing element of an array literal becomes null
                    out.push(e.eval(root, env)?.map_or(Value::Null, Cow::into_owned));
                }
                Some(Cow::Owned(Value::Array(out)))
            }
            Expr::Op(op, args) => ops::eval(*op, args, root, env)?,
            Expr::Acc(op, args) => super::accumulate::eval_expr(*op, args, root, env)?,
            Expr::Cond(parts) => {
                let [c, then, otherwise] = &**parts;
                let cond = c.eval(root, env)?;
                if truthy(cond.as_deref()) {
                    then.eval(root, env)?
                } else {
                    otherwise.eval(root, env)?
                }
            }
            Expr::Switch(branches, default) => {
                for (case, then) in branches {
                    if truthy(case.eval(root, env)?.as_deref()) {
                        return then.eval(root, env);
                    }
                }
                match default {
                    Some(d) => d.eval(root, env)?,
                    None => return Err(cmd("`$switch` found no branch that matches and has no `default`")),
                }
            }
            Expr::Let(vars, body) => {
                let mut values = Vec::with_capacity(vars.len());
                for (name, e) in vars {
                    values.push((name, e.eval(root, env)?.map_or(Value::Null, Cow::into_owned)));
                }
                let n = values.len();
                for (name, v) in values {
                    env.push(name, v);
                }
                let out = body.eval(root, env).map(|v| v.map(|c| Cow::Owned(c.into_owned())));
                for _ in 0..n {
                    env.pop();
                }
                out?
            }
            Expr::Map { input, var, body } => {
                let Some(items) = array_input("$map", input.eval(root, env)?)? else {
                    return Ok(Some(Cow::Owned(Value::Null)));
                };
                env.spend(items.len(), "$map")?;
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    env.push(var, item);
                    let v = body.eval(root, env).map(|v| v.map_or(Value::Null, Cow::into_owned));
                    env.pop();
                    out.push(v?);
                }
                Some(Cow::Owned(Value::Array(out)))
            }
            Expr::Filter {
                input,
                var,
                cond,
                limit,
            } => {
                let Some(items) = array_input("$filter", input.eval(root, env)?)? else {
                    return Ok(Some(Cow::Owned(Value::Null)));
                };
                let limit = match limit {
                    None => usize::MAX,
                    Some(l) => match l.eval(root, env)?.as_deref() {
                        None | Some(Value::Null) => usize::MAX,
                        Some(v) => match super::values::Num::of(v).and_then(|n| n.exact_int()) {
                            Some(n) if n >= 1 => n as usize,
                            _ => return Err(cmd("`$filter`: `limit` must be a positive integer")),
                        },
                    },
                };
                env.spend(items.len(), "$filter")?;
                let mut out = Vec::new();
                for item in items {
                    if out.len() >= limit {
                        break;
                    }
                    env.push(var, item);
                    let keep = cond.eval(root, env).map(|v| truthy(v.as_deref()));
                    let item = env.vars.pop().map(|(_, v)| v);
                    if keep? {
                        out.extend(item);
                    }
                }
                Some(Cow::Owned(Value::Array(out)))
            }
            Expr::Reduce { input, initial, body } => {
                let Some(items) = array_input("$reduce", input.eval(root, env)?)? else {
                    return Ok(Some(Cow::Owned(Value::Null)));
                };
                let mut acc = initial.eval(root, env)?.map_or(Value::Null, Cow::into_owned);
                env.spend(items.len(), "$reduce")?;
                for item in items {
                    env.push("value", acc);
                    env.push("this", item);
                    let next = body.eval(root, env).map(|v| v.map_or(Value::Null, Cow::into_owned));
                    env.pop();
                    env.pop();
                    acc = next?;
                    env.spend(work_of(&acc), "$reduce")?;
                }
                Some(Cow::Owned(acc))
            }
            Expr::Zip {
                inputs,
                longest,
                defaults,
            } => ops::zip(inputs, *longest, defaults.as_deref(), root, env)?,
            Expr::Trim {
                input,
                chars,
                left,
                right,
            } => ops::trim(input, chars.as_deref(), *left, *right, root, env)?,
            Expr::Date(d) => d.eval(root, env)?,
            Expr::Regex(r) => r.eval(root, env)?,
            Expr::Replace { all, args } => ops::replace(*all, args, root, env)?,
        })
    }

    /// Adds what this expression reads to `d`; `bound` are variables bound around it.
    pub fn deps(&self, bound: &mut Vec<String>, d: &mut Deps) {
        match self {
            Expr::Const(_) | Expr::Remove | Expr::Now => {}
            Expr::Field(path) | Expr::Root(path) => match path.first() {
                Some(head) => d.field(head),
                None => d.whole = true,
            },
            Expr::Var(name, _) => {
                if !bound.contains(name) && !d.vars.contains(name) {
                    d.vars.push(name.clone());
                }
            }
            Expr::Object(fields) => fields.iter().for_each(|(_, e)| e.deps(bound, d)),
            Expr::Array(items) | Expr::Op(_, items) | Expr::Acc(_, items) => {
                items.iter().for_each(|e| e.deps(bound, d))
            }
            Expr::Cond(parts) => parts.iter().for_each(|e| e.deps(bound, d)),
            Expr::Switch(branches, default) => {
                for (c, t) in branches {
                    c.deps(bound, d);
                    t.deps(bound, d);
                }
                if let Some(e) = default {
                    e.deps(bound, d);
                }
            }
            Expr::Let(vars, body) => {
                vars.iter().for_each(|(_, e)| e.deps(bound, d));
                let len = bound.len();
                bound.extend(vars.iter().map(|(n, _)| n.clone()));
                body.deps(bound, d);
                bound.truncate(len);
            }
            Expr::Map { input, var, body } => {
                input.deps(bound, d);
                bound.push(var.clone());
                body.deps(bound, d);
                bound.pop();
            }
            Expr::Filter {
                input,
                var,
                cond,
                limit,
            } => {
                input.deps(bound, d);
                if let Some(l) = limit {
                    l.deps(bound, d);
                }
                bound.push(var.clone());
                cond.deps(bound, d);
                bound.pop();
            }
            Expr::Reduce { input, initial, body } => {
                input.deps(bound, d);
                initial.deps(bound, d);
                bound.push("value".into());
                bound.push("this".into());
                body.deps(bound, d);
                bound.truncate(bound.len() - 2);
            }
            Expr::Zip { inputs, defaults, .. } => {
                inputs.iter().for_each(|e| e.deps(bound, d));
                defaults.iter().flatten().for_each(|e| e.deps(bound, d));
            }
            Expr::Trim { input, chars, .. } => {
                input.deps(bound, d);
                if let Some(c) = chars {
                    c.deps(bound, d);
                }
            }
            Expr::Date(de) => de.deps(bound, d),
            Expr::Regex(r) => r.deps(bound, d),
            Expr::Replace { args, .. } => args.iter().for_each(|e| e.deps(bound, d)),
        }
    }
}

/// Work units of a value built by an expression (for the [`MAX_WORK`] budget).
fn work_of(v: &Value) -> usize {
    match v {
        Value::Array(items) => items.len(),
        Value::String(s) => s.len() / 16,
        Value::Object(m) => m.len(),
        _ => 0,
    }
}

/// The array operand of `$map`/`$filter`/`$reduce`: `None` for null or missing (the result is
/// then null), an error for anything else that is not an array.
fn array_input(op: &str, v: Val<'_>) -> Result<Option<Vec<Value>>, DbError> {
    match v.as_deref() {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(_)) => match v.map(Cow::into_owned) {
            Some(Value::Array(items)) => Ok(Some(items)),
            _ => Ok(None),
        },
        Some(other) => Err(cmd(format!(
            "`{op}`: `input` must be an array, not {}",
            super::values::type_name(Some(other))
        ))),
    }
}

fn compile_var(s: &str, scope: &mut Scope) -> Result<Expr, DbError> {
    let mut parts = s.split('.');
    let name = parts.next().unwrap_or_default();
    let rest = s.get(name.len() + 1..).unwrap_or("");
    let path = if rest.is_empty() && !s.contains('.') {
        Vec::new()
    } else {
        split_path(rest, &format!("`$${name}`"))?
    };
    match name {
        "ROOT" | "CURRENT" => Ok(Expr::Root(path)),
        "REMOVE" if path.is_empty() => Ok(Expr::Remove),
        "NOW" if path.is_empty() => Ok(Expr::Now),
        "" => Err(cmd("`$$` must be followed by a variable name")),
        _ if scope.names.iter().any(|n| n == name) => Ok(Expr::Var(name.to_string(), path)),
        _ => Err(cmd(format!("use of undefined variable `$${name}`"))),
    }
}

fn compile_args(op: &str, operand: &Value, min: usize, max: usize, scope: &mut Scope) -> Result<Vec<Expr>, DbError> {
    let args = arg_list(operand);
    if args.len() < min || args.len() > max {
        let want = match (min, max) {
            (a, b) if a == b => format!("exactly {a}"),
            (a, usize::MAX) => format!("at least {a}"),
            (a, b) => format!("{a} to {b}"),
        };
        return Err(cmd(format!(
            "`{op}` takes {want} argument{}, got {}",
            if max == 1 { "" } else { "s" },
            args.len()
        )));
    }
    args.iter().map(|a| Expr::compile(a, scope)).collect()
}

fn compile_op(name: &str, operand: &Value, scope: &mut Scope) -> Result<Expr, DbError> {
    if let Some((op, min, max)) = ops::lookup(name) {
        return Ok(Expr::Op(op, compile_args(name, operand, min, max, scope)?));
    }
    if let Some(acc) = AccOp::from_expression_name(name) {
        let args = arg_list(operand);
        if args.is_empty() {
            return Err(cmd(format!("`{name}` needs at least one argument")));
        }
        return Ok(Expr::Acc(acc, compile_args(name, operand, 1, usize::MAX, scope)?));
    }
    if let Some(d) = DateExpr::compile(name, operand, scope)? {
        return Ok(Expr::Date(Box::new(d)));
    }
    let boxed = |v: &Value, scope: &mut Scope| Expr::compile(v, scope).map(Box::new);
    Ok(match name {
        "$literal" => Expr::Const(operand.clone()),
        "$cond" => {
            let (c, t, e) = match operand {
                Value::Array(items) if items.len() == 3 => (&items[0], &items[1], &items[2]),
                Value::Object(_) if as_date(operand).is_none() => {
                    let m = named_args("$cond", operand, &["if", "then", "else"], &["if", "then", "else"])?;
                    return Ok(Expr::Cond(Box::new([
                        Expr::compile(&m["if"], scope)?,
                        Expr::compile(&m["then"], scope)?,
                        Expr::compile(&m["else"], scope)?,
                    ])));
                }
                _ => return Err(cmd("`$cond` needs [if, then, else] or {if, then, else}")),
            };
            Expr::Cond(Box::new([
                Expr::compile(c, scope)?,
                Expr::compile(t, scope)?,
                Expr::compile(e, scope)?,
            ]))
        }
        "$switch" => {
            let m = named_args("$switch", operand, &["branches", "default"], &["branches"])?;
            let items = m["branches"]
                .as_array()
                .ok_or_else(|| cmd("`$switch`: `branches` must be an array of {case, then}"))?;
            let mut branches = Vec::with_capacity(items.len());
            for b in items {
                let b = named_args("$switch branch", b, &["case", "then"], &["case", "then"])?;
                branches.push((Expr::compile(&b["case"], scope)?, Expr::compile(&b["then"], scope)?));
            }
            let default = m.get("default").map(|d| boxed(d, scope)).transpose()?;
            Expr::Switch(branches, default)
        }
        "$let" => {
            let m = named_args("$let", operand, &["vars", "in"], &["vars", "in"])?;
            let vars = match &m["vars"] {
                Value::Object(v) => v,
                _ => return Err(cmd("`$let`: `vars` must be an object")),
            };
            let mut compiled = Vec::with_capacity(vars.len());
            for (n, e) in vars {
                check_var_name(n, "$let")?;
                compiled.push((n.clone(), Expr::compile(e, scope)?));
            }
            let names: Vec<String> = compiled.iter().map(|(n, _)| n.clone()).collect();
            let body = scope.with(&names, |s| boxed(&m["in"], s))?;
            Expr::Let(compiled, body)
        }
        "$map" => {
            let m = named_args("$map", operand, &["input", "as", "in"], &["input", "in"])?;
            let var = var_name("$map", m.get("as"))?;
            let input = boxed(&m["input"], scope)?;
            let body = scope.with(std::slice::from_ref(&var), |s| boxed(&m["in"], s))?;
            Expr::Map { input, var, body }
        }
        "$filter" => {
            let m = named_args(
                "$filter",
                operand,
                &["input", "as", "cond", "limit"],
                &["input", "cond"],
            )?;
            let var = var_name("$filter", m.get("as"))?;
            let input = boxed(&m["input"], scope)?;
            let limit = m.get("limit").map(|l| boxed(l, scope)).transpose()?;
            let cond = scope.with(std::slice::from_ref(&var), |s| boxed(&m["cond"], s))?;
            Expr::Filter {
                input,
                var,
                cond,
                limit,
            }
        }
        "$reduce" => {
            let m = named_args(
                "$reduce",
                operand,
                &["input", "initialValue", "in"],
                &["input", "initialValue", "in"],
            )?;
            let input = boxed(&m["input"], scope)?;
            let initial = boxed(&m["initialValue"], scope)?;
            let body = scope.with(&["value".to_string(), "this".to_string()], |s| boxed(&m["in"], s))?;
            Expr::Reduce { input, initial, body }
        }
        "$zip" => {
            let m = named_args(
                "$zip",
                operand,
                &["inputs", "useLongestLength", "defaults"],
                &["inputs"],
            )?;
            let inputs = match &m["inputs"] {
                Value::Array(items) => items
                    .iter()
                    .map(|i| Expr::compile(i, scope))
                    .collect::<Result<Vec<_>, _>>()?,
                _ => return Err(cmd("`$zip`: `inputs` must be an array of expressions")),
            };
            let longest = match m.get("useLongestLength") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(cmd("`$zip`: `useLongestLength` must be a boolean")),
            };
            let defaults = match m.get("defaults") {
                None => None,
                Some(_) if !longest => return Err(cmd("`$zip`: `defaults` needs `useLongestLength: true`")),
                Some(Value::Array(items)) if items.len() == inputs.len() => Some(
                    items
                        .iter()
                        .map(|i| Expr::compile(i, scope))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                Some(_) => return Err(cmd("`$zip`: `defaults` must be an array as long as `inputs`")),
            };
            Expr::Zip {
                inputs,
                longest,
                defaults,
            }
        }
        "$trim" | "$ltrim" | "$rtrim" => {
            let m = named_args(name, operand, &["input", "chars"], &["input"])?;
            Expr::Trim {
                input: boxed(&m["input"], scope)?,
                chars: m.get("chars").map(|c| boxed(c, scope)).transpose()?,
                left: name != "$rtrim",
                right: name != "$ltrim",
            }
        }
        "$regexMatch" | "$regexFind" | "$regexFindAll" => {
            Expr::Regex(Box::new(ops::RegexExpr::compile(name, operand, scope)?))
        }
        "$replaceOne" | "$replaceAll" => {
            let m = named_args(
                name,
                operand,
                &["input", "find", "replacement"],
                &["input", "find", "replacement"],
            )?;
            Expr::Replace {
                all: name == "$replaceAll",
                args: Box::new([
                    Expr::compile(&m["input"], scope)?,
                    Expr::compile(&m["find"], scope)?,
                    Expr::compile(&m["replacement"], scope)?,
                ]),
            }
        }
        n if UNSUPPORTED.contains(&n) => {
            return Err(DbError::NotSupported(format!(
                "the expression operator `{n}` is not supported"
            )))
        }
        n => return Err(cmd(format!("unknown expression operator `{n}`"))),
    })
}

fn var_name(op: &str, v: Option<&Value>) -> Result<String, DbError> {
    match v {
        None => Ok("this".into()),
        Some(Value::String(s)) => {
            check_var_name(s, op)?;
            Ok(s.clone())
        }
        Some(_) => Err(cmd(format!("`{op}`: `as` must be a variable name"))),
    }
}

#[cfg(test)]
mod tests;
