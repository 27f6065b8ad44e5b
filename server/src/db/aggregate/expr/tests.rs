//! Unit tests of the expression operators: one group per family, with null, missing and
//! wrong-type arguments, and MongoDB's integer/double rules.

use serde_json::{json, Value};

use super::{Env, Expr, Scope};
use crate::db::value::normalize;
use crate::db::DbError;

/// 2024-01-01T12:34:56.789Z, a Monday.
const MS: i64 = 1_704_112_496_789;

fn doc() -> Value {
    json!({
        "_id": "d1", "n": 5, "f": 2.5, "s": "héllo", "nil": null, "t": true,
        "arr": [1, 2, 3], "objs": [{"a": 1}, {"a": 2}, {"b": 3}], "o": {"x": 1, "y": {"z": 2}},
        "when": {"$date": MS}
    })
}

fn eval_on(expr: Value, doc: &Value) -> Result<Option<Value>, DbError> {
    let expr = normalize(expr, 0, 64)?;
    let e = Expr::compile(&expr, &mut Scope::default())?;
    let mut env = Env::new(MS);
    Ok(e.evaluate(doc, &mut env)?.map(|c| c.into_owned()))
}

/// The value of `expr` on [`doc`]; panics on an error or a missing result.
fn ev(expr: Value) -> Value {
    match eval_on(expr.clone(), &doc()) {
        Ok(Some(v)) => v,
        Ok(None) => panic!("{expr} evaluated to missing"),
        Err(e) => panic!("{expr} failed: {e}"),
    }
}

fn missing(expr: Value) -> bool {
    matches!(eval_on(expr, &doc()), Ok(None))
}

/// The error message of `expr` (panics if it succeeds).
fn err(expr: Value) -> String {
    match eval_on(expr.clone(), &doc()) {
        Err(e) => e.to_string(),
        Ok(v) => panic!("{expr} should fail, gave {v:?}"),
    }
}

/// The JSON text of a value (tells `2` from `2.0`).
fn text(v: Value) -> String {
    v.to_string()
}

#[test]
fn field_paths_variables_and_literals() {
    assert_eq!(ev(json!("$n")), json!(5));
    assert_eq!(ev(json!("$o.y.z")), json!(2));
    assert!(missing(json!("$nope")));
    assert!(missing(json!("$o.nope.deeper")));
    // a path through an array of objects gives the array of what each element has
    assert_eq!(ev(json!("$objs.a")), json!([1, 2]));
    assert_eq!(ev(json!("$$ROOT._id")), json!("d1"));
    assert_eq!(ev(json!("$$CURRENT.n")), json!(5));
    assert!(missing(json!("$$REMOVE")));
    assert_eq!(ev(json!("$$NOW")), json!({"$date": MS}));
    assert_eq!(ev(json!({"$literal": "$n"})), json!("$n"));
    assert_eq!(ev(json!({"$literal": {"$add": [1, 2]}})), json!({"$add": [1, 2]}));
    assert_eq!(ev(json!("plain")), json!("plain"));
    // expression objects leave out missing fields; array literals turn them into null
    assert_eq!(
        ev(json!({"a": "$n", "b": "$nope", "c": {"d": "$s"}})),
        json!({"a": 5, "c": {"d": "héllo"}})
    );
    assert_eq!(ev(json!(["$n", "$nope"])), json!([5, null]));
    assert_eq!(
        ev(json!({"$let": {"vars": {"x": 2, "y": "$n"}, "in": {"$multiply": ["$$x", "$$y"]}}})),
        json!(10)
    );
    assert!(err(json!("$$undefined")).contains("undefined variable"));
    assert!(err(json!({"$let": {"vars": {"Bad": 1}, "in": 1}})).contains("variable name"));
    assert!(err(json!("$a..b")).contains("empty component"));
}

#[test]
fn malformed_and_unknown_operators_are_named() {
    assert!(err(json!({"$frobnicate": 1})).contains("unknown expression operator `$frobnicate`"));
    let e = eval_on(json!({"$function": {}}), &doc()).unwrap_err();
    assert!(matches!(e, DbError::NotSupported(_)), "{e}");
    assert!(e.to_string().contains("`$function`"));
    assert!(err(json!({"$add": [1, 2], "x": 1})).contains("exactly one field"));
    assert!(err(json!({"a": 1, "$add": [1]})).contains("cannot mix"));
    assert!(err(json!({"$size": [1, 2]})).contains("`$size` takes exactly 1 argument, got 2"));
    assert!(err(json!({"$subtract": [1]})).contains("exactly 2"));
    assert!(err(json!({"$cond": [1, 2]})).contains("$cond"));
    assert!(err(json!({"$map": {"input": [1], "in": 1, "extra": 2}})).contains("`extra`"));
    assert!(err(json!({"$map": {"input": [1]}})).contains("needs `in`"));
}

#[test]
fn arithmetic_keeps_integers_and_promotes_to_double() {
    assert_eq!(text(ev(json!({"$add": [1, 2, "$n"]}))), "8");
    assert_eq!(text(ev(json!({"$add": [1, 2.5]}))), "3.5");
    assert_eq!(text(ev(json!({"$add": []}))), "0");
    // integer overflow becomes a double instead of wrapping
    assert_eq!(ev(json!({"$add": [i64::MAX, 1]})), json!(9.223372036854776e18));
    assert_eq!(ev(json!({"$add": [1, null]})), json!(null));
    assert_eq!(ev(json!({"$add": [1, "$nope"]})), json!(null));
    assert_eq!(ev(json!({"$add": ["$when", 1000]})), json!({"$date": MS + 1000}));
    assert_eq!(ev(json!({"$add": ["$when", 1.6]})), json!({"$date": MS + 2}));
    assert!(err(json!({"$add": ["$when", "$when"]})).contains("at most one date"));
    assert!(err(json!({"$add": [1, "x"]})).contains("`$add` only supports numeric or date types, not string"));
    assert_eq!(text(ev(json!({"$subtract": [10, 4]}))), "6");
    assert_eq!(
        ev(json!({"$subtract": ["$when", {"$date": MS - 60_000}]})),
        json!(60_000)
    );
    assert_eq!(ev(json!({"$subtract": ["$when", 1]})), json!({"$date": MS - 1}));
    assert!(err(json!({"$subtract": [1, "$when"]})).contains("cannot subtract a date"));
    assert_eq!(ev(json!({"$subtract": [null, 1]})), json!(null));
    assert_eq!(text(ev(json!({"$multiply": [2, 3, 4]}))), "24");
    assert_eq!(text(ev(json!({"$multiply": [2, 0.5]}))), "1.0");
    assert_eq!(ev(json!({"$multiply": [2, "$nil"]})), json!(null));
    // $divide always gives a double
    assert_eq!(text(ev(json!({"$divide": [4, 2]}))), "2.0");
    assert_eq!(ev(json!({"$divide": [1, 4]})), json!(0.25));
    assert!(err(json!({"$divide": [1, 0]})).contains("cannot divide by zero"));
    assert_eq!(ev(json!({"$divide": [null, 0]})), json!(null));
    assert_eq!(text(ev(json!({"$mod": [7, 3]}))), "1");
    assert_eq!(text(ev(json!({"$mod": [-7, 3]}))), "-1");
    assert_eq!(ev(json!({"$mod": [7.5, 2]})), json!(1.5));
    assert!(err(json!({"$mod": [7, 0]})).contains("cannot divide by zero"));
    assert_eq!(text(ev(json!({"$abs": -5}))), "5");
    assert_eq!(ev(json!({"$abs": -2.5})), json!(2.5));
    assert_eq!(ev(json!({"$abs": null})), json!(null));
    assert_eq!(ev(json!({"$abs": i64::MIN})), json!(9.223372036854776e18));
    assert!(err(json!({"$abs": "x"})).contains("`$abs` only supports numeric types, not string"));
    assert_eq!(text(ev(json!({"$ceil": 2.1}))), "3.0");
    assert_eq!(text(ev(json!({"$floor": -2.1}))), "-3.0");
    assert_eq!(text(ev(json!({"$floor": 7}))), "7");
    assert_eq!(ev(json!({"$sqrt": 16})), json!(4.0));
    assert!(err(json!({"$sqrt": -1})).contains("at least 0"));
    assert_eq!(ev(json!({"$exp": 0})), json!(1.0));
    assert_eq!(ev(json!({"$ln": 1})), json!(0.0));
    assert!(err(json!({"$ln": 0})).contains("positive"));
    assert_eq!(ev(json!({"$log10": 1000})), json!(3.0));
    assert_eq!(ev(json!({"$log": [8, 2]})), json!(3.0));
    assert!(err(json!({"$log": [8, 1]})).contains("base"));
    assert_eq!(text(ev(json!({"$pow": [2, 10]}))), "1024");
    assert_eq!(ev(json!({"$pow": [2, -1]})), json!(0.5));
    assert_eq!(ev(json!({"$pow": [2.0, 2]})), json!(4.0));
    assert!(err(json!({"$pow": [0, -1]})).contains("negative exponent"));
    assert_eq!(ev(json!({"$pow": [2, 70]})), json!(1.1805916207174113e21));
    assert!(err(json!({"$exp": 1000})).contains("infinite"));
}

#[test]
fn round_is_half_to_even_and_trunc_drops_digits() {
    assert_eq!(ev(json!({"$round": 2.5})), json!(2.0));
    assert_eq!(ev(json!({"$round": 3.5})), json!(4.0));
    assert_eq!(ev(json!({"$round": -2.5})), json!(-2.0));
    assert_eq!(ev(json!({"$round": [1.25, 1]})), json!(1.2));
    assert_eq!(ev(json!({"$round": [1.35, 1]})), json!(1.4));
    assert_eq!(text(ev(json!({"$round": [1250, -2]}))), "1200");
    assert_eq!(text(ev(json!({"$round": [1350, -2]}))), "1400");
    assert_eq!(text(ev(json!({"$round": 7}))), "7");
    assert_eq!(ev(json!({"$trunc": -2.7})), json!(-2.0));
    assert_eq!(ev(json!({"$trunc": [5.6789, 2]})), json!(5.67));
    assert_eq!(text(ev(json!({"$trunc": [1299, -2]}))), "1200");
    assert_eq!(ev(json!({"$round": [null, 1]})), json!(null));
    assert_eq!(ev(json!({"$round": [2.5, null]})), json!(null));
    assert!(err(json!({"$round": [2.5, 0.5]})).contains("place"));
}

#[test]
fn comparison_uses_the_cross_type_order_with_missing_below_null() {
    assert_eq!(ev(json!({"$eq": [1, 1.0]})), json!(true));
    assert_eq!(ev(json!({"$eq": ["$n", 5]})), json!(true));
    assert_eq!(ev(json!({"$eq": ["$nope", null]})), json!(false));
    assert_eq!(ev(json!({"$eq": ["$nope", "$alsonope"]})), json!(true));
    assert_eq!(ev(json!({"$lt": ["$nope", null]})), json!(true));
    assert_eq!(ev(json!({"$gt": ["abc", 5]})), json!(true));
    assert_eq!(ev(json!({"$gt": [{"$date": 0}, true]})), json!(true));
    assert_eq!(ev(json!({"$gte": [2, 2]})), json!(true));
    assert_eq!(ev(json!({"$lte": [3, 2]})), json!(false));
    assert_eq!(ev(json!({"$ne": [[1, 2], [1, 2]]})), json!(false));
    assert_eq!(ev(json!({"$cmp": ["a", "b"]})), json!(-1));
    assert_eq!(ev(json!({"$cmp": [2, 1.5]})), json!(1));
    assert_eq!(ev(json!({"$cmp": [null, null]})), json!(0));
}

#[test]
fn boolean_and_conditional_operators() {
    assert_eq!(ev(json!({"$and": []})), json!(true));
    assert_eq!(ev(json!({"$and": [1, "x", [], {}]})), json!(true));
    assert_eq!(ev(json!({"$and": [1, 0]})), json!(false));
    assert_eq!(ev(json!({"$and": [true, "$nope"]})), json!(false));
    assert_eq!(ev(json!({"$or": []})), json!(false));
    assert_eq!(ev(json!({"$or": [null, 0.0, "$t"]})), json!(true));
    assert_eq!(ev(json!({"$not": [0]})), json!(true));
    assert_eq!(ev(json!({"$not": "$nil"})), json!(true));
    // $and stops at the first false: the division by zero after it is never evaluated
    assert_eq!(ev(json!({"$and": [false, {"$divide": [1, 0]}]})), json!(false));
    assert_eq!(ev(json!({"$cond": [{"$gt": ["$n", 3]}, "big", "small"]})), json!("big"));
    assert_eq!(ev(json!({"$cond": {"if": "$nope", "then": 1, "else": 2}})), json!(2));
    assert!(err(json!({"$cond": {"if": 1, "then": 2}})).contains("needs `else`"));
    assert_eq!(ev(json!({"$ifNull": ["$nope", "$nil", "fallback"]})), json!("fallback"));
    assert_eq!(ev(json!({"$ifNull": ["$n", "fallback"]})), json!(5));
    assert_eq!(ev(json!({"$ifNull": ["$nope", null]})), json!(null));
    assert!(missing(json!({"$ifNull": ["$nope", "$alsonope"]})));
    let sw = |n: i64| {
        json!({"$switch": {"branches": [
            {"case": {"$lt": [n, 0]}, "then": "negative"},
            {"case": {"$eq": [n, 0]}, "then": "zero"}
        ], "default": "positive"}})
    };
    assert_eq!(ev(sw(-1)), json!("negative"));
    assert_eq!(ev(sw(0)), json!("zero"));
    assert_eq!(ev(sw(4)), json!("positive"));
    assert!(err(json!({"$switch": {"branches": [{"case": false, "then": 1}]}})).contains("no branch"));
    assert!(err(json!({"$switch": {"branches": [{"case": false}]}})).contains("needs `then`"));
}

#[test]
fn string_operators() {
    assert_eq!(ev(json!({"$concat": ["a", "-", "$s"]})), json!("a-héllo"));
    assert_eq!(ev(json!({"$concat": ["a", "$nope"]})), json!(null));
    assert_eq!(ev(json!({"$concat": []})), json!(""));
    assert!(err(json!({"$concat": ["a", 1]})).contains("`$concat` only supports strings, not int"));
    assert_eq!(ev(json!({"$substrBytes": ["abcdef", 1, 3]})), json!("bcd"));
    assert_eq!(ev(json!({"$substr": ["abcdef", 2, -1]})), json!("cdef"));
    assert_eq!(ev(json!({"$substrBytes": ["abc", -1, 2]})), json!(""));
    assert_eq!(ev(json!({"$substrBytes": ["abc", 9, 2]})), json!(""));
    assert_eq!(ev(json!({"$substrBytes": [null, 0, 2]})), json!(""));
    assert_eq!(ev(json!({"$substrBytes": [12345, 1, 2]})), json!("23"));
    assert!(err(json!({"$substrBytes": ["héllo", 2, 1]})).contains("inside a UTF-8 character"));
    assert_eq!(ev(json!({"$substrCP": ["héllo", 1, 3]})), json!("éll"));
    assert!(err(json!({"$substrCP": ["abc", -1, 1]})).contains("negative"));
    assert_eq!(ev(json!({"$toUpper": "$s"})), json!("HéLLO"));
    assert_eq!(ev(json!({"$toLower": "ABC"})), json!("abc"));
    assert_eq!(ev(json!({"$toLower": null})), json!(""));
    assert_eq!(ev(json!({"$toUpper": 2.5})), json!("2.5"));
    assert!(err(json!({"$toLower": [[1]]})).contains("cannot convert array"));
    assert_eq!(ev(json!({"$strLenBytes": "$s"})), json!(6));
    assert_eq!(ev(json!({"$strLenCP": "$s"})), json!(5));
    assert!(err(json!({"$strLenCP": "$nope"})).contains("needs a string, not missing"));
    assert_eq!(ev(json!({"$strcasecmp": ["ABC", "abc"]})), json!(0));
    assert_eq!(ev(json!({"$strcasecmp": ["a", "B"]})), json!(-1));
    assert_eq!(ev(json!({"$indexOfBytes": ["banana", "an"]})), json!(1));
    assert_eq!(ev(json!({"$indexOfBytes": ["banana", "an", 2]})), json!(3));
    assert_eq!(ev(json!({"$indexOfBytes": ["banana", "an", 2, 4]})), json!(-1));
    assert_eq!(ev(json!({"$indexOfBytes": ["banana", "x"]})), json!(-1));
    assert_eq!(ev(json!({"$indexOfBytes": [null, "x"]})), json!(null));
    assert!(err(json!({"$indexOfBytes": [1, "x"]})).contains("needs a string to search in"));
    assert_eq!(ev(json!({"$indexOfCP": ["héllo", "l"]})), json!(2));
    assert_eq!(ev(json!({"$indexOfBytes": ["héllo", "l"]})), json!(3));
    assert_eq!(ev(json!({"$split": ["a,b,,c", ","]})), json!(["a", "b", "", "c"]));
    assert_eq!(ev(json!({"$split": [null, ","]})), json!(null));
    assert!(err(json!({"$split": ["a", ""]})).contains("non-empty"));
    assert_eq!(ev(json!({"$trim": {"input": "  hi \n"}})), json!("hi"));
    assert_eq!(ev(json!({"$ltrim": {"input": "xxhixx", "chars": "x"}})), json!("hixx"));
    assert_eq!(ev(json!({"$rtrim": {"input": "xxhixx", "chars": "x"}})), json!("xxhi"));
    assert_eq!(ev(json!({"$trim": {"input": "$nope"}})), json!(null));
    assert!(err(json!({"$trim": {"input": 5}})).contains("needs a string"));
}

#[test]
fn regex_and_replace_operators() {
    assert_eq!(
        ev(json!({"$regexMatch": {"input": "$s", "regex": "^h.l"}})),
        json!(true)
    );
    assert_eq!(
        ev(json!({"$regexMatch": {"input": "HELLO", "regex": "hel", "options": "i"}})),
        json!(true)
    );
    assert_eq!(
        ev(json!({"$regexMatch": {"input": "HELLO", "regex": {"$regex": "hel", "$options": "i"}}})),
        json!(true)
    );
    assert_eq!(
        ev(json!({"$regexMatch": {"input": "x", "regex": {"$regularExpression": {"pattern": "X", "options": "i"}}}})),
        json!(true)
    );
    assert_eq!(
        ev(json!({"$regexMatch": {"input": "$nope", "regex": "a"}})),
        json!(false)
    );
    assert_eq!(
        ev(json!({"$regexMatch": {"input": "abc", "regex": "$nope"}})),
        json!(false)
    );
    assert_eq!(
        ev(json!({"$regexFind": {"input": "héllo 42 and 7", "regex": "([a-z]+) (\\d+)"}})),
        json!({"match": "llo 42", "idx": 2, "captures": ["llo", "42"]})
    );
    assert_eq!(ev(json!({"$regexFind": {"input": "abc", "regex": "z"}})), json!(null));
    assert_eq!(ev(json!({"$regexFind": {"input": null, "regex": "z"}})), json!(null));
    assert_eq!(
        ev(json!({"$regexFindAll": {"input": "a1b22", "regex": "(\\d)(x)?"}})),
        json!([
            {"match": "1", "idx": 1, "captures": ["1", null]},
            {"match": "2", "idx": 3, "captures": ["2", null]},
            {"match": "2", "idx": 4, "captures": ["2", null]}
        ])
    );
    assert_eq!(
        ev(json!({"$regexFindAll": {"input": "$nope", "regex": "a"}})),
        json!([])
    );
    assert!(err(json!({"$regexMatch": {"input": 5, "regex": "a"}})).contains("needs a string `input`, not int"));
    assert!(matches!(
        eval_on(json!({"$regexMatch": {"input": "a", "regex": "("}}), &doc()),
        Err(DbError::InvalidRegex(_))
    ));
    assert!(matches!(
        eval_on(
            json!({"$regexMatch": {"input": "a", "regex": "$s"}}),
            &json!({"s": "("})
        ),
        Err(DbError::InvalidRegex(_))
    ));
    assert!(
        err(json!({"$regexMatch": {"input": "a", "regex": {"$regex": "a", "$options": "i"}, "options": "m"}}))
            .contains("not both")
    );
    assert!(err(json!({"$regexMatch": {"input": "a"}})).contains("needs `regex`"));
    assert_eq!(
        ev(json!({"$replaceOne": {"input": "a-b-c", "find": "-", "replacement": "+"}})),
        json!("a+b-c")
    );
    assert_eq!(
        ev(json!({"$replaceAll": {"input": "a-b-c", "find": "-", "replacement": ""}})),
        json!("abc")
    );
    assert_eq!(
        ev(json!({"$replaceAll": {"input": "a.c", "find": ".", "replacement": "b"}})),
        json!("abc")
    );
    assert_eq!(
        ev(json!({"$replaceAll": {"input": "$nope", "find": "-", "replacement": "+"}})),
        json!(null)
    );
    assert!(
        err(json!({"$replaceOne": {"input": "a", "find": 1, "replacement": "b"}})).contains("`find` must be a string")
    );
}

#[test]
fn array_operators() {
    assert_eq!(ev(json!({"$arrayElemAt": ["$arr", 0]})), json!(1));
    assert_eq!(ev(json!({"$arrayElemAt": ["$arr", -1]})), json!(3));
    assert!(missing(json!({"$arrayElemAt": ["$arr", 5]})));
    assert_eq!(ev(json!({"$arrayElemAt": ["$nope", 0]})), json!(null));
    assert!(err(json!({"$arrayElemAt": ["$s", 0]})).contains("must be an array, not string"));
    assert_eq!(
        ev(json!({"$arrayToObject": [[["a", 1], ["b", 2]]]})),
        json!({"a": 1, "b": 2})
    );
    assert_eq!(ev(json!({"$arrayToObject": [[{"k": "a", "v": 1}]]})), json!({"a": 1}));
    assert_eq!(ev(json!({"$arrayToObject": [[["a", 1], ["a", 2]]]})), json!({"a": 2}));
    assert!(err(json!({"$arrayToObject": [[["a", 1], {"k": "b", "v": 2}]]})).contains("all of one form"));
    assert!(err(json!({"$arrayToObject": [[[1, 1]]]})).contains("keys must be strings"));
    assert_eq!(ev(json!({"$concatArrays": ["$arr", [4], []]})), json!([1, 2, 3, 4]));
    assert_eq!(ev(json!({"$concatArrays": ["$arr", "$nope"]})), json!(null));
    assert!(err(json!({"$concatArrays": ["$arr", 1]})).contains("only supports arrays"));
    assert_eq!(
        ev(json!({"$filter": {"input": "$arr", "as": "x", "cond": {"$gte": ["$$x", 2]}}})),
        json!([2, 3])
    );
    assert_eq!(
        ev(json!({"$filter": {"input": "$arr", "cond": {"$gte": ["$$this", 1]}, "limit": 2}})),
        json!([1, 2])
    );
    assert_eq!(ev(json!({"$filter": {"input": "$nope", "cond": true}})), json!(null));
    assert!(err(json!({"$filter": {"input": "$s", "cond": true}})).contains("must be an array"));
    assert_eq!(ev(json!({"$in": [2, "$arr"]})), json!(true));
    assert_eq!(ev(json!({"$in": [2.0, "$arr"]})), json!(true));
    assert_eq!(ev(json!({"$in": ["$nope", [null]]})), json!(false));
    assert!(err(json!({"$in": [1, "$nope"]})).contains("needs an array as its second argument, not missing"));
    assert_eq!(ev(json!({"$indexOfArray": ["$arr", 3]})), json!(2));
    assert_eq!(ev(json!({"$indexOfArray": ["$arr", 1, 1]})), json!(-1));
    assert_eq!(ev(json!({"$indexOfArray": [null, 1]})), json!(null));
    assert_eq!(ev(json!({"$isArray": "$arr"})), json!(true));
    assert_eq!(ev(json!({"$isArray": ["$s"]})), json!(false));
    assert_eq!(
        ev(json!({"$map": {"input": "$arr", "as": "x", "in": {"$multiply": ["$$x", 10]}}})),
        json!([10, 20, 30])
    );
    assert_eq!(
        ev(json!({"$map": {"input": "$objs", "in": "$$this.a"}})),
        json!([1, 2, null])
    );
    assert_eq!(ev(json!({"$range": [0, 5]})), json!([0, 1, 2, 3, 4]));
    assert_eq!(ev(json!({"$range": [0, 10, 3]})), json!([0, 3, 6, 9]));
    assert_eq!(ev(json!({"$range": [5, 0, -2]})), json!([5, 3, 1]));
    assert_eq!(ev(json!({"$range": [5, 0]})), json!([]));
    assert!(err(json!({"$range": [0, 5, 0]})).contains("cannot be 0"));
    assert!(err(json!({"$range": [0, 5.5]})).contains("must be an integer"));
    assert_eq!(
        ev(json!({"$reduce": {"input": "$arr", "initialValue": 0, "in": {"$add": ["$$value", "$$this"]}}})),
        json!(6)
    );
    assert_eq!(
        ev(json!({"$reduce": {"input": ["a", "b"], "initialValue": "", "in": {"$concat": ["$$value", "$$this"]}}})),
        json!("ab")
    );
    assert_eq!(
        ev(json!({"$reduce": {"input": null, "initialValue": 0, "in": 1}})),
        json!(null)
    );
    assert_eq!(ev(json!({"$reverseArray": "$arr"})), json!([3, 2, 1]));
    assert_eq!(ev(json!({"$reverseArray": "$nope"})), json!(null));
    assert_eq!(ev(json!({"$size": "$arr"})), json!(3));
    assert!(err(json!({"$size": "$nope"})).contains("`$size` needs an array, not missing"));
    assert_eq!(ev(json!({"$slice": ["$arr", 2]})), json!([1, 2]));
    assert_eq!(ev(json!({"$slice": ["$arr", -2]})), json!([2, 3]));
    assert_eq!(ev(json!({"$slice": ["$arr", 1, 1]})), json!([2]));
    assert_eq!(ev(json!({"$slice": ["$arr", -2, 5]})), json!([2, 3]));
    assert!(err(json!({"$slice": ["$arr", 1, 0]})).contains("positive"));
    assert_eq!(ev(json!({"$slice": ["$nope", 1]})), json!(null));
    assert_eq!(
        ev(json!({"$zip": {"inputs": [["a", "b"], [1, 2, 3]]}})),
        json!([["a", 1], ["b", 2]])
    );
    assert_eq!(
        ev(json!({"$zip": {"inputs": [["a"], [1, 2]], "useLongestLength": true, "defaults": ["z", 0]}})),
        json!([["a", 1], ["z", 2]])
    );
    assert_eq!(ev(json!({"$zip": {"inputs": ["$nope", [1]]}})), json!(null));
    assert!(err(json!({"$zip": {"inputs": [[1]], "defaults": [0]}})).contains("useLongestLength"));
    assert_eq!(ev(json!({"$first": "$arr"})), json!(1));
    assert_eq!(ev(json!({"$last": [["$arr"]]})), json!([1, 2, 3]));
    assert!(missing(json!({"$first": [[]]})));
}

#[test]
fn set_operators_compare_numbers_by_value() {
    assert_eq!(ev(json!({"$setEquals": [[1, 2, 2], [2, 1.0]]})), json!(true));
    assert_eq!(ev(json!({"$setEquals": [[1], [1, 3]]})), json!(false));
    assert!(err(json!({"$setEquals": [[1], null]})).contains("must be an array, not null"));
    assert_eq!(
        ev(json!({"$setIntersection": [[1, 2, 3, 2], [2, 3.0, 4]]})),
        json!([2, 3])
    );
    assert_eq!(ev(json!({"$setIntersection": [[1], "$nope"]})), json!(null));
    assert_eq!(ev(json!({"$setUnion": [[1, 2], [2.0, 3], []]})), json!([1, 2, 3]));
    assert_eq!(ev(json!({"$setDifference": [[1, 2, 3, 3], [2]]})), json!([1, 3]));
    assert_eq!(ev(json!({"$setIsSubset": [[1, 1], [1, 2]]})), json!(true));
    assert_eq!(ev(json!({"$setIsSubset": [[1, 5], [1, 2]]})), json!(false));
    assert_eq!(ev(json!({"$anyElementTrue": [[0, null, 2]]})), json!(true));
    assert_eq!(ev(json!({"$allElementsTrue": [[1, "", []]]})), json!(true));
    assert_eq!(ev(json!({"$allElementsTrue": [[1, 0]]})), json!(false));
    assert_eq!(ev(json!({"$allElementsTrue": [[]]})), json!(true));
    assert!(err(json!({"$anyElementTrue": [null]})).contains("must be an array, not null"));
}

#[test]
fn object_operators() {
    assert_eq!(
        ev(json!({"$mergeObjects": [{"a": 1, "b": 1}, null, "$nope", {"b": 2}]})),
        json!({"a": 1, "b": 2})
    );
    assert_eq!(ev(json!({"$mergeObjects": "$o"})), json!({"x": 1, "y": {"z": 2}}));
    assert!(err(json!({"$mergeObjects": [{"a": 1}, 5]})).contains("needs objects, not int"));
    assert_eq!(
        ev(json!({"$objectToArray": "$o"})),
        json!([{"k": "x", "v": 1}, {"k": "y", "v": {"z": 2}}])
    );
    assert_eq!(ev(json!({"$objectToArray": "$nope"})), json!(null));
    assert!(err(json!({"$objectToArray": "$arr"})).contains("needs an object, not array"));
    // round trip
    assert_eq!(
        ev(json!({"$arrayToObject": {"$objectToArray": "$o"}})),
        json!({"x": 1, "y": {"z": 2}})
    );
}

#[test]
fn accumulator_operators_as_expressions() {
    assert_eq!(ev(json!({"$sum": "$arr"})), json!(6));
    assert_eq!(ev(json!({"$sum": [1, 2.5, "x", null]})), json!(3.5));
    assert_eq!(ev(json!({"$sum": ["$s", "$nope"]})), json!(0));
    // with several arguments an array is a value, not a list of numbers
    assert_eq!(ev(json!({"$sum": ["$arr", 1]})), json!(1));
    assert_eq!(ev(json!({"$avg": "$arr"})), json!(2.0));
    assert_eq!(ev(json!({"$avg": [[]]})), json!(null));
    assert_eq!(ev(json!({"$avg": ["x"]})), json!(null));
    assert_eq!(ev(json!({"$max": [1, null, 5, "$nope"]})), json!(5));
    assert_eq!(ev(json!({"$max": [1, "a"]})), json!("a"));
    assert_eq!(ev(json!({"$min": "$arr"})), json!(1));
    assert_eq!(ev(json!({"$min": [null, "$nope"]})), json!(null));
    assert_eq!(ev(json!({"$stdDevPop": [[2, 4, 4, 4, 5, 5, 7, 9]]})), json!(2.0));
    assert_eq!(ev(json!({"$stdDevSamp": [[1]]})), json!(null));
    assert_eq!(ev(json!({"$stdDevSamp": [[1, 3]]})), json!(std::f64::consts::SQRT_2));
}

#[test]
fn type_operators_and_conversions() {
    assert_eq!(ev(json!({"$type": "$n"})), json!("int"));
    assert_eq!(ev(json!({"$type": "$f"})), json!("double"));
    assert_eq!(ev(json!({"$type": 9_000_000_000i64})), json!("long"));
    assert_eq!(ev(json!({"$type": "$nope"})), json!("missing"));
    assert_eq!(ev(json!({"$type": "$when"})), json!("date"));
    assert_eq!(ev(json!({"$type": "$o"})), json!("object"));
    assert_eq!(ev(json!({"$isNumber": "$f"})), json!(true));
    assert_eq!(ev(json!({"$toString": 5})), json!("5"));
    assert_eq!(ev(json!({"$toString": "$when"})), json!("2024-01-01T12:34:56.789Z"));
    assert_eq!(ev(json!({"$toString": "$nope"})), json!(null));
    assert_eq!(ev(json!({"$toInt": "42"})), json!(42));
    assert_eq!(ev(json!({"$toInt": 2.9})), json!(2));
    assert!(err(json!({"$toInt": 5_000_000_000i64})).contains("32-bit"));
    assert!(err(json!({"$toInt": "x"})).contains("cannot parse"));
    assert_eq!(ev(json!({"$toLong": "$when"})), json!(MS));
    assert_eq!(ev(json!({"$toDouble": "1.5"})), json!(1.5));
    assert_eq!(text(ev(json!({"$toDouble": 2}))), "2.0");
    assert_eq!(ev(json!({"$toBool": 0})), json!(false));
    assert_eq!(ev(json!({"$toBool": ""})), json!(true));
    assert_eq!(ev(json!({"$toDate": MS})), json!({"$date": MS}));
    assert_eq!(ev(json!({"$toDate": "2024-01-01T12:34:56.789Z"})), json!({"$date": MS}));
    assert!(err(json!({"$toDate": true})).contains("cannot convert bool"));
}

#[test]
fn date_parts_in_utc_and_in_time_zones() {
    let part = |op: &str| ev(json!({ op: "$when" }));
    assert_eq!(part("$year"), json!(2024));
    assert_eq!(part("$month"), json!(1));
    assert_eq!(part("$dayOfMonth"), json!(1));
    assert_eq!(part("$hour"), json!(12));
    assert_eq!(part("$minute"), json!(34));
    assert_eq!(part("$second"), json!(56));
    assert_eq!(part("$millisecond"), json!(789));
    assert_eq!(part("$dayOfYear"), json!(1));
    assert_eq!(part("$dayOfWeek"), json!(2)); // Monday, weeks starting on Sunday = 1
    assert_eq!(part("$isoDayOfWeek"), json!(1));
    assert_eq!(part("$week"), json!(0)); // before the year's first Sunday
    assert_eq!(part("$isoWeek"), json!(1));
    assert_eq!(part("$isoWeekYear"), json!(2024));
    // 2023-01-01 is a Sunday: ISO week 52 of 2022, and week 1 by Sunday weeks
    let jan1 = json!({"$date": "2023-01-01T00:00:00Z"});
    assert_eq!(ev(json!({"$isoWeek": jan1.clone()})), json!(52));
    assert_eq!(ev(json!({"$isoWeekYear": jan1.clone()})), json!(2022));
    assert_eq!(ev(json!({"$week": jan1})), json!(1));
    assert_eq!(
        ev(json!({"$hour": {"date": "$when", "timezone": "Asia/Shanghai"}})),
        json!(20)
    );
    assert_eq!(
        ev(json!({"$minute": {"date": "$when", "timezone": "+05:30"}})),
        json!(4)
    );
    assert_eq!(ev(json!({"$hour": {"date": "$when", "timezone": "-0800"}})), json!(4));
    // daylight saving time: New York is UTC-4 in July, UTC-5 in January
    let july = json!({"$date": "2024-07-01T12:00:00Z"});
    assert_eq!(
        ev(json!({"$hour": {"date": july, "timezone": "America/New_York"}})),
        json!(8)
    );
    assert_eq!(
        ev(json!({"$hour": {"date": "$when", "timezone": "America/New_York"}})),
        json!(7)
    );
    assert_eq!(ev(json!({"$year": "$nope"})), json!(null));
    assert_eq!(
        ev(json!({"$year": {"date": "$when", "timezone": "$nope"}})),
        json!(null)
    );
    assert!(err(json!({"$year": "$s"})).contains("`$year` needs a date, not string"));
    assert!(err(json!({"$year": {"date": "$when", "timezone": "Mars/Olympus"}})).contains("unknown time zone"));
    assert!(err(json!({"$year": {"date": "$when", "timezone": "+25:00"}})).contains("unknown time zone"));
}

#[test]
fn date_to_string_formats() {
    assert_eq!(
        ev(json!({"$dateToString": {"date": "$when"}})),
        json!("2024-01-01T12:34:56.789Z")
    );
    assert_eq!(
        ev(json!({"$dateToString": {"date": "$when", "format": "%Y/%m/%d %H:%M:%S.%L %j %w %u %U %V %G %% %b %B"}})),
        json!("2024/01/01 12:34:56.789 001 2 1 00 01 2024 % Jan January")
    );
    assert_eq!(
        ev(json!({"$dateToString": {"date": "$when", "format": "%H:%M %z %Z", "timezone": "Asia/Kolkata"}})),
        json!("18:04 +0530 330")
    );
    assert_eq!(ev(json!({"$dateToString": {"date": "$nope"}})), json!(null));
    assert_eq!(
        ev(json!({"$dateToString": {"date": "$nope", "onNull": "n/a"}})),
        json!("n/a")
    );
    assert!(err(json!({"$dateToString": {"date": "$when", "format": "%Q"}})).contains("`%Q`"));
    assert!(err(json!({"$dateToString": {"date": "$when", "format": "abc%"}})).contains("unfinished"));
    assert!(err(json!({"$dateToString": {"date": 5}})).contains("needs a date, not int"));
}

#[test]
fn date_from_string_parses_iso_and_formats() {
    let from = |s: &str| json!({"$dateFromString": {"dateString": s}});
    assert_eq!(ev(from("2024-01-01T12:34:56.789Z")), json!({"$date": MS}));
    assert_eq!(ev(from("2024-01-01T20:34:56.789+08:00")), json!({"$date": MS}));
    assert_eq!(ev(from("2024-01-01T20:34:56.789+0800")), json!({"$date": MS}));
    assert_eq!(ev(from("2024-01-01")), json!({"$date": 1_704_067_200_000i64}));
    assert_eq!(ev(from("2024-01-01 12:34")), json!({"$date": 1_704_112_440_000i64}));
    assert_eq!(
        ev(json!({"$dateFromString": {"dateString": "2024-01-01T20:34:56.789", "timezone": "Asia/Shanghai"}})),
        json!({"$date": MS})
    );
    assert_eq!(
        ev(json!({"$dateFromString": {"dateString": "01/02/2024 08:00", "format": "%d/%m/%Y %H:%M"}})),
        json!({"$date": 1_706_774_400_000i64})
    );
    assert!(
        err(json!({"$dateFromString": {"dateString": "2024-01-01T00:00:00Z", "timezone": "+01:00"}}))
            .contains("offset")
    );
    assert!(err(from("2024-02-30")).contains("no such date"));
    assert!(err(from("yesterday")).contains("cannot parse"));
    assert_eq!(
        ev(json!({"$dateFromString": {"dateString": "nope", "onError": "bad"}})),
        json!("bad")
    );
    assert_eq!(
        ev(json!({"$dateFromString": {"dateString": "$nope", "onNull": 0}})),
        json!(0)
    );
    assert_eq!(ev(json!({"$dateFromString": {"dateString": null}})), json!(null));
    assert!(err(json!({"$dateFromString": {"dateString": 5}})).contains("must be a string"));
}

#[test]
fn date_from_parts_carries_and_to_parts_splits() {
    assert_eq!(
        ev(
            json!({"$dateFromParts": {"year": 2024, "month": 1, "day": 1, "hour": 12, "minute": 34, "second": 56, "millisecond": 789}})
        ),
        json!({"$date": MS})
    );
    // month 14 carries into the next year, day 0 is the last day of the previous month
    assert_eq!(
        ev(json!({"$dateFromParts": {"year": 2023, "month": 14, "day": 0}})),
        json!({"$date": 1_706_659_200_000i64}) // 2024-01-31
    );
    assert_eq!(
        ev(json!({"$dateFromParts": {"year": 2024, "hour": 20, "timezone": "Asia/Shanghai"}})),
        json!({"$date": 1_704_110_400_000i64}) // 2024-01-01T12:00Z
    );
    assert_eq!(
        ev(json!({"$dateFromParts": {"isoWeekYear": 2024, "isoWeek": 1, "isoDayOfWeek": 1}})),
        json!({"$date": 1_704_067_200_000i64})
    );
    assert_eq!(ev(json!({"$dateFromParts": {"year": "$nope"}})), json!(null));
    assert!(err(json!({"$dateFromParts": {"year": 0}})).contains("between 1 and 9999"));
    assert!(err(json!({"$dateFromParts": {"year": 2024, "isoWeekYear": 2024}})).contains("not both"));
    assert!(err(json!({"$dateFromParts": {"month": 1}})).contains("needs `year`"));
    assert_eq!(
        ev(json!({"$dateToParts": {"date": "$when"}})),
        json!({"year": 2024, "month": 1, "day": 1, "hour": 12, "minute": 34, "second": 56, "millisecond": 789})
    );
    assert_eq!(
        ev(json!({"$dateToParts": {"date": "$when", "iso8601": true}})),
        json!({"isoWeekYear": 2024, "isoWeek": 1, "isoDayOfWeek": 1, "hour": 12, "minute": 34, "second": 56, "millisecond": 789})
    );
}

#[test]
fn runaway_expressions_are_stopped() {
    // rebuilding a growing array on every step is quadratic: refused, not run for hours
    let e = json!({"$reduce": {
        "input": {"$range": [0, 100000]},
        "initialValue": [],
        "in": {"$concatArrays": ["$$value", ["$$this"]]}
    }});
    assert!(err(e).contains("steps"));
    assert!(err(json!({"$range": [0, 100_000_000]})).contains("steps"));
    // a sane reduce is fine
    let e =
        json!({"$reduce": {"input": {"$range": [0, 1000]}, "initialValue": 0, "in": {"$add": ["$$value", "$$this"]}}});
    assert_eq!(ev(e), json!(499_500));
}
