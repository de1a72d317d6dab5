//! `database.json` -> the database, in one transaction.
//!
//! The stages, in order:
//!
//! 1. **Scan** the archive ([`archive::scan`]): its tables and columns, nothing changed yet.
//! 2. **Plan** against the live catalog: every archive table and column must exist here;
//!    generated columns are left out; privileges are checked (the error names the table and
//!    privilege); a table *outside* the archive whose foreign key would cascade, set null or
//!    set default when an archive table is emptied stops the load if it has rows
//!    ([`Error::OutsideTable`], checked once the tables are locked, step 4), so nothing
//!    outside the dumped tables is ever touched.
//! 3. **Foreign keys**, the strategy: `SET CONSTRAINTS ALL DEFERRED` defers every
//!    `DEFERRABLE` key (Django's are `DEFERRABLE INITIALLY DEFERRED`) to the end of the load.
//!    A `NOT DEFERRABLE` key is checked at the end of each statement, so parents-first order
//!    (the dump's order) and one COPY per table already satisfy it, self-references included.
//!    Only a non-deferrable key the archive's order cannot satisfy (its parent comes later,
//!    e.g. a cycle between two tables) is dropped inside the transaction and re-created
//!    (validated) after the rows are in: that needs ownership of the referencing table, and
//!    only then. Nothing here needs superuser (`session_replication_role = replica` would,
//!    and would skip the checks altogether).
//! 4. **Lock** the archive's tables `IN EXCLUSIVE MODE` (the application's writes wait for the
//!    commit; its reads see the old rows until then), then **empty** them with `DELETE`
//!    (never `TRUNCATE ... CASCADE`), in the reverse of the archive's order, children before
//!    parents.
//! 5. **COPY** each table `FROM STDIN` in text format, converted row by row on a blocking
//!    thread ([`archive::read_rows`]) and sent in 1 MiB buffers. COPY writes given values
//!    into `GENERATED ALWAYS` identity columns (as `OVERRIDING SYSTEM VALUE` would).
//! 6. Re-create dropped keys, move every sequence feeding a loaded column past its largest
//!    value (`setval`, the smallest for a descending sequence), then
//!    `SET CONSTRAINTS ALL IMMEDIATE` so deferred keys are checked now, not at commit.
//! 7. `before_commit` (on a blocking thread), then COMMIT. Any error before the commit rolls
//!    everything back.
//!
//! User triggers on the tables fire as they would for any DELETE and COPY (disabling them
//! needs superuser or ownership plus `ALTER TABLE`); a trigger that writes elsewhere is the
//! schema's business.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use sqlx::{Connection, PgConnection, Row};
use tokio::sync::mpsc;

use crate::archive::{self, RowSink, Slot, Summary};
use crate::catalog::{self, Catalog, ForeignKey, Kind, Table};
use crate::{Error, Result, SESSION_SETTINGS};

/// What [`load`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadStats {
    /// The engine the archive was made on (`"postgres"` or `"sqlite"`).
    pub engine: String,
    pub schema_version: i64,
    pub tables: u64,
    pub rows: u64,
    /// Non-deferrable foreign keys that were dropped and re-created (`table.constraint`),
    /// because the archive's table order could not satisfy them.
    pub recreated_foreign_keys: Vec<String>,
}

/// Replaces the rows of every table in the archive with the archive's rows, in one
/// transaction; tables not in the archive keep theirs.
///
/// `open` is called twice (the scan, then the load) and must give the same document each
/// time, e.g. `|| File::open(path)`. `before_commit` runs once everything is loaded and
/// checked, on a blocking thread, just before COMMIT; its error rolls the load back (the
/// engine swaps directories there so database and files change together; a failed COMMIT
/// after a successful `before_commit` is the caller's to undo).
///
/// Needs, per archive table: INSERT and DELETE; SELECT on a column fed by a sequence and
/// UPDATE on that sequence; ownership only for a foreign key that has to be re-created (see
/// the module docs). Missing privileges are reported before anything changes.
pub async fn load<R, F, B, E>(
    conn: &mut PgConnection,
    mut open: F,
    before_commit: B,
) -> Result<LoadStats>
where
    R: Read + Send + 'static,
    F: FnMut() -> std::io::Result<R>,
    B: FnOnce() -> std::result::Result<(), E> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let opened = |e| Error::Io {
        context: "cannot open database.json".into(),
        source: e,
    };
    let reader = open().map_err(opened)?;
    let summary = blocking(move || archive::scan(reader)).await?;

    let mut tx = conn
        .begin()
        .await
        .map_err(|e| Error::db("cannot start the load's transaction", e))?;
    sqlx::raw_sql(&format!("{SESSION_SETTINGS} SET CONSTRAINTS ALL DEFERRED;"))
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::db("cannot set the load's session settings", e))?;
    let catalog = catalog::read(&mut tx).await?;
    let plan = Plan::new(&summary, &catalog)?;
    check_privileges(&mut tx, &plan).await?;

    // Writers wait until the commit, readers see the old rows until then (EXCLUSIVE mode;
    // DELETE, checked above, is the privilege it needs).
    if !plan.tables.is_empty() {
        let names: Vec<String> = plan.tables.iter().map(|t| t.table.sql_name()).collect();
        sqlx::query(&format!(
            "LOCK TABLE {} IN EXCLUSIVE MODE",
            names.join(", ")
        ))
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::db("cannot lock the archive's tables", e))?;
    }
    // After the lock: a new row referencing an archive table would need a key-share lock on
    // it, so none can appear in an outside table between this check and the DELETEs.
    check_outside_tables(&mut tx, &plan, &catalog).await?;

    let mut recreated = Vec::new();
    for fk in &plan.recreate {
        let table = plan.table_by_oid(fk.table_oid);
        sqlx::query(&format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            table.sql_name(),
            catalog::quote_ident(&fk.name)
        ))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            Error::db(
                format!(
                    "cannot drop foreign key {} of table {} for the load",
                    fk.name,
                    table.display_name()
                ),
                e,
            )
        })?;
        recreated.push(format!("{}.{}", table.display_name(), fk.name));
    }
    for t in plan.tables.iter().rev() {
        sqlx::query(&format!(
            "DELETE FROM {}{}",
            t.table.only(),
            t.table.sql_name()
        ))
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::db(format!("cannot empty table {}", t.table.display_name()), e))?;
    }

    let rows = copy_rows(&mut tx, open().map_err(opened)?, &plan).await?;

    for fk in &plan.recreate {
        let table = plan.table_by_oid(fk.table_oid);
        sqlx::query(&format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}",
            table.sql_name(),
            catalog::quote_ident(&fk.name),
            fk.definition
        ))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            Error::db(
                format!(
                    "the archive's rows break foreign key {} of table {}",
                    fk.name,
                    table.display_name()
                ),
                e,
            )
        })?;
    }
    set_sequences(&mut tx, &plan).await?;
    sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::db("the archive's rows break a foreign key", e))?;

    let hook = tokio::task::spawn_blocking(before_commit)
        .await
        .map_err(|e| Error::BeforeCommit(e.to_string().into()))?;
    if let Err(e) = hook {
        let _ = tx.rollback().await;
        return Err(Error::BeforeCommit(Box::new(e)));
    }
    tx.commit()
        .await
        .map_err(|e| Error::db("cannot commit the load", e))?;
    Ok(LoadStats {
        engine: summary.engine,
        schema_version: summary.schema_version,
        tables: plan.tables.len() as u64,
        rows,
        recreated_foreign_keys: recreated,
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io {
            context: "the database.json reader stopped unexpectedly".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// One archive table matched to its live table.
struct Target<'c> {
    table: &'c Table,
    /// Per archive column.
    slots: Vec<Slot>,
    /// The archive's column names, for messages.
    columns: Vec<String>,
    /// `COPY ... FROM STDIN` with the loaded columns.
    copy_sql: String,
    /// Loaded columns fed by a sequence.
    sequences: Vec<&'c catalog::Sequence>,
}

/// Checks, without changing anything, that every table and column of an archive (its
/// [`Summary`]) exists in the database `catalog` describes: the check a restore makes while
/// it validates the archive, before anything changes. [`load`] repeats it inside its
/// transaction.
pub fn check_fits(summary: &Summary, catalog: &Catalog) -> Result<()> {
    Plan::new(summary, catalog).map(|_| ())
}

/// Reads the catalog of the database behind `conn` in a read-only transaction, with the
/// session settings the dump and the load use.
pub async fn read_catalog(conn: &mut PgConnection) -> Result<Catalog> {
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| Error::db("cannot start a read-only transaction", e))?;
    sqlx::raw_sql(&format!("{SESSION_SETTINGS} SET LOCAL search_path = '';"))
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::db("cannot set the session settings", e))?;
    let catalog = catalog::read(&mut tx).await?;
    tx.commit()
        .await
        .map_err(|e| Error::db("cannot end a read-only transaction", e))?;
    Ok(catalog)
}

struct Plan<'c> {
    /// In the archive's order.
    tables: Vec<Target<'c>>,
    /// Non-deferrable keys between archive tables whose parent the archive loads after the
    /// child.
    recreate: Vec<&'c ForeignKey>,
    oids: HashSet<i64>,
}

impl<'c> Plan<'c> {
    fn new(summary: &Summary, catalog: &'c Catalog) -> Result<Plan<'c>> {
        let mut tables = Vec::with_capacity(summary.tables.len());
        let mut position: HashMap<i64, usize> = HashMap::new();
        for (i, at) in summary.tables.iter().enumerate() {
            let schema = at.schema.as_deref().unwrap_or("public");
            let shown = catalog::display_name(schema, &at.name);
            let table = catalog.table(schema, &at.name).ok_or_else(|| {
                Error::archive(format!(
                    "table {shown} is in the archive but not in this database; nothing was changed"
                ))
            })?;
            if position.insert(table.oid, i).is_some() {
                return Err(Error::archive(format!(
                    "table {shown} appears twice in the archive"
                )));
            }
            let mut seen = HashSet::new();
            let mut slots = Vec::with_capacity(at.columns.len());
            let mut copy_cols = Vec::new();
            for name in &at.columns {
                let col = table.column(name).ok_or_else(|| {
                    Error::archive(format!(
                        "column {name} of table {shown} is in the archive but not in this database; nothing was changed"
                    ))
                })?;
                if !seen.insert(name.as_str()) {
                    return Err(Error::archive(format!(
                        "column {name} of table {shown} appears twice in the archive"
                    )));
                }
                slots.push(if col.generated {
                    Slot::Skip
                } else if col.kind == Kind::Bytea {
                    Slot::Bytea
                } else {
                    Slot::Text
                });
                if !col.generated {
                    copy_cols.push(catalog::quote_ident(name));
                }
            }
            let copy_sql = if copy_cols.is_empty() {
                format!("COPY {} FROM STDIN", table.sql_name())
            } else {
                format!(
                    "COPY {} ({}) FROM STDIN",
                    table.sql_name(),
                    copy_cols.join(", ")
                )
            };
            let sequences = table
                .sequences
                .iter()
                .filter(|s| seen.contains(s.column.as_str()))
                .collect();
            tables.push(Target {
                table,
                slots,
                columns: at.columns.clone(),
                copy_sql,
                sequences,
            });
        }
        let mut recreate = Vec::new();
        for t in &tables {
            for fk in &t.table.foreign_keys {
                match (position.get(&fk.table_oid), position.get(&fk.ref_oid)) {
                    (Some(child), Some(parent))
                        if !fk.deferrable && fk.ref_oid != fk.table_oid && parent > child =>
                    {
                        recreate.push(fk);
                    }
                    _ => {}
                }
            }
        }
        Ok(Plan {
            oids: position.keys().copied().collect(),
            tables,
            recreate,
        })
    }

    fn table_by_oid(&self, oid: i64) -> &'c Table {
        self.tables
            .iter()
            .find(|t| t.table.oid == oid)
            .map(|t| t.table)
            .expect("a re-created key belongs to an archive table")
    }
}

/// Refuses before any change when a privilege is missing, naming table and privilege.
async fn check_privileges(conn: &mut PgConnection, plan: &Plan<'_>) -> Result<()> {
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| Error::db("cannot check the load's privileges", e))?;
    let missing = |privilege: &str, object: String| Error::MissingPrivilege {
        user: user.clone(),
        privilege: privilege.into(),
        object,
    };
    for t in &plan.tables {
        let row = sqlx::query(
            "SELECT pg_catalog.has_schema_privilege(c.relnamespace, 'USAGE'),
                    pg_catalog.has_table_privilege(c.oid, 'INSERT'),
                    pg_catalog.has_table_privilege(c.oid, 'DELETE')
             FROM pg_catalog.pg_class c WHERE c.oid::int8 = $1",
        )
        .bind(t.table.oid)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| Error::db("cannot check the load's privileges", e))?;
        let object = format!("table {}", t.table.display_name());
        if !row.get::<bool, _>(0) {
            return Err(missing("USAGE", format!("schema {}", t.table.schema)));
        }
        for (i, p) in [(1, "INSERT"), (2, "DELETE")] {
            if !row.get::<bool, _>(i) {
                return Err(missing(p, object));
            }
        }
        for s in &t.sequences {
            let (select, update): (bool, bool) = sqlx::query_as(
                "SELECT pg_catalog.has_column_privilege($1::int8::oid, $2, 'SELECT'),
                        pg_catalog.has_sequence_privilege($3, 'UPDATE')",
            )
            .bind(t.table.oid)
            .bind(&s.column)
            .bind(&s.sql_name)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| Error::db("cannot check the load's privileges", e))?;
            if !select {
                return Err(missing(
                    "SELECT (to set its sequence past the loaded values)",
                    format!("column {} of table {}", s.column, t.table.display_name()),
                ));
            }
            if !update {
                return Err(missing("UPDATE", format!("sequence {}", s.sql_name)));
            }
        }
    }
    for fk in &plan.recreate {
        let table = plan.table_by_oid(fk.table_oid);
        if !table.owned {
            return Err(missing(
                &format!(
                    "ownership (non-deferrable foreign key {} must be dropped and re-created because its table comes before {} in the archive)",
                    fk.name,
                    catalog::display_name(&fk.ref_schema, &fk.ref_table)
                ),
                format!("table {}", table.display_name()),
            ));
        }
    }
    Ok(())
}

/// Stops the load when emptying an archive table would cascade into a table outside the
/// archive that has rows.
async fn check_outside_tables(
    conn: &mut PgConnection,
    plan: &Plan<'_>,
    catalog: &Catalog,
) -> Result<()> {
    for outside in catalog
        .tables
        .iter()
        .filter(|t| !plan.oids.contains(&t.oid))
    {
        for fk in &outside.foreign_keys {
            let action = match fk.on_delete {
                'c' => "delete",
                'n' => "set null in",
                'd' => "set default in",
                _ => continue,
            };
            if !plan.oids.contains(&fk.ref_oid) {
                continue;
            }
            let has_rows: bool = sqlx::query_scalar(&format!(
                "SELECT EXISTS (SELECT 1 FROM {}{})",
                outside.only(),
                outside.sql_name()
            ))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| {
                Error::db(
                    format!(
                        "cannot check table {} (outside the archive, it references {})",
                        outside.display_name(),
                        catalog::display_name(&fk.ref_schema, &fk.ref_table)
                    ),
                    e,
                )
            })?;
            if has_rows {
                return Err(Error::OutsideTable {
                    outside: outside.display_name(),
                    constraint: fk.name.clone(),
                    table: catalog::display_name(&fk.ref_schema, &fk.ref_table),
                    action,
                });
            }
        }
    }
    Ok(())
}

enum Msg {
    Table(usize),
    Data(Vec<u8>),
    End(u64),
}

/// Streams every table's rows into COPY; returns the number of rows.
async fn copy_rows(
    conn: &mut PgConnection,
    reader: impl Read + Send + 'static,
    plan: &Plan<'_>,
) -> Result<u64> {
    let heads: Vec<(String, Vec<Slot>, String, Vec<String>)> = plan
        .tables
        .iter()
        .map(|t| {
            (
                t.table.name.clone(),
                t.slots.clone(),
                t.table.display_name(),
                t.columns.clone(),
            )
        })
        .collect();
    let (tx, mut rx) = mpsc::channel::<Msg>(4);
    let parser = tokio::task::spawn_blocking(move || {
        let mut sink = Feed { heads, out: tx };
        archive::read_rows(reader, &mut sink)
    });

    let mut total = 0u64;
    let mut failure: Option<Error> = None;
    'tables: while let Some(msg) = rx.recv().await {
        let Msg::Table(i) = msg else {
            failure = Some(Error::archive(
                "database.json changed while it was being loaded",
            ));
            break;
        };
        let target = &plan.tables[i];
        let name = target.table.display_name();
        let mut copy = match conn.copy_in_raw(&target.copy_sql).await {
            Ok(c) => c,
            Err(e) => {
                failure = Some(Error::db(format!("cannot load table {name}"), e));
                break;
            }
        };
        loop {
            match rx.recv().await {
                Some(Msg::Data(buf)) => {
                    if let Err(e) = copy.send(buf).await {
                        failure = Some(Error::db(format!("cannot load table {name}"), e));
                        break 'tables;
                    }
                }
                Some(Msg::End(rows)) => {
                    if let Err(e) = copy.finish().await {
                        failure = Some(Error::db(
                            format!("the archive's rows for table {name} cannot be loaded"),
                            e,
                        ));
                        break 'tables;
                    }
                    total += rows;
                    continue 'tables;
                }
                Some(Msg::Table(_)) | None => {
                    // The reader stopped mid-table (its error is collected below).
                    let _ = copy.abort("the archive could not be read").await;
                    break 'tables;
                }
            }
        }
    }
    drop(rx);
    let parsed = parser.await.map_err(|e| Error::Io {
        context: "the database.json reader stopped unexpectedly".into(),
        source: std::io::Error::other(e.to_string()),
    });
    // The loader's own error is the cause when it stopped first (the reader then only saw
    // a closed channel).
    if let Some(e) = failure {
        return Err(e);
    }
    parsed??;
    Ok(total)
}

/// Hands converted rows from the reader thread to the loader.
struct Feed {
    heads: Vec<(String, Vec<Slot>, String, Vec<String>)>,
    out: mpsc::Sender<Msg>,
}

#[derive(Debug, thiserror::Error)]
#[error("the loader stopped")]
struct Stopped;

impl Feed {
    fn send(&self, msg: Msg) -> Result<()> {
        self.out.blocking_send(msg).map_err(|_| Error::Io {
            context: "the loader stopped".into(),
            source: std::io::Error::other(Stopped),
        })
    }
}

impl RowSink for Feed {
    fn table(&mut self, index: usize, name: &str) -> Result<(Vec<Slot>, String, Vec<String>)> {
        let Some((expected, slots, shown, columns)) = self.heads.get(index) else {
            return Err(Error::archive(
                "database.json changed while it was being loaded",
            ));
        };
        if expected != name {
            return Err(Error::archive(
                "database.json changed while it was being loaded",
            ));
        }
        let head = (slots.clone(), shown.clone(), columns.clone());
        self.send(Msg::Table(index))?;
        Ok(head)
    }

    fn rows(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        let full = std::mem::replace(buf, Vec::with_capacity(buf.capacity()));
        self.send(Msg::Data(full))
    }

    fn end_table(&mut self, rows: u64) -> Result<()> {
        self.send(Msg::End(rows))
    }
}

/// Moves each sequence feeding a loaded column past the loaded values (an empty table leaves
/// its sequence as it is).
async fn set_sequences(conn: &mut PgConnection, plan: &Plan<'_>) -> Result<()> {
    for t in &plan.tables {
        for s in &t.sequences {
            let agg = if s.increment < 0 { "min" } else { "max" };
            sqlx::query(&format!(
                "SELECT pg_catalog.setval($1::text::regclass, v::int8)
                 FROM (SELECT pg_catalog.{agg}({}) AS v FROM {}{}) m WHERE v IS NOT NULL",
                catalog::quote_ident(&s.column),
                t.table.only(),
                t.table.sql_name()
            ))
            .bind(&s.sql_name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| {
                Error::db(
                    format!(
                        "cannot set sequence {} past the loaded values of column {} of table {}",
                        s.sql_name,
                        s.column,
                        t.table.display_name()
                    ),
                    e,
                )
            })?;
        }
    }
    Ok(())
}
