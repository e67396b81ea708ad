//! [`CheckpointStore`]: one region's checkpoints on the object store.
//!
//! ```text
//! checkpoints/<query>/<region>/generations/<g>                  one per instance that ran it
//! checkpoints/<query>/<region>/state/<g>-<epoch>/<part>.arrow   immutable state files
//! checkpoints/<query>/<region>/manifests/<g>-<epoch>.json       committed checkpoints
//! ```
//! Numbers are zero-padded so that name order is (generation, epoch) order.
//!
//! An instance claims the next generation with a create-if-absent put
//! before it restores. A checkpoint writes its state files first, then —
//! only if no later generation has been claimed (the fence) — creates its
//! manifest through the table commit protocol ([`create_once`]): the
//! manifest names every file, so a crash before it leaves only unreferenced
//! files, and a lost answer is recognised by the commit id. Restores read
//! the greatest manifest name: a zombie's commit that slips past the fence
//! carries an older generation, so it sorts below everything the instance
//! that replaced it commits and is never restored once that one has.
//! Garbage collection deletes only manifests and state older than the
//! checkpoints it keeps.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::error::{DataFusionError, Result};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sluice_types::error::{SluiceError, SqlState};

use super::StateSnapshot;
use super::codec;
use crate::storage::{Created, create_once, delete_if_present, read_object, storage_error};
use crate::streaming::signal::Epoch;

/// Committed checkpoints kept per region (the newest is the one restored;
/// the one before it stays while a restore of the newest may be reading).
const KEEP_CHECKPOINTS: usize = 2;

/// Where one state part lives and what it holds besides its batches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartRef {
    /// The state file relative to the region's folder (`None`: no rows).
    pub file: Option<String>,
    /// Files of changes to apply on top of `file`, oldest first (written
    /// by later checkpoints, which share `file` with the earlier ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<String>,
    /// The part's scalars.
    pub meta: serde_json::Value,
}

impl PartRef {
    /// Every state file the part reads.
    fn files(&self) -> impl Iterator<Item = &str> {
        self.file.iter().chain(&self.deltas).map(String::as_str)
    }
}

impl CheckpointManifest {
    /// Every state file the checkpoint reads.
    fn files(&self) -> impl Iterator<Item = &str> {
        self.operators
            .iter()
            .flatten()
            .chain(&self.sink)
            .flat_map(PartRef::files)
    }

    /// The part at `index` (an operator's) or the sink's (`None`).
    fn part(&self, index: Option<usize>) -> Option<&PartRef> {
        match index {
            Some(i) => self.operators.get(i).and_then(Option::as_ref),
            None => self.sink.as_ref(),
        }
    }
}

/// One committed checkpoint of a region.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointManifest {
    /// The instance that took it.
    pub generation: u64,
    /// The epoch whose barrier it was taken at.
    pub epoch: u64,
    /// Unique to this commit (the commit protocol's read-back).
    pub commit_id: String,
    /// Per operator, in pipeline order: its state (`None`: stateless).
    pub operators: Vec<Option<PartRef>>,
    /// The sink's (a view's content).
    pub sink: Option<PartRef>,
    /// Per source, where to resume reading.
    pub sources: Vec<serde_json::Value>,
    /// The last epoch of the region's input log it has consumed.
    pub consumed_log: Option<u64>,
    /// Bytes of state files.
    pub bytes: u64,
    /// Milliseconds since the Unix epoch when it committed.
    pub committed_at_ms: u64,
}

/// What a checkpoint holds, loaded or about to be written.
#[derive(Debug, Clone, Default)]
pub struct CheckpointContent {
    /// Per operator, in pipeline order.
    pub operators: Vec<Option<StateSnapshot>>,
    /// The sink's state.
    pub sink: Option<StateSnapshot>,
    /// Per source, its offset.
    pub sources: Vec<serde_json::Value>,
    /// The last input-log epoch consumed.
    pub consumed_log: Option<u64>,
}

/// One region's checkpoints; see the module docs.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    generation: u64,
}

fn key(generation: u64, epoch: u64) -> String {
    format!("{generation:010}-{epoch:020}")
}

impl CheckpointStore {
    /// The checkpoints under `dir`, not yet claimed by this instance.
    pub fn new(store: Arc<dyn ObjectStore>, dir: Path) -> Self {
        Self {
            store,
            dir,
            generation: 0,
        }
    }

    /// This instance's generation (0 before [`Self::claim_generation`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    async fn list(&self, folder: &str) -> Result<Vec<String>> {
        let prefix = self.dir.clone().join(folder);
        let entries: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(storage_error)?;
        Ok(entries
            .into_iter()
            .filter_map(|meta| meta.location.filename().map(str::to_owned))
            .collect())
    }

    /// The greatest generation claimed so far.
    async fn newest_generation(&self) -> Result<u64> {
        Ok(self
            .list("generations")
            .await?
            .iter()
            .filter_map(|name| name.parse::<u64>().ok())
            .max()
            .unwrap_or(0))
    }

    /// Claims the next generation: from now on no earlier instance can
    /// commit a checkpoint of this region.
    pub async fn claim_generation(&mut self) -> Result<u64> {
        let mut next = self.newest_generation().await? + 1;
        loop {
            let commit_id = uuid::Uuid::new_v4().to_string();
            let body = serde_json::to_vec(&serde_json::json!({ "commit_id": commit_id }))
                .map_err(|e| DataFusionError::Internal(e.to_string()))?;
            let path = self
                .dir
                .clone()
                .join("generations")
                .join(format!("{next:010}"));
            match create_once(self.store.as_ref(), &path, body.into(), &commit_id).await? {
                Created::ByUs => {
                    self.generation = next;
                    return Ok(next);
                }
                // Another instance claimed it at the same moment: take the
                // next (it will be fenced off by ours, as we would by it).
                Created::ByRival => next += 1,
            }
        }
    }

    /// The newest committed checkpoint, if any.
    pub async fn latest(&self) -> Result<Option<CheckpointManifest>> {
        let newest = self
            .list("manifests")
            .await?
            .into_iter()
            .filter(|name| name.ends_with(".json"))
            .max();
        let Some(name) = newest else {
            return Ok(None);
        };
        self.read_manifest(&name).await.map(Some)
    }

    /// The manifest stored as `manifests/<file_name>`.
    async fn read_manifest(&self, file_name: &str) -> Result<CheckpointManifest> {
        let path = self.dir.clone().join("manifests").join(file_name);
        let bytes = self.read(&path).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            DataFusionError::Execution(format!("corrupt checkpoint manifest {path}: {e}"))
        })
    }

    async fn read(&self, path: &Path) -> Result<bytes::Bytes> {
        read_object(self.store.as_ref(), path).await
    }

    /// The state a committed checkpoint holds.
    pub async fn load(&self, manifest: &CheckpointManifest) -> Result<CheckpointContent> {
        let mut operators = Vec::with_capacity(manifest.operators.len());
        for part in &manifest.operators {
            operators.push(match part {
                Some(part) => Some(self.load_part(part).await?),
                None => None,
            });
        }
        let sink = match &manifest.sink {
            Some(part) => Some(self.load_part(part).await?),
            None => None,
        };
        Ok(CheckpointContent {
            operators,
            sink,
            sources: manifest.sources.clone(),
            consumed_log: manifest.consumed_log,
        })
    }

    /// A part's state: its base file's batches, then its deltas', in order.
    async fn load_part(&self, part: &PartRef) -> Result<StateSnapshot> {
        let mut batches = Vec::new();
        for file in part.files() {
            batches.extend(codec::decode(
                &self.read(&self.dir.clone().join_relative(file)).await?,
            )?);
        }
        Ok(StateSnapshot {
            batches,
            meta: part.meta.clone(),
        })
    }

    /// Writes one part. A delta builds on the same part of `previous` (the
    /// newest committed checkpoint), which must be the one it was taken
    /// against.
    async fn write_part(
        &self,
        folder: &str,
        name: &str,
        snapshot: &StateSnapshot,
        previous: Option<&PartRef>,
        bytes: &mut u64,
    ) -> Result<PartRef> {
        let written = self.write_file(folder, name, snapshot, bytes).await?;
        if snapshot.delta_since().is_none() {
            return Ok(PartRef {
                file: written,
                deltas: Vec::new(),
                meta: snapshot.meta.clone(),
            });
        }
        let base = previous.ok_or_else(|| {
            DataFusionError::Internal(format!(
                "an incremental checkpoint of {name} has no committed checkpoint to build on"
            ))
        })?;
        let mut deltas = base.deltas.clone();
        deltas.extend(written);
        Ok(PartRef {
            file: base.file.clone(),
            deltas,
            meta: snapshot.meta.clone(),
        })
    }

    /// Writes `snapshot`'s batches as one state file, if it has rows.
    async fn write_file(
        &self,
        folder: &str,
        name: &str,
        snapshot: &StateSnapshot,
        bytes: &mut u64,
    ) -> Result<Option<String>> {
        let file = if snapshot.batches.iter().any(|b| b.num_rows() > 0) {
            let encoded = codec::encode(&snapshot.batches)?;
            *bytes += encoded.len() as u64;
            let relative = format!("state/{folder}/{name}.arrow");
            self.store
                .put(
                    &self.dir.clone().join_relative(&relative),
                    PutPayload::from(encoded),
                )
                .await
                .map_err(storage_error)?;
            Some(relative)
        } else {
            None
        };
        Ok(file)
    }

    /// Commits `content` as the checkpoint of `epoch`: fails (SQLSTATE
    /// 55000, nothing visible) when a later instance has claimed the
    /// region. Returns the committed manifest.
    pub async fn commit(
        &self,
        epoch: Epoch,
        content: &CheckpointContent,
    ) -> Result<CheckpointManifest> {
        let folder = key(self.generation, epoch.0);
        let deltas: Vec<u64> = content
            .operators
            .iter()
            .flatten()
            .chain(&content.sink)
            .filter_map(StateSnapshot::delta_since)
            .collect();
        // Deltas build on the newest committed checkpoint: it must be the
        // one they were taken against.
        let previous = match deltas.first() {
            Some(since) => {
                let previous = self.latest().await?;
                let found = previous.as_ref().map(|m| m.epoch);
                if deltas.iter().any(|d| Some(*d) != found) {
                    return Err(DataFusionError::Internal(format!(
                        "incremental checkpoint of epoch {epoch} built on epoch {since}, \
                         but the newest committed one is {found:?}"
                    )));
                }
                previous
            }
            None => None,
        };
        let mut bytes = 0;
        let mut operators = Vec::with_capacity(content.operators.len());
        for (index, snapshot) in content.operators.iter().enumerate() {
            let base = previous.as_ref().and_then(|m| m.part(Some(index)));
            operators.push(match snapshot {
                Some(snapshot) => Some(
                    self.write_part(
                        &folder,
                        &format!("operator-{index}"),
                        snapshot,
                        base,
                        &mut bytes,
                    )
                    .await?,
                ),
                None => None,
            });
        }
        let sink = match &content.sink {
            Some(snapshot) => {
                let base = previous.as_ref().and_then(|m| m.part(None));
                Some(
                    self.write_part(&folder, "sink", snapshot, base, &mut bytes)
                        .await?,
                )
            }
            None => None,
        };
        let manifest = CheckpointManifest {
            generation: self.generation,
            epoch: epoch.0,
            commit_id: uuid::Uuid::new_v4().to_string(),
            operators,
            sink,
            sources: content.sources.clone(),
            consumed_log: content.consumed_log,
            bytes,
            committed_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        self.fence().await?;
        let body = serde_json::to_vec(&manifest)
            .map_err(|e| DataFusionError::Internal(format!("cannot serialise checkpoint: {e}")))?;
        let path = self
            .dir
            .clone()
            .join("manifests")
            .join(format!("{folder}.json"));
        if create_once(self.store.as_ref(), &path, body.into(), &manifest.commit_id).await?
            == Created::ByRival
        {
            return Err(fenced(&format!(
                "epoch {epoch} was committed by another instance"
            )));
        }
        if let Err(e) = self.collect_garbage(&manifest).await {
            log::warn!("checkpoint garbage of {} left for later: {e}", self.dir);
        }
        Ok(manifest)
    }

    /// Fails when a later generation has claimed the region.
    pub async fn fence(&self) -> Result<()> {
        let newest = self.newest_generation().await?;
        if newest > self.generation {
            return Err(fenced(&format!(
                "generation {} was replaced by generation {newest}",
                self.generation
            )));
        }
        Ok(())
    }

    /// Deletes manifests older than the kept checkpoints, and state files
    /// older than them that no kept checkpoint reads (an incremental one
    /// reads the files of earlier checkpoints).
    /// `committed` is the manifest just committed (not read back).
    async fn collect_garbage(&self, committed: &CheckpointManifest) -> Result<()> {
        let mut manifests: Vec<String> = self
            .list("manifests")
            .await?
            .into_iter()
            .filter_map(|name| name.strip_suffix(".json").map(str::to_owned))
            .collect();
        manifests.sort();
        if manifests.len() <= KEEP_CHECKPOINTS {
            return Ok(());
        }
        let oldest_kept = manifests[manifests.len() - KEEP_CHECKPOINTS].clone();
        let mut referenced = std::collections::HashSet::new();
        let committed_name = key(committed.generation, committed.epoch);
        for name in &manifests[manifests.len() - KEEP_CHECKPOINTS..] {
            if *name == committed_name {
                referenced.extend(committed.files().map(str::to_owned));
            } else {
                let manifest = self.read_manifest(&format!("{name}.json")).await?;
                referenced.extend(manifest.files().map(str::to_owned));
            }
        }
        for name in &manifests[..manifests.len() - KEEP_CHECKPOINTS] {
            self.delete(
                &self
                    .dir
                    .clone()
                    .join("manifests")
                    .join(format!("{name}.json")),
            )
            .await?;
        }
        let prefix = self.dir.clone().join("state");
        let files: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(storage_error)?;
        for file in files {
            // state/<key>/<part>.arrow: garbage when its key is older than
            // every kept checkpoint's (newer ones may be being written) and
            // no kept checkpoint reads it.
            let parts: Vec<String> = file
                .location
                .prefix_match(&prefix)
                .map(|parts| parts.map(|part| part.as_ref().to_owned()).collect())
                .unwrap_or_default();
            let relative = format!("state/{}", parts.join("/"));
            let old = parts.first().is_some_and(|key| *key < oldest_kept);
            if old && !referenced.contains(&relative) {
                self.delete(&file.location).await?;
            }
        }
        Ok(())
    }

    async fn delete(&self, path: &Path) -> Result<()> {
        delete_if_present(self.store.as_ref(), path).await
    }

    /// Deletes every checkpoint of the region (its query was dropped).
    pub async fn remove_all(&self) -> Result<()> {
        let files: Vec<_> = self
            .store
            .list(Some(&self.dir))
            .try_collect()
            .await
            .map_err(storage_error)?;
        for file in files {
            self.delete(&file.location).await?;
        }
        Ok(())
    }
}

/// Whether `error` is a checkpoint refused because a later instance has
/// claimed the region: the instance that got it must stop, not recover.
pub fn is_fenced(error: &DataFusionError) -> bool {
    SluiceError::find(error)
        .is_some_and(|e| e.sqlstate == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
}

fn fenced(why: &str) -> DataFusionError {
    SluiceError::new(
        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("checkpoint refused: {why}"),
    )
    .into()
}

/// `Path::join` of a relative path of several parts.
trait JoinRelative {
    fn join_relative(self, relative: &str) -> Path;
}

impl JoinRelative for Path {
    fn join_relative(self, relative: &str) -> Path {
        relative.split('/').fold(self, |path, part| path.join(part))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use object_store::memory::InMemory;

    use super::*;

    fn content(value: i64) -> CheckpointContent {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![value]))]).unwrap();
        CheckpointContent {
            operators: vec![
                None,
                Some(StateSnapshot {
                    batches: vec![batch],
                    meta: serde_json::json!({ "watermark": value }),
                }),
            ],
            sink: Some(StateSnapshot::default()),
            sources: vec![serde_json::json!({ "position": value })],
            consumed_log: Some(value as u64),
        }
    }

    #[tokio::test]
    async fn the_newest_checkpoint_comes_back() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut region = CheckpointStore::new(Arc::clone(&store), Path::from("cp/q/r"));
        assert!(region.latest().await.unwrap().is_none());
        region.claim_generation().await.unwrap();
        for epoch in 1..=4 {
            region
                .commit(Epoch(epoch), &content(epoch as i64))
                .await
                .unwrap();
        }
        let latest = region.latest().await.unwrap().unwrap();
        assert_eq!(latest.epoch, 4);
        let loaded = region.load(&latest).await.unwrap();
        assert_eq!(loaded.sources, vec![serde_json::json!({ "position": 4 })]);
        assert_eq!(loaded.consumed_log, Some(4));
        assert!(loaded.operators[0].is_none());
        let state = loaded.operators[1].as_ref().unwrap();
        assert_eq!(state.meta, serde_json::json!({ "watermark": 4 }));
        assert_eq!(state.batches[0].num_rows(), 1);
        // Older checkpoints were collected, the kept ones are whole.
        let manifests = region.list("manifests").await.unwrap();
        assert_eq!(manifests.len(), KEEP_CHECKPOINTS);
        let states: Vec<_> = store
            .list(Some(&Path::from("cp/q/r/state")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(states.len(), KEEP_CHECKPOINTS);
    }

    #[tokio::test]
    async fn a_zombie_of_an_earlier_generation_cannot_commit() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut zombie = CheckpointStore::new(Arc::clone(&store), Path::from("cp/q/r"));
        zombie.claim_generation().await.unwrap();
        zombie.commit(Epoch(1), &content(1)).await.unwrap();
        // A new instance takes over the region.
        let mut successor = CheckpointStore::new(Arc::clone(&store), Path::from("cp/q/r"));
        assert_eq!(successor.claim_generation().await.unwrap(), 2);
        let refused = zombie.commit(Epoch(2), &content(99)).await.unwrap_err();
        assert!(
            refused.to_string().contains("replaced by generation 2"),
            "{refused}"
        );
        successor.commit(Epoch(2), &content(2)).await.unwrap();
        let latest = successor.latest().await.unwrap().unwrap();
        assert_eq!((latest.generation, latest.epoch), (2, 2));
        // Even a zombie commit that slipped past the fence (written
        // directly here) sorts below the successor's checkpoints.
        let slipped = CheckpointManifest {
            generation: 1,
            epoch: 50,
            ..latest.clone()
        };
        store
            .put(
                &Path::from(format!("cp/q/r/manifests/{}.json", key(1, 50))),
                PutPayload::from(serde_json::to_vec(&slipped).unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(successor.latest().await.unwrap().unwrap().generation, 2);
    }

    #[tokio::test]
    async fn removing_a_region_deletes_everything() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut region = CheckpointStore::new(Arc::clone(&store), Path::from("cp/q/r"));
        region.claim_generation().await.unwrap();
        region.commit(Epoch(1), &content(1)).await.unwrap();
        region.remove_all().await.unwrap();
        let left: Vec<_> = store
            .list(Some(&Path::from("cp/q")))
            .try_collect()
            .await
            .unwrap();
        assert!(left.is_empty());
    }
}
