//! Tests of the security rules: presets, parsing, evaluation, the query check, creates, limits
//! and adversarial input.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{json, Value};

use super::*;
use crate::db::query::Filter;

const A: &str = "user-a";
const B: &str = "user-b";
const NOW: i64 = 1_700_000_000_000;

/// Documents for `get()`, counting lookups.
#[derive(Default)]
struct Docs {
    docs: HashMap<(String, String), Value>,
    lookups: RefCell<Vec<(String, String)>>,
}

impl Docs {
    fn with(items: &[(&str, &str, Value)]) -> Docs {
        let mut d = Docs::default();
        for (c, id, v) in items {
            d.docs.insert((c.to_string(), id.to_string()), v.clone());
        }
        d
    }
}

impl DocLookup for Docs {
    fn get(&self, coll: &str, id: &str) -> Option<Value> {
        self.lookups.borrow_mut().push((coll.to_string(), id.to_string()));
        self.docs.get(&(coll.to_string(), id.to_string())).cloned()
    }
}

fn user(id: &str) -> Option<AuthVars> {
    Some(AuthVars {
        uid: id.to_string(),
        openid: id.to_string(),
        login_type: "USERNAME".to_string(),
    })
}

fn ctx(auth: Option<AuthVars>, get: &dyn DocLookup) -> RuleContext<'_> {
    RuleContext { auth, now_ms: NOW, get }
}

fn rules(v: Value) -> CollectionRules {
    CollectionRules::parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn parse_err(v: Value) -> String {
    match CollectionRules::parse(&v) {
        Ok(_) => panic!("{v} parsed"),
        Err(e) => e.to_string(),
    }
}

/// check_query with no get() documents.
fn query(r: &CollectionRules, op: QueryOp, auth: Option<AuthVars>, q: Value) -> Decision {
    r.check_query(op, &ctx(auth, &NoDocs), &q).unwrap()
}

fn read(r: &CollectionRules, auth: Option<AuthVars>, q: Value) -> Decision {
    query(r, QueryOp::Read, auth, q)
}

fn is_allow(d: &Decision) -> bool {
    matches!(d, Decision::Allow)
}

fn deny_reason(d: Decision) -> String {
    match d {
        Decision::Deny(why) => why,
        other => panic!("expected Deny, got {other:?}"),
    }
}

/// A custom read rule checked against a query by user A.
fn read_a(rule: &str, q: Value) -> Decision {
    read(&rules(json!({ "read": rule })), user(A), q)
}

/// Evaluates `expr` as a `create` rule on `doc` for user A (true only if the rule allows).
fn holds(expr: &str, doc: Value) -> bool {
    holds_for(expr, doc, user(A))
}

fn holds_for(expr: &str, doc: Value, auth: Option<AuthVars>) -> bool {
    rules(json!({ "create": expr }))
        .check_create(&ctx(auth, &NoDocs), &doc)
        .unwrap()
}

// ---------------------------------------------------------------- presets

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Allow,
    Own,
    Deny,
}

fn want(d: &Decision, caller: Option<&str>) -> Want {
    match d {
        Decision::Allow => Want::Allow,
        Decision::AllowWith(cond) => {
            assert_eq!(cond, &json!({ "_openid": caller.unwrap() }));
            Want::Own
        }
        Decision::Deny(why) => {
            assert!(!why.is_empty());
            Want::Deny
        }
    }
}

#[test]
fn every_preset_for_every_op_and_caller() {
    use Want::{Allow, Deny, Own};
    // per preset: [read, update, delete] for signed-in callers, the same for guests, create for
    // signed-in callers (guests never create under any preset)
    let table = [
        (Preset::ReadOnly, [Allow, Own, Own], [Allow, Deny, Deny], true),
        (Preset::Private, [Own, Own, Own], [Deny, Deny, Deny], true),
        (Preset::AdminWrite, [Allow, Deny, Deny], [Allow, Deny, Deny], false),
        (Preset::AdminOnly, [Deny, Deny, Deny], [Deny, Deny, Deny], false),
    ];
    for (preset, signed_in, guest, create) in table {
        let r = CollectionRules::from_preset(preset);
        assert_eq!(r.preset(), Some(preset));
        for caller in [None, Some(A), Some(B)] {
            let auth = caller.and_then(user);
            let expected = if caller.is_some() { signed_in } else { guest };
            let ops = [
                QueryOp::Read,
                QueryOp::Update {
                    data: json!({"$set": {"x": 1}}),
                },
                QueryOp::Delete,
            ];
            for (op, exp) in ops.into_iter().zip(expected) {
                // the query does not matter to presets
                for q in [json!({}), json!({"_openid": A}), json!({"_id": "d1"})] {
                    let d = query(&r, op.clone(), auth.clone(), q);
                    assert_eq!(want(&d, caller), exp, "{preset:?} {op:?} {caller:?}");
                }
            }
            let own_doc = match caller {
                Some(id) => json!({"_openid": id, "title": "t"}),
                None => json!({"title": "t"}),
            };
            let created = r.check_create(&ctx(auth.clone(), &NoDocs), &own_doc).unwrap();
            assert_eq!(created, create && caller.is_some(), "{preset:?} create {caller:?}");
            // a document carrying someone else's _openid is never created by a client
            let other = json!({"_openid": "someone-else"});
            assert!(!r.check_create(&ctx(auth, &NoDocs), &other).unwrap());
        }
    }
}

#[test]
fn preset_scope_lets_each_user_see_only_their_own_documents() {
    let docs = [
        json!({"_id": "1", "_openid": A}),
        json!({"_id": "2", "_openid": B}),
        json!({"_id": "3"}),
    ];
    let r = CollectionRules::default_for_new_collection();
    assert_eq!(r.preset(), Some(Preset::Private));
    for (caller, visible) in [(A, vec!["1"]), (B, vec!["2"])] {
        let client_query = json!({});
        let Decision::AllowWith(cond) = read(&r, user(caller), client_query.clone()) else {
            panic!("expected AllowWith");
        };
        let f = Filter::parse(&json!({ "$and": [client_query, cond] })).unwrap();
        let seen: Vec<&str> = docs
            .iter()
            .filter(|d| f.matches(d))
            .map(|d| d["_id"].as_str().unwrap())
            .collect();
        assert_eq!(seen, visible);
    }
}

#[test]
fn presets_deny_callers_with_an_empty_id() {
    let empty = Some(AuthVars {
        uid: String::new(),
        openid: String::new(),
        login_type: "ANONYMOUS".into(),
    });
    let r = CollectionRules::from_preset(Preset::Private);
    assert!(matches!(read(&r, empty.clone(), json!({})), Decision::Deny(_)));
    assert!(!r.check_create(&ctx(empty, &NoDocs), &json!({"_openid": ""})).unwrap());
}

#[test]
fn preset_names_round_trip() {
    for p in Preset::ALL {
        assert_eq!(Preset::from_name(p.as_str()), Some(p));
        let saved = json!({ "preset": p.as_str() });
        let r = rules(saved.clone());
        assert_eq!(r.preset(), Some(p));
        assert_eq!(r.to_json(), saved);
    }
    assert_eq!(Preset::from_name("private"), None);
}

// ---------------------------------------------------------------- the rules object

#[test]
fn to_json_returns_exactly_what_was_saved() {
    let saved = json!({"read": "doc._openid   ==auth.openid", "write": false, "create": true});
    assert_eq!(rules(saved.clone()).to_json(), saved);
    assert_eq!(
        CollectionRules::default_for_new_collection().to_json(),
        json!({"preset": "PRIVATE"})
    );
}

#[test]
fn bad_rule_objects_are_rejected() {
    assert!(parse_err(json!("PRIVATE")).contains("JSON object"));
    assert!(parse_err(json!(["read"])).contains("JSON object"));
    assert!(parse_err(json!({"preset": "SECRET"})).contains("unknown preset"));
    assert!(parse_err(json!({"preset": 1})).contains("unknown preset"));
    assert!(parse_err(json!({"preset": "PRIVATE", "read": true})).contains("cannot be combined"));
    assert!(parse_err(json!({"reed": true})).contains("unknown rule key `reed`"));
    assert!(parse_err(json!({"read": 1})).contains("read: must be true, false or an expression"));
    assert!(parse_err(json!({"write": null})).contains("write: must be"));
    assert!(parse_err(json!({"read": {"a": 1}})).contains("read: must be"));
    let e = CollectionRules::parse(&json!({"read": "doc.a =="})).unwrap_err();
    assert_eq!(e.code(), crate::error::Code::InvalidRule);
    let api: ApiError = e.into();
    assert_eq!(api.code, crate::error::Code::InvalidRule);
    assert_eq!(api.message, "read: unexpected end of expression at 9");
}

#[test]
fn empty_rules_deny_everything() {
    let r = rules(json!({}));
    for auth in [None, user(A)] {
        for op in [
            QueryOp::Read,
            QueryOp::Update { data: json!({"a": 1}) },
            QueryOp::Delete,
        ] {
            assert!(matches!(
                query(&r, op, auth.clone(), json!({"_openid": A})),
                Decision::Deny(_)
            ));
        }
        assert!(!r.check_create(&ctx(auth, &NoDocs), &json!({"_openid": A})).unwrap());
    }
}

#[test]
fn create_update_delete_fall_back_to_write() {
    let r = rules(json!({"write": "doc._openid == auth.openid"}));
    let mine = json!({"_openid": A});
    assert!(is_allow(&query(&r, QueryOp::Delete, user(A), mine.clone())));
    assert!(is_allow(&query(
        &r,
        QueryOp::Update { data: json!({"x": 1}) },
        user(A),
        mine.clone()
    )));
    assert!(r.check_create(&ctx(user(A), &NoDocs), &mine).unwrap());
    assert!(!r.check_create(&ctx(user(B), &NoDocs), &mine).unwrap());
    // read has no fallback
    assert!(matches!(read(&r, user(A), mine.clone()), Decision::Deny(_)));

    // explicit keys win over write
    let r = rules(json!({"write": true, "delete": false, "create": "auth != null"}));
    assert!(matches!(
        query(&r, QueryOp::Delete, user(A), json!({})),
        Decision::Deny(_)
    ));
    assert!(is_allow(&query(
        &r,
        QueryOp::Update { data: json!({}) },
        None,
        json!({})
    )));
    assert!(!r.check_create(&ctx(None, &NoDocs), &json!({})).unwrap());
    assert!(r.check_create(&ctx(user(B), &NoDocs), &json!({})).unwrap());
}

#[test]
fn constant_rules() {
    let r = rules(json!({"read": true, "write": false}));
    assert!(is_allow(&read(&r, None, json!({}))));
    assert!(is_allow(&read(&r, user(A), json!({"anything": {"$regex": "x"}}))));
    assert!(matches!(
        query(&r, QueryOp::Delete, user(A), json!({"_openid": A})),
        Decision::Deny(_)
    ));
    assert!(!r.check_create(&ctx(user(A), &NoDocs), &json!({"_openid": A})).unwrap());
    // expression strings that are constants
    let r = rules(json!({"read": "true", "write": "false"}));
    assert!(is_allow(&read(&r, None, json!({}))));
    assert!(!r.check_create(&ctx(user(A), &NoDocs), &json!({})).unwrap());
}

// ---------------------------------------------------------------- parse errors

fn syntax(key: &str, expr: &str) -> String {
    parse_err(json!({ key: expr }))
}

#[test]
fn parse_errors_name_the_key_and_the_position() {
    assert_eq!(syntax("update", "doc.a == auth)"), "update: unexpected `)` at 14");
    assert_eq!(syntax("read", "doc.a =="), "read: unexpected end of expression at 9");
    assert_eq!(syntax("read", ""), "read: unexpected end of expression at 1");
    assert_eq!(syntax("read", "   "), "read: unexpected end of expression at 4");
    assert_eq!(
        syntax("read", "doc.a = 1"),
        "read: unexpected `=` (use `==` to compare) at 7"
    );
    assert_eq!(syntax("read", "doc.a & doc.b"), "read: unexpected `&` (use `&&`) at 7");
    assert_eq!(syntax("write", "user.id == 1"), "write: unknown variable `user` at 1");
    assert_eq!(
        syntax("write", "auth.uid == uid"),
        "write: unknown variable `uid` at 13"
    );
    assert_eq!(syntax("create", "foo(1) == 1"), "create: unknown function `foo` at 1");
    assert_eq!(
        syntax("read", "doc.tags.includes('x')"),
        "read: only get() can be called at 18"
    );
    assert_eq!(syntax("read", "doc.a == 'abc"), "read: unterminated string at 10");
    assert_eq!(syntax("read", "doc.a == \"abc"), "read: unterminated string at 10");
    assert_eq!(syntax("read", "`abc"), "read: unterminated template string at 1");
    assert_eq!(syntax("read", "doc. == 1"), "read: unexpected `==` at 6");
    assert_eq!(
        syntax("read", "(doc.a == 1"),
        "read: unexpected end of expression at 12"
    );
    assert_eq!(syntax("read", "[1, 2"), "read: unexpected end of expression at 6");
    assert_eq!(syntax("read", "doc.a in"), "read: unexpected end of expression at 9");
    assert_eq!(syntax("read", "in [1]"), "read: unexpected `in` at 1");
    assert_eq!(syntax("read", "1 2"), "read: unexpected `2` at 3");
    assert_eq!(syntax("read", "12abc == 1"), "read: unexpected `abc` at 3");
    assert_eq!(syntax("read", "doc.a == 'x' 'y'"), "read: unexpected string at 14");
    assert_eq!(
        syntax("read", "1e400 == 1"),
        "read: number `1e400` is out of range at 1"
    );
    assert_eq!(syntax("read", "doc.a ?. b"), "read: unexpected `?` at 7");
    assert_eq!(
        syntax("read", "get"),
        "read: `get` must be called: get('database.<collection>.<id>') at 1"
    );
    assert_eq!(syntax("read", "'\\u{110000}'"), "read: invalid \\u{…} escape at 2");
    assert_eq!(
        syntax("read", "'\\uD800'"),
        "read: escape is not a Unicode scalar value (surrogates are not supported) at 2"
    );
    assert_eq!(syntax("read", "`a${doc.x`"), "read: unexpected string at 10");
}

#[test]
fn parse_error_positions_count_characters_not_bytes() {
    assert_eq!(
        syntax("read", "'日本語' == doc.x &&"),
        "read: unexpected end of expression at 18"
    );
    assert_eq!(syntax("read", "doc.名前 == 1"), "read: unexpected `名` at 5");
    assert_eq!(syntax("read", "'😀😀' == )"), "read: unexpected `)` at 9");
    assert_eq!(syntax("read", "doc.a == 1 § 2"), "read: unexpected `§` at 12");
}

#[test]
fn get_calls_are_checked_when_saved() {
    assert_eq!(
        syntax("read", "get('users.x').a == 1"),
        "read: get() reads 'database.<collection>.<id>' at 5"
    );
    assert_eq!(
        syntax("read", "get('database.users').a == 1"),
        "read: get() reads 'database.<collection>.<id>' at 5"
    );
    assert_eq!(
        syntax("read", "get('database..x') == null"),
        "read: get() reads 'database.<collection>.<id>' at 5"
    );
    assert_eq!(
        syntax("read", "get(`users.${doc.x}`) == null"),
        "read: get() reads 'database.<collection>.<id>' at 5"
    );
    assert_eq!(
        syntax("read", "get(5) == null"),
        "read: get() reads 'database.<collection>.<id>' at 5"
    );
    assert_eq!(
        syntax("read", "get('database.a.b', 1) == null"),
        "read: get() takes exactly one argument at 1"
    );
    // three calls are fine, a fourth is not
    let three = "get('database.a.1') == null && get('database.a.2') == null && get('database.a.3') == null";
    rules(json!({ "read": three }));
    let four = format!("{three} && get('database.a.4') == null");
    assert_eq!(
        syntax("read", &four),
        "read: more than 3 get() calls in one expression at 94"
    );
    // nesting two deep is fine, three is not
    rules(json!({ "read": "get(`database.a.${get('database.b.x').id}`).ok == true" }));
    let deep = "get(`database.a.${get(`database.b.${get('database.c.x').id}`).id}`) == null";
    assert_eq!(syntax("read", deep), "read: get() nested more than 2 deep at 37");
    // template paths that start with an expression are checked when evaluated
    rules(json!({ "read": "get(`${doc.path}`) == null" }));
    rules(json!({ "read": "get(`data${'base'}.a.b`) == null" }));
}

// ---------------------------------------------------------------- evaluation

#[test]
fn operator_precedence() {
    let d = json!({});
    assert!(holds("true || false && false", d.clone()));
    assert!(!holds("(true || false) && false", d.clone()));
    assert!(holds("!true == false", d.clone()));
    assert!(holds("1 < 2 == true", d.clone()));
    assert!(holds("2 > 1 == 3 > 2", d.clone()));
    assert!(holds("3 in [1, 2] == false", d.clone()));
    assert!(!holds("!(1 in [1, 2])", d.clone()));
    assert!(holds("!false && !false", d.clone()));
    assert!(holds("-1 < 0 && - 2 == -2 && -(3) == -3", d.clone()));
    assert!(holds("1 == 1 && 2 == 2 || false", d.clone()));
    assert!(holds("false || 1 != 2 && 'a' < 'b'", d.clone()));
    assert!(holds("((((true))))", d.clone()));
    assert!(holds("true === true && 1 !== 2", d.clone()));
}

#[test]
fn comparisons_only_between_sensible_types() {
    let d = json!({"n": 5, "s": "5", "t": {"$date": 1000}, "b": true, "o": {"x": [1, {"y": 2}]}});
    assert!(holds("doc.n == 5 && doc.n == 5.0 && doc.n != '5'", d.clone()));
    assert!(!holds("doc.n == doc.s", d.clone()));
    assert!(!holds("doc.n < '6'", d.clone()));
    assert!(!holds("doc.n >= '6'", d.clone()));
    assert!(holds("'10' < '9' && 10 > 9", d.clone()));
    assert!(holds("'abc' < 'abd' && 'Z' < 'a'", d.clone()));
    assert!(!holds("true > false", d.clone()));
    assert!(!holds("null < 1 || null >= 0", d.clone()));
    // dates order among themselves and against numbers (now), but are not equal to numbers
    assert!(holds("doc.t < now && doc.t > 999 && doc.t == doc.t", d.clone()));
    assert!(!holds("doc.t == 1000", d.clone()));
    assert!(holds("now == 1700000000000", d.clone()));
    // deep equality of arrays and objects
    assert!(holds("doc.o.x == [1, doc.o.x[1]] && doc.o.x[1].y == 2", d.clone()));
    assert!(!holds("doc.o.x == [1]", d.clone()));
    // missing fields read as null
    assert!(holds("doc.missing == null && doc.o.missing == null", d.clone()));
    assert!(holds("doc.b && doc.n && doc.s", d.clone()));
    assert!(!holds("doc.missing", d.clone()));
}

#[test]
fn in_is_array_membership() {
    let d = json!({"tags": ["a", "b"], "n": 1});
    assert!(holds("'a' in doc.tags && 'b' in ['a', 'b']", d.clone()));
    assert!(!holds("'c' in doc.tags", d.clone()));
    assert!(holds("doc.n in [1.0, 2]", d.clone()));
    assert!(holds(
        "[1] in [[1], [2]] && null in [null] && doc.missing in [null]",
        d.clone()
    ));
    assert!(!holds("'a' in 'abc'", d.clone()));
    assert!(!holds("'tags' in doc", d.clone()));
    assert!(holds("!('c' in doc.tags)", d.clone()));
}

#[test]
fn member_access() {
    let d = json!({"tags": ["x", "y"], "o": {"k": "v", "a b": 1}, "s": "héllo😀"});
    assert!(holds(
        "doc.tags[0] == 'x' && doc['tags'][1] == 'y' && doc.tags['1'] == 'y'",
        d.clone()
    ));
    assert!(holds("doc.tags[5] == null && doc.tags.length == 2", d.clone()));
    assert!(holds("doc.o['a b'] == 1 && doc.o[doc.tags[0]] == null", d.clone()));
    assert!(holds("[1, 2, 3][2] == 3 && 'abc'.length == 3", d.clone()));
    // UTF-16 length, as JavaScript
    assert!(holds("doc.s.length == 7", d.clone()));
    assert!(holds(
        "auth.uid == 'user-a' && auth.openid == 'user-a' && auth.loginType == 'USERNAME'",
        d.clone()
    ));
    assert!(holds("auth.nothing == null", d.clone()));
    assert!(holds("request.data.tags == doc.tags && request.data == doc", d.clone()));
    // a field of null fails and the rule denies
    assert!(!holds("doc.missing.x == null", d.clone()));
    assert!(!holds("doc.tags[true] == null", d.clone()));
}

#[test]
fn failures_are_unknown_never_true() {
    let d = json!({});
    // three-valued: unknown || true is true, unknown && false is false, otherwise unknown (deny)
    assert!(holds("doc.missing.x == 1 || true", d.clone()));
    assert!(holds("true || doc.missing.x == 1", d.clone()));
    assert!(!holds("doc.missing.x == 1 && true", d.clone()));
    assert!(!holds("!(doc.missing.x == 1)", d.clone()));
    assert!(!holds("!(doc.missing.x == 1) || false", d.clone()));
    assert!(!holds("doc.missing.x != 1", d.clone()));
    // guests: auth is null
    assert!(holds_for("auth == null", d.clone(), None));
    assert!(!holds_for("auth != null", d.clone(), None));
    assert!(!holds_for("auth.uid == 'x'", d.clone(), None));
    assert!(!holds_for("!(auth.uid == 'x')", d.clone(), None));
    assert!(!holds_for("!(auth.openid in ['blocked'])", d.clone(), None));
    assert!(holds_for("auth == null || auth.uid == 'x'", d.clone(), None));
    assert!(holds_for("auth.uid == 'x' || auth == null", d.clone(), None));
    // unary minus on a non-number fails
    assert!(!holds("-'a' == null", d.clone()));
    assert!(!holds("!(-'a' == 1)", d));
}

#[test]
fn template_strings() {
    let d = json!({"n": 5, "f": 1.5, "s": "x", "b": true, "a": [1]});
    assert!(holds("`n-${doc.n}` == 'n-5'", d.clone()));
    assert!(holds(
        "`${doc.f}|${doc.s}|${doc.b}|${doc.missing}` == '1.5|x|true|null'",
        d.clone()
    ));
    assert!(holds("`${2.0}` == '2' && `${-3}` == '-3'", d.clone()));
    assert!(holds("`a\\`b\\${c}` == 'a`b${c}'", d.clone()));
    assert!(holds("`` == ''", d.clone()));
    assert!(holds("`${`${doc.s}${doc.s}`}` == 'xx'", d.clone()));
    assert!(!holds("`${doc.a}` == '1'", d));
}

#[test]
fn string_escapes_and_unicode() {
    let d = json!({"name": "日本\n\"x\"", "e": "é", "emoji": "😀"});
    assert!(holds(
        "doc.name == '日本\\n\"x\"' && doc.name == \"日本\\n\\\"x\\\"\"",
        d.clone()
    ));
    assert!(holds(
        "doc.e == '\\u00e9' && doc.e == '\\xe9' && doc.emoji == '\\u{1F600}'",
        d.clone()
    ));
    assert!(holds("'\\q' == 'q' && '\\t'.length == 1", d));
}

fn shop_docs() -> Docs {
    Docs::with(&[
        ("shops", "s1", json!({"owner": A, "staff": [A, B]})),
        ("shops", "s2", json!({"owner": B, "staff": [B]})),
        ("config", "main", json!({"open": true, "admins": ["boss"]})),
        ("links", "x", json!({"shop": "s1"})),
    ])
}

#[test]
fn get_reads_documents_with_template_paths() {
    let docs = shop_docs();
    let check = |expr: &str, doc: Value, auth: Option<AuthVars>| {
        rules(json!({ "create": expr }))
            .check_create(&ctx(auth, &docs), &doc)
            .unwrap()
    };
    let rule = "get(`database.shops.${doc.shopId}`).owner == auth.uid";
    assert!(check(rule, json!({"shopId": "s1"}), user(A)));
    assert!(!check(rule, json!({"shopId": "s1"}), user(B)));
    assert!(check(rule, json!({"shopId": "s2"}), user(B)));
    // a missing document is null; a field of it fails
    assert!(!check(rule, json!({"shopId": "nope"}), user(A)));
    assert!(check(
        "get(`database.shops.${doc.shopId}`) == null",
        json!({"shopId": "nope"}),
        user(A)
    ));
    assert!(check("get('database.config.main').open == true", json!({}), None));
    assert!(check("auth.uid in get('database.shops.s1').staff", json!({}), user(B)));
    // nested get()
    assert!(check(
        "get(`database.shops.${get(`database.links.${doc.link}`).shop}`).owner == auth.uid",
        json!({"link": "x"}),
        user(A)
    ));
    // a path that turns out malformed, or not a string, fails
    assert!(!check("get(`${doc.p}`) == null", json!({"p": "users.x"}), user(A)));
    assert!(!check(
        "get(`${doc.p}`) == null",
        json!({"p": "database.shops."}),
        user(A)
    ));
    assert!(!check("get(doc.p) == null", json!({"p": 5}), user(A)));
    assert!(!check(
        "get(`database.shops.${doc.p}`) == null",
        json!({"p": ["s1"]}),
        user(A)
    ));
    // the same document is read once per request
    docs.lookups.borrow_mut().clear();
    assert!(check(
        "get('database.shops.s1').owner == auth.uid && get('database.shops.s1').staff[0] == auth.uid",
        json!({}),
        user(A)
    ));
    assert_eq!(docs.lookups.borrow().len(), 1);
}

#[test]
fn get_reads_at_most_ten_documents_per_request() {
    let mut items = Vec::new();
    for i in 0..12 {
        items.push(("shops", format!("s{i}"), json!({"owner": A})));
    }
    let docs = Docs::with(
        &items
            .iter()
            .map(|(c, id, v)| (*c, id.as_str(), v.clone()))
            .collect::<Vec<_>>(),
    );
    let r = rules(json!({"read": "get(`database.shops.${doc.shop}`).owner == auth.uid"}));
    let q = |n: usize| json!({ "$or": (0..n).map(|i| json!({"shop": format!("s{i}")})).collect::<Vec<_>>() });
    assert!(is_allow(
        &r.check_query(QueryOp::Read, &ctx(user(A), &docs), &q(10)).unwrap()
    ));
    assert_eq!(docs.lookups.borrow().len(), 10);
    docs.lookups.borrow_mut().clear();
    let d = r.check_query(QueryOp::Read, &ctx(user(A), &docs), &q(11)).unwrap();
    assert!(matches!(d, Decision::Deny(_)));
    // each branch pins a different shop: the eleventh is refused without being read
    assert_eq!(docs.lookups.borrow().len(), MAX_GET_DOCS);
}

// ---------------------------------------------------------------- the query check

const OWNER_RULE: &str = "doc._openid == auth.openid";

#[test]
fn equality_pinned_not_pinned_and_pinned_to_another_user() {
    let allow = |q: Value| is_allow(&read_a(OWNER_RULE, q));
    assert!(allow(json!({"_openid": A})));
    assert!(allow(json!({"_openid": A, "done": false, "n": {"$gt": 1}})));
    assert!(allow(json!({"_openid": {"$eq": A}})));
    assert!(allow(json!({"_openid": {"$in": [A]}})));
    assert!(allow(json!({"_openid": A, "tags": {"$regex": "x"}})));
    assert!(!allow(json!({})));
    assert!(!allow(json!({"_id": "doc-1"})));
    assert!(!allow(json!({"_openid": B})));
    assert!(!allow(json!({"_openid": {"$in": [A, B]}})));
    assert!(!allow(json!({"_openid": {"$ne": B}})));
    assert!(!allow(json!({"_openid": {"$nin": [B]}})));
    assert!(!allow(json!({"_openid": {"$regex": "^user-a$"}})));
    assert!(!allow(json!({"_openid": {"$in": [{"$regex": ".*"}]}})));
    assert!(!allow(json!({"_openid": {"$gte": A, "$lte": A}})));
    assert!(!allow(json!({"_openid": {"$exists": true}})));
    assert!(!allow(json!({"_openid": null})));
    assert!(!allow(json!({"_openid.x": A})));
    // the reason names the field, and tells how to fix the query
    let why = deny_reason(read_a(OWNER_RULE, json!({"_id": "doc-1"})));
    assert!(why.contains("`_openid`") && why.contains("{openid}"), "{why}");
    // guests: auth.openid fails, whatever the query pins
    let r = rules(json!({ "read": OWNER_RULE }));
    for q in [
        json!({"_openid": A}),
        json!({"_openid": null}),
        json!({"_openid": ""}),
        json!({}),
    ] {
        assert!(matches!(read(&r, None, q), Decision::Deny(_)));
    }
}

#[test]
fn and_nesting() {
    let allow = |q: Value| is_allow(&read_a(OWNER_RULE, q));
    assert!(allow(json!({"$and": [{"done": false}, {"_openid": A}]})));
    assert!(allow(
        json!({"$and": [{"$and": [{"x": 1}, {"$and": [{"_openid": A}]}]}]})
    ));
    assert!(allow(json!({"_openid": {"$and": [{"$eq": A}, {"$ne": B}]}})));
    assert!(!allow(json!({"$and": [{"done": false}, {"owner": A}]})));
    assert!(!allow(json!({"$nor": [{"_openid": B}]})));
    assert!(!allow(json!({"$and": "bad"})));
    assert!(!allow(json!({"$and": []})));
}

#[test]
fn or_in_the_query_needs_every_alternative() {
    let allow = |q: Value| is_allow(&read_a(OWNER_RULE, q));
    assert!(allow(json!({"_openid": A, "$or": [{"x": 1}, {"y": 2}]})));
    assert!(allow(json!({"$or": [{"_openid": A, "x": 1}, {"_openid": A, "y": 2}]})));
    assert!(allow(
        json!({"$or": [{"_openid": A}, {"$and": [{"_openid": A}, {"z": 1}]}]})
    ));
    assert!(!allow(json!({"$or": [{"_openid": A}, {"public": true}]})));
    assert!(!allow(json!({"$or": [{"_openid": A}, {"_openid": B}]})));
    // public docs or own docs, with a rule that allows both
    let r = "doc.public == true || doc._openid == auth.openid";
    assert!(is_allow(&read_a(r, json!({"$or": [{"_openid": A}, {"public": true}]}))));
    assert!(!is_allow(&read_a(
        r,
        json!({"$or": [{"_openid": A}, {"public": false}]})
    )));
    // too many combinations are refused
    let wide: Vec<Value> = (0..65).map(|i| json!({"_openid": A, "i": i})).collect();
    let why = deny_reason(read_a(OWNER_RULE, json!({ "$or": wide })));
    assert!(why.contains("combinations"), "{why}");
    let nine: Vec<Value> = (0..9).map(|i| json!({"i": i})).collect();
    let q = json!({"_openid": A, "$and": [{"$or": nine.clone()}, {"$or": nine}]});
    assert!(matches!(read_a(OWNER_RULE, q), Decision::Deny(_)));
    let eight: Vec<Value> = (0..8).map(|i| json!({"i": i})).collect();
    let q = json!({"_openid": A, "$and": [{"$or": eight.clone()}, {"$or": eight}]});
    assert!(is_allow(&read_a(OWNER_RULE, q)));
}

#[test]
fn or_in_the_rule_needs_either_branch() {
    let rule = "auth != null && (doc.public == true || doc.owner == auth.uid)";
    assert!(is_allow(&read_a(rule, json!({"public": true}))));
    assert!(is_allow(&read_a(rule, json!({"owner": A}))));
    assert!(is_allow(&read_a(rule, json!({"owner": A, "public": false}))));
    assert!(!is_allow(&read_a(rule, json!({}))));
    assert!(!is_allow(&read_a(rule, json!({"owner": B, "public": false}))));
    let r = rules(json!({ "read": rule }));
    assert!(matches!(read(&r, None, json!({"public": true})), Decision::Deny(_)));
    // a branch without doc is evaluated for the caller
    let rule = "auth.uid == 'boss' || doc.owner == auth.uid";
    let r = rules(json!({ "read": rule }));
    assert!(is_allow(&read(&r, user("boss"), json!({}))));
    assert!(matches!(read(&r, user(A), json!({})), Decision::Deny(_)));
    assert!(is_allow(&read(&r, user(A), json!({"owner": A}))));
    // a guest fails the first branch (auth.uid of null) but may pass the second
    let rule = "auth.uid == 'boss' || doc.public == true";
    let r = rules(json!({ "read": rule }));
    assert!(is_allow(&read(&r, None, json!({"public": true}))));
    assert!(matches!(read(&r, None, json!({})), Decision::Deny(_)));
}

#[test]
fn in_lists() {
    let rule = "doc.status in ['published', 'archived']";
    let allow = |q: Value| is_allow(&read_a(rule, q));
    assert!(allow(json!({"status": "published"})));
    assert!(allow(json!({"status": {"$in": ["published"]}})));
    assert!(allow(json!({"status": {"$in": ["archived", "published"]}})));
    assert!(allow(json!({"status": {"$in": ["archived", "published"]}, "x": 1})));
    assert!(allow(
        json!({"$and": [{"status": {"$in": ["archived", "draft"]}}, {"status": {"$in": ["archived"]}}]})
    ));
    assert!(!allow(json!({"status": {"$in": ["published", "draft"]}})));
    assert!(!allow(json!({"status": "draft"})));
    assert!(!allow(json!({"status": {"$nin": ["draft"]}})));
    assert!(!allow(json!({"status": {"$in": []}})));
    assert!(!allow(json!({})));
    // a list computed from auth or get()
    let docs = shop_docs();
    let r = rules(
        json!({"read": "doc.shop in get('database.config.main').admins || auth.uid in get(`database.shops.${doc.shop}`).staff"}),
    );
    let d = r
        .check_query(QueryOp::Read, &ctx(user(B), &docs), &json!({"shop": "s1"}))
        .unwrap();
    assert!(is_allow(&d));
    let d = r
        .check_query(QueryOp::Read, &ctx(user(A), &docs), &json!({"shop": "s2"}))
        .unwrap();
    assert!(matches!(d, Decision::Deny(_)));
}

#[test]
fn ranges() {
    let allow = |rule: &str, q: Value| is_allow(&read_a(rule, q));
    let adult = "doc.age >= 18";
    assert!(allow(adult, json!({"age": {"$gte": 18}})));
    assert!(allow(adult, json!({"age": {"$gt": 18}})));
    assert!(allow(adult, json!({"age": {"$gt": 17.5, "$gte": 18}})));
    assert!(allow(adult, json!({"age": 20})));
    assert!(allow(adult, json!({"age": {"$in": [18, 30]}})));
    assert!(!allow(adult, json!({"age": {"$gt": 17}})));
    assert!(!allow(adult, json!({"age": {"$gte": 17}})));
    assert!(!allow(adult, json!({"age": {"$lt": 30}})));
    assert!(!allow(adult, json!({"age": {"$gte": "18"}})));
    assert!(!allow(adult, json!({"age": {"$gte": null}})));
    assert!(!allow(adult, json!({"age": 17})));
    assert!(allow("doc.age > 18", json!({"age": {"$gt": 18}})));
    assert!(!allow("doc.age > 18", json!({"age": {"$gte": 18}})));
    assert!(allow("doc.age < 65", json!({"age": {"$lt": 65}})));
    assert!(!allow("doc.age < 65", json!({"age": {"$lte": 65}})));
    assert!(allow("doc.age <= 65", json!({"age": {"$lte": 65}})));
    // the rule's operand on the left
    assert!(allow("18 <= doc.age", json!({"age": {"$gte": 20}})));
    assert!(!allow("18 < doc.age", json!({"age": {"$gte": 18}})));
    // both ends, from one operator object or from the SDK's top-level $and
    let band = "doc.age >= 18 && doc.age < 65";
    assert!(allow(band, json!({"age": {"$gte": 21, "$lt": 60}})));
    assert!(allow(
        band,
        json!({"$and": [{"age": {"$gte": 21}}, {"age": {"$lt": 60}}]})
    ));
    assert!(!allow(band, json!({"age": {"$gte": 21}})));
    // strings and dates
    assert!(allow("doc.name >= 'm'", json!({"name": {"$gt": "n"}})));
    assert!(!allow("doc.name >= 'm'", json!({"name": {"$gt": "a"}})));
    let past = json!({"publishAt": {"$lte": {"$date": NOW - 1000}}});
    assert!(allow("doc.publishAt <= now", past));
    let future = json!({"publishAt": {"$lte": {"$date": NOW + 3_600_000}}});
    assert!(!allow("doc.publishAt <= now", future));
    assert!(allow("doc.publishAt <= now", json!({"publishAt": {"$date": NOW}})));
}

#[test]
fn not_equal() {
    let rule = "doc.status != 'deleted'";
    let allow = |q: Value| is_allow(&read_a(rule, q));
    assert!(allow(json!({"status": "live"})));
    assert!(allow(json!({"status": {"$ne": "deleted"}})));
    assert!(allow(json!({"status": {"$nin": ["deleted", "hidden"]}})));
    assert!(allow(json!({"status": {"$in": ["live", "draft"]}})));
    assert!(!allow(json!({})));
    assert!(!allow(json!({"status": "deleted"})));
    assert!(!allow(json!({"status": {"$ne": "hidden"}})));
}

#[test]
fn negation_over_doc_is_refused() {
    for rule in [
        "!(doc.status == 'deleted')",
        "!doc.hidden",
        "!(doc.status in ['deleted'])",
        "(!doc.hidden) == true",
    ] {
        let why = deny_reason(read_a(rule, json!({"status": "live", "hidden": false})));
        assert!(why.contains('!'), "{rule}: {why}");
    }
    // `!` over terms without doc is evaluated
    assert!(is_allow(&read_a(
        "!(auth == null) && doc.owner == auth.uid",
        json!({"owner": A})
    )));
    assert!(is_allow(&read_a(
        "!(auth.uid in ['banned']) && doc.owner == auth.uid",
        json!({"owner": A})
    )));
    let r = rules(json!({"read": "!(auth.uid in ['user-a']) && doc.owner == auth.uid"}));
    assert!(matches!(read(&r, user(A), json!({"owner": A})), Decision::Deny(_)));
}

#[test]
fn shapes_not_understood_are_denied() {
    let deny = |rule: &str, q: Value| matches!(read_a(rule, q), Decision::Deny(_));
    assert!(deny("doc == null", json!({})));
    assert!(deny("doc.a == doc.b", json!({"a": 1})));
    assert!(deny("doc.tags.length > 0", json!({"tags": {"$size": 2}})));
    assert!(deny("'x' in doc.tags", json!({"tags": "x"})));
    assert!(deny("doc.owner == auth.uid", json!({"owner": {"$regex": "user-a"}})));
    assert!(deny("doc.owner == auth.uid", json!({"owner": {"$exists": true}})));
    assert!(deny("doc.owner == auth.uid", json!({"$nor": [{"owner": {"$ne": A}}]})));
    assert!(deny("doc.n == 1", json!({"n": {"$gte": 1, "$lte": 1}})));
    assert!(deny("doc.owner == auth.uid", json!("not an object")));
    assert!(deny("doc.owner == auth.uid", json!([{"owner": A}])));
    assert!(deny("doc[doc.k] == 1", json!({"k": "a", "a": 1})));
    assert!(deny("doc['a.b'] == 1", json!({"a.b": 1})));
    assert!(deny(
        "doc.owner.id == auth.uid",
        json!({"owner": {"$elemMatch": {"id": A}}})
    ));
    // the reason never echoes values from the rule
    let why = deny_reason(read_a("doc.secret == 'hunter2'", json!({})));
    assert!(!why.contains("hunter2"), "{why}");
}

#[test]
fn several_fields_and_nested_paths() {
    let allow = |rule: &str, q: Value| is_allow(&read_a(rule, q));
    assert!(allow("doc.a == doc.b", json!({"a": 1, "b": 1})));
    assert!(!allow("doc.a == doc.b", json!({"a": 1, "b": 2})));
    assert!(allow("doc.owner.id == auth.uid", json!({"owner.id": A})));
    assert!(allow(
        "doc.owner.id == auth.uid",
        json!({"owner": {"id": A, "name": "a"}})
    ));
    assert!(!allow("doc.owner.id == auth.uid", json!({"owner": {"id": B}})));
    assert!(!allow("doc.owner == auth.uid", json!({"owner.id": A})));
    assert!(allow("doc.tags[0] == 'x'", json!({"tags.0": "x"})));
    assert!(allow("doc[auth.uid] == true", json!({ A: true })));
    assert!(allow("doc.list == ['a', 'b']", json!({"list": ["a", "b"]})));
    assert!(allow("doc.flag", json!({"flag": true})));
    assert!(!allow("doc.flag", json!({"flag": 0})));
    assert!(allow("`${doc.kind}-x` == 'pub-x'", json!({"kind": "pub"})));
    assert!(allow("doc.n == 5", json!({"n": 5.0})));
}

#[test]
fn get_with_doc_needs_an_equality() {
    let docs = shop_docs();
    let r = rules(json!({"read": "get(`database.shops.${doc.shopId}`).owner == auth.uid"}));
    let check = |auth: Option<AuthVars>, q: Value| r.check_query(QueryOp::Read, &ctx(auth, &docs), &q).unwrap();
    assert!(is_allow(&check(user(A), json!({"shopId": "s1"}))));
    assert!(is_allow(&check(user(A), json!({"shopId": {"$in": ["s1"]}, "x": 1}))));
    assert!(is_allow(&check(user(B), json!({"shopId": "s2"}))));
    assert!(matches!(check(user(B), json!({"shopId": "s1"})), Decision::Deny(_)));
    assert!(matches!(
        check(user(A), json!({"shopId": "missing"})),
        Decision::Deny(_)
    ));
    assert!(matches!(
        check(user(A), json!({"shopId": {"$in": ["s1", "s1"]}})),
        Decision::Deny(_)
    ));
    let why = deny_reason(check(user(A), json!({})));
    assert!(why.contains("`shopId`"), "{why}");
    assert!(matches!(check(None, json!({"shopId": "s1"})), Decision::Deny(_)));
}

#[test]
fn updates_see_request_data() {
    let r = rules(json!({
        "read": true,
        "update": "doc._openid == auth.openid && request.data.status in ['open', 'closed']",
        "delete": "doc._openid == auth.openid",
    }));
    let update = |data: Value, q: Value| query(&r, QueryOp::Update { data }, user(A), q);
    let mine = json!({"_openid": A});
    assert!(is_allow(&update(json!({"$set": {"status": "open"}}), mine.clone())));
    assert!(is_allow(&update(
        json!({"status": "closed", "title": "t"}),
        mine.clone()
    )));
    assert!(matches!(
        update(json!({"$set": {"status": "hacked"}}), mine.clone()),
        Decision::Deny(_)
    ));
    assert!(matches!(
        update(json!({"$set": {"status": "open"}}), json!({"_openid": B})),
        Decision::Deny(_)
    ));
    assert!(matches!(
        update(json!({"$set": {"status": "open"}}), json!({})),
        Decision::Deny(_)
    ));
    assert!(matches!(update(json!({"title": "t"}), mine.clone()), Decision::Deny(_)));
    // operators other than $set: request.data is unknown, so a rule reading it denies
    let why = deny_reason(update(
        json!({"$set": {"status": "open"}, "$inc": {"n": 1}}),
        mine.clone(),
    ));
    assert!(why.contains("$inc"), "{why}");
    assert!(matches!(
        update(
            json!({"$set": {"status": "open"}, "$max": {"status": "zzz"}}),
            mine.clone()
        ),
        Decision::Deny(_)
    ));
    assert!(matches!(
        update(json!({"$set": {"status": "open", "status.x": 1}}), mine.clone()),
        Decision::Deny(_)
    ));
    assert!(matches!(update(json!("open"), mine.clone()), Decision::Deny(_)));
    // dot paths of $set become nested objects
    let r2 = rules(json!({"update": "doc._openid == auth.openid && request.data.meta.level < 5"}));
    let d = query(
        &r2,
        QueryOp::Update {
            data: json!({"$set": {"meta.level": 3}}),
        },
        user(A),
        mine.clone(),
    );
    assert!(is_allow(&d));
    let d = query(
        &r2,
        QueryOp::Update {
            data: json!({"$set": {"meta.level": 9}}),
        },
        user(A),
        mine.clone(),
    );
    assert!(matches!(d, Decision::Deny(_)));
    // a rule that does not read request.data allows any operator
    let r3 = rules(json!({"write": "doc._openid == auth.openid"}));
    let d = query(
        &r3,
        QueryOp::Update {
            data: json!({"$inc": {"n": 1}, "$push": {"t": 1}}),
        },
        user(A),
        mine.clone(),
    );
    assert!(is_allow(&d));
    // reads and deletes have no request.data
    let r4 = rules(json!({"read": "request.data == null", "delete": "request.data.x == null"}));
    assert!(is_allow(&read(&r4, user(A), json!({}))));
    assert!(matches!(
        query(&r4, QueryOp::Delete, user(A), json!({})),
        Decision::Deny(_)
    ));
}

#[test]
fn deletes_use_the_delete_rule() {
    let r = rules(json!({"read": true, "delete": "doc._openid == auth.openid && doc.locked == false"}));
    let del = |q: Value| query(&r, QueryOp::Delete, user(A), q);
    assert!(is_allow(&del(json!({"_openid": A, "locked": false}))));
    assert!(matches!(del(json!({"_openid": A})), Decision::Deny(_)));
    assert!(matches!(del(json!({"_openid": A, "locked": true})), Decision::Deny(_)));
}

#[test]
fn rules_without_doc_ignore_the_query() {
    let r = rules(json!({"read": "auth != null && auth.loginType != 'ANONYMOUS'"}));
    // even a query the checker could not analyse
    let odd = json!({"$or": "not an array", "$where": "1"});
    assert!(is_allow(&read(&r, user(A), odd.clone())));
    assert!(matches!(read(&r, None, odd), Decision::Deny(_)));
    let anon = Some(AuthVars {
        uid: "anon".into(),
        openid: "anon".into(),
        login_type: "ANONYMOUS".into(),
    });
    assert!(matches!(read(&r, anon, json!({})), Decision::Deny(_)));
    let r = rules(json!({"read": "now > 0 && get('database.config.main').open == true"}));
    let docs = shop_docs();
    assert!(is_allow(
        &r.check_query(QueryOp::Read, &ctx(None, &docs), &json!({})).unwrap()
    ));
    assert!(matches!(read(&r, None, json!({})), Decision::Deny(_)));
}

// ---------------------------------------------------------------- creates

#[test]
fn create_checks_the_new_document() {
    let r = rules(json!({
        "read": true,
        "create": "auth != null && doc._openid == auth.openid && request.data.title != null && doc.title.length <= 10",
    }));
    let create = |auth: Option<AuthVars>, doc: Value| r.check_create(&ctx(auth, &NoDocs), &doc).unwrap();
    assert!(create(user(A), json!({"_openid": A, "title": "short"})));
    assert!(!create(user(A), json!({"_openid": A, "title": "much too long here"})));
    assert!(!create(user(A), json!({"_openid": A})));
    assert!(!create(user(B), json!({"_openid": A, "title": "t"})));
    assert!(!create(None, json!({"title": "t"})));
    let r = rules(json!({"write": "doc.kind in ['note', 'todo'] && doc.due > now"}));
    let create = |doc: Value| r.check_create(&ctx(user(A), &NoDocs), &doc).unwrap();
    assert!(create(json!({"kind": "note", "due": {"$date": NOW + 1}})));
    assert!(create(json!({"kind": "todo", "due": NOW + 1})));
    assert!(!create(json!({"kind": "todo", "due": {"$date": NOW - 1}})));
    assert!(!create(json!({"kind": "spam", "due": NOW + 1})));
    assert!(!create(json!({"kind": "note", "due": "tomorrow"})));
}

// ---------------------------------------------------------------- adversarial input

#[test]
fn nesting_is_bounded() {
    let parens = |n: usize| format!("{}true{}", "(".repeat(n), ")".repeat(n));
    rules(json!({ "read": parens(MAX_DEPTH) }));
    assert_eq!(
        syntax("read", &parens(MAX_DEPTH + 1)),
        "read: expression nested deeper than 64 levels at 65"
    );
    // 500 levels: a clean error, no stack overflow
    assert!(syntax("read", &parens(500)).contains("nested deeper than 64 levels"));
    assert!(syntax("read", &format!("{}true", "!".repeat(MAX_DEPTH + 1))).contains("nested deeper"));
    assert!(syntax("read", &format!("{}1", "-".repeat(MAX_DEPTH + 1))).contains("nested deeper"));
    assert!(syntax("read", &format!("doc{} == 1", ".a".repeat(MAX_DEPTH + 1))).contains("nested deeper"));
    assert!(syntax("read", &format!("{}1{}", "[".repeat(300), "]".repeat(300))).contains("nested deeper"));
    assert!(syntax("read", &format!("1{}", " == 1".repeat(MAX_DEPTH + 1))).contains("nested deeper"));
    assert!(syntax("read", &format!("`{}x{}`", "${`".repeat(100), "`}".repeat(100))).contains("nested deeper"));
    // long flat chains are fine
    let chain = vec!["doc.a == 1"; 70].join(" || ");
    assert!(chain.len() <= MAX_EXPR_CHARS);
    assert!(holds(&chain, json!({"a": 1})));
    let chain = vec!["true"; 170].join("&&");
    assert!(holds(&chain, json!({})));
    let member = format!("doc{} == null", ".a".repeat(MAX_DEPTH - 1));
    rules(json!({ "read": member }));
}

#[test]
fn length_is_bounded() {
    let at_limit = format!("'{}' != null", "x".repeat(MAX_EXPR_CHARS - 10));
    assert_eq!(at_limit.chars().count(), MAX_EXPR_CHARS);
    rules(json!({ "read": at_limit }));
    let over = format!("'{}' != null", "x".repeat(MAX_EXPR_CHARS - 9));
    assert!(parse_err(json!({ "read": over })).contains("more than 1024"));
    // a megabyte
    let huge = format!("'{}'", "x".repeat(1 << 20));
    let err = parse_err(json!({ "write": huge }));
    assert!(
        err.starts_with("write: the expression is 1048578 characters long"),
        "{err}"
    );
    // the limit counts characters: 1024 three-byte characters fit
    let wide = format!("'{}' != null", "語".repeat(MAX_EXPR_CHARS - 10));
    assert!(wide.len() > 3 * MAX_EXPR_CHARS - 40);
    rules(json!({ "read": wide }));
}

#[test]
fn unicode_everywhere() {
    assert!(holds(
        "doc['名前'] == '日本' && doc['😀'] == 1",
        json!({"名前": "日本", "😀": 1})
    ));
    assert!(is_allow(&read_a("doc['名前'] == '日本'", json!({"名前": "日本"}))));
    assert!(holds("'é' > 'e' && 'ü' < '😀'", json!({})));
}

/// Random expressions from the grammar, some of them corrupted: the parser and evaluator never
/// panic, whatever the input.
#[test]
fn random_input_never_panics() {
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }
    fn gen(r: &mut Rng, depth: usize) -> String {
        let leaves = [
            "doc",
            "doc.a",
            "doc.a.a",
            "doc.a.a[1]",
            "doc._openid",
            "doc.uid",
            "auth",
            "auth.uid",
            "auth.openid",
            "now",
            "request.data",
            "request.data.a",
            "1",
            "-2.5",
            "'s'",
            "\"é\"",
            "null",
            "true",
            "false",
            "[1, 's']",
            "`x${doc.uid}`",
            "get('database.shops.s1')",
            "get(`database.shops.${doc.uid}`).owner",
            "'😀'.length",
        ];
        if depth == 0 || r.next(3) == 0 {
            return leaves[r.next(leaves.len())].to_string();
        }
        let ops = ["==", "!=", "<", "<=", ">", ">=", " in ", "&&", "||"];
        match r.next(4) {
            0 => format!("!{}", gen(r, depth - 1)),
            1 => format!("({})", gen(r, depth - 1)),
            _ => format!("{} {} {}", gen(r, depth - 1), ops[r.next(ops.len())], gen(r, depth - 1)),
        }
    }
    let junk = [
        '(', ')', '[', ']', '`', '\'', '"', '\\', '$', '{', '}', '.', '!', '=', '&', '|', 'é', '😀', ' ',
    ];
    let docs = shop_docs();
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut parsed = 0;
    for i in 0..3000 {
        let mut src: Vec<char> = gen(&mut r, 5).chars().collect();
        if i % 3 == 0 && !src.is_empty() {
            for _ in 0..=r.next(3) {
                let at = r.next(src.len());
                src[at] = junk[r.next(junk.len())];
            }
        }
        let src: String = src.into_iter().collect();
        let Ok(rules) = CollectionRules::parse(&json!({ "read": src.clone(), "write": src })) else {
            continue;
        };
        parsed += 1;
        let doc = json!({"a": {"a": [1, "s"]}, "_openid": A, "uid": "s1"});
        for auth in [None, user(A)] {
            let c = ctx(auth, &docs);
            rules.check_create(&c, &doc).unwrap();
            let queries = [
                json!({}),
                json!({"a": 1, "uid": "s1", "a.a.1": "s", "_openid": A}),
                json!({"$or": [{"a.a": "s"}, {"_openid": A, "uid": {"$in": ["s1", "s2"]}}]}),
            ];
            for q in queries {
                rules.check_query(QueryOp::Read, &c, &q).unwrap();
                rules
                    .check_query(QueryOp::Update { data: doc.clone() }, &c, &q)
                    .unwrap();
            }
        }
    }
    assert!(parsed > 1500, "only {parsed} random expressions parsed");
}

#[test]
fn compiled_rules_are_shareable() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<CollectionRules>();
    let r = rules(json!({"read": OWNER_RULE}));
    let copy = r.clone();
    std::thread::spawn(move || assert!(is_allow(&read(&copy, user(A), json!({"_openid": A})))))
        .join()
        .unwrap();
    assert!(is_allow(&read(&r, user(A), json!({"_openid": A}))));
}

#[test]
fn printed_expressions_parse_back_to_the_same_text() {
    for src in [
        "doc._openid == auth.openid",
        "auth != null && (doc.public == true || doc.owner == auth.uid)",
        "!(doc.status in ['a', 'b']) && -(doc.n) < -1",
        "get(`database.shops.${doc.shopId}`).owner == auth.uid",
        "doc['a b'][0] == 'x\\'y' && `q\\`${1}\\${}` == request.data.t",
    ] {
        let e = expr::parse(src).unwrap();
        let printed = e.to_string();
        let again = expr::parse(&printed).unwrap().to_string();
        assert_eq!(printed, again, "{src}");
    }
}
