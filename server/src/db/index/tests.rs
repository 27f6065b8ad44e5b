//! Index entries stay in step with every kind of write, unique indexes refuse violations without
//! writing anything, and builds meet the data that is already there.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{IndexSpec, State};
use crate::db::{Database, DbError, FindParts, Limits};

fn setup() -> (tempfile::TempDir, Arc<Database>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path(), Limits::default()).unwrap());
    for c in ["plain", "indexed"] {
        db.create_collection("default", c).unwrap().wait_blocking().unwrap();
    }
    (dir, db)
}

fn spec(fields: &str, unique: bool) -> IndexSpec {
    IndexSpec {
        fields: IndexSpec::parse_fields(fields).unwrap(),
        unique,
        name: None,
    }
}

fn find(db: &Database, coll: &str, q: Value, order: Value) -> Vec<Value> {
    let f = db
        .find_spec(FindParts {
            query: Some(&q),
            order: Some(&order),
            limit: Some(&json!(1000)),
            ..Default::default()
        })
        .unwrap();
    db.find("default", coll, &f)
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r.get()).unwrap())
        .collect()
}

fn insert(db: &Database, coll: &str, docs: Value) -> Result<(), DbError> {
    let docs = docs.as_array().unwrap().clone();
    db.insert("default", coll, docs)?.1.wait_blocking()
}

fn update(db: &Database, coll: &str, q: Value, data: Value, multi: bool, upsert: bool) -> Result<(), DbError> {
    let filter = db.filter(Some(&q))?;
    let upd = db.update_spec(&data, true)?;
    db.update("default", coll, &filter, &upd, multi, upsert)?
        .1
        .wait_blocking()
}

fn entries(db: &Database, coll: &str) -> u64 {
    db.list_indexes("default", coll)
        .unwrap()
        .iter()
        .map(|i| i["entries"].as_u64().unwrap())
        .sum()
}

#[test]
fn entries_follow_inserts_updates_upserts_and_removes() {
    let (_dir, db) = setup();
    db.create_index("default", "indexed", &spec("n", false), false).unwrap();
    db.create_index("default", "indexed", &spec("tags,k:desc", false), false)
        .unwrap();
    for coll in ["plain", "indexed"] {
        let docs = (0..50)
            .map(|i| json!({"_id": format!("d{i:02}"), "n": i % 10, "k": i, "tags": ["a", format!("t{}", i % 3)]}));
        insert(&db, coll, Value::Array(docs.collect())).unwrap();
        update(
            &db,
            coll,
            json!({"n": {"$gte": 7}}),
            json!({"$inc": {"n": 100}}),
            true,
            false,
        )
        .unwrap();
        update(&db, coll, json!({"k": 3}), json!({"tags": ["z"]}), false, false).unwrap();
        update(&db, coll, json!({"k": 4}), json!({"$unset": {"n": ""}}), false, false).unwrap();
        update(&db, coll, json!({"_id": "new", "n": 55}), json!({"k": 99}), false, true).unwrap();
        let filter = db.filter(Some(&json!({"n": {"$lt": 3}}))).unwrap();
        db.remove("default", coll, &filter, true)
            .unwrap()
            .1
            .wait_blocking()
            .unwrap();
    }
    for (q, order) in [
        (
            json!({"n": {"$gt": 100}}),
            json!([{"field": "n", "direction": "desc"}, {"field": "_id"}]),
        ),
        (json!({"n": null}), json!([{"field": "_id"}])),
        (json!({"n": 55}), json!(null)),
        (json!({"n": {"$lt": 5}}), json!([{"field": "_id"}])),
        (json!({"tags": "z"}), json!([{"field": "_id"}])),
        (json!({"tags": "a", "k": {"$gt": 40}}), json!([{"field": "_id"}])),
        (json!({"tags": "t1"}), json!([{"field": "_id"}])),
    ] {
        assert_eq!(
            find(&db, "indexed", q.clone(), order.clone()),
            find(&db, "plain", q.clone(), order),
            "{q}"
        );
    }
    // 36 documents left: one `n` entry each, and one `tags,k` entry per tag
    let left = find(&db, "plain", json!({}), json!(null));
    let tags: usize = left.iter().map(|d| d["tags"].as_array().map_or(1, Vec::len)).sum();
    assert_eq!(entries(&db, "indexed"), left.len() as u64 + tags as u64);
}

#[test]
fn a_unique_index_refuses_duplicates_and_writes_nothing() {
    let (_dir, db) = setup();
    db.create_index("default", "indexed", &spec("email", true), false)
        .unwrap();
    insert(
        &db,
        "indexed",
        json!([{"_id": "a", "email": "a@x.cn"}, {"_id": "b", "email": "b@x.cn"}]),
    )
    .unwrap();
    let dup = insert(
        &db,
        "indexed",
        json!([{"_id": "c", "email": "c@x.cn"}, {"_id": "d", "email": "a@x.cn"}]),
    );
    match dup {
        Err(DbError::DuplicateKey { index, value }) => {
            assert_eq!(index, "email_1");
            assert!(value.contains("a@x.cn"), "{value}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        find(&db, "indexed", json!({"_id": "c"}), json!(null)).is_empty(),
        "all or nothing"
    );
    // within one batch
    let dup = insert(
        &db,
        "indexed",
        json!([{"_id": "e", "email": "e@x.cn"}, {"_id": "f", "email": "e@x.cn"}]),
    );
    assert!(matches!(dup, Err(DbError::DuplicateKey { .. })), "{dup:?}");
    // by an update, and by a multi-document update that would give two documents one value
    let dup = update(
        &db,
        "indexed",
        json!({"_id": "b"}),
        json!({"email": "a@x.cn"}),
        false,
        false,
    );
    assert!(matches!(dup, Err(DbError::DuplicateKey { .. })), "{dup:?}");
    let dup = update(&db, "indexed", json!({}), json!({"email": "same@x.cn"}), true, false);
    assert!(matches!(dup, Err(DbError::DuplicateKey { .. })), "{dup:?}");
    assert_eq!(
        find(&db, "indexed", json!({"_id": "b"}), json!(null))[0]["email"],
        "b@x.cn"
    );
    // a document may keep its own value, and a freed value can be taken
    update(
        &db,
        "indexed",
        json!({"_id": "a"}),
        json!({"email": "a@x.cn", "v": 1}),
        false,
        false,
    )
    .unwrap();
    update(
        &db,
        "indexed",
        json!({"_id": "a"}),
        json!({"email": "a2@x.cn"}),
        false,
        false,
    )
    .unwrap();
    insert(&db, "indexed", json!([{"_id": "g", "email": "a@x.cn"}])).unwrap();
    // missing counts as null, as in MongoDB: only one document may lack the field
    insert(&db, "indexed", json!([{"_id": "h"}])).unwrap();
    assert!(matches!(
        insert(&db, "indexed", json!([{"_id": "i"}])),
        Err(DbError::DuplicateKey { .. })
    ));
    assert_eq!(
        find(&db, "indexed", json!({"email": "a@x.cn"}), json!(null))[0]["_id"],
        "g"
    );
}

#[test]
fn building_over_existing_duplicates_fails_and_the_index_is_not_used() {
    let (_dir, db) = setup();
    insert(
        &db,
        "indexed",
        json!([{"_id": "a", "u": 1}, {"_id": "b", "u": 2}, {"_id": "c", "u": 1}]),
    )
    .unwrap();
    db.create_index("default", "indexed", &spec("u", true), false).unwrap();
    let list = db.list_indexes("default", "indexed").unwrap();
    assert_eq!(list[0]["state"], "failed", "{list:?}");
    assert!(list[0]["error"].as_str().unwrap().contains("\"u\":1"), "{list:?}");
    let f = db
        .find_spec(FindParts {
            query: Some(&json!({"u": 1})),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        db.explain("default", "indexed", &f).unwrap()["plan"]["type"],
        "collectionScan"
    );
    assert_eq!(db.count("default", "indexed", &f.filter).unwrap(), 2);
    // a failed index is not maintained; dropping it deletes its entries and its definition
    insert(&db, "indexed", json!([{"_id": "d", "u": 1}])).unwrap();
    db.drop_index("default", "indexed", "u_1", false).unwrap();
    assert!(db.list_indexes("default", "indexed").unwrap().is_empty());
    let mut left = 0;
    db.kv
        .scan_prefix(b"x/", &mut |_, _| {
            left += 1;
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
    assert_eq!(left, 0);
    assert!(matches!(
        db.drop_index("default", "indexed", "u_1", false),
        Err(DbError::IndexNotExist(_))
    ));
}

#[test]
fn parallel_arrays_and_bad_specs_are_refused() {
    let (_dir, db) = setup();
    db.create_index("default", "indexed", &spec("a,b", false), false)
        .unwrap();
    insert(&db, "indexed", json!([{"a": [1], "b": [2, 3]}])).unwrap();
    let err = insert(&db, "indexed", json!([{"a": [1, 2], "b": [2, 3]}])).unwrap_err();
    assert!(err.to_string().contains("parallel arrays"), "{err}");
    for bad in ["", "a,a", "$a", "a..b", "a:sideways"] {
        let parsed = IndexSpec::parse_fields(bad).map(|fields| IndexSpec {
            fields,
            unique: false,
            name: None,
        });
        assert!(parsed.and_then(|s| s.validate()).is_err(), "{bad}");
    }
    let named = IndexSpec {
        name: Some("no spaces".into()),
        ..spec("a", false)
    };
    assert!(named.validate().is_err());
    assert!(matches!(
        db.create_index("default", "indexed", &spec("a,b", false), false),
        Err(DbError::IndexExists(_))
    ));
    assert!(matches!(
        db.create_index("default", "nope", &spec("a", false), false),
        Err(DbError::CollectionNotExist(_))
    ));
    let list = db.list_indexes("default", "indexed").unwrap();
    assert_eq!(
        (list.len(), list[0]["state"].clone(), list[0]["multikey"].clone()),
        (1, json!("ready"), json!(true))
    );
    assert_eq!(list[0]["entries"], 2, "{list:?}");
}

#[test]
fn a_build_in_the_background_misses_no_write_made_meanwhile() {
    let (_dir, db) = setup();
    let docs = (0..5000).map(|i| json!({"_id": format!("d{i:05}"), "n": i}));
    insert(&db, "indexed", Value::Array(docs.collect())).unwrap();
    db.create_index("default", "indexed", &spec("n", false), true).unwrap();
    // writes race the build: new documents at both ends of the _id order, updates and removes
    for i in 0..200 {
        insert(
            &db,
            "indexed",
            json!([{"_id": format!("a{i:03}"), "n": 100_000 + i}, {"_id": format!("z{i:03}"), "n": 200_000 + i}]),
        )
        .unwrap();
        update(
            &db,
            "indexed",
            json!({"_id": format!("d{:05}", i * 20)}),
            json!({"n": -1 - i}),
            false,
            false,
        )
        .unwrap();
        let f = db.filter(Some(&json!({"_id": format!("d{:05}", i * 20 + 1)}))).unwrap();
        db.remove("default", "indexed", &f, false)
            .unwrap()
            .1
            .wait_blocking()
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ixs = db.indexes("default", "indexed").unwrap();
        if ixs.list[0].def.state == State::Ready {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the build did not finish");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let f = db
        .find_spec(FindParts {
            query: Some(&json!({"n": {"$gt": -1000}})),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(db.explain("default", "indexed", &f).unwrap()["plan"]["exact"], true);
    assert_eq!(db.count("default", "indexed", &f.filter).unwrap(), 5000 + 400 - 200);
    assert_eq!(entries(&db, "indexed"), 5200);
    let neg = find(
        &db,
        "indexed",
        json!({"n": {"$lt": 0}}),
        json!([{"field": "n", "direction": "desc"}]),
    );
    assert_eq!(neg.len(), 200);
    assert_eq!(neg[0]["n"], -1);
}
