//! The one `Config`: command-line flags = `LIGHTBASE_*` env vars = `lightbase.toml` keys = `--help` text.
//!
//! Precedence: built-in defaults < `lightbase.toml` < environment variables < flags. clap reads flags
//! and env vars into `Option`s; anything still unset is taken from the TOML file, then the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
pub const DEFAULT_DIR: &str = "./lb_data";
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
pub const DEFAULT_MAX_DEPTH: usize = 64;

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
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment
    Create { name: String },
    /// List environments
    List,
}

#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Create a collection in an environment
    Create { env: String, name: String },
    /// List the collections of an environment with their document counts
    List { env: String },
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
}

/// Resolved settings of a server or an admin command.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: SocketAddr,
    pub dir: PathBuf,
    pub max_body_bytes: usize,
    pub max_document_bytes: usize,
    pub max_depth: usize,
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
        };
        if config.max_depth == 0 || config.max_depth > DEFAULT_MAX_DEPTH {
            return Err(format!("max_depth must be between 1 and {DEFAULT_MAX_DEPTH}"));
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
