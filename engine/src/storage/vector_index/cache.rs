//! Loaded graphs, shared by every search in the process and bounded in
//! memory: a graph is read from the store the first time a search needs
//! it and stays until [`CACHE_BYTES`] of more recently used graphs push it
//! out, or its file is dropped.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use datafusion::error::{DataFusionError, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use usearch::Index;

use super::super::manifest::storage_error;
use super::definition::usearch_error;

/// Memory the loaded graphs may take together.
const CACHE_BYTES: usize = 4 << 30;

/// A loaded graph and the `ef_search` its walks use now.
pub(super) struct LoadedGraph {
    graph: Index,
    /// usearch takes the walk's breadth from the index, not the call: a
    /// walk needing another breadth changes it under the write lock, and
    /// walks hold the read lock, so none runs with another's breadth.
    ef_search: RwLock<usize>,
}

impl LoadedGraph {
    /// Runs `walk` on the graph with `ef_search` as the walk's breadth.
    pub(super) fn with_ef_search<R>(&self, ef_search: usize, walk: impl Fn(&Index) -> R) -> R {
        loop {
            {
                let current = self.ef_search.read().unwrap_or_else(|p| p.into_inner());
                if *current == ef_search {
                    return walk(&self.graph);
                }
            }
            let mut current = self.ef_search.write().unwrap_or_else(|p| p.into_inner());
            if *current != ef_search {
                self.graph.change_expansion_search(ef_search);
                *current = ef_search;
            }
        }
    }

    /// Copies the vector stored under `key` into `out` (of the graph's
    /// dimension); `false` when there is none.
    pub(super) fn vector(&self, key: u64, out: &mut [f32]) -> bool {
        self.graph.get(key, out).is_ok_and(|found| found > 0)
    }

    /// Vectors in the graph.
    pub(super) fn len(&self) -> usize {
        self.graph.size()
    }

    /// The vectors' dimension.
    pub(super) fn dimensions(&self) -> usize {
        self.graph.dimensions()
    }
}

#[derive(Default)]
struct Loaded {
    graphs: HashMap<Path, (Arc<LoadedGraph>, usize, u64)>,
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
pub(super) async fn load(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
) -> Result<Arc<LoadedGraph>> {
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
    let graph = tokio::task::spawn_blocking(move || Index::restore_from_buffer(&bytes))
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .map_err(usearch_error)?;
    let ef_search = graph.expansion_search();
    let graph = Arc::new(LoadedGraph {
        graph,
        ef_search: RwLock::new(ef_search),
    });
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
pub(super) fn cached(location: &Path) -> Option<Arc<LoadedGraph>> {
    loaded()
        .graphs
        .get(location)
        .map(|(graph, _, _)| Arc::clone(graph))
}
