//! The compiled form of a query: a tree of nodes over dot paths and leaf tests, and its evaluation.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::Value;

use super::{ElementFilter, Near};
use crate::db::geo::{Geometry, Within};
use crate::db::value::{as_date, compare, type_rank, values_equal};

/// A condition tree. `Field` applies a test to every value a path reaches (MongoDB's implicit
/// array traversal); `Value` applies a test to the value at hand (`$elemMatch`/`$pull` operators).
pub(super) enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Nor(Vec<Node>),
    Not(Box<Node>),
    Field(Path, Test),
    Value(Test),
    /// `$near`/`$nearSphere` on a path: the document's nearest geometry there is in range.
    Near(Path, Box<Near>),
}

impl Node {
    /// Adds the top-level fields this node reads to `out`.
    pub(super) fn fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Node::And(nodes) | Node::Or(nodes) | Node::Nor(nodes) => nodes.iter().for_each(|n| n.fields(out)),
            Node::Not(node) => node.fields(out),
            Node::Field(path, _) | Node::Near(path, _) => out.push(path.head()),
            Node::Value(_) => {}
        }
    }

    pub(super) fn eval(&self, v: &Value) -> bool {
        match self {
            Node::And(nodes) => nodes.iter().all(|n| n.eval(v)),
            Node::Or(nodes) => nodes.iter().any(|n| n.eval(v)),
            Node::Nor(nodes) => !nodes.iter().any(|n| n.eval(v)),
            Node::Not(node) => !node.eval(v),
            Node::Field(path, test) => path.any(v, &mut |x| test.on_path(x)),
            Node::Value(test) => test.on_value(v),
            Node::Near(path, near) => distance(path, v, near).is_some_and(|d| near.min <= d && d <= near.max),
        }
    }
}

/// The smallest distance (radians) from the centre of `near` to a geometry `path` reaches in `doc`
/// (a GeoJSON value, or an array of them); `None` when there is none.
pub(super) fn distance(path: &Path, doc: &Value, near: &Near) -> Option<f64> {
    nearest(path, doc, near).map(|(d, _)| d)
}

/// The geometry `path` reaches in `doc` that is nearest to the centre of `near` (the first of
/// equally near ones), with its distance in radians.
pub(super) fn nearest<'a>(path: &Path, doc: &'a Value, near: &Near) -> Option<(f64, &'a Value)> {
    let mut best: Option<(f64, &'a Value)> = None;
    let mut consider = |v: &'a Value| {
        if let Some(g) = Geometry::of_value(v) {
            let d = g.distance(near.center);
            if best.is_none_or(|(b, _)| d < b) {
                best = Some((d, v));
            }
        }
    };
    path.any(doc, &mut |v| {
        match v {
            Some(Value::Array(items)) => items.iter().for_each(&mut consider),
            Some(other) => consider(other),
            None => {}
        }
        false
    });
    best
}

/// One component of a dot path; `index` is set when it is a canonical array index.
#[derive(Clone)]
struct Seg {
    name: String,
    index: Option<usize>,
}

/// A parsed dot path such as `a.b.0.c`.
#[derive(Clone)]
pub(super) struct Path {
    raw: String,
    segs: Vec<Seg>,
}

impl Path {
    /// The top-level field the path starts in.
    pub(super) fn head(&self) -> &str {
        self.segs.first().map_or("", |s| s.name.as_str())
    }

    pub(super) fn parse(raw: &str) -> Path {
        let segs = raw
            .split('.')
            .map(|s| {
                let canonical =
                    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
                Seg {
                    name: s.to_string(),
                    index: if canonical { s.parse().ok() } else { None },
                }
            })
            .collect();
        Path {
            raw: raw.to_string(),
            segs,
        }
    }

    pub(super) fn raw(&self) -> &str {
        &self.raw
    }

    /// Calls `f` for every value the path reaches in `doc` (`None` for a missing value), with
    /// MongoDB's traversal of arrays; stops and returns true as soon as `f` does.
    pub(super) fn any<'a, F>(&self, doc: &'a Value, f: &mut F) -> bool
    where
        F: FnMut(Option<&'a Value>) -> bool,
    {
        walk(doc, &self.segs, f)
    }
}

fn walk<'a, F>(v: &'a Value, segs: &[Seg], f: &mut F) -> bool
where
    F: FnMut(Option<&'a Value>) -> bool,
{
    let Some((seg, rest)) = segs.split_first() else {
        return f(Some(v));
    };
    match v {
        Value::Object(m) if as_date(v).is_none() => match m.get(&seg.name) {
            Some(child) => walk(child, rest, f),
            None => f(None),
        },
        Value::Array(items) => {
            let mut reached = false;
            if let Some(child) = seg.index.and_then(|i| items.get(i)) {
                reached = true;
                if walk(child, rest, f) {
                    return true;
                }
            }
            // a field name applies to every object element (nested arrays are not entered)
            let mut missing = false;
            for item in items {
                if let Value::Object(m) = item {
                    if as_date(item).is_some() {
                        continue;
                    }
                    match m.get(&seg.name) {
                        Some(child) => {
                            reached = true;
                            if walk(child, rest, f) {
                                return true;
                            }
                        }
                        None => missing = true,
                    }
                }
            }
            if !reached || (missing && seg.index.is_none()) {
                return f(None);
            }
            false
        }
        _ => f(None),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A test on one value.
pub(super) enum Test {
    Eq(Value),
    Cmp(CmpOp, Value),
    In(InList),
    Regex(Regex),
    Exists,
    Size(usize),
    ElemMatch(Box<ElementFilter>),
    Mod(i64, i64),
    Type(u32),
    Geo(Box<GeoTest>),
    Never,
}

/// `$geoWithin` / `$geoIntersects`: a test on a GeoJSON value (anything else does not match).
pub(crate) enum GeoTest {
    Within(Within),
    Intersects(Geometry),
}

impl Test {
    /// The test applied to a value reached by a path: a value that is an array also matches when
    /// one of its elements does (except for the array-only operators).
    fn on_path(&self, v: Option<&Value>) -> bool {
        match (self, v) {
            (Test::Exists, v) => v.is_some(),
            (Test::Size(_) | Test::ElemMatch(_), Some(v)) => self.single(v),
            (Test::Size(_) | Test::ElemMatch(_) | Test::Type(_), None) => false,
            (_, None) => self.on_missing(),
            (_, Some(v)) => self.single(v) || matches!(v, Value::Array(items) if items.iter().any(|e| self.single(e))),
        }
    }

    /// The test applied to the value itself, without array traversal.
    fn on_value(&self, v: &Value) -> bool {
        match self {
            Test::Exists => true,
            _ => self.single(v),
        }
    }

    fn on_missing(&self) -> bool {
        match self {
            Test::Eq(Value::Null) => true,
            Test::In(list) => list.has_null,
            _ => false,
        }
    }

    fn single(&self, v: &Value) -> bool {
        match self {
            Test::Eq(x) => values_equal(v, x),
            Test::Cmp(op, x) => {
                if type_rank(v) != type_rank(x) {
                    return false;
                }
                let o = compare(v, x);
                match op {
                    CmpOp::Gt => o == Ordering::Greater,
                    CmpOp::Gte => o != Ordering::Less,
                    CmpOp::Lt => o == Ordering::Less,
                    CmpOp::Lte => o != Ordering::Greater,
                }
            }
            Test::In(list) => list.contains(v),
            Test::Regex(re) => v.as_str().is_some_and(|s| re.is_match(s)),
            Test::Exists => true,
            Test::Size(n) => v.as_array().is_some_and(|a| a.len() == *n),
            Test::ElemMatch(ef) => v.as_array().is_some_and(|a| a.iter().any(|e| ef.matches(e))),
            Test::Mod(d, r) => match v {
                Value::Number(n) => {
                    let x = match (n.as_i64(), n.as_u64()) {
                        (Some(i), _) => i128::from(i),
                        (None, Some(u)) => i128::from(u),
                        _ => n.as_f64().unwrap_or(0.0).trunc() as i128,
                    };
                    x.wrapping_rem(i128::from(*d)) == i128::from(*r)
                }
                _ => false,
            },
            Test::Type(mask) => type_bit(v) & mask != 0,
            Test::Geo(geo) => Geometry::of_value(v).is_some_and(|g| match geo.as_ref() {
                GeoTest::Within(region) => g.within(region),
                GeoTest::Intersects(other) => g.intersects(other),
            }),
            Test::Never => false,
        }
    }
}

/// The operand of `$in`/`$nin`/`$all`: sorted strings (binary search), other values, regexes.
pub(super) struct InList {
    pub(super) strings: Vec<String>,
    pub(super) others: Vec<Value>,
    pub(super) regexes: Vec<Regex>,
    pub(super) has_null: bool,
}

impl InList {
    fn contains(&self, v: &Value) -> bool {
        match v {
            Value::String(s) => {
                self.strings
                    .binary_search_by(|x| x.as_bytes().cmp(s.as_bytes()))
                    .is_ok()
                    || self.regexes.iter().any(|re| re.is_match(s))
            }
            _ => self.others.iter().any(|x| values_equal(v, x)),
        }
    }
}

/// `$type` names and numbers with the bit each stands for.
const TYPES: &[(&str, Option<i64>, u32)] = &[
    ("double", Some(1), 1),
    ("string", Some(2), 1 << 1),
    ("object", Some(3), 1 << 2),
    ("array", Some(4), 1 << 3),
    ("bool", Some(8), 1 << 4),
    ("date", Some(9), 1 << 5),
    ("null", Some(10), 1 << 6),
    ("int", Some(16), 1 << 7),
    ("long", Some(18), 1 << 8),
    ("binData", Some(5), 0),
    ("undefined", Some(6), 0),
    ("objectId", Some(7), 0),
    ("regex", Some(11), 0),
    ("dbPointer", Some(12), 0),
    ("javascript", Some(13), 0),
    ("symbol", Some(14), 0),
    ("timestamp", Some(17), 0),
    ("decimal", Some(19), 0),
    ("minKey", Some(-1), 0),
    ("maxKey", Some(127), 0),
    ("number", None, 1 | 1 << 7 | 1 << 8),
];

/// The bit of a `$type` operand (a name or a BSON type number); None if unknown.
pub(super) fn type_mask(operand: &Value) -> Option<u32> {
    match operand {
        Value::String(s) => TYPES.iter().find(|t| t.0 == s).map(|t| t.2),
        Value::Number(n) => {
            let f = n.as_f64()?;
            if f.fract() != 0.0 {
                return None;
            }
            let code = f as i64;
            TYPES.iter().find(|t| t.1 == Some(code)).map(|t| t.2)
        }
        _ => None,
    }
}

fn type_bit(v: &Value) -> u32 {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) if i32::try_from(i).is_ok() => 1 << 7,
            Some(_) => 1 << 8,
            None if n.is_u64() => 1 << 8,
            None => 1,
        },
        Value::String(_) => 1 << 1,
        Value::Object(_) if as_date(v).is_some() => 1 << 5,
        Value::Object(_) => 1 << 2,
        Value::Array(_) => 1 << 3,
        Value::Bool(_) => 1 << 4,
        Value::Null => 1 << 6,
    }
}
