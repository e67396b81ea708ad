//! What each data file's metadata tells a lookup before any row is read:
//! the range of its key values (from the row-group statistics), so that a
//! lookup skips the files that cannot hold the value, and what the columns
//! it would decode take in memory.

use std::cmp::Ordering;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use datafusion::parquet::arrow::parquet_to_arrow_schema;
use datafusion::parquet::file::metadata::ParquetMetaData;

use super::super::decoded_columns::decoded_bytes;
use super::super::files::Snapshot;
use super::super::table_files::TableFiles;

/// One data file as a lookup sees it.
#[derive(Debug, Clone)]
pub(super) struct KeyRange {
    /// The smallest and largest key in the file; `None` when the
    /// statistics do not say (the file is then always read).
    pub bounds: Option<(ScalarValue, ScalarValue)>,
    /// What the columns the lookup reads take decoded (an estimate).
    pub bytes: u64,
}

impl KeyRange {
    /// Whether the file may hold `key` (same type as the bounds).
    pub fn may_hold(&self, key: &ScalarValue) -> bool {
        match &self.bounds {
            Some((min, max)) => {
                !matches!(key.partial_cmp(min), Some(Ordering::Less))
                    && !matches!(key.partial_cmp(max), Some(Ordering::Greater))
            }
            None => true,
        }
    }
}

/// The key range of every file of `snapshot`, in its order, with what
/// `columns` (table column indices) take decoded.
pub(super) async fn of_files(
    table: &TableFiles,
    snapshot: &Snapshot,
    key_column: usize,
    columns: &[usize],
) -> Result<Vec<KeyRange>> {
    let key_name = table.schema.field(key_column).name();
    let mut ranges = Vec::with_capacity(snapshot.files.len());
    for live in &snapshot.files {
        let metadata = table.parquet_metadata(live).await?;
        ranges.push(KeyRange {
            bounds: bounds(
                &metadata,
                key_name,
                &table.schema.field(key_column).data_type().clone(),
            )
            .unwrap_or(None),
            bytes: decoded_bytes(&metadata, live.file.rows, &table.schema, columns),
        });
    }
    Ok(ranges)
}

/// The key column's smallest and largest value over the file's row groups,
/// as the key column's type.
fn bounds(
    metadata: &ParquetMetaData,
    key: &str,
    key_type: &DataType,
) -> Result<Option<(ScalarValue, ScalarValue)>> {
    let file = metadata.file_metadata();
    let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())?;
    let converter = StatisticsConverter::try_new(key, &schema, file.schema_descr())?;
    let mins = converter.row_group_mins(metadata.row_groups())?;
    let maxes = converter.row_group_maxes(metadata.row_groups())?;
    if mins.is_empty() || mins.null_count() > 0 || maxes.null_count() > 0 {
        return Ok(None);
    }
    let mut low: Option<ScalarValue> = None;
    let mut high: Option<ScalarValue> = None;
    for i in 0..mins.len() {
        let min = ScalarValue::try_from_array(&mins, i)?.cast_to(key_type)?;
        let max = ScalarValue::try_from_array(&maxes, i)?.cast_to(key_type)?;
        match low.as_ref().map(|low| min.partial_cmp(low)) {
            None | Some(Some(Ordering::Less)) => low = Some(min),
            Some(Some(_)) => {}
            // Values that do not compare: the statistics cannot be used.
            Some(None) => return Ok(None),
        }
        match high.as_ref().map(|high| max.partial_cmp(high)) {
            None | Some(Some(Ordering::Greater)) => high = Some(max),
            Some(Some(_)) => {}
            Some(None) => return Ok(None),
        }
    }
    Ok(low.zip(high))
}
