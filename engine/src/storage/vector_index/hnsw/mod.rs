//! HNSW graphs (Malkov and Yashunin's hierarchical navigable small
//! worlds): building them in parallel, searching them with a filter
//! applied inside the walk, and storing them as one object.
//!
//! Builds and searches walk on 8-bit codes of the vectors ([`quantized`])
//! and rank the nearest they find again on float32: they read a quarter
//! of the memory, links are chosen by exact distances, and searches
//! return exact distances.
//!
//! # Why Sluice has its own
//! Sluice's graphs were usearch's until a walk was measured against FAISS
//! `IndexHNSWFlat` on the benchmark's clustered 200k × 384 set (one query
//! at a time, recall@10 equal at each ef): usearch's walk took 2.2–2.8×
//! FAISS's time, and its parallel build 2.9×. Its walk stalls on each
//! neighbour's vector; FAISS issues the loads of all of a node's
//! unvisited neighbours before computing their distances, four at a time,
//! and usearch's Rust crate offers no such hook. hnsw_rs and
//! instant-distance walk the same way usearch does. This implementation
//! keeps FAISS's layout (level 0's links in one flat array, the vectors in
//! another) and its prefetching walk: on that set it searches 1.0–1.1×
//! faster than FAISS at equal recall and builds in 1.1–1.25× FAISS's time
//! (`benchmarks/vectors/ann.sh`).

mod builder;
mod code_kernels;
mod codec;
mod kernels;
mod quantized;
mod space;
mod walk;

use std::cell::RefCell;

use self::quantized::{CodedDistances, Codes};
use self::space::Space;
use self::walk::{Distances, FloatDistances, Links, Scored, Scratch, Walker};
use super::definition::IndexMetric;

pub(super) use builder::Builder;

/// Nodes a search scores again on their float32 vectors, per row it
/// returns ([`Graph::rerank`]), and at least.
const RERANKED_PER_ROW: usize = 2;
/// Nodes a search scores again at least, whatever its `k`.
const MIN_RERANKED: usize = 16;

/// Levels a node may reach (2^-15 of nodes would reach it at m = 2).
const MAX_LEVEL: u8 = 15;

/// A finished graph, read-only: searched by any number of threads.
pub(super) struct Graph {
    space: Space,
    /// The vectors as the walks read them.
    codes: Codes,
    /// The key of each node, ascending.
    keys: Vec<u64>,
    /// The highest level of each node.
    levels: Vec<u8>,
    m: usize,
    /// Level 0, `2m + 1` values a node: its link count, then its links.
    level0: Vec<u32>,
    /// Where a node's level-1 list starts in `upper` (`u32::MAX` for a
    /// level-0 node); its higher levels follow, `m + 1` values each.
    upper_at: Vec<u32>,
    upper: Vec<u32>,
    /// The node searches start from, and its level.
    entry: Option<(u32, u8)>,
}

impl Links for Graph {
    #[inline]
    fn neighbors<'a>(&'a self, node: u32, level: usize, _copy: &'a mut Vec<u32>) -> &'a [u32] {
        let row = if level == 0 {
            let width = 2 * self.m + 1;
            &self.level0[node as usize * width..][..width]
        } else {
            let width = self.m + 1;
            let start = self.upper_at[node as usize] as usize + (level - 1) * width;
            &self.upper[start..start + width]
        };
        &row[1..=row[0] as usize]
    }
}

thread_local! {
    /// Each search thread's walk memory, reused across searches.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Graph {
    /// Vectors in the graph.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The vectors' dimension.
    pub(super) fn dimensions(&self) -> usize {
        self.space.dimensions
    }

    /// The metric the graph was built for.
    pub(super) fn metric(&self) -> IndexMetric {
        self.space.metric
    }

    /// The `k` nodes nearest `query` (of the graph's dimension) whose key
    /// `keep` accepts, nearest first, as `(key, distance)`; the walk keeps
    /// `ef` candidates (at least `k`). Fewer than `k` when the walk found
    /// fewer accepted nodes.
    pub(super) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        mut keep: impl FnMut(u64) -> bool,
    ) -> Vec<(u64, f32)> {
        let Some((entry, top)) = self.entry else {
            return Vec::new();
        };
        let query = self.space.prepare(query);
        let walker = Walker {
            links: self,
            distances: &CodedDistances::new(&self.codes, &query),
        };
        let found = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut copy = Vec::new();
            let mut at = walker.scored(entry);
            for level in (1..=usize::from(top)).rev() {
                at = walker.descend(at, level, &mut copy);
            }
            let keys = &self.keys;
            walker.search_level(&[at], ef.max(k), 0, &mut scratch, |node| {
                keep(keys[node as usize])
            })
        });
        let exact = FloatDistances {
            space: &self.space,
            query: &query,
        };
        self.rerank(&exact, found, k)
    }

    /// The `k` nearest of the nodes a walk found (nearest first by their
    /// coded distances), by their exact distances. Only the coded-nearest
    /// few are scored again: each is a random read of a whole float32
    /// vector, and on the benchmark's set scoring `2k` of them instead of
    /// all `ef` left recall@10 unchanged at every ef while searches took
    /// ~10% less time.
    fn rerank(&self, exact: &FloatDistances, mut found: Vec<Scored>, k: usize) -> Vec<(u64, f32)> {
        /// Vectors loaded ahead of the one being scored.
        const AHEAD: usize = 4;
        found.truncate((RERANKED_PER_ROW * k).max(MIN_RERANKED));
        for found in found.iter().take(AHEAD) {
            exact.prefetch(found.node);
        }
        let mut ranked: Vec<Scored> = found
            .iter()
            .enumerate()
            .map(|(at, candidate)| {
                if let Some(next) = found.get(at + AHEAD) {
                    exact.prefetch(next.node);
                }
                Scored {
                    distance: exact.one(candidate.node),
                    node: candidate.node,
                }
            })
            .collect();
        ranked.sort_unstable();
        ranked
            .into_iter()
            .take(k)
            .map(|found| (self.keys[found.node as usize], found.distance))
            .collect()
    }

    /// The vector stored under `key`, if any.
    pub(super) fn vector(&self, key: u64) -> Option<&[f32]> {
        // Keys are added in ascending order (file slot, then row).
        let node = self.keys.binary_search(&key).ok()?;
        Some(self.space.vector(node as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rows` vectors of `dimensions` around 20 centres (a deterministic
    /// generator: the tests need no random crate).
    fn clustered(rows: usize, dimensions: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let centres: Vec<f32> = (0..20 * dimensions).map(|_| next() * 4.0).collect();
        let mut out = Vec::with_capacity(rows * dimensions);
        for row in 0..rows {
            let centre = &centres[(row % 20) * dimensions..][..dimensions];
            out.extend(centre.iter().map(|c| c + next()));
        }
        out
    }

    fn build(metric: IndexMetric, vectors: &[f32], dimensions: usize) -> Graph {
        let keys: Vec<u64> = (0..(vectors.len() / dimensions) as u64)
            .map(|k| k * 3)
            .collect();
        let mut builder = Builder::new(dimensions, metric, 8, 48);
        // Two calls: later files join a graph that already has nodes.
        let half = keys.len() / 2;
        builder
            .add(&keys[..half], &vectors[..half * dimensions])
            .expect("first half");
        builder
            .add(&keys[half..], &vectors[half * dimensions..])
            .expect("second half");
        builder.finish(2)
    }

    fn exact(graph: &Graph, query: &[f32], k: usize, keep: impl Fn(u64) -> bool) -> Vec<u64> {
        let prepared = graph.space.prepare(query);
        let mut all: Vec<(f32, u64)> = (0..graph.len() as u32)
            .filter(|&n| keep(graph.keys[n as usize]))
            .map(|n| (graph.space.to_node(&prepared, n), graph.keys[n as usize]))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|(_, key)| key).collect()
    }

    #[test]
    fn searches_find_the_exact_neighbours_for_every_metric() {
        let dimensions = 16;
        let vectors = clustered(3000, dimensions, 1);
        // Near the rows, as real queries are (a query far from every
        // cluster is equally far from all of them).
        let noise = clustered(40, dimensions, 2);
        let queries: Vec<f32> = vectors
            .chunks_exact(dimensions)
            .step_by(75)
            .flatten()
            .zip(&noise)
            .map(|(v, n)| v + 0.05 * n)
            .collect();
        for metric in [IndexMetric::Cosine, IndexMetric::L2, IndexMetric::Ip] {
            let graph = build(metric, &vectors, dimensions);
            let mut found = 0;
            for query in queries.chunks_exact(dimensions) {
                let hits = graph.search(query, 10, 64, |_| true);
                assert_eq!(hits.len(), 10);
                assert!(hits.windows(2).all(|w| w[0].1 <= w[1].1), "nearest first");
                // The walk compared codes; the distances returned are the
                // float32 ones.
                let prepared = graph.space.prepare(query);
                for &(key, distance) in &hits {
                    let exact = graph.space.to_node(&prepared, (key / 3) as u32);
                    assert_eq!(distance.to_bits(), exact.to_bits(), "{metric:?}");
                }
                let truth = exact(&graph, query, 10, |_| true);
                found += hits.iter().filter(|(key, _)| truth.contains(key)).count();
            }
            let recall = found as f64 / (40.0 * 10.0);
            assert!(recall >= 0.95, "{metric:?}: recall@10 {recall}");
        }
    }

    #[test]
    fn a_filter_inside_the_walk_returns_only_kept_keys() {
        let dimensions = 8;
        let vectors = clustered(2000, dimensions, 3);
        let graph = build(IndexMetric::L2, &vectors, dimensions);
        let keep = |key: u64| key.is_multiple_of(10);
        for query in clustered(10, dimensions, 4).chunks_exact(dimensions) {
            let hits = graph.search(query, 5, 64, keep);
            assert_eq!(hits.len(), 5);
            assert!(hits.iter().all(|(key, _)| keep(*key)));
            let truth = exact(&graph, query, 5, keep);
            let found = hits.iter().filter(|(key, _)| truth.contains(key)).count();
            assert!(found >= 4, "{found} of 5 filtered neighbours");
        }
        assert!(
            graph
                .search(&vectors[..dimensions], 5, 64, |_| false)
                .is_empty()
        );
    }

    #[test]
    fn a_graph_reads_back_from_its_bytes() {
        let dimensions = 12;
        let vectors = clustered(1500, dimensions, 5);
        let graph = build(IndexMetric::Cosine, &vectors, dimensions);
        let bytes = graph.to_bytes();
        let read = Graph::from_bytes(&bytes).expect("read back");
        assert_eq!(read.to_bytes(), bytes);
        let query = &vectors[7 * dimensions..8 * dimensions];
        assert_eq!(
            read.search(query, 10, 32, |_| true),
            graph.search(query, 10, 32, |_| true)
        );
        assert_eq!(read.vector(7 * 3), Some(query));
        assert_eq!(read.vector(7 * 3 + 1), None);
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let dimensions = 4;
        let graph = build(IndexMetric::L2, &clustered(1200, dimensions, 6), dimensions);
        let bytes = graph.to_bytes();
        assert!(Graph::from_bytes(b"usearch graph").is_err());
        assert!(Graph::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        // A link past the last node.
        let mut bad = bytes.clone();
        let level0 = 40 + graph.len() * 9;
        bad[level0 + 4..level0 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Graph::from_bytes(&bad).is_err());
        // Every single-byte change in the header or links either reads or
        // fails cleanly.
        for at in (0..level0 + 400).step_by(7) {
            let mut changed = bytes.clone();
            changed[at] ^= 0x5a;
            let _ = Graph::from_bytes(&changed).map(|g| g.search(&[0.0; 4], 3, 8, |_| true));
        }
    }

    #[test]
    fn an_empty_graph_finds_nothing_and_keys_must_ascend() {
        let graph = Builder::new(3, IndexMetric::Cosine, 16, 64).finish(2);
        assert!(graph.search(&[1.0, 0.0, 0.0], 5, 64, |_| true).is_empty());
        let read = Graph::from_bytes(&graph.to_bytes()).expect("empty graph");
        assert_eq!(read.len(), 0);
        let mut builder = Builder::new(2, IndexMetric::L2, 16, 64);
        assert!(builder.add(&[5, 4], &[0.0; 4]).is_err());
        assert!(builder.add(&[1], &[0.0; 3]).is_err());
    }
}
