//! Aggregation pipelines (`database.aggregate`, `POST …/documents/aggregations`): parsing a
//! pipeline of MongoDB stages, and running it over a collection.
//!
//! - A leading `$match` (several are merged) is not a stage: it becomes the pipeline's source
//!   [`Scan`], the query the collection scan runs with, so the access rules can check and narrow
//!   it exactly as they do a `where()` query, and the index planner can serve it.
//! - A `$geoNear` (only allowed first) is not a stage either: the source becomes the documents
//!   nearest to its point, nearest first (`geo_near`), and its `query` is the source [`Scan`]'s
//!   query, checked and narrowed by the rules like a leading `$match`.
//! - Documents flow through the stages one at a time (`Runner::push`). Streaming stages pass them
//!   on; buffering ones (`$group`, `$sort`, `$bucket`, `$bucketAuto`, `$sample`, `$count`) hold
//!   what they need and emit at the end (`Runner::finish`). A `$limit` stops the scan as soon as
//!   it has enough, and a `$sort` followed by `$limit` keeps only the top documents.
//! - Everything the buffering stages and `$lookup` hold is counted against one memory budget per
//!   aggregation (`Limits::aggregate_memory_limit`); going over fails the request with
//!   `DATABASE_AGGREGATE_MEMORY_LIMIT_EXCEEDED` instead of exhausting the server's memory.
//! - Only the top-level fields the pipeline reads are decoded from storage, when the pipeline
//!   ends in a stage that replaces documents (`$group`, an inclusion `$project`, `$count`, ...).
//!
//! Submodules: `expr` (expressions), `ops` (plain operators), `date` (date operators),
//! `accumulate` (accumulators), `stages` (stage parsing and per-document logic), `geo_near`
//! (the `$geoNear` source), `values` (value helpers).

mod accumulate;
mod date;
mod expr;
mod geo_near;
mod granularity;
mod ops;
mod stages;
mod values;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::rc::Rc;

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::database::{now_ms, Database};
use super::documents::{Budget, GeoNear};
use super::query::{Filter, Sort};
use super::value::{self, compare};
use super::DbError;
use accumulate::AccState;
use expr::{Deps, Env, Scope};
use geo_near::GeoNearSpec;
use stages::{new_root, parse_stage, scan_of, stage_deps, ForeignIndex, Lookup, MatchStage, ParseCtx, Stage};
use values::{as_doc_mut, key_of, mem_size, set_plain};

/// Most stages in one pipeline (each `$lookup` sub-pipeline counts on its own).
pub const MAX_STAGES: usize = 100;
/// How deep `$lookup` pipelines may nest. Each level runs inside the one above it, so this bounds
/// the stack an aggregation needs: four levels fit a 2 MiB thread even in a debug build.
pub const MAX_LOOKUP_DEPTH: usize = 4;
/// Most stages in a pipeline and all its `$lookup` pipelines together.
pub const MAX_TOTAL_STAGES: usize = 250;

/// A scan of one collection: the aggregated collection (the pipeline's leading `$match`, or its
/// `$geoNear`'s `query`) or the collection a `$lookup` reads (its pipeline's leading `$match`).
/// The access rules check and narrow its query; the engine scans with its filter.
pub struct Scan {
    coll: Option<String>,
    query: Option<Value>,
    filter: Filter,
}

impl Scan {
    /// The collection, or `None` for the collection the pipeline runs on.
    pub fn collection(&self) -> Option<&str> {
        self.coll.as_deref()
    }

    /// The query (`None`: every document).
    pub fn query(&self) -> Option<&Value> {
        self.query.as_ref()
    }

    /// The filter the scan runs with (what an index planner plans for).
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Replaces the query (the rules' narrowed version of it); it is normalized and compiled.
    pub fn set_query(&mut self, query: Option<Value>) -> Result<(), DbError> {
        let query = query
            .map(|q| value::normalize(q, now_ms(), value::DEFAULT_MAX_DEPTH))
            .transpose()?;
        let coll = self.coll.take();
        *self = scan_of(query)?;
        self.coll = coll;
        Ok(())
    }
}

/// A parsed pipeline.
pub struct Pipeline {
    source: Scan,
    /// A leading `$geoNear`: the source is its documents, nearest first, filtered by `source`.
    near: Option<GeoNearSpec>,
    stages: Vec<Stage>,
}

impl Pipeline {
    /// Parses a pipeline (a JSON array of `{$stage: spec}`), already normalized
    /// (`Database::pipeline` normalizes client encodings first).
    pub fn parse(raw: &Value) -> Result<Pipeline, DbError> {
        let mut ctx = ParseCtx {
            scope: Scope::default(),
            depth: 0,
            next_id: 0,
            total: 0,
        };
        Pipeline::parse_in(raw, &mut ctx)
    }

    fn parse_in(raw: &Value, ctx: &mut ParseCtx) -> Result<Pipeline, DbError> {
        let items = raw
            .as_array()
            .ok_or_else(|| DbError::InvalidParam("the pipeline must be an array of stages".into()))?;
        if items.len() > MAX_STAGES {
            return Err(DbError::InvalidParam(format!(
                "a pipeline has at most {MAX_STAGES} stages, this one has {}",
                items.len()
            )));
        }
        ctx.total += items.len();
        if ctx.total > MAX_TOTAL_STAGES {
            return Err(DbError::InvalidParam(format!(
                "a pipeline and its `$lookup` pipelines have at most {MAX_TOTAL_STAGES} stages together"
            )));
        }
        let mut rest = items.as_slice();
        let mut near = None;
        if let Some(spec) = items
            .first()
            .and_then(Value::as_object)
            .filter(|m| m.len() == 1)
            .and_then(|m| m.get("$geoNear"))
        {
            if ctx.depth > 0 {
                return Err(values::cmd("`$geoNear` cannot be used in a `$lookup` pipeline"));
            }
            near = Some(geo_near::parse(spec, &mut ctx.scope)?);
            rest = &items[1..];
        }
        let mut stages = Vec::with_capacity(items.len());
        for item in rest {
            stages.extend(parse_stage(item, ctx)?);
        }
        if let Some((spec, query)) = near {
            // the `$match`es after it see the distance: they stay stages
            if let Some(n) = spec.limit {
                stages.insert(0, Stage::Limit(n));
            }
            plan_sorts(&mut stages);
            return Ok(Pipeline {
                source: scan_of(query)?,
                near: Some(spec),
                stages,
            });
        }
        // leading $match stages become the source scan; their `$expr` parts stay as stages
        let mut queries = Vec::new();
        let mut exprs = Vec::new();
        while matches!(stages.first(), Some(Stage::Match(_))) {
            if let Stage::Match(m) = stages.remove(0) {
                if m.query.as_object().is_some_and(|q| !q.is_empty()) {
                    queries.push(m.query);
                }
                exprs.extend(m.expr);
            }
        }
        let query = match queries.len() {
            0 => None,
            1 => queries.pop(),
            _ => Some(json!({ "$and": queries })),
        };
        for e in exprs.into_iter().rev() {
            stages.insert(
                0,
                Stage::Match(MatchStage {
                    query: json!({}),
                    filter: Filter::parse(&json!({}))?,
                    expr: Some(e),
                }),
            );
        }
        plan_sorts(&mut stages);
        Ok(Pipeline {
            source: scan_of(query)?,
            near: None,
            stages,
        })
    }

    /// Every scan the pipeline makes: its source, then each `$lookup`'s (nested ones too).
    pub fn scans_mut(&mut self) -> Vec<&mut Scan> {
        let mut out = vec![&mut self.source];
        scans_in(&mut self.stages, &mut out);
        out
    }

    fn scans(&self) -> Vec<&Scan> {
        let mut out = vec![&self.source];
        scans_in_ref(&self.stages, &mut out);
        out
    }

    /// Returns at most `n` documents (the client limit cap): a final `$limit`.
    pub fn cap_output(&mut self, n: usize) {
        self.stages.push(Stage::Limit(n.max(1) as u64));
        plan_sorts(&mut self.stages);
    }

    /// Variables the pipeline uses that it does not define.
    fn free_vars(&self) -> Vec<String> {
        free_vars_of(&self.stages)
    }

    /// The top-level fields the source scan must decode (`None`: whole documents).
    fn source_fields(&self) -> Option<Vec<String>> {
        let mut fields = fields_of(&self.stages)?;
        if let Some(e) = self.near.as_ref().and_then(|g| g.expr.as_ref()) {
            let mut d = Deps::default();
            e.deps(&mut Vec::new(), &mut d);
            if d.whole {
                return None;
            }
            d.fields.into_iter().for_each(|f| {
                if !fields.contains(&f) {
                    fields.push(f)
                }
            });
        }
        for f in self.source.filter.fields() {
            if !fields.iter().any(|x| x == f) {
                fields.push(f.to_string());
            }
        }
        Some(fields)
    }
}

fn scans_in<'a>(stages: &'a mut [Stage], out: &mut Vec<&'a mut Scan>) {
    for s in stages {
        match s {
            Stage::Lookup(l) => out.extend(l.pipeline.scans_mut()),
            Stage::Facet(branches) => branches.iter_mut().for_each(|(_, b)| scans_in(b, out)),
            _ => {}
        }
    }
}

fn scans_in_ref<'a>(stages: &'a [Stage], out: &mut Vec<&'a Scan>) {
    for s in stages {
        match s {
            Stage::Lookup(l) => out.extend(l.pipeline.scans()),
            Stage::Facet(branches) => branches.iter().for_each(|(_, b)| scans_in_ref(b, out)),
            _ => {}
        }
    }
}

/// A `$sort` followed by `$limit` (maybe with `$skip`s, projections and lookups between)
/// keeps only the documents that can reach the output.
fn plan_sorts(stages: &mut [Stage]) {
    for i in 0..stages.len() {
        let keep = taken_by(&stages[i + 1..]);
        match stages.get_mut(i) {
            Some(Stage::Sort(s)) => s.keep = keep,
            Some(Stage::Facet(branches)) => branches.iter_mut().for_each(|(_, b)| plan_sorts(b)),
            _ => {}
        }
    }
}

/// The most documents these stages take before a `$limit` stops them: `skip + limit` when they
/// begin with `$skip`s and stages that pass one document on for each they get, then a `$limit`.
fn taken_by(stages: &[Stage]) -> Option<usize> {
    let mut skip: u64 = 0;
    for s in stages {
        match s {
            Stage::Skip(k) => skip = skip.saturating_add(*k),
            Stage::Limit(n) => return usize::try_from(skip.saturating_add(*n)).ok(),
            // one document in, one out: the limit after them still bounds what they take
            Stage::Project(_) | Stage::ReplaceRoot(_) | Stage::Lookup(_) => {}
            _ => return None,
        }
    }
    None
}

/// Variables used by these stages (and the pipelines in them) that they do not define.
fn free_vars_of(stages: &[Stage]) -> Vec<String> {
    let mut d = Deps::default();
    for s in stages {
        stage_deps(s, &mut d);
        let mut inner = |vars: Vec<String>, defined: &[String]| {
            for v in vars {
                if !defined.contains(&v) && !d.vars.contains(&v) {
                    d.vars.push(v);
                }
            }
        };
        match s {
            Stage::Lookup(l) => {
                let lets: Vec<String> = l.lets.iter().map(|(n, _)| n.clone()).collect();
                inner(l.pipeline.free_vars(), &lets);
            }
            Stage::Facet(branches) => branches.iter().for_each(|(_, b)| inner(free_vars_of(b), &[])),
            _ => {}
        }
    }
    d.vars
}

/// The top-level fields these stages read from their input documents (`None`: all of them).
fn fields_of(stages: &[Stage]) -> Option<Vec<String>> {
    let mut d = Deps::default();
    for s in stages {
        let exhaustive = stage_deps(s, &mut d);
        if d.whole {
            return None;
        }
        if exhaustive {
            return Some(d.fields);
        }
    }
    None
}

impl Database {
    /// Parses a client's pipeline: normalizes its encodings (EJSON, `{$date}`), then compiles it.
    pub fn pipeline(&self, raw: &Value) -> Result<Pipeline, DbError> {
        Pipeline::parse(&self.normalize(raw.clone())?)
    }

    /// Runs a pipeline over `env/coll`; the result documents as ready-to-send JSON. Fails with
    /// `ResultTooLarge` past the reply limit and `AggregateMemory` past the memory limit.
    pub fn aggregate(&self, env: &str, coll: &str, pipeline: &Pipeline) -> Result<Vec<Box<RawValue>>, DbError> {
        self.check_collection(env, coll)?;
        for scan in pipeline.scans() {
            if let Some(from) = scan.collection() {
                self.check_collection(env, from)?;
            }
        }
        let ctx = Ctx {
            db: self,
            env,
            mem: Memory {
                used: Cell::new(0),
                limit: self.limits.aggregate_memory_limit,
            },
            now: now_ms(),
            foreign: RefCell::new(HashMap::new()),
            uncorrelated: RefCell::new(HashMap::new()),
        };
        let sink = Sink::Output {
            list: Vec::new(),
            bytes: 0,
            max: self.limits.max_result_bytes,
        };
        let mut runner = Runner::new(&pipeline.stages, &ctx, Env::new(ctx.now), sink);
        let fields = pipeline.source_fields();
        let fields: Option<Vec<&str>> = fields.as_ref().map(|f| f.iter().map(String::as_str).collect());
        let mut failure = None;
        let mut feed = |doc: Result<Option<Value>, DbError>, runner: &mut Runner| match doc
            .and_then(|d| d.map_or(Ok(Flow::Go), |d| runner.push(0, d)))
        {
            Ok(Flow::Go) => ControlFlow::Continue(()),
            Ok(Flow::Stop) => ControlFlow::Break(()),
            Err(e) => {
                failure = Some(e);
                ControlFlow::Break(())
            }
        };
        if let Some(g) = &pipeline.near {
            // the scan without a geo index keeps only what the stages after it can take
            let limit = match g.expr {
                Some(_) => usize::MAX,
                None => taken_by(&pipeline.stages).unwrap_or(usize::MAX),
            };
            let req = GeoNear {
                near: &g.near,
                key: g.key.as_deref(),
                min_distance: g.min,
                max_distance: g.max,
                query: pipeline.source.query(),
                limit,
                locations: g.include_locs.is_some(),
            };
            self.geo_near_each(env, coll, &req, fields.as_deref(), &ctx.mem, &mut |hit| {
                let doc = g.output(hit, &mut runner.env);
                feed(doc, &mut runner)
            })?;
        } else {
            // the leading `$match` reads through the planner: an index when one narrows it
            let no_sort = Sort::new(Vec::new());
            let access = self.access(env, coll, &pipeline.source.filter, &no_sort)?;
            self.each_match(
                env,
                coll,
                &pipeline.source.filter,
                &access,
                fields.as_deref(),
                &mut |m| feed(Ok(Some(m.doc)), &mut runner),
            )?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        runner.finish()?;
        match runner.sink {
            Sink::Output { list, .. } => Ok(list),
            Sink::Collect { .. } => Ok(Vec::new()),
        }
    }
}

/// The memory budget of one aggregation: bytes held by buffering stages and `$lookup`.
struct Memory {
    used: Cell<usize>,
    limit: usize,
}

impl Memory {
    fn charge(&self, n: usize, stage: &str) -> Result<(), DbError> {
        let used = self.used.get().saturating_add(n);
        self.used.set(used);
        if used > self.limit {
            return Err(DbError::AggregateMemory {
                stage: stage.to_string(),
                limit: self.limit,
            });
        }
        Ok(())
    }

    fn release(&self, n: usize) {
        self.used.set(self.used.get().saturating_sub(n));
    }
}

/// `$geoNear` charges what its search holds (documents not yet known to be the nearest).
impl Budget for Memory {
    fn hold(&self, bytes: &[u8], doc: &Value) -> Result<usize, DbError> {
        let n = bytes.len() + mem_size(doc);
        self.charge(n, "$geoNear")?;
        Ok(n)
    }

    fn release(&self, n: usize) {
        Memory::release(self, n);
    }
}

/// What one run shares between the pipeline and its `$lookup` sub-pipelines.
struct Ctx<'d> {
    db: &'d Database,
    env: &'d str,
    mem: Memory,
    now: i64,
    /// The foreign documents of each `$lookup` (by id), read once per aggregation.
    foreign: RefCell<HashMap<usize, Rc<Foreign>>>,
    /// Results of `$lookup`s whose result is the same for every document.
    uncorrelated: RefCell<HashMap<usize, Rc<Vec<Value>>>>,
}

struct Foreign {
    docs: Vec<Value>,
    index: Option<ForeignIndex>,
}

impl Ctx<'_> {
    fn foreign(&self, l: &Lookup) -> Result<Rc<Foreign>, DbError> {
        if let Some(f) = self.foreign.borrow().get(&l.id) {
            return Ok(f.clone());
        }
        let mut docs = Vec::new();
        let mut failure = None;
        let no_sort = Sort::new(Vec::new());
        let access = self.db.access(self.env, &l.from, &l.pipeline.source.filter, &no_sort)?;
        self.db.each_match(
            self.env,
            &l.from,
            &l.pipeline.source.filter,
            &access,
            None,
            &mut |m| match self.mem.charge(mem_size(&m.doc), "$lookup") {
                Ok(()) => {
                    docs.push(m.doc);
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            },
        )?;
        if let Some(e) = failure {
            return Err(e);
        }
        let index = l.foreign.as_ref().map(|path| ForeignIndex::build(&docs, path));
        if let Some(ix) = &index {
            self.mem.charge(ix.size(), "$lookup")?;
        }
        let f = Rc::new(Foreign { docs, index });
        self.foreign.borrow_mut().insert(l.id, f.clone());
        Ok(f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Go,
    /// The stage that answered takes no more documents.
    Stop,
}

/// Where the last stage's documents go.
enum Sink {
    /// The reply: serialized as they come, refused past `max` bytes.
    Output {
        list: Vec<Box<RawValue>>,
        bytes: usize,
        max: usize,
    },
    /// A `$lookup` sub-pipeline's result.
    Collect { docs: Vec<Value>, charged: usize },
}

/// The running state of one stage.
enum State {
    None,
    Skip(u64),
    Limit(u64),
    Count(u64),
    Group(GroupState),
    /// Held documents with their sizes.
    Sort(Vec<(usize, Value)>),
    Sample {
        kept: Vec<(usize, Value)>,
        seen: u64,
    },
    Bucket(Vec<Option<Vec<AccState>>>),
    /// (group-by key, accumulator inputs, bytes) per document.
    BucketAuto(Vec<(Value, Vec<Option<Value>>, usize)>),
    /// Every input document, for each `$facet` branch to run over.
    Facet(Vec<Value>),
}

#[derive(Default)]
struct GroupState {
    index: HashMap<Vec<u8>, usize>,
    groups: Vec<(Value, Vec<AccState>)>,
}

struct Runner<'a> {
    stages: &'a [Stage],
    states: Vec<State>,
    ctx: &'a Ctx<'a>,
    env: Env,
    sink: Sink,
    /// Bytes charged by buffering stages, released when they emit.
    held: Vec<usize>,
}

impl<'a> Runner<'a> {
    fn new(stages: &'a [Stage], ctx: &'a Ctx<'a>, env: Env, sink: Sink) -> Runner<'a> {
        let states = stages
            .iter()
            .map(|s| match s {
                Stage::Skip(n) => State::Skip(*n),
                Stage::Limit(n) => State::Limit(*n),
                Stage::Count(_) => State::Count(0),
                Stage::Group(_) => State::Group(GroupState::default()),
                Stage::Sort(_) => State::Sort(Vec::new()),
                Stage::Sample(_) => State::Sample {
                    kept: Vec::new(),
                    seen: 0,
                },
                Stage::Bucket(b) => State::Bucket((0..b.boundaries.len()).map(|_| None).collect()),
                Stage::BucketAuto(_) => State::BucketAuto(Vec::new()),
                Stage::Facet(_) => State::Facet(Vec::new()),
                _ => State::None,
            })
            .collect();
        Runner {
            stages,
            states,
            ctx,
            env,
            sink,
            held: vec![0; stages.len()],
        }
    }

    fn charge(&mut self, i: usize, n: usize) -> Result<(), DbError> {
        self.held[i] += n;
        self.ctx.mem.charge(n, self.stages[i].name())
    }

    /// Hands one document to stage `i` (the sink after the last stage).
    fn push(&mut self, i: usize, doc: Value) -> Result<Flow, DbError> {
        let stages: &'a [Stage] = self.stages;
        let Some(stage) = stages.get(i) else {
            return self.emit(doc);
        };
        match stage {
            Stage::Match(m) => {
                if m.matches(&doc, &mut self.env)? {
                    self.push(i + 1, doc)
                } else {
                    Ok(Flow::Go)
                }
            }
            Stage::Project(p) => {
                let d = p.apply(doc, &mut self.env)?;
                self.push(i + 1, d)
            }
            Stage::ReplaceRoot(e) => {
                let d = new_root(e, &doc, &mut self.env)?;
                self.push(i + 1, d)
            }
            Stage::Skip(_) => {
                if let State::Skip(left) = &mut self.states[i] {
                    if *left > 0 {
                        *left -= 1;
                        return Ok(Flow::Go);
                    }
                }
                self.push(i + 1, doc)
            }
            Stage::Limit(_) => {
                let State::Limit(left) = &mut self.states[i] else {
                    return Ok(Flow::Stop);
                };
                if *left == 0 {
                    return Ok(Flow::Stop);
                }
                *left -= 1;
                let last = *left == 0;
                let f = self.push(i + 1, doc)?;
                Ok(if last { Flow::Stop } else { f })
            }
            Stage::Unwind(u) => {
                for d in u.apply(doc) {
                    if self.push(i + 1, d)? == Flow::Stop {
                        return Ok(Flow::Stop);
                    }
                }
                Ok(Flow::Go)
            }
            Stage::Lookup(l) => {
                let d = self.lookup(l, doc)?;
                self.push(i + 1, d)
            }
            Stage::Count(_) => {
                if let State::Count(n) = &mut self.states[i] {
                    *n += 1;
                }
                Ok(Flow::Go)
            }
            Stage::Group(g) => {
                let id =
                    g.id.evaluate(&doc, &mut self.env)?
                        .map_or(Value::Null, |c| c.into_owned());
                let key = key_of(Some(&id));
                let State::Group(state) = &mut self.states[i] else {
                    return Ok(Flow::Go);
                };
                let gi = match state.index.get(&key) {
                    Some(gi) => *gi,
                    None => {
                        let n = key.len() * 2 + mem_size(&id) + 96 + g.accs.len() * 80;
                        state
                            .groups
                            .push((id, g.accs.iter().map(|a| AccState::new(a.op)).collect()));
                        state.index.insert(key, state.groups.len() - 1);
                        let gi = state.groups.len() - 1;
                        self.charge(i, n)?;
                        gi
                    }
                };
                for (k, acc) in g.accs.iter().enumerate() {
                    let v = acc.arg.evaluate(&doc, &mut self.env)?;
                    let State::Group(state) = &mut self.states[i] else {
                        break;
                    };
                    let delta = state.groups[gi].1[k].add(v.as_deref())?;
                    if delta >= 0 {
                        self.charge(i, delta as usize)?;
                    } else {
                        self.held[i] = self.held[i].saturating_sub(delta.unsigned_abs());
                        self.ctx.mem.release(delta.unsigned_abs());
                    }
                }
                Ok(Flow::Go)
            }
            Stage::Sort(s) => {
                let n = mem_size(&doc);
                self.charge(i, n)?;
                let State::Sort(buf) = &mut self.states[i] else {
                    return Ok(Flow::Go);
                };
                buf.push((n, doc));
                if let Some(keep) = s.keep {
                    if buf.len() >= keep.saturating_mul(2).max(64) {
                        let before: usize = buf.iter().map(|(n, _)| n).sum();
                        s.sort.sort_vec(buf, |(_, d)| d, keep);
                        let after: usize = buf.iter().map(|(n, _)| n).sum();
                        self.held[i] = self.held[i].saturating_sub(before - after);
                        self.ctx.mem.release(before - after);
                    }
                }
                Ok(Flow::Go)
            }
            Stage::Sample(size) => {
                let size = *size;
                let n = mem_size(&doc);
                let State::Sample { kept, seen } = &mut self.states[i] else {
                    return Ok(Flow::Go);
                };
                *seen += 1;
                if kept.len() < size {
                    kept.push((n, doc));
                    self.charge(i, n)?;
                } else if size > 0 {
                    // reservoir sampling: every document has the same chance to be kept
                    let j = rand::rng().random_range(0..*seen);
                    if (j as usize) < size {
                        let old = std::mem::replace(&mut kept[j as usize], (n, doc)).0;
                        self.held[i] = self.held[i].saturating_sub(old);
                        self.ctx.mem.release(old);
                        self.charge(i, n)?;
                    }
                }
                Ok(Flow::Go)
            }
            Stage::Bucket(b) => {
                let v = b
                    .group_by
                    .evaluate(&doc, &mut self.env)?
                    .map_or(Value::Null, |c| c.into_owned());
                let slot = b.route(&v)?;
                let mut deltas = 0isize;
                let mut fresh = false;
                let mut inputs = Vec::with_capacity(b.accs.len());
                for acc in &b.accs {
                    inputs.push(acc.arg.evaluate(&doc, &mut self.env)?.map(|c| c.into_owned()));
                }
                if let State::Bucket(buckets) = &mut self.states[i] {
                    let states = buckets[slot].get_or_insert_with(|| {
                        fresh = true;
                        b.accs.iter().map(|a| AccState::new(a.op)).collect()
                    });
                    for (st, v) in states.iter_mut().zip(&inputs) {
                        deltas += st.add(v.as_ref())?;
                    }
                }
                if fresh {
                    self.charge(i, 96 + b.accs.len() * 80)?;
                }
                if deltas >= 0 {
                    self.charge(i, deltas as usize)?;
                } else {
                    self.ctx.mem.release(deltas.unsigned_abs());
                }
                Ok(Flow::Go)
            }
            Stage::Facet(_) => {
                let n = mem_size(&doc);
                self.charge(i, n)?;
                if let State::Facet(docs) = &mut self.states[i] {
                    docs.push(doc);
                }
                Ok(Flow::Go)
            }
            Stage::BucketAuto(b) => {
                let key = b
                    .group_by
                    .evaluate(&doc, &mut self.env)?
                    .map_or(Value::Null, |c| c.into_owned());
                let mut inputs = Vec::with_capacity(b.accs.len());
                for acc in &b.accs {
                    inputs.push(acc.arg.evaluate(&doc, &mut self.env)?.map(|c| c.into_owned()));
                }
                let n = mem_size(&key) + inputs.iter().flatten().map(mem_size).sum::<usize>() + 64;
                self.charge(i, n)?;
                if let State::BucketAuto(items) = &mut self.states[i] {
                    items.push((key, inputs, n));
                }
                Ok(Flow::Go)
            }
        }
    }

    fn emit(&mut self, doc: Value) -> Result<Flow, DbError> {
        match &mut self.sink {
            Sink::Output { list, bytes, max } => {
                let raw = serde_json::to_string(&doc).map_err(|e| DbError::Storage(e.to_string()))?;
                *bytes += raw.len() + 1;
                if *bytes > *max {
                    return Err(DbError::ResultTooLarge(*max));
                }
                list.push(RawValue::from_string(raw).map_err(|e| DbError::Storage(e.to_string()))?);
            }
            Sink::Collect { docs, charged } => {
                let n = mem_size(&doc);
                *charged += n;
                docs.push(doc);
                self.ctx.mem.charge(n, "$lookup")?;
            }
        }
        Ok(Flow::Go)
    }

    /// Lets every buffering stage emit what it holds, in pipeline order.
    fn finish(&mut self) -> Result<(), DbError> {
        for i in 0..self.stages.len() {
            let out = self.drain(i)?;
            self.ctx.mem.release(std::mem::take(&mut self.held[i]));
            for d in out {
                if self.push(i + 1, d)? == Flow::Stop {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The documents a buffering stage emits at the end.
    fn drain(&mut self, i: usize) -> Result<Vec<Value>, DbError> {
        let state = std::mem::replace(&mut self.states[i], State::None);
        Ok(match (&self.stages[i], state) {
            (Stage::Count(field), State::Count(n)) => {
                if n == 0 {
                    Vec::new()
                } else {
                    let mut m = Map::new();
                    m.insert(field.clone(), Value::from(n));
                    vec![Value::Object(m)]
                }
            }
            (Stage::Group(g), State::Group(state)) => {
                let mut out = Vec::with_capacity(state.groups.len());
                for (id, accs) in state.groups {
                    let mut m = Map::with_capacity(accs.len() + 1);
                    m.insert("_id".into(), id);
                    for (spec, acc) in g.accs.iter().zip(accs) {
                        m.insert(spec.field.clone(), acc.result(spec.op)?);
                    }
                    out.push(Value::Object(m));
                }
                out
            }
            (Stage::Sort(s), State::Sort(mut buf)) => {
                let keep = s.keep.unwrap_or(buf.len());
                s.sort.sort_vec(&mut buf, |(_, d)| d, keep);
                buf.into_iter().map(|(_, d)| d).collect()
            }
            (Stage::Sample(_), State::Sample { mut kept, .. }) => {
                kept.shuffle(&mut rand::rng());
                kept.into_iter().map(|(_, d)| d).collect()
            }
            (Stage::Bucket(b), State::Bucket(buckets)) => {
                let last = b.boundaries.len() - 1;
                let mut out: Vec<(Value, Value)> = Vec::new();
                for (slot, states) in buckets.into_iter().enumerate() {
                    let Some(states) = states else { continue };
                    let id = if slot == last {
                        b.default.clone().unwrap_or(Value::Null)
                    } else {
                        b.boundaries[slot].clone()
                    };
                    let mut m = Map::new();
                    m.insert("_id".into(), id.clone());
                    for (spec, acc) in b.accs.iter().zip(states) {
                        m.insert(spec.field.clone(), acc.result(spec.op)?);
                    }
                    out.push((id, Value::Object(m)));
                }
                out.sort_by(|a, b| compare(&a.0, &b.0));
                out.into_iter().map(|(_, d)| d).collect()
            }
            (Stage::Facet(branches), State::Facet(docs)) => {
                let mut m = Map::with_capacity(branches.len());
                for (name, stages) in branches {
                    let out = self.run_stages(stages, docs.iter(), self.env.vars().to_vec())?;
                    m.insert(name.clone(), Value::Array(out));
                }
                vec![Value::Object(m)]
            }
            (Stage::BucketAuto(b), State::BucketAuto(mut items)) => {
                items.sort_by(|x, y| compare(&x.0, &y.0));
                bucket_auto(b, items)?
            }
            _ => Vec::new(),
        })
    }

    /// `$lookup`: the input document with the matching foreign documents (or the sub-pipeline's
    /// result over them) as an array at `as`.
    fn lookup(&mut self, l: &'a Lookup, mut doc: Value) -> Result<Value, DbError> {
        let foreign = self.ctx.foreign(l)?;
        let results: Vec<Value> = if l.uncorrelated {
            let cached = self.ctx.uncorrelated.borrow().get(&l.id).cloned();
            let list = match cached {
                Some(list) => list,
                None => {
                    let list = Rc::new(self.sub_pipeline(l, foreign.docs.iter(), self.env.vars().to_vec())?);
                    self.ctx.mem.charge(list.iter().map(mem_size).sum(), "$lookup")?;
                    self.ctx.uncorrelated.borrow_mut().insert(l.id, list.clone());
                    list
                }
            };
            list.as_ref().clone()
        } else {
            let candidates: Vec<&Value> = match &foreign.index {
                Some(ix) => ix
                    .matches(&l.local_values(&doc))
                    .into_iter()
                    .filter_map(|p| foreign.docs.get(p as usize))
                    .collect(),
                None => foreign.docs.iter().collect(),
            };
            if l.pipeline.stages.is_empty() {
                candidates.into_iter().cloned().collect()
            } else {
                let mut vars = self.env.vars().to_vec();
                for (n, e) in &l.lets {
                    let v = e.evaluate(&doc, &mut self.env)?.map_or(Value::Null, |c| c.into_owned());
                    vars.push((n.clone(), v));
                }
                self.sub_pipeline(l, candidates.into_iter(), vars)?
            }
        };
        if let Some(m) = as_doc_mut(&mut doc) {
            set_plain(m, &l.as_path, Value::Array(results));
        }
        Ok(doc)
    }

    /// Runs a `$lookup`'s pipeline (after its source scan) over foreign documents.
    fn sub_pipeline<'x>(
        &self,
        l: &'a Lookup,
        docs: impl Iterator<Item = &'x Value>,
        vars: Vec<(String, Value)>,
    ) -> Result<Vec<Value>, DbError> {
        self.run_stages(&l.pipeline.stages, docs, vars)
    }

    /// Runs stages over documents (a `$lookup` pipeline, a `$facet` branch); their result.
    fn run_stages<'x>(
        &self,
        stages: &'a [Stage],
        docs: impl Iterator<Item = &'x Value>,
        vars: Vec<(String, Value)>,
    ) -> Result<Vec<Value>, DbError> {
        let sink = Sink::Collect {
            docs: Vec::new(),
            charged: 0,
        };
        let mut sub = Runner::new(stages, self.ctx, Env::with_vars(self.ctx.now, vars), sink);
        for d in docs {
            if sub.push(0, d.clone())? == Flow::Stop {
                break;
            }
        }
        sub.finish()?;
        match sub.sink {
            Sink::Collect { docs, charged } => {
                self.ctx.mem.release(charged);
                Ok(docs)
            }
            Sink::Output { .. } => Ok(Vec::new()),
        }
    }
}

/// `$bucketAuto` over documents sorted by their key: buckets of about the same number of
/// documents, equal keys never split, each bucket's `max` the next one's `min` (MongoDB's rules);
/// with a `granularity`, the boundaries are rounded to that series of preferred numbers.
fn bucket_auto(b: &stages::BucketAuto, items: Vec<(Value, Vec<Option<Value>>, usize)>) -> Result<Vec<Value>, DbError> {
    let n = items.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    if let Some(g) = &b.granularity {
        for (k, _, _) in &items {
            g.check(k)?;
        }
    }
    let approx = ((n as f64 / b.buckets as f64).round() as usize).max(1);
    let mut out = Vec::new();
    let mut it = items.into_iter().peekable();
    let mut bucket_no = 0;
    let mut previous_max: Option<Value> = None;
    while let Some(first) = it.next() {
        bucket_no += 1;
        let last_bucket = bucket_no == b.buckets;
        let min = match (&b.granularity, previous_max.take()) {
            (Some(_), Some(pm)) => pm,
            (Some(g), None) => g.round_down(&first.0)?,
            (None, _) => first.0.clone(),
        };
        let mut max = first.0.clone();
        let mut accs: Vec<AccState> = b.accs.iter().map(|a| AccState::new(a.op)).collect();
        let add = |item: &(Value, Vec<Option<Value>>, usize), accs: &mut Vec<AccState>| -> Result<(), DbError> {
            for (st, v) in accs.iter_mut().zip(&item.1) {
                st.add(v.as_ref())?;
            }
            Ok(())
        };
        add(&first, &mut accs)?;
        let mut count = 1;
        while count < approx || last_bucket {
            let Some(item) = it.next() else { break };
            add(&item, &mut accs)?;
            max = item.0;
            count += 1;
        }
        match &b.granularity {
            None => {
                while let Some(item) = it.next_if(|x| compare(&x.0, &max) == std::cmp::Ordering::Equal) {
                    add(&item, &mut accs)?;
                }
                if let Some(next) = it.peek() {
                    max = next.0.clone();
                }
            }
            Some(g) => {
                // values below the rounded-up boundary (or equal to the max) join this bucket
                let bound = g.round_up(&max)?;
                while let Some(item) = it.next_if(|x| {
                    compare(&bound, &x.0) == std::cmp::Ordering::Greater
                        || compare(&x.0, &max) == std::cmp::Ordering::Equal
                }) {
                    add(&item, &mut accs)?;
                    max = item.0;
                }
                max = match it.peek() {
                    Some(next) if bound.as_f64() == Some(0.0) => g.round_down(&next.0)?,
                    _ => bound,
                };
                previous_max = Some(max.clone());
            }
        }
        let mut m = Map::new();
        m.insert("_id".into(), json!({ "min": min, "max": max }));
        for (spec, acc) in b.accs.iter().zip(accs) {
            m.insert(spec.field.clone(), acc.result(spec.op)?);
        }
        out.push(Value::Object(m));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
