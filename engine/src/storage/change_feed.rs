//! A durable table read as a stream: its rows as of a version, then every
//! change committed after, in commit order. Continuous queries read their
//! tables through a [`TableSubscription`].
//!
//! A committed version announces itself to subscribers with the snapshot of
//! its files (while the table's lock is held, so versions arrive in order).
//! The subscriber compares that snapshot with the one it has read: files
//! only the new one lists are inserted rows, files only the old one lists
//! are deleted rows. A DELETE or UPDATE rewrites whole files, so it also
//! hands subscribers the exact rows it changed, and those are what they
//! read (a model in a view then runs on changed rows only). Compaction
//! rewrites files without changing rows, so it is announced as such and
//! skipped. Holding a snapshot keeps its files
//! alive ([`LiveFile`]), so a reader that lags behind still finds the files
//! it has yet to read; the position a reader has reached is the table's
//! manifest version, which is what a checkpoint records.

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::sync::mpsc;

use super::files::{LiveFile, Snapshot, read_files};

/// What a committed version did to a table.
#[derive(Debug, Clone)]
pub enum ChangeKind {
    /// INSERT or COPY: files added.
    Append,
    /// Small files merged: the same rows in other files.
    Compaction,
    /// DELETE, UPDATE or TRUNCATE: files replaced by their changed rows;
    /// with the exact rows deleted and inserted when subscribers were there
    /// to need them (else they compare files).
    RowChange(Option<Arc<RowDelta>>),
    /// ALTER TABLE: the schema changed; readers of the old one stop.
    Schema,
}

/// The rows a DELETE or UPDATE changed: deleted rows (the old images) and
/// inserted rows (an UPDATE's new images).
#[derive(Debug, Default)]
pub struct RowDelta {
    /// Rows removed.
    pub deleted: Vec<RecordBatch>,
    /// Rows added.
    pub inserted: Vec<RecordBatch>,
}

/// One committed version, as announced to subscribers.
#[derive(Debug)]
pub(super) struct TableChange {
    version: u64,
    kind: ChangeKind,
    snapshot: Arc<Snapshot>,
}

/// The table's end of a subscription.
pub(super) type ChangeSender = mpsc::UnboundedSender<TableChange>;

/// Tells every live subscriber of a committed version; subscribers that
/// went away are forgotten. Unbounded on purpose: a writer must never wait
/// for a continuous query (an announcement is a handle to a snapshot, not
/// rows), and the reader applies backpressure to its own query instead.
pub(super) fn publish(
    subscribers: &mut Vec<ChangeSender>,
    version: u64,
    kind: ChangeKind,
    snapshot: &Arc<Snapshot>,
) {
    subscribers.retain(|subscriber| {
        subscriber
            .send(TableChange {
                version,
                kind: kind.clone(),
                snapshot: Arc::clone(snapshot),
            })
            .is_ok()
    });
}

/// Whether a [`TableDelta`] adds or removes its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaKind {
    /// The rows were inserted.
    Insert,
    /// The rows were deleted.
    Delete,
}

/// Rows one committed version inserted or deleted (one data file's worth).
#[derive(Debug)]
pub struct TableDelta {
    /// The version that made the change.
    pub version: u64,
    /// Inserted or deleted.
    pub kind: DeltaKind,
    /// The rows, in the table's schema.
    pub batches: Vec<RecordBatch>,
}

/// Rows still to be handed out, with the version that added or removed
/// them: a whole data file (read when its turn comes) or rows in memory.
struct PendingFile {
    version: u64,
    kind: DeltaKind,
    rows: PendingRows,
}

enum PendingRows {
    File(Arc<LiveFile>),
    Batches(Vec<RecordBatch>),
}

/// A continuous reader of one table; see the module docs.
pub struct TableSubscription {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    schema: SchemaRef,
    /// The snapshot whose rows have been handed out (or queued in `files`).
    consumed: Arc<Snapshot>,
    /// Its version.
    version: u64,
    receiver: mpsc::UnboundedReceiver<TableChange>,
    files: VecDeque<PendingFile>,
    /// Versions announced but not yet turned into `files`.
    announced: VecDeque<TableChange>,
}

impl std::fmt::Debug for TableSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableSubscription")
            .field("dir", &self.dir)
            .field("version", &self.version)
            .finish()
    }
}

impl TableSubscription {
    /// A subscription that starts with every row of `snapshot` (version
    /// `version`); the sender goes to the table.
    pub(super) fn new(
        store: Arc<dyn ObjectStore>,
        dir: Path,
        schema: SchemaRef,
        version: u64,
        snapshot: Arc<Snapshot>,
    ) -> (Self, ChangeSender) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let files = snapshot
            .files
            .iter()
            .map(|file| PendingFile {
                version,
                kind: DeltaKind::Insert,
                rows: PendingRows::File(Arc::clone(file)),
            })
            .collect();
        let subscription = Self {
            store,
            dir,
            schema,
            consumed: snapshot,
            version,
            receiver,
            files,
            announced: VecDeque::new(),
        };
        (subscription, sender)
    }

    /// The table's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The newest version whose changes are queued or read.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Versions announced but not yet read: how far this reader lags.
    pub fn versions_behind(&self) -> usize {
        self.announced.len() + self.receiver.len()
    }

    /// Waits until there is something to read. `false` once the table is
    /// gone (dropped) and everything was read. Cancel-safe: nothing is lost
    /// if the wait is abandoned.
    pub async fn wait(&mut self) -> bool {
        if !self.files.is_empty() || !self.announced.is_empty() {
            return true;
        }
        match self.receiver.recv().await {
            Some(change) => {
                self.announced.push_back(change);
                true
            }
            None => false,
        }
    }

    /// The next file's worth of changed rows committed so far, or `None`
    /// when everything committed until now has been read.
    pub async fn next_delta(&mut self) -> Result<Option<TableDelta>> {
        loop {
            if let Some(pending) = self.files.pop_front() {
                let batches = match pending.rows {
                    PendingRows::Batches(batches) => batches,
                    PendingRows::File(file) => {
                        read_files(
                            self.store.as_ref(),
                            &self.dir,
                            std::slice::from_ref(&file.file),
                            &self.schema,
                        )
                        .await?
                    }
                };
                return Ok(Some(TableDelta {
                    version: pending.version,
                    kind: pending.kind,
                    batches,
                }));
            }
            while let Ok(change) = self.receiver.try_recv() {
                self.announced.push_back(change);
            }
            let Some(change) = self.announced.pop_front() else {
                return Ok(None);
            };
            self.queue(change)?;
        }
    }

    /// Turns an announced version into the files to read.
    fn queue(&mut self, change: TableChange) -> Result<()> {
        match change.kind {
            ChangeKind::Compaction => {}
            ChangeKind::Schema => {
                return Err(DataFusionError::Execution(format!(
                    "table {} changed its schema (ALTER TABLE); continuous queries reading it \
                     must be created again",
                    self.dir
                )));
            }
            ChangeKind::RowChange(Some(rows)) => {
                for (kind, batches) in [
                    (DeltaKind::Delete, &rows.deleted),
                    (DeltaKind::Insert, &rows.inserted),
                ] {
                    if !batches.is_empty() {
                        self.files.push_back(PendingFile {
                            version: change.version,
                            kind,
                            rows: PendingRows::Batches(batches.clone()),
                        });
                    }
                }
            }
            ChangeKind::Append | ChangeKind::RowChange(None) => {
                let listed = |snapshot: &Snapshot, file: &LiveFile| {
                    snapshot.files.iter().any(|f| f.file.path == file.file.path)
                };
                for file in &self.consumed.files {
                    if !listed(&change.snapshot, file) {
                        self.files.push_back(PendingFile {
                            version: change.version,
                            kind: DeltaKind::Delete,
                            rows: PendingRows::File(Arc::clone(file)),
                        });
                    }
                }
                for file in &change.snapshot.files {
                    if !listed(&self.consumed, file) {
                        self.files.push_back(PendingFile {
                            version: change.version,
                            kind: DeltaKind::Insert,
                            rows: PendingRows::File(Arc::clone(file)),
                        });
                    }
                }
            }
        }
        self.consumed = change.snapshot;
        self.version = change.version;
        Ok(())
    }
}
