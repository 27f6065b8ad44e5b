//! The one `Config`: command-line flags = `LIGHTBASE_*` env vars = `lightbase.toml` keys = `--help` text.
//!
//! Precedence: built-in defaults < `lightbase.toml` < environment variables < flags. clap reads flags
//! and env vars into `Option`s; anything still unset is taken from the TOML file, then the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::ratelimit::{Rate, RateLimits, TrustedProxies};

pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
pub const DEFAULT_DIR: &str = "./lb_data";
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
pub const DEFAULT_MAX_DEPTH: usize = 64;
pub const DEFAULT_ACCESS_TOKEN_TTL: u64 = 2 * 3600;
pub const DEFAULT_REFRESH_TOKEN_TTL: u64 = 30 * 24 * 3600;
pub const DEFAULT_ADMIN_TOKEN_TTL: u64 = 24 * 3600;
pub const DEFAULT_WECHAT_API_BASE: &str = "https://api.weixin.qq.com";
pub const DEFAULT_TRANSACTION_TTL: u64 = 10;
pub const DEFAULT_TRANSACTION_MAX_OPEN: usize = 1000;
pub const DEFAULT_TRANSACTION_MAX_OPS: usize = 100;
pub const DEFAULT_AGGREGATE_MEMORY_LIMIT: usize = 100 * 1024 * 1024;
/// The smallest accepted `aggregate_memory_limit` (64 KiB).
pub const MIN_AGGREGATE_MEMORY_LIMIT: usize = 64 * 1024;

/// Lightbase: a self-hosted CloudBase (云开发) backend in one binary.
#[derive(Debug, Parser)]
#[command(name = "lightbase", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand understands.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// Data directory (created if missing) [default: ./lb_data]
    #[arg(long, global = true, env = "LIGHTBASE_DIR", value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// Config file; when not given, ./lightbase.toml is read if it exists
    #[arg(long, global = true, env = "LIGHTBASE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server
    Serve(ServeArgs),
    /// Manage environments (works with or without a running server)
    #[command(subcommand)]
    Env(EnvCommand),
    /// Manage collections (works with or without a running server)
    #[command(subcommand)]
    Collection(CollectionCommand),
    /// Manage the indexes of a collection (works with or without a running server)
    #[command(subcommand)]
    Index(IndexCommand),
    /// Manage admins and server API keys
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print docs/errors.md, the table of error codes
    ErrorsDoc,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "LIGHTBASE_HTTP", value_name = "ADDR:PORT")]
    pub http: Option<SocketAddr>,
    /// Largest accepted request body in bytes [default: 10485760]
    #[arg(long, env = "LIGHTBASE_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest stored document in bytes (serialized JSON) [default: 1048576]
    #[arg(long, env = "LIGHTBASE_MAX_DOCUMENT_BYTES", value_name = "BYTES")]
    pub max_document_bytes: Option<usize>,
    /// Deepest allowed nesting of documents and queries, 1-64 [default: 64]
    #[arg(long, env = "LIGHTBASE_MAX_DEPTH", value_name = "LEVELS")]
    pub max_depth: Option<usize>,
    /// Lifetime of end users' access tokens in seconds [default: 7200]
    #[arg(long, env = "LIGHTBASE_ACCESS_TOKEN_TTL", value_name = "SECONDS")]
    pub access_token_ttl: Option<u64>,
    /// Lifetime of end users' refresh tokens (and idle sessions) in seconds [default: 2592000]
    #[arg(long, env = "LIGHTBASE_REFRESH_TOKEN_TTL", value_name = "SECONDS")]
    pub refresh_token_ttl: Option<u64>,
    /// Lifetime of admin tokens from /admin/v1/login in seconds [default: 86400]
    #[arg(long, env = "LIGHTBASE_ADMIN_TOKEN_TTL", value_name = "SECONDS")]
    pub admin_token_ttl: Option<u64>,
    /// Base URL of WeChat's API (jscode2session); point it at a fake server for tests
    /// [default: https://api.weixin.qq.com]
    #[arg(long, env = "LIGHTBASE_WECHAT_API_BASE", value_name = "URL")]
    pub wechat_api_base: Option<String>,
    /// A server API key given by configuration (at least 32 characters), accepted like a created
    /// key as `Authorization: Bearer`: for deploy scripts and CI [default: none]
    #[arg(long, env = "LIGHTBASE_ADMIN_KEY", value_name = "KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Most documents one list request returns to an end user (web/app clients) [default: 100]
    #[arg(long, env = "LIGHTBASE_CLIENT_MAX_LIMIT", value_name = "N")]
    pub client_max_limit: Option<usize>,
    /// Most documents one list request returns to a mini-program (WeChat) user, as wx.cloud [default: 20]
    #[arg(long, env = "LIGHTBASE_WX_MAX_LIMIT", value_name = "N")]
    pub wx_max_limit: Option<usize>,
    /// Seconds a client transaction may stay open before it is discarded (1-3600) [default: 10]
    #[arg(long, env = "LIGHTBASE_TRANSACTION_TTL", value_name = "SECONDS")]
    pub transaction_ttl: Option<u64>,
    /// Most client transactions open at once on the server (1-100000) [default: 1000]
    #[arg(long, env = "LIGHTBASE_TRANSACTION_MAX_OPEN", value_name = "N")]
    pub transaction_max_open: Option<usize>,
    /// Most operations (reads and writes) in one client transaction (1-10000) [default: 100]
    #[arg(long, env = "LIGHTBASE_TRANSACTION_MAX_OPS", value_name = "N")]
    pub transaction_max_ops: Option<usize>,
    /// Bytes one aggregation may hold in memory ($group, $sort, $bucketAuto, $sample, $facet, $lookup, $geoNear),
    /// estimated; more fails with DATABASE_AGGREGATE_MEMORY_LIMIT_EXCEEDED [default: 104857600]
    #[arg(long, env = "LIGHTBASE_AGGREGATE_MEMORY_LIMIT", value_name = "BYTES")]
    pub aggregate_memory_limit: Option<usize>,
    #[command(flatten)]
    pub limits: Box<RateLimitArgs>,
}

/// Rate limiting and client addresses (boxed in [`ServeArgs`]: it is large).
#[derive(Debug, Args, Clone, Default)]
pub struct RateLimitArgs {
    /// Rate limit of /auth/* per client IP and per user, COUNT/UNIT[:BURST] [default: 50000/s:100000]
    #[arg(long, env = "LIGHTBASE_RATE_LIMIT_AUTH", value_name = "RATE")]
    pub rate_limit_auth: Option<Rate>,
    /// Rate limit of password and ticket sign-in (/auth/v1/signin, /auth/v1/signin/custom,
    /// /admin/v1/login) per client IP and per account [default: 10/min:10]
    #[arg(long, env = "LIGHTBASE_RATE_LIMIT_SIGNIN", value_name = "RATE")]
    pub rate_limit_signin: Option<Rate>,
    /// Rate limit of /v1/database/* and /web per client IP and per user [default: 100000/s:200000]
    #[arg(long, env = "LIGHTBASE_RATE_LIMIT_DB", value_name = "RATE")]
    pub rate_limit_db: Option<Rate>,
    /// Rate limit of /v1/storages/* per client IP and per user [default: 50000/s:100000]
    #[arg(long, env = "LIGHTBASE_RATE_LIMIT_STORAGE", value_name = "RATE")]
    pub rate_limit_storage: Option<Rate>,
    /// Rate limit of /v1/functions/* per client IP and per user [default: 50000/s:100000]
    #[arg(long, env = "LIGHTBASE_RATE_LIMIT_FUNCTIONS", value_name = "RATE")]
    pub rate_limit_functions: Option<Rate>,
    /// Rate limit of /admin/v1/* per client IP [default: 10000/s:20000]
    #[arg(long, env = "LIGHTBASE_RATE_LIMIT_ADMIN", value_name = "RATE")]
    pub rate_limit_admin: Option<Rate>,
    /// Reverse proxies whose X-Forwarded-For is believed: comma-separated IPs and CIDR blocks
    /// [default: none]
    #[arg(long, env = "LIGHTBASE_TRUSTED_PROXIES", value_name = "IP[/BITS],...")]
    pub trusted_proxies: Option<TrustedProxies>,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment
    Create { name: String },
    /// List environments
    List,
    /// Show or change an environment's runtime settings (its rate limits), applied at once by a
    /// running server. Without options: show them.
    Settings {
        name: String,
        /// Override one route class's rate limit: CLASS=RATE with CLASS auth, signin, database,
        /// storage or functions and RATE like 200/s:400, or CLASS=default for the server's (repeatable)
        #[arg(long = "rate-limit", value_name = "CLASS=RATE")]
        rate_limits: Vec<String>,
        /// Put every class back to the server's rate limit (before any --rate-limit)
        #[arg(long)]
        reset: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin (works with or without a running server; through a running server the
    /// first admin needs no token when created from the same machine, later ones need --token)
    Create {
        /// The admin's email (the login name)
        #[arg(long)]
        email: String,
        /// The password, at least 8 characters (LIGHTBASE_ADMIN_PASSWORD keeps it out of `ps`)
        #[arg(long, env = "LIGHTBASE_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        /// An admin token or API key, for creating further admins through a running server
        #[arg(long, env = "LIGHTBASE_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Manage server API keys (only with the server stopped: works on the data dir directly;
    /// while it runs, use POST/GET/DELETE /admin/v1/keys)
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key and print it (shown this once; only its hash is stored)
    Create { name: String },
    /// List API keys (id, name, first characters, creation time)
    List,
    /// Revoke an API key by id
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Create a collection in an environment
    Create { env: String, name: String },
    /// List the collections of an environment with their document counts
    List { env: String },
    /// Show, set, clear or check a collection's JSON Schema (without a flag: print it)
    Schema {
        env: String,
        coll: String,
        /// Set the schema from a JSON file (`-` reads standard input); existing documents are not rewritten
        #[arg(long, value_name = "FILE", conflicts_with_all = ["clear", "check"])]
        set: Option<PathBuf>,
        /// Remove the schema
        #[arg(long, conflicts_with = "check")]
        clear: bool,
        /// Count the stored documents that violate the schema and show some of them
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Subcommand, Clone)]
pub enum IndexCommand {
    /// Create an index (built in the background by a running server, else before returning)
    Create {
        env: String,
        coll: String,
        /// Fields, comma-separated, each optionally `:desc` (e.g. `city,age:desc`); one `FIELD:2dsphere` makes a geo index
        fields: String,
        /// Refuse documents that repeat an indexed value
        #[arg(long)]
        unique: bool,
        /// Index name [default: from the fields, e.g. `city_1_age_-1`]
        #[arg(long)]
        name: Option<String>,
    },
    /// List the indexes of a collection with their state, build progress and size
    List { env: String, coll: String },
    /// Drop an index by name
    Drop { env: String, coll: String, name: String },
}

/// `lightbase.toml`: the same keys as the flags, with `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http: Option<SocketAddr>,
    dir: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    max_document_bytes: Option<usize>,
    max_depth: Option<usize>,
    access_token_ttl: Option<u64>,
    refresh_token_ttl: Option<u64>,
    admin_token_ttl: Option<u64>,
    wechat_api_base: Option<String>,
    admin_key: Option<String>,
    client_max_limit: Option<usize>,
    wx_max_limit: Option<usize>,
    transaction_ttl: Option<u64>,
    transaction_max_open: Option<usize>,
    transaction_max_ops: Option<usize>,
    aggregate_memory_limit: Option<usize>,
    rate_limit_auth: Option<Rate>,
    rate_limit_signin: Option<Rate>,
    rate_limit_db: Option<Rate>,
    rate_limit_storage: Option<Rate>,
    rate_limit_functions: Option<Rate>,
    rate_limit_admin: Option<Rate>,
    trusted_proxies: Option<TrustedProxies>,
}

/// Resolved settings of a server or an admin command.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: SocketAddr,
    pub dir: PathBuf,
    pub max_body_bytes: usize,
    pub max_document_bytes: usize,
    pub max_depth: usize,
    /// Seconds.
    pub access_token_ttl: u64,
    pub refresh_token_ttl: u64,
    pub admin_token_ttl: u64,
    pub wechat_api_base: String,
    pub admin_key: Option<String>,
    pub client_max_limit: usize,
    pub wx_max_limit: usize,
    /// Seconds.
    pub transaction_ttl: u64,
    pub transaction_max_open: usize,
    pub transaction_max_ops: usize,
    /// Bytes.
    pub aggregate_memory_limit: usize,
    pub rate_limits: RateLimits,
    pub trusted_proxies: TrustedProxies,
}

impl Config {
    /// Defaults only, with the given data dir (used by tests).
    pub fn with_dir(dir: impl Into<PathBuf>) -> Config {
        Config {
            http: parse_default_addr(),
            dir: dir.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            refresh_token_ttl: DEFAULT_REFRESH_TOKEN_TTL,
            admin_token_ttl: DEFAULT_ADMIN_TOKEN_TTL,
            wechat_api_base: DEFAULT_WECHAT_API_BASE.to_string(),
            admin_key: None,
            client_max_limit: 100,
            wx_max_limit: 20,
            transaction_ttl: DEFAULT_TRANSACTION_TTL,
            transaction_max_open: DEFAULT_TRANSACTION_MAX_OPEN,
            transaction_max_ops: DEFAULT_TRANSACTION_MAX_OPS,
            aggregate_memory_limit: DEFAULT_AGGREGATE_MEMORY_LIMIT,
            rate_limits: RateLimits::default(),
            trusted_proxies: TrustedProxies::default(),
        }
    }

    /// Merges flags/env (already in `global` and `serve`) over the TOML file over the defaults.
    pub fn resolve(global: &GlobalArgs, serve: &ServeArgs) -> Result<Config, String> {
        let file = match &global.config {
            Some(path) => read_file_config(path)?,
            None if Path::new("lightbase.toml").exists() => read_file_config(Path::new("lightbase.toml"))?,
            None => FileConfig::default(),
        };
        let config = Config {
            http: serve.http.or(file.http).unwrap_or_else(parse_default_addr),
            dir: global
                .dir
                .clone()
                .or(file.dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)),
            max_body_bytes: serve
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(DEFAULT_MAX_BODY_BYTES),
            max_document_bytes: serve
                .max_document_bytes
                .or(file.max_document_bytes)
                .unwrap_or(DEFAULT_MAX_DOCUMENT_BYTES),
            max_depth: serve.max_depth.or(file.max_depth).unwrap_or(DEFAULT_MAX_DEPTH),
            access_token_ttl: serve
                .access_token_ttl
                .or(file.access_token_ttl)
                .unwrap_or(DEFAULT_ACCESS_TOKEN_TTL),
            refresh_token_ttl: serve
                .refresh_token_ttl
                .or(file.refresh_token_ttl)
                .unwrap_or(DEFAULT_REFRESH_TOKEN_TTL),
            admin_token_ttl: serve
                .admin_token_ttl
                .or(file.admin_token_ttl)
                .unwrap_or(DEFAULT_ADMIN_TOKEN_TTL),
            wechat_api_base: serve
                .wechat_api_base
                .clone()
                .or(file.wechat_api_base)
                .unwrap_or_else(|| DEFAULT_WECHAT_API_BASE.to_string()),
            admin_key: serve.admin_key.clone().or(file.admin_key),
            client_max_limit: serve.client_max_limit.or(file.client_max_limit).unwrap_or(100),
            wx_max_limit: serve.wx_max_limit.or(file.wx_max_limit).unwrap_or(20),
            transaction_ttl: serve
                .transaction_ttl
                .or(file.transaction_ttl)
                .unwrap_or(DEFAULT_TRANSACTION_TTL),
            transaction_max_open: serve
                .transaction_max_open
                .or(file.transaction_max_open)
                .unwrap_or(DEFAULT_TRANSACTION_MAX_OPEN),
            transaction_max_ops: serve
                .transaction_max_ops
                .or(file.transaction_max_ops)
                .unwrap_or(DEFAULT_TRANSACTION_MAX_OPS),
            aggregate_memory_limit: serve
                .aggregate_memory_limit
                .or(file.aggregate_memory_limit)
                .unwrap_or(DEFAULT_AGGREGATE_MEMORY_LIMIT),
            rate_limits: {
                let d = RateLimits::default();
                let l = &serve.limits;
                RateLimits {
                    auth: l.rate_limit_auth.or(file.rate_limit_auth).unwrap_or(d.auth),
                    signin: l.rate_limit_signin.or(file.rate_limit_signin).unwrap_or(d.signin),
                    database: l.rate_limit_db.or(file.rate_limit_db).unwrap_or(d.database),
                    storage: l.rate_limit_storage.or(file.rate_limit_storage).unwrap_or(d.storage),
                    functions: l
                        .rate_limit_functions
                        .or(file.rate_limit_functions)
                        .unwrap_or(d.functions),
                    admin: l.rate_limit_admin.or(file.rate_limit_admin).unwrap_or(d.admin),
                }
            },
            trusted_proxies: serve
                .limits
                .trusted_proxies
                .clone()
                .or(file.trusted_proxies)
                .unwrap_or_default(),
        };
        if config.max_depth == 0 || config.max_depth > DEFAULT_MAX_DEPTH {
            return Err(format!("max_depth must be between 1 and {DEFAULT_MAX_DEPTH}"));
        }
        for (name, secs) in [
            ("access_token_ttl", config.access_token_ttl),
            ("refresh_token_ttl", config.refresh_token_ttl),
            ("admin_token_ttl", config.admin_token_ttl),
        ] {
            // up to ten years: keeps every expiry computation far from overflow
            if secs == 0 || secs > 10 * 365 * 24 * 3600 {
                return Err(format!("{name} must be between 1 and 315360000 seconds"));
            }
        }
        if config.admin_key.as_ref().is_some_and(|k| k.len() < 32) {
            return Err("admin_key must be at least 32 characters".into());
        }
        if !(1..=1000).contains(&config.client_max_limit) || !(1..=1000).contains(&config.wx_max_limit) {
            return Err("client_max_limit and wx_max_limit must be between 1 and 1000".into());
        }
        if !(1..=3600).contains(&config.transaction_ttl) {
            return Err("transaction_ttl must be between 1 and 3600 seconds".into());
        }
        if !(1..=100_000).contains(&config.transaction_max_open) || !(1..=10_000).contains(&config.transaction_max_ops)
        {
            return Err(
                "transaction_max_open must be between 1 and 100000, transaction_max_ops between 1 and 10000".into(),
            );
        }
        if config.aggregate_memory_limit < MIN_AGGREGATE_MEMORY_LIMIT {
            return Err(format!(
                "aggregate_memory_limit must be at least {MIN_AGGREGATE_MEMORY_LIMIT} bytes"
            ));
        }
        if !(config.wechat_api_base.starts_with("http://") || config.wechat_api_base.starts_with("https://")) {
            return Err("wechat_api_base must be an http:// or https:// URL".into());
        }
        Ok(config)
    }
}

fn parse_default_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn read_file_config(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("invalid {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_address_matches_the_documented_one() {
        assert_eq!(parse_default_addr().to_string(), DEFAULT_HTTP);
    }

    #[test]
    fn flags_beat_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lightbase.toml");
        std::fs::write(&path, "http = \"127.0.0.1:9000\"\nmax_depth = 10\ndir = \"/tmp/x\"\n").unwrap();
        let global = GlobalArgs {
            dir: Some("/tmp/y".into()),
            config: Some(path),
        };
        let serve = ServeArgs {
            max_depth: Some(20),
            ..Default::default()
        };
        let c = Config::resolve(&global, &serve).unwrap();
        assert_eq!(c.http.to_string(), "127.0.0.1:9000");
        assert_eq!(c.max_depth, 20);
        assert_eq!(c.dir, PathBuf::from("/tmp/y"));
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn rate_limits_and_trusted_proxies_resolve_like_every_option() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lightbase.toml");
        std::fs::write(
            &path,
            "rate_limit_signin = \"5/min:2\"\nrate_limit_db = \"10/s\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
        )
        .unwrap();
        let global = GlobalArgs {
            dir: None,
            config: Some(path.clone()),
        };
        let serve = ServeArgs {
            limits: Box::new(RateLimitArgs {
                rate_limit_db: Some("20/s:40".parse().unwrap()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Config::resolve(&global, &serve).unwrap();
        assert_eq!(c.rate_limits.signin.to_string(), "5/min:2");
        assert_eq!(c.rate_limits.database.to_string(), "20/s:40");
        assert_eq!(c.rate_limits.auth, RateLimits::default().auth);
        assert!(c.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(c.trusted_proxies.contains("::1".parse().unwrap()));
        assert!(!c.trusted_proxies.contains("11.0.0.1".parse().unwrap()));
        std::fs::write(&path, "trusted_proxies = \"127.0.0.1, 10.0.0.0/8\"\n").unwrap();
        let c = Config::resolve(&global, &ServeArgs::default()).unwrap();
        assert_eq!(c.trusted_proxies.0.len(), 2);
        std::fs::write(&path, "rate_limit_auth = \"lots\"\n").unwrap();
        assert!(Config::resolve(&global, &ServeArgs::default()).is_err());
        let d = Config::with_dir("/tmp/z");
        assert!(d.trusted_proxies.is_empty());
        assert_eq!(d.rate_limits, RateLimits::default());
    }

    #[test]
    fn token_lifetimes_and_the_wechat_base_resolve_like_every_option() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lightbase.toml");
        std::fs::write(
            &path,
            "access_token_ttl = 60\nrefresh_token_ttl = 600\nwechat_api_base = \"http://127.0.0.1:9\"\n",
        )
        .unwrap();
        let global = GlobalArgs {
            dir: None,
            config: Some(path.clone()),
        };
        let serve = ServeArgs {
            refresh_token_ttl: Some(120),
            ..Default::default()
        };
        let c = Config::resolve(&global, &serve).unwrap();
        assert_eq!(c.access_token_ttl, 60);
        assert_eq!(c.refresh_token_ttl, 120);
        assert_eq!(c.admin_token_ttl, DEFAULT_ADMIN_TOKEN_TTL);
        assert_eq!(c.wechat_api_base, "http://127.0.0.1:9");
        let d = Config::with_dir("/tmp/z");
        assert_eq!(
            (d.access_token_ttl, d.wechat_api_base.as_str()),
            (7200, DEFAULT_WECHAT_API_BASE)
        );
        for bad in ["access_token_ttl = 0\n", "wechat_api_base = \"ftp://x\"\n"] {
            std::fs::write(&path, bad).unwrap();
            assert!(Config::resolve(&global, &ServeArgs::default()).is_err(), "{bad}");
        }
    }

    #[test]
    fn transaction_limits_resolve_like_every_option() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lightbase.toml");
        std::fs::write(&path, "transaction_ttl = 30\ntransaction_max_ops = 7\n").unwrap();
        let global = GlobalArgs {
            dir: None,
            config: Some(path.clone()),
        };
        let serve = ServeArgs {
            transaction_max_ops: Some(9),
            ..Default::default()
        };
        let c = Config::resolve(&global, &serve).unwrap();
        assert_eq!(
            (c.transaction_ttl, c.transaction_max_ops, c.transaction_max_open),
            (30, 9, DEFAULT_TRANSACTION_MAX_OPEN)
        );
        let d = Config::with_dir("/tmp/z");
        assert_eq!((d.transaction_ttl, d.transaction_max_ops), (10, 100));
        for bad in [
            "transaction_ttl = 0\n",
            "transaction_ttl = 3601\n",
            "transaction_max_open = 0\n",
            "transaction_max_ops = 10001\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(Config::resolve(&global, &ServeArgs::default()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_aggregate_memory_limit_resolves_like_every_option() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lightbase.toml");
        std::fs::write(&path, "aggregate_memory_limit = 1048576\n").unwrap();
        let global = GlobalArgs {
            dir: None,
            config: Some(path.clone()),
        };
        let c = Config::resolve(&global, &ServeArgs::default()).unwrap();
        assert_eq!(c.aggregate_memory_limit, 1_048_576);
        let serve = ServeArgs {
            aggregate_memory_limit: Some(2_000_000),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(&global, &serve).unwrap().aggregate_memory_limit,
            2_000_000
        );
        assert_eq!(
            Config::with_dir("/tmp/z").aggregate_memory_limit,
            DEFAULT_AGGREGATE_MEMORY_LIMIT
        );
        std::fs::write(&path, "aggregate_memory_limit = 100\n").unwrap();
        assert!(Config::resolve(&global, &ServeArgs::default())
            .unwrap_err()
            .contains("aggregate_memory_limit"));
    }

    #[test]
    fn unknown_or_bad_keys_in_the_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lightbase.toml");
        std::fs::write(&path, "htp = \"x\"\n").unwrap();
        let global = GlobalArgs {
            dir: None,
            config: Some(path.clone()),
        };
        assert!(Config::resolve(&global, &ServeArgs::default())
            .unwrap_err()
            .contains("unknown field"));
        std::fs::write(&path, "max_depth = 1000\n").unwrap();
        assert!(Config::resolve(&global, &ServeArgs::default()).is_err());
    }
}
