//! Reading the rows a search chose. Opening a data file to read ten rows
//! costs about half a millisecond, and ten hits may lie in ten files, so
//! the projected columns come from memory where they fit (the files'
//! columns decoded once and kept: [`decoded_columns`](super::super::decoded_columns)),
//! otherwise from only those rows' pages of the files; the vectors come
//! from memory when the file's decoded vector column or graph is loaded
//! already (a vector page holds a thousand rows' floats: decoding ten of
//! them for ten hits costs more than the search).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, RecordBatchOptions, UInt32Array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};

use super::super::decoded_columns;
use super::super::files::{LiveFile, Snapshot, read_rows, resolve};
use super::super::table_files::TableFiles;
use super::exact::Vectors;
use super::graph_map::{self, GraphPart};
use super::{cache, columns};

/// What reading hits needs to know about the table and the output.
pub(super) struct HitRows<'a> {
    pub table: &'a TableFiles,
    pub snapshot: &'a Snapshot,
    /// Each file's graph (by position in the snapshot), if it has one.
    pub graphs: &'a [Option<&'a GraphPart>],
    pub vector_column: usize,
    /// Table columns wanted, in output order.
    pub projection: &'a [usize],
    pub output_schema: &'a SchemaRef,
    /// Whether the projected columns are taken from decoded columns
    /// rather than read from the files' pages.
    pub from_memory: bool,
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
        let part = self.graphs.get(ordinal).copied().flatten()?;
        cache::cached(&resolve(&self.table.dir, &part.graph))
            .map(|graph| Vectors::Graph(graph, part.slot))
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
        } else if self.from_memory {
            Some(self.take_decoded(live, &columns, rows).await?)
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

    /// `columns` (table order) of `rows` of `live`, taken from the
    /// columns decoded in memory.
    async fn take_decoded(
        &self,
        live: &LiveFile,
        columns: &[usize],
        rows: &[u64],
    ) -> Result<RecordBatch> {
        let positions = rows
            .iter()
            .map(|&row| u32::try_from(row))
            .collect::<std::result::Result<UInt32Array, _>>()
            .map_err(|e| DataFusionError::Internal(format!("row position: {e}")))?;
        let arrays = decoded_columns::take_rows(self.table, live, columns, &positions).await?;
        Ok(RecordBatch::try_new(
            Arc::new(self.table.schema.project(columns)?),
            arrays,
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
            let vector = match vectors {
                Vectors::Column(column) => usize::try_from(*row)
                    .ok()
                    .and_then(|row| column.vector(row)),
                Vectors::Graph(graph, slot) => graph.vector(graph_map::key(*slot, *row)),
            };
            let found = vector.map(|v| out.copy_from_slice(v)).is_some();
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
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::execution::runtime_env::RuntimeEnv;
    use object_store::ObjectStore;
    use object_store::memory::InMemory;
    use object_store::path::Path;

    use super::super::super::files::DataFileWriter;
    use super::*;

    /// A one-file table of 100 rows: `id`, `body` (NULL every 7th row) and
    /// a 2-dimensional vector `v`.
    async fn table() -> Result<(TableFiles, Arc<Snapshot>)> {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dir = Path::from("t");
        let item = Arc::new(Field::new_list_field(DataType::Float32, true));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("body", DataType::Utf8, true),
            Field::new("v", DataType::FixedSizeList(Arc::clone(&item), 2), true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from_iter_values(0..100)),
                Arc::new(StringArray::from_iter(
                    (0..100).map(|i| (i % 7 != 0).then(|| format!("row {i}"))),
                )),
                Arc::new(FixedSizeListArray::try_new(
                    item,
                    2,
                    Arc::new(Float32Array::from_iter_values((0..200).map(|x| x as f32))),
                    None,
                )?),
            ],
        )?;
        let mut writer = DataFileWriter::new(store.as_ref(), &dir, &schema);
        writer.write(&batch).await?;
        let files = writer.finish().await?;
        let snapshot = Snapshot::new(&store, &dir, &files);
        let table = TableFiles {
            store,
            dir,
            schema,
            metadata: RuntimeEnv::default()
                .cache_manager
                .get_file_metadata_cache(),
        };
        Ok((table, snapshot))
    }

    async fn read_hits(
        table: &TableFiles,
        snapshot: &Snapshot,
        projection: &[usize],
        rows: Vec<u64>,
        from_memory: bool,
    ) -> Result<RecordBatch> {
        let output_schema = Arc::new(table.schema.project(projection)?);
        HitRows {
            table,
            snapshot,
            graphs: &[],
            vector_column: 2,
            projection,
            output_schema: &output_schema,
            from_memory,
        }
        .read(BTreeMap::from([(0, rows)]))
        .await
    }

    #[tokio::test]
    async fn rows_taken_from_memory_are_the_rows_read_from_the_file() -> Result<()> {
        let (table, snapshot) = table().await?;
        // Not in table order, the vector included (read from the file: no
        // graph or decoded vector column is loaded).
        let projection = [1, 2, 0];
        let rows = vec![63, 0, 7, 99, 8];
        let from_file = read_hits(&table, &snapshot, &projection, rows.clone(), false).await?;
        let from_memory = read_hits(&table, &snapshot, &projection, rows, true).await?;
        assert_eq!(from_memory, from_file);
        let ids = from_memory.column(2).as_any().downcast_ref::<Int64Array>();
        assert_eq!(
            ids.map(|ids| ids.values().to_vec()),
            Some(vec![0, 7, 8, 63, 99])
        );
        assert_eq!(from_memory.column(0).null_count(), 3);
        Ok(())
    }

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
