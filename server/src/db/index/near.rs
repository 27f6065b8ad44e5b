//! `$near` / `$nearSphere` on a geo index: documents in order of distance, reading no more of the
//! index than the nearest ones need.
//!
//! The search covers caps of growing radius around the point (100 m, then doubling up to
//! `$maxDistance` or the whole sphere). Each round scans only the cells the previous rounds did
//! not, fetches every new candidate once, and keeps matches in a heap by exact distance. After a
//! round of radius r every document nearer than r has been fetched, so the heap's entries up to r
//! are final and go out in order; the caller stops the search when it has enough.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::{json, Value};

use super::plan::cell_ranges;
use super::Index;
use crate::db::geo::{self, CellId};
use crate::db::kv::Kv;
use crate::db::query::Near;
use crate::db::DbError;

/// The radius of the first round, in metres.
const FIRST_RADIUS_M: f64 = 100.0;

/// Reads one candidate: its distance and what to keep of it, or `None` when it does not match.
pub type Fetch<'a, T> = dyn FnMut(&str) -> Result<Option<(f64, T)>, DbError> + 'a;

pub struct NearPlan {
    pub index: Arc<Index>,
    near: Near,
}

/// What a run read.
#[derive(Default, Debug)]
pub struct NearStats {
    pub keys: u64,
    pub rounds: u32,
    pub cells: usize,
}

struct Pending<T> {
    distance: f64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Pending<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Pending<T> {}
impl<T> PartialOrd for Pending<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Pending<T> {
    /// Reversed: the heap's top is the nearest (then the first fetched).
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .distance
            .total_cmp(&self.distance)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl NearPlan {
    pub fn new(index: Arc<Index>, near: &Near) -> NearPlan {
        NearPlan {
            index,
            near: near.clone(),
        }
    }

    /// Calls `fetch` once for each candidate `_id` (it reads the document and returns its distance
    /// in radians and what to keep of it if it matches), and `visit` with the matches nearest first
    /// (ties in fetch order) until it breaks.
    pub fn run<T>(
        &self,
        kv: &dyn Kv,
        fetch: &mut Fetch<'_, T>,
        visit: &mut dyn FnMut(f64, T) -> ControlFlow<()>,
    ) -> Result<NearStats, DbError> {
        let mut stats = NearStats::default();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut looked_up: HashSet<u64> = HashSet::new();
        let mut done: Vec<CellId> = Vec::new();
        let mut heap: BinaryHeap<Pending<T>> = BinaryHeap::new();
        let mut seq = 0u64;
        let last = self.near.max.min(std::f64::consts::PI);
        let mut radius = (self.near.min + geo::metres_to_radians(FIRST_RADIUS_M)).min(last);
        loop {
            stats.rounds += 1;
            let cells = geo::cap_cells(self.near.center, radius);
            let new = geo::cells_minus(&cells, &done);
            stats.cells += new.len();
            for (start, end) in cell_ranges(&self.index, &new, &mut looked_up) {
                kv.scan_range(&start, &end, false, &mut |_, id| {
                    stats.keys += 1;
                    if !seen.insert(id.to_vec()) {
                        return Ok(ControlFlow::Continue(()));
                    }
                    let id = std::str::from_utf8(id).map_err(|_| DbError::Storage("corrupt index entry".into()))?;
                    if let Some((distance, item)) = fetch(id)? {
                        heap.push(Pending { distance, seq, item });
                        seq += 1;
                    }
                    Ok(ControlFlow::Continue(()))
                })?;
            }
            done = geo::cells_union(&done, &new);
            let finished = radius >= last;
            while heap.peek().is_some_and(|p| finished || p.distance <= radius) {
                let Some(p) = heap.pop() else { break };
                if visit(p.distance, p.item).is_break() {
                    return Ok(stats);
                }
            }
            if finished {
                return Ok(stats);
            }
            radius = (radius * 2.0).min(last);
        }
    }

    /// What `explain` shows of the plan (with what a run read).
    pub fn describe(&self, stats: &NearStats) -> Value {
        json!({
            "index": self.index.def.name,
            "fields": self.index.def.fields,
            "near": true,
            "rounds": stats.rounds,
            "cells": stats.cells,
            "sortedByDistance": true,
        })
    }
}
