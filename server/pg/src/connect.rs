//! Connecting: the URL, the password sources libpq users expect, and errors that name what
//! failed.
//!
//! Accepted: `postgres://USER[:PW]@HOST[:PORT]/DB` (or `postgresql://`), and unix sockets as
//! `postgres://USER@/DB?host=/run/postgresql` or with the socket directory percent-encoded
//! as the host. Other libpq-style query parameters sqlx knows (`sslmode`, `port`, `user`,
//! `dbname`, `password`, `application_name`, `options`) work too.
//!
//! Password, in libpq's order: the URL, then `PGPASSWORD`, then the password file
//! (`PGPASSFILE`, else `~/.pgpass`). sqlx reads `.pgpass` itself, but matches a unix-socket
//! connection against `localhost` whatever the socket directory, and reads group- or
//! world-readable files; [`pgpass_lookup`] follows libpq instead (the socket directory is
//! the host, `localhost` stands for the default directory, a file others can read is
//! ignored) and its answer wins.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::{Error, Result};

/// Debian's (and libpq's default build's) socket directory; libpq's `.pgpass` matches
/// `localhost` for it. `/var/run` is a symlink to `/run` on current systems.
const DEFAULT_SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/run/postgresql"];

/// A parsed connection URL: the driver's options plus what error messages need.
#[derive(Debug, Clone)]
pub struct Target {
    options: PgConnectOptions,
    /// Whether any password source gave a password (for the authentication error).
    has_password: bool,
}

impl Target {
    /// Parses `url` and resolves the password (URL, `PGPASSWORD`, password file).
    pub fn parse(url: &str) -> Result<Target> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| Error::BadUrl {
                reason: "it must start with postgres:// or postgresql://".into(),
            })?;
        let fixed = fill_empty_host(url, rest);
        let mut options = PgConnectOptions::from_str(&fixed).map_err(|e| Error::BadUrl {
            reason: e.to_string(),
        })?;
        let url_password = url_has_password(rest);
        let env_password = std::env::var_os("PGPASSWORD").is_some_and(|p| !p.is_empty());
        let mut has_password = url_password || env_password;
        if !has_password {
            let host = pgpass_host(&options);
            let database = options
                .get_database()
                .unwrap_or(options.get_username())
                .to_owned();
            if let Some(pw) = pgpass_file().and_then(|f| {
                pgpass_lookup(
                    &f,
                    &host,
                    options.get_port(),
                    &database,
                    options.get_username(),
                )
            }) {
                options = options.password(&pw);
                has_password = true;
            }
        }
        Ok(Target {
            options,
            has_password,
        })
    }

    /// The driver's options, e.g. for a pool of the caller's own.
    pub fn options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// Where this connects, for messages: `host:port` or `socket-dir (port N)`, and the
    /// database.
    pub fn describe(&self) -> String {
        format!("{} database {}", self.server(), self.database())
    }

    fn server(&self) -> String {
        match self.options.get_socket() {
            Some(dir) => format!("{} (port {})", dir.display(), self.options.get_port()),
            None => format!("{}:{}", self.options.get_host(), self.options.get_port()),
        }
    }

    fn database(&self) -> String {
        self.options
            .get_database()
            .unwrap_or(self.options.get_username())
            .to_owned()
    }

    /// Turns a connect-time driver error into the variant that says what failed.
    pub fn connect_error(&self, e: sqlx::Error) -> Error {
        let user = self.options.get_username().to_owned();
        match &e {
            sqlx::Error::Configuration(c) => Error::BadUrl {
                reason: c.to_string(),
            },
            sqlx::Error::Database(d) => match d.code().as_deref() {
                Some("28P01") | Some("28000") => {
                    let mut detail = d.message().to_owned();
                    if !self.has_password {
                        detail.push_str(
                            " (no password was given: not in the URL, PGPASSWORD or the password file)",
                        );
                    }
                    Error::Authentication {
                        user,
                        detail,
                        source: e,
                    }
                }
                Some("3D000") => Error::MissingDatabase {
                    database: self.database(),
                    target: self.server(),
                },
                Some("42501") => Error::MissingPrivilege {
                    user,
                    privilege: "CONNECT".into(),
                    object: format!("database {}", self.database()),
                },
                // cannot_connect_now (starting up, shutting down), too_many_connections.
                Some("57P03") | Some("53300") => Error::Unreachable {
                    target: self.server(),
                    source: e,
                },
                _ => Error::db(format!("cannot connect to {}", self.describe()), e),
            },
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
                Error::Unreachable {
                    target: self.server(),
                    source: e,
                }
            }
            _ => Error::db(format!("cannot connect to {}", self.describe()), e),
        }
    }

    /// One connection, checked to be PostgreSQL 12 or newer (generated columns and the
    /// catalog columns read here are from 12).
    pub async fn connect(&self) -> Result<PgConnection> {
        let mut conn = PgConnection::connect_with(&self.options)
            .await
            .map_err(|e| self.connect_error(e))?;
        check_version(&mut conn).await?;
        Ok(conn)
    }

    /// A pool of up to `max` connections; one connection is opened now so a bad
    /// configuration fails here, with the same errors as [`Target::connect`].
    pub async fn pool(&self, max: u32) -> Result<PgPool> {
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .connect_with(self.options.clone())
            .await
            .map_err(|e| self.connect_error(e))?;
        let mut conn = pool.acquire().await.map_err(|e| self.connect_error(e))?;
        check_version(&mut conn).await?;
        Ok(pool)
    }
}

async fn check_version(conn: &mut PgConnection) -> Result<()> {
    let v: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| Error::db("cannot read the server version", e))?;
    let n: u32 = v.trim().parse().unwrap_or(0);
    if n < 120_000 {
        return Err(Error::Unsupported { version: v });
    }
    Ok(())
}

/// [`Target::parse`] then [`Target::connect`].
pub async fn connect(url: &str) -> Result<PgConnection> {
    Target::parse(url)?.connect().await
}

/// libpq accepts an empty host (`postgres://user@/db`, `postgres:///db`), meaning a unix
/// socket: the `host=` parameter's, else the default directory. The URL parser sqlx uses
/// refuses an empty host, so one is filled in (`localhost`, which the socket overrides).
fn fill_empty_host(url: &str, rest: &str) -> String {
    let scheme = &url[..url.len() - rest.len()];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if !host.is_empty() && !host.starts_with(':') {
        return url.to_owned();
    }
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    let mut out = format!("{scheme}{userinfo}localhost{host}{tail}");
    let has_host_param = tail
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with("host=")));
    if !has_host_param {
        out.push(if tail.contains('?') { '&' } else { '?' });
        out.push_str("host=");
        out.push_str(DEFAULT_SOCKET_DIRS[0]);
    }
    out
}

/// Whether the part of the URL after the scheme carries a password (`user:pw@` or
/// `password=` in the query).
fn url_has_password(rest: &str) -> bool {
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = before_query.split('/').next().unwrap_or("");
    let in_userinfo = authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'));
    in_userinfo || query.split('&').any(|kv| kv.starts_with("password="))
}

/// The host field `.pgpass` is matched against, as libpq computes it.
fn pgpass_host(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(dir) => {
            let dir = dir.to_string_lossy();
            let dir = dir.trim_end_matches('/');
            if DEFAULT_SOCKET_DIRS.contains(&dir) {
                "localhost".to_owned()
            } else {
                dir.to_owned()
            }
        }
        None => options.get_host().to_owned(),
    }
}

fn pgpass_file() -> Option<PathBuf> {
    if let Some(f) = std::env::var_os("PGPASSFILE") {
        return Some(PathBuf::from(f));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass"))
}

/// The password for (host, port, database, user) from the password file at `path`, as libpq
/// finds it: the first matching line wins, `*` matches anything, `\` escapes `:` and `\`,
/// lines starting with `#` are comments, and a file that is not a regular file or that its
/// group or others can read is ignored (with a warning, as libpq prints one).
pub fn pgpass_lookup(
    path: &Path,
    host: &str,
    port: u16,
    database: &str,
    user: &str,
) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "password file has group or world access; permissions should be u=rw (0600) or less; ignored"
            );
            return None;
        }
    }
    let text = std::fs::read_to_string(path).ok()?;
    let port = port.to_string();
    let wanted = [host, port.as_str(), database, user];
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .find_map(|line| {
            let fields = split_pgpass_line(line)?;
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(f, w)| f == "*" || f == w);
            matches.then(|| fields[4].clone())
        })
}

/// Splits `host:port:db:user:password` honouring `\:` and `\\`; the password is the rest
/// of the line.
fn split_pgpass_line(line: &str) -> Option<[String; 5]> {
    let mut fields: Vec<String> = Vec::with_capacity(5);
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_password_detection() {
        assert!(url_has_password("u:pw@h/db"));
        assert!(!url_has_password("u@h/db"));
        assert!(!url_has_password("u@h/db?host=/tmp"));
        assert!(url_has_password("u@h/db?host=/tmp&password=x"));
        assert!(!url_has_password("h/db"));
    }

    #[test]
    fn pgpass_follows_libpq() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pgpass");
        std::fs::write(
            &f,
            "# comment\n/tmp/s:5432:db:u:sock\\:pw\nlocalhost:*:*:u:local\n*:*:*:*:any\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(
            pgpass_lookup(&f, "/tmp/s", 5432, "db", "u").as_deref(),
            Some("sock:pw")
        );
        assert_eq!(
            pgpass_lookup(&f, "localhost", 1, "x", "u").as_deref(),
            Some("local")
        );
        assert_eq!(
            pgpass_lookup(&f, "other", 1, "x", "v").as_deref(),
            Some("any")
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(pgpass_lookup(&f, "other", 1, "x", "v"), None);
    }

    #[test]
    fn socket_urls_parse_and_match_pgpass_like_libpq() {
        let t = Target::parse("postgres://u@/db?host=/run/postgresql").expect("socket url");
        assert_eq!(
            t.options().get_socket().map(|p| p.display().to_string()),
            Some("/run/postgresql".into())
        );
        assert_eq!(t.describe(), "/run/postgresql (port 5432) database db");
        assert_eq!(pgpass_host(t.options()), "localhost");
        let t = Target::parse("postgres:///db").expect("no user, no host");
        assert_eq!(t.describe(), "/var/run/postgresql (port 5432) database db");
        let t = Target::parse("postgres://u:p@/db?host=/tmp/x&port=5433").expect("other dir");
        assert_eq!(pgpass_host(t.options()), "/tmp/x");
        assert_eq!(t.options().get_port(), 5433);
        let t = Target::parse("postgresql://u:p%40ss@db.example:6543/app").expect("tcp url");
        assert_eq!(t.describe(), "db.example:6543 database app");
        assert!(t.has_password);
    }

    #[test]
    fn bad_urls_are_named() {
        let e = Target::parse("mysql://x").expect_err("scheme");
        assert!(e.to_string().contains("postgres://"), "{e}");
        let e = Target::parse("postgres://u@h:notaport/db").expect_err("port");
        assert!(matches!(e, Error::BadUrl { .. }), "{e:?}");
    }
}
