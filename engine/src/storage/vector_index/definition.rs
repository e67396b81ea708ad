//! What a vector index is, as the table's manifest records it, and the
//! session setting its searches read.

use serde::{Deserialize, Serialize};
use sluice_functions::vector::distance::Metric;

use super::graph_map::GraphMap;

/// The distance an index orders by, named as in `CREATE INDEX … WITH
/// (metric = …)` or by pgvector's operator classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexMetric {
    /// 1 − cosine similarity (`<=>`, `vector_cosine_ops`).
    Cosine,
    /// Euclidean distance (`<->`, `vector_l2_ops`).
    L2,
    /// Negative inner product (`<#>`, `vector_ip_ops`).
    Ip,
}

impl IndexMetric {
    /// The metric a name or operator class means.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "cosine" | "cos" | "vector_cosine_ops" => Some(Self::Cosine),
            "l2" | "euclidean" | "vector_l2_ops" => Some(Self::L2),
            "ip" | "inner_product" | "vector_ip_ops" => Some(Self::Ip),
            _ => None,
        }
    }

    /// The name `CREATE INDEX` accepts and EXPLAIN shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::L2 => "l2",
            Self::Ip => "ip",
        }
    }

    /// pgvector's operator class for this metric, as `pg_get_indexdef`
    /// shows it.
    pub fn operator_class(self) -> &'static str {
        match self {
            Self::Cosine => "vector_cosine_ops",
            Self::L2 => "vector_l2_ops",
            Self::Ip => "vector_ip_ops",
        }
    }

    /// The SQL distance whose order this index serves.
    pub fn sql_metric(self) -> Metric {
        match self {
            Self::Cosine => Metric::Cosine,
            Self::L2 => Metric::L2,
            Self::Ip => Metric::NegativeInnerProduct,
        }
    }

    /// A distance a graph reports, as the SQL function computes it
    /// (graphs keep squared L2, and `1 − a·b` for the inner product).
    pub(super) fn sql_distance(self, graph_distance: f32) -> f64 {
        let d = f64::from(graph_distance);
        match self {
            Self::Cosine => d,
            Self::L2 => d.max(0.0).sqrt(),
            Self::Ip => d - 1.0,
        }
    }
}

/// An HNSW index on one vector column of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorIndex {
    /// The index's name, unique in its schema.
    pub name: String,
    /// The indexed column.
    pub column: String,
    /// The distance it orders by.
    pub metric: IndexMetric,
    /// Graph connectivity (HNSW's M).
    pub m: usize,
    /// Candidates considered while building (HNSW's ef_construction).
    pub ef_construction: usize,
    /// The graphs and the data files each covers.
    #[serde(flatten)]
    pub graphs: GraphMap,
}

/// Defaults and bounds of the index options (pgvector's).
pub mod limits {
    use std::ops::RangeInclusive;

    /// Graph connectivity by default.
    pub const DEFAULT_M: usize = 16;
    /// Build breadth by default.
    pub const DEFAULT_EF_CONSTRUCTION: usize = 64;
    /// Walk breadth by default (`SET vector.ef_search`).
    pub const DEFAULT_EF_SEARCH: usize = 64;
    /// Accepted connectivity.
    pub const M: RangeInclusive<usize> = 2..=100;
    /// Accepted build breadth.
    pub const EF_CONSTRUCTION: RangeInclusive<usize> = 4..=1000;
    /// Accepted walk breadth.
    pub const EF_SEARCH: RangeInclusive<usize> = 1..=1000;
}

/// The session's `vector.ef_search`, carried as an extension of
/// DataFusion's session config so that scans planned for the session read
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorSearchSettings {
    /// Candidates a graph walk keeps (at least `k`).
    pub ef_search: usize,
}

impl Default for VectorSearchSettings {
    fn default() -> Self {
        Self {
            ef_search: limits::DEFAULT_EF_SEARCH,
        }
    }
}
