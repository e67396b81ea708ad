//! [`Transaction`]: what `BEGIN … COMMIT` changes, kept aside until COMMIT
//! makes it visible at once, and the snapshot of every table its reads
//! see (snapshot isolation).
//!
//! Inside a transaction a write puts its data files as usual but commits
//! nothing: the transaction keeps, per table, its own list of files (the
//! version it read plus its own changes). Scans of that table read the
//! list, so the transaction sees its own writes; other tables are read as
//! of the transaction's [`ReadPoint`]. COMMIT checks that no table it
//! rewrote (DELETE, UPDATE) was committed by anyone else since it was read
//! (else 40001, first committer wins; a table it only appended to takes
//! its new files on top of whatever is committed then, as new rows
//! conflict with no one), commits each table's next version and publishes
//! them on the commit clock as one tick. A commit of several tables first
//! writes a record of all their manifests, so a crash midway is finished
//! when the data directory is next opened ([`recover`]). ROLLBACK deletes
//! the files the transaction wrote.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::config::SessionConfig;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sluice_types::error::{SluiceError, SqlState};
use tokio::sync::{Mutex, MutexGuard};

use super::change_feed::ChangeKind;
use super::commit::{RecoveryStep, recovery_step};
use super::compaction::compact_tail;
use super::files::{Snapshot, resolve};
use super::manifest::{self, DataFile, Manifest, delete_if_present, storage_error};
use super::table_state::{Install, TableHandle, install_all};
use super::vector_index;
use super::versions::{CommitClock, ReadPoint};

/// The session's open transaction, as the session config carries it to
/// scans and writers (`None` outside `BEGIN … COMMIT`). Replaced, never
/// changed: a plan built before BEGIN keeps reading as it was planned.
#[derive(Debug, Default)]
pub struct SessionTransaction(pub Option<Arc<Transaction>>);

impl SessionTransaction {
    /// The open transaction of the session whose config this is.
    pub(super) fn of(config: &SessionConfig) -> Option<Arc<Transaction>> {
        config
            .get_extension::<SessionTransaction>()
            .and_then(|open| open.0.clone())
    }

    /// The open transaction of the session running `context`.
    pub(super) fn of_task(context: &TaskContext) -> Option<Arc<Transaction>> {
        Self::of(context.session_config())
    }
}

/// How a transaction changed a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Changed {
    /// Rows added only.
    Appended,
    /// Files replaced (DELETE, UPDATE, TRUNCATE).
    Rewritten,
}

/// A table as the transaction sees it.
#[derive(Debug, Clone)]
struct TableWork {
    table: TableHandle,
    /// The committed version the transaction read.
    base_version: u64,
    /// Its files, with the transaction's changes.
    files: Vec<DataFile>,
    /// The same files, for scans.
    snapshot: Arc<Snapshot>,
    changed: Option<Changed>,
    /// The files INSERT and COPY added, while the transaction only
    /// appended to the table: added to whatever version is committed at
    /// COMMIT, since new rows conflict with no other writer's.
    appended: Vec<DataFile>,
}

#[derive(Debug, Default)]
struct Work {
    tables: BTreeMap<usize, TableWork>,
    /// Savepoints, oldest first, each with the tables as they were.
    savepoints: Vec<(String, BTreeMap<usize, TableWork>)>,
    /// Every file the transaction wrote: those no committed version ends
    /// up listing are deleted when it ends.
    written: Vec<(Arc<dyn ObjectStore>, Path)>,
    ended: bool,
}

/// An open `BEGIN … COMMIT` (see the module documentation).
#[derive(Debug)]
pub struct Transaction {
    read_point: ReadPoint,
    /// Where records of commits of several tables go, in the data
    /// directory's store.
    records: Option<(Arc<dyn ObjectStore>, Path)>,
    work: Mutex<Work>,
}

/// Where a data directory keeps its records of multi-table commits.
pub(super) const RECORDS_FOLDER: &str = "transactions";

/// What a commit of several tables writes before committing any of them.
#[derive(Debug, Serialize, Deserialize)]
struct CommitRecord {
    /// Per table: its directory and the version the commit gives it.
    tables: Vec<(String, Manifest)>,
}

impl Transaction {
    /// A transaction reading as of now on `clock`; `records` is where a
    /// commit of several tables records itself first.
    pub(super) fn begin(
        clock: &Arc<CommitClock>,
        records: Option<(Arc<dyn ObjectStore>, Path)>,
    ) -> Arc<Self> {
        Arc::new(Self {
            read_point: clock.read_point(),
            records,
            work: Mutex::new(Work::default()),
        })
    }

    /// A transaction for an engine without durable tables: nothing to
    /// read as of a time, nothing to commit.
    pub fn without_tables() -> Arc<Self> {
        Self::begin(&CommitClock::new(), None)
    }

    /// The work, refusing it once the transaction ended (a plan that
    /// outlived its transaction).
    async fn open_work(&self) -> Result<MutexGuard<'_, Work>> {
        let work = self.work.lock().await;
        if work.ended {
            return Err(SluiceError::new(
                SqlState::NO_ACTIVE_SQL_TRANSACTION,
                "the transaction this statement was planned in has ended",
            )
            .into());
        }
        Ok(work)
    }

    /// The table as the transaction sees it, read as of its read point the
    /// first time.
    fn table_work<'w>(&self, work: &'w mut Work, table: &TableHandle) -> Result<&'w mut TableWork> {
        if let std::collections::btree_map::Entry::Vacant(entry) = work.tables.entry(table.key()) {
            let published = table.history.at(&self.read_point).ok_or_else(|| {
                DataFusionError::Internal(format!("no version of {} to read", table.dir))
            })?;
            entry.insert(TableWork {
                table: table.clone(),
                base_version: published.version,
                files: published
                    .snapshot
                    .files
                    .iter()
                    .map(|live| live.file.clone())
                    .collect(),
                snapshot: published.snapshot,
                changed: None,
                appended: Vec::new(),
            });
        }
        work.tables
            .get_mut(&table.key())
            .ok_or_else(|| DataFusionError::Internal("transaction table vanished".into()))
    }

    /// The files a scan of `table` reads in this transaction.
    pub(super) async fn snapshot(&self, table: &TableHandle) -> Result<Arc<Snapshot>> {
        let mut work = self.open_work().await?;
        Ok(Arc::clone(&self.table_work(&mut work, table)?.snapshot))
    }

    /// The files of `table` a DELETE or UPDATE in this transaction starts
    /// from, with the snapshot that keeps them while it reads them.
    pub(super) async fn files(
        &self,
        table: &TableHandle,
    ) -> Result<(Vec<DataFile>, Arc<Snapshot>)> {
        let mut work = self.open_work().await?;
        let table = self.table_work(&mut work, table)?;
        Ok((table.files.clone(), Arc::clone(&table.snapshot)))
    }

    /// Adds files an INSERT or COPY just wrote to `table`.
    pub(super) async fn append(&self, table: &TableHandle, files: Vec<DataFile>) -> Result<()> {
        let mut work = self.open_work().await?;
        remember_written(&mut work, table, &files);
        let entry = self.table_work(&mut work, table)?;
        entry.appended.extend(files.iter().cloned());
        entry.files.extend(files);
        entry.refresh(Changed::Appended);
        Ok(())
    }

    /// Replaces `table`'s files by `files` (a DELETE or UPDATE), of which
    /// `written` are new.
    pub(super) async fn replace(
        &self,
        table: &TableHandle,
        files: Vec<DataFile>,
        written: &[DataFile],
    ) -> Result<()> {
        let mut work = self.open_work().await?;
        remember_written(&mut work, table, written);
        let entry = self.table_work(&mut work, table)?;
        entry.files = files;
        entry.refresh(Changed::Rewritten);
        Ok(())
    }

    /// `SAVEPOINT name`.
    pub async fn savepoint(&self, name: &str) -> Result<()> {
        let mut work = self.open_work().await?;
        let tables = work.tables.clone();
        work.savepoints.push((name.to_owned(), tables));
        Ok(())
    }

    /// `RELEASE SAVEPOINT name`: forgets it and every later one.
    pub async fn release(&self, name: &str) -> Result<()> {
        let mut work = self.open_work().await?;
        let position = find_savepoint(&work, name)?;
        work.savepoints.truncate(position);
        Ok(())
    }

    /// `ROLLBACK TO SAVEPOINT name`: the tables as they were when it was
    /// set; the savepoint stays.
    pub async fn rollback_to(&self, name: &str) -> Result<()> {
        let mut work = self.open_work().await?;
        let position = find_savepoint(&work, name)?;
        work.savepoints.truncate(position + 1);
        work.tables = work.savepoints[position].1.clone();
        Ok(())
    }

    /// `ROLLBACK`: nothing of the transaction becomes visible; the files it
    /// wrote are deleted.
    pub async fn rollback(&self) {
        let mut work = self.work.lock().await;
        work.ended = true;
        work.tables.clear();
        work.savepoints.clear();
        let written = std::mem::take(&mut work.written);
        drop(work);
        delete_unlisted(written, &HashSet::new()).await;
    }

    /// `COMMIT`: every table the transaction changed gets its next version,
    /// visible at once; 40001 (and nothing committed) when another writer
    /// committed one of them since the transaction read it.
    pub async fn commit(&self) -> Result<()> {
        let mut work = self.work.lock().await;
        if work.ended {
            return Ok(());
        }
        work.ended = true;
        work.savepoints.clear();
        let mut changed: Vec<TableWork> = std::mem::take(&mut work.tables)
            .into_values()
            .filter(|table| table.changed.is_some())
            .collect();
        let written = std::mem::take(&mut work.written);
        drop(work);
        // One order for everyone who locks several tables.
        changed.sort_by(|a, b| {
            (a.table.dir.as_ref(), a.table.key()).cmp(&(b.table.dir.as_ref(), b.table.key()))
        });
        let (result, record_left) = self.commit_tables(&changed).await;
        if record_left {
            // Its versions list the files; the next open finishes them.
            return result;
        }
        let listed: HashSet<Path> = match &result {
            Ok(()) => changed
                .iter()
                .flat_map(|t| t.files.iter().map(|f| resolve(&t.table.dir, &f.path)))
                .collect(),
            Err(_) => HashSet::new(),
        };
        delete_unlisted(written, &listed).await;
        result
    }

    /// Commits the changed tables; also says whether a record of the
    /// commit was left for the next open to finish (a store failure midway).
    async fn commit_tables(&self, changed: &[TableWork]) -> (Result<()>, bool) {
        match self.try_commit_tables(changed).await {
            Ok(()) => (Ok(()), false),
            Err(CommitFailure { error, record_left }) => (Err(error), record_left),
        }
    }

    async fn try_commit_tables(
        &self,
        changed: &[TableWork],
    ) -> std::result::Result<(), CommitFailure> {
        if changed.is_empty() {
            return Ok(());
        }
        let mut locked = Vec::with_capacity(changed.len());
        for table in changed {
            locked.push(table.table.state.lock().await);
        }
        for (table, state) in changed.iter().zip(&locked) {
            state.check_not_dropped(&table.table.dir)?;
            if table.changed != Some(Changed::Appended)
                && state.manifest.version != table.base_version
            {
                return Err(DataFusionError::from(SluiceError::new(
                    SqlState::SERIALIZATION_FAILURE,
                    format!(
                        "could not serialize access due to a concurrent update of table {} (it \
                         was committed by another writer after this transaction read it); \
                         retry the transaction",
                        table.table.name()
                    ),
                ))
                .into());
            }
        }
        let mut nexts = Vec::with_capacity(changed.len());
        let mut graphs = Vec::new();
        for (table, state) in changed.iter().zip(&locked) {
            let mut next = state.manifest.next();
            next.files = match table.changed {
                // Rows added to the version committed now, whoever
                // committed it since the transaction read the table.
                Some(Changed::Appended) => {
                    let mut files = state.manifest.files.clone();
                    files.extend(table.appended.iter().cloned());
                    files
                }
                _ => table.files.clone(),
            };
            match vector_index::cover(&table.table.store, &table.table.dir, &mut next).await {
                Ok(built) => graphs.push((table, built)),
                Err(e) => {
                    delete_graphs(&graphs).await;
                    return Err(e.into());
                }
            }
            nexts.push(next);
        }
        let record = if changed.len() > 1 {
            match self.write_record(changed, &nexts).await {
                Ok(record) => record,
                Err(e) => {
                    delete_graphs(&graphs).await;
                    return Err(e.into());
                }
            }
        } else {
            None
        };
        let mut committed = Vec::with_capacity(nexts.len());
        let mut failure = None;
        for (i, (table, next)) in changed.iter().zip(&nexts).enumerate() {
            let committing = match injected_commit_failure(&table.table.name()) {
                Some(injected) => Err(injected),
                None => {
                    let landed =
                        manifest::commit(table.table.store.as_ref(), &table.table.dir, next).await;
                    match landed {
                        Ok(()) => Ok(()),
                        // The store may hold a version this server never
                        // installed (see TableState::commit): catch up.
                        Err(error) => {
                            let (store, dir) = (&table.table.store, &table.table.dir);
                            locked[i].catch_up(store, dir, next, error).await
                        }
                    }
                }
            };
            match committing {
                Ok(()) => committed.push(true),
                Err(e) => {
                    committed.push(false);
                    failure.get_or_insert(e);
                }
            }
        }
        if failure.is_some() && record.is_none() {
            delete_graphs(&graphs).await;
        }
        let installs = changed
            .iter()
            .zip(locked.iter_mut())
            .zip(nexts)
            .zip(&committed)
            .filter(|(_, done)| **done)
            .map(|(((table, state), next), _)| Install {
                state,
                store: &table.table.store,
                dir: &table.table.dir,
                next,
                kind: match table.changed {
                    Some(Changed::Rewritten) => ChangeKind::RowChange(None),
                    _ => ChangeKind::Append,
                },
            })
            .collect();
        install_all(installs).await;
        // As after an autocommit INSERT: small files merged as they pile up.
        for ((table, state), done) in changed.iter().zip(locked.iter_mut()).zip(&committed) {
            if *done && let Err(e) = compact_tail(&table.table, state).await {
                // The commit stands either way; a later one retries.
                log::warn!("compaction of {} failed: {e}", table.table.dir);
            }
        }
        match failure {
            // The record finishes the commit at the next open.
            Some(error) => Err(CommitFailure {
                error,
                record_left: record.is_some(),
            }),
            None => {
                if let Some((store, path)) = record
                    && let Err(e) = delete_if_present(store.as_ref(), &path).await
                {
                    // Committed; the next open finds every version there.
                    log::warn!("cannot delete commit record {path}: {e}");
                }
                Ok(())
            }
        }
    }

    /// Writes the record of a commit of several tables, before any of them
    /// is committed.
    async fn write_record(
        &self,
        changed: &[TableWork],
        nexts: &[Manifest],
    ) -> Result<Option<(Arc<dyn ObjectStore>, Path)>> {
        let Some((store, folder)) = &self.records else {
            return Ok(None);
        };
        let record = CommitRecord {
            tables: changed
                .iter()
                .zip(nexts)
                .map(|(table, next)| (table.table.dir.to_string(), next.clone()))
                .collect(),
        };
        let body = serde_json::to_vec(&record).map_err(|e| {
            DataFusionError::Internal(format!("cannot serialise a commit record: {e}"))
        })?;
        let path = folder.clone().join(format!("{}.json", nexts[0].commit_id));
        store
            .put(&path, PutPayload::from(body))
            .await
            .map_err(storage_error)?;
        Ok(Some((Arc::clone(store), path)))
    }
}

/// A commit that did not happen, or happened in part.
struct CommitFailure {
    error: DataFusionError,
    /// A record of the commit stays for the next open to finish.
    record_left: bool,
}

impl From<DataFusionError> for CommitFailure {
    fn from(error: DataFusionError) -> Self {
        Self {
            error,
            record_left: false,
        }
    }
}

impl TableWork {
    /// After a change of `files`: the snapshot scans read, and what
    /// happened to the table.
    fn refresh(&mut self, change: Changed) {
        self.snapshot = self
            .snapshot
            .next(&self.table.store, &self.table.dir, &self.files);
        self.changed = self.changed.max(Some(change));
    }
}

/// Test hook: the failpoint `transaction-commit-table`, given a table's
/// name (`return(public.t)`), fails the commit of that table of a
/// transaction as a store failure would (every other table is committed).
fn injected_commit_failure(table: &str) -> Option<DataFusionError> {
    fail::fail_point!("transaction-commit-table", |target: Option<String>| {
        (target.as_deref() == Some(table))
            .then(|| crate::failpoints::injected("transaction-commit-table"))
    });
    None
}

fn remember_written(work: &mut Work, table: &TableHandle, files: &[DataFile]) {
    work.written.extend(
        files
            .iter()
            .map(|f| (Arc::clone(&table.store), resolve(&table.dir, &f.path))),
    );
}

fn find_savepoint(work: &Work, name: &str) -> Result<usize> {
    work.savepoints
        .iter()
        .rposition(|(n, _)| n == name)
        .ok_or_else(|| {
            SluiceError::new(
                SqlState::INVALID_SAVEPOINT_SPECIFICATION,
                format!("savepoint \"{name}\" does not exist"),
            )
            .into()
        })
}

/// Deletes the files a transaction wrote that no committed version lists.
async fn delete_unlisted(written: Vec<(Arc<dyn ObjectStore>, Path)>, listed: &HashSet<Path>) {
    for (store, path) in written {
        if listed.contains(&path) {
            continue;
        }
        if let Err(e) = delete_if_present(store.as_ref(), &path).await {
            // The next open's garbage collection removes it.
            log::warn!(
                "cannot delete {path}, written by a transaction that did not commit it: {e}"
            );
        }
    }
}

async fn delete_graphs(graphs: &[(&TableWork, Vec<String>)]) {
    for (table, built) in graphs {
        vector_index::delete_graphs(&table.table.store, &table.table.dir, built).await;
    }
}

/// Finishes the commits of several tables that a crash interrupted: every
/// table of a record gets the version the record holds, unless it already
/// has it. Runs when the data directory is opened, before its tables are.
pub(super) async fn recover(store: &Arc<dyn ObjectStore>, folder: &Path) -> Result<()> {
    let records: Vec<Path> = store
        .list(Some(folder))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(storage_error)?;
    for path in records {
        let body = store
            .get(&path)
            .await
            .map_err(storage_error)?
            .bytes()
            .await
            .map_err(storage_error)?;
        let record: CommitRecord = serde_json::from_slice(&body).map_err(|e| {
            DataFusionError::Execution(format!("commit record {path} is not readable: {e}"))
        })?;
        for (dir, next) in &record.tables {
            let dir = Path::from(dir.as_str());
            let latest = manifest::latest(store.as_ref(), &dir).await?;
            match recovery_step(latest.map(|m| m.version), next.version) {
                RecoveryStep::Commit => {
                    manifest::commit(store.as_ref(), &dir, next).await?;
                    log::info!(
                        "finished an interrupted commit of {dir} (version {})",
                        next.version
                    );
                }
                RecoveryStep::AlreadyCommitted => {}
                RecoveryStep::Skip => log::warn!(
                    "commit record {path}: {dir} is not at the version before {} (dropped?); \
                     left as it is",
                    next.version
                ),
            }
        }
        delete_if_present(store.as_ref(), &path).await?;
    }
    Ok(())
}
