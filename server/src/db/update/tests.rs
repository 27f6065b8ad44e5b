//! Unit tests of update specs: every operator, CloudBase's captured payloads, conflicts,
//! all-or-nothing application and bad input.

use serde_json::{json, Map, Value};

use super::{set_path, Changes, Update};
use crate::db::DbError;

pub(super) fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Parses `data` as update() and applies it to `doc`; returns (new doc, changes).
pub(super) fn run(doc: Value, data: Value) -> (Value, Changes) {
    let u = Update::parse(&data, true).unwrap();
    let mut d = obj(doc);
    let ch = u.apply(&mut d).unwrap();
    (Value::Object(d), ch)
}

pub(super) fn apply_err(doc: Value, data: Value) -> DbError {
    let u = Update::parse(&data, true).unwrap();
    let mut d = obj(doc.clone());
    let err = u.apply(&mut d).unwrap_err();
    assert_eq!(Value::Object(d), doc, "document changed by a failed update");
    err
}

pub(super) fn parse_err(data: Value) -> DbError {
    Update::parse(&data, true).unwrap_err()
}

pub(super) fn is_cmd(e: &DbError) -> bool {
    matches!(e, DbError::InvalidCommand(_))
}

pub(super) fn msg(e: &DbError) -> String {
    e.to_string()
}

#[test]
fn update_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Update>();
}

// ---------- CloudBase captured payloads (protocol §3.9) ----------

#[test]
fn capture_update_inc_push_set_unset() {
    let data = json!({"$inc":{"count":1},"$push":{"tags":{"$each":["c"]}},
        "$set":{"meta.x":1,"updatedAt":{"$date":1_700_000_001_000_i64},"nested.y":2},"$unset":{"stale":""}});
    let doc = json!({"_id":"doc-1","count":4,"tags":["a","b"],"meta":{"w":0},"stale":true,"nested":{"z":1}});
    let (out, ch) = run(doc, data);
    assert_eq!(
        out,
        json!({"_id":"doc-1","count":5,"tags":["a","b","c"],"meta":{"w":0,"x":1},"nested":{"z":1,"y":2},
               "updatedAt":{"$date":1_700_000_001_000_i64}})
    );
    assert_eq!(ch.removed_fields, vec!["stale".to_string()]);
    assert_eq!(ch.updated_fields.get("count"), Some(&json!(5)));
    assert_eq!(ch.updated_fields.get("tags"), Some(&json!(["a", "b", "c"])));
    assert_eq!(ch.updated_fields.get("meta.x"), Some(&json!(1)));
    assert_eq!(ch.updated_fields.get("nested.y"), Some(&json!(2)));
    assert_eq!(ch.updated_fields.len(), 5);
}

#[test]
fn capture_update_array_and_misc_operators() {
    let data = json!({"$mul":{"m":2},"$pop":{"a1":1,"a2":-1},
        "$push":{"a3":{"$each":[0],"$position":0},"a7":{"$each":[1,2],"$position":0,"$sort":-1,"$slice":5}},
        "$addToSet":{"a4":"z"},"$pull":{"a5":{"$gt":3}},"$pullAll":{"a6":[1,2]},
        "$rename":{"old":"renamed"},"$min":{"lo":1},"$max":{"hi":9}});
    let doc = json!({"_id":"doc-1","m":3,"a1":[1,2,3],"a2":[1,2,3],"a3":[1],"a4":["y"],
        "a5":[1,5,3,7],"a6":[1,2,3,1],"old":"v","lo":5,"hi":5,"a7":[9,3,7,5,8]});
    let (out, ch) = run(doc, data);
    assert_eq!(
        out,
        json!({"_id":"doc-1","m":6,"a1":[1,2],"a2":[2,3],"a3":[0,1],"a4":["y","z"],
            "a5":[1,3],"a6":[3],"lo":1,"hi":9,"a7":[9,8,7,5,3],"renamed":"v"})
    );
    assert_eq!(ch.removed_fields, vec!["old".to_string()]);
    assert_eq!(ch.updated_fields.get("renamed"), Some(&json!("v")));
}

#[test]
fn capture_set_replaces_document() {
    let u = Update::parse(&json!({"title":"replaced","done":true}), false).unwrap();
    assert!(u.is_replacement());
    let mut d = obj(json!({"_id":"doc-1","title":"x","extra":1}));
    let ch = u.apply(&mut d).unwrap();
    assert_eq!(Value::Object(d), json!({"_id":"doc-1","title":"replaced","done":true}));
    assert_eq!(ch.removed_fields, vec!["extra".to_string()]);
    assert_eq!(ch.updated_fields, obj(json!({"title":"replaced","done":true})));
}

#[test]
fn capture_where_update_set() {
    let (out, ch) = run(json!({"_id":"a","done":false}), json!({"$set":{"done":true}}));
    assert_eq!(out, json!({"_id":"a","done":true}));
    assert!(!ch.is_empty());
}

// ---------- plain fields (flattening) ----------

#[test]
fn plain_fields_flatten_like_the_client() {
    let data = json!({"nested":{"y":2,"deep":{"k":1}},"when":{"$date":5},"loc":{"type":"Point","coordinates":[1.0,2.0]},
        "empty":{},"list":[{"a":1}],"n":1,"meta.x":"dot"});
    let doc = json!({"_id":"d","nested":{"z":0},"when":{"$date":1},"loc":{"type":"Point","coordinates":[0.0,0.0],"extra":1},
        "empty":{"old":1},"list":[],"meta":{"w":1}});
    let (out, ch) = run(doc, data);
    assert_eq!(
        out,
        json!({"_id":"d","nested":{"z":0,"y":2,"deep":{"k":1}},"when":{"$date":5},
            "loc":{"type":"Point","coordinates":[1.0,2.0]},"empty":{},"list":[{"a":1}],"meta":{"w":1,"x":"dot"},"n":1})
    );
    let mut keys: Vec<_> = ch.updated_fields.keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "empty",
            "list",
            "loc",
            "meta.x",
            "n",
            "nested.deep.k",
            "nested.y",
            "when"
        ]
    );
}

#[test]
fn plain_fields_mix_with_operators() {
    let (out, _) = run(json!({"_id":1,"c":1}), json!({"a":1,"$inc":{"c":2}}));
    assert_eq!(out, json!({"_id":1,"c":3,"a":1}));
    // a plain field and an operator on the same path conflict
    assert!(is_cmd(&parse_err(json!({"a":1,"$inc":{"a":2}}))));
}

#[test]
fn operator_set_of_object_replaces_whole() {
    let (out, _) = run(json!({"_id":1,"o":{"a":1,"b":2}}), json!({"$set":{"o":{"c":3}}}));
    assert_eq!(out, json!({"_id":1,"o":{"c":3}}));
}

// ---------- $set / $unset ----------

#[test]
fn set_creates_paths_and_pads_arrays() {
    let (out, _) = run(
        json!({"_id":1,"arr":[1]}),
        json!({"$set":{"a.b.c":1,"arr.3":4,"arr.5.x":1}}),
    );
    assert_eq!(
        out,
        json!({"_id":1,"arr":[1,null,null,4,null,{"x":1}],"a":{"b":{"c":1}}})
    );
    let (out, _) = run(json!({"_id":1,"arr":[{"k":1},{"k":2}]}), json!({"$set":{"arr.1.k":9}}));
    assert_eq!(out, json!({"_id":1,"arr":[{"k":1},{"k":9}]}));
    // numeric segment on an object / missing field is a key
    let (out, _) = run(json!({"_id":1}), json!({"$set":{"o.0":1}}));
    assert_eq!(out, json!({"_id":1,"o":{"0":1}}));
}

#[test]
fn set_same_value_is_not_a_modification() {
    let (out, ch) = run(json!({"_id":1,"a":{"b":1},"n":1}), json!({"$set":{"a.b":1,"n":1}}));
    assert_eq!(out, json!({"_id":1,"a":{"b":1},"n":1}));
    assert!(ch.is_empty());
    // int → float is a change of type, hence a modification
    let (out, ch) = run(json!({"_id":1,"n":1}), json!({"$set":{"n":1.0}}));
    assert_eq!(out, json!({"_id":1,"n":1.0}));
    assert!(!ch.is_empty());
}

#[test]
fn set_through_scalar_fails() {
    let e = apply_err(json!({"_id":1,"a":5,"b":"x"}), json!({"$set":{"b":"y","a.b":1}}));
    assert!(is_cmd(&e), "{e}");
    assert!(msg(&e).contains("`a`"), "{e}");
    let e = apply_err(json!({"_id":1,"a":null}), json!({"$set":{"a.b":1}}));
    assert!(is_cmd(&e));
    let e = apply_err(json!({"_id":1,"a":[1]}), json!({"$set":{"a.x":1}}));
    assert!(is_cmd(&e));
    let e = apply_err(json!({"_id":1,"a":[]}), json!({"$set":{"a.100001":1}}));
    assert!(msg(&e).contains("100000"), "{e}");
    let e = apply_err(json!({"_id":1,"a":[]}), json!({"$set":{"a.99999999999999999999999":1}}));
    assert!(is_cmd(&e));
}

#[test]
fn unset_fields_elements_and_missing() {
    let (out, ch) = run(
        json!({"_id":1,"a":{"b":1,"c":2},"arr":[1,2,3],"k":0}),
        json!({"$unset":{"a.b":"","arr.1":1,"missing":"","k.deep":"","a.nope.x":true}}),
    );
    assert_eq!(out, json!({"_id":1,"a":{"c":2},"arr":[1,null,3],"k":0}));
    assert_eq!(ch.removed_fields, vec!["a.b".to_string()]);
    assert_eq!(ch.updated_fields, obj(json!({"arr.1":null})));
    let (_, ch) = run(json!({"_id":1}), json!({"$unset":{"x":""}}));
    assert!(ch.is_empty());
}

#[test]
fn unset_preserves_field_order() {
    let (out, _) = run(json!({"_id":1,"a":1,"b":2,"c":3}), json!({"$unset":{"a":""}}));
    assert_eq!(serde_json::to_string(&out).unwrap(), r#"{"_id":1,"b":2,"c":3}"#);
}

// ---------- $inc / $mul ----------

#[test]
fn inc_numbers() {
    let (out, _) = run(
        json!({"_id":1,"i":1,"f":1.5,"neg":-3}),
        json!({"$inc":{"i":2,"f":1,"neg":0.5,"new":-7,"n.e.w":1.25}}),
    );
    assert_eq!(
        out,
        json!({"_id":1,"i":3,"f":2.5,"neg":-2.5,"n":{"e":{"w":1.25}},"new":-7})
    );
    // integer stays an integer
    let (out, _) = run(json!({"_id":1,"i":1}), json!({"$inc":{"i":1}}));
    assert!(out["i"].is_i64());
    // $inc by 0 is not a modification
    let (_, ch) = run(json!({"_id":1,"i":1}), json!({"$inc":{"i":0}}));
    assert!(ch.is_empty());
}

#[test]
fn inc_errors() {
    let e = apply_err(json!({"_id":1,"s":"x"}), json!({"$inc":{"s":1}}));
    assert!(is_cmd(&e) && msg(&e).contains("$inc") && msg(&e).contains("`s`"), "{e}");
    let e = apply_err(json!({"_id":1,"i":i64::MAX}), json!({"$inc":{"i":1}}));
    assert!(msg(&e).contains("overflow"), "{e}");
    assert!(is_cmd(&parse_err(json!({"$inc":{"a":"1"}}))));
    assert!(msg(&parse_err(json!({"$inc":{"a":"1"}}))).contains("$inc"));
    assert!(is_cmd(&parse_err(json!({"$inc":{"a":null}}))));
    let e = apply_err(json!({"_id":1,"f":1.0e308}), json!({"$inc":{"f":1.0e308}}));
    assert!(msg(&e).contains("finite"), "{e}");
}

#[test]
fn mul_numbers() {
    let (out, _) = run(
        json!({"_id":1,"i":3,"f":1.5}),
        json!({"$mul":{"i":2,"f":2,"missing":5,"missing_f":2.5}}),
    );
    assert_eq!(out, json!({"_id":1,"i":6,"f":3.0,"missing":0,"missing_f":0.0}));
    let (out, _) = run(json!({"_id":1,"i":3}), json!({"$mul":{"i":0.5}}));
    assert_eq!(out, json!({"_id":1,"i":1.5}));
    let e = apply_err(json!({"_id":1,"i":i64::MAX}), json!({"$mul":{"i":2}}));
    assert!(msg(&e).contains("overflow"));
    let e = apply_err(json!({"_id":1,"b":true}), json!({"$mul":{"b":2}}));
    assert!(is_cmd(&e));
    assert!(is_cmd(&parse_err(json!({"$mul":{"a":[2]}}))));
}

// ---------- $min / $max ----------

#[test]
fn min_max() {
    let (out, ch) = run(
        json!({"_id":1,"lo":5,"hi":5,"d":{"$date":100},"s":"b"}),
        json!({"$min":{"lo":3,"d":{"$date":50},"s":"c","new":1},"$max":{"hi":3}}),
    );
    assert_eq!(out, json!({"_id":1,"lo":3,"hi":5,"d":{"$date":50},"s":"b","new":1}));
    assert_eq!(ch.updated_fields.len(), 3);
    // cross-type order: numbers < strings
    let (out, _) = run(json!({"_id":1,"v":"str"}), json!({"$max":{"v":10}}));
    assert_eq!(out["v"], json!("str"));
    let (out, _) = run(json!({"_id":1,"v":"str"}), json!({"$min":{"v":10}}));
    assert_eq!(out["v"], json!(10));
    // numerically equal (1 vs 1.0) is not a change
    let (_, ch) = run(json!({"_id":1,"v":1}), json!({"$min":{"v":1.0}}));
    assert!(ch.is_empty());
}

// ---------- $rename ----------

#[test]
fn rename() {
    let (out, ch) = run(
        json!({"_id":1,"a":{"b":1,"c":2},"x":"v","target":"old"}),
        json!({"$rename":{"a.b":"moved.here","x":"target","missing":"other"}}),
    );
    assert_eq!(out, json!({"_id":1,"a":{"c":2},"target":"v","moved":{"here":1}}));
    assert_eq!(ch.removed_fields, vec!["a.b".to_string(), "x".to_string()]);
    let e = apply_err(json!({"_id":1,"arr":[{"a":1}]}), json!({"$rename":{"arr.0.a":"z"}}));
    assert!(is_cmd(&e));
    let e = apply_err(json!({"_id":1,"a":1,"arr":[{}]}), json!({"$rename":{"a":"arr.0.z"}}));
    assert!(is_cmd(&e));
    assert!(is_cmd(&parse_err(json!({"$rename":{"a":1}}))));
    assert!(is_cmd(&parse_err(json!({"$rename":{"a":"a"}}))));
    assert!(is_cmd(&parse_err(json!({"$rename":{"a":"a.b"}}))));
    assert!(is_cmd(&parse_err(json!({"$rename":{"a":"b"},"$set":{"b":1}}))));
    assert!(is_cmd(&parse_err(json!({"$rename":{"a":"_id"}}))));
    assert!(matches!(
        parse_err(json!({"$rename":{"a":"$b"}})),
        DbError::InvalidName(_)
    ));
}

// ---------- $bit ----------

#[test]
fn bit() {
    let (out, _) = run(
        json!({"_id":1,"a":13,"b":13}),
        json!({"$bit":{"a":{"and":10},"b":{"or":2,"xor":1},"c":{"or":5}}}),
    );
    assert_eq!(out, json!({"_id":1,"a":8,"b":14,"c":5}));
    let e = apply_err(json!({"_id":1,"a":1.5}), json!({"$bit":{"a":{"and":1}}}));
    assert!(is_cmd(&e));
    for bad in [
        json!({"$bit":{"a":{"nand":1}}}),
        json!({"$bit":{"a":{"and":1.5}}}),
        json!({"$bit":{"a":{}}}),
        json!({"$bit":{"a":3}}),
    ] {
        assert!(is_cmd(&parse_err(bad)));
    }
}

// ---------- parse errors ----------

#[test]
fn bad_update_specs() {
    let e = parse_err(json!({"$foo":{"a":1}}));
    assert!(is_cmd(&e) && msg(&e).contains("unknown update operator `$foo`"), "{e}");
    assert!(matches!(parse_err(json!({})), DbError::InvalidParam(_)));
    assert!(matches!(parse_err(json!({"$set":{}})), DbError::InvalidParam(_)));
    assert!(matches!(parse_err(json!([1])), DbError::InvalidParam(_)));
    assert!(matches!(
        Update::parse(&json!("x"), false),
        Err(DbError::InvalidParam(_))
    ));
    assert!(is_cmd(&parse_err(json!({"$set":1}))));
    // _id
    for bad in [
        json!({"$set":{"_id":2}}),
        json!({"_id":"x"}),
        json!({"$unset":{"_id.a":""}}),
        json!({"_id":{"a":1}}),
    ] {
        let e = parse_err(bad.clone());
        assert!(is_cmd(&e) && msg(&e).contains("_id cannot be updated"), "{bad} → {e}");
    }
    // conflicts
    for bad in [
        json!({"$set":{"a":1},"$inc":{"a":1}}),
        json!({"$set":{"a":1,"a.b":1}}),
        json!({"$set":{"a.b":1},"$unset":{"a":""}}),
        json!({"a":{"b":1},"$set":{"a.b.c":1}}),
    ] {
        let e = parse_err(bad.clone());
        assert!(
            is_cmd(&e) && (msg(&e).contains("conflict") || msg(&e).contains("twice")),
            "{bad} → {e}"
        );
    }
    // sibling paths with a shared prefix string are fine
    assert!(Update::parse(&json!({"$set":{"a":1,"ab":1,"a2.b":1}}), true).is_ok());
    // invalid names
    for bad in [
        json!({"$set":{"a..b":1}}),
        json!({"$set":{"":1}}),
        json!({"$set":{"a.$":1}}),
        json!({"$set":{"a.$[]":1}}),
        json!({"$set":{"a.":1}}),
        json!({"nested":{"":1}}),
        json!({"$set":{"o":{"$bad":1}}}),
        json!({"$set":{"o":{"a.b":1}}}),
    ] {
        let e = parse_err(bad.clone());
        assert!(matches!(e, DbError::InvalidName(_)), "{bad} → {e}");
    }
    let long = "x".repeat(200);
    assert!(matches!(parse_err(json!({"$set":{long:1}})), DbError::InvalidName(_)));
    let deep = vec!["a"; 70].join(".");
    assert!(matches!(
        parse_err(json!({"$set":{deep:1}})),
        DbError::NestingTooDeep(_)
    ));
    // depth counts the path: 63 segments + an object value goes past 64 levels
    let path63 = vec!["a"; 63].join(".");
    assert!(Update::parse(&json!({"$set":{path63.clone():1}}), true).is_ok());
    assert!(matches!(
        parse_err(json!({"$set":{path63:{"x":{"y":1}}}})),
        DbError::NestingTooDeep(_)
    ));
}

// ---------- all or nothing ----------

#[test]
fn failed_update_leaves_document_untouched() {
    // ops apply in path order: a, b, c, z — z fails after the others succeeded on the work copy
    let doc = json!({"_id":1,"a":1,"b":[1],"c":{"d":1},"z":"text"});
    let e = apply_err(
        doc.clone(),
        json!({"$set":{"a":2,"new":1},"$push":{"b":2},"$unset":{"c.d":""},"$rename":{"x":"y"},"$inc":{"z":1}}),
    );
    assert!(is_cmd(&e));
    let e = apply_err(doc, json!({"$set":{"a":2,"zz.k":1},"$pop":{"z":1}}));
    assert!(is_cmd(&e));
}

#[test]
fn replacement_rules() {
    assert!(!Update::parse(&json!({"a":1}), true).unwrap().is_replacement());
    let e = Update::parse(&json!({"a":1,"$set":{"b":1}}), false).unwrap_err();
    assert!(is_cmd(&e) && msg(&e).contains("not allowed in set()"), "{e}");
    assert!(matches!(
        Update::parse(&json!({"a":{"$x":1}}), false),
        Err(DbError::InvalidName(_))
    ));
    // same _id is fine, a different one is not; no _id keeps the old one
    let u = Update::parse(&json!({"_id":"doc-1","v":1}), false).unwrap();
    let mut d = obj(json!({"_id":"doc-1","v":0}));
    u.apply(&mut d).unwrap();
    assert_eq!(Value::Object(d), json!({"_id":"doc-1","v":1}));
    let u = Update::parse(&json!({"_id":"other","v":1}), false).unwrap();
    let mut d = obj(json!({"_id":"doc-1","v":0}));
    assert!(is_cmd(&u.apply(&mut d).unwrap_err()));
    assert_eq!(Value::Object(d), json!({"_id":"doc-1","v":0}));
    // an identical replacement is not a modification
    let u = Update::parse(&json!({"v":1}), false).unwrap();
    let mut d = obj(json!({"_id":"doc-1","v":1}));
    assert!(u.apply(&mut d).unwrap().is_empty());
    // empty replacement clears everything but _id
    let u = Update::parse(&json!({}), false).unwrap();
    let mut d = obj(json!({"_id":"doc-1","v":1}));
    let ch = u.apply(&mut d).unwrap();
    assert_eq!(Value::Object(d), json!({"_id":"doc-1"}));
    assert_eq!(ch.removed_fields, vec!["v".to_string()]);
    // upsert seed: the replacement's _id is used when the seed has none, _id goes first
    let u = Update::parse(&json!({"v":1,"_id":"new"}), false).unwrap();
    let mut d = Map::new();
    u.apply(&mut d).unwrap();
    assert_eq!(serde_json::to_string(&d).unwrap(), r#"{"_id":"new","v":1}"#);
}

#[test]
fn upsert_seed_with_set_path() {
    let mut seed = Map::new();
    set_path(&mut seed, "_id", json!("x")).unwrap();
    set_path(&mut seed, "a.b", json!(1)).unwrap();
    set_path(&mut seed, "a.c", json!(2)).unwrap();
    assert_eq!(Value::Object(seed.clone()), json!({"_id":"x","a":{"b":1,"c":2}}));
    let u = Update::parse(&json!({"$inc":{"n":1},"a.d":3}), true).unwrap();
    u.apply(&mut seed).unwrap();
    assert_eq!(
        Value::Object(seed.clone()),
        json!({"_id":"x","a":{"b":1,"c":2,"d":3},"n":1})
    );
    // errors leave the map alone
    let before = seed.clone();
    assert!(is_cmd(&set_path(&mut seed, "n.x.y", json!(1)).unwrap_err()));
    assert!(matches!(
        set_path(&mut seed, "a..b", json!(1)),
        Err(DbError::InvalidName(_))
    ));
    assert_eq!(seed, before);
    let mut arr = obj(json!({"l":[0]}));
    set_path(&mut arr, "l.2", json!(5)).unwrap();
    assert_eq!(Value::Object(arr), json!({"l":[0,null,5]}));
}

#[test]
fn new_fields_are_added_in_path_order() {
    let (out, _) = run(json!({"_id":1}), json!({"z":1,"$set":{"b":1},"a":1}));
    assert_eq!(serde_json::to_string(&out).unwrap(), r#"{"_id":1,"a":1,"b":1,"z":1}"#);
}

#[test]
fn debug_is_readable() {
    let u = Update::parse(&json!({"$inc":{"n":1},"a":1}), true).unwrap();
    assert_eq!(format!("{u:?}"), r#"["$set a", "$inc n"]"#);
}
