//! [`TableState`]: what a durable table's writers (INSERT and COPY, DELETE
//! and UPDATE, compaction) change under the table's lock — its own module
//! so that the table and its writers all import it, not each other.

use std::sync::{Arc, RwLock};

use object_store::ObjectStore;
use object_store::path::Path;

use super::change_feed::{ChangeKind, ChangeSender, publish};
use super::files::Snapshot;
use super::manifest::Manifest;
use super::vector_index::{self, VectorIndex};

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
}

/// See [`TableState::index_catalog`].
pub(super) type IndexCatalog = Arc<RwLock<Vec<VectorIndex>>>;

/// The indexes of `manifest` for [`TableState::index_catalog`].
pub(super) fn catalog_entries(manifest: &Manifest) -> Vec<VectorIndex> {
    manifest
        .vector_indexes
        .iter()
        .map(|index| VectorIndex {
            files: Default::default(),
            ..index.clone()
        })
        .collect()
}

impl TableState {
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
        let dropped_graphs = vector_index::dropped_graphs(&self.manifest, &next);
        let snapshot = self.snapshot.next(store, dir, &next.files);
        let previous = std::mem::replace(&mut self.snapshot, Arc::clone(&snapshot));
        let version = next.version;
        *self
            .index_catalog
            .write()
            .unwrap_or_else(|p| p.into_inner()) = catalog_entries(&next);
        self.manifest = next;
        publish(&mut self.subscribers, version, kind, &snapshot);
        Snapshot::succeed(previous, &snapshot).await;
        vector_index::delete_graphs(store, dir, &dropped_graphs).await;
    }
}
