//! Where a continuous query's finished epochs go: [`EpochSink`]. A
//! materialized view is one (its content); `CREATE SINK` writes them out:
//!
//! ```sql
//! CREATE SINK s FROM v WITH ('connector' = 'filesystem', 'path' = 'file:///tmp/out/',
//!                            'format' = 'parquet' | 'json');
//! CREATE SINK s AS SELECT … WITH ('connector' = 'table', 'table' = 't');
//! ```
//!
//! A sink of an append-only query (windows, generators, projections of a
//! generator) delivers its rows as they are; a sink of an updating query
//! delivers them with an `op` column first (`'insert'`/`'delete'`). A file
//! sink writes one file per epoch with changes,
//! `part-<epoch>-<unique id>.parquet|json`, through `object_store` (local
//! folders and `s3://`); a table sink appends to a Sluice table whose
//! columns match the rows (with `op` for an updating query). File and
//! table sinks of a checkpointed query deliver exactly once (two-phase, see
//! [`FileSink`] and [`TableSink`]); a sink whose query cannot checkpoint
//! delivers at least once: a restarted server runs its query again from
//! the start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::physical_plan::collect;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sluice_types::error::{SluiceError, SqlState};

use super::checkpoint::StateSnapshot;
use super::kept_epochs::KeptEpochs;
use super::signal::{Change, ChangeOp, Epoch};
use crate::storage::{DurableSink, DurableTable, delete_if_present};

/// Receives a continuous query's epochs, each once it is complete.
#[async_trait]
pub trait EpochSink: Send + Sync {
    /// Takes one epoch's changes; returns the rows it took.
    async fn apply_epoch(&self, epoch: Epoch, changes: &[Change]) -> Result<u64>;

    /// Whether its state can be checkpointed and restored, so that a
    /// restored query delivers each row once. A sink that cannot runs its
    /// query without checkpoints: it starts over after a restart, at least
    /// once.
    fn checkpointable(&self) -> bool {
        false
    }

    /// What it holds after the last applied epoch, for a checkpoint.
    fn snapshot(&self) -> Result<Option<StateSnapshot>> {
        Ok(None)
    }

    /// Goes back to what [`Self::snapshot`] took.
    async fn restore(&self, _snapshot: StateSnapshot) -> Result<()> {
        Err(DataFusionError::Internal(
            "this sink cannot be restored from a checkpoint".into(),
        ))
    }

    /// The query checkpoints, as instance `generation`: from now on the
    /// sink only pre-commits each epoch, and delivers it once a checkpoint
    /// covering it is durable ([`Self::checkpoint_committed`]).
    fn use_checkpoints(&self, _generation: u64) {}

    /// The checkpoint of `epoch` is durable: deliver what was pre-committed
    /// up to it.
    async fn checkpoint_committed(&self, _epoch: Epoch) -> Result<()> {
        Ok(())
    }
}

/// How a sink's rows look: the query's rows, with `op` first when the query
/// updates.
#[derive(Debug, Clone)]
pub struct SinkRows {
    name: String,
    query_schema: SchemaRef,
    updating: bool,
    schema: SchemaRef,
}

impl SinkRows {
    /// The rows of sink `name` for a query producing `query_schema`.
    pub fn new(name: &str, query_schema: SchemaRef, updating: bool) -> Self {
        let schema = if updating {
            let mut fields = vec![Arc::new(Field::new("op", DataType::Utf8, false))];
            fields.extend(query_schema.fields().iter().cloned());
            Arc::new(Schema::new(fields))
        } else {
            Arc::clone(&query_schema)
        };
        Self {
            name: name.to_owned(),
            query_schema,
            updating,
            schema,
        }
    }

    /// The delivered rows' schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// One epoch's changes as one batch of delivered rows (`None`: none).
    pub(super) fn batch(&self, changes: &[Change]) -> Result<Option<RecordBatch>> {
        let mut batches = Vec::with_capacity(changes.len());
        for change in changes.iter().filter(|c| c.batch.num_rows() > 0) {
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
            if self.updating {
                columns.push(Arc::new(StringArray::from(vec![
                    change.op.name();
                    change.batch.num_rows()
                ])));
            } else if change.op == ChangeOp::Delete {
                return Err(SluiceError::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    format!(
                        "sink {} delivers an append-only query, which retracted rows",
                        self.name
                    ),
                )
                .into());
            }
            columns.extend(change.batch.columns().iter().cloned());
            batches.push(RecordBatch::try_new(Arc::clone(&self.schema), columns)?);
        }
        if batches.is_empty() {
            return Ok(None);
        }
        Ok(Some(concat_batches(&self.schema, &batches)?))
    }

    /// The query's rows' schema.
    pub fn query_schema(&self) -> &SchemaRef {
        &self.query_schema
    }
}

/// File formats a file sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Apache Parquet.
    Parquet,
    /// Newline-delimited JSON.
    Json,
}

impl FileFormat {
    /// The format named by a `'format'` option.
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "parquet" => Ok(Self::Parquet),
            "json" | "ndjson" => Ok(Self::Json),
            other => Err(SluiceError::new(
                SqlState::INVALID_PARAMETER_VALUE,
                format!("a file sink writes 'parquet' or 'json', not '{other}'"),
            )
            .into()),
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Json => "json",
        }
    }

    fn encode(self, batch: &RecordBatch) -> Result<Vec<u8>> {
        match self {
            Self::Parquet => {
                let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), None)?;
                writer.write(batch)?;
                Ok(writer.into_inner()?)
            }
            Self::Json => {
                let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
                writer.write(batch)?;
                writer.finish()?;
                Ok(writer.into_inner())
            }
        }
    }
}

/// Writes each epoch as a file under a prefix of an object store.
///
/// When its query checkpoints, delivery is two-phase: an epoch's file is
/// first written under `_pending/` (pre-commit, named with the instance's
/// generation), and moved to its final name once a checkpoint covering the
/// epoch is durable. A restore finishes the restored checkpoint's own
/// pre-commits up to its epoch and deletes every other pending file (later
/// epochs are computed again; a zombie's files are never delivered), so
/// each row lands in exactly one delivered file.
pub struct FileSink {
    rows: SinkRows,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    format: FileFormat,
    /// The checkpointing instance's generation (0: no checkpoints, files
    /// are delivered at once).
    generation: AtomicU64,
    /// The last epoch applied.
    applied: AtomicU64,
}

/// A pending file's epoch and generation, from its name
/// `part-<epoch>-g<generation>-<uuid>.<ext>`.
fn pending_epoch_and_generation(name: &str) -> Option<(u64, u64)> {
    let mut parts = name.strip_prefix("part-")?.split('-');
    let epoch = parts.next()?.parse().ok()?;
    let generation = parts.next()?.strip_prefix('g')?.parse().ok()?;
    Some((epoch, generation))
}

impl FileSink {
    /// A sink writing `rows` as `format` files under `prefix` of `store`.
    pub fn new(
        rows: SinkRows,
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        format: FileFormat,
    ) -> Self {
        Self {
            rows,
            store,
            prefix,
            format,
            generation: AtomicU64::new(0),
            applied: AtomicU64::new(0),
        }
    }

    fn pending_dir(&self) -> Path {
        self.prefix.clone().join("_pending")
    }

    /// The pending files: (name, epoch, generation).
    async fn pending(&self) -> Result<Vec<(String, u64, u64)>> {
        let listed: Vec<_> = self
            .store
            .list(Some(&self.pending_dir()))
            .try_collect()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?.to_owned();
                let (epoch, generation) = pending_epoch_and_generation(&name)?;
                Some((name, epoch, generation))
            })
            .collect())
    }

    /// Moves a pending file to its final name (again, harmlessly, after a
    /// crash between the copy and the delete).
    async fn deliver(&self, name: &str) -> Result<()> {
        self.store
            .rename(
                &self.pending_dir().join(name),
                &self.prefix.clone().join(name),
            )
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

#[async_trait]
impl EpochSink for FileSink {
    async fn apply_epoch(&self, epoch: Epoch, changes: &[Change]) -> Result<u64> {
        self.applied.store(epoch.0, Ordering::Relaxed);
        let Some(batch) = self.rows.batch(changes)? else {
            return Ok(0);
        };
        let bytes = self.format.encode(&batch)?;
        // A unique part per file: a query started over numbers epochs from
        // 1 again, and must not overwrite what it delivered before.
        let generation = self.generation.load(Ordering::Relaxed);
        let name = format!(
            "part-{:020}-g{generation}-{}.{}",
            epoch.0,
            uuid::Uuid::new_v4(),
            self.format.extension()
        );
        let path = match generation {
            0 => self.prefix.clone().join(name),
            _ => self.pending_dir().join(name),
        };
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(batch.num_rows() as u64)
    }

    fn checkpointable(&self) -> bool {
        true
    }

    fn snapshot(&self) -> Result<Option<StateSnapshot>> {
        Ok(Some(StateSnapshot {
            batches: Vec::new(),
            meta: serde_json::json!({
                "epoch": self.applied.load(Ordering::Relaxed),
                "generation": self.generation.load(Ordering::Relaxed),
            }),
        }))
    }

    async fn restore(&self, snapshot: StateSnapshot) -> Result<()> {
        let epoch = snapshot.meta["epoch"].as_u64().unwrap_or(0);
        let generation = snapshot.meta["generation"].as_u64().unwrap_or(0);
        for (name, pending_epoch, pending_generation) in self.pending().await? {
            if pending_generation == generation && pending_epoch <= epoch {
                self.deliver(&name).await?;
            } else {
                delete_if_present(self.store.as_ref(), &self.pending_dir().join(name.as_str()))
                    .await?;
            }
        }
        self.applied.store(epoch, Ordering::Relaxed);
        Ok(())
    }

    fn use_checkpoints(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
    }

    async fn checkpoint_committed(&self, epoch: Epoch) -> Result<()> {
        let generation = self.generation.load(Ordering::Relaxed);
        for (name, pending_epoch, pending_generation) in self.pending().await? {
            if pending_generation == generation && pending_epoch <= epoch.0 {
                self.deliver(&name).await?;
            }
        }
        Ok(())
    }
}

/// Appends each epoch to a table. A checkpointed query's epochs are kept
/// (with the checkpoint: the pre-commit) until a checkpoint covering them
/// is durable, then committed to the table in one version that also
/// records the sink's newest delivered epoch; a restore commits its
/// checkpoint's kept epochs unless the table already records them.
pub struct TableSink {
    rows: SinkRows,
    table: Arc<dyn TableProvider>,
    /// The table's own appender when it is a durable Sluice table: what
    /// lets epochs commit exactly once.
    appender: Option<DurableSink>,
    state: SessionState,
    /// The checkpointing instance's generation (0: no checkpoints).
    generation: AtomicU64,
    kept: KeptEpochs,
}

impl TableSink {
    /// A sink appending `rows` to `table`, whose columns must take them.
    pub fn try_new(
        rows: SinkRows,
        table: Arc<dyn TableProvider>,
        name: &str,
        state: SessionState,
    ) -> Result<Self> {
        let target = table.schema();
        let delivered = rows.schema();
        let fits = target.fields().len() == delivered.fields().len()
            && target
                .fields()
                .iter()
                .zip(delivered.fields())
                .all(|(t, d)| {
                    datafusion::arrow::compute::can_cast_types(d.data_type(), t.data_type())
                });
        if !fits {
            let describe = |schema: &Schema| {
                schema
                    .fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(SluiceError::new(
                SqlState::DATATYPE_MISMATCH,
                format!(
                    "table {name} ({}) cannot take the sink's rows ({})",
                    describe(&target),
                    describe(delivered)
                ),
            )
            .into());
        }
        let any: &dyn std::any::Any = table.as_ref();
        let appender = any
            .downcast_ref::<DurableTable>()
            .map(DurableTable::appender);
        Ok(Self {
            rows,
            table,
            appender,
            state,
            generation: AtomicU64::new(0),
            kept: KeptEpochs::default(),
        })
    }

    /// `batch` in the table's column types.
    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let target = self.table.schema();
        let columns = batch
            .columns()
            .iter()
            .zip(target.fields())
            .map(|(column, field)| Ok(cast(column, field.data_type())?))
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(target, columns)?)
    }

    /// Commits the kept epochs `due` in one table version marked with the
    /// newest of them, unless the table already holds it.
    async fn commit_kept(&self, due: Vec<(Epoch, RecordBatch)>) -> Result<()> {
        let (Some(appender), Some((newest, _))) = (&self.appender, due.last()) else {
            return Ok(());
        };
        let newest = newest.0;
        let batches = due
            .iter()
            .map(|(_, batch)| self.conform(batch))
            .collect::<Result<Vec<_>>>()?;
        appender
            .append_once(&batches, &self.rows.name, newest)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl EpochSink for TableSink {
    async fn apply_epoch(&self, epoch: Epoch, changes: &[Change]) -> Result<u64> {
        let Some(batch) = self.rows.batch(changes)? else {
            return Ok(0);
        };
        if self.generation.load(Ordering::Relaxed) > 0 {
            let rows = batch.num_rows() as u64;
            self.kept.keep(epoch, batch);
            return Ok(rows);
        }
        let batch = self.conform(&batch)?;
        let target = batch.schema();
        let rows = batch.num_rows() as u64;
        let input = MemorySourceConfig::try_new_exec(&[vec![batch]], target, None)?;
        let plan = self
            .table
            .insert_into(&self.state, input, InsertOp::Append)
            .await?;
        collect(plan, Arc::new(TaskContext::from(&self.state))).await?;
        Ok(rows)
    }

    fn checkpointable(&self) -> bool {
        self.appender.is_some()
    }

    fn snapshot(&self) -> Result<Option<StateSnapshot>> {
        Ok(Some(StateSnapshot {
            batches: self.kept.snapshot_batches(self.rows.schema())?,
            meta: serde_json::Value::Null,
        }))
    }

    async fn restore(&self, snapshot: StateSnapshot) -> Result<()> {
        // Kept epochs the crash came before committing go in now; the
        // table's record of the sink's newest epoch skips the others.
        let kept = KeptEpochs::from_snapshot(&snapshot, self.rows.schema())?;
        self.commit_kept(kept).await?;
        self.kept.clear();
        Ok(())
    }

    fn use_checkpoints(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
    }

    async fn checkpoint_committed(&self, epoch: Epoch) -> Result<()> {
        self.commit_kept(self.kept.due(epoch)).await?;
        self.kept.forget_through(epoch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;

    use super::*;

    fn epoch_rows(value: i64) -> Vec<Change> {
        let batch = RecordBatch::try_from_iter([(
            "n",
            Arc::new(Int64Array::from(vec![value])) as ArrayRef,
        )])
        .unwrap();
        vec![Change::insert(batch)]
    }

    async fn names(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
        let listed: Vec<_> = store
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await
            .unwrap();
        let mut names: Vec<String> = listed
            .into_iter()
            .map(|m| m.location.as_ref().to_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_checkpointed_file_sink_delivers_each_epoch_once() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let schema = epoch_rows(0)[0].batch.schema();
        let sink = |store: &Arc<dyn ObjectStore>| {
            FileSink::new(
                SinkRows::new("s", Arc::clone(&schema), false),
                Arc::clone(store),
                Path::from("out"),
                FileFormat::Json,
            )
        };
        let first = sink(&store);
        first.use_checkpoints(7);
        for epoch in 1..=4 {
            first
                .apply_epoch(Epoch(epoch), &epoch_rows(epoch as i64))
                .await
                .unwrap();
        }
        // Pre-committed only, until a checkpoint covers them.
        assert_eq!(names(&store, "out/_pending").await.len(), 4);
        first.checkpoint_committed(Epoch(2)).await.unwrap();
        let delivered = |names: Vec<String>| {
            names
                .into_iter()
                .filter(|n| !n.contains("_pending"))
                .count()
        };
        assert_eq!(delivered(names(&store, "out").await), 2);
        // A zombie of generation 6 leaves a pending file behind.
        store
            .put(
                &Path::from("out/_pending/part-00000000000000000003-g6-x.json"),
                PutPayload::from_static(b"{}\n"),
            )
            .await
            .unwrap();
        // A crash after the checkpoint of epoch 3 committed, before its
        // files moved: the restore finishes epoch 3 and drops the rest.
        let restored = sink(&store);
        restored.use_checkpoints(8);
        let snapshot = StateSnapshot {
            batches: Vec::new(),
            meta: serde_json::json!({ "epoch": 3, "generation": 7 }),
        };
        restored.restore(snapshot).await.unwrap();
        assert_eq!(delivered(names(&store, "out").await), 3);
        assert!(names(&store, "out/_pending").await.is_empty());
    }
}
