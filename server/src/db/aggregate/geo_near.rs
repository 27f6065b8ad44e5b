//! `$geoNear`: parsing the stage (MongoDB's options, and `limit` as CloudBase documents it) and
//! what it writes into each document it outputs.
//!
//! It is not a stage the runner runs: as the first stage of a pipeline it becomes the pipeline's
//! source. Its `query` is the source [`super::Scan`]'s query, so the access rules check and narrow
//! it exactly like a leading `$match`, and `Database::geo_near_each` streams the matching
//! documents nearest first (through the 2dsphere index when there is one); the memory it holds on
//! the way is charged to the aggregation's budget.

use serde_json::{Map, Value};

use super::expr::{Env, Expr, Scope};
use super::values::{as_doc_mut, cmd, set_plain, shown, split_path, truthy, Num};
use crate::db::documents::GeoHit;
use crate::db::geo::{self, Geometry};
use crate::db::query::Filter;
use crate::db::DbError;

const OPTIONS: &[&str] = &[
    "near",
    "distanceField",
    "spherical",
    "maxDistance",
    "minDistance",
    "query",
    "key",
    "includeLocs",
    "distanceMultiplier",
    "limit",
    "num",
    "uniqueDocs",
];

/// A parsed `$geoNear` (its `query` goes to the pipeline's source scan).
pub(super) struct GeoNearSpec {
    /// The point, as a GeoJSON Point.
    pub near: Value,
    /// `near` was a legacy `[lon, lat]` pair: distances and bounds are in radians, not metres.
    pub radians: bool,
    pub distance_field: Vec<String>,
    pub include_locs: Option<Vec<String>>,
    pub multiplier: f64,
    /// Bounds in metres.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The field holding the locations (`None`: the only 2dsphere index's).
    pub key: Option<String>,
    /// `limit`/`num` (MongoDB before 4.2, CloudBase's documentation): at most this many.
    pub limit: Option<u64>,
    /// The `$expr` part of `query`, tested on each stored document before the distance is added.
    pub expr: Option<Expr>,
}

fn number(name: &str, v: &Value) -> Result<f64, DbError> {
    v.as_f64().filter(|d| d.is_finite() && *d >= 0.0).ok_or_else(|| {
        cmd(format!(
            "`$geoNear` `{name}` must be a non-negative number, not {}",
            shown(Some(v))
        ))
    })
}

fn path(name: &str, v: &Value) -> Result<Vec<String>, DbError> {
    match v {
        Value::String(s) => split_path(s, &format!("`$geoNear` `{name}`")),
        other => Err(cmd(format!(
            "`$geoNear` `{name}` must be a field path string, not {}",
            shown(Some(other))
        ))),
    }
}

/// Parses `{$geoNear: spec}`'s spec: the stage, and its `query` (without `$expr`) for the source.
pub(super) fn parse(spec: &Value, scope: &mut Scope) -> Result<(GeoNearSpec, Option<Value>), DbError> {
    let Value::Object(m) = spec else {
        return Err(cmd(
            "`$geoNear` needs an object of options such as {\"near\": {\"type\": \"Point\", \"coordinates\": [lon, lat]}, \"distanceField\": \"distance\"}",
        ));
    };
    if let Some(k) = m.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
        return Err(cmd(format!(
            "unknown `$geoNear` option `{}` (options: {})",
            k.chars().take(64).collect::<String>(),
            OPTIONS.join(", ")
        )));
    }
    let spherical = match m.get("spherical") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(cmd(format!(
                "`$geoNear` `spherical` must be true or false, not {}",
                shown(Some(other))
            )))
        }
    };
    let (near, radians) = match m.get("near") {
        None | Some(Value::Null) => {
            return Err(cmd(
                "`$geoNear` needs `near`: a GeoJSON Point {\"type\": \"Point\", \"coordinates\": [lon, lat]}",
            ))
        }
        Some(v @ Value::Object(_)) => {
            let g = Geometry::parse(v).map_err(|e| DbError::InvalidGeometry(format!("`$geoNear` `near`: {e}")))?;
            if g.as_point().is_none() {
                return Err(DbError::InvalidGeometry("`$geoNear` `near` must be a Point".into()));
            }
            (v.clone(), false)
        }
        Some(v @ Value::Array(_)) => {
            if let Err(e) = geo::position(v) {
                return Err(DbError::InvalidGeometry(format!("`$geoNear` `near`: {e}")));
            }
            if !spherical {
                return Err(DbError::NotSupported(
                    "`$geoNear` with a legacy [lon, lat] `near` needs `spherical: true` (flat 2d geometry is not supported); or give a GeoJSON Point".into(),
                ));
            }
            (serde_json::json!({"type": "Point", "coordinates": v}), true)
        }
        Some(other) => {
            return Err(cmd(format!(
            "`$geoNear` `near` must be a GeoJSON Point {{\"type\": \"Point\", \"coordinates\": [lon, lat]}}, not {}",
            shown(Some(other))
        )))
        }
    };
    let distance_field = match m.get("distanceField") {
        None | Some(Value::Null) => {
            return Err(cmd(
                "`$geoNear` needs `distanceField`: the field to write each document's distance to",
            ))
        }
        Some(v) => path("distanceField", v)?,
    };
    let include_locs = m.get("includeLocs").map(|v| path("includeLocs", v)).transpose()?;
    let key = match m.get("key") {
        None | Some(Value::Null) => None,
        Some(v) => {
            path("key", v)?;
            v.as_str().map(str::to_string)
        }
    };
    let multiplier = match m.get("distanceMultiplier") {
        None | Some(Value::Null) => 1.0,
        Some(v) => number("distanceMultiplier", v)?,
    };
    // legacy pairs measure in radians (MongoDB's rule); the search takes metres
    let bound = |name: &str| -> Result<Option<f64>, DbError> {
        match m.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let d = number(name, v)?;
                Ok(Some(if radians { geo::radians_to_metres(d) } else { d }))
            }
        }
    };
    let (min, max) = (bound("minDistance")?, bound("maxDistance")?);
    let limit = match m.get("num").or_else(|| m.get("limit")) {
        None | Some(Value::Null) => None,
        Some(v) => match Num::of(v).and_then(Num::exact_int) {
            Some(n) if n >= 1 => Some(n as u64),
            _ => {
                return Err(cmd(format!(
                    "`$geoNear` `limit` must be a positive integer, not {}",
                    shown(Some(v))
                )))
            }
        },
    };
    match m.get("uniqueDocs") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(other) => {
            return Err(cmd(format!(
                "`$geoNear` `uniqueDocs` must be true or false, not {}",
                shown(Some(other))
            )))
        }
    }
    let (query, expr) = match m.get("query") {
        None | Some(Value::Null) => (None, None),
        Some(Value::Object(q)) => {
            let mut q = q.clone();
            let expr = q.shift_remove("$expr").map(|e| Expr::compile(&e, scope)).transpose()?;
            let q = Value::Object(q);
            if Filter::parse(&q)?.near().is_some() {
                return Err(cmd(
                    "`$geoNear` `query` cannot contain `$near`/`$nearSphere`: `$geoNear` already orders by distance",
                ));
            }
            let q = if q.as_object().is_some_and(Map::is_empty) {
                None
            } else {
                Some(q)
            };
            (q, expr)
        }
        Some(other) => {
            return Err(cmd(format!(
                "`$geoNear` `query` must be a query object, not {}",
                shown(Some(other))
            )))
        }
    };
    let spec = GeoNearSpec {
        near,
        radians,
        distance_field,
        include_locs,
        multiplier,
        min,
        max,
        key,
        limit,
        expr,
    };
    Ok((spec, query))
}

impl GeoNearSpec {
    /// The document `$geoNear` outputs for a hit: the distance (in the unit of `near`, times the
    /// multiplier) at `distanceField`, the location at `includeLocs`; `None` when the `$expr`
    /// part of the query rejects it.
    pub fn output(&self, hit: GeoHit, env: &mut Env) -> Result<Option<Value>, DbError> {
        let mut doc = hit.doc;
        if let Some(e) = &self.expr {
            if !truthy(e.evaluate(&doc, env)?.as_deref()) {
                return Ok(None);
            }
        }
        let d = if self.radians {
            geo::metres_to_radians(hit.distance)
        } else {
            hit.distance
        } * self.multiplier;
        if let Some(m) = as_doc_mut(&mut doc) {
            set_plain(m, &self.distance_field, Value::from(d));
            if let (Some(p), Some(loc)) = (&self.include_locs, hit.location) {
                set_plain(m, p, loc);
            }
        }
        Ok(Some(doc))
    }
}

#[cfg(test)]
mod tests;
