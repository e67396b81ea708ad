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

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::sync::mpsc;

use super::files::{LiveFile, Snapshot, read_files};
use super::manifest::DataFile;

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
    /// CREATE or DROP INDEX: the same rows in the same files.
    Index,
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
    /// For a row change's last rows: the files the reader holds once they
    /// are handed out (the version's snapshot).
    then_held: Option<Arc<Snapshot>>,
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
    /// The data files whose rows have been handed out (and not retracted):
    /// the reader's position, as a checkpoint records it.
    held: BTreeSet<String>,
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
                then_held: None,
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
            held: BTreeSet::new(),
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

    /// Whether the rows of a DELETE or UPDATE are being handed out: the
    /// reader has no position to record until they all are.
    pub fn inside_row_change(&self) -> bool {
        self.files
            .iter()
            .any(|pending| matches!(pending.rows, PendingRows::Batches(_)))
    }

    /// The reader's position for a checkpoint: the files written by
    /// INSERT/COPY whose rows it has handed out. `None` inside a row change
    /// or when a compaction dropped a held file's lineage.
    pub fn position(&self) -> Option<Vec<String>> {
        if self.inside_row_change() {
            return None;
        }
        let mut written = BTreeSet::new();
        for path in &self.held {
            let file = self.data_file(path)?;
            written.extend(file.written_files()?.into_iter().map(str::to_owned));
        }
        Some(written.into_iter().collect())
    }

    /// The held file `path`'s manifest entry: in the snapshot read, or
    /// among the files still queued for deletion.
    fn data_file(&self, path: &str) -> Option<&DataFile> {
        self.consumed
            .files
            .iter()
            .chain(self.files.iter().filter_map(|pending| match &pending.rows {
                PendingRows::File(file) => Some(file),
                PendingRows::Batches(_) => None,
            }))
            .map(|live| &live.file)
            .find(|file| file.path == path)
    }

    /// Resumes after `position` (what [`Self::position`] returned, recorded
    /// by a checkpoint): of the rows the table holds now, only those not
    /// handed out then are read. An error when that cannot be told (rows
    /// were deleted since, or a compaction mixed old and new rows): the
    /// query must then start over.
    pub fn resume(&mut self, position: &[String]) -> Result<()> {
        if !self.files.iter().all(|p| p.kind == DeltaKind::Insert) || !self.held.is_empty() {
            return Err(DataFusionError::Internal(
                "a table subscription resumes before it is read".into(),
            ));
        }
        let files: Vec<&DataFile> = self.consumed.files.iter().map(|f| &f.file).collect();
        let unread = resume_plan(position, &files).map_err(DataFusionError::Execution)?;
        let held_now = held_files(&self.consumed);
        self.files.retain(|pending| match &pending.rows {
            PendingRows::File(file) => unread.contains(&file.file.path.as_str()),
            PendingRows::Batches(_) => true,
        });
        self.held = held_now
            .into_iter()
            .filter(|path| !unread.contains(&path.as_str()))
            .collect();
        Ok(())
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
                if let Some(snapshot) = &pending.then_held {
                    self.held = held_files(snapshot);
                }
                let batches = match pending.rows {
                    PendingRows::Batches(batches) => batches,
                    PendingRows::File(file) => {
                        match pending.kind {
                            DeltaKind::Insert => self.held.insert(file.file.path.clone()),
                            DeltaKind::Delete => self.held.remove(&file.file.path),
                        };
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
            // The same rows in other files: nothing to hand out.
            ChangeKind::Compaction | ChangeKind::Index => self.held = held_files(&change.snapshot),
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
                            then_held: None,
                        });
                    }
                }
                // Once the changed rows are out, the reader holds the new
                // version's files.
                match self.files.back_mut() {
                    Some(last) => last.then_held = Some(Arc::clone(&change.snapshot)),
                    None => self.held = held_files(&change.snapshot),
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
                            then_held: None,
                        });
                    }
                }
                for file in &change.snapshot.files {
                    if !listed(&self.consumed, file) {
                        self.files.push_back(PendingFile {
                            version: change.version,
                            kind: DeltaKind::Insert,
                            rows: PendingRows::File(Arc::clone(file)),
                            then_held: None,
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

/// The paths of `snapshot`'s files.
fn held_files(snapshot: &Snapshot) -> BTreeSet<String> {
    snapshot.files.iter().map(|f| f.file.path.clone()).collect()
}

/// Which of a table's current `files` hold rows a reader at `position`
/// (the written files whose rows it had handed out) has not read: the
/// files wholly written after it. A file holding some rows it read and
/// some it did not (a compaction across the position), or rows it read
/// that no file holds any more (a DELETE, UPDATE or TRUNCATE since), make
/// the position unusable: the reason is the error.
pub fn resume_plan<'a>(
    position: &[String],
    files: &[&'a DataFile],
) -> std::result::Result<Vec<&'a str>, String> {
    let read: BTreeSet<&str> = position.iter().map(String::as_str).collect();
    let mut still_there: BTreeSet<&str> = BTreeSet::new();
    let mut unread = Vec::new();
    for file in files {
        let Some(written) = file.written_files() else {
            return Err(format!(
                "{} was compacted from too many files to tell which were read",
                file.path
            ));
        };
        let seen = written.iter().filter(|w| read.contains(*w)).count();
        if seen == 0 {
            unread.push(file.path.as_str());
        } else if seen == written.len() {
            still_there.extend(written);
        } else {
            return Err(format!(
                "{} merges rows read before the checkpoint with rows written after it",
                file.path
            ));
        }
    }
    if still_there.len() < read.len() {
        return Err("rows read before the checkpoint were deleted or updated since".into());
    }
    Ok(unread)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(path: &str) -> DataFile {
        DataFile {
            path: path.into(),
            rows: 1,
            size: 1,
            merged_from: None,
        }
    }

    fn compacted(path: &str, from: &[&str]) -> DataFile {
        DataFile {
            merged_from: Some(from.iter().map(|f| f.to_string()).collect()),
            ..written(path)
        }
    }

    fn plan(position: &[&str], files: &[DataFile]) -> std::result::Result<Vec<String>, String> {
        let position: Vec<String> = position.iter().map(|p| p.to_string()).collect();
        let files: Vec<&DataFile> = files.iter().collect();
        resume_plan(&position, &files).map(|unread| unread.into_iter().map(str::to_owned).collect())
    }

    #[test]
    fn files_written_after_the_position_are_unread() {
        assert_eq!(
            plan(&["a", "b"], &[written("a"), written("b"), written("c")]),
            Ok(vec!["c".into()])
        );
        assert_eq!(plan(&[], &[written("a")]), Ok(vec!["a".into()]));
        assert_eq!(plan(&["a"], &[written("a")]), Ok(vec![]));
    }

    #[test]
    fn a_compaction_of_read_files_is_not_read_again() {
        let files = [compacted("ab", &["a", "b"]), written("c")];
        assert_eq!(plan(&["a", "b"], &files), Ok(vec!["c".into()]));
        // Compacted from files all written after the position: unread.
        assert_eq!(plan(&[], &files), Ok(vec!["ab".into(), "c".into()]));
    }

    #[test]
    fn positions_that_cannot_be_resumed_are_refused() {
        // A compaction across the position mixes read and unread rows.
        assert!(plan(&["a"], &[compacted("ab", &["a", "b"])]).is_err());
        // A read file is gone: rows were deleted or updated since.
        assert!(plan(&["a", "b"], &[written("a")]).is_err());
        // A compaction that dropped its lineage.
        assert!(plan(&["a"], &[compacted("x", &[])]).is_err());
    }

    #[test]
    fn lineage_lists_the_written_files_and_gives_up_when_too_long() {
        let merged = compacted("ab", &["a", "b"]);
        assert_eq!(
            DataFile::lineage_of(&[merged, written("c")]),
            vec!["a", "b", "c"]
        );
        let many: Vec<DataFile> = (0..=super::super::manifest::MAX_LINEAGE)
            .map(|i| written(&i.to_string()))
            .collect();
        assert!(DataFile::lineage_of(&many).is_empty());
    }
}
