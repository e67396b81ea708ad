//! Point lookups on durable tables: `WHERE key = value` (a constant or a
//! prepared statement's parameter) answered from the key column decoded in
//! memory, by binary search (through the column's sort order when the
//! file is not sorted by it), instead of a Parquet scan.
//!
//! A Parquet scan narrowed to one page by statistics still opens the file,
//! reads and decompresses a page of every column and filters its rows:
//! about a millisecond a lookup, twenty times Postgres' B-tree walk. Data
//! files never change, so a decoded column serves every later lookup of
//! the file ([`decoded_columns`](super::decoded_columns), least recently
//! used out first); files whose key range (from their row-group
//! statistics) excludes the value are not read at all. The first lookup
//! of a file decodes its columns whole, so lookups only take this path
//! when the columns they read are small enough to keep ([`TABLE_BYTES`]);
//! larger tables keep the scan.
//!
//! The operator ([`KeyLookupExec`]) may hold the parameter instead of its
//! value, so that a prepared statement keeps its physical plan and binds
//! each execution's value into it (see `session::plan_cache`).

mod exec;
mod key_ranges;

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

pub use exec::KeyLookupExec;

use super::decoded_columns::TABLE_BYTES;
use super::files::Snapshot;
use super::table_files::TableFiles;

/// What a point lookup is asked: the rows whose `column` equals `key`,
/// among them those `residual` keeps.
#[derive(Debug, Clone)]
pub struct LookupRequest {
    /// The key column.
    pub column: String,
    /// The value looked up.
    pub key: LookupKey,
    /// The rest of the query's condition, on the table's columns
    /// (unqualified names); NULL drops a row.
    pub residual: Option<Expr>,
}

/// The value a lookup looks for.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupKey {
    /// A constant (of the key column's type).
    Value(ScalarValue),
    /// A prepared statement's parameter (`$1`), bound at execution.
    Parameter(String),
}

impl std::fmt::Display for LookupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(value) => write!(f, "{value}"),
            Self::Parameter(id) => write!(f, "{id}"),
        }
    }
}

/// The columns `projection` returns and `condition` reads, in table
/// order: what a lookup (or the scan standing in for it) reads of a row.
pub(in crate::storage) fn columns_read(
    schema: &Schema,
    projection: &[usize],
    condition: Option<&Expr>,
) -> Result<Vec<usize>> {
    let mut read = projection.to_vec();
    for column in condition.iter().flat_map(|c| c.column_refs()) {
        read.push(schema.index_of(&column.name)?);
    }
    read.sort_unstable();
    read.dedup();
    Ok(read)
}

/// Plans `request` over `snapshot` as a [`KeyLookupExec`], or `None` when
/// the columns it reads are too large to keep (see [`TABLE_BYTES`]).
pub(in crate::storage) async fn plan_lookup(
    table: TableFiles,
    snapshot: Arc<Snapshot>,
    request: &LookupRequest,
    projection: Option<&Vec<usize>>,
    state: &dyn Session,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let key_column = table.schema.index_of(&request.column)?;
    let projection = projection
        .cloned()
        .unwrap_or_else(|| (0..table.schema.fields().len()).collect());
    let read = columns_read(&table.schema, &projection, request.residual.as_ref())?;
    let mut needed = read.clone();
    needed.push(key_column);
    needed.sort_unstable();
    needed.dedup();
    let ranges = key_ranges::of_files(&table, &snapshot, key_column, &needed).await?;
    if ranges.iter().map(|r| r.bytes).sum::<u64>() > TABLE_BYTES {
        return Ok(None);
    }
    let read_schema = Arc::new(table.schema.project(&read)?);
    let residual = match &request.residual {
        Some(residual) => Some(state.create_physical_expr(
            residual.clone(),
            &DFSchema::try_from(Arc::clone(&read_schema))?,
        )?),
        None => None,
    };
    let key_type = table.schema.field(key_column).data_type().clone();
    let key = match &request.key {
        LookupKey::Value(value) => LookupKey::Value(value.cast_to(&key_type)?),
        parameter => parameter.clone(),
    };
    Ok(Some(Arc::new(KeyLookupExec::new(
        exec::Lookup {
            table,
            snapshot,
            ranges,
            key_column,
            key_type,
            read,
            read_schema,
            residual,
            projection,
        },
        key,
    )?)))
}
