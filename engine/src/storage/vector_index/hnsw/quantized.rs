//! Eight-bit codes of a graph's vectors, which walks (a build's and a
//! search's) read, and the distances a query computes from them.
//!
//! # Why walks read codes
//! A walk's time is spent waiting for vectors to arrive from memory: each
//! visited node's vector is a random read (1,536 bytes at 384 floats).
//! Codes of one byte per dimension are a quarter of that, so a walk reads
//! a quarter of the memory; the nodes it ends with are then ranked again
//! on their float32 vectors (a search's rows and distances, a build's
//! choice of links), so what a walk returns is exact. This is the scalar quantiser
//! of FAISS's `IndexHNSWSQ` and of Qdrant's and usearch's `i8` indexes,
//! with their re-scoring.
//!
//! Each dimension gets its own range (its smallest and largest value over
//! the graph), split into 255 steps. Cosine graphs code the unit vectors,
//! so a coded cosine needs no per-node norm.

use super::super::definition::IndexMetric;
use super::code_kernels::{self, CodeKernel, CodeKernel4};
use super::kernels::prefetch;
use super::space::Space;
use super::walk::Distances;

/// The largest code.
const TOP: f32 = 255.0;

/// A graph's vectors as one byte per dimension.
pub(super) struct Codes {
    dimensions: usize,
    metric: IndexMetric,
    /// Per dimension, the value code 0 stands for.
    low: Vec<f32>,
    /// Per dimension, the value between one code and the next.
    step: Vec<f32>,
    /// Node `n`'s codes are `codes[n * dimensions..][..dimensions]`.
    codes: Vec<u8>,
    /// For L2, each node's coded vector's squared norm; else empty.
    squared_norms: Vec<f32>,
    kernel: CodeKernel,
    kernel4: CodeKernel4,
}

impl Codes {
    /// The codes of every vector in `space`.
    pub(super) fn encode(space: &Space) -> Self {
        let dimensions = space.dimensions.max(1);
        let metric = space.metric;
        let nodes = space.len();
        // The vectors as coded: unit length for cosine.
        let coded = |node: u32| -> Vec<f32> {
            let vector = space.vector(node);
            match metric {
                IndexMetric::Cosine => {
                    let scale = space.inverse_norms[node as usize];
                    vector.iter().map(|x| x * scale).collect()
                }
                IndexMetric::L2 | IndexMetric::Ip => vector.to_vec(),
            }
        };
        let mut low = vec![f32::INFINITY; dimensions];
        let mut high = vec![f32::NEG_INFINITY; dimensions];
        for node in 0..nodes as u32 {
            for (i, x) in coded(node).into_iter().enumerate() {
                // A non-finite value would stretch its dimension's range
                // to nothing useful; it gets code 0 and its row's exact
                // distance comes from the re-ranking.
                if x.is_finite() {
                    low[i] = low[i].min(x);
                    high[i] = high[i].max(x);
                }
            }
        }
        let step: Vec<f32> = low
            .iter_mut()
            .zip(&high)
            .map(|(low, &high)| {
                if *low > high {
                    *low = 0.0;
                }
                let step = (high - *low) / TOP;
                if step.is_finite() && step > 0.0 {
                    step
                } else {
                    0.0
                }
            })
            .collect();
        let mut codes = Vec::with_capacity(nodes * dimensions);
        for node in 0..nodes as u32 {
            codes.extend(coded(node).into_iter().zip(low.iter().zip(&step)).map(
                |(x, (&low, &step))| {
                    if step > 0.0 && x.is_finite() {
                        ((x - low) / step).round().clamp(0.0, TOP) as u8
                    } else {
                        0
                    }
                },
            ));
        }
        let squared_norms = if metric == IndexMetric::L2 {
            codes
                .chunks_exact(dimensions)
                .map(|row| {
                    row.iter()
                        .zip(low.iter().zip(&step))
                        .map(|(&c, (&low, &step))| {
                            let x = low + step * f32::from(c);
                            x * x
                        })
                        .sum()
                })
                .collect()
        } else {
            Vec::new()
        };
        let (kernel, kernel4) = code_kernels::fastest();
        Self {
            dimensions,
            metric,
            low,
            step,
            codes,
            squared_norms,
            kernel,
            kernel4,
        }
    }

    #[inline]
    fn node(&self, node: u32) -> &[u8] {
        let start = node as usize * self.dimensions;
        &self.codes[start..start + self.dimensions]
    }
}

/// A prepared query's distances to coded nodes: `x ≈ low + step·c` turns
/// each metric's distance into one weighted sum of the codes, `Σ wᵢ·cᵢ`,
/// plus constants.
pub(super) struct CodedDistances<'a> {
    codes: &'a Codes,
    /// `qᵢ·stepᵢ`.
    weights: Vec<f32>,
    /// `q·low`, and for L2 `|q|²` less twice that.
    offset: f32,
}

impl<'a> CodedDistances<'a> {
    /// `query`, prepared by the graph's [`Space::prepare`], against
    /// `codes`.
    pub(super) fn new(codes: &'a Codes, query: &[f32]) -> Self {
        let weights = query.iter().zip(&codes.step).map(|(q, s)| q * s).collect();
        let dot_low: f32 = query.iter().zip(&codes.low).map(|(q, l)| q * l).sum();
        let offset = match codes.metric {
            IndexMetric::L2 => query.iter().map(|q| q * q).sum::<f32>() - 2.0 * dot_low,
            IndexMetric::Cosine | IndexMetric::Ip => dot_low,
        };
        Self {
            codes,
            weights,
            offset,
        }
    }

    /// The distance from the weighted sum of `node`'s codes.
    #[inline]
    fn finish(&self, sum: f32, node: u32) -> f32 {
        match self.codes.metric {
            // |q − x|² = |q|² − 2·q·x + |x|².
            IndexMetric::L2 => self.offset - 2.0 * sum + self.codes.squared_norms[node as usize],
            IndexMetric::Cosine | IndexMetric::Ip => 1.0 - (self.offset + sum),
        }
    }
}

impl Distances for CodedDistances<'_> {
    fn nodes(&self) -> usize {
        self.codes.codes.len() / self.codes.dimensions
    }

    #[inline]
    fn one(&self, node: u32) -> f32 {
        self.finish(
            (self.codes.kernel)(&self.weights, self.codes.node(node)),
            node,
        )
    }

    #[inline]
    fn four(&self, nodes: [u32; 4]) -> [f32; 4] {
        let sums = (self.codes.kernel4)(&self.weights, nodes.map(|n| self.codes.node(n)));
        [0, 1, 2, 3].map(|i| self.finish(sums[i], nodes[i]))
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        prefetch(self.codes.node(node));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::vector_index::hnsw::walk::FloatDistances;

    #[test]
    fn coded_distances_are_close_to_the_exact_ones_for_every_metric() {
        let dimensions = 24;
        let rows: Vec<Vec<f32>> = (0..200)
            .map(|r| {
                (0..dimensions)
                    .map(|i| ((r * 31 + i * 7) as f32 * 0.13).sin() * (1.0 + i as f32 / 8.0))
                    .collect()
            })
            .collect();
        let query: Vec<f32> = (0..dimensions).map(|i| (i as f32 * 0.29).cos()).collect();
        for metric in [IndexMetric::Cosine, IndexMetric::L2, IndexMetric::Ip] {
            let mut space = Space::new(dimensions, metric);
            rows.iter().for_each(|row| space.push(row));
            let codes = Codes::encode(&space);
            let prepared = space.prepare(&query);
            let exact = FloatDistances {
                space: &space,
                query: &prepared,
            };
            let coded = CodedDistances::new(&codes, &prepared);
            let scale = (0..200).map(|n| exact.one(n).abs()).fold(1.0f32, f32::max);
            for node in 0..200u32 {
                let error = (coded.one(node) - exact.one(node)).abs() / scale;
                assert!(
                    error < 0.01,
                    "{metric:?} node {node}: relative error {error}"
                );
            }
            let four = coded.four([3, 1, 4, 1]);
            for (distance, node) in four.into_iter().zip([3, 1, 4, 1]) {
                assert!((distance - coded.one(node)).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn constant_and_non_finite_dimensions_code_without_panicking() {
        let mut space = Space::new(3, IndexMetric::L2);
        space.push(&[1.0, f32::NAN, 2.0]);
        space.push(&[1.0, f32::INFINITY, 3.0]);
        let codes = Codes::encode(&space);
        assert_eq!(codes.step[0], 0.0);
        assert_eq!(codes.node(0)[1], 0);
        let coded = CodedDistances::new(&codes, &[1.0, 0.0, 2.0]);
        assert!(coded.one(0) < coded.one(1));
    }
}
