//! Unit tests of projections: inclusion, exclusion, `_id`, dot paths through arrays, `$slice`,
//! `$elemMatch`, CloudBase's captured specs and bad input.

use serde_json::{json, Value};

use super::Projection;
use crate::db::DbError;

fn project(spec: Value, doc: Value) -> Value {
    Projection::parse(&spec).unwrap().apply(&doc)
}

fn err(spec: Value) -> DbError {
    Projection::parse(&spec).unwrap_err()
}

fn doc() -> Value {
    json!({"_id":"d1","title":"t","priority":3,"done":false,
           "meta":{"a":1,"b":{"c":2,"d":3}},
           "items":[{"n":1,"k":"x"},{"n":5,"k":"y"},7,[{"n":9,"k":"z"}]],
           "tags":["a","b","c","d","e"]})
}

fn text(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn projection_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Projection>();
}

#[test]
fn empty_and_null_are_identity() {
    for spec in [json!({}), Value::Null] {
        let p = Projection::parse(&spec).unwrap();
        assert!(p.is_identity());
        assert_eq!(p.apply(&doc()), doc());
    }
    assert!(!Projection::parse(&json!({"_id":1})).unwrap().is_identity());
    assert!(!Projection::parse(&json!({"_id":0})).unwrap().is_identity());
}

#[test]
fn capture_field_title_priority() {
    // .field({title:true, priority:true}) → projection={"title":1,"priority":1}
    let out = project(json!({"title":1,"priority":1}), doc());
    assert_eq!(text(&out), r#"{"_id":"d1","title":"t","priority":3}"#);
    let out = project(json!({"priority":true,"title":true}), doc());
    assert_eq!(text(&out), r#"{"_id":"d1","title":"t","priority":3}"#, "document order");
}

#[test]
fn inclusion_with_and_without_id() {
    let out = project(json!({"title":1,"_id":0}), doc());
    assert_eq!(out, json!({"title":"t"}));
    let out = project(json!({"_id":1}), doc());
    assert_eq!(out, json!({"_id":"d1"}));
    let out = project(json!({"missing":1}), doc());
    assert_eq!(out, json!({"_id":"d1"}));
    // truthy numbers include, floats too
    let out = project(json!({"title":2,"done":0.5}), doc());
    assert_eq!(out, json!({"_id":"d1","title":"t","done":false}));
}

#[test]
fn exclusion() {
    let out = project(json!({"meta":0,"items":false,"tags":0}), doc());
    assert_eq!(text(&out), r#"{"_id":"d1","title":"t","priority":3,"done":false}"#);
    let out = project(json!({"_id":0}), json!({"_id":1,"a":1}));
    assert_eq!(out, json!({"a":1}));
    // _id: 1 alongside exclusions is allowed and changes nothing
    let out = project(json!({"_id":1,"a":0}), json!({"_id":1,"a":1,"b":2}));
    assert_eq!(out, json!({"_id":1,"b":2}));
}

#[test]
fn dot_paths_include() {
    let out = project(json!({"meta.b.c":1}), doc());
    assert_eq!(out, json!({"_id":"d1","meta":{"b":{"c":2}}}));
    // nested spec objects are dot paths
    let out = project(json!({"meta":{"b":{"d":1}}}), doc());
    assert_eq!(out, json!({"_id":"d1","meta":{"b":{"d":3}}}));
    // through arrays: documents projected, nested arrays recursed, scalars dropped
    let out = project(json!({"items.n":1,"_id":0}), doc());
    assert_eq!(out, json!({"items":[{"n":1},{"n":5},[{"n":9}]]}));
    // a sub-path of a scalar: the field is left out; of an object without it: {}
    let out = project(json!({"title.x":1,"meta.zz":1}), doc());
    assert_eq!(out, json!({"_id":"d1","meta":{}}));
}

#[test]
fn dot_paths_exclude() {
    let out = project(json!({"meta.b.c":0,"items.k":0,"title":0}), doc());
    assert_eq!(
        out,
        json!({"_id":"d1","priority":3,"done":false,"meta":{"a":1,"b":{"d":3}},
               "items":[{"n":1},{"n":5},7,[{"n":9}]],"tags":["a","b","c","d","e"]})
    );
}

#[test]
fn slice_forms() {
    let tags = |spec: Value| project(json!({"tags":{"$slice":spec}}), doc())["tags"].clone();
    assert_eq!(tags(json!(2)), json!(["a", "b"]));
    assert_eq!(tags(json!(-2)), json!(["d", "e"]));
    assert_eq!(tags(json!(0)), json!([]));
    assert_eq!(tags(json!(99)), json!(["a", "b", "c", "d", "e"]));
    assert_eq!(tags(json!(-99)), json!(["a", "b", "c", "d", "e"]));
    assert_eq!(tags(json!([1, 2])), json!(["b", "c"]));
    assert_eq!(tags(json!([-2, 1])), json!(["d"]));
    assert_eq!(tags(json!([-99, 2])), json!(["a", "b"]));
    assert_eq!(tags(json!([10, 2])), json!([]));
    // EJSON numbers (GET query strings) are accepted
    assert_eq!(tags(json!({"$numberInt":"1"})), json!(["a"]));
}

#[test]
fn slice_alone_keeps_other_fields() {
    let out = project(json!({"tags":{"$slice":1}}), doc());
    let mut want = doc();
    want["tags"] = json!(["a"]);
    assert_eq!(out, want);
    // with _id: 0 it is still an exclusion projection
    let out = project(
        json!({"tags":{"$slice":1},"_id":0}),
        json!({"_id":1,"tags":[1,2],"x":1}),
    );
    assert_eq!(out, json!({"tags":[1],"x":1}));
    // on a non-array the value is returned unchanged
    let out = project(json!({"title":{"$slice":1}}), doc());
    assert_eq!(out["title"], json!("t"));
    // with an inclusion: only the listed fields
    let out = project(json!({"tags":{"$slice":-1},"title":1}), doc());
    assert_eq!(out, json!({"_id":"d1","title":"t","tags":["e"]}));
    // with an exclusion
    let out = project(json!({"tags":{"$slice":-1},"meta":0,"items":0}), doc());
    assert_eq!(
        out,
        json!({"_id":"d1","title":"t","priority":3,"done":false,"tags":["e"]})
    );
    // nested path
    let out = project(json!({"o.l":{"$slice":1}}), json!({"_id":1,"o":{"l":[1,2],"m":1}}));
    assert_eq!(out, json!({"_id":1,"o":{"l":[1],"m":1}}));
}

#[test]
fn elem_match() {
    let d = json!({"_id":1,"s":[{"n":1,"k":"a"},{"n":5,"k":"b"},{"n":7,"k":"c"}],"x":1});
    let out = project(json!({"s":{"$elemMatch":{"n":{"$gt":2}}}}), d.clone());
    assert_eq!(out, json!({"_id":1,"s":[{"n":5,"k":"b"}]}));
    let out = project(json!({"s":{"$elemMatch":{"n":99}}}), d.clone());
    assert_eq!(out, json!({"_id":1}));
    let out = project(json!({"x":{"$elemMatch":{"n":1}}}), d.clone());
    assert_eq!(out, json!({"_id":1}));
    let out = project(json!({"s":{"$elemMatch":{"k":"a"}},"x":1,"_id":0}), d);
    assert_eq!(out, json!({"s":[{"n":1,"k":"a"}],"x":1}));
    // scalar arrays with an operator condition
    let out = project(json!({"v":{"$elemMatch":{"$gte":3}}}), json!({"_id":1,"v":[1,4,5]}));
    assert_eq!(out, json!({"_id":1,"v":[4]}));
}

#[test]
fn mixing_and_collisions() {
    for bad in [
        json!({"a":1,"b":0}),
        json!({"a":0,"s":{"$elemMatch":{"n":1}}}),
        json!({"a.b":1,"c":false}),
        json!({"a":1,"a.b":1}),
        json!({"a.b":1,"a":0}),
        json!({"a":{"b":1},"a.b":1}),
        json!({"a":{}}),
        json!({"a":"yes"}),
        json!({"a":null}),
        json!({"a":[1]}),
        json!({"a.b":{"$elemMatch":{"n":1}}}),
        json!([1]),
        json!("title"),
    ] {
        assert!(matches!(err(bad.clone()), DbError::InvalidParam(_)), "{bad}");
    }
}

#[test]
fn bad_operators_and_names() {
    for bad in [
        json!({"a":{"$foo":1}}),
        json!({"a":{"$slice":"1"}}),
        json!({"a":{"$slice":1.5}}),
        json!({"a":{"$slice":[1]}}),
        json!({"a":{"$slice":[1,0]}}),
        json!({"a":{"$slice":[1,-2]}}),
        json!({"a":{"$slice":1,"$elemMatch":{}}}),
        json!({"a":{"$elemMatch":1}}),
        json!({"a":{"$slice":1,"b":1}}),
    ] {
        assert!(matches!(err(bad.clone()), DbError::InvalidCommand(_)), "{bad}");
    }
    for bad in [json!({"a.$":1}), json!({"":1}), json!({"a..b":1}), json!({"$slice":1})] {
        assert!(matches!(err(bad.clone()), DbError::InvalidName(_)), "{bad}");
    }
    let deep = vec!["a"; 70].join(".");
    assert!(matches!(err(json!({deep:1})), DbError::NestingTooDeep(_)));
    // a bad $elemMatch condition is reported by the query parser
    assert!(Projection::parse(&json!({"a":{"$elemMatch":{"n":{"$bogus":1}}}})).is_err());
}

#[test]
fn non_object_documents_pass_through() {
    let p = Projection::parse(&json!({"a":1})).unwrap();
    assert_eq!(p.apply(&json!(5)), json!(5));
}
