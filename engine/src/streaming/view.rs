//! [`MaterializedView`]: a continuous query's current result, applied one
//! epoch at a time, and the [`TableProvider`] that lets `SELECT … FROM v`
//! read it.
//!
//! The content is [`ViewRows`]: the inserted batches while only inserts
//! have come, a multiset of rows once a delete has. Readers see whole
//! epochs only: a scan copies the content as of the last epoch applied.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use tokio::sync::broadcast;

use super::checkpoint::{StateSnapshot, counted_changes, counted_schema};
use super::signal::{Change, Epoch};
use super::sink::EpochSink;
use super::view_rows::ViewRows;

/// What the view holds after its last applied epoch.
struct ViewContent {
    converter: RowConverter,
    rows: ViewRows,
    /// The content as batches, built at the first read after a change.
    cached: Option<Vec<RecordBatch>>,
    epoch: Option<Epoch>,
    /// The last epoch sent to subscribers.
    broadcast: Option<Epoch>,
    /// What incremental checkpoints need (`None`: the query does not
    /// checkpoint).
    increments: Option<Increments>,
}

/// A checkpointed view's changes since its last snapshot, so that the next
/// checkpoint writes only those: a view is the largest state of most
/// queries, and writing it whole every time is what checkpoints cost.
#[derive(Default)]
struct Increments {
    /// Changes applied since the last snapshot, as applied (shared
    /// batches, no copies).
    changes: Vec<Change>,
    /// The epoch of the last committed snapshot, when the next one may
    /// build on it.
    base: Option<Epoch>,
    /// Rows the last full snapshot wrote, and the deltas written on top of
    /// it since: once the deltas outweigh it, a full one is cheaper to
    /// restore than the chain.
    base_rows: usize,
    chain_rows: usize,
    chain_files: usize,
    /// The snapshot taken and not yet committed: its epoch, whether full,
    /// its rows.
    taken: Option<(Epoch, bool, usize)>,
}

/// Delta files after which a full snapshot is written whatever the sizes
/// (bounds the files a restore reads).
const MAX_CHAIN_FILES: usize = 64;

impl Increments {
    /// Whether a snapshot of `delta_rows` changes should be a delta.
    fn delta_pays(&self, delta_rows: usize) -> bool {
        self.base.is_some()
            && self.chain_files < MAX_CHAIN_FILES
            && self.chain_rows + delta_rows <= self.base_rows
    }
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
                rows: ViewRows::default(),
                cached: None,
                epoch: None,
                broadcast: None,
                increments: None,
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
        let mut applied = Vec::with_capacity(changes.len());
        for change in changes.iter().filter(|c| c.batch.num_rows() > 0) {
            let columns = change.batch.columns();
            if columns.len() != self.schema.fields().len() {
                return Err(DataFusionError::Internal(format!(
                    "view expects {} columns, a change has {}",
                    self.schema.fields().len(),
                    columns.len()
                )));
            }
            changed += change.batch.num_rows() as u64;
            applied.push((
                change.op,
                RecordBatch::try_new(Arc::clone(&self.schema), columns.to_vec())?,
            ));
        }
        // All or nothing: on an error the content stays as it was.
        let content = &mut *content;
        content.rows.apply(&content.converter, applied.clone())?;
        if let Some(increments) = &mut content.increments {
            increments
                .changes
                .extend(changes.iter().filter(|c| c.batch.num_rows() > 0).cloned());
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
                changes: applied
                    .into_iter()
                    .map(|(op, batch)| Change { op, batch })
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
        self.content().rows.row_count()
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
        let content = &mut *content;
        let batches = content.rows.batches(schema, &content.converter)?;
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
        let mut content = self.content();
        let epoch = content.epoch;
        let meta = serde_json::json!({ "epoch": epoch.map(|e| e.0) });
        let counted = counted_schema(&self.schema);
        if let Some(increments) = &mut content.increments {
            let changes = std::mem::take(&mut increments.changes);
            let delta_rows: usize = changes.iter().map(|c| c.batch.num_rows()).sum();
            if let (true, Some(base)) = (increments.delta_pays(delta_rows), increments.base) {
                // The changes as rows with a count of +1 or -1.
                let batches = counted_changes(&counted, &changes)?;
                increments.taken = epoch.map(|e| (e, false, delta_rows));
                return Ok(Some(StateSnapshot::delta(batches, meta, base.0)));
            }
        }
        let (batches, rows) = content.rows.counted_batches(&counted, &content.converter)?;
        if let Some(increments) = &mut content.increments {
            increments.taken = epoch.map(|e| (e, true, rows));
        }
        Ok(Some(StateSnapshot { batches, meta }))
    }

    /// Restores the content from a snapshot: a full one's rows and counts,
    /// then the deltas' counts added on top.
    async fn restore(&self, snapshot: StateSnapshot) -> Result<()> {
        let mut content = self.content();
        content.rows = ViewRows::restore(&self.schema, &content.converter, &snapshot.batches)?;
        content.cached = None;
        content.epoch = snapshot.meta["epoch"].as_u64().map(Epoch);
        if let Some(increments) = &mut content.increments {
            // The next snapshot is a full one.
            *increments = Increments::default();
        }
        Ok(())
    }

    fn use_checkpoints(&self, _generation: u64) {
        let mut content = self.content();
        if content.increments.is_none() {
            content.increments = Some(Increments::default());
        }
    }

    async fn checkpoint_committed(&self, epoch: Epoch) -> Result<()> {
        let mut content = self.content();
        let Some(increments) = &mut content.increments else {
            return Ok(());
        };
        if let Some((taken, full, rows)) = increments.taken.take() {
            if taken != epoch {
                // Not the snapshot this commit wrote: build on nothing.
                increments.base = None;
                return Ok(());
            }
            if full {
                increments.base_rows = rows;
                increments.chain_rows = 0;
                increments.chain_files = 0;
            } else {
                increments.chain_rows += rows;
                increments.chain_files += 1;
            }
            increments.base = Some(epoch);
        }
        Ok(())
    }
}

/// `SELECT … FROM v` over a [`MaterializedView`].
#[derive(Debug)]
pub struct MaterializedViewTable {
    view: Arc<MaterializedView>,
    /// The query's text (`pg_matviews.definition`).
    definition: String,
}

impl MaterializedViewTable {
    /// The table of `view`, which `definition` (a query's text) computes.
    pub fn new(view: Arc<MaterializedView>, definition: String) -> Self {
        Self { view, definition }
    }

    /// The text of the view's query.
    pub fn definition(&self) -> Option<&str> {
        Some(&self.definition)
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

    fn get_table_definition(&self) -> Option<&str> {
        self.definition()
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
    use crate::streaming::checkpoint::{CheckpointContent, CheckpointStore};

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

    /// Commits the view's snapshot at `epoch` as the sink part of a
    /// checkpoint and tells the view, as the operator task does.
    async fn checkpoint(store: &CheckpointStore, view: &MaterializedView, epoch: u64) -> u64 {
        let content = CheckpointContent {
            sink: view.snapshot().unwrap(),
            ..Default::default()
        };
        let manifest = store.commit(Epoch(epoch), &content).await.unwrap();
        view.checkpoint_committed(Epoch(epoch)).await.unwrap();
        manifest.bytes
    }

    #[tokio::test]
    async fn checkpoints_after_the_first_write_only_the_changes_and_restore_whole() {
        let objects: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let mut store = CheckpointStore::new(objects, "q/main".into());
        store.claim_generation().await.unwrap();
        let schema = rows(&[]).schema();
        let view = MaterializedView::try_new(Arc::clone(&schema), true).unwrap();
        view.use_checkpoints(1);
        let many: Vec<String> = (0..500).map(|i| format!("row {i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        view.apply_epoch(Epoch(1), &[Change::insert(rows(&many))])
            .unwrap();
        let full = checkpoint(&store, &view, 1).await;
        // A small change: the next checkpoints write only it, on top of
        // the first one's file (which garbage collection must keep).
        view.apply_epoch(Epoch(2), &[Change::insert(rows(&["x", "y"]))])
            .unwrap();
        let delta = checkpoint(&store, &view, 2).await;
        view.apply_epoch(Epoch(3), &[Change::delete(rows(&["row 7", "x"]))])
            .unwrap();
        checkpoint(&store, &view, 3).await;
        view.apply_epoch(Epoch(4), &[Change::insert(rows(&["z"]))])
            .unwrap();
        checkpoint(&store, &view, 4).await;
        assert!(delta * 5 < full, "delta {delta} bytes, full {full} bytes");
        let manifest = store.latest().await.unwrap().unwrap();
        let part = manifest.sink.clone().unwrap();
        assert_eq!(part.deltas.len(), 3, "{part:?}");
        let restored = MaterializedView::try_new(schema, true).unwrap();
        restored
            .restore(store.load(&manifest).await.unwrap().sink.unwrap())
            .await
            .unwrap();
        assert_eq!(content(&restored), content(&view));
        assert_eq!(content(&restored).len(), 501);
        assert_eq!(restored.epoch(), Some(Epoch(4)));
    }
}
