//! [`Garage`]: a real single-node [Garage](https://garagehq.deuxfleurs.fr) S3 server for
//! tests, in its own temp dir on free loopback ports (S3 API, RPC, admin API).
//!
//! It runs `garage server --single-node --default-bucket`: with `--single-node` Garage lays
//! out a one-node cluster by itself, and with `--default-bucket` it creates, before the S3
//! API listens, the access key named by `GARAGE_DEFAULT_ACCESS_KEY` /
//! `GARAGE_DEFAULT_SECRET_KEY` and the bucket `GARAGE_DEFAULT_BUCKET` with read, write and
//! owner rights for that key. The harness picks those values, so [`Garage::bucket`],
//! [`Garage::access_key_id`] and [`Garage::secret_access_key`] are known up front, and the
//! bucket exists once [`Garage::start`] returns (it waits until the S3 port answers HTTP).
//! Further buckets and keys go through the `garage` CLI ([`Garage::cli`]), which talks to
//! the node over RPC with the same config file.
//!
//! For the destination tests: [`Garage::start_with_app`] starts a node and a signed-in
//! Backstop server; [`Garage::destination_body`] is what a client sends to make the default
//! bucket a Backstop destination, [`add_destination`] sends it and [`import_copy`] imports a
//! copy back from it; [`Garage::raw_store`] is a plain S3 client on the default bucket, for
//! tests that look at (or tamper with) the store behind Backstop's back.
//!
//! Settings for speed: SQLite metadata, no fsync (`metadata_fsync`/`data_fsync` off),
//! no scrub, no compression. Logs go to `garage.log` in the temp dir (quoted in errors).
//!
//! The binary comes from `GARAGE_BIN` (./test.sh sets it), else
//! `/var/tmp/backstop-tools/garage-2.5.0/bin/garage`; `tests/garage.sh path` builds it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use serde_json::{Value, json};

use crate::TestApp;

/// Where `tests/garage.sh` installs Garage when `BACKSTOP_TOOLS_DIR` is not set.
pub const DEFAULT_GARAGE_BIN: &str = "/var/tmp/backstop-tools/garage-2.5.0/bin/garage";

/// The S3 region the server is configured with (requests must be signed for it).
pub const REGION: &str = "garage";

/// How long [`Garage::start`] waits for the S3 API, and [`Garage::stop`] for an exit.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Path of the `garage` binary: `GARAGE_BIN`, else [`DEFAULT_GARAGE_BIN`]; an error that
/// says how to build it when it is missing.
pub fn garage_bin() -> Result<PathBuf> {
    let bin = std::env::var_os("GARAGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_GARAGE_BIN));
    if !bin.is_file() {
        bail!(
            "no Garage binary at {} (set GARAGE_BIN, or build it with `tests/garage.sh path`, \
             which prints the path; ./test.sh does both)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A running (or stopped) single-node Garage; see the module docs.
pub struct Garage {
    bin: PathBuf,
    /// Holds `garage.toml`, `meta/`, `data/` and `garage.log`; removed on drop.
    dir: tempfile::TempDir,
    s3_port: u16,
    rpc_port: u16,
    admin_port: u16,
    bucket: String,
    key_id: String,
    secret: String,
    admin_token: String,
    child: Option<Child>,
}

impl Garage {
    /// Starts a fresh node with the default bucket and key; returns once the S3 API answers.
    pub async fn start() -> Result<Garage> {
        let bin = garage_bin()?;
        let dir = tempfile::Builder::new().prefix("garage-").tempdir()?;
        // Hold all three listeners until the ports are chosen, so they differ.
        let listeners = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()?;
        let port = |i: usize| listeners[i].local_addr().map(|a| a.port());
        let (s3_port, rpc_port, admin_port) = (port(0)?, port(1)?, port(2)?);
        drop(listeners);
        let mut garage = Garage {
            bin,
            dir,
            s3_port,
            rpc_port,
            admin_port,
            bucket: "backstop-test".into(),
            // Garage's own key format: "GK" + 24 hex digits, a 64-hex-digit secret.
            key_id: format!("GK{}", &random_hex(12)),
            secret: random_hex(32),
            admin_token: random_hex(32),
            child: None,
        };
        garage.write_config()?;
        garage.spawn().await?;
        Ok(garage)
    }

    /// Starts a node (as [`Garage::start`]) and then a fresh Backstop server with the admin
    /// signed in: how most destination tests begin.
    pub async fn start_with_app() -> Result<(Garage, TestApp)> {
        let garage = Garage::start().await?;
        let app = TestApp::spawn().await?;
        app.login_admin().await?;
        Ok((garage, app))
    }

    /// `http://127.0.0.1:PORT` of the S3 API (path-style requests).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// `http://127.0.0.1:PORT` of the admin API (bearer [`Garage::admin_token`]).
    pub fn admin_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    pub fn region(&self) -> &str {
        REGION
    }

    /// The default bucket; it exists, and the default key may read, write and own it.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn access_key_id(&self) -> &str {
        &self.key_id
    }

    pub fn secret_access_key(&self) -> &str {
        &self.secret
    }

    /// A destination body (`POST`/`PUT /api/backups/destinations/`) for the default bucket
    /// and key, objects under `prefix`: enabled, every copy kept, encryption off.
    pub fn destination_body(&self, name: &str, prefix: &str) -> Value {
        json!({
            "name": name,
            "kind": "s3",
            "enabled": true,
            "retention_count": 0,
            "encrypt": false,
            "s3": {
                "endpoint": self.endpoint(),
                "region": self.region(),
                "bucket": self.bucket(),
                "prefix": prefix,
                "path_style": true,
                "access_key_id": self.access_key_id(),
                "secret_access_key": self.secret_access_key(),
            }
        })
    }

    /// A plain S3 client on the default bucket with the default key (path style, plain
    /// HTTP), to read and write objects without going through Backstop.
    pub fn raw_store(&self) -> Result<AmazonS3> {
        Ok(AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_region(self.region())
            .with_bucket_name(self.bucket())
            .with_access_key_id(self.access_key_id())
            .with_secret_access_key(self.secret_access_key())
            .with_allow_http(true)
            .build()?)
    }

    /// The node's temp dir (config, `meta/`, `data/`, `garage.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server process is running (started and neither stopped nor killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Runs `garage -c <config> ARGS...` against this node; its stdout, or an error with
    /// its stderr when it fails.
    pub async fn cli(&self, args: &[&str]) -> Result<String> {
        let out = tokio::process::Command::new(&self.bin)
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", self.bin.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "`garage {}` failed ({}):\n{}{}",
                args.join(" "),
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// Creates a bucket with this global name (no key has access to it yet).
    pub async fn create_bucket(&self, name: &str) -> Result<()> {
        self.cli(&["bucket", "create", name]).await?;
        Ok(())
    }

    /// Creates an access key named `name` with read and write (not owner) rights on
    /// `bucket`; returns (key id, secret key).
    pub async fn create_key(&self, name: &str, bucket: &str) -> Result<(String, String)> {
        // `json-api` prints the admin API's JSON answer: no table to parse.
        let body = serde_json::json!({ "name": name }).to_string();
        let out = self.cli(&["json-api", "CreateKey", &body]).await?;
        let key: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("CreateKey answered {out}"))?;
        let field = |f: &str| {
            key[f]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("no {f} in CreateKey's answer {out}"))
        };
        let (id, secret) = (field("accessKeyId")?, field("secretAccessKey")?);
        self.cli(&["bucket", "allow", "--read", "--write", bucket, "--key", &id])
            .await?;
        Ok((id, secret))
    }

    /// Stops the server gracefully (SIGTERM, then SIGKILL after 60 s) and waits for it;
    /// the data stays for [`Garage::start_again`].
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + TIMEOUT;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("Garage ignored SIGTERM for {TIMEOUT:?}; killed it");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts the server again on the same ports and data (after `stop` or `kill`).
    pub async fn start_again(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("Garage is still running");
        }
        self.spawn().await
    }

    /// Kills the server with SIGKILL (no shutdown at all) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("garage.toml")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("garage.log")
    }

    fn write_config(&self) -> Result<()> {
        let d = self.dir.path();
        let config = format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
metadata_fsync = false
data_fsync = false
disable_scrub = true
compression_level = "none"

rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{rpc_secret}"

[s3_api]
api_bind_addr = "127.0.0.1:{s3}"
s3_region = "{REGION}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{admin_token}"
"#,
            meta = d.join("meta").display(),
            data = d.join("data").display(),
            rpc = self.rpc_port,
            rpc_secret = random_hex(32),
            s3 = self.s3_port,
            admin = self.admin_port,
            admin_token = self.admin_token,
        );
        std::fs::write(self.config_path(), config)?;
        Ok(())
    }

    /// Spawns `garage server` and waits until the S3 API answers HTTP (any status).
    async fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.config_path())
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &self.key_id)
            .env("GARAGE_DEFAULT_SECRET_KEY", &self.secret)
            .env("GARAGE_DEFAULT_BUCKET", &self.bucket)
            .env(
                "RUST_LOG",
                std::env::var("TEST_GARAGE_LOG").unwrap_or_else(|_| "garage=info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);

        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if client.get(self.endpoint()).send().await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "Garage exited ({status}) before listening:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                self.kill();
                bail!(
                    "Garage's S3 API did not answer within {TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last 40 lines of `garage.log`.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates a destination on `app` (signed in as admin) from `body`; its id, or an error
/// unless the server answers 201 Created.
pub async fn add_destination(app: &TestApp, body: Value) -> Result<i64> {
    let (s, d) = app.post_json("/api/backups/destinations/", body).await?;
    if s != 201 {
        bail!("creating a destination answered {s}: {d}");
    }
    d["id"].as_i64().context("destination id")
}

/// Imports the copy `name` held by destination `destination` on `app`
/// (`POST .../destinations/{destination}/archives/{name}/import/` with `body`, which may carry
/// an `identity`); (status, body).
pub async fn import_copy(
    app: &TestApp,
    destination: i64,
    name: &str,
    body: Value,
) -> Result<(u16, Value)> {
    app.post_json(
        &format!("/api/backups/destinations/{destination}/archives/{name}/import/"),
        body,
    )
    .await
}

/// `bytes` random bytes as hex (std's per-process random SipHash keys; plenty for tests).
fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    let mut n = 0u64;
    while out.len() < bytes * 2 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        n += 1;
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(bytes * 2);
    out
}
