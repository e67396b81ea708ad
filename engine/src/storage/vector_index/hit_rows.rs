//! Reading the rows a search chose: only those rows' pages of the
//! projected columns, and the vectors from memory when the file's decoded
//! column or graph is loaded already (a vector page holds a thousand rows'
//! floats: decoding ten of them for ten hits costs more than the search).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, RecordBatchOptions,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};

use super::super::files::{Snapshot, read_rows, resolve};
use super::super::table_files::TableFiles;
use super::exact::Vectors;
use super::{cache, columns};

/// What reading hits needs to know about the table and the output.
pub(super) struct HitRows<'a> {
    pub table: &'a TableFiles,
    pub snapshot: &'a Snapshot,
    /// Each file's graph (by position in the snapshot), if it has one.
    pub graphs: &'a [Option<&'a str>],
    pub vector_column: usize,
    /// Table columns wanted, in output order.
    pub projection: &'a [usize],
    pub output_schema: &'a SchemaRef,
}

impl HitRows<'_> {
    /// The projected columns of `rows` (distinct row positions by file
    /// position), in file then row order.
    pub async fn read(&self, rows: BTreeMap<usize, Vec<u64>>) -> Result<RecordBatch> {
        let mut batches = Vec::with_capacity(rows.len());
        for (ordinal, mut rows) in rows {
            rows.sort_unstable();
            rows.dedup();
            batches.push(self.read_file(ordinal, &rows).await?);
        }
        Ok(concat_batches(self.output_schema, &batches)?)
    }

    /// The vectors of the file at `ordinal` if they are in memory already.
    fn vectors_in_memory(&self, ordinal: usize) -> Option<Vectors> {
        let live = self.snapshot.files.get(ordinal)?;
        let name = self.table.schema.field(self.vector_column).name();
        if let Some(column) = columns::cached(live, name) {
            return Some(Vectors::Column(column));
        }
        let graph = self.graphs.get(ordinal).copied().flatten()?;
        cache::cached(&resolve(&self.table.dir, graph)).map(Vectors::Graph)
    }

    /// The projected columns of `rows` (sorted) of the file at `ordinal`.
    async fn read_file(&self, ordinal: usize, rows: &[u64]) -> Result<RecordBatch> {
        let live = self.snapshot.files.get(ordinal).ok_or_else(|| {
            DataFusionError::Internal(format!("no file {ordinal} in the snapshot"))
        })?;
        let in_memory = if self.projection.contains(&self.vector_column) {
            self.vectors_in_memory(ordinal)
        } else {
            None
        };
        // Parquet reads columns in file order; the projection may not be.
        let mut columns = self.projection.to_vec();
        if in_memory.is_some() {
            columns.retain(|c| *c != self.vector_column);
        }
        columns.sort_unstable();
        columns.dedup();
        let read = if columns.is_empty() {
            None
        } else {
            let batches = read_rows(
                &self.table.store,
                &live.location,
                live.file.size,
                &self.table.schema,
                &columns,
                Some(select_rows(rows, live.file.rows)),
                Some(&self.table.metadata),
            )
            .await?;
            Some(concat_batches(
                &Arc::new(self.table.schema.project(&columns)?),
                &batches,
            )?)
        };
        let vectors = match &in_memory {
            Some(vectors) => Some(self.vectors_of(vectors, rows)?),
            None => None,
        };
        let arrays = self
            .projection
            .iter()
            .map(|c| match (&vectors, &read) {
                (Some(vectors), _) if *c == self.vector_column => Ok(Arc::clone(vectors)),
                (_, Some(read)) => columns
                    .binary_search(c)
                    .map(|i| Arc::clone(read.column(i)))
                    .map_err(|_| DataFusionError::Internal(format!("column {c} not read"))),
                (_, None) => Err(DataFusionError::Internal(format!("column {c} not read"))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(self.output_schema),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )?)
    }

    /// The vector column of `rows`, taken from memory.
    fn vectors_of(&self, vectors: &Vectors, rows: &[u64]) -> Result<ArrayRef> {
        let DataType::FixedSizeList(item, width) =
            self.table.schema.field(self.vector_column).data_type()
        else {
            return Err(DataFusionError::Internal(
                "a vector search over a column that holds no vectors".into(),
            ));
        };
        let dimensions = *width as usize;
        let mut values = vec![0f32; rows.len() * dimensions];
        let mut valid = Vec::with_capacity(rows.len());
        for (row, out) in rows.iter().zip(values.chunks_exact_mut(dimensions)) {
            let found = match vectors {
                Vectors::Column(column) => usize::try_from(*row)
                    .ok()
                    .and_then(|row| column.vector(row))
                    .map(|v| out.copy_from_slice(v))
                    .is_some(),
                Vectors::Graph(graph) => graph.vector(*row, out),
            };
            valid.push(found);
        }
        let nulls = valid.contains(&false).then(|| NullBuffer::from(valid));
        Ok(Arc::new(FixedSizeListArray::try_new(
            Arc::clone(item),
            *width,
            Arc::new(Float32Array::from(values)),
            nulls,
        )?))
    }
}

/// A row selection of the (sorted, distinct) `rows` out of `total`.
fn select_rows(rows: &[u64], total: u64) -> RowSelection {
    let mut selectors = Vec::with_capacity(rows.len() * 2 + 1);
    let mut next = 0u64;
    for &row in rows {
        if row > next {
            selectors.push(RowSelector::skip((row - next) as usize));
        }
        selectors.push(RowSelector::select(1));
        next = row + 1;
    }
    if total > next {
        selectors.push(RowSelector::skip((total - next) as usize));
    }
    RowSelection::from(selectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_selection_picks_exactly_the_rows() {
        let selection = select_rows(&[0, 3, 4, 9], 12);
        let picked: Vec<usize> = selection
            .iter()
            .scan(0usize, |at, s| {
                let start = *at;
                *at += s.row_count;
                Some((!s.skip).then(|| start..start + s.row_count))
            })
            .flatten()
            .flatten()
            .collect();
        assert_eq!(picked, vec![0, 3, 4, 9]);
    }
}
