//! Lightbase: a self-hosted CloudBase (云开发) backend in one binary.
//!
//! # Layout
//! - `config`  — the one `Config` (flags = env vars = `lightbase.toml` = `--help`)
//! - `error`   — the one table of error codes every protocol renders
//! - `db`      — documents on an ordered KV store (sled): values, queries, updates, projections
//! - `auth`    — end users, sessions and tokens per env; admins and API keys; bearer verification
//! - `ratelimit` — token buckets per route class, per client IP and per user (no HTTP)
//! - `settings` — per-env runtime settings (rate limits), stored in the KV and cached in memory
//! - `http`    — protocol adapters: GATEWAY REST, CLOUD_API `/web`, admin API, health
//! - `cli`     — admin subcommands, through a running server or directly on the data dir
//!
//! Domain modules (`db`, `auth`, `rules`, `ratelimit`, `settings`) never import actix-web or `crate::http` (a test checks this).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod access;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod ratelimit;
pub mod rules;
pub mod settings;

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::{web, HttpServer};

pub use config::Config;
pub use http::{build_app, AppState};

/// Name of the file a running server writes into its data dir so admin commands find it.
pub const SERVER_FILE: &str = "server.json";

/// Opens the database under `config.dir`, serves on `listener` until `shutdown` resolves, then
/// lets in-flight requests finish, flushes everything to disk and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + 'static,
) -> std::io::Result<()> {
    let (dir, limits) = (config.dir.clone(), limits(&config));
    let db = web::block(move || db::Database::open(&dir, limits))
        .await
        .map_err(std::io::Error::other)?;
    let db = db.map_err(|e| std::io::Error::other(format!("cannot open data dir {}: {e}", config.dir.display())))?;
    let db = Arc::new(db);
    db::index::resume(&db).map_err(|e| std::io::Error::other(format!("cannot resume index builds: {e}")))?;
    let addr = listener.local_addr()?;
    let server_file = config.dir.join(SERVER_FILE);
    write_server_file(&server_file, addr)?;
    let state = web::Data::new(AppState::try_new(db.clone(), config).map_err(std::io::Error::other)?);
    let server = HttpServer::new(move || build_app(state.clone()))
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(30)
        .run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        handle.stop(true).await;
    });
    let served = server.await;
    let _ = std::fs::remove_file(&server_file);
    db.flush().map_err(|e| std::io::Error::other(e.to_string()))?;
    tracing::info!("stopped; all data flushed");
    served
}

fn limits(config: &Config) -> db::Limits {
    db::Limits {
        max_document_bytes: config.max_document_bytes,
        max_depth: config.max_depth,
        aggregate_memory_limit: config.aggregate_memory_limit,
        ..db::Limits::default()
    }
}

fn write_server_file(path: &Path, addr: std::net::SocketAddr) -> std::io::Result<()> {
    let body = serde_json::json!({ "pid": std::process::id(), "http": addr.to_string() });
    std::fs::write(path, body.to_string())
}

/// The address of the server running on `dir`, if its `server.json` says one is.
pub fn server_address(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(PathBuf::from(dir).join(SERVER_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["http"].as_str().map(str::to_string)
}
