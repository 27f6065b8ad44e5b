//! The query planner: picks the ready index that narrows a query most — equality (and `$in`) on
//! leading fields, then one range (`$gt`… or a `^prefix` regex) — or that yields documents in the
//! order the query sorts by, and turns the query into key ranges.
//!
//! An index only ever *narrows*: every document it yields is still matched against the whole
//! filter, so a plan can never return a document a full scan would not. Ranges are supersets of
//! the matches (a multikey index uses one bound of a range, since two conditions on an array may be
//! met by different elements). A plan is `exact` when the index alone answers the filter (no
//! document needs reading to count), and `sorted` when entries come in the requested order (no
//! sorting, and the scan stops after `skip + limit` matches).
//!
//! A `2dsphere` index serves `$geoWithin` / `$geoIntersects`: the query region's covering cells
//! become key ranges (each cell's descendants, plus the exact coarser cells that contain it, where
//! large geometries are indexed). `$near` is planned in `near.rs`.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::{json, Value};

use super::keys::{self, encode, encode_desc, invert, prefix_end, string_prefix};
use super::{Direction, Index, Indexes, State};
use crate::db::geo::{CellId, COVER_MAX_LEVEL};
use crate::db::kv::{Kv, Visit};
use crate::db::query::{self, Conjunct, Filter, GeoCond, Pred, Sort};
use crate::db::value::type_rank;
use crate::db::DbError;

/// Most key ranges one plan scans (`$in` lists on several fields multiply).
const MAX_RANGES: usize = 1024;

pub struct Plan {
    pub index: Arc<Index>,
    /// Key ranges `[start, end)`, in key order.
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
    /// Scan the ranges backwards (the sort is the index order reversed).
    pub reverse: bool,
    pub sorted: bool,
    pub exact: bool,
    /// A document may have several entries in the ranges (multikey and geo indexes).
    dedup: bool,
    /// For a geo plan: how many cells cover the query region.
    cells: Option<usize>,
}

/// How one index field is constrained.
enum Comp<'a> {
    /// Equal to one of these values.
    Points(Vec<&'a Value>),
    Range(Range<'a>),
}

struct Range<'a> {
    lower: Option<(&'a Value, bool)>,
    upper: Option<(&'a Value, bool)>,
    prefix: Option<&'a str>,
}

/// The best plan for `filter` sorted by `sort` over the ready indexes, if any index helps.
pub fn choose(indexes: &Indexes, filter: &Filter, sort: &Sort) -> Option<Plan> {
    let (conjuncts, all) = filter.conjuncts();
    let sort_keys: Vec<(&str, query::Direction)> = sort.keys().collect();
    let mut best: Option<((usize, bool, isize), Plan)> = None;
    for ix in indexes
        .list
        .iter()
        .filter(|i| i.def.state == State::Ready && !i.is_geo())
    {
        let Some((score, plan)) = plan_for(ix, &conjuncts, all, &sort_keys) else {
            continue;
        };
        let rank = (
            score,
            plan.sorted && !sort_keys.is_empty(),
            -(ix.def.fields.len() as isize),
        );
        if best.as_ref().is_none_or(|(r, _)| rank > *r) {
            best = Some((rank, plan));
        }
    }
    match (best, geo_plan(indexes, filter, sort)) {
        // an equality on an ordinary index narrows more than a region does
        (Some((rank, p)), _) if rank.0 >= 2 => Some(p),
        (_, Some(g)) => Some(g),
        (best, None) => best.map(|(_, p)| p),
    }
}

/// A plan on a ready geo index for the first `$geoWithin`/`$geoIntersects` condition it serves.
fn geo_plan(indexes: &Indexes, filter: &Filter, sort: &Sort) -> Option<Plan> {
    for (path, cond) in filter.geo_conditions() {
        let Some(ix) = indexes
            .list
            .iter()
            .find(|i| i.def.state == State::Ready && i.is_geo() && i.first_field() == path)
        else {
            continue;
        };
        let cells = match cond {
            GeoCond::Within(w) => w.query_cells(),
            GeoCond::Intersects(g) => g.query_cells(),
        };
        return Some(Plan {
            index: ix.clone(),
            ranges: cell_ranges(ix, &cells, &mut HashSet::new()),
            reverse: false,
            sorted: sort.is_empty(),
            exact: false,
            dedup: true,
            cells: Some(cells.len()),
        });
    }
    None
}

/// The key ranges of a geo index holding every geometry that may meet the union of `cells`: the
/// entries of each cell and its descendants, and the exact entries of its ancestors (down to the
/// coarsest level) that are not in `looked_up` yet. Sorted.
pub fn cell_ranges(ix: &Index, cells: &[CellId], looked_up: &mut HashSet<u64>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let key = |id: u64| {
        let mut k = ix.prefix.clone();
        k.extend_from_slice(&id.to_be_bytes());
        k
    };
    let mut out = Vec::new();
    for c in cells {
        out.push((key(c.range_min().id()), key(c.range_max().id().saturating_add(1))));
        let mut a = *c;
        while a.level().as_u8() > 0 {
            a = a.parent();
            if a.level().as_u8() <= COVER_MAX_LEVEL && looked_up.insert(a.id()) {
                out.push((key(a.id()), key(a.id() + 1)));
            }
        }
    }
    out.sort();
    out
}

fn plan_for(
    ix: &Arc<Index>,
    conjuncts: &[Conjunct<'_>],
    all: bool,
    sort: &[(&str, query::Direction)],
) -> Option<(usize, Plan)> {
    let multikey = ix.def.multikey;
    let mut comps: Vec<Comp<'_>> = Vec::new();
    // how many conjuncts the components stand for, to know whether the index answers everything
    let mut consumed = 0;
    for f in &ix.def.fields {
        let preds: Vec<&Pred<'_>> = conjuncts
            .iter()
            .filter(|c| c.path == f.field)
            .map(|c| &c.pred)
            .collect();
        if let Some(v) = preds.iter().find_map(|p| match p {
            Pred::Eq(v) => Some(*v),
            _ => None,
        }) {
            comps.push(Comp::Points(vec![v]));
            consumed += 1;
            continue;
        }
        if let Some(values) = preds.iter().find_map(|p| match p {
            Pred::In(values) => Some(values),
            _ => None,
        }) {
            comps.push(Comp::Points(values.iter().collect()));
            consumed += 1;
            continue;
        }
        let mut range = Range {
            lower: None,
            upper: None,
            prefix: None,
        };
        for p in &preds {
            match p {
                Pred::Bound {
                    lower: true,
                    inclusive,
                    value,
                } if range.lower.is_none() => {
                    range.lower = Some((value, *inclusive));
                    consumed += 1;
                }
                Pred::Bound {
                    lower: false,
                    inclusive,
                    value,
                } if range.upper.is_none() && !(multikey && range.lower.is_some()) => {
                    range.upper = Some((value, *inclusive));
                    consumed += 1;
                }
                Pred::Prefix(s) if range.prefix.is_none() => range.prefix = Some(s),
                _ => {}
            }
        }
        if multikey && range.lower.is_some() && range.upper.is_some() {
            range.upper = None;
        }
        if range.prefix.is_some() {
            // a prefix alone bounds the range; bounds beside it are left to the documents
            range.lower = None;
            range.upper = None;
            consumed = usize::MAX / 2; // never exact
        }
        if range.lower.is_some() || range.upper.is_some() || range.prefix.is_some() {
            comps.push(Comp::Range(range));
        }
        break;
    }
    let points = comps.iter().filter(|c| matches!(c, Comp::Points(_))).count();
    let has_range = matches!(comps.last(), Some(Comp::Range(_)));
    let score = points * 2 + usize::from(has_range);
    let (sorted, reverse) = sort_order(ix, &comps, sort);
    if score == 0 && (sort.is_empty() || !sorted) {
        return None;
    }
    let ranges = key_ranges(ix, &comps)?;
    let exact = all && !multikey && consumed == conjuncts.len();
    Some((
        score,
        Plan {
            index: ix.clone(),
            ranges,
            reverse,
            sorted,
            exact,
            dedup: multikey,
            cells: None,
        },
    ))
}

/// Whether scanning the index (forwards, or backwards when `reverse`) gives the sort's order.
fn sort_order(ix: &Index, comps: &[Comp<'_>], sort: &[(&str, query::Direction)]) -> (bool, bool) {
    if sort.is_empty() {
        return (true, false);
    }
    // an array sorts by its smallest or largest element, which an index range cannot promise
    if ix.def.multikey {
        return (false, false);
    }
    let fixed = comps
        .iter()
        .take_while(|c| matches!(c, Comp::Points(p) if p.len() == 1))
        .count();
    let fixed_fields: Vec<&str> = ix.def.fields[..fixed].iter().map(|f| f.field.as_str()).collect();
    let rest: Vec<&(&str, query::Direction)> = sort.iter().filter(|(p, _)| !fixed_fields.contains(p)).collect();
    let mut flips = HashSet::new();
    for (j, (path, dir)) in rest.iter().enumerate() {
        let Some(f) = ix.def.fields.get(fixed + j) else {
            return (false, false);
        };
        if f.field != *path {
            return (false, false);
        }
        let same = (f.direction == Direction::Asc) == (*dir == query::Direction::Asc);
        flips.insert(!same);
    }
    match flips.len() {
        0 => (true, false),
        1 => (true, flips.contains(&true)),
        _ => (false, false),
    }
}

fn key_ranges(ix: &Index, comps: &[Comp<'_>]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut prefixes = vec![ix.prefix.clone()];
    let mut tail: Option<(Vec<u8>, Option<Vec<u8>>)> = None;
    for (c, f) in comps.iter().zip(&ix.def.fields) {
        let desc = f.direction == Direction::Desc;
        match c {
            Comp::Points(values) => {
                if prefixes.len() * values.len() > MAX_RANGES {
                    return None;
                }
                prefixes = prefixes
                    .iter()
                    .flat_map(|p| {
                        values.iter().map(move |v| {
                            let mut k = p.clone();
                            if desc {
                                encode_desc(Some(v), &mut k);
                            } else {
                                encode(Some(v), &mut k);
                            }
                            k
                        })
                    })
                    .collect();
            }
            Comp::Range(r) => tail = Some(range_bytes(r, desc)),
        }
    }
    prefixes.sort_unstable();
    prefixes.dedup();
    let mut out = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        let whole_end = prefix_end(&p)?;
        let (start, end) = match &tail {
            None => (p.clone(), whole_end),
            Some((s, e)) => {
                let start = [p.as_slice(), s].concat();
                let end = match e {
                    Some(e) => [p.as_slice(), e].concat(),
                    None => whole_end,
                };
                (start, end)
            }
        };
        if start < end {
            out.push((start, end));
        }
    }
    Some(out)
}

/// The key range of one field's range condition, relative to the preceding fields' prefix
/// (`None` end: up to the end of that prefix).
fn range_bytes(r: &Range<'_>, desc: bool) -> (Vec<u8>, Option<Vec<u8>>) {
    let enc = |v: &Value| {
        let mut k = Vec::new();
        encode(Some(v), &mut k);
        if desc {
            invert(&mut k);
        }
        k
    };
    if let Some(s) = r.prefix {
        let mut p = Vec::new();
        string_prefix(s, &mut p);
        if desc {
            invert(&mut p);
        }
        let end = prefix_end(&p);
        return (p, end);
    }
    // the first byte of the encodings of values of one type
    let rank_byte = |v: &Value| if desc { !type_rank(v) } else { type_rank(v) };
    // ascending: lower bound → start; descending: the upper bound comes first
    let (first, last) = if desc { (r.upper, r.lower) } else { (r.lower, r.upper) };
    let other_rank = first.or(last).map(|(v, _)| rank_byte(v)).unwrap_or(keys::RANK_NULL);
    let start = match first {
        Some((v, true)) => enc(v),
        Some((v, false)) => prefix_end(&enc(v)).unwrap_or_else(|| vec![u8::MAX]),
        None => vec![other_rank],
    };
    let end = match last {
        Some((v, true)) => prefix_end(&enc(v)),
        Some((v, false)) => Some(enc(v)),
        None => other_rank.checked_add(1).map(|b| vec![b]),
    };
    (start, end)
}

impl Plan {
    /// Calls `visit` with the `_id` of each entry in plan order (each document once) until it
    /// breaks; returns how many entries were read.
    pub fn scan(&self, kv: &dyn Kv, visit: &mut dyn FnMut(&str) -> Visit) -> Result<u64, DbError> {
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut keys_read = 0u64;
        let stop = std::cell::Cell::new(false);
        let mut on_entry = |_: &[u8], id: &[u8]| -> Visit {
            keys_read += 1;
            if self.dedup && !seen.insert(id.to_vec()) {
                return Ok(ControlFlow::Continue(()));
            }
            let id = std::str::from_utf8(id).map_err(|_| DbError::Storage("corrupt index entry".into()))?;
            let flow = visit(id)?;
            stop.set(flow.is_break());
            Ok(flow)
        };
        let ranges: Box<dyn Iterator<Item = &(Vec<u8>, Vec<u8>)>> = if self.reverse {
            Box::new(self.ranges.iter().rev())
        } else {
            Box::new(self.ranges.iter())
        };
        for (start, end) in ranges {
            kv.scan_range(start, end, self.reverse, &mut on_entry)?;
            if stop.get() {
                break;
            }
        }
        Ok(keys_read)
    }

    /// Counts the documents the plan yields without reading them (meaningful when `exact`).
    pub fn count_entries(&self, kv: &dyn Kv) -> Result<u64, DbError> {
        let mut n = 0;
        self.scan(kv, &mut |_| {
            n += 1;
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(n)
    }

    /// What `explain` shows of the plan.
    pub fn describe(&self) -> Value {
        if let Some(cells) = self.cells {
            return json!({
                "index": self.index.def.name,
                "fields": self.index.def.fields,
                "cells": cells,
                "ranges": self.ranges.len(),
                "sortedByIndex": false,
                "exact": false,
            });
        }
        json!({
            "index": self.index.def.name,
            "fields": self.index.def.fields,
            "multikey": self.index.def.multikey,
            "ranges": self.ranges.len(),
            "reverse": self.reverse,
            "sortedByIndex": self.sorted,
            "exact": self.exact,
        })
    }
}

#[cfg(test)]
mod tests;
