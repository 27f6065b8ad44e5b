//! The query matcher: compiled filters (MongoDB query semantics), element filters (`$elemMatch`,
//! `$pull`) and sort orders.

mod node;
mod parse;

use std::cmp::Ordering;

use serde_json::Value;

use crate::db::geo::{Geometry, Point, Within};
use crate::db::value::{as_date, compare};
use crate::db::DbError;
use node::{CmpOp, GeoTest, Node, Path, Test};
pub(crate) use parse::compile_regex;
use parse::{is_operator_object, parse_operators, parse_query, Target};

/// A compiled query; cheap to evaluate against many documents.
pub struct Filter {
    nodes: Vec<Node>,
}

impl Filter {
    /// `query` is already normalized (`value::normalize`) and must be a JSON object.
    pub fn parse(query: &Value) -> Result<Filter, DbError> {
        let q = query
            .as_object()
            .ok_or_else(|| DbError::InvalidParam("query must be a JSON object".into()))?;
        let nodes = parse_query(q, 1)?;
        check_near(&nodes, true, &mut 0)?;
        Ok(Filter { nodes })
    }

    /// The `$near`/`$nearSphere` condition (at most one, at the top level) and its path.
    pub fn near(&self) -> Option<(&str, &Near)> {
        fn find(nodes: &[Node]) -> Option<(&str, &Near)> {
            nodes.iter().find_map(|n| match n {
                Node::Near(path, near) => Some((path.raw(), near.as_ref())),
                Node::And(inner) => find(inner),
                _ => None,
            })
        }
        find(&self.nodes)
    }

    /// The distance (radians) from the `$near` point to the document's nearest geometry on the
    /// `$near` path (`None`: no `$near`, or no geometry).
    pub fn distance(&self, doc: &Value) -> Option<f64> {
        let (path, near) = self.near_node()?;
        node::distance(path, doc, near)
    }

    /// The geometry on the `$near` path that [`Filter::distance`] measures to: the document's
    /// nearest one (what `$geoNear`'s `includeLocs` shows).
    pub fn near_location<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        let (path, near) = self.near_node()?;
        node::nearest(path, doc, near).map(|(_, v)| v)
    }

    fn near_node(&self) -> Option<(&Path, &Near)> {
        fn find(nodes: &[Node]) -> Option<(&Path, &Near)> {
            nodes.iter().find_map(|n| match n {
                Node::Near(path, near) => Some((path, near.as_ref())),
                Node::And(inner) => find(inner),
                _ => None,
            })
        }
        find(&self.nodes)
    }

    /// The top-level `$geoWithin`/`$geoIntersects` conditions, for a geo index.
    pub fn geo_conditions(&self) -> Vec<(&str, GeoCond<'_>)> {
        fn collect<'a>(nodes: &'a [Node], out: &mut Vec<(&'a str, GeoCond<'a>)>) {
            for n in nodes {
                match n {
                    Node::And(inner) => collect(inner, out),
                    Node::Field(path, Test::Geo(g)) => out.push((
                        path.raw(),
                        match g.as_ref() {
                            GeoTest::Within(w) => GeoCond::Within(w),
                            GeoTest::Intersects(x) => GeoCond::Intersects(x),
                        },
                    )),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        collect(&self.nodes, &mut out);
        out
    }

    pub fn matches(&self, doc: &Value) -> bool {
        self.nodes.iter().all(|n| n.eval(doc))
    }

    /// The string `_id` the filter pins, if any (the engine then does a point lookup).
    pub fn id_equals(&self) -> Option<&str> {
        fn find(nodes: &[Node]) -> Option<&str> {
            nodes.iter().find_map(|n| match n {
                Node::Field(path, Test::Eq(Value::String(id))) if path.raw() == "_id" => Some(id.as_str()),
                Node::And(inner) => find(inner),
                _ => None,
            })
        }
        find(&self.nodes)
    }

    /// Top-level equality conditions as (dot path, value) pairs, to seed an upserted document.
    pub fn equality_fields(&self) -> Vec<(String, Value)> {
        fn collect(nodes: &[Node], out: &mut Vec<(String, Value)>) {
            for n in nodes {
                match n {
                    Node::Field(path, Test::Eq(v)) => out.push((path.raw().to_string(), v.clone())),
                    Node::And(inner) => collect(inner, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        collect(&self.nodes, &mut out);
        out
    }

    /// The top-level fields the filter reads: matching a document with only these fields gives the
    /// same answer as matching the whole document (scans decode no more than this).
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.nodes.iter().for_each(|n| n.fields(&mut out));
        out
    }

    /// True if the filter matches every document.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The filter as a conjunction of conditions on dot paths, for the index planner: the
    /// conditions an index can serve, and whether those are all there is (`false` when some part —
    /// `$or`, `$not`, `$exists`, an array or object operand, … — is left for the documents).
    pub fn conjuncts(&self) -> (Vec<Conjunct<'_>>, bool) {
        fn collect<'a>(nodes: &'a [Node], out: &mut Vec<Conjunct<'a>>) -> bool {
            let mut all = true;
            for n in nodes {
                match n {
                    Node::And(inner) => all &= collect(inner, out),
                    Node::Field(path, test) => match Pred::of(test) {
                        Some(pred) => out.push(Conjunct { path: path.raw(), pred }),
                        None => all = false,
                    },
                    _ => all = false,
                }
            }
            all
        }
        let mut out = Vec::new();
        let all = collect(&self.nodes, &mut out);
        (out, all)
    }
}

/// `$near`/`$nearSphere`: distances from `center`, in radians on the unit sphere (`max` is
/// infinite when not given).
#[derive(Debug, Clone)]
pub struct Near {
    pub center: Point,
    pub min: f64,
    pub max: f64,
}

/// A geo condition a geo index can serve.
pub enum GeoCond<'a> {
    Within(&'a Within),
    Intersects(&'a Geometry),
}

/// `$near` is allowed once, and only as a top-level condition (possibly inside a top-level `$and`),
/// as in MongoDB: its distance orders the results.
fn check_near(nodes: &[Node], top: bool, found: &mut usize) -> Result<(), DbError> {
    for n in nodes {
        match n {
            Node::Near(..) => {
                if !top {
                    return Err(DbError::InvalidCommand(
                        "`$near`/`$nearSphere` must be a top-level condition (not inside `$or`, `$nor`, `$not` or `$elemMatch`)"
                            .into(),
                    ));
                }
                *found += 1;
                if *found > 1 {
                    return Err(DbError::InvalidCommand(
                        "a query can have only one `$near`/`$nearSphere`".into(),
                    ));
                }
            }
            Node::And(inner) => check_near(inner, top, found)?,
            Node::Or(inner) | Node::Nor(inner) => check_near(inner, false, found)?,
            Node::Not(inner) => check_near(std::slice::from_ref(inner.as_ref()), false, found)?,
            Node::Field(..) | Node::Value(_) => {}
        }
    }
    Ok(())
}

/// A condition on one dot path that an index can serve.
pub struct Conjunct<'a> {
    pub path: &'a str,
    pub pred: Pred<'a>,
}

/// The index-servable conditions. Operands are scalars (null, number, string, boolean, date):
/// an index holds array elements, not arrays, and other operands are left to the documents.
pub enum Pred<'a> {
    Eq(&'a Value),
    /// `$in`: any of these values.
    In(Vec<Value>),
    /// `$gt`/`$gte` (`inclusive`) when `lower`, else `$lt`/`$lte`: same-type values beyond the operand.
    Bound {
        lower: bool,
        inclusive: bool,
        value: &'a Value,
    },
    /// A regex that only matches strings starting with this literal.
    Prefix(String),
}

impl<'a> Pred<'a> {
    fn of(test: &'a Test) -> Option<Pred<'a>> {
        let scalar = |v: &Value| !matches!(v, Value::Array(_)) && (!v.is_object() || as_date(v).is_some());
        match test {
            Test::Eq(v) if scalar(v) => Some(Pred::Eq(v)),
            Test::Cmp(op, v) if scalar(v) => Some(Pred::Bound {
                lower: matches!(op, CmpOp::Gt | CmpOp::Gte),
                inclusive: matches!(op, CmpOp::Gte | CmpOp::Lte),
                value: v,
            }),
            Test::In(list) if list.regexes.is_empty() && list.others.iter().all(scalar) => {
                let mut values: Vec<Value> = list.strings.iter().cloned().map(Value::String).collect();
                values.extend(list.others.iter().cloned());
                if list.has_null {
                    values.push(Value::Null);
                }
                Some(Pred::In(values))
            }
            Test::Regex(re) => literal_prefix(re.as_str()).map(Pred::Prefix),
            _ => None,
        }
    }
}

/// The literal every match of `pattern` starts with, if the pattern is anchored (`^abc…`), has no
/// flags and no alternation; `None` when unsure.
fn literal_prefix(pattern: &str) -> Option<String> {
    let rest = pattern.strip_prefix('^')?;
    if pattern.contains('|') {
        return None;
    }
    let mut prefix = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if "\\.+*?()[]{}^$".contains(c) {
            break;
        }
        // a quantifier after a character makes that character optional
        if chars.peek().is_some_and(|n| "*?{".contains(*n)) {
            break;
        }
        prefix.push(c);
    }
    (!prefix.is_empty()).then_some(prefix)
}

/// A dot path as documents are indexed by it.
pub struct DotPath(Path);

impl DotPath {
    pub fn parse(raw: &str) -> DotPath {
        DotPath(Path::parse(raw))
    }

    /// Every value the path reaches in `doc`, as a query on it sees them: `None` for a missing
    /// value, arrays as they are (their elements are what `Eq`/`$in`/ranges test).
    pub fn values<'a>(&self, doc: &'a Value) -> Vec<Option<&'a Value>> {
        let mut out = Vec::new();
        self.0.any(doc, &mut |v| {
            out.push(v);
            false
        });
        out
    }
}

/// A condition on one value (an array element), as `$elemMatch` and `$pull` use it.
pub struct ElementFilter {
    kind: ElementKind,
}

enum ElementKind {
    /// `{$gt: 3}`: operators on the value itself.
    Operators(Vec<Node>),
    /// `{a: 1}`: a query on the element, which must be an object.
    Query(Vec<Node>),
    /// Anything else: equality.
    Equals(Value),
}

impl ElementFilter {
    pub fn parse(cond: &Value) -> Result<ElementFilter, DbError> {
        ElementFilter::parse_at(cond, 1)
    }

    fn parse_at(cond: &Value, depth: usize) -> Result<ElementFilter, DbError> {
        const LOGICAL: &[&str] = &["$and", "$or", "$nor", "$comment", "$expr", "$where", "$text"];
        let kind = match cond {
            Value::Object(m)
                if is_operator_object(cond)
                    && m.keys().all(|k| k.starts_with('$') && !LOGICAL.contains(&k.as_str())) =>
            {
                let mut nodes = Vec::with_capacity(m.len());
                parse_operators(&Target::Value, m, depth, &mut nodes)?;
                ElementKind::Operators(nodes)
            }
            Value::Object(m) if as_date(cond).is_none() => {
                let nodes = parse_query(m, depth)?;
                check_near(&nodes, false, &mut 0)?;
                ElementKind::Query(nodes)
            }
            other => ElementKind::Equals(other.clone()),
        };
        Ok(ElementFilter { kind })
    }

    pub fn matches(&self, value: &Value) -> bool {
        match &self.kind {
            ElementKind::Operators(nodes) => nodes.iter().all(|n| n.eval(value)),
            ElementKind::Query(nodes) => {
                value.is_object() && as_date(value).is_none() && nodes.iter().all(|n| n.eval(value))
            }
            ElementKind::Equals(x) => crate::db::value::values_equal(value, x),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

/// A sort order over several dot paths.
pub struct Sort {
    fields: Vec<(Path, Direction)>,
}

static NULL: Value = Value::Null;

/// The value a document sorts by on one field.
#[derive(Clone, Copy)]
enum SortKey<'a> {
    /// An empty array sorts before null and missing fields.
    EmptyArray,
    Value(&'a Value),
}

impl SortKey<'_> {
    fn cmp(self, other: SortKey<'_>) -> Ordering {
        match (self, other) {
            (SortKey::EmptyArray, SortKey::EmptyArray) => Ordering::Equal,
            (SortKey::EmptyArray, _) => Ordering::Less,
            (_, SortKey::EmptyArray) => Ordering::Greater,
            (SortKey::Value(a), SortKey::Value(b)) => compare(a, b),
        }
    }
}

impl Sort {
    /// fields: (dot path, direction), several allowed; empty = no sort.
    pub fn new(fields: Vec<(String, Direction)>) -> Sort {
        Sort {
            fields: fields.into_iter().map(|(p, d)| (Path::parse(&p), d)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The dot paths and directions, in order.
    pub fn keys(&self) -> impl Iterator<Item = (&str, Direction)> {
        self.fields.iter().map(|(p, d)| (p.raw(), *d))
    }

    /// The top-level fields the sort reads.
    pub fn fields(&self) -> Vec<&str> {
        self.fields.iter().map(|(p, _)| p.head()).collect()
    }

    /// MongoDB sort semantics: a missing field sorts as null; an array sorts by its smallest
    /// element ascending and its largest descending.
    pub fn compare(&self, a: &Value, b: &Value) -> Ordering {
        for (path, dir) in &self.fields {
            let o = sort_key(a, path, *dir).cmp(sort_key(b, path, *dir));
            let o = if *dir == Direction::Desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// Sorts `items` (stable) as `compare` would and keeps the first `keep`, extracting each
    /// document's keys only once and selecting the top `keep` before sorting them: much faster
    /// than `sort_by(compare)` on large result sets with a small page.
    pub fn sort_vec<T>(&self, items: &mut Vec<T>, doc: impl Fn(&T) -> &Value, keep: usize) {
        if self.fields.is_empty() || items.len() < 2 {
            items.truncate(keep);
            return;
        }
        let order: Vec<usize> = {
            let keys: Vec<Vec<SortKey<'_>>> = items
                .iter()
                .map(|item| {
                    let d = doc(item);
                    self.fields.iter().map(|(p, dir)| sort_key(d, p, *dir)).collect()
                })
                .collect();
            // ties broken by position, so the partial selection is as stable as a full sort
            let cmp = |i: &usize, j: &usize| match (keys.get(*i), keys.get(*j)) {
                (Some(a), Some(b)) => self.compare_keys(a, b).then(i.cmp(j)),
                _ => i.cmp(j),
            };
            let mut order: Vec<usize> = (0..items.len()).collect();
            if keep == 0 {
                order.clear();
            } else if keep < order.len() {
                order.select_nth_unstable_by(keep - 1, cmp);
                order.truncate(keep);
            }
            order.sort_unstable_by(cmp);
            order
        };
        let mut slots: Vec<Option<T>> = std::mem::take(items).into_iter().map(Some).collect();
        items.extend(
            order
                .into_iter()
                .filter_map(|i| slots.get_mut(i).and_then(Option::take)),
        );
    }

    fn compare_keys(&self, a: &[SortKey<'_>], b: &[SortKey<'_>]) -> Ordering {
        for (((_, dir), ka), kb) in self.fields.iter().zip(a).zip(b) {
            let o = ka.cmp(*kb);
            let o = if *dir == Direction::Desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

fn sort_key<'a>(doc: &'a Value, path: &Path, dir: Direction) -> SortKey<'a> {
    let mut best: Option<SortKey<'a>> = None;
    let mut consider = |k: SortKey<'a>| {
        let better = match best {
            None => true,
            Some(b) => {
                let o = k.cmp(b);
                if dir == Direction::Asc {
                    o == Ordering::Less
                } else {
                    o == Ordering::Greater
                }
            }
        };
        if better {
            best = Some(k);
        }
    };
    path.any(doc, &mut |v: Option<&'a Value>| {
        match v {
            None => consider(SortKey::Value(&NULL)),
            Some(Value::Array(items)) if items.is_empty() => consider(SortKey::EmptyArray),
            Some(Value::Array(items)) => items.iter().for_each(|e| consider(SortKey::Value(e))),
            Some(other) => consider(SortKey::Value(other)),
        }
        false
    });
    best.unwrap_or(SortKey::Value(&NULL))
}

#[cfg(test)]
mod tests;
