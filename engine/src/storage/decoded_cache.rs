//! What a process decodes from data files and keeps for later reads (a
//! file's vector column for exact searches, a key column for point
//! lookups), shared by every query and bounded in memory.
//!
//! A data file never changes once written, so a value decoded from it
//! stays right for as long as anyone reads that file: the cache needs no
//! invalidation, only a bound. Values are kept least-recently-used first
//! until the bound is reached; a file dropped by compaction or a DELETE is
//! never asked for again and ages out. Concurrent first reads of one value
//! decode it once (the others wait for it).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::error::Result;
use object_store::path::Path;
use tokio::sync::OnceCell;

/// A value's memory, counted against the cache's bound.
pub(crate) trait Weighed {
    /// Bytes the value holds.
    fn bytes(&self) -> usize;
}

/// One column of one data file: its location and the column's name.
pub(crate) type ColumnKey = (Path, String);

/// See the module documentation.
pub(crate) struct DecodedCache<V> {
    bound: usize,
    state: Mutex<Entries<V>>,
}

struct Entries<V> {
    entries: HashMap<ColumnKey, Entry<V>>,
    bytes: usize,
    clock: u64,
}

struct Entry<V> {
    value: Arc<OnceCell<Arc<V>>>,
    /// Counted once decoded; 0 while it is being decoded.
    bytes: usize,
    used: u64,
}

impl<V: Weighed> DecodedCache<V> {
    /// An empty cache holding at most `bound` bytes.
    pub(crate) fn new(bound: usize) -> Self {
        Self {
            bound,
            state: Mutex::new(Entries {
                entries: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries<V>> {
        // Every update under the lock leaves the map consistent, so a panic
        // elsewhere while it was held does not make it unusable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value under `key`, from the cache or made by `decode`.
    pub(crate) async fn get_or_decode<F, Fut>(&self, key: ColumnKey, decode: F) -> Result<Arc<V>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<V>>>,
    {
        let cell = {
            let mut cache = self.entries();
            cache.clock += 1;
            let now = cache.clock;
            let entry = cache.entries.entry(key.clone()).or_insert_with(|| Entry {
                value: Arc::new(OnceCell::new()),
                bytes: 0,
                used: now,
            });
            entry.used = now;
            Arc::clone(&entry.value)
        };
        let decoded = Arc::clone(cell.get_or_try_init(decode).await?);
        self.account(&key, &decoded);
        Ok(decoded)
    }

    /// The value under `key` if it is decoded already (nothing is read).
    pub(crate) fn cached(&self, key: &ColumnKey) -> Option<Arc<V>> {
        let mut cache = self.entries();
        cache.clock += 1;
        let now = cache.clock;
        let entry = cache.entries.get_mut(key)?;
        let value = entry.value.get().cloned()?;
        entry.used = now;
        Some(value)
    }

    /// Counts a newly decoded value against the bound, evicting the least
    /// recently used others; one that alone exceeds the bound is not kept.
    fn account(&self, key: &ColumnKey, decoded: &V) {
        let mut cache = self.entries();
        let Some(entry) = cache.entries.get_mut(key) else {
            return;
        };
        if entry.bytes != 0 {
            return;
        }
        let bytes = decoded.bytes().max(1);
        if bytes > self.bound {
            // Kept, it would push out everything else and still not fit.
            cache.entries.remove(key);
            return;
        }
        entry.bytes = bytes;
        cache.bytes += bytes;
        while cache.bytes > self.bound {
            let oldest = cache
                .entries
                .iter()
                .filter(|(k, e)| e.bytes > 0 && *k != key)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            let Some(oldest) = oldest else { break };
            if let Some(evicted) = cache.entries.remove(&oldest) {
                cache.bytes -= evicted.bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sized(usize);

    impl Weighed for Sized {
        fn bytes(&self) -> usize {
            self.0
        }
    }

    fn key(name: &str) -> ColumnKey {
        (Path::from("f.parquet"), name.to_string())
    }

    async fn put(cache: &DecodedCache<Sized>, name: &str, bytes: usize) {
        cache
            .get_or_decode(key(name), || async move { Ok(Arc::new(Sized(bytes))) })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_least_recently_used_value_goes_first() {
        let cache = DecodedCache::new(100);
        put(&cache, "a", 40).await;
        put(&cache, "b", 40).await;
        assert!(cache.cached(&key("a")).is_some());
        put(&cache, "c", 40).await;
        assert!(cache.cached(&key("a")).is_some());
        assert!(cache.cached(&key("b")).is_none());
        assert!(cache.cached(&key("c")).is_some());
    }

    #[tokio::test]
    async fn a_value_larger_than_the_bound_is_not_kept() {
        let cache = DecodedCache::new(100);
        put(&cache, "a", 40).await;
        put(&cache, "huge", 200).await;
        assert!(cache.cached(&key("huge")).is_none());
        assert!(cache.cached(&key("a")).is_some());
    }

    #[tokio::test]
    async fn a_value_is_decoded_once() {
        let cache = DecodedCache::new(100);
        put(&cache, "a", 10).await;
        let again = cache
            .get_or_decode(key("a"), || async { panic!("decoded twice") })
            .await
            .unwrap();
        assert_eq!(again.0, 10);
    }
}
