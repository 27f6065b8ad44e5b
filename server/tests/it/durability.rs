//! Durability and concurrency on the real binary and real sockets: `kill -9` mid-load loses no
//! acknowledged write and shows no half-written batch; concurrent `$inc`s never lose an update.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

const SUFFIXES: [&str; 3] = ["a", "b", "c"];

#[test]
fn kill_9_during_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let docs = format!("{base}{DB}/collections/load/documents");
    let mut server = spawn_server(dir.path(), port);
    let (s, _) = http(
        "POST",
        &format!("{base}{DB}/collections"),
        Some(&json!({"collectionName": "load"})),
    );
    assert_eq!(s, 200);

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let attempted: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..6)
            .map(|t| {
                let (stop, acked, attempted, docs) = (stop.clone(), acked.clone(), attempted.clone(), docs.clone());
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        // even writers send batches of three (after a crash all three exist or
                        // none does), odd writers single documents (the single-key write path)
                        let id = format!("r{round}-t{t}-{i}");
                        let size = if t % 2 == 0 { 3 } else { 1 };
                        attempted.lock().unwrap().push((id.clone(), size));
                        let batch: Vec<Value> = SUFFIXES[..size]
                            .iter()
                            .map(|s| json!({"_id": format!("{id}-{s}"), "n": i}))
                            .collect();
                        let (status, body) = http("POST", &docs, Some(&json!({ "data": batch })));
                        if status == 200 && body["insertedIds"].as_array().map(Vec::len) == Some(size) {
                            acked.lock().unwrap().push(id);
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700));
        server.kill().expect("kill -9"); // SIGKILL
        server.wait().expect("reap");
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().expect("writer");
        }
        server = spawn_server(dir.path(), port);
        let acked_now: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
        assert!(!acked_now.is_empty(), "round {round}: no write was acknowledged");
        for (id, size) in attempted.lock().unwrap().iter() {
            let present: Vec<bool> = SUFFIXES[..*size]
                .iter()
                .map(|s| http("GET", &format!("{docs}/{id}-{s}"), None).0 == 200)
                .collect();
            assert!(
                present.iter().all(|p| *p) || present.iter().all(|p| !*p),
                "round {round}: batch {id} is half-written: {present:?}"
            );
            if acked_now.contains(id) {
                assert!(present[0], "round {round}: acknowledged batch {id} was lost");
            }
        }
    }
    let (_, count) = http("GET", &format!("{docs}?count=true"), None);
    assert!(count["total"].as_u64().unwrap() >= acked.lock().unwrap().len() as u64);
    server.kill().expect("kill");
    server.wait().expect("reap");
}

#[test]
fn a_thousand_concurrent_increments_add_exactly_a_thousand() {
    let server = SocketServer::start();
    let base = server.base.clone();
    http(
        "POST",
        &format!("{base}{DB}/collections"),
        Some(&json!({"collectionName": "counters"})),
    );
    let (s, _) = http(
        "POST",
        &format!("{base}{DB}/collections/counters/documents"),
        Some(&json!({"data": [{"_id": "c1", "n": 0}]})),
    );
    assert_eq!(s, 200);
    let started = Instant::now();
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let url = format!("{base}{DB}/collections/counters/documents");
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let body = json!({"query": {"_id": "c1"}, "data": {"$inc": {"n": 1}}, "multi": false});
                    let (status, reply) = http("PATCH", &url, Some(&body));
                    assert_eq!((status, reply["updated"].clone()), (200, json!(1)), "{reply}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("incrementer");
    }
    let (_, doc) = http("GET", &format!("{base}{DB}/collections/counters/documents/c1"), None);
    assert_eq!(doc["n"], json!(1000), "after {:?}", started.elapsed());
    // the same through CLOUD_API and a multi update: 20 concurrent multi-updates over 3 docs
    http(
        "POST",
        &format!("{base}{DB}/collections/counters/documents"),
        Some(&json!({"data": [{"g": 1, "n": 0}, {"g": 1, "n": 0}, {"g": 1, "n": 0}]})),
    );
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let url = format!("{base}/web?env=default");
            std::thread::spawn(move || {
                let body = json!({"action": "database.updateDocument", "collectionName": "counters",
                    "query": {"g": 1}, "data": {"$inc": {"n": 1}}, "multi": true, "merge": true});
                let (status, reply) = http("POST", &url, Some(&body));
                assert_eq!((status, reply["data"]["updated"].clone()), (200, json!(3)), "{reply}");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("multi incrementer");
    }
    let q = enc(r#"{"g":1}"#);
    let (_, list) = http(
        "GET",
        &format!("{base}{DB}/collections/counters/documents?query={q}"),
        None,
    );
    let ns: Vec<Value> = list["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["n"].clone())
        .collect();
    assert_eq!(ns, vec![json!(20), json!(20), json!(20)]);
    server.stop().expect("clean stop");
}
