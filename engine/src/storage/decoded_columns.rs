//! Whole columns of data files, decoded once and kept in memory for the
//! reads that pick a few rows out of every file: a point lookup's key
//! column, searched by binary search (through its sort order when the file
//! is not sorted by it, worked out once the column is looked up
//! repeatedly), and the columns the rows a lookup or a vector search chose
//! are taken from. Opening a Parquet file to read ten rows costs about half
//! a millisecond; taking them from a decoded column, microseconds.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Scalar, UInt32Array, make_comparator};
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::compute::{SortOptions, concat, sort_to_indices};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::error::Result;
use datafusion::parquet::file::metadata::ParquetMetaData;

use super::decoded_cache::{DecodedCache, Weighed};
use super::files::{LiveFile, Snapshot, read_rows};
use super::table_files::TableFiles;

/// Memory the decoded columns may take together.
const CACHE_BYTES: usize = 512 << 20;

/// At most this many bytes of the columns a read takes from memory,
/// decoded, over the whole table (estimated by [`decoded_bytes`]): beyond
/// it a first read decodes more than it saves, and the cache would keep
/// too few tables' columns. Larger reads go to the Parquet files.
pub(super) const TABLE_BYTES: u64 = 128 << 20;

/// Lookups of an unsorted key column answered by comparing every row
/// before its sort order is worked out: sorting costs a few comparisons of
/// every row, which a one-off query (`WHERE status = 'F'` in a report)
/// should not pay.
const LOOKUPS_BEFORE_SORTING: u32 = 3;

/// One column of one data file, decoded.
#[derive(Debug)]
pub(super) struct DecodedColumn {
    values: ArrayRef,
    /// Whether the values ascend with no NULL among them, worked out the
    /// first time the column serves as a key.
    ascending: OnceLock<bool>,
    /// The rows' positions in ascending order of their values (NULLs
    /// first), once [`LOOKUPS_BEFORE_SORTING`] lookups of an unsorted
    /// column have compared every row. (4 bytes a row, outside the
    /// cache's count: it is sized before any lookup.)
    order: OnceLock<UInt32Array>,
    unsorted_lookups: AtomicU32,
}

impl Weighed for DecodedColumn {
    fn bytes(&self) -> usize {
        self.values.get_array_memory_size()
    }
}

impl DecodedColumn {
    fn new(values: ArrayRef) -> Self {
        Self {
            values,
            ascending: OnceLock::new(),
            order: OnceLock::new(),
            unsorted_lookups: AtomicU32::new(0),
        }
    }

    /// The positions, ascending, of the rows equal to `key` (a one-row
    /// array of the column's type; never NULL).
    pub fn positions_of(&self, key: &ArrayRef) -> Result<Vec<u32>> {
        let compare = make_comparator(self.values.as_ref(), key.as_ref(), SortOptions::default())?;
        let rows = self.values.len();
        if self.ascending()? {
            let first = partition_point(rows, |i| compare(i, 0).is_lt());
            let end = partition_point(rows, |i| compare(i, 0).is_le());
            return Ok((first as u32..end as u32).collect());
        }
        let sorted = self.order.get().is_some()
            || self.unsorted_lookups.fetch_add(1, Ordering::Relaxed) >= LOOKUPS_BEFORE_SORTING;
        if !sorted {
            let equal = eq(&self.values, &Scalar::new(Arc::clone(key)))?;
            // NULL compares as not equal.
            let equal = match equal.nulls() {
                Some(nulls) => equal.values() & nulls.inner(),
                None => equal.values().clone(),
            };
            return Ok(equal.set_indices().map(|i| i as u32).collect());
        }
        let order = self.order()?.values();
        let first = partition_point(rows, |i| compare(order[i] as usize, 0).is_lt());
        let end = partition_point(rows, |i| compare(order[i] as usize, 0).is_le());
        let mut positions = order[first..end].to_vec();
        // File order, as a scan returns them.
        positions.sort_unstable();
        Ok(positions)
    }

    /// The values at `positions`. Text and binary views get their own
    /// buffer: taken as they are, a few rows would hold the whole column's
    /// (and count as its size wherever memory is reserved for them).
    pub fn take(&self, positions: &UInt32Array) -> Result<ArrayRef> {
        let taken = datafusion::arrow::compute::take(self.values.as_ref(), positions, None)?;
        Ok(match taken.data_type() {
            DataType::Utf8View => Arc::new(taken.as_string_view().gc()),
            DataType::BinaryView => Arc::new(taken.as_binary_view().gc()),
            _ => taken,
        })
    }

    /// Whether the values ascend (the `ascending` field).
    fn ascending(&self) -> Result<bool> {
        if let Some(ascending) = self.ascending.get() {
            return Ok(*ascending);
        }
        let ascending = self.values.null_count() == 0 && {
            let compare = make_comparator(
                self.values.as_ref(),
                self.values.as_ref(),
                SortOptions::default(),
            )?;
            (1..self.values.len()).all(|i| compare(i - 1, i).is_le())
        };
        Ok(*self.ascending.get_or_init(|| ascending))
    }

    /// The values' sort order (the `order` field), worked out on first use.
    fn order(&self) -> Result<&UInt32Array> {
        if let Some(order) = self.order.get() {
            return Ok(order);
        }
        let order = sort_to_indices(self.values.as_ref(), Some(SortOptions::default()), None)?;
        Ok(self.order.get_or_init(|| order))
    }
}

/// The first index in `0..len` for which `before` is false (`before` is
/// true for a prefix, false after it).
fn partition_point(len: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0, len);
    while low < high {
        let middle = low + (high - low) / 2;
        if before(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

static COLUMNS: LazyLock<DecodedCache<DecodedColumn>> =
    LazyLock::new(|| DecodedCache::new(CACHE_BYTES));

/// The column `column` (a table column index) of `live`, from the cache or
/// decoded from the file.
pub(super) async fn load(
    table: &TableFiles,
    live: &LiveFile,
    column: usize,
) -> Result<Arc<DecodedColumn>> {
    let key = (
        live.location.clone(),
        table.schema.field(column).name().clone(),
    );
    COLUMNS
        .get_or_decode(key, || async move {
            let batches = read_rows(
                &table.store,
                &live.location,
                live.file.size,
                &table.schema,
                &[column],
                None,
                Some(&table.metadata),
            )
            .await?;
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(0).as_ref()).collect();
            let values = match arrays.as_slice() {
                [] => datafusion::arrow::array::new_empty_array(
                    table.schema.field(column).data_type(),
                ),
                [one] => one.slice(0, one.len()),
                many => concat(many)?,
            };
            // Views into one buffer rather than the reader's hundreds: a
            // lookup's take clones the list of them.
            let values: ArrayRef = match values.data_type() {
                DataType::Utf8View => Arc::new(values.as_string_view().gc()),
                DataType::BinaryView => Arc::new(values.as_binary_view().gc()),
                _ => values,
            };
            Ok(Arc::new(DecodedColumn::new(values)))
        })
        .await
}

/// `columns` (table column indices) of the rows at `positions` of `live`,
/// taken from the decoded columns.
pub(super) async fn take_rows(
    table: &TableFiles,
    live: &LiveFile,
    columns: &[usize],
    positions: &UInt32Array,
) -> Result<Vec<ArrayRef>> {
    let mut arrays = Vec::with_capacity(columns.len());
    for &column in columns {
        arrays.push(load(table, live, column).await?.take(positions)?);
    }
    Ok(arrays)
}

/// What `columns` (table column indices) of a file of `rows` rows take
/// decoded, estimated from its metadata: Arrow's fixed part of each row (a
/// value, an offset or a view) plus the bytes of text and binary values,
/// which Arrow holds as Parquet's uncompressed pages do.
pub(super) fn decoded_bytes(
    metadata: &ParquetMetaData,
    rows: u64,
    schema: &Schema,
    columns: &[usize],
) -> u64 {
    let row_width: u64 = columns
        .iter()
        .map(|&c| fixed_width(schema.field(c).data_type()))
        .sum();
    let names: HashSet<&str> = columns
        .iter()
        .map(|&c| schema.field(c).name().as_str())
        .collect();
    rows * row_width + variable_bytes(metadata, &names, schema)
}

/// What `columns` of every file of `snapshot` take decoded (see
/// [`decoded_bytes`]).
pub(super) async fn table_bytes(
    table: &TableFiles,
    snapshot: &Snapshot,
    columns: &[usize],
) -> Result<u64> {
    let mut bytes = 0;
    for live in &snapshot.files {
        let metadata = table.parquet_metadata(live).await?;
        bytes += decoded_bytes(&metadata, live.file.rows, &table.schema, columns);
    }
    Ok(bytes)
}

/// Bytes per row Arrow holds for a value of `data_type`, apart from the
/// bytes of variable-length values.
fn fixed_width(data_type: &DataType) -> u64 {
    match data_type {
        DataType::Utf8View | DataType::BinaryView => 16,
        DataType::Utf8 | DataType::Binary => 4,
        DataType::LargeUtf8 | DataType::LargeBinary => 8,
        DataType::FixedSizeList(item, n) => fixed_width(item.data_type()) * (*n).max(0) as u64,
        DataType::FixedSizeBinary(n) => (*n).max(0) as u64,
        other => other.primitive_width().map_or(16, |w| w as u64),
    }
}

/// Uncompressed bytes of the named variable-length columns over the file:
/// their values' bytes, which Arrow holds as they are.
fn variable_bytes(metadata: &ParquetMetaData, names: &HashSet<&str>, schema: &Schema) -> u64 {
    let variable = |name: &str| {
        schema.field_with_name(name).is_ok_and(|field| {
            matches!(
                field.data_type(),
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Binary
                    | DataType::LargeBinary
                    | DataType::BinaryView
            )
        })
    };
    metadata
        .row_groups()
        .iter()
        .flat_map(|group| group.columns())
        .filter(|chunk| {
            chunk
                .column_path()
                .parts()
                .first()
                .is_some_and(|root| names.contains(root.as_str()) && variable(root))
        })
        .map(|chunk| u64::try_from(chunk.uncompressed_size()).unwrap_or(0))
        .sum()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};

    use super::*;

    fn positions(values: ArrayRef, key: ArrayRef) -> Vec<u32> {
        DecodedColumn::new(values).positions_of(&key).unwrap()
    }

    #[test]
    fn sorted_keys_are_found_by_binary_search_with_duplicates() {
        let values: ArrayRef = Arc::new(Int64Array::from(vec![1, 3, 3, 3, 7, 9]));
        let column = DecodedColumn::new(Arc::clone(&values));
        assert!(column.ascending().unwrap());
        let key = |k: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![k])) };
        assert_eq!(column.positions_of(&key(3)).unwrap(), vec![1, 2, 3]);
        assert_eq!(column.positions_of(&key(9)).unwrap(), vec![5]);
        assert!(column.positions_of(&key(4)).unwrap().is_empty());
        assert!(column.positions_of(&key(0)).unwrap().is_empty());
        assert!(column.positions_of(&key(10)).unwrap().is_empty());
    }

    #[test]
    fn unsorted_keys_are_found_row_by_row_then_through_their_sort_order() {
        let values: ArrayRef = Arc::new(StringArray::from(vec![
            Some("b"),
            None,
            Some("c"),
            Some("a"),
            Some("b"),
        ]));
        let column = DecodedColumn::new(Arc::clone(&values));
        assert!(!column.ascending().unwrap());
        let key = |k: &str| -> ArrayRef { Arc::new(StringArray::from(vec![k])) };
        // Row by row first, then through the sort order: the same rows.
        for _ in 0..LOOKUPS_BEFORE_SORTING {
            assert_eq!(column.positions_of(&key("b")).unwrap(), vec![0, 4]);
        }
        assert!(column.order.get().is_none());
        assert_eq!(column.positions_of(&key("b")).unwrap(), vec![0, 4]);
        assert!(column.order.get().is_some());
        assert_eq!(column.positions_of(&key("a")).unwrap(), vec![3]);
        assert_eq!(column.positions_of(&key("c")).unwrap(), vec![2]);
        assert!(column.positions_of(&key("")).unwrap().is_empty());
        assert!(column.positions_of(&key("d")).unwrap().is_empty());
        assert_eq!(positions(values, key("b")), vec![0, 4]);
    }
}
