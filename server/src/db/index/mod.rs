//! Secondary indexes: their definitions (kept in the collection's metadata), the entries a document
//! gives each index, keeping entries in step with every write (unique indexes refuse violations),
//! the planner (`plan.rs`) and background builds and drops (`build.rs`).
//!
//! An entry is `x/{env}/{coll}/{index id}/{encoded values}{_id}` → `_id` (unique indexes leave the
//! `_id` out of the key, so one value has one key). Values are encoded by `keys.rs` so key order is
//! value order; a missing field is indexed as null, and an array gives one entry per element
//! (a *multikey* index, like MongoDB's). A compound index over two array fields of one document is
//! refused, as MongoDB refuses "parallel arrays".
//!
//! A geo index (`2dsphere`, one field) stores instead, for each GeoJSON geometry the field holds,
//! the S2 cells covering it (`geo.rs`): `x/{env}/{coll}/{index id}/{8-byte cell id}{_id}` → `_id`.
//! A cell's descendants are one contiguous range of ids, so a query region becomes a few key
//! ranges (`plan.rs`, `near.rs`). Documents without the field are not indexed; a value that is not
//! valid GeoJSON is refused, as MongoDB refuses it.

pub(super) mod build;
pub mod keys;
pub mod near;
pub mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::geo::Geometry;
use super::query::DotPath;
use super::DbError;
use crate::db::kv::Op;

pub use build::resume;

/// Most fields in one compound index.
pub const MAX_FIELDS: usize = 8;
/// Most indexes on one collection.
pub const MAX_INDEXES: usize = 32;
/// Most entries one document may give one index (array elements × compound fields).
const MAX_ENTRIES_PER_DOC: usize = 1000;

/// One field of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexField {
    pub field: String,
    /// `asc`, `desc`, or `2dsphere` (a geo index).
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Asc,
    Desc,
    /// S2 cells of GeoJSON geometries, for `$nearSphere`, `$geoWithin`, `$geoIntersects`.
    #[serde(rename = "2dsphere")]
    Geo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Entries are being written for the existing documents; new writes already maintain it, the
    /// planner does not use it yet.
    Building,
    Ready,
    /// The build stopped (a unique index met a duplicate); the index is not used. Drop it.
    Failed,
    /// Its entries are being deleted.
    Dropping,
}

/// An index as stored in the collection's metadata (`indexes` array) and shown to admins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexDef {
    pub name: String,
    /// The storage id of its entries (a dropped and re-created index never sees old entries).
    pub id: String,
    pub fields: Vec<IndexField>,
    pub unique: bool,
    /// Some document gave it more than one entry (an array field).
    #[serde(default)]
    pub multikey: bool,
    pub state: State,
    /// Build progress: documents done, and how many there were when the build started.
    #[serde(default)]
    pub done: u64,
    #[serde(default)]
    pub total: u64,
    /// The last `_id` the build has indexed (a restarted build goes on from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: i64,
}

/// What an admin asks for.
#[derive(Debug, Clone)]
pub struct IndexSpec {
    pub fields: Vec<IndexField>,
    pub unique: bool,
    pub name: Option<String>,
}

impl IndexSpec {
    /// Parses `FIELD[:desc],…` (`:asc`, `:1`, `:-1` accepted too).
    pub fn parse_fields(s: &str) -> Result<Vec<IndexField>, DbError> {
        s.split(',')
            .map(|part| {
                let (field, dir) = part.trim().split_once(':').unwrap_or((part.trim(), "asc"));
                let direction = match dir {
                    "asc" | "1" => Direction::Asc,
                    "desc" | "-1" => Direction::Desc,
                    "2dsphere" => Direction::Geo,
                    other => {
                        return Err(DbError::InvalidParam(format!(
                            "index direction `{}` is not `asc`, `desc` or `2dsphere`",
                            other.chars().take(32).collect::<String>()
                        )))
                    }
                };
                Ok(IndexField {
                    field: field.to_string(),
                    direction,
                })
            })
            .collect()
    }

    /// Checks the fields and names the index (`field_1_other_-1` unless named).
    pub fn validate(&self) -> Result<String, DbError> {
        let bad = |m: String| Err(DbError::InvalidParam(m));
        if self.fields.is_empty() || self.fields.len() > MAX_FIELDS {
            return bad(format!("an index has 1 to {MAX_FIELDS} fields"));
        }
        let mut seen = HashSet::new();
        for f in &self.fields {
            let ok = !f.field.is_empty()
                && f.field.len() <= 256
                && !f.field.starts_with('$')
                && f.field.split('.').all(|s| !s.is_empty() && !s.starts_with('$'))
                && !f.field.chars().any(char::is_control);
            if !ok {
                return bad(format!(
                    "`{}` is not a field path (dot-separated names, none empty or starting with `$`)",
                    f.field.chars().take(64).collect::<String>()
                ));
            }
            if !seen.insert(f.field.as_str()) {
                return bad(format!("field `{}` appears twice in the index", f.field));
            }
        }
        if self.fields.iter().any(|f| f.direction == Direction::Geo) {
            if self.fields.len() > 1 {
                return bad("a 2dsphere index has exactly one field".into());
            }
            if self.unique {
                return bad("a 2dsphere index cannot be unique".into());
            }
        }
        let name = match &self.name {
            Some(n) => n.clone(),
            None => self
                .fields
                .iter()
                .map(|f| {
                    let suffix = match f.direction {
                        Direction::Asc => "1",
                        Direction::Desc => "-1",
                        Direction::Geo => "2dsphere",
                    };
                    format!("{}_{suffix}", f.field)
                })
                .collect::<Vec<_>>()
                .join("_"),
        };
        let name_ok = !name.is_empty()
            && name.len() <= 128
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !name_ok {
            return bad("an index name is 1-128 characters: letters, digits, `_`, `-`, `.`".into());
        }
        Ok(name)
    }
}

/// An index ready to compute entries.
pub struct Index {
    pub def: IndexDef,
    paths: Vec<DotPath>,
    /// `x/{env}/{coll}/{id}/`
    pub prefix: Vec<u8>,
}

impl Index {
    pub fn new(env: &str, coll: &str, def: IndexDef) -> Index {
        Index {
            paths: def.fields.iter().map(|f| DotPath::parse(&f.field)).collect(),
            prefix: entries_prefix(env, coll, &def.id),
            def,
        }
    }

    /// Whether writes keep its entries.
    pub fn maintained(&self) -> bool {
        matches!(self.def.state, State::Building | State::Ready)
    }

    /// A `2dsphere` index.
    pub fn is_geo(&self) -> bool {
        self.def.fields.first().is_some_and(|f| f.direction == Direction::Geo)
    }

    /// The indexed field.
    pub fn first_field(&self) -> &str {
        self.def.fields.first().map_or("", |f| f.field.as_str())
    }

    /// The key of `cell` for document `id` in a geo index.
    pub fn cell_key(&self, cell: u64, id: &str) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(&cell.to_be_bytes());
        k.extend_from_slice(id.as_bytes());
        k
    }

    /// A geo index's keys: the cells of every geometry the field holds (an array may hold several).
    fn geo_keys(&self, id: &str, doc: &Value) -> Result<(Vec<Vec<u8>>, bool), DbError> {
        let field = self.first_field();
        let mut cells = Vec::new();
        let mut index_value = |v: &Value| -> Result<(), DbError> {
            let g = Geometry::parse(v).map_err(|e| {
                DbError::InvalidGeometry(format!(
                    "document `{id}`: field `{field}` (2dsphere index `{}`): {e}",
                    self.def.name
                ))
            })?;
            cells.extend(g.index_cells().into_iter().map(|c| c.id()));
            Ok(())
        };
        for v in self.paths.iter().flat_map(|p| p.values(doc)).flatten() {
            match v {
                Value::Null => {}
                Value::Array(items) => items.iter().try_for_each(&mut index_value)?,
                other => index_value(other)?,
            }
        }
        cells.sort_unstable();
        cells.dedup();
        if cells.len() > MAX_ENTRIES_PER_DOC {
            return Err(DbError::InvalidParam(format!(
                "document `{id}` would give index `{}` more than {MAX_ENTRIES_PER_DOC} entries",
                self.def.name
            )));
        }
        let multikey = cells.len() > 1;
        Ok((cells.into_iter().map(|c| self.cell_key(c, id)).collect(), multikey))
    }

    /// The keys `doc` gives this index (sorted, no duplicates), and whether it took more than one
    /// value of a field (an array).
    pub fn keys(&self, id: &str, doc: &Value) -> Result<(Vec<Vec<u8>>, bool), DbError> {
        if self.is_geo() {
            return self.geo_keys(id, doc);
        }
        let mut tuples: Vec<Vec<u8>> = vec![self.prefix.clone()];
        let mut multi_field: Option<&str> = None;
        let mut multikey = false;
        for (path, f) in self.paths.iter().zip(&self.def.fields) {
            let reached = path.values(doc);
            let mut values: Vec<Option<&Value>> = Vec::with_capacity(reached.len());
            for v in reached.iter().copied() {
                match v {
                    Some(Value::Array(items)) => {
                        multikey = true;
                        if items.is_empty() {
                            values.push(v);
                        } else {
                            values.extend(items.iter().map(Some));
                        }
                    }
                    other => values.push(other),
                }
            }
            if reached.len() > 1 {
                multikey = true;
            }
            if values.len() > 1 {
                if let Some(other) = multi_field {
                    return Err(DbError::InvalidParam(format!(
                        "index `{}` cannot index parallel arrays: `{other}` and `{}` are both arrays in document `{id}`",
                        self.def.name, f.field
                    )));
                }
                multi_field = Some(&f.field);
            }
            let mut next = Vec::with_capacity(tuples.len() * values.len().max(1));
            for t in &tuples {
                for v in values.iter().copied() {
                    let mut k = t.clone();
                    match f.direction {
                        Direction::Desc => keys::encode_desc(v, &mut k),
                        Direction::Asc | Direction::Geo => keys::encode(v, &mut k),
                    }
                    next.push(k);
                }
            }
            if next.len() > MAX_ENTRIES_PER_DOC {
                return Err(DbError::InvalidParam(format!(
                    "document `{id}` would give index `{}` more than {MAX_ENTRIES_PER_DOC} entries",
                    self.def.name
                )));
            }
            tuples = next;
        }
        if !self.def.unique {
            tuples.iter_mut().for_each(|k| k.extend_from_slice(id.as_bytes()));
        }
        tuples.sort_unstable();
        tuples.dedup();
        Ok((tuples, multikey))
    }

    /// The field values of `doc` this index holds, for messages (`{"email": "a@b.c"}`).
    fn describe(&self, doc: &Value) -> String {
        let mut m = serde_json::Map::new();
        for (path, f) in self.paths.iter().zip(&self.def.fields) {
            let v = path
                .values(doc)
                .into_iter()
                .next()
                .flatten()
                .cloned()
                .unwrap_or(Value::Null);
            m.insert(f.field.clone(), v);
        }
        let s = Value::Object(m).to_string();
        if s.len() > 200 {
            format!("{}…", s.chars().take(200).collect::<String>())
        } else {
            s
        }
    }
}

pub fn entries_prefix(env: &str, coll: &str, id: &str) -> Vec<u8> {
    format!("x/{env}/{coll}/{id}/").into_bytes()
}

/// The indexes of one collection.
#[derive(Default)]
pub struct Indexes {
    pub list: Vec<Arc<Index>>,
}

impl Indexes {
    pub fn from_meta(env: &str, coll: &str, meta: &serde_json::Map<String, Value>) -> Result<Indexes, DbError> {
        let defs = build::defs_of(meta)?;
        Ok(Indexes {
            list: defs.into_iter().map(|d| Arc::new(Index::new(env, coll, d))).collect(),
        })
    }

    /// Whether any write has entries to keep.
    pub fn any_maintained(&self) -> bool {
        self.list.iter().any(|i| i.maintained())
    }
}

/// Reads one key of the store.
pub type Lookup<'a> = dyn Fn(&[u8]) -> Result<Option<Vec<u8>>, DbError> + 'a;

/// The index side of one write: entry puts and deletes, unique checks, and which indexes became
/// multikey (their definitions must be saved with the write).
pub struct IndexWrites<'a> {
    indexes: &'a Indexes,
    ops: Vec<Op>,
    /// Unique keys this write takes, with the `_id` taking them.
    claimed: HashMap<Vec<u8>, String>,
    /// Keys this write frees.
    freed: HashSet<Vec<u8>>,
    /// Ids of indexes that became multikey.
    became_multikey: Vec<String>,
}

impl<'a> IndexWrites<'a> {
    pub fn new(indexes: &'a Indexes) -> IndexWrites<'a> {
        IndexWrites {
            indexes,
            ops: Vec::new(),
            claimed: HashMap::new(),
            freed: HashSet::new(),
            became_multikey: Vec::new(),
        }
    }

    /// Records the change of document `id` from `old` to `new` (`None`: absent). `existing` looks
    /// up who holds a unique key in the store now.
    pub fn change(
        &mut self,
        id: &str,
        old: Option<&Value>,
        new: Option<&Value>,
        existing: &Lookup<'_>,
    ) -> Result<(), DbError> {
        for ix in self.indexes.list.iter().filter(|i| i.maintained()) {
            let old_keys = match old {
                Some(d) => ix.keys(id, d)?.0,
                None => Vec::new(),
            };
            let (new_keys, multikey) = match new {
                Some(d) => ix.keys(id, d)?,
                None => (Vec::new(), false),
            };
            if multikey && !ix.def.multikey && !self.became_multikey.contains(&ix.def.id) {
                self.became_multikey.push(ix.def.id.clone());
            }
            for k in old_keys.iter().filter(|k| new_keys.binary_search(k).is_err()) {
                self.ops.push(Op::Delete(k.clone()));
                if ix.def.unique {
                    self.claimed.remove(k);
                    self.freed.insert(k.clone());
                }
            }
            for k in new_keys.iter().filter(|k| old_keys.binary_search(k).is_err()) {
                if ix.def.unique {
                    let holder = match self.claimed.get(k) {
                        Some(holder) => Some(holder.clone()),
                        None if self.freed.contains(k) => None,
                        None => existing(k)?.map(|v| String::from_utf8_lossy(&v).into_owned()),
                    };
                    if holder.is_some_and(|h| h != id) {
                        return Err(DbError::DuplicateKey {
                            index: ix.def.name.clone(),
                            value: new.map(|d| ix.describe(d)).unwrap_or_default(),
                        });
                    }
                    self.freed.remove(k);
                    self.claimed.insert(k.clone(), id.to_string());
                }
                self.ops.push(Op::Put(k.clone(), id.as_bytes().to_vec()));
            }
        }
        Ok(())
    }

    /// The entry ops, and the ids of the indexes that became multikey (their definitions must be
    /// saved in the same batch).
    pub fn into_parts(self) -> (Vec<Op>, Vec<String>) {
        (self.ops, self.became_multikey)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod geo_tests;
