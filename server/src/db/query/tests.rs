//! Unit tests of the query matcher, element filters and sort orders.
use super::*;
use serde_json::json;

fn f(q: Value) -> Filter {
    match Filter::parse(&q) {
        Ok(f) => f,
        Err(e) => panic!("{q}: {e}"),
    }
}

fn m(q: Value, doc: Value) -> bool {
    f(q).matches(&doc)
}

fn err(q: Value) -> DbError {
    match Filter::parse(&q) {
        Ok(_) => panic!("{q} parsed"),
        Err(e) => e,
    }
}

#[test]
fn empty_and_simple_equality() {
    assert!(f(json!({})).is_empty());
    assert!(f(json!({"$comment": "x"})).is_empty());
    assert!(m(json!({}), json!({"a": 1})));
    assert!(m(json!({"a": 1}), json!({"a": 1.0})));
    assert!(!m(json!({"a": 1}), json!({"a": "1"})));
    assert!(!m(json!({"a": 1}), json!({"b": 1})));
    assert!(m(json!({"a": 1, "b": "x"}), json!({"b": "x", "a": 1})));
    assert!(!m(json!({"a": 1, "b": "x"}), json!({"b": "y", "a": 1})));
    assert!(m(json!({"d": {"$date": 5}}), json!({"d": {"$date": 5}})));
    assert!(!m(json!({"d": {"$date": 5}}), json!({"d": 5})));
    assert!(matches!(Filter::parse(&json!([1])), Err(DbError::InvalidParam(_))));
}

#[test]
fn dot_paths() {
    let doc = json!({"a": {"b": [{"c": 1}, {"c": 2, "d": [5, 6]}], "x": {"y": "z"}}});
    assert!(m(json!({"a.x.y": "z"}), doc.clone()));
    assert!(m(json!({"a.b.0.c": 1}), doc.clone()));
    assert!(!m(json!({"a.b.0.c": 2}), doc.clone()));
    assert!(m(json!({"a.b.1.c": 2}), doc.clone()));
    assert!(m(json!({"a.b.c": 2}), doc.clone()), "array of objects is looked into");
    assert!(m(json!({"a.b.d": 6}), doc.clone()));
    assert!(m(json!({"a.b.1.d.1": 6}), doc.clone()));
    assert!(m(json!({"a.b.d.1": 6}), doc.clone()));
    assert!(!m(json!({"a.b.5.c": 1}), doc.clone()));
    assert!(m(json!({"a.b.5.c": null}), doc.clone()));
    assert!(!m(json!({"a.x.y.z": "z"}), doc.clone()));
    assert!(m(json!({"a.0": 1}), json!({"a": [1, 2]})));
    assert!(
        m(json!({"a.0": 1}), json!({"a": [{"0": 1}]})),
        "numeric component as a field name"
    );
    assert!(!m(json!({"a.01": 1}), json!({"a": [1]})));
    assert!(
        !m(json!({"a.b": 1}), json!({"a": [[{"b": 1}]]})),
        "nested arrays are not entered"
    );
    assert!(!m(json!({"d.$date": 5}), json!({"d": {"$date": 5}})));
}

#[test]
fn array_equality() {
    let doc = json!({"tags": ["a", "b"], "nested": [[1, 2], 3]});
    assert!(m(json!({"tags": "a"}), doc.clone()));
    assert!(m(json!({"tags": ["a", "b"]}), doc.clone()));
    assert!(!m(json!({"tags": ["b", "a"]}), doc.clone()));
    assert!(!m(json!({"tags": "c"}), doc.clone()));
    assert!(m(json!({"nested": [1, 2]}), doc.clone()));
    assert!(!m(json!({"nested": 1}), doc.clone()));
    assert!(m(json!({"nested": {"$eq": 3}}), doc.clone()));
}

#[test]
fn object_equality_is_exact_and_ordered() {
    let doc = json!({"o": {"a": 1, "b": 2}});
    assert!(m(json!({"o": {"a": 1, "b": 2}}), doc.clone()));
    assert!(!m(json!({"o": {"b": 2, "a": 1}}), doc.clone()));
    assert!(!m(json!({"o": {"a": 1}}), doc.clone()));
    assert!(m(json!({"o": {"$eq": {"a": 1, "b": 2.0}}}), doc));
}

#[test]
fn null_and_missing() {
    assert!(m(json!({"a": null}), json!({})));
    assert!(m(json!({"a": null}), json!({"a": null})));
    assert!(m(json!({"a": null}), json!({"a": [1, null]})));
    assert!(!m(json!({"a": null}), json!({"a": 0})));
    assert!(!m(json!({"a": null}), json!({"a": []})));
    assert!(m(json!({"a.b": null}), json!({"a": 5})));
    assert!(m(json!({"a.b": null}), json!({"a": [{"b": 1}, {"c": 1}]})));
    assert!(m(json!({"a": {"$ne": null}}), json!({"a": 0})));
    assert!(!m(json!({"a": {"$ne": null}}), json!({})));
    assert!(m(json!({"a": {"$in": [null, 5]}}), json!({})));
    assert!(m(json!({"a": {"$gte": null}}), json!({})));
    assert!(m(json!({"a": {"$lte": null}}), json!({"a": null})));
    assert!(!m(json!({"a": {"$gt": null}}), json!({"a": 1})));
    assert!(!m(json!({"a": {"$lt": null}}), json!({})));
}

#[test]
fn negations_match_missing() {
    assert!(m(json!({"a": {"$ne": 1}}), json!({})));
    assert!(m(json!({"a": {"$ne": 1}}), json!({"a": 2})));
    assert!(!m(json!({"a": {"$ne": 1}}), json!({"a": [1, 2]})));
    assert!(m(json!({"a": {"$nin": [1, 2]}}), json!({})));
    assert!(!m(json!({"a": {"$nin": [1, 2]}}), json!({"a": 2})));
    assert!(m(json!({"a": {"$nin": [1, 2]}}), json!({"a": [3]})));
    assert!(m(json!({"a": {"$not": {"$gt": 10}}}), json!({})));
    assert!(m(json!({"a": {"$not": {"$gt": 10}}}), json!({"a": 5})));
    assert!(m(json!({"a": {"$not": {"$gt": 10}}}), json!({"a": "x"})));
    assert!(!m(json!({"a": {"$not": {"$gt": 10}}}), json!({"a": 11})));
    assert!(!m(json!({"a": {"$not": {"$gt": 1, "$lt": 5}}}), json!({"a": 3})));
    assert!(m(json!({"a": {"$not": {"$gt": 1, "$lt": 5}}}), json!({"a": 7})));
    assert!(m(
        json!({"a": {"$not": {"$regex": "^x", "$options": "i"}}}),
        json!({"a": "yes"})
    ));
    assert!(!m(
        json!({"a": {"$not": {"$regex": "^x", "$options": "i"}}}),
        json!({"a": "Xy"})
    ));
}

#[test]
fn exists() {
    assert!(m(json!({"a": {"$exists": true}}), json!({"a": null})));
    assert!(!m(json!({"a": {"$exists": true}}), json!({})));
    assert!(m(json!({"a": {"$exists": false}}), json!({})));
    assert!(!m(json!({"a": {"$exists": false}}), json!({"a": 0})));
    assert!(m(json!({"a": {"$exists": 1}}), json!({"a": 0})));
    assert!(m(json!({"a": {"$exists": 0}}), json!({})));
    assert!(m(json!({"a.b": {"$exists": true}}), json!({"a": [{"c": 1}, {"b": 1}]})));
    assert!(!m(
        json!({"a.b": {"$exists": false}}),
        json!({"a": [{"c": 1}, {"b": 1}]})
    ));
    assert!(m(json!({"a.b": {"$exists": false}}), json!({"a": [{"c": 1}]})));
    assert!(matches!(
        err(json!({"a": {"$exists": "yes"}})),
        DbError::InvalidCommand(_)
    ));
}

#[test]
fn range_operators_respect_type_brackets() {
    assert!(m(json!({"n": {"$gt": 5}}), json!({"n": 6})));
    assert!(m(json!({"n": {"$gt": 5}}), json!({"n": 5.5})));
    assert!(!m(json!({"n": {"$gt": 5}}), json!({"n": 5})));
    assert!(m(json!({"n": {"$gte": 5}}), json!({"n": 5.0})));
    assert!(!m(json!({"n": {"$gt": 5}}), json!({"n": "9"})));
    assert!(!m(json!({"n": {"$lt": 5}}), json!({"n": null})));
    assert!(!m(json!({"n": {"$lt": 5}}), json!({})));
    assert!(!m(json!({"n": {"$gt": 5}}), json!({"n": true})));
    assert!(m(json!({"s": {"$gte": "b", "$lt": "c"}}), json!({"s": "banana"})));
    assert!(!m(json!({"s": {"$gte": "b"}}), json!({"s": 100})));
    assert!(m(json!({"d": {"$lt": {"$date": 10}}}), json!({"d": {"$date": 5}})));
    assert!(!m(json!({"d": {"$lt": {"$date": 10}}}), json!({"d": 5})));
    assert!(!m(json!({"d": {"$gt": 5}}), json!({"d": {"$date": 10}})));
    assert!(m(json!({"n": {"$gt": 5}}), json!({"n": [1, 7]})), "any element");
    assert!(
        m(json!({"n": {"$gt": 5, "$lt": 2}}), json!({"n": [1, 7]})),
        "different elements, as MongoDB"
    );
    assert!(!m(
        json!({"n": {"$elemMatch": {"$gt": 5, "$lt": 2}}}),
        json!({"n": [1, 7]})
    ));
    assert!(m(json!({"b": {"$lte": false}}), json!({"b": false})));
}

#[test]
fn in_and_nin() {
    assert!(m(json!({"t": {"$in": ["a", "b"]}}), json!({"t": "b"})));
    assert!(m(json!({"t": {"$in": ["a", "b"]}}), json!({"t": ["x", "a"]})));
    assert!(!m(json!({"t": {"$in": ["a", "b"]}}), json!({"t": "c"})));
    assert!(!m(json!({"t": {"$in": []}}), json!({"t": "c"})));
    assert!(m(json!({"t": {"$nin": []}}), json!({"t": "c"})));
    assert!(m(json!({"t": {"$in": [1, {"$date": 3}]}}), json!({"t": {"$date": 3}})));
    assert!(m(json!({"t": {"$in": [[1, 2]]}}), json!({"t": [1, 2]})));
    assert!(m(
        json!({"t": {"$in": [{"$regex": "^al", "$options": "i"}, "zed"]}}),
        json!({"t": "Alice"})
    ));
    assert!(m(json!({"t": {"$nin": [{"$regex": "^al"}]}}), json!({"t": "bob"})));
    assert!(!m(json!({"t": {"$nin": [{"$regex": "^al"}]}}), json!({"t": "alice"})));
    let many: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
    assert!(m(json!({"t": {"$in": many}}), json!({"t": "s57"})));
    assert!(matches!(err(json!({"t": {"$in": "a"}})), DbError::InvalidCommand(_)));
    assert!(matches!(
        err(json!({"t": {"$nin": {"a": 1}}})),
        DbError::InvalidCommand(_)
    ));
    assert!(matches!(
        err(json!({"t": {"$in": [{"$gt": 1}]}})),
        DbError::InvalidCommand(_)
    ));
}

#[test]
fn logic() {
    let doc = json!({"a": 1, "b": 2});
    assert!(m(json!({"$or": [{"a": 2}, {"b": 2}]}), doc.clone()));
    assert!(!m(json!({"$or": [{"a": 2}, {"b": 3}]}), doc.clone()));
    assert!(m(json!({"$and": [{"a": 1}, {"b": {"$gt": 1}}]}), doc.clone()));
    assert!(!m(json!({"$and": [{"a": 1}, {"b": {"$gt": 2}}]}), doc.clone()));
    assert!(m(json!({"$nor": [{"a": 2}, {"b": 3}]}), doc.clone()));
    assert!(!m(json!({"$nor": [{"a": 1}]}), doc.clone()));
    assert!(m(
        json!({"$or": [{"$and": [{"a": 1}, {"$nor": [{"b": 1}]}]}]}),
        doc.clone()
    ));
    assert!(m(json!({"a": {"$or": [{"$lt": 0}, {"$gt": 0}]}}), doc.clone()));
    assert!(!m(json!({"a": {"$nor": [1, {"$gt": 0}]}}), doc.clone()));
    for bad in [
        json!({"$or": []}),
        json!({"$or": {}}),
        json!({"$and": [1]}),
        json!({"$nor": [[]]}),
    ] {
        match err(bad) {
            DbError::InvalidCommand(msg) => assert!(msg.contains('$'), "{msg}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn captured_sdk_query() {
    let q = json!({"done":false,"tags":{"$in":["a","b"]},"owner.name":{"$regex":"^al","$options":"i"},
        "due":{"$lt":{"$date":1700000000000i64}},"extra":{"$exists":true},
        "$and":[{"priority":{"$gte":2}},{"priority":{"$lt":5}}]});
    let doc = json!({"_id": "doc-1", "done": false, "tags": ["b"], "owner": {"name": "Alan"},
        "due": {"$date": 1600000000000i64}, "extra": 0, "priority": 4});
    assert!(m(q.clone(), doc.clone()));
    let mut other = doc.clone();
    other["priority"] = json!(5);
    assert!(!m(q.clone(), other));
    let q2 = json!({"arr":{"$size":3},"items":{"$elemMatch":{"n":{"$gt":1}}},"score":{"$not":{"$gt":10}},"meta.level":{"$nin":[1,2]}});
    assert!(m(
        q2.clone(),
        json!({"arr": [1, 2, 3], "items": [{"n": 0}, {"n": 2}], "score": 3, "meta": {"level": 3}})
    ));
    assert!(!m(q2, json!({"arr": [1, 2, 3], "items": [{"n": 0}], "score": 3})));
}

#[test]
fn arrays_all_elem_match_size() {
    let doc = json!({"t": ["a", "b", "c"], "items": [{"n": 1, "k": "x"}, {"n": 5, "k": "y"}]});
    assert!(m(json!({"t": {"$all": ["c", "a"]}}), doc.clone()));
    assert!(!m(json!({"t": {"$all": ["c", "z"]}}), doc.clone()));
    assert!(!m(json!({"t": {"$all": []}}), doc.clone()));
    assert!(m(json!({"t": {"$all": [{"$regex": "^b"}]}}), doc.clone()));
    assert!(m(json!({"t": {"$all": ["a"]}}), json!({"t": "a"})));
    assert!(m(
        json!({"items": {"$all": [{"$elemMatch": {"n": 1}}, {"$elemMatch": {"k": "y"}}]}}),
        doc.clone()
    ));
    assert!(!m(
        json!({"items": {"$all": [{"$elemMatch": {"n": 1, "k": "y"}}]}}),
        doc.clone()
    ));
    assert!(m(
        json!({"items": {"$elemMatch": {"n": {"$gte": 5}, "k": "y"}}}),
        doc.clone()
    ));
    assert!(!m(json!({"items": {"$elemMatch": {"n": 1, "k": "y"}}}), doc.clone()));
    assert!(m(
        json!({"items": {"$elemMatch": {"$or": [{"n": 7}, {"k": "x"}]}}}),
        doc.clone()
    ));
    assert!(!m(
        json!({"items": {"$elemMatch": {"n": 1}}}),
        json!({"items": {"n": 1}})
    ));
    assert!(m(json!({"t": {"$elemMatch": {"$gt": "b"}}}), doc.clone()));
    assert!(!m(json!({"t": {"$elemMatch": {"$gt": "c"}}}), doc.clone()));
    assert!(m(json!({"t": {"$size": 3}}), doc.clone()));
    assert!(m(json!({"t": {"$size": 3.0}}), doc.clone()));
    assert!(!m(json!({"t": {"$size": 2}}), doc.clone()));
    assert!(!m(json!({"s": {"$size": 1}}), json!({"s": "a"})));
    assert!(!m(json!({"s": {"$size": 0}}), json!({})));
    assert!(m(json!({"s": {"$size": 0}}), json!({"s": []})));
    assert!(m(json!({"a.b": {"$size": 1}}), json!({"a": [{"b": [1]}, {"b": 2}]})));
    for bad in [
        json!({"t": {"$size": -1}}),
        json!({"t": {"$size": 1.5}}),
        json!({"t": {"$size": "1"}}),
        json!({"t": {"$all": "a"}}),
        json!({"t": {"$elemMatch": 1}}),
        json!({"t": {"$all": [{"$gt": 1}]}}),
    ] {
        assert!(matches!(err(bad), DbError::InvalidCommand(_)));
    }
}

#[test]
fn modulo() {
    assert!(m(json!({"n": {"$mod": [4, 0]}}), json!({"n": 8})));
    assert!(m(json!({"n": {"$mod": [4, 1]}}), json!({"n": 9.7})));
    assert!(m(json!({"n": {"$mod": [4, -1]}}), json!({"n": -5})));
    assert!(m(json!({"n": {"$mod": [-1, 0]}}), json!({"n": i64::MIN})));
    assert!(m(json!({"n": {"$mod": [2, 1]}}), json!({"n": [2, 3]})));
    assert!(!m(json!({"n": {"$mod": [4, 0]}}), json!({"n": "8"})));
    assert!(!m(json!({"n": {"$mod": [4, 0]}}), json!({})));
    for bad in [
        json!([0, 1]),
        json!([4]),
        json!([4, 1, 2]),
        json!(4),
        json!(["4", 0]),
        json!([0.5, 0]),
    ] {
        assert!(matches!(err(json!({"n": {"$mod": bad}})), DbError::InvalidCommand(_)));
    }
}

#[test]
fn regexes() {
    assert!(m(json!({"s": {"$regex": "^al"}}), json!({"s": "alice"})));
    assert!(!m(json!({"s": {"$regex": "^al"}}), json!({"s": "Alice"})));
    assert!(m(
        json!({"s": {"$options": "i", "$regex": "^al"}}),
        json!({"s": "Alice"})
    ));
    assert!(m(json!({"s": {"$regex": "^b", "$options": "m"}}), json!({"s": "a\nb"})));
    assert!(m(
        json!({"s": {"$regex": "a.b", "$options": "s"}}),
        json!({"s": "a\nb"})
    ));
    assert!(!m(json!({"s": {"$regex": "a.b"}}), json!({"s": "a\nb"})));
    assert!(m(
        json!({"s": {"$regex": "a b # c", "$options": "x"}}),
        json!({"s": "ab"})
    ));
    assert!(m(json!({"s": {"$regex": "张"}}), json!({"s": ["x", "张三"]})));
    assert!(!m(json!({"s": {"$regex": "1"}}), json!({"s": 1})));
    assert!(m(json!({"s": {"$regex": "^A", "$options": "gi"}}), json!({"s": "abc"})));
    assert!(matches!(err(json!({"s": {"$regex": "("}})), DbError::InvalidRegex(_)));
    assert!(matches!(
        err(json!({"s": {"$regex": "(?=x)"}})),
        DbError::InvalidRegex(_)
    ));
    assert!(matches!(
        err(json!({"s": {"$regex": "a", "$options": "q"}})),
        DbError::InvalidRegex(_)
    ));
    assert!(matches!(
        err(json!({"s": {"$regex": "a{1000}{1000}{1000}"}})),
        DbError::InvalidRegex(_)
    ));
    assert!(matches!(
        err(json!({"s": {"$options": "i"}})),
        DbError::InvalidCommand(_)
    ));
    assert!(matches!(err(json!({"s": {"$regex": 5}})), DbError::InvalidCommand(_)));
}

#[test]
fn type_operator() {
    assert!(m(json!({"a": {"$type": "string"}}), json!({"a": "x"})));
    assert!(m(json!({"a": {"$type": "number"}}), json!({"a": 1.5})));
    assert!(m(json!({"a": {"$type": 16}}), json!({"a": 1})));
    assert!(m(json!({"a": {"$type": "long"}}), json!({"a": 1i64 << 40})));
    assert!(m(json!({"a": {"$type": "date"}}), json!({"a": {"$date": 1}})));
    assert!(!m(json!({"a": {"$type": "object"}}), json!({"a": {"$date": 1}})));
    assert!(m(json!({"a": {"$type": "array"}}), json!({"a": []})));
    assert!(m(json!({"a": {"$type": ["bool", "null"]}}), json!({"a": [1, null]})));
    assert!(!m(json!({"a": {"$type": "null"}}), json!({})));
    assert!(matches!(
        err(json!({"a": {"$type": "nope"}})),
        DbError::InvalidCommand(_)
    ));
}

#[test]
fn unknown_and_unsupported_operators() {
    match err(json!({"a": {"$foo": 1}})) {
        DbError::InvalidCommand(msg) => assert_eq!(msg, "unknown query operator `$foo`"),
        other => panic!("{other:?}"),
    }
    match err(json!({"$foo": 1})) {
        DbError::InvalidCommand(msg) => assert_eq!(msg, "unknown query operator `$foo`"),
        other => panic!("{other:?}"),
    }
    for q in [
        json!({"$expr": {}}),
        json!({"$text": {"$search": "x"}}),
        json!({"$jsonSchema": {}}),
    ] {
        assert!(matches!(err(q), DbError::InvalidCommand(m) if m.ends_with("is not supported yet")));
    }
    assert!(matches!(err(json!({"a": {"$not": 5}})), DbError::InvalidCommand(_)));
    assert!(matches!(err(json!({"a": {"$not": {}}})), DbError::InvalidCommand(_)));
    assert!(matches!(
        err(json!({"a": {"$not": {"b": 1}}})),
        DbError::InvalidCommand(_)
    ));
    assert!(matches!(
        err(json!({"a": {"$gt": 1, "b": 1}})),
        DbError::InvalidCommand(_)
    ));
    // a first key without `$` makes the object a literal value
    assert!(m(json!({"a": {"b": 1, "$gt": 1}}), json!({"a": {"b": 1, "$gt": 1}})));
}

fn point(lon: f64, lat: f64) -> Value {
    json!({"type": "Point", "coordinates": [lon, lat]})
}

fn near(lon: f64, lat: f64, max: Value, min: Value) -> Value {
    json!({"loc": {"$nearSphere": {"$geometry": point(lon, lat), "$maxDistance": max, "$minDistance": min}}})
}

#[test]
fn geo_within_and_intersects_match_geojson_values() {
    let sq = json!({"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]});
    let within = json!({"loc": {"$geoWithin": {"$geometry": sq}}});
    assert!(m(within.clone(), json!({"loc": point(5.0, 5.0)})));
    assert!(!m(within.clone(), json!({"loc": point(15.0, 5.0)})));
    assert!(
        !m(within.clone(), json!({"loc": [5, 5]})),
        "legacy pairs are not geometries"
    );
    assert!(!m(within.clone(), json!({"loc": "x"})));
    assert!(!m(within.clone(), json!({})));
    // an array of geometries matches when one does; a nested path reaches them
    assert!(m(within.clone(), json!({"loc": [point(50.0, 5.0), point(5.0, 5.0)]})));
    assert!(m(
        json!({"shop.loc": {"$geoWithin": {"$geometry": sq}}}),
        json!({"shop": [{"loc": point(50.0, 0.0)}, {"loc": point(1.0, 1.0)}]})
    ));
    // `$within` is MongoDB's old name
    assert!(m(
        json!({"loc": {"$within": {"$geometry": sq}}}),
        json!({"loc": point(5.0, 5.0)})
    ));
    // $centerSphere: radians
    let cs = json!({"loc": {"$geoWithin": {"$centerSphere": [[0, 0], 0.01]}}});
    assert!(m(cs.clone(), json!({"loc": point(0.5, 0.0)})));
    assert!(!m(cs, json!({"loc": point(0.6, 0.0)})));
    let line = json!({"type": "LineString", "coordinates": [[-5, 5], [15, 5]]});
    let inter = json!({"loc": {"$geoIntersects": {"$geometry": line}}});
    assert!(m(inter.clone(), json!({"loc": sq})));
    assert!(!m(inter.clone(), json!({"loc": point(5.0, 6.0)})));
    // with other conditions, and negated
    assert!(!m(
        json!({"loc": {"$not": {"$geoIntersects": {"$geometry": line}}}}),
        json!({"loc": sq})
    ));
    assert!(m(json!({"$or": [inter, {"a": 1}]}), json!({"a": 1})));
}

#[test]
fn near_matches_a_distance_range_and_reports_the_nearest_distance() {
    // 0.01 degree of longitude at the equator is about 1113 m
    let q = near(0.0, 0.0, json!(1200), json!(1000));
    assert!(m(q.clone(), json!({"loc": point(0.01, 0.0)})));
    assert!(
        !m(q.clone(), json!({"loc": point(0.005, 0.0)})),
        "nearer than $minDistance"
    );
    assert!(!m(q.clone(), json!({"loc": point(0.02, 0.0)})), "beyond $maxDistance");
    assert!(!m(q.clone(), json!({"loc": "here"})));
    // an array: its nearest geometry decides
    assert!(!m(q.clone(), json!({"loc": [point(0.01, 0.0), point(0.001, 0.0)]})));
    let filter = f(q);
    let d = filter
        .distance(&json!({"loc": [point(0.01, 0.0), point(0.02, 0.0)]}))
        .unwrap();
    assert!((crate::db::geo::radians_to_metres(d) - 1113.2).abs() < 1.0, "{d}");
    assert_eq!(filter.near().map(|(p, _)| p), Some("loc"));
    // distances beside the operator (MongoDB's other spelling), and none at all
    let q = json!({"loc": {"$near": {"$geometry": point(0.0, 0.0)}, "$maxDistance": 500}});
    assert!(m(q.clone(), json!({"loc": point(0.001, 0.0)})));
    assert!(!m(q, json!({"loc": point(0.01, 0.0)})));
    assert!(m(
        near(0.0, 0.0, Value::Null, Value::Null),
        json!({"loc": point(179.0, 0.0)})
    ));
    // inside a top-level $and (as rules narrow queries) it is still the query's $near
    let and = f(json!({"$and": [near(0.0, 0.0, json!(10), json!(0)), {"_openid": "u"}]}));
    assert!(and.near().is_some());
}

#[test]
fn bad_geo_queries_are_clear_errors() {
    let geom = |e: DbError| matches!(e, DbError::InvalidGeometry(_));
    let command = |e: DbError, want: &str| matches!(&e, DbError::InvalidCommand(m) if m.contains(want));
    let unsupported = |e: DbError| matches!(e, DbError::NotSupported(_));
    assert!(geom(err(
        json!({"loc": {"$geoWithin": {"$geometry": {"type": "Point", "coordinates": [0, 0]}}}})
    )));
    assert!(geom(err(
        json!({"loc": {"$geoWithin": {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0.5]]]}}}})
    )));
    assert!(geom(err(
        json!({"loc": {"$geoIntersects": {"$geometry": {"type": "Point", "coordinates": [0, 91]}}}})
    )));
    let line = json!({"type": "LineString", "coordinates": [[0, 0], [1, 1]]});
    assert!(geom(err(json!({"loc": {"$nearSphere": {"$geometry": line}}}))));
    assert!(command(
        err(json!({"loc": {"$geoIntersects": {"type": "Point", "coordinates": [0, 0]}}})),
        "$geometry"
    ));
    assert!(command(err(json!({"loc": {"$geoWithin": 5}})), "$centerSphere"));
    assert!(command(
        err(json!({"loc": {"$geoWithin": {"$centerSphere": [[0, 0], -1]}}})),
        "non-negative"
    ));
    assert!(command(err(near(0.0, 0.0, json!(-1), json!(0))), "$maxDistance"));
    assert!(command(err(near(0.0, 0.0, json!("far"), json!(0))), "$maxDistance"));
    assert!(command(err(json!({"loc": {"$maxDistance": 5}})), "needs `$near`"));
    assert!(command(
        err(json!({"loc": {"$nearSphere": {"$geometry": point(0.0, 0.0), "$foo": 1}}})),
        "$foo"
    ));
    assert!(command(err(json!({"loc": {"$nearSphere": {}}})), "$geometry"));
    assert!(unsupported(err(json!({"loc": {"$nearSphere": [0, 0]}}))));
    assert!(unsupported(err(
        json!({"loc": {"$geoWithin": {"$box": [[0, 0], [1, 1]]}}})
    )));
    assert!(unsupported(err(
        json!({"loc": {"$geoWithin": {"$polygon": [[0, 0], [1, 1], [1, 0]]}}})
    )));
    // $near only once, only at the top level
    let n = near(0.0, 0.0, json!(10), json!(0));
    assert!(command(err(json!({"$or": [n.clone(), {"a": 1}]})), "top-level"));
    assert!(command(err(json!({"$nor": [n.clone()]})), "top-level"));
    assert!(command(err(json!({"loc": {"$not": n["loc"].clone()}})), "top-level"));
    assert!(command(err(json!({"a": {"$elemMatch": n.clone()}})), "top-level"));
    assert!(command(
        err(json!({"a": {"$elemMatch": n["loc"].clone()}})),
        "$elemMatch"
    ));
    assert!(command(
        err(json!({"$and": [n.clone(), {"other": n["loc"].clone()}]})),
        "only one"
    ));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let mut q = json!({"a": 1});
    for _ in 0..200 {
        q = json!({ "$or": [q] });
    }
    assert!(matches!(err(q), DbError::NestingTooDeep(_)));
    let mut c = json!({"$gt": 1});
    for _ in 0..200 {
        c = json!({ "$not": c });
    }
    assert!(matches!(err(json!({ "a": c })), DbError::NestingTooDeep(_)));
    let mut c = json!({"n": 1});
    for _ in 0..200 {
        c = json!({ "a": {"$elemMatch": c} });
    }
    assert!(matches!(err(c), DbError::NestingTooDeep(_)));
    let mut q = json!({"a": 1});
    for _ in 0..20 {
        q = json!({ "$and": [q, {"b": {"$not": {"$elemMatch": {"$ne": 3}}}}] });
    }
    assert!(m(q, json!({"a": 1, "b": [3]})));
}

#[test]
fn id_equals_and_equality_fields() {
    assert_eq!(f(json!({"_id": "x"})).id_equals(), Some("x"));
    assert_eq!(f(json!({"_id": {"$eq": "x"}, "a": 1})).id_equals(), Some("x"));
    assert_eq!(
        f(json!({"a": 1, "$and": [{"b": 2}, {"_id": "y"}]})).id_equals(),
        Some("y")
    );
    assert_eq!(f(json!({"_id": 5})).id_equals(), None);
    assert_eq!(f(json!({"_id": {"$in": ["x"]}})).id_equals(), None);
    assert_eq!(f(json!({"$or": [{"_id": "x"}]})).id_equals(), None);
    assert_eq!(f(json!({"_id": {"$ne": "x"}})).id_equals(), None);
    assert_eq!(f(json!({"_id.x": "x"})).id_equals(), None);
    let eq = f(json!({"a": 1, "b.c": {"$eq": "x"}, "d": {"$gt": 1}, "e": {"$ne": 1},
        "$and": [{"f": [1]}], "$or": [{"g": 1}]}))
    .equality_fields();
    assert_eq!(
        eq,
        vec![
            ("a".into(), json!(1)),
            ("b.c".into(), json!("x")),
            ("f".into(), json!([1]))
        ]
    );
}

#[test]
fn element_filter() {
    let gt = ElementFilter::parse(&json!({"$gt": 3})).unwrap();
    assert!(gt.matches(&json!(4)));
    assert!(!gt.matches(&json!(3)));
    assert!(!gt.matches(&json!([5])), "no array traversal on the value itself");
    let q = ElementFilter::parse(&json!({"score": 8, "item": "B"})).unwrap();
    assert!(q.matches(&json!({"item": "B", "score": 8, "extra": 1})));
    assert!(!q.matches(&json!({"item": "B"})));
    assert!(!q.matches(&json!(8)));
    let eq = ElementFilter::parse(&json!([1, 2])).unwrap();
    assert!(eq.matches(&json!([1, 2])));
    assert!(!eq.matches(&json!(1)));
    let eq = ElementFilter::parse(&json!("a")).unwrap();
    assert!(eq.matches(&json!("a")));
    let date = ElementFilter::parse(&json!({"$date": 5})).unwrap();
    assert!(date.matches(&json!({"$date": 5})));
    let re = ElementFilter::parse(&json!({"$regex": "^a"})).unwrap();
    assert!(re.matches(&json!("abc")));
    let ex = ElementFilter::parse(&json!({"$exists": true, "$ne": 2})).unwrap();
    assert!(ex.matches(&json!(1)) && !ex.matches(&json!(2)));
    let logic = ElementFilter::parse(&json!({"$or": [{"a": 1}, {"b": 1}]})).unwrap();
    assert!(logic.matches(&json!({"b": 1})));
    let nested = ElementFilter::parse(&json!({"answers": {"$elemMatch": {"q": 2, "a": {"$gte": 8}}}})).unwrap();
    assert!(nested.matches(&json!({"answers": [{"q": 1, "a": 9}, {"q": 2, "a": 8}]})));
    let any_obj = ElementFilter::parse(&json!({})).unwrap();
    assert!(any_obj.matches(&json!({"x": 1})) && !any_obj.matches(&json!(1)));
    assert!(matches!(
        ElementFilter::parse(&json!({"$bogus": 1})),
        Err(DbError::InvalidCommand(_))
    ));
}

/// Sorts with `compare` and with `sort_vec`, checks they agree, returns the ids.
fn sorted(sort: &Sort, docs: Vec<Value>) -> Vec<Value> {
    let mut by_compare = docs.clone();
    by_compare.sort_by(|a, b| sort.compare(a, b));
    let pairs: Vec<(usize, Value)> = docs.into_iter().enumerate().collect();
    // every partial selection is a prefix of the full stable sort
    for keep in 0..=pairs.len() {
        let mut top = pairs.clone();
        sort.sort_vec(&mut top, |p| &p.1, keep);
        let top: Vec<Value> = top.into_iter().map(|p| p.1).collect();
        assert_eq!(top, by_compare[..keep].to_vec(), "keep {keep}");
    }
    let by_vec = by_compare.clone();
    by_vec.into_iter().map(|d| d["id"].clone()).collect()
}

#[test]
fn sorting() {
    let docs = vec![
        json!({"id": 1, "v": 5}),
        json!({"id": 2, "v": "a"}),
        json!({"id": 3}),
        json!({"id": 4, "v": null}),
        json!({"id": 5, "v": [7, 1]}),
        json!({"id": 6, "v": 2.5}),
        json!({"id": 7, "v": {"$date": 1}}),
        json!({"id": 8, "v": []}),
        json!({"id": 9, "v": true}),
    ];
    let asc = Sort::new(vec![("v".into(), Direction::Asc)]);
    assert_eq!(
        sorted(&asc, docs.clone()),
        vec![
            json!(8),
            json!(3),
            json!(4),
            json!(5),
            json!(6),
            json!(1),
            json!(2),
            json!(9),
            json!(7)
        ]
    );
    let desc = Sort::new(vec![("v".into(), Direction::Desc)]);
    assert_eq!(
        sorted(&desc, docs),
        vec![
            json!(7),
            json!(9),
            json!(2),
            json!(5),
            json!(1),
            json!(6),
            json!(3),
            json!(4),
            json!(8)
        ]
    );
    assert!(Sort::new(vec![]).is_empty());
    assert_eq!(
        Sort::new(vec![]).compare(&json!({"a": 1}), &json!({"a": 2})),
        Ordering::Equal
    );
}

#[test]
fn sorting_by_several_fields_and_paths() {
    let docs = vec![
        json!({"id": 1, "p": 2, "o": {"n": "b"}}),
        json!({"id": 2, "p": 1, "o": {"n": "z"}}),
        json!({"id": 3, "p": 2, "o": {"n": "a"}}),
        json!({"id": 4, "p": 2, "o": [{"n": "c"}, {"n": "0"}]}),
    ];
    let s = Sort::new(vec![("p".into(), Direction::Desc), ("o.n".into(), Direction::Asc)]);
    assert_eq!(sorted(&s, docs.clone()), vec![json!(4), json!(3), json!(1), json!(2)]);
    let s = Sort::new(vec![("p".into(), Direction::Desc), ("o.n".into(), Direction::Desc)]);
    assert_eq!(sorted(&s, docs), vec![json!(4), json!(1), json!(3), json!(2)]);
}

#[test]
fn filter_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Filter>();
    check::<ElementFilter>();
    check::<Sort>();
}
