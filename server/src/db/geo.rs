//! Geo: GeoJSON geometries on the sphere, as MongoDB's `2dsphere` sees them. Parsing and
//! validation of GeoJSON (`db.Geo.*` values), the predicates `$geoWithin` / `$geoIntersects`, the
//! distance `$nearSphere` sorts by, and the S2 cells a geo index stores and a query scans.
//!
//! Geometry is done by `s2rst` (a port of Google's S2, the library MongoDB uses): coordinates are
//! WGS84 `[longitude, latitude]` turned into points on the unit sphere, edges are great-circle
//! arcs (shortest paths, so a polygon may cross the antimeridian or contain a pole), and a ring
//! stands for the smaller of the two regions it splits the sphere into (orientation is ignored, as
//! in MongoDB). Distances are angles times [`EARTH_RADIUS_M`] (MongoDB's 6378.1 km).

use s2rst::s1::Angle;
use s2rst::s2::boolean_operation::{Options, S2BooleanOperation};
use s2rst::s2::point_vector::PointVector;
use s2rst::s2::polyline::Polyline;
use s2rst::s2::region_coverer::RegionCoverer;
use s2rst::s2::shape_index::ShapeIndex;
use s2rst::s2::{Cap, CellUnion, LatLng, Level, Loop, Polygon, Region};
pub use s2rst::s2::{CellId, Point};
use serde_json::{Map, Value};

/// MongoDB's Earth radius for `2dsphere` distances, in metres.
pub const EARTH_RADIUS_M: f64 = 6_378_100.0;
/// Most positions in one geometry (all parts and rings together).
pub const MAX_VERTICES: usize = 100_000;
/// Most parts of a Multi* geometry or a GeometryCollection.
pub const MAX_PARTS: usize = 10_000;
/// The finest level of the cells covering lines and polygons in a geo index (~0.6 m); points are
/// indexed by their leaf cell (level 30, ~1 cm).
pub const COVER_MAX_LEVEL: u8 = 24;
/// Most cells covering one line or polygon in a geo index.
const COVER_MAX_CELLS: usize = 8;
/// Most cells one document gives a geo index (coarser cells stand in beyond that).
pub const MAX_CELLS_PER_DOC: usize = 500;
/// Most cells covering a query region.
const QUERY_MAX_CELLS: usize = 20;

/// A GeoJSON geometry: a list of simple parts (a Multi* or a GeometryCollection has several).
#[derive(Debug, Clone)]
pub struct Geometry {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Point(Point),
    Line(Polyline),
    Polygon(Polygon),
}

/// The region of `$geoWithin`: a (Multi)Polygon, or a spherical cap (`$centerSphere`).
#[derive(Debug, Clone)]
pub enum Within {
    Polygons(Vec<Polygon>),
    Cap { center: Point, radius: f64 },
}

fn err(msg: impl Into<String>) -> String {
    msg.into()
}

/// The longitude/latitude point of a position `[lon, lat]` (an altitude after them is ignored).
pub fn position(v: &Value) -> Result<Point, String> {
    let items = v
        .as_array()
        .filter(|a| (2..=3).contains(&a.len()))
        .ok_or_else(|| err("a position is an array [longitude, latitude]"))?;
    let num = |i: usize| items.get(i).and_then(Value::as_f64).filter(|f| f.is_finite());
    let (Some(lon), Some(lat)) = (num(0), num(1)) else {
        return Err(err("a position is an array [longitude, latitude] of numbers"));
    };
    if !(-180.0..=180.0).contains(&lon) {
        return Err(format!("longitude {lon} is outside [-180, 180]"));
    }
    if !(-90.0..=90.0).contains(&lat) {
        return Err(format!("latitude {lat} is outside [-90, 90]"));
    }
    // one name for the poles and the antimeridian, so equal places are equal points
    let lon = if lat.abs() == 90.0 {
        0.0
    } else if lon == -180.0 {
        180.0
    } else {
        lon
    };
    Ok(LatLng::from_degrees(lat, lon).to_point())
}

/// Counts positions so a geometry cannot grow past [`MAX_VERTICES`].
struct Budget(usize);

impl Budget {
    fn take(&mut self, n: usize) -> Result<(), String> {
        self.0 += n;
        if self.0 > MAX_VERTICES {
            return Err(format!("a geometry has at most {MAX_VERTICES} positions"));
        }
        Ok(())
    }
}

fn array<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("{what} must be an array"))
}

/// Positions with consecutive duplicates (the same point on the sphere) removed.
fn positions(v: &Value, what: &str, budget: &mut Budget) -> Result<Vec<Point>, String> {
    let items = array(v, what)?;
    budget.take(items.len())?;
    let mut out: Vec<Point> = Vec::with_capacity(items.len());
    for item in items {
        let p = position(item).map_err(|e| format!("{what}: {e}"))?;
        if out.last() != Some(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Nearly opposite points: the great circle between them is not defined.
fn antipodal(a: Point, b: Point) -> bool {
    a.distance(b).radians() > std::f64::consts::PI - 1e-9
}

fn line(v: &Value, budget: &mut Budget) -> Result<Polyline, String> {
    let pts = positions(v, "LineString coordinates", budget)?;
    if pts.len() < 2 {
        return Err(err("a LineString needs at least two different positions"));
    }
    if pts.windows(2).any(|w| antipodal(w[0], w[1])) {
        return Err(err(
            "a LineString cannot join two antipodal positions (the path between them is undefined)",
        ));
    }
    Ok(Polyline::new(pts))
}

/// One ring as a loop around the smaller region it bounds.
fn ring(v: &Value, budget: &mut Budget) -> Result<Loop, String> {
    let items = array(v, "a Polygon ring")?;
    if items.len() < 4 {
        return Err(err(
            "a Polygon ring needs at least four positions (the last equal to the first)",
        ));
    }
    if items.first() != items.last() && position(&items[0]).ok() != items.last().and_then(|l| position(l).ok()) {
        return Err(err(
            "a Polygon ring must be closed: its last position equal to its first",
        ));
    }
    let mut pts = positions(v, "a Polygon ring", budget)?;
    while pts.len() > 1 && pts.first() == pts.last() {
        pts.pop();
    }
    if pts.len() < 3 {
        return Err(err("a Polygon ring needs at least three different positions"));
    }
    let n = pts.len();
    if (0..n).any(|i| antipodal(pts[i], pts[(i + 1) % n])) {
        return Err(err(
            "a Polygon ring cannot join two antipodal positions (the edge between them is undefined)",
        ));
    }
    let mut l = Loop::new(pts);
    l.validate().map_err(|e| format!("invalid Polygon ring: {e}"))?;
    if let Some(e) = Polygon::from_loops(vec![l.clone()]).find_validation_error() {
        return Err(format!("a Polygon ring must not cross itself ({e})"));
    }
    l.normalize();
    Ok(l)
}

fn polygon(v: &Value, budget: &mut Budget) -> Result<Polygon, String> {
    let rings = array(v, "Polygon coordinates")?;
    let Some((shell, holes)) = rings.split_first() else {
        return Err(err("a Polygon needs at least one ring"));
    };
    let shell = ring(shell, budget)?;
    let mut loops = vec![shell];
    for (i, h) in holes.iter().enumerate() {
        let hole = ring(h, budget)?;
        if !loops[0].contains_loop(&hole) {
            return Err(format!("hole {} of a Polygon is not inside its exterior ring", i + 1));
        }
        if loops[1..].iter().any(|other| other.intersects_loop(&hole)) {
            return Err(format!("hole {} of a Polygon overlaps another hole", i + 1));
        }
        loops.push(hole);
    }
    let p = Polygon::from_loops(loops);
    if let Some(e) = p.find_validation_error() {
        return Err(format!("invalid Polygon: {e}"));
    }
    Ok(p)
}

/// The members of a Multi* geometry: 1 to [`MAX_PARTS`].
fn members<'a>(c: &'a Value, kind: &str) -> Result<&'a Vec<Value>, String> {
    let items = array(c, &format!("{kind} coordinates"))?;
    if items.is_empty() {
        return Err(format!("a {kind} needs at least one member"));
    }
    if items.len() > MAX_PARTS {
        return Err(format!("a {kind} has at most {MAX_PARTS} members"));
    }
    Ok(items)
}

fn type_of(m: &Map<String, Value>) -> Result<&str, String> {
    m.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| err("a GeoJSON geometry needs a string `type`"))
}

impl Geometry {
    /// Parses and validates a GeoJSON geometry object.
    pub fn parse(v: &Value) -> Result<Geometry, String> {
        let mut budget = Budget(0);
        Geometry::parse_with(v, &mut budget, true)
    }

    fn parse_with(v: &Value, budget: &mut Budget, top: bool) -> Result<Geometry, String> {
        let m = v
            .as_object()
            .ok_or_else(|| err("a GeoJSON geometry is an object {\"type\", \"coordinates\"}"))?;
        let kind = type_of(m)?;
        let coords = || {
            m.get("coordinates")
                .ok_or_else(|| format!("a GeoJSON {kind} needs `coordinates`"))
        };
        let many = |c| members(c, kind);
        let parts = match kind {
            "Point" => {
                budget.take(1)?;
                vec![Part::Point(position(coords()?)?)]
            }
            "MultiPoint" => {
                let items = many(coords()?)?;
                budget.take(items.len())?;
                items.iter().map(|p| position(p).map(Part::Point)).collect::<Result<_, _>>()?
            }
            "LineString" => vec![Part::Line(line(coords()?, budget)?)],
            "MultiLineString" => many(coords()?)?
                .iter()
                .map(|l| line(l, budget).map(Part::Line))
                .collect::<Result<_, _>>()?,
            "Polygon" => vec![Part::Polygon(polygon(coords()?, budget)?)],
            "MultiPolygon" => many(coords()?)?
                .iter()
                .map(|p| polygon(p, budget).map(Part::Polygon))
                .collect::<Result<_, _>>()?,
            "GeometryCollection" => {
                if !top {
                    return Err(err("a GeometryCollection cannot contain another GeometryCollection"));
                }
                let items = m
                    .get("geometries")
                    .ok_or_else(|| err("a GeometryCollection needs `geometries`"))?;
                let items = array(items, "GeometryCollection geometries")?;
                if items.is_empty() || items.len() > MAX_PARTS {
                    return Err(format!("a GeometryCollection has 1 to {MAX_PARTS} geometries"));
                }
                let mut parts = Vec::new();
                for g in items {
                    parts.extend(Geometry::parse_with(g, budget, false)?.parts);
                }
                parts
            }
            other => {
                return Err(format!(
                    "unknown GeoJSON type `{}` (Point, LineString, Polygon, MultiPoint, MultiLineString, MultiPolygon, GeometryCollection)",
                    other.chars().take(32).collect::<String>()
                ))
            }
        };
        Ok(Geometry { parts })
    }

    /// The geometry a stored value holds, if it is valid GeoJSON (anything else matches no geo
    /// condition).
    pub fn of_value(v: &Value) -> Option<Geometry> {
        let m = v.as_object()?;
        if !m.contains_key("type") {
            return None;
        }
        Geometry::parse(v).ok()
    }

    /// The geometry if it is a single point.
    pub fn as_point(&self) -> Option<Point> {
        match self.parts.as_slice() {
            [Part::Point(p)] => Some(*p),
            _ => None,
        }
    }

    /// The smallest angle (radians) between `p` and any point of the geometry (0 inside a polygon).
    pub fn distance(&self, p: Point) -> f64 {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Point(q) => p.distance(*q).radians(),
                Part::Line(l) => p.distance(l.project(p).0).radians(),
                Part::Polygon(poly) => poly.get_distance(p).radians(),
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// True if the geometries share at least one point.
    pub fn intersects(&self, other: &Geometry) -> bool {
        // the common cases without building shape indexes
        match (self.as_point(), other.as_point()) {
            (Some(a), Some(b)) => return a == b,
            (Some(a), None) | (None, Some(a)) => {
                let g = if self.as_point().is_some() { other } else { self };
                if g.parts.iter().all(|p| matches!(p, Part::Polygon(_) | Part::Point(_))) {
                    return g.parts.iter().any(|p| match p {
                        Part::Point(q) => *q == a,
                        Part::Polygon(poly) => poly.contains_point(&a),
                        Part::Line(_) => false,
                    });
                }
            }
            (None, None) => {}
        }
        S2BooleanOperation::intersects(&mut self.index(), &mut other.index(), Options::default())
    }

    /// True if every point of the geometry lies inside `region`.
    pub fn within(&self, region: &Within) -> bool {
        match region {
            Within::Cap { center, radius } => {
                // inside the cap ⟺ no point nearer than π − r to the antipode of its centre
                let anti = Point(-center.0);
                self.distance(anti) >= std::f64::consts::PI - radius
            }
            // each part within one of the polygons
            Within::Polygons(polys) => self.parts.iter().all(|part| {
                polys.iter().any(|poly| match part {
                    Part::Point(p) => poly.contains_point(p),
                    Part::Polygon(q) => poly.contains_polygon(q),
                    Part::Line(l) => {
                        let mut a = ShapeIndex::new();
                        a.add(Box::new(poly.clone()));
                        let mut b = ShapeIndex::new();
                        b.add(Box::new(l.clone()));
                        S2BooleanOperation::contains(&mut a, &mut b, Options::default())
                    }
                })
            }),
        }
    }

    fn index(&self) -> ShapeIndex {
        let mut ix = ShapeIndex::new();
        let points: Vec<Point> = self
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Point(q) => Some(*q),
                _ => None,
            })
            .collect();
        if !points.is_empty() {
            ix.add(Box::new(PointVector::new(points)));
        }
        for part in &self.parts {
            match part {
                Part::Point(_) => {}
                Part::Line(l) => {
                    ix.add(Box::new(l.clone()));
                }
                Part::Polygon(p) => {
                    ix.add(Box::new(p.clone()));
                }
            }
        }
        ix
    }

    /// The cells a geo index stores for this geometry: leaf cells for points, a coarse covering of
    /// lines and polygons; at most [`MAX_CELLS_PER_DOC`], normalized (no cell inside another).
    pub fn index_cells(&self) -> Vec<CellId> {
        let coverer = RegionCoverer::new()
            .max_level(Level::new(COVER_MAX_LEVEL))
            .max_cells(COVER_MAX_CELLS);
        let mut cells = Vec::new();
        for part in &self.parts {
            match part {
                Part::Point(p) => cells.push(CellId::from_point(p)),
                Part::Line(l) => cells.extend_from_slice(coverer.covering(l).cell_ids()),
                Part::Polygon(p) => cells.extend_from_slice(coverer.covering(p).cell_ids()),
            }
        }
        coarsen_index(cells)
    }

    /// Cells whose union contains the geometry, for a query.
    pub fn query_cells(&self) -> Vec<CellId> {
        let coverer = query_coverer();
        let mut cells = Vec::new();
        for part in &self.parts {
            match part {
                Part::Point(p) => cells.push(CellId::from_point(p)),
                Part::Line(l) => cells.extend_from_slice(coverer.covering(l).cell_ids()),
                Part::Polygon(p) => cells.extend_from_slice(coverer.covering(p).cell_ids()),
            }
        }
        coarsen(cells, QUERY_MAX_CELLS * 4)
    }

    /// The geometry as a `$geoWithin` region: a Polygon or MultiPolygon.
    pub fn into_within(self) -> Result<Within, String> {
        let mut polys = Vec::with_capacity(self.parts.len());
        for p in self.parts {
            match p {
                Part::Polygon(poly) => polys.push(poly),
                _ => return Err(err("`$geoWithin` `$geometry` must be a Polygon or a MultiPolygon")),
            }
        }
        Ok(Within::Polygons(polys))
    }
}

/// Index cells, sorted and without duplicates; past [`MAX_CELLS_PER_DOC`], coarser cells (never
/// finer than [`COVER_MAX_LEVEL`]) stand in for them. Cells are not merged into parents otherwise,
/// so a non-leaf index cell is never finer than [`COVER_MAX_LEVEL`] (queries look up coarser
/// cells only down to that level).
fn coarsen_index(mut cells: Vec<CellId>) -> Vec<CellId> {
    cells.sort_unstable();
    cells.dedup();
    let mut level = COVER_MAX_LEVEL;
    while cells.len() > MAX_CELLS_PER_DOC {
        cells = cells
            .iter()
            .map(|c| {
                if c.level().as_u8() > level {
                    c.parent_at_level(Level::new(level))
                } else {
                    *c
                }
            })
            .collect();
        cells.sort_unstable();
        cells.dedup();
        if level == 0 {
            break;
        }
        level -= 1;
    }
    cells
}

fn query_coverer() -> RegionCoverer {
    RegionCoverer::new().max_level(Level::MAX).max_cells(QUERY_MAX_CELLS)
}

/// Normalizes `cells` and, while there are more than `max`, replaces them by their ancestors one
/// level up (a coarser set that still covers the same region).
fn coarsen(cells: Vec<CellId>, max: usize) -> Vec<CellId> {
    let mut u = CellUnion::from_cell_ids(cells);
    while u.num_cells() > max {
        let finest = u.cell_ids().iter().map(|c| c.level().as_u8()).max().unwrap_or(0);
        if finest == 0 {
            break;
        }
        let up: Vec<CellId> = u
            .cell_ids()
            .iter()
            .map(|c| if c.level().as_u8() == finest { c.parent() } else { *c })
            .collect();
        u = CellUnion::from_cell_ids(up);
    }
    u.cell_ids().to_vec()
}

impl Within {
    /// Cells whose union contains the region, for a query.
    pub fn query_cells(&self) -> Vec<CellId> {
        let coverer = query_coverer();
        match self {
            Within::Cap { center, radius } => cap_cells(*center, *radius),
            Within::Polygons(polys) => {
                let mut cells = Vec::new();
                for p in polys {
                    cells.extend_from_slice(coverer.covering(p).cell_ids());
                }
                coarsen(cells, QUERY_MAX_CELLS * 4)
            }
        }
    }
}

/// Cells covering the spherical cap of `radius` radians around `center`.
pub fn cap_cells(center: Point, radius: f64) -> Vec<CellId> {
    if radius >= std::f64::consts::PI {
        return CellUnion::whole_sphere().cell_ids().to_vec();
    }
    let cap = Cap::from_center_angle(center, Angle::from_radians(radius));
    query_coverer().covering(&cap).cell_ids().to_vec()
}

/// The union of `cells` without the cells of `done` (both normalized).
pub fn cells_minus(cells: &[CellId], done: &[CellId]) -> Vec<CellId> {
    CellUnion::from_cell_ids(cells.to_vec())
        .difference(&CellUnion::from_verbatim(done.to_vec()))
        .cell_ids()
        .to_vec()
}

/// `a ∪ b`, normalized.
pub fn cells_union(a: &[CellId], b: &[CellId]) -> Vec<CellId> {
    let mut all = a.to_vec();
    all.extend_from_slice(b);
    CellUnion::from_cell_ids(all).cell_ids().to_vec()
}

/// Metres on the Earth as an angle on the unit sphere.
pub fn metres_to_radians(m: f64) -> f64 {
    m / EARTH_RADIUS_M
}

pub fn radians_to_metres(r: f64) -> f64 {
    r * EARTH_RADIUS_M
}

#[cfg(test)]
mod tests;
