//! HNSW's two walks over a level (the greedy descent through the upper
//! levels and the beam search of one level) and its neighbour selection,
//! shared by the builder (over links still being written) and searches
//! (over a finished graph).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::kernels::prefetch;
use super::space::Space;

/// A node and its distance to the walk's query; ordered by distance, then
/// by node, so that walks (and ties between equal distances) are
/// deterministic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Scored {
    pub(super) distance: f32,
    pub(super) node: u32,
}

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.node.cmp(&other.node))
    }
}

/// The neighbour lists a walk reads.
pub(super) trait Links {
    /// The neighbours of `node` at `level`; an implementation that must
    /// copy them (under a lock) does so into `copy`.
    fn neighbors<'a>(&'a self, node: u32, level: usize, copy: &'a mut Vec<u32>) -> &'a [u32];
}

/// One walk's memory, reused from walk to walk by a thread: which nodes
/// it has seen (a generation tag per node, so that starting a walk costs
/// nothing) and its two queues.
#[derive(Default)]
pub(super) struct Scratch {
    seen: Vec<u16>,
    generation: u16,
    candidates: BinaryHeap<Reverse<Scored>>,
    results: BinaryHeap<Scored>,
    copy: Vec<u32>,
    fresh: Vec<u32>,
}

impl Scratch {
    /// Forgets the last walk's nodes, for a graph of `nodes` nodes.
    fn start(&mut self, nodes: usize) {
        if self.seen.len() < nodes {
            self.seen.resize(nodes, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.seen.fill(0);
            self.generation = 1;
        }
        self.candidates.clear();
        self.results.clear();
    }
}

/// Marks `node` seen in `seen` under `generation`; `false` if it was
/// already.
#[inline]
fn first_visit(seen: &mut [u16], generation: u16, node: u32) -> bool {
    let tag = &mut seen[node as usize];
    let first = *tag != generation;
    *tag = generation;
    first
}

/// One query's distances to the graph's nodes, as a walk compares them:
/// exact ([`FloatDistances`]) while building, from 8-bit codes
/// ([`super::quantized::CodedDistances`]) while searching.
pub(super) trait Distances {
    /// Nodes in the graph.
    fn nodes(&self) -> usize;
    /// The query's distance to `node`.
    fn one(&self, node: u32) -> f32;
    /// The query's distances to four nodes.
    fn four(&self, nodes: [u32; 4]) -> [f32; 4];
    /// Starts loading what [`Distances::one`] of `node` will read.
    fn prefetch(&self, node: u32);
}

/// A prepared query's exact distances to a space's vectors.
pub(super) struct FloatDistances<'a> {
    pub(super) space: &'a Space,
    pub(super) query: &'a [f32],
}

impl Distances for FloatDistances<'_> {
    fn nodes(&self) -> usize {
        self.space.len()
    }

    #[inline]
    fn one(&self, node: u32) -> f32 {
        self.space.to_node(self.query, node)
    }

    #[inline]
    fn four(&self, nodes: [u32; 4]) -> [f32; 4] {
        self.space.to_nodes(self.query, nodes)
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        prefetch(self.space.vector(node));
    }
}

/// A query walking a graph: its links and its distances.
pub(super) struct Walker<'a, L: Links, D: Distances> {
    pub(super) links: &'a L,
    pub(super) distances: &'a D,
}

impl<L: Links, D: Distances> Walker<'_, L, D> {
    /// The query's distance to `node`.
    pub(super) fn scored(&self, node: u32) -> Scored {
        Scored {
            distance: self.distances.one(node),
            node,
        }
    }

    /// From `at`, moves to a closer neighbour at `level` while there is
    /// one (HNSW's descent through the upper levels).
    pub(super) fn descend(&self, mut at: Scored, level: usize, copy: &mut Vec<u32>) -> Scored {
        loop {
            let mut moved = false;
            for &node in self.links.neighbors(at.node, level, copy) {
                let next = self.scored(node);
                if next < at {
                    at = next;
                    moved = true;
                }
            }
            if !moved {
                return at;
            }
        }
    }

    /// The beam search of one level from `entries`: up to `ef` nodes that
    /// `keep` accepts, nearest first. Nodes `keep` refuses are still
    /// walked through (a filter applied inside the walk, not after it), so
    /// the search finds accepted nodes beyond refused ones.
    pub(super) fn search_level(
        &self,
        entries: &[Scored],
        ef: usize,
        level: usize,
        scratch: &mut Scratch,
        mut keep: impl FnMut(u32) -> bool,
    ) -> Vec<Scored> {
        let distances = self.distances;
        scratch.start(distances.nodes());
        let Scratch {
            seen,
            generation,
            candidates,
            results,
            copy,
            fresh,
        } = scratch;
        let generation = *generation;
        for &entry in entries {
            if !first_visit(seen, generation, entry.node) {
                continue;
            }
            candidates.push(Reverse(entry));
            if keep(entry.node) {
                results.push(entry);
            }
        }
        while results.len() > ef {
            results.pop();
        }
        let mut bound = if results.len() >= ef {
            results.peek().map_or(f32::INFINITY, |s| s.distance)
        } else {
            f32::INFINITY
        };
        while let Some(Reverse(current)) = candidates.pop() {
            if current.distance > bound {
                break;
            }
            fresh.clear();
            for &node in self.links.neighbors(current.node, level, copy) {
                if first_visit(seen, generation, node) {
                    distances.prefetch(node);
                    fresh.push(node);
                }
            }
            let mut offer = |node: u32, distance: f32| {
                if results.len() < ef || distance < bound {
                    let scored = Scored { distance, node };
                    candidates.push(Reverse(scored));
                    if keep(node) {
                        results.push(scored);
                        if results.len() > ef {
                            results.pop();
                        }
                        if results.len() >= ef {
                            bound = results.peek().map_or(f32::INFINITY, |s| s.distance);
                        }
                    }
                }
            };
            let mut quads = fresh.chunks_exact(4);
            for quad in &mut quads {
                let nodes = [quad[0], quad[1], quad[2], quad[3]];
                for (node, distance) in nodes.into_iter().zip(distances.four(nodes)) {
                    offer(node, distance);
                }
            }
            for &node in quads.remainder() {
                offer(node, distances.one(node));
            }
        }
        let mut found = std::mem::take(results).into_vec();
        found.sort_unstable();
        found
    }
}

/// HNSW's neighbour heuristic (Malkov and Yashunin, algorithm 4): from
/// `candidates`, nearest first, keeps one only when it is closer to the
/// base node than to every node kept before it, up to `max`. Links then
/// point in different directions instead of into one cluster.
pub(super) fn select_neighbors(space: &Space, candidates: &[Scored], max: usize) -> Vec<u32> {
    let mut kept: Vec<Scored> = Vec::with_capacity(max);
    for &candidate in candidates {
        if kept.len() >= max {
            break;
        }
        if kept
            .iter()
            .all(|k| space.between(k.node, candidate.node) >= candidate.distance)
        {
            kept.push(candidate);
        }
    }
    kept.into_iter().map(|k| k.node).collect()
}
