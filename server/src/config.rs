//! Startup configuration: flags with `BACKSTOP_*` environment variables of the same name
//! (DESIGN section 9), validated before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use engine::{EngineConfig, Error, Result};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Backstop: configuration backups for a self-hosted application.
#[derive(Debug, Parser)]
#[command(name = "backstop", version, about, propagate_version = true)]
pub struct Cli {
    /// Folder holding app.db, state.db, logos/, recordings/, backups/, plugins/.
    #[arg(
        long,
        env = "BACKSTOP_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Content database URL (default: sqlite://<data>/app.db).
    #[arg(long, env = "BACKSTOP_CONTENT_DB", global = true)]
    pub content_db: Option<String>,
    /// State database URL (default: sqlite://<data>/state.db).
    #[arg(long, env = "BACKSTOP_STATE_DB", global = true)]
    pub state_db: Option<String>,
    /// Log line format on stderr.
    #[arg(
        long,
        env = "BACKSTOP_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Seed demo content into an empty content DB (1) or leave it empty (0).
    #[arg(long, env = "BACKSTOP_DEMO", default_value = "1", value_parser = parse_flag, global = true)]
    pub demo: bool,
    /// How long one request to a destination is retried before that copy fails, in
    /// seconds (a store that is down for longer fails the copy; it can be retried later).
    #[arg(
        long,
        env = "BACKSTOP_COPY_RETRY_SECS",
        default_value_t = 180,
        global = true
    )]
    pub copy_retry_secs: u64,
    #[command(subcommand)]
    pub command: Command,
}

fn parse_flag(s: &str) -> std::result::Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected 1 or 0 (or true/false), got {s:?}")),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web UI and the API.
    Serve(ServeArgs),
    /// Take a backup now (refused while a server holds the same data dir).
    Backup {
        /// Include the recordings directory.
        #[arg(long)]
        include_recordings: bool,
    },
    /// Restore an archive (refused while a server holds the same data dir). An encrypted
    /// `.age` archive is decrypted with the instance key, or the key in `--identity`.
    Restore {
        file: PathBuf,
        /// A key file for an encrypted archive: the emergency kit, or any file with an
        /// `AGE-SECRET-KEY-1...` line.
        #[arg(long)]
        identity: Option<PathBuf>,
    },
    /// Check an archive's integrity without restoring. An encrypted `.age` archive is read
    /// through the instance key, or the key in `--identity`.
    Verify {
        file: PathBuf,
        /// A key file for an encrypted archive: the emergency kit, or any file with an
        /// `AGE-SECRET-KEY-1...` line.
        #[arg(long)]
        identity: Option<PathBuf>,
    },
    /// List backup jobs.
    List,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Demo content.
    #[command(subcommand)]
    Demo(DemoCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (use port 0 for a free port).
    #[arg(long, env = "BACKSTOP_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Username of the first admin (only used when no admin exists).
    #[arg(long, env = "BACKSTOP_ADMIN_USER", default_value = "admin")]
    pub admin_user: String,
    /// Password of the first admin; generated and printed once when unset.
    #[arg(long, env = "BACKSTOP_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Folder with the built UI assets (pkg/ with the hydration bundle).
    #[arg(long, env = "BACKSTOP_SITE_DIR", default_value = "target/site")]
    pub site_dir: PathBuf,
    /// Largest accepted upload in MiB.
    #[arg(long, env = "BACKSTOP_UPLOAD_LIMIT_MB", default_value_t = 10240)]
    pub upload_limit_mb: u64,
    /// Mark session cookies Secure (set when served over HTTPS).
    #[arg(long, env = "BACKSTOP_SECURE_COOKIES", default_value = "0", value_parser = parse_flag)]
    pub secure_cookies: bool,
    /// Plugin development: reload a plugin whose files changed (checked before each job
    /// step and when the Plugins page lists them), without restarting the server.
    #[arg(long, env = "BACKSTOP_PLUGIN_DEV", default_value = "0", value_parser = parse_flag)]
    pub plugin_dev: bool,
    /// Install the first-party plugins this binary carries (`recordings`, `custom-dirs`,
    /// `space-guard`) into `<data>/plugins/`, disabled until enabled; see `bundled.rs`.
    #[arg(long, env = "BACKSTOP_BUNDLED_PLUGINS", default_value = "1", value_parser = parse_flag)]
    pub bundled_plugins: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account; the password is read from stdin.
    Create {
        name: String,
        #[arg(long, value_parser = ["admin", "viewer"], default_value = "viewer")]
        role: String,
    },
    /// Set a new password (read from stdin).
    ResetPassword { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Fill an empty content DB with demo data.
    Seed {
        /// Number of channels.
        #[arg(long, default_value_t = 40)]
        channels: usize,
    },
}

impl Cli {
    /// The engine configuration, validated.
    pub fn engine_config(&self) -> Result<EngineConfig> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::invalid(
                "BACKSTOP_DATA_DIR is empty; give a folder path",
            ));
        }
        let mut cfg = EngineConfig::for_data_dir(&self.data_dir);
        if let Some(url) = &self.content_db {
            cfg.content_db_url = validate_db_url(url, "BACKSTOP_CONTENT_DB")?;
        }
        if let Some(url) = &self.state_db {
            cfg.state_db_url = validate_db_url(url, "BACKSTOP_STATE_DB")?;
        }
        cfg.demo = self.demo;
        cfg.copy_retry = std::time::Duration::from_secs(self.copy_retry_secs);
        Ok(cfg)
    }
}

fn validate_db_url(url: &str, var: &str) -> Result<String> {
    if url.starts_with("sqlite:") {
        Ok(url.to_owned())
    } else if var == "BACKSTOP_CONTENT_DB" && engine::instance::is_postgres_url(url) {
        // Checked for real when the engine opens it (content_db::ContentDb::open_postgres).
        Ok(url.to_owned())
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Err(Error::invalid(format!(
            "{var}: the state database is Backstop's own SQLite file; use a sqlite:// URL"
        )))
    } else {
        Err(Error::invalid(format!(
            "{var}: {url:?} is not a database URL; expected sqlite:///path/to/file.db"
        )))
    }
}
