//! Test support: [`TestApp`] starts the real `backstop` binary on a free port with a fresh
//! data dir and talks HTTP to it; helpers for archives.
//!
//! The binary is found through `BACKSTOP_BIN` (set by ./test.sh) or next to the test
//! executable in the cargo target dir; build it first with `cargo build -p server`.

pub mod garage;
pub mod hostile;
pub mod invariants;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The admin password every test server starts with.
pub const ADMIN_PASSWORD: &str = "correct-horse-battery";

/// Path of the `backstop` binary under test.
pub fn backstop_bin() -> PathBuf {
    if let Ok(p) = std::env::var("BACKSTOP_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/<test> -> target/debug/backstop
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("backstop")
}

/// A running server with its own data dir.
pub struct TestApp {
    pub base: String,
    pub data: tempfile::TempDir,
    pub child: Option<Child>,
    pub client: reqwest::Client,
    pub extra_env: Vec<(String, String)>,
    /// Lines the server printed on stdout (the admin password line, the address).
    pub stdout: Vec<String>,
    /// What `start` passes to `--bind` (default `127.0.0.1:0`, a free port).
    pub bind: String,
}

impl TestApp {
    /// Starts a server on a fresh data dir with the admin password set.
    pub async fn spawn() -> Result<TestApp> {
        Self::spawn_with(&[]).await
    }

    /// Starts a server with extra environment variables.
    pub async fn spawn_with(env: &[(&str, &str)]) -> Result<TestApp> {
        let data = tempfile::tempdir()?;
        let mut app = TestApp {
            base: String::new(),
            data,
            child: None,
            client: client()?,
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            stdout: Vec::new(),
            bind: "127.0.0.1:0".into(),
        };
        app.start().await?;
        Ok(app)
    }

    /// A `Command` for the binary with this app's data dir and environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(backstop_bin());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BACKSTOP_DATA_DIR", self.data.path())
            .env("BACKSTOP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            // The bundled first-party plugins only where a test asks (extra_env below).
            .env("BACKSTOP_BUNDLED_PLUGINS", "0")
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        if let Ok(site) = std::env::var("BACKSTOP_SITE_DIR") {
            cmd.env("BACKSTOP_SITE_DIR", site);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// (Re)starts the server process on a free port and waits until it answers.
    pub async fn start(&mut self) -> Result<()> {
        let mut child = self
            .command()
            .args(["serve", "--bind", &self.bind])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", backstop_bin().display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if let Some(addr) = line.strip_prefix("backstop listening on ") {
                        self.base = addr.trim().to_owned();
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => bail!("the server exited before listening (see its stderr above)"),
            }
            if Instant::now() > deadline {
                bail!("the server did not start within 60 s");
            }
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_kill(c.id(), "TERM");
            let _ = c.wait();
        }
    }

    /// Kills the server with SIGKILL (no cleanup at all).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Signs the app's cookie client in as admin.
    pub async fn login_admin(&self) -> Result<()> {
        self.login("admin", ADMIN_PASSWORD).await
    }

    pub async fn login(&self, user: &str, password: &str) -> Result<()> {
        let r = self
            .client
            .post(self.url("/api/auth/login"))
            .header("origin", &self.base)
            .json(&serde_json::json!({ "username": user, "password": password }))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "login as {user} failed: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// A same-origin request builder for the cookie client.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("origin", &self.base)
    }

    pub async fn get_json(&self, path: &str) -> Result<(u16, Value)> {
        let r = self.req(reqwest::Method::GET, path).send().await?;
        let status = r.status().as_u16();
        let body = r.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        let r = self
            .req(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let body = r.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Starts a backup and waits until it is finished; returns the final job.
    pub async fn backup(&self, body: Value) -> Result<Value> {
        let (s, job) = self.post_json("/api/backups/jobs/", body).await?;
        if s != 202 {
            bail!("starting a backup answered {s}: {job}");
        }
        self.wait_job(
            job["id"].as_i64().context("job id")?,
            Duration::from_secs(120),
        )
        .await
    }

    /// Restores backup job `id` (POST .../restore/, 202) and waits for the restore job.
    pub async fn restore(&self, id: i64) -> Result<Value> {
        let (s, job) = self
            .post_json(
                &format!("/api/backups/jobs/{id}/restore/"),
                serde_json::json!({}),
            )
            .await?;
        if s != 202 {
            bail!("starting a restore answered {s}: {job}");
        }
        self.wait_job(
            job["id"].as_i64().context("job id")?,
            Duration::from_secs(120),
        )
        .await
    }

    /// Polls a job until it leaves pending/running.
    pub async fn wait_job(&self, id: i64, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let (s, job) = self.get_json(&format!("/api/backups/jobs/{id}/")).await?;
            if s != 200 {
                bail!("job {id} answered {s}: {job}");
            }
            let st = job["status"].as_str().unwrap_or("");
            if st != "pending" && st != "running" {
                return Ok(job);
            }
            if Instant::now() > deadline {
                bail!("job {id} still {st} after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The archive file of a backup job (in the default `backups/` folder of the data dir).
    pub fn archive_of(&self, job: &Value) -> PathBuf {
        self.data
            .path()
            .join("backups")
            .join(job["archive_name"].as_str().expect("archive name"))
    }

    /// The content DB path.
    pub fn content_db(&self) -> PathBuf {
        self.data.path().join("app.db")
    }

    /// Opens the content DB directly (as the application would).
    pub async fn content_pool(&self) -> Result<sqlx::SqlitePool> {
        Ok(sqlx::SqlitePool::connect(&format!("sqlite://{}", self.content_db().display())).await?)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A cookie-keeping HTTP client.
///
/// Idle pooled connections are dropped after 4 s: the server closes an idle keep-alive
/// connection after 10 s (its header-read timeout), and a client that reuses one at that
/// moment sees "connection closed before message completed" (the hostile-archive test,
/// which idles ~10 s while it builds its corpus, hit exactly that).
pub fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .pool_idle_timeout(Duration::from_secs(4))
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// Runs a command and returns (status success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run command");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// SHA-256 of a file as hex.
pub fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).expect("read file");
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 of bytes as hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` of poorly compressible data (a 1 MiB random block repeated: gzip's 32 KiB
/// window cannot see the repeats).
pub fn write_noise(path: &Path, bytes: u64) {
    use std::io::Write;
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 32) as u8;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}
