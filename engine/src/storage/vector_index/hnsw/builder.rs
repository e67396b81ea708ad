//! Building a graph: the vectors are gathered ([`Builder::add`]), then
//! coded and inserted from several threads at once, each node's neighbour
//! lists behind their own lock (as hnswlib does), and frozen into the flat
//! arrays searches read ([`Builder::finish`]).

use std::sync::{Mutex, MutexGuard, PoisonError};

use datafusion::error::{DataFusionError, Result};

use super::super::definition::IndexMetric;
use super::quantized::{CodedDistances, Codes};
use super::space::Space;
use super::walk::{Distances, FloatDistances, Links, Scored, Scratch, Walker, select_neighbors};
use super::{Graph, MAX_LEVEL};

/// Nodes inserted one at a time before threads join in, so that the
/// upper levels exist before the threads race through them.
const SEED_NODES: usize = 1024;

/// A graph being built.
pub(in crate::storage::vector_index) struct Builder {
    space: Space,
    keys: Vec<u64>,
    levels: Vec<u8>,
    /// Per node, per level (0 first), its neighbours.
    links: Vec<Box<[Mutex<Vec<u32>>]>>,
    /// The node searches start from, and its level.
    entry: Mutex<Option<(u32, u8)>>,
    m: usize,
    ef_construction: usize,
}

struct LockedLinks<'a>(&'a [Box<[Mutex<Vec<u32>>]>]);

impl Links for LockedLinks<'_> {
    fn neighbors<'a>(&'a self, node: u32, level: usize, copy: &'a mut Vec<u32>) -> &'a [u32] {
        copy.clear();
        if let Some(list) = self.0[node as usize].get(level) {
            copy.extend_from_slice(&lock(list));
        }
        copy
    }
}

/// A lock whose holder panicked still guards a whole list (every update
/// replaces or appends under the lock).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A node's level, drawn from HNSW's exponential distribution by a hash
/// of its key: the same rows get the same levels in every build.
fn level_of(key: u64, m: usize) -> u8 {
    // splitmix64's finaliser.
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let uniform = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let level = -uniform.ln() / (m.max(2) as f64).ln();
    level.min(f64::from(MAX_LEVEL)) as u8
}

impl Builder {
    /// An empty graph of `dimensions`-long vectors: `m` links per node
    /// (twice that on level 0), `ef_construction` candidates per insert.
    pub(in crate::storage::vector_index) fn new(
        dimensions: usize,
        metric: IndexMetric,
        m: usize,
        ef_construction: usize,
    ) -> Self {
        Self {
            space: Space::new(dimensions, metric),
            keys: Vec::new(),
            levels: Vec::new(),
            links: Vec::new(),
            entry: Mutex::new(None),
            m: m.max(2),
            ef_construction: ef_construction.max(1),
        }
    }

    /// Room for `nodes` more nodes.
    pub(in crate::storage::vector_index) fn reserve(&mut self, nodes: usize) {
        self.space.vectors.reserve(nodes * self.space.dimensions);
        self.keys.reserve(nodes);
        self.levels.reserve(nodes);
        self.links.reserve(nodes);
    }

    /// Adds `vectors` (rows of the graph's dimension) under `keys`; they
    /// are linked into the graph by [`Builder::finish`], once every
    /// vector is known and can be coded.
    pub(in crate::storage::vector_index) fn add(
        &mut self,
        keys: &[u64],
        vectors: &[f32],
    ) -> Result<()> {
        let dimensions = self.space.dimensions;
        if vectors.len() != keys.len() * dimensions {
            return Err(DataFusionError::Internal(format!(
                "{} vector values for {} keys of {dimensions} dimensions",
                vectors.len(),
                keys.len()
            )));
        }
        // Ascending keys let a graph find a key's vector by bisection.
        let mut previous = self.keys.last().copied();
        for &key in keys {
            if previous.is_some_and(|p| p >= key) {
                return Err(DataFusionError::Internal(
                    "vector index keys must be added in ascending order".into(),
                ));
            }
            previous = Some(key);
        }
        if self.keys.len() + keys.len() > u32::MAX as usize {
            return Err(DataFusionError::Execution(
                "cannot build vector index: a graph holds at most 2^32 - 1 vectors".into(),
            ));
        }
        for (&key, vector) in keys.iter().zip(vectors.chunks_exact(dimensions.max(1))) {
            self.space.push(vector);
            self.keys.push(key);
            let level = level_of(key, self.m);
            self.levels.push(level);
            let lists: Vec<Mutex<Vec<u32>>> = (0..=usize::from(level))
                .map(|l| Mutex::new(Vec::with_capacity(self.width(l))))
                .collect();
            self.links.push(lists.into_boxed_slice());
        }
        Ok(())
    }

    /// Links every node from `threads` threads. Higher levels go in
    /// first, as FAISS adds: the upper levels then exist before the bulk
    /// of level 0 links through them (recall@10 on the benchmark's set at
    /// ef 128 went from 0.956 to 0.968, FAISS's figure).
    fn link_all(&self, codes: &Codes, threads: usize) {
        let mut order: Vec<u32> = (0..self.keys.len() as u32).collect();
        order.sort_by_key(|&node| std::cmp::Reverse(self.levels[node as usize]));
        let seeded = SEED_NODES.min(order.len());
        let mut scratch = Scratch::default();
        for &node in &order[..seeded] {
            self.insert(node, codes, &mut scratch);
        }
        let rest = &order[seeded..];
        let threads = threads.max(1);
        std::thread::scope(|scope| {
            for thread in 0..threads {
                scope.spawn(move || {
                    let mut scratch = Scratch::default();
                    for &node in rest.iter().skip(thread).step_by(threads) {
                        self.insert(node, codes, &mut scratch);
                    }
                });
            }
        });
    }

    /// Links allowed per node at `level`.
    fn width(&self, level: usize) -> usize {
        if level == 0 { 2 * self.m } else { self.m }
    }

    /// Links `node`: walks to its nearest nodes on the codes, as searches
    /// do, and chooses its links among them by their exact distances.
    fn insert(&self, node: u32, codes: &Codes, scratch: &mut Scratch) {
        let level = self.levels[node as usize];
        let (entry, top) = {
            let mut entry = lock(&self.entry);
            match *entry {
                Some(found) => found,
                None => {
                    *entry = Some((node, level));
                    return;
                }
            }
        };
        let links = LockedLinks(&self.links);
        let query = self.space.prepare(self.space.vector(node));
        let walker = Walker {
            links: &links,
            distances: &CodedDistances::new(codes, &query),
        };
        let exact = FloatDistances {
            space: &self.space,
            query: &query,
        };
        let mut copy = Vec::new();
        let mut at = walker.scored(entry);
        for upper in (usize::from(level) + 1..=usize::from(top)).rev() {
            at = walker.descend(at, upper, &mut copy);
        }
        let mut entries = vec![at];
        for l in (0..=usize::from(level.min(top))).rev() {
            let found = walker.search_level(&entries, self.ef_construction, l, scratch, |other| {
                other != node
            });
            let mut ranked: Vec<Scored> = found
                .iter()
                .map(|f| Scored {
                    distance: exact.one(f.node),
                    node: f.node,
                })
                .collect();
            ranked.sort_unstable();
            let chosen = select_neighbors(&self.space, &ranked, self.m);
            *lock(&self.links[node as usize][l]) = chosen.clone();
            for neighbor in chosen {
                self.link_back(neighbor, node, l);
            }
            entries = found;
        }
        if level > top {
            let mut entry = lock(&self.entry);
            if entry.is_some_and(|(_, current)| level > current) {
                *entry = Some((node, level));
            }
        }
    }

    /// Adds `node` to `neighbor`'s links at `level`; a full list keeps the
    /// heuristic's choice among its links and `node`.
    fn link_back(&self, neighbor: u32, node: u32, level: usize) {
        let width = self.width(level);
        let mut list = lock(&self.links[neighbor as usize][level]);
        if list.contains(&node) {
            return;
        }
        if list.len() < width {
            list.push(node);
            return;
        }
        let mut all: Vec<Scored> = list
            .iter()
            .chain(std::iter::once(&node))
            .map(|&other| Scored {
                distance: self.space.between(neighbor, other),
                node: other,
            })
            .collect();
        all.sort_unstable();
        *list = select_neighbors(&self.space, &all, width);
    }

    /// The finished graph, its nodes linked from `threads` threads and
    /// its links in flat arrays.
    pub(in crate::storage::vector_index) fn finish(self, threads: usize) -> Graph {
        let codes = Codes::encode(&self.space);
        self.link_all(&codes, threads);
        let nodes = self.keys.len();
        let level0_width = 2 * self.m + 1;
        let mut level0 = vec![0u32; nodes * level0_width];
        let mut upper_at = vec![u32::MAX; nodes];
        let mut upper = Vec::new();
        for (node, lists) in self.links.into_iter().enumerate() {
            for (level, list) in lists.into_vec().into_iter().enumerate() {
                let list = list.into_inner().unwrap_or_else(PoisonError::into_inner);
                let row = if level == 0 {
                    &mut level0[node * level0_width..(node + 1) * level0_width]
                } else {
                    if level == 1 {
                        upper_at[node] = upper.len() as u32;
                    }
                    let start = upper.len();
                    upper.resize(start + self.m + 1, 0);
                    &mut upper[start..]
                };
                row[0] = list.len() as u32;
                row[1..=list.len()].copy_from_slice(&list);
            }
        }
        let entry = self
            .entry
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        Graph {
            codes,
            space: self.space,
            keys: self.keys,
            levels: self.levels,
            m: self.m,
            level0,
            upper_at,
            upper,
            entry,
        }
    }
}
