//! Unit tests of pipelines over a real store: every stage with its edge cases and bad input,
//! the leading-`$match` source scan, field pruning, the memory budget and the result limit.

use serde_json::{json, Value};
use tempfile::TempDir;

use super::Pipeline;
use crate::db::{Database, DbError, Limits};

const ENV: &str = "default";

fn orders() -> Value {
    json!([
        {"_id": "o1", "owner": "alice", "n": 3, "price": 2.5, "tags": ["a", "b"], "status": "open"},
        {"_id": "o2", "owner": "bob", "n": 1, "price": 10, "tags": [], "status": "closed"},
        {"_id": "o3", "owner": "alice", "n": 2, "price": 4, "tags": ["b"], "status": "open"},
        {"_id": "o4", "n": 7, "price": 1, "tags": null, "status": "open"},
        {"_id": "o5", "owner": null, "n": 4, "price": 3, "status": "closed"}
    ])
}

fn shapes() -> Value {
    json!([{"_id": "p1", "a": 1, "b": {"c": 2, "d": 3}, "arr": [{"x": 1, "y": 2}, {"x": 3}, 5], "s": "str"}])
}

/// A store with the given collections (name, documents).
fn store_with(limits: Limits, colls: &[(&str, Value)]) -> (TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), limits).unwrap();
    for (name, docs) in colls {
        db.create_collection(ENV, name).unwrap().wait_blocking().unwrap();
        let docs = docs.as_array().unwrap().clone();
        if !docs.is_empty() {
            db.insert(ENV, name, docs).unwrap().1.wait_blocking().unwrap();
        }
    }
    (dir, db)
}

fn store() -> (TempDir, Database) {
    let owners = json!([
        {"_id": "alice", "city": "Paris"},
        {"_id": "bob", "city": "Rome"},
        {"_id": "x", "city": null}
    ]);
    let tagdefs = json!([{"_id": "t1", "names": ["a", "z"]}, {"_id": "t2", "names": "b"}, {"_id": "t3"}]);
    store_with(
        Limits::default(),
        &[
            ("orders", orders()),
            ("shapes", shapes()),
            ("owners", owners),
            ("tagdefs", tagdefs),
            ("empty", json!([])),
        ],
    )
}

fn run_on(db: &Database, coll: &str, pipeline: Value) -> Result<Vec<Value>, DbError> {
    let p = db.pipeline(&pipeline)?;
    let out = db.aggregate(ENV, coll, &p)?;
    Ok(out.iter().map(|r| serde_json::from_str(r.get()).unwrap()).collect())
}

fn run(db: &Database, coll: &str, pipeline: Value) -> Vec<Value> {
    run_on(db, coll, pipeline.clone()).unwrap_or_else(|e| panic!("{pipeline} failed: {e}"))
}

fn fails(db: &Database, coll: &str, pipeline: Value) -> DbError {
    match run_on(db, coll, pipeline.clone()) {
        Err(e) => e,
        Ok(v) => panic!("{pipeline} should fail, gave {v:?}"),
    }
}

fn ids(docs: &[Value]) -> Vec<&str> {
    docs.iter().map(|d| d["_id"].as_str().unwrap_or("?")).collect()
}

#[test]
fn group_with_every_accumulator() {
    let (_d, db) = store();
    let out = run(
        &db,
        "orders",
        json!([
            {"$group": {
                "_id": "$owner", "count": {"$sum": 1}, "total": {"$sum": "$n"}, "avg": {"$avg": "$n"},
                "min": {"$min": "$price"}, "max": {"$max": "$price"}, "first": {"$first": "$_id"},
                "last": {"$last": "$_id"}, "ids": {"$push": "$_id"}, "statuses": {"$addToSet": "$status"},
                "sd": {"$stdDevPop": "$n"}, "sds": {"$stdDevSamp": "$n"}, "c": {"$count": {}},
                "merged": {"$mergeObjects": {"k": "$status"}}
            }},
            {"$sort": {"_id": 1}}
        ]),
    );
    // missing and null owners are one group (null), as in MongoDB
    let text: Vec<String> = out.iter().map(Value::to_string).collect();
    assert_eq!(
        text,
        vec![
            r#"{"_id":null,"count":2,"total":11,"avg":5.5,"min":1,"max":3,"first":"o4","last":"o5","ids":["o4","o5"],"statuses":["open","closed"],"sd":1.5,"sds":2.1213203435596424,"c":2,"merged":{"k":"closed"}}"#,
            r#"{"_id":"alice","count":2,"total":5,"avg":2.5,"min":2.5,"max":4,"first":"o1","last":"o3","ids":["o1","o3"],"statuses":["open"],"sd":0.5,"sds":0.7071067811865476,"c":2,"merged":{"k":"open"}}"#,
            r#"{"_id":"bob","count":1,"total":1,"avg":1.0,"min":10,"max":10,"first":"o2","last":"o2","ids":["o2"],"statuses":["closed"],"sd":0.0,"sds":null,"c":1,"merged":{"k":"closed"}}"#,
        ]
    );
}

#[test]
fn group_sums_keep_integers_and_ignore_non_numbers() {
    let (_d, db) = store();
    let out = run(
        &db,
        "orders",
        json!([{"$group": {
            "_id": null, "n": {"$sum": "$n"}, "price": {"$sum": "$price"}, "words": {"$sum": "$status"},
            "avgWords": {"$avg": "$status"}, "minMissing": {"$min": "$nope"}, "pushMissing": {"$push": "$owner"},
            "firstOwner": {"$first": "$nope"}
        }}]),
    );
    assert_eq!(
        out[0].to_string(),
        r#"{"_id":null,"n":17,"price":20.5,"words":0,"avgWords":null,"minMissing":null,"pushMissing":["alice","bob","alice",null],"firstOwner":null}"#
    );
    // compound and computed keys; a missing part is left out of the key
    let out = run(
        &db,
        "orders",
        json!([{"$group": {"_id": {"o": "$owner", "big": {"$gt": ["$n", 2]}}, "k": {"$sum": 1}}}]),
    );
    assert_eq!(
        out,
        vec![
            json!({"_id": {"o": "alice", "big": true}, "k": 1}),
            json!({"_id": {"o": "bob", "big": false}, "k": 1}),
            json!({"_id": {"o": "alice", "big": false}, "k": 1}),
            json!({"_id": {"big": true}, "k": 1}),
            json!({"_id": {"o": null, "big": true}, "k": 1}),
        ]
    );
    // grouping an empty collection gives nothing
    assert!(run(&db, "empty", json!([{"$group": {"_id": null, "n": {"$sum": 1}}}])).is_empty());
}

#[test]
fn group_specifications_are_checked() {
    let (_d, db) = store();
    let msg = |p: Value| fails(&db, "orders", p).to_string();
    assert!(msg(json!([{"$group": {"n": {"$sum": 1}}}])).contains("needs an `_id`"));
    assert!(msg(json!([{"$group": {"_id": null, "n": {"$median": "$n"}}}])).contains("`$median` is not supported"));
    assert!(msg(json!([{"$group": {"_id": null, "n": {"$frob": 1}}}])).contains("unknown accumulator `$frob`"));
    assert!(msg(json!([{"$group": {"_id": null, "n": {"$sum": [1, 2]}}}])).contains("one expression"));
    assert!(msg(json!([{"$group": {"_id": null, "a.b": {"$sum": 1}}}])).contains("cannot be empty, contain `.`"));
    assert!(msg(json!([{"$group": {"_id": null, "n": 1}}])).contains("accumulator object"));
    assert!(msg(json!([{"$group": {"_id": null, "n": {"$count": 1}}}])).contains("empty object"));
    assert!(msg(json!([{"$group": []}])).contains("`$group` needs an object"));
}

#[test]
fn leading_match_is_the_source_scan() {
    let (_d, db) = store();
    let p = db
        .pipeline(&json!([{"$match": {"status": "open"}}, {"$match": {"n": {"$gt": 2}, "$expr": {"$lt": ["$n", 5]}}}, {"$count": "k"}]))
        .unwrap();
    assert_eq!(
        p.source.query(),
        Some(&json!({"$and": [{"status": "open"}, {"n": {"$gt": 2}}]}))
    );
    assert_eq!(p.source.collection(), None);
    // the $expr part stays as a stage, in front of the rest
    assert_eq!(p.stages.len(), 2);
    assert_eq!(db.aggregate(ENV, "orders", &p).unwrap()[0].get(), r#"{"k":1}"#);
    let p = db
        .pipeline(&json!([{"$sort": {"n": 1}}, {"$match": {"n": 1}}]))
        .unwrap();
    assert_eq!(p.source.query(), None);
    // a later $match filters what reaches it
    let out = run(
        &db,
        "orders",
        json!([{"$group": {"_id": "$status", "n": {"$sum": 1}}}, {"$match": {"n": {"$gt": 2}}}]),
    );
    assert_eq!(out, vec![json!({"_id": "open", "n": 3})]);
    let e = fails(&db, "orders", json!([{"$match": {"n": {"$near": 1}}}]));
    assert!(e.to_string().contains("$near"), "{e}");
    let e = fails(&db, "orders", json!([{"$match": 5}]));
    assert!(e.to_string().contains("query object"), "{e}");
}

#[test]
fn only_the_fields_the_pipeline_reads_are_decoded() {
    let (_d, db) = store();
    let fields = |p: Value| db.pipeline(&p).unwrap().source_fields();
    assert_eq!(
        fields(json!([{"$match": {"status": "open"}}, {"$group": {"_id": "$owner", "t": {"$sum": "$n"}}}])),
        Some(vec!["owner".to_string(), "n".to_string(), "status".to_string()])
    );
    assert_eq!(
        fields(json!([{"$unwind": "$tags"}, {"$project": {"tags": 1, "x": {"$toUpper": "$o.p"}}}])),
        Some(vec!["tags".to_string(), "_id".to_string(), "o".to_string()])
    );
    assert_eq!(fields(json!([{"$count": "n"}])), Some(vec![]));
    assert_eq!(fields(json!([{"$project": {"a": 0}}])), None);
    assert_eq!(fields(json!([{"$addFields": {"a": 1}}])), None);
    assert_eq!(fields(json!([{"$project": {"_id": 0, "all": "$$ROOT"}}])), None);
    assert_eq!(fields(json!([{"$sort": {"n": 1}}])), None);
}

#[test]
fn project_includes_excludes_and_computes() {
    let (_d, db) = store();
    let p = |spec: Value| run(&db, "shapes", json!([{ "$project": spec }])).remove(0).to_string();
    assert_eq!(p(json!({"b.c": 1, "s": 1})), r#"{"_id":"p1","b":{"c":2},"s":"str"}"#);
    assert_eq!(p(json!({"s": 1, "b.c": 1})), r#"{"_id":"p1","b":{"c":2},"s":"str"}"#);
    assert_eq!(p(json!({"arr.x": 1, "_id": 0})), r#"{"arr":[{"x":1},{"x":3}]}"#);
    assert_eq!(
        p(json!({"b": {"d": 1}, "total": {"$add": ["$a", "$b.c"]}})),
        r#"{"_id":"p1","b":{"d":3},"total":3}"#
    );
    assert_eq!(
        p(json!({"a": 0, "b.c": 0, "arr.y": 0})),
        r#"{"_id":"p1","b":{"d":3},"arr":[{"x":1},{"x":3},5],"s":"str"}"#
    );
    assert_eq!(
        p(json!({"_id": 0})),
        r#"{"a":1,"b":{"c":2,"d":3},"arr":[{"x":1,"y":2},{"x":3},5],"s":"str"}"#
    );
    assert_eq!(p(json!({"arr.z": "$a"})), r#"{"_id":"p1","arr":[{"z":1},{"z":1}]}"#);
    assert_eq!(p(json!({"gone": "$$REMOVE", "a": 1})), r#"{"_id":"p1","a":1}"#);
    assert_eq!(
        p(json!({"k": "const", "l": [1, "$a"]})),
        r#"{"_id":"p1","k":"const","l":[1,1]}"#
    );
    assert_eq!(p(json!({"_id": "$s", "a": true})), r#"{"_id":"str","a":1}"#);
    let msg = |spec: Value| fails(&db, "shapes", json!([{ "$project": spec }])).to_string();
    assert!(msg(json!({"a": 1, "s": 0})).contains("cannot mix"));
    assert!(msg(json!({"x": "$a", "s": 0})).contains("cannot mix"));
    assert!(msg(json!({"_id": "$a", "s": 0})).contains("cannot compute `_id`"));
    assert!(msg(json!({})).contains("non-empty"));
    assert!(msg(json!({"a": {}})).contains("empty object"));
    assert!(msg(json!({"a": 1, "a.b": 1})).contains("collides"));
    assert!(msg(json!({"$a": 1})).contains("cannot start with `$`"));
    assert!(msg(json!([1])).contains("non-empty object"));
}

#[test]
fn add_fields_set_and_unset() {
    let (_d, db) = store();
    let one = |p: Value| run(&db, "shapes", p).remove(0).to_string();
    assert_eq!(
        one(json!([{"$set": {"b.e": 5, "a": {"$add": ["$a", 1]}, "s": "$$REMOVE", "new": true}}])),
        r#"{"_id":"p1","a":2,"b":{"c":2,"d":3,"e":5},"arr":[{"x":1,"y":2},{"x":3},5],"new":true}"#
    );
    // nested fields go into every array element; a scalar element becomes an object
    assert_eq!(
        one(json!([{"$addFields": {"arr.k": 0}}, {"$project": {"arr": 1, "_id": 0}}])),
        r#"{"arr":[{"x":1,"y":2,"k":0},{"x":3,"k":0},{"k":0}]}"#
    );
    assert_eq!(
        one(json!([{"$addFields": {"s.t": 1, "e": {}, "n": 1}}, {"$project": {"s": 1, "e": 1, "n": 1}}])),
        r#"{"_id":"p1","s":{"t":1},"e":{},"n":1}"#
    );
    // every expression sees the input document, not the fields set beside it
    assert_eq!(
        one(json!([{"$addFields": {"a": 10, "b2": "$a"}}, {"$project": {"a": 1, "b2": 1}}])),
        r#"{"_id":"p1","a":10,"b2":1}"#
    );
    assert_eq!(
        one(json!([{"$unset": ["a", "b.c", "arr"]}])),
        r#"{"_id":"p1","b":{"d":3},"s":"str"}"#
    );
    assert_eq!(one(json!([{"$unset": "s"}, {"$project": {"s": 1}}])), r#"{"_id":"p1"}"#);
    let msg = |p: Value| fails(&db, "shapes", p).to_string();
    assert!(msg(json!([{"$unset": 5}])).contains("`$unset` takes"));
    assert!(msg(json!([{"$unset": []}])).contains("`$unset` takes"));
    assert!(msg(json!([{"$addFields": 1}])).contains("`$addFields` needs an object"));
    assert!(msg(json!([{"$set": {"$x": 1}}])).contains("cannot start with `$`"));
}

#[test]
fn sort_orders_mixed_types_missing_and_arrays() {
    let (_d, db) = store();
    let order = |spec: Value| {
        let out = run(&db, "orders", json!([{ "$sort": spec }]));
        ids(&out).iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    // missing and null sort together, before strings; ties keep their order
    assert_eq!(order(json!({"owner": 1, "n": -1})), ["o4", "o5", "o1", "o3", "o2"]);
    // arrays sort by their smallest element ascending (an empty array first), largest descending
    assert_eq!(order(json!({"tags": 1})), ["o2", "o4", "o5", "o1", "o3"]);
    assert_eq!(order(json!({"tags": -1})), ["o1", "o3", "o4", "o5", "o2"]);
    assert_eq!(order(json!({"price": -1})), ["o2", "o3", "o5", "o1", "o4"]);
    // $sort + $limit keeps the top documents, also across $skip
    let out = run(&db, "orders", json!([{"$sort": {"n": -1}}, {"$limit": 2}]));
    assert_eq!(ids(&out), ["o4", "o5"]);
    let out = run(
        &db,
        "orders",
        json!([{"$sort": {"n": -1}}, {"$skip": 1}, {"$limit": 2}]),
    );
    assert_eq!(ids(&out), ["o5", "o1"]);
    let msg = |spec: Value| fails(&db, "orders", json!([{ "$sort": spec }]));
    assert!(msg(json!({"n": 2})).to_string().contains("must be 1 or -1"));
    assert!(msg(json!({})).to_string().contains("non-empty"));
    assert!(matches!(
        msg(json!({"n": {"$meta": "textScore"}})),
        DbError::NotSupported(_)
    ));
    assert!(msg(json!({"$n": 1})).to_string().contains("starting with `$`"));
}

#[test]
fn skip_limit_and_count() {
    let (_d, db) = store();
    assert_eq!(ids(&run(&db, "orders", json!([{"$skip": 3}]))), ["o4", "o5"]);
    assert_eq!(ids(&run(&db, "orders", json!([{"$limit": 2}]))), ["o1", "o2"]);
    assert_eq!(ids(&run(&db, "orders", json!([{"$skip": 1}, {"$limit": 1}]))), ["o2"]);
    assert_eq!(
        ids(&run(&db, "orders", json!([{"$limit": {"$numberLong": "1"}}]))),
        ["o1"]
    );
    for bad in [
        json!([{"$limit": 0}]),
        json!([{"$limit": "x"}]),
        json!([{"$skip": -1}]),
        json!([{"$limit": 1.5}]),
    ] {
        let e = fails(&db, "orders", bad.clone());
        assert!(e.to_string().contains("needs an integer"), "{bad}: {e}");
    }
    assert_eq!(
        run(
            &db,
            "orders",
            json!([{"$match": {"status": "open"}}, {"$count": "open"}])
        ),
        vec![json!({"open": 3})]
    );
    assert!(run(&db, "orders", json!([{"$match": {"status": "none"}}, {"$count": "n"}])).is_empty());
    for bad in ["", "$n", "a.b"] {
        assert!(fails(&db, "orders", json!([{ "$count": bad }]))
            .to_string()
            .contains("`$count` needs"));
    }
    assert_eq!(
        run(&db, "orders", json!([{"$sortByCount": "$status"}])),
        vec![json!({"_id": "open", "count": 3}), json!({"_id": "closed", "count": 2})]
    );
    assert!(fails(&db, "orders", json!([{"$sortByCount": "status"}]))
        .to_string()
        .contains("field path"));
}

#[test]
fn unwind_forms() {
    let (_d, db) = store();
    let out = run(&db, "orders", json!([{"$unwind": "$tags"}, {"$project": {"tags": 1}}]));
    assert_eq!(
        out,
        vec![
            json!({"_id": "o1", "tags": "a"}),
            json!({"_id": "o1", "tags": "b"}),
            json!({"_id": "o3", "tags": "b"})
        ]
    );
    let out = run(
        &db,
        "orders",
        json!([
            {"$unwind": {"path": "$tags", "includeArrayIndex": "i", "preserveNullAndEmptyArrays": true}},
            {"$project": {"tags": 1, "i": 1}}
        ]),
    );
    assert_eq!(
        out,
        vec![
            json!({"_id": "o1", "tags": "a", "i": 0}),
            json!({"_id": "o1", "tags": "b", "i": 1}),
            json!({"_id": "o2", "i": null}),
            json!({"_id": "o3", "tags": "b", "i": 0}),
            json!({"_id": "o4", "tags": null, "i": null}),
            json!({"_id": "o5", "i": null})
        ]
    );
    // a value that is not an array unwinds to the document itself
    assert_eq!(
        run(&db, "shapes", json!([{"$unwind": "$s"}, {"$project": {"s": 1}}])),
        vec![json!({"_id": "p1", "s": "str"})]
    );
    assert_eq!(
        run(
            &db,
            "shapes",
            json!([{"$unwind": "$arr"}, {"$project": {"arr": 1, "_id": 0}}])
        ),
        vec![
            json!({"arr": {"x": 1, "y": 2}}),
            json!({"arr": {"x": 3}}),
            json!({"arr": 5})
        ]
    );
    let msg = |spec: Value| fails(&db, "orders", json!([{ "$unwind": spec }])).to_string();
    assert!(msg(json!("tags")).contains("`$`-prefixed field path"));
    assert!(msg(json!({"path": "$tags", "bad": 1})).contains("`bad`"));
    assert!(msg(json!({"path": "$tags", "preserveNullAndEmptyArrays": 1})).contains("boolean"));
    assert!(msg(json!({"path": "$tags", "includeArrayIndex": "$i"})).contains("includeArrayIndex"));
}

#[test]
fn sample_replace_root_and_bucket() {
    let (_d, db) = store();
    let out = run(&db, "orders", json!([{"$sample": {"size": 2}}]));
    let mut got: Vec<&str> = ids(&out);
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|id| ["o1", "o2", "o3", "o4", "o5"].contains(id)));
    assert_eq!(run(&db, "orders", json!([{"$sample": {"size": 50}}])).len(), 5);
    assert!(run(&db, "orders", json!([{"$sample": {"size": 0}}])).is_empty());
    assert!(fails(&db, "orders", json!([{"$sample": 3}]))
        .to_string()
        .contains("named arguments"));
    assert!(fails(&db, "orders", json!([{"$sample": {"size": -1}}]))
        .to_string()
        .contains("needs an integer"));

    assert_eq!(
        run(&db, "shapes", json!([{"$replaceRoot": {"newRoot": "$b"}}])),
        vec![json!({"c": 2, "d": 3})]
    );
    assert_eq!(
        run(
            &db,
            "shapes",
            json!([{"$replaceWith": {"$mergeObjects": [{"a": 0, "c": 0}, "$b"]}}])
        ),
        vec![json!({"a": 0, "c": 2, "d": 3})]
    );
    let e = fails(&db, "shapes", json!([{"$replaceRoot": {"newRoot": "$a"}}]));
    assert!(e.to_string().contains("must evaluate to an object, not int"), "{e}");
    let e = fails(&db, "shapes", json!([{"$replaceRoot": {"newRoot": "$nope"}}]));
    assert!(e.to_string().contains("not missing"), "{e}");

    let out = run(
        &db,
        "orders",
        json!([{"$bucket": {"groupBy": "$n", "boundaries": [0, 2, 5], "default": "other",
            "output": {"count": {"$sum": 1}, "ids": {"$push": "$_id"}}}}]),
    );
    assert_eq!(
        out,
        vec![
            json!({"_id": 0, "count": 1, "ids": ["o2"]}),
            json!({"_id": 2, "count": 3, "ids": ["o1", "o3", "o5"]}),
            json!({"_id": "other", "count": 1, "ids": ["o4"]})
        ]
    );
    assert_eq!(
        run(
            &db,
            "orders",
            json!([{"$bucket": {"groupBy": "$price", "boundaries": [0, 5, 100]}}])
        ),
        vec![json!({"_id": 0, "count": 4}), json!({"_id": 5, "count": 1})]
    );
    let msg = |spec: Value| fails(&db, "orders", json!([{ "$bucket": spec }])).to_string();
    assert!(msg(json!({"groupBy": "$n", "boundaries": [5, 2]})).contains("ascending"));
    assert!(msg(json!({"groupBy": "$n", "boundaries": [5]})).contains("at least two"));
    assert!(msg(json!({"groupBy": "$n", "boundaries": [1, "a"]})).contains("same type"));
    assert!(msg(json!({"groupBy": "$n", "boundaries": [0, 5], "default": 3})).contains("`default` must be"));
    assert!(msg(json!({"groupBy": "n", "boundaries": [0, 5]})).contains("groupBy"));
    assert!(msg(json!({"groupBy": "$n", "boundaries": [0, 5]})).contains("no `default`"));
}

#[test]
fn bucket_auto_spreads_documents_evenly() {
    let (_d, db) = store();
    assert_eq!(
        run(&db, "orders", json!([{"$bucketAuto": {"groupBy": "$n", "buckets": 2}}])),
        vec![
            json!({"_id": {"min": 1, "max": 4}, "count": 3}),
            json!({"_id": {"min": 4, "max": 7}, "count": 2})
        ]
    );
    assert_eq!(
        run(
            &db,
            "orders",
            json!([{"$bucketAuto": {"groupBy": "$n", "buckets": 10, "output": {"ids": {"$push": "$_id"}}}}])
        )
        .len(),
        5
    );
    // equal values never go to different buckets
    let (_d2, db2) = store_with(
        Limits::default(),
        &[("v", json!([{"k": 1}, {"k": 1}, {"k": 1}, {"k": 2}]))],
    );
    assert_eq!(
        run(&db2, "v", json!([{"$bucketAuto": {"groupBy": "$k", "buckets": 2}}])),
        vec![
            json!({"_id": {"min": 1, "max": 2}, "count": 3}),
            json!({"_id": {"min": 2, "max": 2}, "count": 1})
        ]
    );
    // boundaries rounded to a preferred number series
    assert_eq!(
        run(
            &db,
            "orders",
            json!([{"$bucketAuto": {"groupBy": "$n", "buckets": 2, "granularity": "R5"}}])
        )
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>(),
        [
            r#"{"_id":{"min":0.63,"max":4.0},"count":3}"#,
            r#"{"_id":{"min":4.0,"max":10.0},"count":2}"#
        ]
    );
    assert_eq!(
        run(
            &db,
            "orders",
            json!([{"$bucketAuto": {"groupBy": "$n", "buckets": 2, "granularity": "POWERSOF2"}}])
        ),
        vec![
            json!({"_id": {"min": 0.5, "max": 4}, "count": 3}),
            json!({"_id": {"min": 4, "max": 8}, "count": 2})
        ]
    );
    let e = fails(
        &db,
        "orders",
        json!([{"$bucketAuto": {"groupBy": "$owner", "buckets": 2, "granularity": "R5"}}]),
    );
    assert!(e.to_string().contains("non-negative numbers"), "{e}");
    let e = fails(
        &db,
        "orders",
        json!([{"$bucketAuto": {"groupBy": "$n", "buckets": 2, "granularity": "R7"}}]),
    );
    assert!(e.to_string().contains("unknown `granularity` `R7`"), "{e}");
    let e = fails(&db, "orders", json!([{"$bucketAuto": {"groupBy": "$n", "buckets": 0}}]));
    assert!(e.to_string().contains("positive"), "{e}");
}

#[test]
fn facet_runs_each_branch_over_the_same_documents() {
    let (_d, db) = store();
    let out = run(
        &db,
        "orders",
        json!([
            {"$match": {"status": "open"}},
            {"$facet": {
                "page": [{"$sort": {"n": -1}}, {"$skip": 1}, {"$limit": 1}, {"$project": {"n": 1}}],
                "total": [{"$count": "n"}],
                "byOwner": [{"$sortByCount": "$owner"}],
                "all": []
            }}
        ]),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["page"], json!([{"_id": "o1", "n": 3}]));
    assert_eq!(out[0]["total"], json!([{"n": 3}]));
    assert_eq!(
        out[0]["byOwner"],
        json!([{"_id": "alice", "count": 2}, {"_id": null, "count": 1}])
    );
    assert_eq!(out[0]["all"].as_array().map(Vec::len), Some(3));
    // one document even when nothing comes in
    assert_eq!(
        run(
            &db,
            "orders",
            json!([{"$match": {"status": "none"}}, {"$facet": {"a": [{"$count": "n"}], "b": []}}])
        ),
        vec![json!({"a": [], "b": []})]
    );
    let fields = |p: Value| db.pipeline(&p).unwrap().source_fields();
    assert_eq!(
        fields(json!([{"$facet": {"a": [{"$count": "n"}], "b": [{"$group": {"_id": "$owner"}}]}}])),
        Some(vec!["owner".to_string()])
    );
    assert_eq!(
        fields(json!([{"$facet": {"a": [{"$count": "n"}], "b": [{"$limit": 1}]}}])),
        None
    );
    let mut p = db
        .pipeline(&json!([{"$facet": {"x": [{"$lookup": {"from": "owners", "localField": "owner", "foreignField": "_id", "as": "o"}}]}}]))
        .unwrap();
    assert_eq!(
        p.scans_mut().len(),
        2,
        "a $lookup inside $facet is a scan the rules see"
    );
    let msg = |spec: Value| fails(&db, "orders", json!([{ "$facet": spec }])).to_string();
    assert!(msg(json!({})).contains("non-empty object"));
    assert!(msg(json!({"a": {}})).contains("must be an array of stages"));
    assert!(msg(json!({"a": [{"$facet": {"b": []}}]})).contains("inside `$facet`"));
    assert!(msg(json!({"$a": []})).contains("cannot be empty, start with `$`"));
}

#[test]
fn lookup_by_fields_matches_like_a_query() {
    let (_d, db) = store();
    let out = run(
        &db,
        "orders",
        json!([
            {"$lookup": {"from": "owners", "localField": "owner", "foreignField": "_id", "as": "who"}},
            {"$project": {"who.city": 1}}
        ]),
    );
    assert_eq!(
        out,
        vec![
            json!({"_id": "o1", "who": [{"city": "Paris"}]}),
            json!({"_id": "o2", "who": [{"city": "Rome"}]}),
            json!({"_id": "o3", "who": [{"city": "Paris"}]}),
            json!({"_id": "o4", "who": []}),
            json!({"_id": "o5", "who": []})
        ]
    );
    // array on either side matches by element; null and missing match null and missing
    let out = run(
        &db,
        "orders",
        json!([
            {"$lookup": {"from": "tagdefs", "localField": "tags", "foreignField": "names", "as": "defs"}},
            {"$project": {"d": "$defs._id", "_id": 0}}
        ]),
    );
    assert_eq!(
        out,
        vec![
            json!({"d": ["t1", "t2"]}),
            json!({"d": []}),
            json!({"d": ["t2"]}),
            json!({"d": ["t3"]}),
            json!({"d": ["t3"]})
        ]
    );
}

#[test]
fn lookup_with_pipelines_and_variables() {
    let (_d, db) = store();
    let out = run(
        &db,
        "owners",
        json!([{"$lookup": {"from": "orders", "let": {"o": "$_id"}, "as": "orders", "pipeline": [
            {"$match": {"$expr": {"$eq": ["$owner", "$$o"]}}},
            {"$project": {"_id": 1}}
        ]}}]),
    );
    assert_eq!(
        out,
        vec![
            json!({"_id": "alice", "city": "Paris", "orders": [{"_id": "o1"}, {"_id": "o3"}]}),
            json!({"_id": "bob", "city": "Rome", "orders": [{"_id": "o2"}]}),
            json!({"_id": "x", "city": null, "orders": []})
        ]
    );
    // uncorrelated: the same result for every document
    let out = run(
        &db,
        "orders",
        json!([
            {"$lookup": {"from": "owners", "as": "rome", "pipeline": [{"$match": {"city": "Rome"}}, {"$project": {"_id": 0}}]}},
            {"$project": {"rome": 1, "_id": 0}}
        ]),
    );
    assert_eq!(out.len(), 5);
    assert!(out.iter().all(|d| *d == json!({"rome": [{"city": "Rome"}]})));
    // fields and a pipeline together
    let out = run(
        &db,
        "owners",
        json!([
            {"$lookup": {"from": "orders", "localField": "_id", "foreignField": "owner", "as": "open",
                "pipeline": [{"$match": {"status": "open"}}, {"$project": {"n": 1, "_id": 0}}]}},
            {"$project": {"open": 1}}
        ]),
    );
    assert_eq!(
        out,
        vec![
            json!({"_id": "alice", "open": [{"n": 3}, {"n": 2}]}),
            json!({"_id": "bob", "open": []}),
            json!({"_id": "x", "open": []})
        ]
    );
    // a nested $lookup can use the outer one's variables
    let out = run(
        &db,
        "owners",
        json!([
            {"$match": {"_id": "alice"}},
            {"$lookup": {"from": "orders", "let": {"o": "$_id"}, "as": "x", "pipeline": [
                {"$match": {"$expr": {"$eq": ["$owner", "$$o"]}}},
                {"$lookup": {"from": "owners", "as": "again", "pipeline": [
                    {"$match": {"$expr": {"$eq": ["$_id", "$$o"]}}}, {"$project": {"city": 1, "_id": 0}}
                ]}},
                {"$project": {"again": 1, "_id": 0}}
            ]}},
            {"$project": {"x": 1, "_id": 0}}
        ]),
    );
    assert_eq!(
        out,
        vec![json!({"x": [{"again": [{"city": "Paris"}]}, {"again": [{"city": "Paris"}]}]})]
    );
}

#[test]
fn lookup_specifications_are_checked() {
    let (_d, db) = store();
    let msg = |spec: Value| fails(&db, "orders", json!([{ "$lookup": spec }]));
    assert!(matches!(
        msg(json!({"from": "nope", "localField": "a", "foreignField": "b", "as": "x"})),
        DbError::CollectionNotExist(_)
    ));
    assert!(msg(json!({"from": "owners", "localField": "a", "as": "x"}))
        .to_string()
        .contains("go together"));
    assert!(msg(json!({"from": "owners", "as": "x"}))
        .to_string()
        .contains("or `pipeline`"));
    assert!(msg(json!({"from": "owners", "localField": "a", "foreignField": "b"}))
        .to_string()
        .contains("needs `as`"));
    assert!(
        msg(json!({"from": "owners", "let": {"X": 1}, "pipeline": [], "as": "x"}))
            .to_string()
            .contains("variable name")
    );
    assert!(msg(json!({"from": "owners", "pipeline": {}, "as": "x"}))
        .to_string()
        .contains("must be an array"));
    assert!(matches!(
        msg(json!({"from": "owners", "pipeline": [{"$out": "y"}], "as": "x"})),
        DbError::NotSupported(_)
    ));
    assert!(msg(json!({"from": "bad/name", "pipeline": [], "as": "x"}))
        .to_string()
        .contains("invalid collection name"));
    assert!(
        msg(json!({"from": "owners", "pipeline": [{"$match": {"$expr": "$$nope"}}], "as": "x"}))
            .to_string()
            .contains("undefined variable")
    );
    // nesting is bounded
    let mut deep = json!([]);
    for _ in 0..10 {
        deep = json!([{"$lookup": {"from": "owners", "pipeline": deep, "as": "x"}}]);
    }
    assert!(fails(&db, "orders", deep).to_string().contains("nested at most"));
    // a large pipeline tree runs (4 nested $lookups, 108 stages)
    let mut deep = json!([]);
    for _ in 0..3 {
        let mut p: Vec<Value> = (0..26).map(|_| json!({"$skip": 0})).collect();
        p.push(json!({"$lookup": {"from": "owners", "pipeline": deep, "as": "x"}}));
        deep = Value::Array(p);
    }
    let out = run(
        &db,
        "orders",
        json!([{"$limit": 1}, {"$lookup": {"from": "owners", "pipeline": deep, "as": "x"}}, {"$project": {"n": {"$size": "$x"}}}]),
    );
    assert_eq!(out, vec![json!({"_id": "o1", "n": 3})]);
    let mut wide: Vec<Value> = (0..98).map(|_| json!({"$skip": 0})).collect();
    wide.push(json!({"$lookup": {"from": "owners", "pipeline": (0..100).map(|_| json!({"$skip": 0})).collect::<Vec<_>>(), "as": "x"}}));
    wide.push(json!({"$lookup": {"from": "owners", "pipeline": (0..100).map(|_| json!({"$skip": 0})).collect::<Vec<_>>(), "as": "y"}}));
    let e = fails(&db, "orders", Value::Array(wide));
    assert!(e.to_string().contains("at most 250 stages together"), "{e}");
}

#[test]
fn malformed_pipelines_are_refused_with_the_stage_named() {
    let (_d, db) = store();
    let e = fails(&db, "orders", json!([{"$geoNear": {"near": [0, 0]}}]));
    assert!(matches!(e, DbError::NotSupported(_)), "{e}");
    assert!(e.to_string().contains("`$geoNear`"));
    let e = fails(&db, "orders", json!([{"$match": {}}, {"$frobnicate": {}}]));
    assert!(matches!(e, DbError::InvalidCommand(_)), "{e}");
    assert!(e.to_string().contains("unknown aggregation stage `$frobnicate`"));
    assert!(fails(&db, "orders", json!([{"$match": {}, "$limit": 1}]))
        .to_string()
        .contains("exactly one field"));
    assert!(fails(&db, "orders", json!(["$match"]))
        .to_string()
        .contains("exactly one field"));
    assert!(matches!(
        fails(&db, "orders", json!({"$match": {}})),
        DbError::InvalidParam(_)
    ));
    let many: Vec<Value> = (0..101).map(|_| json!({"$skip": 0})).collect();
    let e = fails(&db, "orders", Value::Array(many));
    assert!(
        matches!(e, DbError::InvalidParam(_)) && e.to_string().contains("at most 100 stages"),
        "{e}"
    );
    assert!(matches!(fails(&db, "nope", json!([])), DbError::CollectionNotExist(_)));
    // an empty pipeline returns the collection
    assert_eq!(run(&db, "orders", json!([])).len(), 5);
}

#[test]
fn client_cap_limits_the_output_and_keeps_the_top() {
    let (_d, db) = store();
    let mut p = db.pipeline(&json!([{"$sort": {"n": 1}}])).unwrap();
    p.cap_output(2);
    let out = db.aggregate(ENV, "orders", &p).unwrap();
    let got: Vec<Value> = out.iter().map(|r| serde_json::from_str(r.get()).unwrap()).collect();
    assert_eq!(ids(&got), ["o2", "o3"]);
}

fn big_store(limit: usize) -> (TempDir, Database) {
    let docs: Vec<Value> = (0..2000)
        .map(|i| json!({"_id": format!("d{i:05}"), "n": (i * 7919) % 2000, "pad": "x".repeat(100)}))
        .collect();
    let limits = Limits {
        aggregate_memory_limit: limit,
        ..Limits::default()
    };
    store_with(
        limits,
        &[("big", Value::Array(docs)), ("small", json!([{"_id": "s1"}]))],
    )
}

#[test]
fn memory_is_bounded_per_aggregation() {
    let (_d, db) = big_store(64 * 1024);
    let over = |p: Value| {
        let e = fails(&db, "big", p.clone());
        assert!(matches!(e, DbError::AggregateMemory { .. }), "{p}: {e}");
        e.to_string()
    };
    assert!(over(json!([{"$group": {"_id": "$_id"}}])).starts_with("`$group` needs more memory"));
    assert!(over(json!([{"$sort": {"n": 1}}])).starts_with("`$sort`"));
    assert!(over(json!([{"$group": {"_id": null, "all": {"$push": "$$ROOT"}}}])).starts_with("`$group`"));
    assert!(
        over(json!([{"$bucketAuto": {"groupBy": "$pad", "buckets": 2, "output": {"p": {"$push": "$pad"}}}}]))
            .starts_with("`$bucketAuto`")
    );
    assert!(over(json!([{"$sample": {"size": 1500}}])).starts_with("`$sample`"));
    assert!(over(json!([{"$lookup": {"from": "big", "pipeline": [], "as": "all"}}])).starts_with("`$lookup`"));
    // the same data in bounded shapes runs: a top-N sort, one group, a small sample
    let (_d2, small) = big_store(64 * 1024);
    let mut p = small
        .pipeline(&json!([{"$sort": {"n": 1}}, {"$project": {"n": 1}}]))
        .unwrap();
    p.cap_output(2);
    let out = small.aggregate(ENV, "big", &p).unwrap();
    assert_eq!(
        out.iter().map(|r| r.get()).collect::<Vec<_>>(),
        [r#"{"_id":"d00000","n":0}"#, r#"{"_id":"d01679","n":1}"#]
    );
    let out = run(
        &small,
        "big",
        json!([{"$sort": {"n": -1}}, {"$limit": 3}, {"$project": {"n": 1, "_id": 0}}]),
    );
    assert_eq!(out, vec![json!({"n": 1999}), json!({"n": 1998}), json!({"n": 1997})]);
    let out = run(
        &small,
        "big",
        json!([{"$group": {"_id": null, "n": {"$sum": 1}, "max": {"$max": "$n"}}}]),
    );
    assert_eq!(out, vec![json!({"_id": null, "n": 2000, "max": 1999})]);
    assert_eq!(run(&small, "big", json!([{"$sample": {"size": 5}}])).len(), 5);
    // with the default limit everything above runs
    let (_d3, roomy) = big_store(Limits::default().aggregate_memory_limit);
    assert_eq!(
        run(&roomy, "big", json!([{"$group": {"_id": "$_id"}}, {"$count": "n"}])),
        vec![json!({"n": 2000})]
    );
    assert_eq!(
        run(&roomy, "big", json!([{"$sort": {"n": 1}}, {"$count": "n"}])),
        vec![json!({"n": 2000})]
    );
}

#[test]
fn results_over_the_reply_limit_are_refused_not_truncated() {
    let limits = Limits {
        max_result_bytes: 300,
        ..Limits::default()
    };
    let (_d, db) = store_with(limits, &[("orders", orders())]);
    assert!(matches!(fails(&db, "orders", json!([])), DbError::ResultTooLarge(300)));
    assert_eq!(run(&db, "orders", json!([{"$count": "n"}])), vec![json!({"n": 5})]);
}

#[test]
fn scans_can_be_narrowed_after_parsing() {
    let (_d, db) = store();
    let mut p: Pipeline = db
        .pipeline(&json!([{"$match": {"status": "open"}}, {"$lookup": {"from": "owners", "localField": "owner", "foreignField": "_id", "as": "w"}}]))
        .unwrap();
    {
        let mut scans = p.scans_mut();
        assert_eq!(scans.len(), 2);
        assert_eq!(scans[1].collection(), Some("owners"));
        scans[0]
            .set_query(Some(json!({"$and": [{"status": "open"}, {"owner": "alice"}]})))
            .unwrap();
        scans[1].set_query(Some(json!({"city": "Nowhere"}))).unwrap();
        assert_eq!(scans[1].collection(), Some("owners"));
    }
    let out = db.aggregate(ENV, "orders", &p).unwrap();
    let got: Vec<Value> = out.iter().map(|r| serde_json::from_str(r.get()).unwrap()).collect();
    assert_eq!(ids(&got), ["o1", "o3"]);
    assert!(got.iter().all(|d| d["w"] == json!([])));
}

/// A random JSON value built from aggregation vocabulary (operators, named arguments, paths).
fn random_spec(rng: &mut rand::rngs::ThreadRng, depth: usize) -> Value {
    use rand::Rng;
    const OPS: &[&str] = &[
        "$add",
        "$subtract",
        "$multiply",
        "$divide",
        "$mod",
        "$pow",
        "$round",
        "$trunc",
        "$abs",
        "$sqrt",
        "$log",
        "$concat",
        "$substrBytes",
        "$substrCP",
        "$split",
        "$indexOfBytes",
        "$indexOfCP",
        "$strLenCP",
        "$toUpper",
        "$trim",
        "$regexMatch",
        "$regexFind",
        "$replaceAll",
        "$size",
        "$arrayElemAt",
        "$slice",
        "$range",
        "$in",
        "$indexOfArray",
        "$reverseArray",
        "$concatArrays",
        "$zip",
        "$map",
        "$filter",
        "$reduce",
        "$let",
        "$cond",
        "$switch",
        "$ifNull",
        "$and",
        "$or",
        "$not",
        "$eq",
        "$cmp",
        "$sum",
        "$avg",
        "$max",
        "$stdDevSamp",
        "$setUnion",
        "$setIntersection",
        "$setEquals",
        "$mergeObjects",
        "$objectToArray",
        "$arrayToObject",
        "$dateToString",
        "$year",
        "$isoWeek",
        "$dateFromParts",
        "$dateFromString",
        "$dateToParts",
        "$toInt",
        "$toDate",
        "$toString",
        "$type",
        "$literal",
        "$first",
        "$last",
        "$push",
        "$addToSet",
        "$count",
    ];
    const KEYS: &[&str] = &[
        "input",
        "as",
        "in",
        "cond",
        "limit",
        "date",
        "format",
        "timezone",
        "vars",
        "branches",
        "case",
        "then",
        "default",
        "regex",
        "options",
        "find",
        "replacement",
        "inputs",
        "useLongestLength",
        "defaults",
        "dateString",
        "onError",
        "onNull",
        "year",
        "month",
        "day",
        "isoWeekYear",
        "initialValue",
        "if",
        "else",
        "size",
        "path",
        "groupBy",
        "boundaries",
        "buckets",
        "granularity",
        "output",
        "from",
        "localField",
        "foreignField",
        "pipeline",
        "let",
        "newRoot",
        "_id",
        "includeArrayIndex",
        "preserveNullAndEmptyArrays",
        "n",
        "tags",
        "owner",
        "a.b",
    ];
    const LEAVES: &[&str] = &[
        "$n",
        "$tags",
        "$owner",
        "$price",
        "$nope",
        "$$ROOT",
        "$$this",
        "$$value",
        "$$REMOVE",
        "x",
        "",
        "%Y-%j",
        "Asia/Shanghai",
        "+08:00",
        "2024-01-01",
        "^a",
        "orders",
        "owners",
        "R5",
    ];
    let leaf = |rng: &mut rand::rngs::ThreadRng| -> Value {
        match rng.random_range(0..9) {
            0 => json!(null),
            1 => json!(rng.random_range(-3i64..20)),
            2 => json!(rng.random_range(-3.0f64..20.0)),
            3 => json!(true),
            4 => json!(i64::MAX),
            5 => json!([]),
            6 => json!({}),
            7 => json!({"$date": 1_700_000_000_000i64}),
            _ => json!(LEAVES[rng.random_range(0..LEAVES.len())]),
        }
    };
    if depth == 0 || rng.random_range(0..4) == 0 {
        return leaf(rng);
    }
    match rng.random_range(0..3) {
        0 => {
            let n = rng.random_range(0..4);
            Value::Array((0..n).map(|_| random_spec(rng, depth - 1)).collect())
        }
        1 => {
            let mut m = serde_json::Map::new();
            m.insert(
                OPS[rng.random_range(0..OPS.len())].to_string(),
                random_spec(rng, depth - 1),
            );
            Value::Object(m)
        }
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.random_range(1..4) {
                m.insert(
                    KEYS[rng.random_range(0..KEYS.len())].to_string(),
                    random_spec(rng, depth - 1),
                );
            }
            Value::Object(m)
        }
    }
}

/// A random, mostly well-formed expression over the test documents.
fn random_expr(rng: &mut rand::rngs::ThreadRng, depth: usize) -> Value {
    use rand::Rng;
    const PATHS: &[&str] = &["$n", "$tags", "$owner", "$price", "$nope", "$status", "$_id", "$$ROOT"];
    const BINARY: &[&str] = &[
        "$add",
        "$subtract",
        "$multiply",
        "$divide",
        "$mod",
        "$pow",
        "$concat",
        "$eq",
        "$cmp",
        "$lt",
        "$in",
        "$arrayElemAt",
        "$slice",
        "$split",
        "$setUnion",
        "$setDifference",
        "$ifNull",
        "$max",
        "$min",
        "$round",
        "$trunc",
        "$log",
        "$indexOfBytes",
        "$strcasecmp",
        "$concatArrays",
        "$mergeObjects",
        "$range",
        "$indexOfArray",
        "$setIsSubset",
    ];
    const UNARY: &[&str] = &[
        "$abs",
        "$size",
        "$toUpper",
        "$year",
        "$isArray",
        "$sum",
        "$avg",
        "$first",
        "$last",
        "$objectToArray",
        "$reverseArray",
        "$toString",
        "$type",
        "$sqrt",
        "$not",
        "$ceil",
        "$exp",
        "$ln",
        "$strLenBytes",
        "$arrayToObject",
        "$toInt",
        "$toDouble",
        "$toDate",
        "$isoWeek",
        "$dayOfWeek",
        "$stdDevPop",
        "$anyElementTrue",
        "$toBool",
        "$isNumber",
    ];
    let leaf = |rng: &mut rand::rngs::ThreadRng| -> Value {
        match rng.random_range(0..7) {
            0 => json!(null),
            1 => json!(rng.random_range(-3i64..10)),
            2 => json!(rng.random_range(-3.0f64..10.0)),
            3 => json!("a,b"),
            4 => json!([1, "x", [2]]),
            5 => json!({"$date": 1_700_000_000_000i64}),
            _ => json!(PATHS[rng.random_range(0..PATHS.len())]),
        }
    };
    if depth == 0 {
        return leaf(rng);
    }
    let pick = rng.random_range(0..12);
    let e = || random_expr(&mut rand::rng(), depth - 1);
    match pick {
        0 | 1 => leaf(rng),
        2..=4 => {
            let op = BINARY[rand::rng().random_range(0..BINARY.len())];
            json!({ op: [e(), e()] })
        }
        5 | 6 => {
            let op = UNARY[rand::rng().random_range(0..UNARY.len())];
            json!({ op: e() })
        }
        7 => json!({"$cond": [e(), e(), e()]}),
        8 => json!({"$map": {"input": e(), "in": {"$add": ["$$this", 1]}}}),
        9 => json!({"$filter": {"input": e(), "cond": e(), "limit": 2}}),
        10 => json!({"$reduce": {"input": e(), "initialValue": 0, "in": {"$add": ["$$value", "$$this"]}}}),
        _ => json!({"$dateToString": {"date": e(), "format": "%Y-%U", "timezone": "Asia/Shanghai", "onNull": "none"}}),
    }
}

/// A random stage, usually well-formed, with random expressions in it.
fn random_stage(rng: &mut rand::rngs::ThreadRng) -> Value {
    use rand::Rng;
    const ACCS: &[&str] = &[
        "$sum",
        "$avg",
        "$min",
        "$max",
        "$first",
        "$last",
        "$push",
        "$addToSet",
        "$stdDevSamp",
    ];
    let ex = |rng: &mut rand::rngs::ThreadRng| random_expr(rng, 3);
    let acc = ACCS[rng.random_range(0..ACCS.len())];
    match rng.random_range(0..17) {
        0 => json!({"$match": {"$expr": ex(rng)}}),
        1 => json!({"$match": {"n": {"$gt": rng.random_range(0..8)}}}),
        2 => json!({"$project": {"x": ex(rng), "n": 1}}),
        3 => json!({"$addFields": {"x": ex(rng), "y.z": ex(rng)}}),
        4 => json!({"$group": {"_id": ex(rng), "a": { acc: ex(rng) }}}),
        5 => json!({"$sort": {"n": -1, "tags": 1}}),
        6 => json!({"$unwind": {"path": "$tags", "includeArrayIndex": "i", "preserveNullAndEmptyArrays": true}}),
        7 => {
            json!({"$bucket": {"groupBy": "$n", "boundaries": [0, 3, 6], "default": "other", "output": {"a": { acc: ex(rng) }}}})
        }
        8 => json!({"$bucketAuto": {"groupBy": ex(rng), "buckets": rng.random_range(1..4)}}),
        9 => json!({"$replaceRoot": {"newRoot": {"a": ex(rng)}}}),
        10 => json!({"$facet": {"a": [random_stage(rng)], "b": [{"$count": "c"}]}}),
        11 => json!({"$lookup": {"from": "owners", "let": {"v": "$owner"}, "as": "j",
            "pipeline": [{"$match": {"$expr": {"$eq": ["$_id", "$$v"]}}}, {"$project": {"q": ex(rng)}}]}}),
        12 => json!({"$lookup": {"from": "tagdefs", "localField": "tags", "foreignField": "names", "as": "j"}}),
        13 => json!({"$sortByCount": ex(rng)}),
        14 => json!({"$sample": {"size": rng.random_range(0..4)}}),
        15 => {
            json!({"$geoNear": {"near": {"type": "Point", "coordinates": [rng.random_range(-180..=180), rng.random_range(-90..=90)]},
            "distanceField": "d", "key": "loc", "includeLocs": "l", "query": {"$expr": ex(rng)}}})
        }
        _ => {
            const STAGES: &[&str] = &[
                "$match",
                "$project",
                "$addFields",
                "$unset",
                "$group",
                "$sort",
                "$skip",
                "$limit",
                "$unwind",
                "$lookup",
                "$count",
                "$replaceWith",
                "$bucket",
                "$bucketAuto",
                "$facet",
                "$geoNear",
            ];
            let name = STAGES[rng.random_range(0..STAGES.len())];
            json!({ name: random_spec(rng, 4) })
        }
    }
}

#[test]
fn random_pipelines_never_panic() {
    let (_d, db) = store();
    let mut rng = rand::rng();
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..3000 {
        let n = rand::Rng::random_range(&mut rng, 1..4);
        let pipeline: Vec<Value> = (0..n).map(|_| random_stage(&mut rng)).collect();
        let pipeline = Value::Array(pipeline);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_on(&db, "orders", pipeline.clone())));
        match result {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(_)) => refused += 1,
            Err(_) => panic!("panicked on {pipeline}"),
        }
    }
    eprintln!("{ok} ran, {refused} refused");
    assert!(ok > 0 && refused > 0, "{ok} ran, {refused} refused");
}
