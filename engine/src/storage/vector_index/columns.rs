//! Decoded vector columns of data files, shared by every search in the
//! process and bounded in memory ([`CACHE_BYTES`], in a
//! [`DecodedCache`]), so that repeated exact searches run at memory speed
//! instead of reading and decoding Parquet each time.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::Float32Type;
use datafusion::error::{DataFusionError, Result};
use sluice_functions::vector::kernels;

use super::super::decoded_cache::{DecodedCache, Weighed};
use super::super::files::{LiveFile, read_rows};
use super::super::table_files::TableFiles;

/// Memory the decoded columns may take together (a million 384-dimension
/// vectors take 1.5 GB).
const CACHE_BYTES: usize = 4 << 30;

/// Consecutive rows of a column as the file's reader decoded them: the
/// vectors' floats back to back, and which rows are NULL.
#[derive(Debug)]
pub(super) struct Rows {
    /// The first row's position in the file.
    pub first: usize,
    /// `dimensions` floats per row.
    pub values: ScalarBuffer<f32>,
    /// NULL rows (their floats are unspecified); `None` when there are none.
    pub nulls: Option<NullBuffer>,
    /// Each row's `dot(v, v)`: a cosine distance then takes one dot product
    /// per row instead of three sums.
    pub norms: Vec<f32>,
}

impl Rows {
    /// The run of rows from `first` holding `values`.
    pub fn new(
        first: usize,
        values: ScalarBuffer<f32>,
        nulls: Option<NullBuffer>,
        dimensions: usize,
    ) -> Self {
        let norms = values
            .chunks_exact(dimensions.max(1))
            .map(|v| kernels::dot(v, v))
            .collect();
        Self {
            first,
            values,
            nulls,
            norms,
        }
    }

    /// Rows in this run.
    pub fn len(&self, dimensions: usize) -> usize {
        self.values.len() / dimensions
    }
}

/// One vector column of one data file, decoded.
#[derive(Debug)]
pub(super) struct VectorColumn {
    /// Floats per vector.
    pub dimensions: usize,
    /// The file's rows in order, in runs of the reader's batch size (kept
    /// as decoded: copying them into one buffer would hold the column twice
    /// while it is built).
    pub runs: Vec<Rows>,
}

impl VectorColumn {
    /// The vector of the row at `position`; `None` when it is NULL or past
    /// the end.
    pub fn vector(&self, position: usize) -> Option<&[f32]> {
        let run = self
            .runs
            .partition_point(|r| r.first <= position)
            .checked_sub(1)?;
        let rows = &self.runs[run];
        let row = position - rows.first;
        if row >= rows.len(self.dimensions) || rows.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return None;
        }
        Some(&rows.values[row * self.dimensions..(row + 1) * self.dimensions])
    }
}

impl Weighed for VectorColumn {
    fn bytes(&self) -> usize {
        self.runs
            .iter()
            .map(|r| {
                r.values.inner().capacity()
                    + r.norms.capacity() * 4
                    + r.nulls.as_ref().map_or(0, |n| n.buffer().len())
            })
            .sum()
    }
}

static COLUMNS: LazyLock<DecodedCache<VectorColumn>> =
    LazyLock::new(|| DecodedCache::new(CACHE_BYTES));

/// The column `column` (a table column index) of `live`, from the cache or
/// decoded from the file.
pub(super) async fn load(
    table: &TableFiles,
    live: &LiveFile,
    column: usize,
) -> Result<Arc<VectorColumn>> {
    let key = (
        live.location.clone(),
        table.schema.field(column).name().clone(),
    );
    COLUMNS
        .get_or_decode(key, || decode(table, live, column))
        .await
}

/// The column if it is decoded already (no file is read).
pub(super) fn cached(live: &LiveFile, name: &str) -> Option<Arc<VectorColumn>> {
    COLUMNS.cached(&(live.location.clone(), name.to_string()))
}

/// Reads and decodes the column from the file.
async fn decode(table: &TableFiles, live: &LiveFile, column: usize) -> Result<Arc<VectorColumn>> {
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
    let mut runs = Vec::with_capacity(batches.len());
    let mut dimensions = None;
    let mut first = 0;
    for batch in &batches {
        let list = batch.column(0).as_fixed_size_list_opt().ok_or_else(|| {
            DataFusionError::Internal(format!("{} holds no vectors", live.location))
        })?;
        let width = list.value_length() as usize;
        dimensions.get_or_insert(width);
        let values = list
            .values()
            .as_primitive_opt::<Float32Type>()
            .ok_or_else(|| {
                DataFusionError::Internal(format!("{} holds no float32 vectors", live.location))
            })?
            .values();
        if list.is_empty() {
            continue;
        }
        let start = list.value_offset(0) as usize;
        runs.push(Rows::new(
            first,
            values.slice(start, list.len() * width),
            list.logical_nulls().filter(|n| n.null_count() > 0),
            width,
        ));
        first += list.len();
    }
    Ok(Arc::new(VectorColumn {
        dimensions: dimensions.unwrap_or_default(),
        runs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column() -> VectorColumn {
        VectorColumn {
            dimensions: 2,
            runs: vec![
                Rows::new(0, ScalarBuffer::from(vec![0.0, 1.0, 2.0, 3.0]), None, 2),
                Rows::new(
                    2,
                    ScalarBuffer::from(vec![4.0, 5.0, 6.0, 7.0, 8.0, 9.0]),
                    Some(NullBuffer::from(vec![true, false, true])),
                    2,
                ),
            ],
        }
    }

    #[test]
    fn rows_are_found_across_runs_and_nulls_are_none() {
        let column = column();
        assert_eq!(column.vector(0), Some(&[0.0, 1.0][..]));
        assert_eq!(column.vector(1), Some(&[2.0, 3.0][..]));
        assert_eq!(column.vector(2), Some(&[4.0, 5.0][..]));
        assert_eq!(column.vector(3), None);
        assert_eq!(column.vector(4), Some(&[8.0, 9.0][..]));
        assert_eq!(column.vector(5), None);
    }
}
