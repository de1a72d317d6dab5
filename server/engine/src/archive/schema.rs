//! The content schema as the database itself describes it (`sqlite_master`,
//! `pragma table_info`, `pragma foreign_key_list`), so any schema can be dumped, validated and
//! loaded without code that knows its tables.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::Result;

/// The content tables in parents-first order, with their columns and foreign keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaInfo {
    /// The highest applied migration (0 without `_sqlx_migrations`); an archive whose
    /// `schema_version` is newer is refused.
    pub schema_version: i64,
    /// Parents before children (by foreign keys), ties broken by name.
    pub tables: Vec<TableInfo>,
    /// Set when the content DB is PostgreSQL: its catalog, against which an archive's tables
    /// and columns are checked (`tables` is then empty and `schema_version` unused: Backstop
    /// does not migrate a PostgreSQL content DB, so the check is per table and column).
    #[serde(skip)]
    pub postgres: Option<PgCatalog>,
}

/// A PostgreSQL content DB's catalog, read once per validation.
#[derive(Debug, Clone)]
pub struct PgCatalog(pub std::sync::Arc<content_pg::catalog::Catalog>);

impl PartialEq for PgCatalog {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for PgCatalog {}

/// One content table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableInfo {
    pub name: String,
    /// In declaration order.
    pub columns: Vec<ColumnInfo>,
    pub foreign_keys: Vec<ForeignKey>,
}

/// One column as `pragma table_info` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ColumnInfo {
    pub name: String,
    /// The declared type, as written in `CREATE TABLE` (may be empty).
    pub declared_type: String,
    pub not_null: bool,
    /// Position in the primary key (1-based), 0 when not part of it.
    pub primary_key: i64,
}

/// A foreign key of a table: `from` columns reference `to` columns of `table`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForeignKey {
    pub table: String,
    pub from: Vec<String>,
    pub to: Vec<String>,
}

/// SQLite's column affinity (section 3.1 of its datatype documentation), used to decide which
/// JSON values a column can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

impl ColumnInfo {
    pub(crate) fn affinity(&self) -> Affinity {
        let t = self.declared_type.to_ascii_uppercase();
        if t.contains("INT") {
            Affinity::Integer
        } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
            Affinity::Text
        } else if t.is_empty() || t.contains("BLOB") {
            Affinity::Blob
        } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }
}

impl SchemaInfo {
    /// The table called `name`.
    pub fn table(&self, name: &str) -> Option<&TableInfo> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// Reads the content schema from `pool`.
pub async fn content_schema(pool: &SqlitePool) -> Result<SchemaInfo> {
    let mut conn = pool.acquire().await?;
    read_schema(&mut conn).await
}

/// Reads the schema through `conn` (inside the dump's read transaction, so the dump and the
/// schema it records are the same snapshot).
pub(crate) async fn read_schema(conn: &mut SqliteConnection) -> Result<SchemaInfo> {
    let schema_version = schema_version(conn).await?;
    // Internal tables are SQLite's own and sqlx's migration bookkeeping; virtual tables (and
    // their shadow tables, which are regular tables and do get dumped) cannot be inserted
    // into like ordinary ones.
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> '_sqlx_migrations' \
         AND sql NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;

    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        let columns = sqlx::query(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?) ORDER BY cid",
        )
        .bind(&name)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| ColumnInfo {
            name: r.get(0),
            declared_type: r.get(1),
            not_null: r.get::<i64, _>(2) != 0,
            primary_key: r.get(3),
        })
        .collect();
        let mut fks: BTreeMap<i64, ForeignKey> = BTreeMap::new();
        for r in sqlx::query(
            "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?) ORDER BY id, seq",
        )
        .bind(&name)
        .fetch_all(&mut *conn)
        .await?
        {
            let fk = fks.entry(r.get(0)).or_insert_with(|| ForeignKey {
                table: r.get(1),
                from: Vec::new(),
                to: Vec::new(),
            });
            fk.from.push(r.get(2));
            // `to` is NULL when the key references the parent's primary key implicitly.
            fk.to.push(r.get::<Option<String>, _>(3).unwrap_or_default());
        }
        tables.push(TableInfo {
            name,
            columns,
            foreign_keys: fks.into_values().collect(),
        });
    }
    Ok(SchemaInfo {
        postgres: None,
        schema_version,
        tables: parents_first(tables),
    })
}

async fn schema_version(conn: &mut SqliteConnection) -> Result<i64> {
    let has_migrations: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if has_migrations.is_none() {
        return Ok(0);
    }
    let v: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(&mut *conn)
            .await?;
    Ok(v.unwrap_or(0))
}

/// Orders tables so every table comes after the tables it references (Kahn's algorithm,
/// always taking the smallest name that is ready, so the order is stable). Self references are
/// ignored; tables caught in a reference cycle follow in name order (the load defers foreign
/// key checks to the end of its transaction, so their order does not matter for correctness).
pub(crate) fn parents_first(tables: Vec<TableInfo>) -> Vec<TableInfo> {
    let known: BTreeSet<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let mut waiting_on: BTreeMap<String, BTreeSet<String>> = tables
        .iter()
        .map(|t| {
            let parents = t
                .foreign_keys
                .iter()
                .map(|fk| fk.table.as_str())
                .filter(|p| *p != t.name && known.contains(p))
                .map(str::to_owned)
                .collect();
            (t.name.clone(), parents)
        })
        .collect();
    let mut order: Vec<String> = Vec::with_capacity(tables.len());
    while !waiting_on.is_empty() {
        let ready = waiting_on
            .iter()
            .find(|(_, parents)| parents.is_empty())
            .map(|(name, _)| name.clone())
            // A cycle: break it at the smallest name.
            .or_else(|| waiting_on.keys().next().cloned());
        let Some(next) = ready else { break };
        waiting_on.remove(&next);
        for parents in waiting_on.values_mut() {
            parents.remove(&next);
        }
        order.push(next);
    }
    let mut by_name: BTreeMap<String, TableInfo> =
        tables.into_iter().map(|t| (t.name.clone(), t)).collect();
    order.iter().filter_map(|n| by_name.remove(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, parents: &[&str]) -> TableInfo {
        TableInfo {
            name: name.into(),
            columns: vec![],
            foreign_keys: parents
                .iter()
                .map(|p| ForeignKey {
                    table: (*p).into(),
                    from: vec![],
                    to: vec![],
                })
                .collect(),
        }
    }

    fn names(t: &[TableInfo]) -> Vec<&str> {
        t.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn parents_first_puts_referenced_tables_before_referencing_ones() {
        let t = parents_first(vec![
            table("a_streams", &["channels"]),
            table("channels", &["groups", "logos"]),
            table("groups", &[]),
            table("logos", &[]),
            table("zeta", &[]),
        ]);
        assert_eq!(
            names(&t),
            ["groups", "logos", "channels", "a_streams", "zeta"]
        );
    }

    #[test]
    fn parents_first_survives_self_references_and_cycles() {
        let t = parents_first(vec![
            table("tree", &["tree"]),
            table("b", &["c"]),
            table("c", &["b"]),
            table("d", &["b"]),
        ]);
        // `tree` only references itself, so it is ready first; the b <-> c cycle is broken at
        // the smaller name.
        assert_eq!(names(&t), ["tree", "b", "c", "d"]);
    }

    #[test]
    fn affinity_follows_sqlite_rules() {
        let col = |t: &str| ColumnInfo {
            name: "x".into(),
            declared_type: t.into(),
            not_null: false,
            primary_key: 0,
        };
        assert_eq!(col("BIGINT").affinity(), Affinity::Integer);
        assert_eq!(col("varchar(20)").affinity(), Affinity::Text);
        assert_eq!(col("").affinity(), Affinity::Blob);
        assert_eq!(col("DOUBLE").affinity(), Affinity::Real);
        assert_eq!(col("DATETIME").affinity(), Affinity::Numeric);
        assert_eq!(col("BOOLEAN").affinity(), Affinity::Numeric);
    }
}
