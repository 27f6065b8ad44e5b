//! Unit tests of the value model.
use super::*;
use serde_json::json;

const NOW: i64 = 1_700_000_000_000;

fn norm(v: Value) -> Result<Value, DbError> {
    normalize(v, NOW, DEFAULT_MAX_DEPTH)
}

#[test]
fn legacy_and_canonical_dates() {
    assert_eq!(
        norm(json!({"$date": 1700000000000i64})).unwrap(),
        json!({"$date": 1700000000000i64})
    );
    assert_eq!(norm(json!({"$date": 1.5})).unwrap(), json!({"$date": 1}));
    assert_eq!(
        norm(json!({"d": {"$date": {"$numberLong": "1700000000000"}}})).unwrap(),
        json!({"d": {"$date": 1700000000000i64}})
    );
    assert_eq!(
        norm(json!({"$date": {"$numberLong": "-5"}})).unwrap(),
        json!({"$date": -5})
    );
    assert!(matches!(
        norm(json!({"$date": {"$numberLong": "x"}})),
        Err(DbError::InvalidParam(_))
    ));
    assert!(matches!(norm(json!({"$date": true})), Err(DbError::InvalidParam(_))));
    assert!(matches!(
        norm(json!({"$date": {"a": 1}})),
        Err(DbError::InvalidParam(_))
    ));
}

#[test]
fn iso_dates() {
    let d = |s: &str| norm(json!({ "$date": s }));
    assert_eq!(d("2023-11-14T22:13:20.000Z").unwrap(), json!({"$date": NOW}));
    assert_eq!(d("2023-11-14T22:13:20Z").unwrap(), json!({"$date": NOW}));
    assert_eq!(d("2023-11-14T22:13:20.5Z").unwrap(), json!({"$date": NOW + 500}));
    assert_eq!(d("2023-11-14T22:13:20.123456Z").unwrap(), json!({"$date": NOW + 123}));
    assert_eq!(d("2023-11-15T06:13:20+08:00").unwrap(), json!({"$date": NOW}));
    assert_eq!(d("2023-11-14T20:13:20-02:00").unwrap(), json!({"$date": NOW}));
    assert_eq!(d("1970-01-01").unwrap(), json!({"$date": 0}));
    assert_eq!(d("1969-12-31T23:59:59Z").unwrap(), json!({"$date": -1000}));
    assert_eq!(d("2000-02-29T00:00:00Z").unwrap(), json!({"$date": 951782400000i64}));
    for bad in [
        "",
        "2023",
        "2023-13-01",
        "2023-11-14T25:00:00Z",
        "2023-11-14T22:13:20.Z",
        "2023-11-14T22:13:20Zjunk",
        "２０２３-11-14",
    ] {
        assert!(matches!(d(bad), Err(DbError::InvalidParam(_))), "{bad}");
    }
}

#[test]
fn server_dates() {
    assert_eq!(norm(json!({"$date": {"offset": 0}})).unwrap(), json!({"$date": NOW}));
    assert_eq!(
        norm(json!({"$date": {"offset": 1000}})).unwrap(),
        json!({"$date": NOW + 1000})
    );
    assert_eq!(
        norm(json!({"$date": {"offset": -1.5}})).unwrap(),
        json!({"$date": NOW - 2})
    );
    assert_eq!(
        norm(json!({"$date": {"offset": {"$numberInt": "7"}}})).unwrap(),
        json!({"$date": NOW + 7})
    );
    assert!(matches!(
        norm(json!({"$date": {"offset": "x"}})),
        Err(DbError::InvalidParam(_))
    ));
}

#[test]
fn numbers() {
    assert_eq!(norm(json!({"$numberInt": "2"})).unwrap(), json!(2));
    assert_eq!(
        norm(json!({"$numberInt": "-2147483648"})).unwrap(),
        json!(-2147483648i64)
    );
    assert_eq!(
        norm(json!({"$numberLong": "9007199254740993"})).unwrap(),
        json!(9007199254740993i64)
    );
    assert_eq!(norm(json!({"$numberDouble": "1.5"})).unwrap(), json!(1.5));
    assert_eq!(norm(json!({"$numberDouble": "-0.0"})).unwrap(), json!(-0.0));
    assert_eq!(norm(json!({"$numberDecimal": "2.25"})).unwrap(), json!(2.25));
    for bad in [
        json!({"$numberInt": "abc"}),
        json!({"$numberInt": "2147483648"}),
        json!({"$numberInt": 1.5}),
        json!({"$numberLong": "1e3"}),
        json!({"$numberLong": null}),
        json!({"$numberDouble": "Infinity"}),
        json!({"$numberDouble": "-Infinity"}),
        json!({"$numberDouble": "NaN"}),
        json!({"$numberDouble": "one"}),
    ] {
        match norm(bad.clone()) {
            Err(DbError::InvalidParam(msg)) => assert!(msg.contains('$'), "{msg}"),
            other => panic!("{bad} -> {other:?}"),
        }
    }
}

#[test]
fn nested_and_other_wrappers() {
    let v = json!({"a": [{"$numberInt": "1"}, {"b": {"$numberDouble": "2.5"}}], "t": {"$timestamp": {"t": 5, "i": 1}},
        "r": {"$regularExpression": {"pattern": "^a", "options": "i"}}, "x": {"$other": 1}, "two": {"$date": 1, "y": 2}});
    assert_eq!(
        norm(v).unwrap(),
        json!({"a": [1, {"b": 2.5}], "t": {"$date": 5000}, "r": {"$regex": "^a", "$options": "i"}, "x": {"$other": 1}, "two": {"$date": 1, "y": 2}})
    );
}

fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for i in 0..levels {
        v = if i % 2 == 0 { json!({ "k": v }) } else { json!([v]) };
    }
    v
}

#[test]
fn depth_limits() {
    assert!(normalize(nested(3), NOW, 3).is_ok());
    assert!(matches!(normalize(nested(4), NOW, 3), Err(DbError::NestingTooDeep(3))));
    assert!(norm(nested(64)).is_ok());
    assert!(matches!(norm(nested(65)), Err(DbError::NestingTooDeep(64))));
    let doc = json!({ "k": nested(63) });
    assert!(validate_document(&doc, 64).is_ok());
    let doc = json!({ "k": nested(64) });
    assert!(matches!(validate_document(&doc, 64), Err(DbError::NestingTooDeep(64))));
    // a date at the deepest level is fine in both
    let doc = json!({"a": {"b": {"$date": 5}}});
    assert!(normalize(doc.clone(), NOW, 3).is_ok());
    assert!(validate_document(&doc, 3).is_ok());
}

#[test]
fn as_date_only_for_internal_dates() {
    assert_eq!(as_date(&json!({"$date": 5})), Some(5));
    assert_eq!(as_date(&json!({"$date": 5.5})), None);
    assert_eq!(as_date(&json!({"$date": 5, "x": 1})), None);
    assert_eq!(as_date(&json!(5)), None);
}

#[test]
fn cross_type_order() {
    let ordered = [
        json!(null),
        json!(-1e300),
        json!(-3),
        json!(1),
        json!(1.5),
        json!(u64::MAX),
        json!(""),
        json!("B"),
        json!("a"),
        json!("é"),
        json!({}),
        json!({"a": 1}),
        json!({"a": 1, "b": 0}),
        json!({"b": 0}),
        json!({"a": "x"}),
        json!([]),
        json!([1]),
        json!([1, 2]),
        json!([2]),
        json!(false),
        json!(true),
        json!({"$date": -1}),
        json!({"$date": 0}),
    ];
    for (i, a) in ordered.iter().enumerate() {
        for (j, b) in ordered.iter().enumerate() {
            assert_eq!(compare(a, b), i.cmp(&j), "{a} vs {b}");
            assert_eq!(values_equal(a, b), i == j, "{a} vs {b}");
        }
    }
}

#[test]
fn numeric_equality_and_precision() {
    assert!(values_equal(&json!(1), &json!(1.0)));
    assert!(values_equal(&json!({"a": [1]}), &json!({"a": [1.0]})));
    assert!(!values_equal(&json!({"a": 1, "b": 2}), &json!({"b": 2, "a": 1})));
    assert_eq!(
        compare(&json!(9007199254740993i64), &json!(9007199254740992.0)),
        Ordering::Greater
    );
    assert_eq!(compare(&json!(-2), &json!(-1.5)), Ordering::Less);
    assert_eq!(compare(&json!(-1), &json!(-1.5)), Ordering::Greater);
    assert_eq!(compare(&json!(i64::MAX), &json!(1e19)), Ordering::Less);
    assert_eq!(compare(&json!(0), &json!(-0.0)), Ordering::Equal);
    assert!(!values_equal(&json!("1"), &json!(1)));
    assert!(!values_equal(&json!({"$date": 1}), &json!({"$date": 1.0})));
    assert_ne!(compare(&json!({"$date": 1}), &json!({"$date": 1.0})), Ordering::Equal);
}

#[test]
fn validate_names() {
    assert!(validate_document(&json!({"_id": "x", "a": {"b": [{"c": {"$date": 1}}]}}), 64).is_ok());
    let k129 = "k".repeat(129);
    for bad in [
        json!({"": 1}),
        json!({"a.b": 1}),
        json!({"$set": 1}),
        json!({"a": {"$x": 1}}),
        json!({"a\u{0}": 1}),
        json!({ k129.clone(): 1 }),
        json!({"a": [{"$date": 1, "b": 2}]}),
        json!({"$date": 1}),
    ] {
        match validate_document(&bad, 64) {
            Err(DbError::InvalidName(msg)) => {
                assert!(msg.starts_with("invalid field name `"), "{msg}")
            }
            other => panic!("{bad} -> {other:?}"),
        }
    }
    assert!(validate_document(&json!({ "k".repeat(128): 1 }), 64).is_ok());
    assert!(matches!(
        validate_document(&json!([1]), 64),
        Err(DbError::InvalidParam(_))
    ));
}
