//! Loaded graphs, shared by every search in the process and bounded in
//! memory: a graph is read from the store the first time a search needs
//! it and stays until [`CACHE_BYTES`] of more recently used graphs push it
//! out, or its file is dropped.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use datafusion::error::{DataFusionError, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::super::manifest::storage_error;
use super::hnsw::Graph;

/// Memory the loaded graphs may take together.
const CACHE_BYTES: usize = 4 << 30;

#[derive(Default)]
struct Loaded {
    graphs: HashMap<Path, (Arc<Graph>, usize, u64)>,
    bytes: usize,
    clock: u64,
}

static LOADED: LazyLock<Mutex<Loaded>> = LazyLock::new(Mutex::default);

fn loaded() -> std::sync::MutexGuard<'static, Loaded> {
    // A panic elsewhere while holding the lock leaves the map consistent
    // (every update is a single insert or remove).
    LOADED.lock().unwrap_or_else(|p| p.into_inner())
}

/// The graph stored at `location`, from the cache or the store.
pub(super) async fn load(store: &Arc<dyn ObjectStore>, location: &Path) -> Result<Arc<Graph>> {
    {
        let mut cache = loaded();
        cache.clock += 1;
        let now = cache.clock;
        if let Some((graph, _, used)) = cache.graphs.get_mut(location) {
            *used = now;
            return Ok(Arc::clone(graph));
        }
    }
    let bytes = store
        .get(location)
        .await
        .map_err(storage_error)?
        .bytes()
        .await
        .map_err(storage_error)?;
    let size = bytes.len();
    let graph = tokio::task::spawn_blocking(move || Graph::from_bytes(&bytes))
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))??;
    let graph = Arc::new(graph);
    let mut cache = loaded();
    cache.clock += 1;
    let now = cache.clock;
    if let Some((old, old_size, _)) = cache
        .graphs
        .insert(location.clone(), (Arc::clone(&graph), size, now))
    {
        // Another search loaded it meanwhile; keep one.
        cache.bytes -= old_size;
        drop(old);
    }
    cache.bytes += size;
    while cache.bytes > CACHE_BYTES && cache.graphs.len() > 1 {
        let Some(oldest) = cache
            .graphs
            .iter()
            .filter(|(path, _)| *path != location)
            .min_by_key(|(_, (_, _, used))| *used)
            .map(|(path, _)| path.clone())
        else {
            break;
        };
        if let Some((_, evicted, _)) = cache.graphs.remove(&oldest) {
            cache.bytes -= evicted;
        }
    }
    Ok(graph)
}

/// Drops the graph at `location` from the cache (its file is gone).
pub(super) fn forget(location: &Path) {
    let mut cache = loaded();
    if let Some((_, size, _)) = cache.graphs.remove(location) {
        cache.bytes -= size;
    }
}

/// The graph at `location` if it is loaded already (nothing is read).
pub(super) fn cached(location: &Path) -> Option<Arc<Graph>> {
    loaded()
        .graphs
        .get(location)
        .map(|(graph, _, _)| Arc::clone(graph))
}
