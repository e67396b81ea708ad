//! [`TableState`]: what a durable table's writers (INSERT and COPY, DELETE
//! and UPDATE, compaction) change under the table's lock — its own module
//! so that the table and its writers all import it, not each other.

use std::sync::{Arc, RwLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use sluice_types::error::{SluiceError, SqlState};
use tokio::sync::Mutex;

use object_store::ObjectStore;
use object_store::path::Path;

use super::change_feed::{ChangeKind, ChangeSender, publish};
use super::files::Snapshot;
use super::manifest::{self, Manifest};
use super::vector_index::{self, VectorIndex};
use super::versions::{CommitClock, TableHistory};

/// What a table's writers change: the committed manifest and the snapshot
/// of its files that new scans read.
#[derive(Debug)]
pub(super) struct TableState {
    pub manifest: Manifest,
    pub snapshot: Arc<Snapshot>,
    /// Continuous queries reading this table's changes.
    pub subscribers: Vec<ChangeSender>,
    /// The committed version's vector indexes (their graph lists left
    /// out), readable without this state's lock: the planner's rule looks
    /// them up synchronously.
    pub index_catalog: IndexCatalog,
    /// The versions open transactions may still read, readable without
    /// this state's lock.
    pub history: Arc<TableHistory>,
    /// The data directory's clock, which every commit ticks.
    pub clock: Arc<CommitClock>,
    /// DROP TABLE took the table: nothing may commit to it again (a
    /// commit would bring its directory back).
    pub dropped: bool,
}

/// See [`TableState::index_catalog`].
pub(super) type IndexCatalog = Arc<RwLock<Vec<VectorIndex>>>;

/// The indexes of `manifest` for [`TableState::index_catalog`].
pub(super) fn catalog_entries(manifest: &Manifest) -> Vec<VectorIndex> {
    manifest
        .vector_indexes
        .iter()
        .map(|index| VectorIndex {
            graphs: Default::default(),
            ..index.clone()
        })
        .collect()
}

impl TableState {
    /// Refuses a commit to a table DROP TABLE took.
    pub fn check_not_dropped(&self, dir: &Path) -> Result<()> {
        if self.dropped {
            return Err(SluiceError::new(
                SqlState::UNDEFINED_TABLE,
                format!(
                    "table {} was dropped while this statement or transaction wrote to it",
                    table_name(dir)
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Commits `next` (its graphs built first, [`vector_index::commit_with_graphs`]).
    /// When that fails, the store may hold a version this state never
    /// installed: an earlier commit of this process whose answer was lost
    /// and whose retries were refused, or whose statement was cancelled
    /// mid-commit. Left alone, every later commit would meet it as a
    /// rival's (40001) until a restart. So the newest version is read back:
    /// if it is `next` itself, the commit did land (`Ok`); if it is another,
    /// this state catches up to it and the error stands (the caller may
    /// commit again on top of it: see [`Self::manifest`]'s version).
    pub async fn commit(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        dir: &Path,
        next: &mut Manifest,
    ) -> Result<()> {
        match vector_index::commit_with_graphs(store, dir, next).await {
            Ok(()) => Ok(()),
            Err(error) => self.catch_up(store, dir, next, error).await,
        }
    }

    /// After `next` failed to commit with `error`: `Ok` if it did land
    /// after all, else the error, this state caught up to the store's
    /// newest version first if it was behind (see [`Self::commit`]).
    pub async fn catch_up(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        dir: &Path,
        next: &Manifest,
        error: DataFusionError,
    ) -> Result<()> {
        let newest = match manifest::latest(store.as_ref(), dir).await {
            Ok(Some(newest)) if newest.version > self.manifest.version => newest,
            _ => return Err(error),
        };
        if newest.commit_id == next.commit_id {
            return Ok(());
        }
        log::warn!(
            "{} holds version {} that this server had not installed; catching up to it",
            table_name(dir),
            newest.version
        );
        self.install(store, dir, newest, ChangeKind::RowChange(None))
            .await;
        Err(error)
    }

    /// Installs `next` as the committed version; files of the previous one
    /// that `next` no longer lists are retired. Subscribers hear of the
    /// change while the table's lock is still held, so they see every
    /// version in commit order.
    pub async fn install(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        dir: &Path,
        next: Manifest,
        kind: ChangeKind,
    ) {
        install_all(vec![Install {
            state: self,
            store,
            dir,
            next,
            kind,
        }])
        .await;
    }
}

/// A table's name as users write it, `schema.table`: its directory ends
/// with them.
pub(super) fn table_name(dir: &Path) -> String {
    let parts: Vec<String> = dir.parts().map(|p| p.as_ref().to_owned()).collect();
    parts[parts.len().saturating_sub(2)..].join(".")
}

/// One table's part of a commit, for [`install_all`].
pub(super) struct Install<'a> {
    pub state: &'a mut TableState,
    pub store: &'a Arc<dyn ObjectStore>,
    pub dir: &'a Path,
    pub next: Manifest,
    pub kind: ChangeKind,
}

/// Installs the versions of one commit (one table's, or a transaction's
/// several), each under its table's lock, which the caller holds. They are
/// published on the commit clock as one tick, so a transaction reads all
/// of them or none; only then are replaced files retired.
pub(super) async fn install_all(installs: Vec<Install<'_>>) {
    let mut published = Vec::with_capacity(installs.len());
    let mut replaced = Vec::with_capacity(installs.len());
    let mut clock = None;
    for Install {
        state,
        store,
        dir,
        next,
        kind,
    } in installs
    {
        let dropped_graphs = vector_index::dropped_graphs(&state.manifest, &next);
        let snapshot = state.snapshot.next(store, dir, &next.files);
        let previous = std::mem::replace(&mut state.snapshot, Arc::clone(&snapshot));
        let version = next.version;
        *state
            .index_catalog
            .write()
            .unwrap_or_else(|p| p.into_inner()) = catalog_entries(&next);
        state.manifest = next;
        publish(&mut state.subscribers, version, kind, &snapshot);
        clock.get_or_insert_with(|| Arc::clone(&state.clock));
        published.push((Arc::clone(&state.history), version, Arc::clone(&snapshot)));
        replaced.push((previous, snapshot, dropped_graphs, store, dir));
    }
    if let Some(clock) = clock {
        clock.publish(
            published
                .iter()
                .map(|(history, version, snapshot)| {
                    (history.as_ref(), *version, Arc::clone(snapshot))
                })
                .collect(),
        );
    }
    drop(published);
    for (previous, snapshot, dropped_graphs, store, dir) in replaced {
        Snapshot::succeed(previous, &snapshot).await;
        vector_index::delete_graphs(store, dir, &dropped_graphs).await;
    }
}

/// One durable table as its writers and transactions share it.
#[derive(Debug, Clone)]
pub(super) struct TableHandle {
    pub store: Arc<dyn ObjectStore>,
    pub dir: Path,
    pub schema: SchemaRef,
    pub state: Arc<Mutex<TableState>>,
    pub history: Arc<TableHistory>,
}

impl TableHandle {
    /// Tells tables apart even when one was dropped and another created
    /// at the same place: the state is shared by a table's writers only.
    pub(super) fn key(&self) -> usize {
        Arc::as_ptr(&self.state) as usize
    }

    pub(super) fn name(&self) -> String {
        table_name(&self.dir)
    }
}
