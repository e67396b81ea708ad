//! The stored vectors of a graph and the distances the walk compares.
//!
//! Distances follow the graph's metric as the index reports them: cosine
//! `1 − cos`, squared L2, and `1 − a·b` for the inner product (callers turn
//! them into the SQL function's value, `IndexMetric::sql_distance`). For
//! cosine the vectors are kept as written, with their inverse norms beside
//! them: a walk then costs one inner product per distance (the query is
//! made unit length once), and a hit's vector reads back exactly as the
//! table holds it.

use super::super::definition::IndexMetric;
use super::kernels::{self, Form, Kernel, Kernel4};

/// Vectors of one dimension, by node, and their distance kernels.
pub(super) struct Space {
    pub(super) dimensions: usize,
    pub(super) metric: IndexMetric,
    /// Node `n`'s vector is `vectors[n * dimensions..][..dimensions]`.
    pub(super) vectors: Vec<f32>,
    /// For cosine, `1 / |v|` per node (0 for a zero vector); else empty.
    pub(super) inverse_norms: Vec<f32>,
    kernel: Kernel,
    kernel4: Kernel4,
}

impl Space {
    pub(super) fn new(dimensions: usize, metric: IndexMetric) -> Self {
        let (kernel, kernel4) = kernels::for_form(form(metric));
        Self {
            dimensions,
            metric,
            vectors: Vec::new(),
            inverse_norms: Vec::new(),
            kernel,
            kernel4,
        }
    }

    /// Nodes stored.
    pub(super) fn len(&self) -> usize {
        self.vectors.len().checked_div(self.dimensions).unwrap_or(0)
    }

    /// Appends a node's vector (of the space's dimension).
    pub(super) fn push(&mut self, vector: &[f32]) {
        self.vectors.extend_from_slice(vector);
        if self.metric == IndexMetric::Cosine {
            self.inverse_norms
                .push(inverse_norm((self.kernel)(vector, vector)));
        }
    }

    /// The norms of every vector, computed again (a graph read from bytes
    /// stores its vectors only).
    pub(super) fn compute_norms(&mut self) {
        if self.metric == IndexMetric::Cosine {
            self.inverse_norms = self
                .vectors
                .chunks_exact(self.dimensions.max(1))
                .map(|v| inverse_norm((self.kernel)(v, v)))
                .collect();
        }
    }

    #[inline]
    pub(super) fn vector(&self, node: u32) -> &[f32] {
        let start = node as usize * self.dimensions;
        &self.vectors[start..start + self.dimensions]
    }

    /// The query as the walk compares it: unit length for cosine.
    pub(super) fn prepare(&self, query: &[f32]) -> Vec<f32> {
        match self.metric {
            IndexMetric::Cosine => {
                let scale = inverse_norm((self.kernel)(query, query));
                query.iter().map(|x| x * scale).collect()
            }
            IndexMetric::L2 | IndexMetric::Ip => query.to_vec(),
        }
    }

    /// The distance of a prepared query to `node`.
    #[inline]
    pub(super) fn to_node(&self, query: &[f32], node: u32) -> f32 {
        self.finish((self.kernel)(query, self.vector(node)), node)
    }

    /// The distances of a prepared query to four nodes.
    #[inline]
    pub(super) fn to_nodes(&self, query: &[f32], nodes: [u32; 4]) -> [f32; 4] {
        let raw = (self.kernel4)(query, nodes.map(|n| self.vector(n)));
        [0, 1, 2, 3].map(|i| self.finish(raw[i], nodes[i]))
    }

    /// The distance between two stored nodes.
    pub(super) fn between(&self, a: u32, b: u32) -> f32 {
        let raw = (self.kernel)(self.vector(a), self.vector(b));
        match self.metric {
            IndexMetric::Cosine => {
                1.0 - raw * self.inverse_norms[a as usize] * self.inverse_norms[b as usize]
            }
            IndexMetric::L2 => raw,
            IndexMetric::Ip => 1.0 - raw,
        }
    }

    #[inline]
    fn finish(&self, raw: f32, node: u32) -> f32 {
        match self.metric {
            IndexMetric::Cosine => 1.0 - raw * self.inverse_norms[node as usize],
            IndexMetric::L2 => raw,
            IndexMetric::Ip => 1.0 - raw,
        }
    }
}

fn form(metric: IndexMetric) -> Form {
    match metric {
        IndexMetric::L2 => Form::SquaredL2,
        IndexMetric::Cosine | IndexMetric::Ip => Form::Dot,
    }
}

/// `1 / sqrt(squared_norm)`, or 0 for a zero (or non-finite) vector, whose
/// cosine distance to anything is then 1, as the SQL function's.
fn inverse_norm(squared_norm: f32) -> f32 {
    let norm = squared_norm.sqrt();
    if norm > 0.0 && norm.is_finite() {
        1.0 / norm
    } else {
        0.0
    }
}
