//! The database's own description of its tables, read from `pg_catalog` (not
//! `information_schema`, which hides the tables the role has no rights on, so a missing
//! privilege would silently shrink the backup instead of being reported).
//!
//! "User tables": ordinary and partitioned tables (relkind `r`, `p`) that are not partitions
//! (a partitioned table is dumped and loaded through its root, which routes rows), not
//! temporary, not in `pg_catalog`, `information_schema` or any other `pg_*` schema (TOAST,
//! temp), and not members of an extension (an extension creates and fills its own tables, as
//! pg_dump also assumes).

use std::collections::{BTreeSet, HashMap};

use sqlx::{PgConnection, Row};

use crate::{Error, Result};

/// The OIDs of the user tables, as a subquery.
const USER_TABLES: &str = r"SELECT c.oid FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence <> 't'
      AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                        AND d.objid = c.oid AND d.deptype = 'e')";

/// The user tables, parents before children by foreign keys (ties, and the members of a
/// cycle, by schema then name).
#[derive(Debug, Clone)]
pub struct Catalog {
    pub tables: Vec<Table>,
}

/// One table.
#[derive(Debug, Clone)]
pub struct Table {
    pub(crate) oid: i64,
    pub schema: String,
    pub name: String,
    /// A partitioned table: read and written without `ONLY`, so its partitions are included.
    pub partitioned: bool,
    /// Owned by the current role (or a role it inherits): needed to drop and re-create a
    /// foreign key during a load.
    pub(crate) owned: bool,
    /// In declaration order, dropped columns left out.
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    /// This table's own foreign keys (it is the referencing side).
    pub foreign_keys: Vec<ForeignKey>,
    /// Sequences feeding its columns (serial, identity, or a `nextval` default).
    pub sequences: Vec<Sequence>,
}

/// How a column's values are written in `database.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// int2, int4, int8: JSON integers.
    Int,
    /// `{"$base64": ...}`.
    Bytea,
    /// Everything else: PostgreSQL's text output as a JSON string.
    Text,
}

/// One column.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// `format_type` of the column's type with its modifier, schema-qualified when the type
    /// is not in `pg_catalog` (e.g. `numeric(10,2)`, `public.mood`, `integer[]`).
    pub type_name: String,
    pub kind: Kind,
    /// A stored generated column: dumped for information, never loaded.
    pub generated: bool,
    /// `always` or `by default` for an identity column.
    pub identity: Option<&'static str>,
}

/// A foreign key: `columns` of the owning table reference `ref_columns` of the table with OID
/// `ref_oid` (`ref_schema`.`ref_table`).
#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub name: String,
    pub(crate) table_oid: i64,
    pub(crate) ref_oid: i64,
    pub columns: Vec<String>,
    pub ref_schema: String,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    pub deferrable: bool,
    /// The `ON DELETE` action code of `pg_constraint.confdeltype` (`a` no action, `r`
    /// restrict, `c` cascade, `n` set null, `d` set default).
    pub on_delete: char,
    /// `pg_get_constraintdef`, to re-create it.
    pub(crate) definition: String,
}

/// A sequence that hands out values for `column`.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// Quoted and schema-qualified, ready for SQL.
    pub(crate) sql_name: String,
    pub column: String,
    pub(crate) increment: i64,
}

impl Table {
    /// `schema.name`, each part quoted: for SQL.
    pub fn sql_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// `schema.name` for messages (quoted only where a reader needs it).
    pub fn display_name(&self) -> String {
        display_name(&self.schema, &self.name)
    }

    /// `ONLY ` for a plain table (inheritance children are tables of their own), nothing for a
    /// partitioned one.
    pub(crate) fn only(&self) -> &'static str {
        if self.partitioned { "" } else { "ONLY " }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

impl Catalog {
    pub fn table(&self, schema: &str, name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
    }

    pub(crate) fn by_oid(&self, oid: i64) -> Option<&Table> {
        self.tables.iter().find(|t| t.oid == oid)
    }
}

/// `"ident"` with inner quotes doubled: always quoted, so mixed case and reserved words are
/// kept as they are.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `schema.name`, quoting a part only when it is not a plain lowercase identifier.
pub fn display_name(schema: &str, name: &str) -> String {
    fn part(s: &str) -> String {
        let plain = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if plain { s.to_owned() } else { quote_ident(s) }
    }
    format!("{}.{}", part(schema), part(name))
}

fn read_err(e: sqlx::Error) -> Error {
    Error::db("cannot read the database's catalog", e)
}

/// Reads every user table with its columns, keys and sequences, in parents-first order.
pub async fn read(conn: &mut PgConnection) -> Result<Catalog> {
    let rows = sqlx::query(&format!(
        "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind = 'p',
                pg_catalog.pg_has_role(c.relowner, 'USAGE')
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid IN ({USER_TABLES}) ORDER BY 2, 3"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(read_err)?;
    let mut tables: Vec<Table> = rows
        .iter()
        .map(|r| Table {
            oid: r.get(0),
            schema: r.get(1),
            name: r.get(2),
            partitioned: r.get(3),
            owned: r.get(4),
            columns: Vec::new(),
            primary_key: Vec::new(),
            foreign_keys: Vec::new(),
            sequences: Vec::new(),
        })
        .collect();
    let index: HashMap<i64, usize> = tables.iter().enumerate().map(|(i, t)| (t.oid, i)).collect();

    // A domain is written as its base type (one level: a domain over a domain is text, which
    // is still lossless).
    let cols = sqlx::query(&format!(
        "SELECT a.attrelid::int8, a.attname::text,
                pg_catalog.format_type(a.atttypid, a.atttypmod),
                (CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END)::int8,
                a.attgenerated::text, a.attidentity::text
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid IN ({USER_TABLES}) AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attrelid, a.attnum"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(read_err)?;
    for r in cols {
        let Some(&i) = index.get(&r.get::<i64, _>(0)) else {
            continue;
        };
        let kind = match r.get::<i64, _>(3) {
            16 => Kind::Bool,
            20 | 21 | 23 => Kind::Int,
            17 => Kind::Bytea,
            _ => Kind::Text,
        };
        let generated: String = r.get(4);
        let identity: String = r.get(5);
        tables[i].columns.push(Column {
            name: r.get(1),
            type_name: r.get(2),
            kind,
            generated: !generated.is_empty(),
            identity: match identity.as_str() {
                "a" => Some("always"),
                "d" => Some("by default"),
                _ => None,
            },
        });
    }

    let cons = sqlx::query(&format!(
        "SELECT co.conrelid::int8, co.conname::text, co.contype::text, co.confrelid::int8,
                co.condeferrable, co.confdeltype::text,
                ARRAY(SELECT a.attname::text FROM unnest(co.conkey) WITH ORDINALITY k(n, i)
                      JOIN pg_catalog.pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.n
                      ORDER BY k.i),
                ARRAY(SELECT a.attname::text FROM unnest(co.confkey) WITH ORDINALITY k(n, i)
                      JOIN pg_catalog.pg_attribute a ON a.attrelid = co.confrelid AND a.attnum = k.n
                      ORDER BY k.i),
                pg_catalog.pg_get_constraintdef(co.oid),
                COALESCE(rn.nspname::text, ''), COALESCE(rc.relname::text, '')
         FROM pg_catalog.pg_constraint co
         LEFT JOIN pg_catalog.pg_class rc ON rc.oid = co.confrelid
         LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
         WHERE co.contype IN ('p', 'f') AND co.conparentid = 0
           AND co.conrelid IN ({USER_TABLES})
         ORDER BY co.conrelid, co.conname"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(read_err)?;
    for r in cons {
        let Some(&i) = index.get(&r.get::<i64, _>(0)) else {
            continue;
        };
        let contype: String = r.get(2);
        if contype == "p" {
            tables[i].primary_key = r.get(6);
            continue;
        }
        let on_delete: String = r.get(5);
        tables[i].foreign_keys.push(ForeignKey {
            name: r.get(1),
            table_oid: r.get(0),
            ref_oid: r.get(3),
            deferrable: r.get(4),
            on_delete: on_delete.chars().next().unwrap_or('a'),
            columns: r.get(6),
            ref_columns: r.get(7),
            definition: r.get(8),
            ref_schema: r.get(9),
            ref_table: r.get(10),
        });
    }

    // Owned sequences (serial: deptype 'a'; identity: 'i'), and sequences a column default
    // calls nextval on without owning them.
    let seqs = sqlx::query(&format!(
        "SELECT d.refobjid::int8, a.attname::text,
                pg_catalog.quote_ident(sn.nspname) || '.' || pg_catalog.quote_ident(s.relname),
                ps.seqincrement
         FROM pg_catalog.pg_depend d
         JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
         JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
         JOIN pg_catalog.pg_sequence ps ON ps.seqrelid = s.oid
         JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.deptype IN ('a', 'i') AND d.refobjid IN ({USER_TABLES})
         UNION
         SELECT ad.adrelid::int8, a.attname::text,
                pg_catalog.quote_ident(sn.nspname) || '.' || pg_catalog.quote_ident(s.relname),
                ps.seqincrement
         FROM pg_catalog.pg_attrdef ad
         JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
              AND d.objid = ad.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
         JOIN pg_catalog.pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
         JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
         JOIN pg_catalog.pg_sequence ps ON ps.seqrelid = s.oid
         JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
         WHERE ad.adrelid IN ({USER_TABLES})
         ORDER BY 1, 2, 3"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(read_err)?;
    for r in seqs {
        let Some(&i) = index.get(&r.get::<i64, _>(0)) else {
            continue;
        };
        tables[i].sequences.push(Sequence {
            column: r.get(1),
            sql_name: r.get(2),
            increment: r.get(3),
        });
    }

    let order = parents_first(&tables);
    let mut slots: Vec<Option<Table>> = tables.into_iter().map(Some).collect();
    let tables = order.into_iter().filter_map(|i| slots[i].take()).collect();
    Ok(Catalog { tables })
}

/// Kahn's algorithm over the foreign keys between user tables (self-references ignored); the
/// ready set is taken in index order, i.e. by schema then name. Tables left in a cycle follow
/// in index order.
fn parents_first(tables: &[Table]) -> Vec<usize> {
    let index: HashMap<i64, usize> = tables.iter().enumerate().map(|(i, t)| (t.oid, i)).collect();
    let mut parents: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); tables.len()];
    let mut children: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); tables.len()];
    for (i, t) in tables.iter().enumerate() {
        for fk in &t.foreign_keys {
            if let Some(&p) = index.get(&fk.ref_oid)
                && p != i
            {
                parents[i].insert(p);
                children[p].insert(i);
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..tables.len())
        .filter(|&i| parents[i].is_empty())
        .collect();
    let mut done = vec![false; tables.len()];
    let mut order = Vec::with_capacity(tables.len());
    while order.len() < tables.len() {
        let next = match ready.pop_first() {
            Some(i) => i,
            // A cycle: take the first remaining table and go on.
            None => (0..tables.len())
                .find(|&i| !done[i])
                .expect("fewer tables ordered than exist"),
        };
        if done[next] {
            continue;
        }
        done[next] = true;
        order.push(next);
        for &c in &children[next] {
            parents[c].remove(&next);
            if parents[c].is_empty() && !done[c] {
                ready.insert(c);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(oid: i64, name: &str, refs: &[i64]) -> Table {
        Table {
            oid,
            schema: "public".into(),
            name: name.into(),
            partitioned: false,
            owned: true,
            columns: vec![],
            primary_key: vec![],
            foreign_keys: refs
                .iter()
                .map(|&r| ForeignKey {
                    name: format!("fk{r}"),
                    table_oid: oid,
                    ref_oid: r,
                    columns: vec![],
                    ref_schema: "public".into(),
                    ref_table: String::new(),
                    ref_columns: vec![],
                    deferrable: false,
                    on_delete: 'a',
                    definition: String::new(),
                })
                .collect(),
            sequences: vec![],
        }
    }

    #[test]
    fn parents_come_first_and_cycles_do_not_hang() {
        // a -> c, b -> a, c self, d <-> e
        let tables = vec![
            t(1, "a", &[3]),
            t(2, "b", &[1]),
            t(3, "c", &[3]),
            t(4, "d", &[5]),
            t(5, "e", &[4]),
        ];
        let names: Vec<&str> = parents_first(&tables)
            .into_iter()
            .map(|i| tables[i].name.as_str())
            .collect();
        assert_eq!(names, ["c", "a", "b", "d", "e"]);
    }

    #[test]
    fn display_names_quote_only_when_needed() {
        assert_eq!(display_name("public", "t_1"), "public.t_1");
        assert_eq!(display_name("public", "Order"), "public.\"Order\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
