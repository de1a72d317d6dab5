//! The content database as the Data page shows it.

/// A content table with its row count and, for an admin, its columns and first rows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableSummary {
    /// The table's name (`schema.table` on PostgreSQL).
    pub name: String,
    pub rows: i64,
    /// Empty when the summary has no sample (counts only).
    pub columns: Vec<String>,
    /// The first rows, every value rendered as text, secrets masked.
    pub sample: Vec<Vec<String>>,
}
