//! Unit tests of the array operators: `$push` (all modifiers), `$addToSet`, `$pop`, `$pull`,
//! `$pullAll`.

use serde_json::json;

use crate::db::update::tests::{apply_err, is_cmd, msg, parse_err, run};
use crate::db::DbError;

// ---------- $push ----------

#[test]
fn push_forms() {
    let (out, _) = run(
        json!({"_id":1,"a":[1],"b":[1,2,3],"c":[5,1,4]}),
        json!({"$push":{"a":[9],"b":{"$each":[8,9],"$position":-1},"c":{"$each":[3,2],"$sort":1,"$slice":-3},"new":"x"}}),
    );
    assert_eq!(
        out,
        json!({"_id":1,"a":[1,[9]],"b":[1,2,8,9,3],"c":[3,4,5],"new":["x"]})
    );
    let (out, _) = run(
        json!({"_id":1,"a":[1,2]}),
        json!({"$push":{"a":{"$each":[3],"$position":100}}}),
    );
    assert_eq!(out["a"], json!([1, 2, 3]));
    let (out, _) = run(
        json!({"_id":1,"a":[1,2]}),
        json!({"$push":{"a":{"$each":[3],"$position":-100}}}),
    );
    assert_eq!(out["a"], json!([3, 1, 2]));
    let (out, _) = run(
        json!({"_id":1,"a":[1,2]}),
        json!({"$push":{"a":{"$each":[3],"$slice":0}}}),
    );
    assert_eq!(out["a"], json!([]));
    let (out, _) = run(
        json!({"_id":1,"a":[1,2]}),
        json!({"$push":{"a":{"$each":[3],"$slice":2}}}),
    );
    assert_eq!(out["a"], json!([1, 2]));
    // sort only (empty $each) sorts existing elements
    let (out, _) = run(
        json!({"_id":1,"a":[2,1,"s",null]}),
        json!({"$push":{"a":{"$each":[],"$sort":-1}}}),
    );
    assert_eq!(out["a"], json!(["s", 2, 1, null]));
    // empty $each on an existing array changes nothing; on a missing one creates []
    let (_, ch) = run(json!({"_id":1,"a":[1]}), json!({"$push":{"a":{"$each":[]}}}));
    assert!(ch.is_empty());
    let (out, _) = run(json!({"_id":1}), json!({"$push":{"a":{"$each":[]}}}));
    assert_eq!(out["a"], json!([]));
    // dates are values, not modifier objects
    let (out, _) = run(json!({"_id":1}), json!({"$push":{"d":{"$date":1}}}));
    assert_eq!(out["d"], json!([{"$date":1}]));
}

#[test]
fn push_sort_by_fields() {
    let (out, _) = run(
        json!({"_id":1,"s":[{"n":2,"k":"b"},{"n":1,"k":"a"}]}),
        json!({"$push":{"s":{"$each":[{"n":3,"k":"c"}],"$sort":{"n":-1}}}}),
    );
    let ns: Vec<_> = out["s"].as_array().unwrap().iter().map(|e| e["n"].clone()).collect();
    assert_eq!(ns, vec![json!(3), json!(2), json!(1)]);
}

#[test]
fn push_errors() {
    let e = apply_err(
        json!({"_id":1,"a":"str","n":1}),
        json!({"$inc":{"n":1},"$push":{"a":1}}),
    );
    assert!(
        is_cmd(&e) && msg(&e).contains("$push") && msg(&e).contains("array"),
        "{e}"
    );
    for bad in [
        json!({"$push":{"a":{"$each":1}}}),
        json!({"$push":{"a":{"$each":[1],"$slice":1.5}}}),
        json!({"$push":{"a":{"$each":[1],"$slice":"2"}}}),
        json!({"$push":{"a":{"$each":[1],"$position":"0"}}}),
        json!({"$push":{"a":{"$each":[1],"$sort":2}}}),
        json!({"$push":{"a":{"$each":[1],"$sort":{}}}}),
        json!({"$push":{"a":{"$each":[1],"$sort":{"x":0}}}}),
        json!({"$push":{"a":{"$each":[1],"$bogus":1}}}),
        json!({"$push":{"a":{"$slice":1}}}),
    ] {
        let e = parse_err(bad.clone());
        assert!(is_cmd(&e), "{bad} → {e}");
    }
    // pushed values must be storable
    assert!(matches!(
        parse_err(json!({"$push":{"a":{"$bad":1,"$each":[1]}}})),
        DbError::InvalidCommand(_)
    ));
    assert!(matches!(
        parse_err(json!({"$push":{"a":{"$each":[{"$x":1}]}}})),
        DbError::InvalidName(_)
    ));
}

// ---------- $addToSet / $pop / $pull / $pullAll ----------

#[test]
fn add_to_set() {
    let (out, ch) = run(
        json!({"_id":1,"a":["x",1],"b":[{"k":1}]}),
        json!({"$addToSet":{"a":{"$each":["x","y","y",1.0,2]},"b":{"k":1},"c":"new"}}),
    );
    assert_eq!(out, json!({"_id":1,"a":["x",1,"y",2],"b":[{"k":1}],"c":["new"]}));
    assert!(!ch.updated_fields.contains_key("b"));
    let e = apply_err(json!({"_id":1,"a":{"k":1}}), json!({"$addToSet":{"a":1}}));
    assert!(is_cmd(&e));
    assert!(is_cmd(&parse_err(json!({"$addToSet":{"a":{"$each":1}}}))));
    assert!(is_cmd(&parse_err(json!({"$addToSet":{"a":{"$each":[1],"$slice":1}}}))));
}

#[test]
fn pop() {
    let (out, ch) = run(
        json!({"_id":1,"a":[1,2,3],"b":[1,2,3],"e":[]}),
        json!({"$pop":{"a":1,"b":-1,"e":1,"missing":1}}),
    );
    assert_eq!(out, json!({"_id":1,"a":[1,2],"b":[2,3],"e":[]}));
    assert_eq!(ch.updated_fields.len(), 2);
    for bad in [
        json!({"$pop":{"a":0}}),
        json!({"$pop":{"a":2}}),
        json!({"$pop":{"a":"1"}}),
    ] {
        assert!(is_cmd(&parse_err(bad)));
    }
    let e = apply_err(json!({"_id":1,"a":5}), json!({"$pop":{"a":1}}));
    assert!(is_cmd(&e));
}

#[test]
fn pull_values_and_conditions() {
    let (out, _) = run(
        json!({"_id":1,"a":[1,5,3,7,5],"s":["a","b","a"],"arr":[[1,2],[3]],"d":[{"$date":1},{"$date":2}]}),
        json!({"$pull":{"a":5,"s":"a","arr":[1,2],"d":{"$date":1},"missing":1}}),
    );
    assert_eq!(
        out,
        json!({"_id":1,"a":[1,3,7],"s":["b"],"arr":[[3]],"d":[{"$date":2}]})
    );
    let e = apply_err(json!({"_id":1,"a":"s"}), json!({"$pull":{"a":1}}));
    assert!(is_cmd(&e));
}

#[test]
fn pull_with_element_filter() {
    // needs query::ElementFilter: operator conditions and sub-document queries
    let (out, _) = run(
        json!({"_id":1,"a":[1,5,3,7],"items":[{"n":1,"k":"x"},{"n":2,"k":"y"},{"n":1,"k":"z"}],"w":[1,"s",2]}),
        json!({"$pull":{"a":{"$gt":3},"items":{"n":1},"w":{"$in":["s",2]}}}),
    );
    assert_eq!(out, json!({"_id":1,"a":[1,3],"items":[{"n":2,"k":"y"}],"w":[1]}));
}

#[test]
fn pull_all() {
    let (out, _) = run(
        json!({"_id":1,"a":[1,2,3,1,2.0],"o":[{"k":1},{"k":2}]}),
        json!({"$pullAll":{"a":[1,2],"o":[{"k":1}],"missing":[1]}}),
    );
    assert_eq!(out, json!({"_id":1,"a":[3],"o":[{"k":2}]}));
    assert!(is_cmd(&parse_err(json!({"$pullAll":{"a":1}}))));
    let e = apply_err(json!({"_id":1,"a":1}), json!({"$pullAll":{"a":[1]}}));
    assert!(is_cmd(&e));
}
