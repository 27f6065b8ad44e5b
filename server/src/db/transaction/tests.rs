//! Isolation, read-your-writes, conflict detection (normal writes, other transactions, write skew),
//! expiry, rollback, unique indexes at commit, index entries and the registry's bounds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Transactions, Txn, TxnLimits, RUN_ATTEMPTS};
use crate::db::index::IndexSpec;
use crate::db::{Database, DbError, FindParts, Limits};

const ENV: &str = "default";

fn setup() -> (tempfile::TempDir, Arc<Database>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path(), Limits::default()).unwrap());
    for c in ["acc", "log"] {
        db.create_collection(ENV, c).unwrap().wait_blocking().unwrap();
    }
    (dir, db)
}

fn id(i: &str) -> Value {
    json!({ "_id": i })
}

fn filter(db: &Database, q: Value) -> crate::db::query::Filter {
    db.filter(Some(&q)).unwrap()
}

/// The committed document, read outside any transaction.
fn stored(db: &Database, coll: &str, i: &str) -> Option<Value> {
    db.get_raw(ENV, coll, i)
        .unwrap()
        .map(|b| serde_json::from_slice(&b).unwrap())
}

fn put(db: &Database, coll: &str, doc: Value) {
    db.insert(ENV, coll, vec![doc]).unwrap().1.wait_blocking().unwrap();
}

fn inc(db: &Database, coll: &str, i: &str, field: &str, by: i64) {
    let upd = db.update_spec(&json!({ "$inc": { field: by } }), true).unwrap();
    db.update(ENV, coll, &filter(db, id(i)), &upd, false, false)
        .unwrap()
        .1
        .wait_blocking()
        .unwrap();
}

fn tx_get(db: &Database, txn: &mut Txn, coll: &str, i: &str) -> Result<Option<Value>, DbError> {
    txn.get(db, coll, &filter(db, id(i)))
}

fn tx_update(db: &Database, txn: &mut Txn, coll: &str, i: &str, data: Value) -> Result<u64, DbError> {
    let upd = db.update_spec(&data, true)?;
    Ok(txn.update(db, coll, &filter(db, id(i)), &upd, false)?.updated)
}

fn balance(doc: Option<Value>) -> i64 {
    doc.and_then(|d| d["n"].as_i64()).unwrap_or(i64::MIN)
}

fn is_conflict<T>(r: &Result<T, DbError>) -> bool {
    matches!(r, Err(DbError::TransactionConflict(_)))
}

#[test]
fn uncommitted_writes_are_invisible_outside_and_visible_inside() {
    let (_d, db) = setup();
    put(&db, "acc", json!({"_id": "a", "n": 10}));
    let mut txn = db.begin(ENV).unwrap();
    tx_update(&db, &mut txn, "acc", "a", json!({"$inc": {"n": -3}})).unwrap();
    txn.insert(&db, "log", vec![json!({"_id": "l1", "what": "moved"})])
        .unwrap();
    // read-your-writes
    assert_eq!(balance(tx_get(&db, &mut txn, "acc", "a").unwrap()), 7);
    assert_eq!(
        tx_get(&db, &mut txn, "log", "l1").unwrap(),
        Some(json!({"_id": "l1", "what": "moved"}))
    );
    // nothing outside
    assert_eq!(balance(stored(&db, "acc", "a")), 10);
    assert_eq!(stored(&db, "log", "l1"), None);
    let q = db
        .find_spec(FindParts {
            query: Some(&json!({})),
            ..Default::default()
        })
        .unwrap();
    assert!(db.find(ENV, "log", &q).unwrap().is_empty());
    txn.commit(&db).unwrap().wait_blocking().unwrap();
    assert_eq!(balance(stored(&db, "acc", "a")), 7);
    assert_eq!(stored(&db, "log", "l1"), Some(json!({"_id": "l1", "what": "moved"})));
}

#[test]
fn a_normal_write_to_a_document_read_makes_commit_fail_and_writes_nothing() {
    let (_d, db) = setup();
    put(&db, "acc", json!({"_id": "a", "n": 10}));
    put(&db, "acc", json!({"_id": "b", "n": 0}));
    let mut txn = db.begin(ENV).unwrap();
    let a = balance(tx_get(&db, &mut txn, "acc", "a").unwrap());
    tx_update(&db, &mut txn, "acc", "b", json!({"n": a})).unwrap();
    inc(&db, "acc", "a", "n", 1); // concurrent writer
    let r = txn.commit(&db);
    assert!(is_conflict(&r), "{:?}", r.err());
    assert_eq!(balance(stored(&db, "acc", "b")), 0);
    assert_eq!(balance(stored(&db, "acc", "a")), 11);
}

#[test]
fn a_normal_write_to_a_document_written_makes_commit_fail() {
    let (_d, db) = setup();
    put(&db, "acc", json!({"_id": "a", "n": 10}));
    let mut txn = db.begin(ENV).unwrap();
    tx_update(&db, &mut txn, "acc", "a", json!({"$inc": {"n": 5}})).unwrap();
    inc(&db, "acc", "a", "n", 100);
    assert!(is_conflict(&txn.commit(&db)));
    assert_eq!(balance(stored(&db, "acc", "a")), 110, "the normal write is not lost");
}

#[test]
fn a_document_created_meanwhile_conflicts_with_an_insert_that_saw_it_absent() {
    let (_d, db) = setup();
    let mut txn = db.begin(ENV).unwrap();
    txn.insert(&db, "acc", vec![json!({"_id": "x", "by": "txn"})]).unwrap();
    put(&db, "acc", json!({"_id": "x", "by": "normal"}));
    assert!(is_conflict(&txn.commit(&db)));
    assert_eq!(stored(&db, "acc", "x"), Some(json!({"_id": "x", "by": "normal"})));
}

#[test]
fn of_two_transactions_writing_the_same_document_the_second_to_commit_fails() {
    let (_d, db) = setup();
    put(&db, "acc", json!({"_id": "a", "n": 10}));
    let mut t1 = db.begin(ENV).unwrap();
    let mut t2 = db.begin(ENV).unwrap();
    tx_update(&db, &mut t1, "acc", "a", json!({"$inc": {"n": 1}})).unwrap();
    tx_update(&db, &mut t2, "acc", "a", json!({"$inc": {"n": 2}})).unwrap();
    t1.commit(&db).unwrap().wait_blocking().unwrap();
    assert!(is_conflict(&t2.commit(&db)));
    assert_eq!(balance(stored(&db, "acc", "a")), 11);
}

#[test]
fn write_skew_across_collections_is_refused() {
    // t1 reads acc/a and writes log/b; t2 reads log/b and writes acc/a: not serializable together
    let (_d, db) = setup();
    put(&db, "acc", json!({"_id": "a", "n": 1}));
    put(&db, "log", json!({"_id": "b", "n": 1}));
    let mut t1 = db.begin(ENV).unwrap();
    let mut t2 = db.begin(ENV).unwrap();
    let a = balance(tx_get(&db, &mut t1, "acc", "a").unwrap());
    let b = balance(tx_get(&db, &mut t2, "log", "b").unwrap());
    tx_update(&db, &mut t1, "log", "b", json!({"n": a + b})).unwrap();
    tx_update(&db, &mut t2, "acc", "a", json!({"n": a + b})).unwrap();
    t1.commit(&db).unwrap().wait_blocking().unwrap();
    assert!(is_conflict(&t2.commit(&db)));
    assert_eq!(
        (balance(stored(&db, "acc", "a")), balance(stored(&db, "log", "b"))),
        (1, 2)
    );
}

#[test]
fn rereading_a_document_that_changed_is_a_conflict_at_once() {
    let (_d, db) = setup();
    put(&db, "acc", json!({"_id": "a", "n": 1}));
    let mut txn = db.begin(ENV).unwrap();
    assert_eq!(balance(tx_get(&db, &mut txn, "acc", "a").unwrap()), 1);
    assert_eq!(
        balance(tx_get(&db, &mut txn, "acc", "a").unwrap()),
        1,
        "unchanged: fine"
    );
    inc(&db, "acc", "a", "n", 1);
    let r = tx_get(&db, &mut txn, "acc", "a");
    assert!(is_conflict(&r), "{r:?}");
    let Err(e) = r else { unreachable!() };
    assert!(e.to_string().contains("acc/a"), "{e}");
}

#[test]
fn a_read_only_transaction_that_saw_a_torn_state_fails_to_commit() {
    let (_d, db) = setup();
    put(&db, "acc", json!({"_id": "a", "n": 1}));
    put(&db, "acc", json!({"_id": "b", "n": 1}));
    let mut txn = db.begin(ENV).unwrap();
    tx_get(&db, &mut txn, "acc", "a").unwrap();
    inc(&db, "acc", "a", "n", 1);
    inc(&db, "acc", "b", "n", 1);
    tx_get(&db, &mut txn, "acc", "b").unwrap();
    assert!(is_conflict(&txn.commit(&db)));
}

#[test]
fn update_set_insert_and_delete_behave_like_their_normal_forms() {
    let (_d, db) = setup();
    put(&db, "acc", json!({"_id": "a", "n": 1, "_openid": "u1"}));
    let mut txn = db.begin(ENV).unwrap();
    // update of a missing document changes nothing
    assert_eq!(tx_update(&db, &mut txn, "acc", "zz", json!({"n": 1})).unwrap(), 0);
    // set (replacement) keeps `_id` and the creator
    let repl = db.update_spec(&json!({"m": 2}), false).unwrap();
    let r = txn.update(&db, "acc", &filter(&db, id("a")), &repl, true).unwrap();
    assert_eq!((r.matched, r.updated, r.upserted_id), (1, 1, None));
    // set of a missing document creates it
    let r = txn.update(&db, "acc", &filter(&db, id("new")), &repl, true).unwrap();
    assert_eq!(r.upserted_id.as_deref(), Some("new"));
    // an update that changes nothing counts as matched, not updated
    assert_eq!(tx_update(&db, &mut txn, "acc", "a", json!({"m": 2})).unwrap(), 0);
    // `_id` cannot change
    let bad = db.update_spec(&json!({"_id": "other", "m": 3}), false).unwrap();
    assert!(txn.update(&db, "acc", &filter(&db, id("a")), &bad, false).is_err());
    // insert of an existing id is refused, delete then insert again works
    assert!(matches!(
        txn.insert(&db, "acc", vec![json!({"_id": "a"})]),
        Err(DbError::DuplicateId(_))
    ));
    assert_eq!(txn.remove(&db, "acc", &filter(&db, id("a"))).unwrap(), 1);
    assert_eq!(txn.remove(&db, "acc", &filter(&db, id("a"))).unwrap(), 0);
    assert_eq!(tx_get(&db, &mut txn, "acc", "a").unwrap(), None);
    txn.insert(&db, "acc", vec![json!({"_id": "a", "again": true})])
        .unwrap();
    // inserted and deleted inside: never written
    txn.insert(&db, "acc", vec![json!({"_id": "tmp"})]).unwrap();
    txn.remove(&db, "acc", &filter(&db, id("tmp"))).unwrap();
    // a generated id
    let ids = txn.insert(&db, "log", vec![json!({"x": 1})]).unwrap();
    assert_eq!(ids[0].len(), 32);
    txn.commit(&db).unwrap().wait_blocking().unwrap();
    assert_eq!(stored(&db, "acc", "a"), Some(json!({"_id": "a", "again": true})));
    assert_eq!(stored(&db, "acc", "new"), Some(json!({"_id": "new", "m": 2})));
    assert_eq!(stored(&db, "acc", "tmp"), None);
    assert_eq!(stored(&db, "log", &ids[0]), Some(json!({"_id": ids[0], "x": 1})));
}

#[test]
fn a_replacement_keeps_the_creator() {
    let (_d, db) = setup();
    put(&db, "acc", json!({"_id": "a", "n": 1, "_openid": "u1"}));
    let mut txn = db.begin(ENV).unwrap();
    let repl = db.update_spec(&json!({"m": 2}), false).unwrap();
    txn.update(&db, "acc", &filter(&db, id("a")), &repl, true).unwrap();
    txn.commit(&db).unwrap().wait_blocking().unwrap();
    assert_eq!(
        stored(&db, "acc", "a"),
        Some(json!({"_id": "a", "m": 2, "_openid": "u1"}))
    );
}

#[test]
fn operations_must_pin_one_id() {
    let (_d, db) = setup();
    let mut txn = db.begin(ENV).unwrap();
    for q in [
        json!({}),
        json!({"n": 1}),
        json!({"_id": {"$in": ["a", "b"]}}),
        json!({"_id": {"$gt": "a"}}),
    ] {
        let r = txn.get(&db, "acc", &filter(&db, q.clone()));
        assert!(
            matches!(&r, Err(DbError::InvalidParam(m)) if m.contains("_id")),
            "{q}: {r:?}"
        );
        assert!(txn.remove(&db, "acc", &filter(&db, q.clone())).is_err(), "{q}");
    }
    // `{_id: {$eq}}` (the SDK's form) and extra conditions are fine
    assert_eq!(
        txn.get(&db, "acc", &filter(&db, json!({"_id": {"$eq": "a"}}))).unwrap(),
        None
    );
    assert!(txn.get(&db, "nope", &filter(&db, id("a"))).is_err());
}

#[test]
fn a_filter_beyond_the_id_is_matched_against_the_transactions_view() {
    let (_d, db) = setup();
    put(&db, "acc", json!({"_id": "a", "owner": "u1"}));
    let mut txn = db.begin(ENV).unwrap();
    let mine = filter(&db, json!({"_id": "a", "owner": "u2"}));
    assert_eq!(txn.get(&db, "acc", &mine).unwrap(), None);
    assert_eq!(txn.remove(&db, "acc", &mine).unwrap(), 0);
    tx_update(&db, &mut txn, "acc", "a", json!({"owner": "u2"})).unwrap();
    assert!(txn.get(&db, "acc", &mine).unwrap().is_some());
}

fn unique_email(db: &Arc<Database>) {
    let spec = IndexSpec {
        fields: IndexSpec::parse_fields("email").unwrap(),
        unique: true,
        name: None,
    };
    db.create_index(ENV, "acc", &spec, false).unwrap();
}

fn count(db: &Database, coll: &str, q: Value) -> u64 {
    db.count(ENV, coll, &filter(db, q)).unwrap()
}

#[test]
fn a_unique_index_violated_at_commit_refuses_it_and_nothing_is_written() {
    let (_d, db) = setup();
    unique_email(&db);
    let mut txn = db.begin(ENV).unwrap();
    txn.insert(&db, "acc", vec![json!({"_id": "t", "email": "x@y"})])
        .unwrap();
    txn.insert(&db, "log", vec![json!({"_id": "l"})]).unwrap();
    put(&db, "acc", json!({"_id": "n", "email": "x@y"})); // takes the value first
    let r = txn.commit(&db);
    assert!(
        matches!(&r, Err(DbError::DuplicateKey { index, .. }) if index == "email_1"),
        "{:?}",
        r.err()
    );
    assert_eq!((stored(&db, "acc", "t"), stored(&db, "log", "l")), (None, None));
    assert_eq!(count(&db, "acc", json!({"email": "x@y"})), 1);

    // two documents of one transaction taking the same value
    let mut txn = db.begin(ENV).unwrap();
    txn.insert(&db, "acc", vec![json!({"_id": "p", "email": "p@q"})])
        .unwrap();
    txn.insert(&db, "acc", vec![json!({"_id": "q", "email": "p@q"})])
        .unwrap();
    assert!(matches!(txn.commit(&db), Err(DbError::DuplicateKey { .. })));
    assert_eq!((stored(&db, "acc", "p"), stored(&db, "acc", "q")), (None, None));

    // a value freed and taken inside one transaction is fine
    let mut txn = db.begin(ENV).unwrap();
    tx_update(&db, &mut txn, "acc", "n", json!({"email": "other@y"})).unwrap();
    txn.insert(&db, "acc", vec![json!({"_id": "t", "email": "x@y"})])
        .unwrap();
    txn.commit(&db).unwrap().wait_blocking().unwrap();
    assert_eq!(count(&db, "acc", json!({"email": "x@y"})), 1);
    assert_eq!(count(&db, "acc", json!({"email": "other@y"})), 1);

    // two documents swap their values, in either order of writing
    for (first, second) in [("n", "t"), ("t", "n")] {
        let mut txn = db.begin(ENV).unwrap();
        let a = tx_get(&db, &mut txn, "acc", first).unwrap().unwrap()["email"].clone();
        let b = tx_get(&db, &mut txn, "acc", second).unwrap().unwrap()["email"].clone();
        tx_update(&db, &mut txn, "acc", first, json!({"email": b})).unwrap();
        tx_update(&db, &mut txn, "acc", second, json!({"email": a})).unwrap();
        txn.commit(&db).unwrap().wait_blocking().unwrap();
    }
    assert_eq!(stored(&db, "acc", "t").unwrap()["email"], "x@y");
    let ix = db.list_indexes(ENV, "acc").unwrap();
    assert_eq!(ix[0]["entries"], json!(2));
}

#[test]
fn commits_keep_index_entries_and_multikey_flags() {
    let (_d, db) = setup();
    let spec = IndexSpec {
        fields: IndexSpec::parse_fields("tags").unwrap(),
        unique: false,
        name: None,
    };
    db.create_index(ENV, "acc", &spec, false).unwrap();
    put(&db, "acc", json!({"_id": "a", "tags": "x"}));
    let mut txn = db.begin(ENV).unwrap();
    txn.insert(&db, "acc", vec![json!({"_id": "b", "tags": ["x", "y"]})])
        .unwrap();
    txn.remove(&db, "acc", &filter(&db, id("a"))).unwrap();
    txn.commit(&db).unwrap().wait_blocking().unwrap();
    // exact indexed counts read only entries: they are right only if the entries are
    assert_eq!(count(&db, "acc", json!({"tags": "x"})), 1);
    assert_eq!(count(&db, "acc", json!({"tags": "y"})), 1);
    let ix = db.list_indexes(ENV, "acc").unwrap();
    assert_eq!(
        (ix[0]["multikey"].clone(), ix[0]["entries"].clone()),
        (json!(true), json!(2))
    );
}

#[test]
fn run_transaction_retries_a_conflict_and_gives_up_after_the_last_attempt() {
    let (_d, db) = setup();
    put(&db, "acc", json!({"_id": "a", "n": 0}));
    let mut attempts = 0;
    let (seen, commit) = db
        .run_transaction(ENV, |tx| {
            attempts += 1;
            let n = balance(tx.get("acc", "a")?);
            if attempts == 1 {
                inc(&db, "acc", "a", "n", 10); // someone else writes meanwhile
            }
            tx.update("acc", "a", &json!({"$set": {"n": n + 1}}))?;
            Ok(n)
        })
        .unwrap();
    commit.wait_blocking().unwrap();
    assert_eq!((attempts, seen, balance(stored(&db, "acc", "a"))), (2, 10, 11));

    let mut attempts = 0;
    let r = db.run_transaction(ENV, |tx| {
        attempts += 1;
        let n = balance(tx.get("acc", "a")?);
        inc(&db, "acc", "a", "n", 1);
        tx.set("acc", "a", &json!({"n": n}))
    });
    assert!(is_conflict(&r));
    assert_eq!(attempts, RUN_ATTEMPTS);

    // an error of the closure is returned at once and writes nothing
    let mut attempts = 0;
    let r: Result<((), _), _> = db.run_transaction(ENV, |tx| {
        attempts += 1;
        tx.insert("log", json!({"_id": "never"}))?;
        Err(DbError::InvalidParam("insufficient funds".into()))
    });
    assert!(matches!(r, Err(DbError::InvalidParam(_))));
    assert_eq!((attempts, stored(&db, "log", "never")), (1, None));
}

#[test]
fn parallel_transfers_conserve_the_total() {
    let (_d, db) = setup();
    const ACCOUNTS: usize = 5;
    for i in 0..ACCOUNTS {
        put(&db, "acc", json!({"_id": format!("a{i}"), "n": 100}));
    }
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut done = 0;
                for k in 0..25usize {
                    let from = format!("a{}", (t + k) % ACCOUNTS);
                    let to = format!("a{}", (t + 2 * k + 1) % ACCOUNTS);
                    if from == to {
                        continue;
                    }
                    // run_transaction gives up after RUN_ATTEMPTS conflicts: the caller retries
                    loop {
                        let r = db.run_transaction(ENV, |tx| {
                            let a = balance(tx.get("acc", &from)?);
                            let b = balance(tx.get("acc", &to)?);
                            tx.update("acc", &from, &json!({"n": a - 7}))?;
                            tx.update("acc", &to, &json!({"n": b + 7}))?;
                            Ok(())
                        });
                        match r {
                            Ok((_, c)) => {
                                c.wait_blocking().unwrap();
                                done += 1;
                                break;
                            }
                            Err(DbError::TransactionConflict(_)) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                done
            })
        })
        .collect();
    let done: i64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(done > 150, "{done} transfers");
    let total: i64 = (0..ACCOUNTS)
        .map(|i| balance(stored(&db, "acc", &format!("a{i}"))))
        .sum();
    assert_eq!(total, 100 * ACCOUNTS as i64);
}

fn registry(ttl_ms: u64, max_open: usize, max_ops: usize) -> Arc<Transactions> {
    Transactions::new(TxnLimits {
        ttl: Duration::from_millis(ttl_ms),
        max_open,
        max_ops,
    })
}

#[test]
fn an_expired_transaction_changes_nothing_and_says_so() {
    let (_d, db) = setup();
    let txns = registry(100, 10, 10);
    let t = txns.begin(&db, ENV, "admin", None).unwrap();
    txns.with(&t, "admin", ENV, |txn| txn.insert(&db, "acc", vec![id("x")]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let r = txns.commit(&db, &t, "admin", ENV);
    assert!(
        matches!(&r, Err(DbError::TransactionExpired(m)) if m.contains("expired")),
        "{:?}",
        r.err()
    );
    assert_eq!(stored(&db, "acc", "x"), None);
    // later uses keep saying why
    let r = txns.with(&t, "admin", ENV, |txn| txn.get(&db, "acc", &filter(&db, id("x"))));
    assert!(matches!(r, Err(DbError::TransactionExpired(_))));

    // the sweeper discards abandoned ones and releases their buffered bytes
    txns.start_sweeper(Duration::from_millis(20));
    let t = txns.begin(&db, ENV, "admin", None).unwrap();
    txns.with(&t, "admin", ENV, |txn| {
        txn.insert(&db, "acc", vec![json!({"_id": "y", "pad": "p".repeat(1000)})])
    })
    .unwrap();
    assert!(txns.budget.used.load(Ordering::Acquire) > 1000);
    assert_eq!(txns.open_count(), 1);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(txns.open_count(), 0);
    assert_eq!(txns.budget.used.load(Ordering::Acquire), 0);
    assert!(matches!(
        txns.rollback(&t, "admin", ENV),
        Err(DbError::TransactionExpired(_))
    ));
    assert_eq!(stored(&db, "acc", "y"), None);
}

#[test]
fn rollback_discards_and_the_id_is_over() {
    let (_d, db) = setup();
    let txns = registry(10_000, 10, 10);
    let t = txns.begin(&db, ENV, "user:u1", Some(2)).unwrap();
    txns.with(&t, "user:u1", ENV, |txn| txn.insert(&db, "acc", vec![id("x")]))
        .unwrap();
    txns.rollback(&t, "user:u1", ENV).unwrap();
    assert_eq!(stored(&db, "acc", "x"), None);
    assert_eq!(txns.budget.used.load(Ordering::Acquire), 0);
    let r = txns.commit(&db, &t, "user:u1", ENV);
    assert!(
        matches!(&r, Err(DbError::TransactionNotExist(m)) if m.contains("rolled back")),
        "{:?}",
        r.err()
    );
    assert!(matches!(
        txns.rollback(&t, "user:u1", ENV),
        Err(DbError::TransactionNotExist(_))
    ));

    // committed ids are over too
    let t = txns.begin(&db, ENV, "user:u1", Some(2)).unwrap();
    txns.commit(&db, &t, "user:u1", ENV).unwrap().wait_blocking().unwrap();
    let r = txns.with(&t, "user:u1", ENV, |txn| txn.get(&db, "acc", &filter(&db, id("x"))));
    assert!(
        matches!(&r, Err(DbError::TransactionNotExist(m)) if m.contains("committed")),
        "{:?}",
        r.err()
    );
}

#[test]
fn a_transaction_is_bound_to_its_owner_and_env() {
    let (_d, db) = setup();
    db.create_env("other").unwrap().wait_blocking().unwrap();
    let txns = registry(10_000, 10, 10);
    let t = txns.begin(&db, ENV, "user:u1", Some(2)).unwrap();
    for (owner, env) in [("user:u2", ENV), ("admin", ENV), ("user:u1", "other")] {
        let r = txns.with(&t, owner, env, |txn| txn.get(&db, "acc", &filter(&db, id("x"))));
        assert!(
            matches!(&r, Err(DbError::TransactionNotExist(m)) if m.ends_with("does not exist")),
            "{owner}/{env}: {:?}",
            r.err()
        );
        assert!(txns.commit(&db, &t, owner, env).is_err());
        assert!(txns.rollback(&t, owner, env).is_err());
    }
    // still the owner's, untouched
    txns.rollback(&t, "user:u1", ENV).unwrap();
    // a stranger is not told what became of it
    let r = txns.rollback(&t, "user:u2", ENV);
    assert!(matches!(&r, Err(DbError::TransactionNotExist(m)) if m.ends_with("does not exist")));
    assert!(txns.begin(&db, "missing-env", "admin", None).is_err());
}

#[test]
fn open_transactions_operations_and_bytes_are_bounded() {
    let (_d, db) = setup();
    let txns = registry(10_000, 3, 4);
    let mine: Vec<String> = (0..2)
        .map(|_| txns.begin(&db, ENV, "user:u1", Some(2)).unwrap())
        .collect();
    assert!(matches!(
        txns.begin(&db, ENV, "user:u1", Some(2)),
        Err(DbError::TransactionLimit(_))
    ));
    let admin = txns.begin(&db, ENV, "admin", None).unwrap();
    assert!(matches!(
        txns.begin(&db, ENV, "admin", None),
        Err(DbError::TransactionLimit(_))
    ));
    txns.rollback(&mine[0], "user:u1", ENV).unwrap();
    txns.begin(&db, ENV, "user:u2", Some(2)).unwrap();

    // operations: 4 allowed, failed ones count, a batch counts each document
    let op = |f: &dyn Fn(&mut Txn) -> Result<(), DbError>| txns.with(&admin, "admin", ENV, f);
    op(&|txn| txn.insert(&db, "acc", vec![id("a"), id("b")]).map(drop)).unwrap();
    assert!(op(&|txn| txn.insert(&db, "acc", vec![id("a")]).map(drop)).is_err());
    op(&|txn| txn.get(&db, "acc", &filter(&db, id("a"))).map(drop)).unwrap();
    let r = op(&|txn| txn.get(&db, "acc", &filter(&db, id("a"))).map(drop));
    assert!(
        matches!(&r, Err(DbError::TransactionTooLarge(m)) if m.contains("4 operations")),
        "{r:?}"
    );
    // a refused operation leaves the transaction usable: its writes still commit
    txns.commit(&db, &admin, "admin", ENV).unwrap().wait_blocking().unwrap();
    assert!(stored(&db, "acc", "a").is_some() && stored(&db, "acc", "b").is_some());

    // bytes: one transaction buffers at most MAX_TXN_BYTES
    let mut txn = db.begin(ENV).unwrap();
    txn.max_bytes = 3000;
    txn.insert(&db, "log", vec![json!({"_id": "p1", "pad": "x".repeat(2000)})])
        .unwrap();
    let r = txn.insert(&db, "log", vec![json!({"_id": "p2", "pad": "x".repeat(2000)})]);
    assert!(matches!(r, Err(DbError::TransactionTooLarge(_))), "{r:?}");
    // replacing a buffered document counts its new size, not both
    let upd = db.update_spec(&json!({"pad": "y".repeat(2500)}), true).unwrap();
    txn.update(&db, "log", &filter(&db, id("p1")), &upd, false).unwrap();
    assert!(txn.bytes < 3000);
}

#[test]
fn the_shared_byte_budget_refuses_beyond_its_maximum_and_is_released() {
    let (_d, db) = setup();
    let txns = registry(10_000, 10, 10);
    let t1 = txns.begin(&db, ENV, "admin", None).unwrap();
    let t2 = txns.begin(&db, ENV, "admin", None).unwrap();
    let max = txns.budget.max;
    txns.budget.used.store(max - 500, Ordering::Release); // others hold almost everything
    let big = json!({"_id": "big", "pad": "x".repeat(1000)});
    let r = txns.with(&t1, "admin", ENV, |txn| txn.insert(&db, "acc", vec![big.clone()]));
    assert!(matches!(r, Err(DbError::TransactionLimit(_))), "{r:?}");
    txns.with(&t2, "admin", ENV, |txn| txn.insert(&db, "acc", vec![id("small")]))
        .unwrap();
    txns.budget.used.fetch_sub(max - 500, Ordering::AcqRel);
    txns.with(&t1, "admin", ENV, |txn| txn.insert(&db, "acc", vec![big.clone()]))
        .unwrap();
    txns.rollback(&t1, "admin", ENV).unwrap();
    txns.commit(&db, &t2, "admin", ENV).unwrap().wait_blocking().unwrap();
    assert_eq!(txns.budget.used.load(Ordering::Acquire), 0);
}

#[test]
fn a_conflict_ends_a_registered_transaction() {
    let (_d, db) = setup();
    put(&db, "acc", json!({"_id": "a", "n": 1}));
    let txns = registry(10_000, 10, 10);
    let t = txns.begin(&db, ENV, "admin", None).unwrap();
    txns.with(&t, "admin", ENV, |txn| txn.get(&db, "acc", &filter(&db, id("a"))))
        .unwrap();
    inc(&db, "acc", "a", "n", 1);
    let r = txns.with(&t, "admin", ENV, |txn| txn.get(&db, "acc", &filter(&db, id("a"))));
    assert!(is_conflict(&r));
    let r = txns.commit(&db, &t, "admin", ENV);
    assert!(
        matches!(&r, Err(DbError::TransactionNotExist(m)) if m.contains("aborted")),
        "{:?}",
        r.err()
    );
    assert_eq!(txns.open_count(), 0);
}

#[test]
fn the_collections_schema_is_checked_at_commit_and_a_violation_writes_nothing() {
    let (_d, db) = setup();
    put(&db, "acc", json!({"_id": "a", "n": 1}));
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}});
    db.set_collection_schema(ENV, "acc", Some(schema))
        .unwrap()
        .1
        .wait_blocking()
        .unwrap();
    let mut txn = db.begin(ENV).unwrap();
    tx_update(&db, &mut txn, "acc", "a", json!({"$inc": {"n": -5}})).unwrap();
    txn.insert(&db, "log", vec![json!({"_id": "l1"})]).unwrap();
    let err = txn.commit(&db).err().expect("the schema refuses n = -4");
    assert!(matches!(err, DbError::SchemaViolation(_)), "{err:?}");
    assert_eq!(balance(stored(&db, "acc", "a")), 1);
    assert_eq!(stored(&db, "log", "l1"), None, "all or nothing across collections");
    let mut txn = db.begin(ENV).unwrap();
    tx_update(&db, &mut txn, "acc", "a", json!({"$inc": {"n": 5}})).unwrap();
    txn.commit(&db).unwrap().wait_blocking().unwrap();
    assert_eq!(balance(stored(&db, "acc", "a")), 6);
}
