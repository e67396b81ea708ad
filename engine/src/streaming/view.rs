//! [`MaterializedView`]: a continuous query's current result, applied one
//! epoch at a time, and the [`TableProvider`] that lets `SELECT … FROM v`
//! read it.
//!
//! The content is a multiset of rows (a row and how many times it is
//! present), keyed by Arrow's row format, so an update arriving as a delete
//! and an insert lands on the right row whatever its columns' types.
//! Readers see whole epochs only: a scan copies the content as of the last
//! epoch applied.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use tokio::sync::broadcast;

use super::checkpoint::StateSnapshot;
use super::multiset::{RowCounts, add_rows};
use super::signal::{Change, ChangeOp, Epoch};
use super::sink::EpochSink;

/// Rows emitted per batch when a view is read.
const READ_BATCH_ROWS: usize = 8192;

/// What the view holds after its last applied epoch.
struct ViewContent {
    converter: RowConverter,
    rows: RowCounts,
    /// The content as batches, built at the first read after a change.
    cached: Option<Vec<RecordBatch>>,
    epoch: Option<Epoch>,
    /// The last epoch sent to subscribers.
    broadcast: Option<Epoch>,
}

/// Epochs a subscriber may fall behind before its subscription fails
/// (rather than silently missing changes).
const SUBSCRIBER_EPOCHS: usize = 1024;

/// One applied epoch's changes, as subscribers receive them.
#[derive(Debug)]
pub struct EpochChanges {
    /// The epoch.
    pub epoch: Epoch,
    /// Its changes, in the view's schema.
    pub changes: Vec<Change>,
}

/// What [`MaterializedView::subscribe`] hands a subscriber.
pub struct ViewFollower {
    /// The content and the epoch it is as of, when asked for.
    pub snapshot: Option<(Epoch, Vec<RecordBatch>)>,
    /// Every epoch applied after it.
    pub receiver: broadcast::Receiver<Arc<EpochChanges>>,
}

/// A materialized view's content; see the module docs.
pub struct MaterializedView {
    schema: SchemaRef,
    /// Whether its changes include deletes (an updating query).
    updating: bool,
    content: Mutex<ViewContent>,
    /// Every applied epoch with changes, for SUBSCRIBE.
    subscribers: broadcast::Sender<Arc<EpochChanges>>,
}

impl fmt::Debug for MaterializedView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaterializedView")
            .field("schema", &self.schema)
            .finish()
    }
}

impl MaterializedView {
    /// An empty view of rows of `schema`; `updating` when its query can
    /// retract rows (not append-only).
    pub fn try_new(schema: SchemaRef, updating: bool) -> Result<Self> {
        let converter = RowConverter::new(
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let (subscribers, _) = broadcast::channel(SUBSCRIBER_EPOCHS);
        Ok(Self {
            schema,
            updating,
            content: Mutex::new(ViewContent {
                converter,
                rows: HashMap::new(),
                cached: None,
                epoch: None,
                broadcast: None,
            }),
            subscribers,
        })
    }

    /// The view's row schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Whether the view's changes include deletes.
    pub fn is_updating(&self) -> bool {
        self.updating
    }

    fn content(&self) -> std::sync::MutexGuard<'_, ViewContent> {
        // A panic elsewhere cannot leave the map half-updated in a way that
        // matters more than losing the view: keep serving it.
        self.content.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one epoch's changes atomically. Returns the rows changed.
    pub fn apply_epoch(&self, epoch: Epoch, changes: &[Change]) -> Result<u64> {
        let mut content = self.content();
        let mut changed = 0u64;
        // Converted before the map is touched, so a failure leaves the
        // content as the previous epoch left it.
        let mut converted = Vec::with_capacity(changes.len());
        for change in changes {
            let columns = change.batch.columns();
            if columns.len() != self.schema.fields().len() {
                return Err(DataFusionError::Internal(format!(
                    "view expects {} columns, a change has {}",
                    self.schema.fields().len(),
                    columns.len()
                )));
            }
            converted.push((change.op, content.converter.convert_columns(columns)?));
        }
        for (op, rows) in converted {
            changed += rows.num_rows() as u64;
            let delta = match op {
                ChangeOp::Insert => 1,
                ChangeOp::Delete => -1,
            };
            add_rows(&mut content.rows, &rows, delta);
        }
        if changed > 0 {
            content.cached = None;
        }
        // A region replaying epochs after a restore re-applies epochs its
        // subscribers have had: they get each epoch once.
        if changed > 0 && content.broadcast.is_none_or(|sent| epoch > sent) {
            content.broadcast = Some(epoch);
            // Sent under the content's lock, so a subscriber that took the
            // content as of an epoch receives exactly the epochs after it.
            // An error only means no one subscribes.
            let _ = self.subscribers.send(Arc::new(EpochChanges {
                epoch,
                changes: changes
                    .iter()
                    .filter(|c| c.batch.num_rows() > 0)
                    .map(|c| Change {
                        op: c.op,
                        batch: RecordBatch::try_new(
                            Arc::clone(&self.schema),
                            c.batch.columns().to_vec(),
                        )
                        .unwrap_or_else(|_| c.batch.clone()),
                    })
                    .collect(),
            }));
        }
        content.epoch = Some(epoch);
        Ok(changed)
    }

    /// Starts following the view: its content as of the last applied epoch
    /// (when `snapshot`), and a receiver of every epoch applied after it.
    pub fn subscribe(&self, snapshot: bool) -> Result<ViewFollower> {
        // Under the content's lock, which `apply_epoch` holds while it
        // sends: no epoch falls between the snapshot and the receiver.
        let mut content = self.content();
        let epoch = content.epoch.unwrap_or(Epoch(0));
        let receiver = self.subscribers.subscribe();
        let snapshot = if snapshot {
            Some((epoch, Self::content_batches(&self.schema, &mut content)?))
        } else {
            None
        };
        Ok(ViewFollower { snapshot, receiver })
    }

    /// Open subscriptions (cursors, COPY streams) following the view.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.receiver_count()
    }

    /// The last epoch applied.
    pub fn epoch(&self) -> Option<Epoch> {
        self.content().epoch
    }

    /// The number of rows the view holds.
    pub fn row_count(&self) -> u64 {
        self.content()
            .rows
            .values()
            .filter(|c| **c > 0)
            .map(|c| *c as u64)
            .sum()
    }

    /// The content as batches.
    pub fn batches(&self) -> Result<Vec<RecordBatch>> {
        let mut content = self.content();
        Self::content_batches(&self.schema, &mut content)
    }

    fn content_batches(schema: &SchemaRef, content: &mut ViewContent) -> Result<Vec<RecordBatch>> {
        if let Some(cached) = &content.cached {
            return Ok(cached.clone());
        }
        let mut rows = Vec::with_capacity(content.rows.len());
        for (row, count) in &content.rows {
            for _ in 0..(*count).max(0) {
                rows.push(row.row());
            }
        }
        let mut batches = Vec::new();
        for chunk in rows.chunks(READ_BATCH_ROWS) {
            let columns = content.converter.convert_rows(chunk.iter().copied())?;
            batches.push(RecordBatch::try_new(Arc::clone(schema), columns)?);
        }
        drop(rows);
        content.cached = Some(batches.clone());
        Ok(batches)
    }
}

#[async_trait]
impl EpochSink for MaterializedView {
    async fn apply_epoch(&self, epoch: Epoch, changes: &[Change]) -> Result<u64> {
        MaterializedView::apply_epoch(self, epoch, changes)
    }

    fn checkpointable(&self) -> bool {
        true
    }

    fn snapshot(&self) -> Result<Option<StateSnapshot>> {
        let content = self.content();
        let meta = serde_json::json!({ "epoch": content.epoch.map(|e| e.0) });
        if content.rows.is_empty() {
            return Ok(Some(StateSnapshot {
                batches: Vec::new(),
                meta,
            }));
        }
        // Each distinct row once, with its count: the multiset as columns.
        let mut fields: Vec<_> = self.schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(COUNT_COLUMN, DataType::Int64, false)));
        let schema = Arc::new(Schema::new(fields));
        let entries: Vec<_> = content.rows.iter().collect();
        let mut batches = Vec::new();
        for chunk in entries.chunks(READ_BATCH_ROWS) {
            let mut columns = content
                .converter
                .convert_rows(chunk.iter().map(|(row, _)| row.row()))?;
            columns.push(Arc::new(Int64Array::from_iter_values(
                chunk.iter().map(|(_, count)| **count),
            )));
            batches.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
        }
        Ok(Some(StateSnapshot { batches, meta }))
    }

    async fn restore(&self, snapshot: StateSnapshot) -> Result<()> {
        let mut content = self.content();
        let mut rows = RowCounts::new();
        for batch in &snapshot.batches {
            let width = self.schema.fields().len();
            let counts = batch
                .columns()
                .get(width)
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .ok_or_else(|| {
                    DataFusionError::Execution("corrupt view checkpoint: no counts".into())
                })?;
            let converted = content
                .converter
                .convert_columns(&batch.columns()[..width])?;
            for (row, count) in converted.iter().zip(counts.values()) {
                rows.insert(row.owned(), *count);
            }
        }
        content.rows = rows;
        content.cached = None;
        content.epoch = snapshot.meta["epoch"].as_u64().map(Epoch);
        Ok(())
    }
}

/// The count column of a view's checkpoint.
const COUNT_COLUMN: &str = "__sluice_count";

/// `SELECT … FROM v` over a [`MaterializedView`].
#[derive(Debug)]
pub struct MaterializedViewTable {
    view: Arc<MaterializedView>,
}

impl MaterializedViewTable {
    /// The table of `view`.
    pub fn new(view: Arc<MaterializedView>) -> Self {
        Self { view }
    }

    /// The view read by this table.
    pub fn view(&self) -> &Arc<MaterializedView> {
        &self.view
    }
}

#[async_trait]
impl TableProvider for MaterializedViewTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(self.view.schema())
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batches = self.view.batches()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            Arc::clone(self.view.schema()),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{ArrayRef, StringArray};

    use super::*;

    fn rows(values: &[&str]) -> RecordBatch {
        RecordBatch::try_from_iter([(
            "s",
            Arc::new(StringArray::from(values.to_vec())) as ArrayRef,
        )])
        .unwrap()
    }

    fn content(view: &MaterializedView) -> Vec<String> {
        let mut out: Vec<String> = view
            .batches()
            .unwrap()
            .iter()
            .flat_map(|b| {
                let column = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                column
                    .iter()
                    .map(|v| v.unwrap_or("NULL").to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_restored_view_holds_what_its_snapshot_held() {
        let schema = rows(&[]).schema();
        let view = MaterializedView::try_new(Arc::clone(&schema), true).unwrap();
        view.apply_epoch(Epoch(1), &[Change::insert(rows(&["a", "a", "b"]))])
            .unwrap();
        view.apply_epoch(Epoch(2), &[Change::delete(rows(&["a"]))])
            .unwrap();
        let snapshot = view.snapshot().unwrap().unwrap();
        let restored = MaterializedView::try_new(schema, true).unwrap();
        restored
            .apply_epoch(Epoch(1), &[Change::insert(rows(&["stale"]))])
            .unwrap();
        restored.restore(snapshot).await.unwrap();
        assert_eq!(content(&restored), vec!["a", "b"]);
        assert_eq!(restored.epoch(), Some(Epoch(2)));
    }
}
