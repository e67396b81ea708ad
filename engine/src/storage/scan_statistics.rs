//! What DataFusion's optimizer is told of a scan's rows: the exact row
//! count (files are immutable; a change rewrites them), the bytes on disk,
//! and per column the range and null count of the Parquet footers.
//!
//! Without a row count DataFusion could not tell a 25-row table from a
//! 6-million-row one and planned every join of them as two hash
//! repartitions (TPC-H ran 1.3× slower than DataFusion over the same
//! files). Without column ranges it could not size a join's output: it
//! took the distinct keys of `lineitem ⋈ supplier` to be lineitem's row
//! count and estimated the join at supplier's 10,000 rows where it has
//! 1.8 million, then built single hash tables of those 1.8 million rows
//! twice (TPC-H Q7 at 1.8× DataFusion's time, which reads the ranges from
//! the same footers).

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, ScalarValue, Statistics};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::error::Result;

use super::files::Snapshot;
use super::table_files::TableFiles;

/// The statistics of `snapshot`'s files, read from their footers (parsed
/// once, kept in the runtime's metadata cache).
///
/// Column figures are all inexact: they guide estimates, never answers
/// (DataFusion answers `min(x)` from an exact minimum without a scan, and
/// a column added by `ALTER TABLE … DEFAULT` after a file was written reads
/// as the default there, not as the NULL the footer implies).
pub(super) async fn snapshot_statistics(
    files: &TableFiles,
    snapshot: &Snapshot,
) -> Result<Statistics> {
    let mut per_file = Vec::with_capacity(snapshot.files.len());
    for live in &snapshot.files {
        let metadata = files.parquet_metadata(live).await?;
        per_file.push(DFParquetMetadata::statistics_from_parquet_metadata(
            &metadata,
            &files.schema,
        )?);
    }
    let columns = Statistics::try_merge_iter(&per_file, &files.schema)?.column_statistics;
    let mut statistics = manifest_statistics(snapshot, &files.schema);
    statistics.column_statistics = columns.into_iter().map(estimate_only).collect();
    Ok(statistics)
}

/// What the manifest alone tells: the row count and the bytes on disk.
fn manifest_statistics(snapshot: &Snapshot, schema: &SchemaRef) -> Statistics {
    let rows: u64 = snapshot.files.iter().map(|live| live.file.rows).sum();
    // Manifests written before sizes were kept say 0.
    let sized = snapshot.files.iter().all(|live| live.file.size > 0);
    let bytes: u64 = snapshot.files.iter().map(|live| live.file.size).sum();
    let mut statistics = Statistics::new_unknown(schema);
    statistics.num_rows = usize::try_from(rows).map_or(Precision::Absent, Precision::Exact);
    if sized {
        statistics.total_byte_size =
            usize::try_from(bytes).map_or(Precision::Absent, Precision::Inexact);
    }
    statistics
}

/// `column` as an estimate; unknown where a file had no range for it (a
/// column the file predates, or one with only NULLs: the footer reader
/// says NULL for both).
fn estimate_only(column: ColumnStatistics) -> ColumnStatistics {
    let has_range = |bound: &Precision<ScalarValue>| {
        bound
            .get_value()
            .is_some_and(|value: &ScalarValue| !value.is_null())
    };
    if has_range(&column.min_value) && has_range(&column.max_value) {
        column.to_inexact()
    } else {
        ColumnStatistics::new_unknown()
    }
}
