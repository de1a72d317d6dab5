//! A real PostgreSQL 15 for the tests: `initdb` and `pg_ctl` as the `postgres` user (CI runs
//! as root, which PostgreSQL refuses), in a short temp directory that also holds the unix
//! socket (the path must fit in 107 bytes), with fsync off and no TCP listener.
//!
//! One cluster per test binary ([`PgCluster::shared`]), one database and owner role per
//! test ([`PgCluster::database`]). A static is never dropped, so the cluster is stopped by a
//! small watchdog shell started with it: when the test process is gone it runs
//! `pg_ctl stop -m immediate` and removes the directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sqlx::{Connection, PgConnection};

pub const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PgCluster {
    /// Holds `data/`, the socket and the log; owned by postgres.
    pub dir: PathBuf,
}

/// One database of the cluster, owned by its own non-superuser role.
pub struct Db {
    pub name: String,
    pub owner: String,
    pub password: String,
    pub socket_dir: PathBuf,
}

impl Db {
    /// The owner's URL (password in the URL, unix socket).
    pub fn url(&self) -> String {
        self.url_as(&self.owner, &self.password)
    }

    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!(
            "postgres://{user}:{password}@localhost/{}?host={}",
            self.name,
            self.socket_dir.display()
        )
    }

    pub async fn connect(&self) -> PgConnection {
        content_pg::connect(&self.url())
            .await
            .expect("owner connects")
    }

    /// A superuser connection to this database.
    pub async fn superuser(&self) -> PgConnection {
        let url = format!(
            "postgres://postgres@localhost/{}?host={}",
            self.name,
            self.socket_dir.display()
        );
        PgConnection::connect(&url)
            .await
            .expect("superuser connects")
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn as_postgres(dir: &Path, program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"])
        .arg(format!("{BIN}/{program}"))
        .current_dir(dir);
    c
}

impl PgCluster {
    /// The cluster of this test binary, started on first use.
    pub fn shared() -> &'static PgCluster {
        static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
        CLUSTER.get_or_init(PgCluster::start)
    }

    fn start() -> PgCluster {
        assert!(
            Path::new(BIN).join("initdb").exists(),
            "PostgreSQL 15 is not installed (apt-get install -y postgresql-15)"
        );
        let dir = tempfile::Builder::new()
            .prefix("bpg")
            .tempdir_in("/tmp")
            .expect("temp dir")
            .keep();
        run(
            Command::new("chown").arg("postgres:postgres").arg(&dir),
            "chown",
        );
        let data = dir.join("data");
        run(
            as_postgres(&dir, "initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
                .arg("--no-sync"),
            "initdb",
        );
        // The superuser without a password (setup only), everyone else by password, so the
        // authentication errors are real.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all postgres trust\nlocal all all scram-sha-256\n",
        )
        .expect("pg_hba.conf");
        let opts = format!(
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off \
             -c listen_addresses='' -c unix_socket_directories={} -c max_connections=60",
            dir.display()
        );
        run(
            as_postgres(&dir, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("log"))
                .args(["-w", "-o", &opts, "start"]),
            "pg_ctl start",
        );
        // The watchdog: stops the cluster once this process has exited.
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 0.5; done; \
             runuser -u postgres -- {BIN}/pg_ctl -D {data} -m immediate stop >/dev/null 2>&1; \
             rm -rf {dir}",
            pid = std::process::id(),
            data = data.display(),
            dir = dir.display()
        );
        // Deliberately never waited for: it must outlive this process.
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchdog");
        PgCluster { dir }
    }

    /// A fresh database `name` owned by a new role `name_owner`.
    pub async fn database(&self, name: &str) -> Db {
        let mut su = self.superuser_conn("postgres").await;
        let owner = format!("{name}_owner");
        let password = format!("pw-{name}");
        // Two statements: CREATE DATABASE refuses to run in the implicit transaction of a
        // multi-statement query.
        for sql in [
            format!("CREATE ROLE {owner} LOGIN PASSWORD '{password}'"),
            format!("CREATE DATABASE {name} OWNER {owner}"),
        ] {
            sqlx::raw_sql(&sql)
                .execute(&mut su)
                .await
                .expect("create database");
        }
        Db {
            name: name.into(),
            owner,
            password,
            socket_dir: self.dir.clone(),
        }
    }

    /// A role that can log in with `password`, nothing more.
    pub async fn role(&self, name: &str, password: &str) {
        let mut su = self.superuser_conn("postgres").await;
        sqlx::raw_sql(&format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
            .execute(&mut su)
            .await
            .expect("create role");
    }

    pub async fn superuser_conn(&self, db: &str) -> PgConnection {
        let url = format!(
            "postgres://postgres@localhost/{db}?host={}",
            self.dir.display()
        );
        PgConnection::connect(&url)
            .await
            .expect("superuser connects")
    }
}
