//! Vector search over durable tables: HNSW indexes (`CREATE INDEX … USING
//! hnsw`) and the exact and indexed top-k that serves every search.
//!
//! # Graphs over groups of data files
//! A table's data files are immutable, so an index is too: the files one
//! write adds (each of at least [`MIN_INDEXED_ROWS`] rows) get one graph
//! together, up to 2 GiB of vectors, keyed by the file's slot in the graph
//! and the row's position in the file ([`graph_map`]), written under
//! `indexes/` and listed in the table's manifest beside the files
//! ([`VectorIndex::graphs`]). Every write that adds or replaces files
//! (INSERT, COPY, DELETE, UPDATE, compaction) builds the graphs of its new
//! files before it commits, in the same manifest version — so a crash
//! never leaves an index that disagrees with the data. A replaced file's
//! keys stay in its graph and walks skip them; a graph goes when its last
//! file does, and its files are regrouped once fewer than half its rows
//! are live. This is how Lucene and Lance keep segment indexes; a search
//! walks each graph and merges. Smaller files (a run of small INSERTs
//! before compaction merges them) are searched exactly.
//!
//! The graphs are Sluice's own HNSW ([`hnsw`]: built in parallel, walked
//! with the filter applied inside the walk, serialised to one object
//! each, loaded lazily into a bounded process-wide [`cache`]); `hnsw`'s
//! comment says why not usearch, measured.
//!
//! # Search
//! [`search`] runs every vector top-k over a table snapshot
//! ([`VectorTopKExec`]), indexed or not: per file, the filter is
//! evaluated first; without an index for the query's distance, a file is
//! scanned exactly ([`exact`]: every matching row's distance, on all
//! cores, over the file's vector column decoded once and kept in the
//! bounded [`columns`] cache). With one, a selective filter (or a small
//! file, or a file without a graph) is answered by an exact scan of the
//! matching rows, otherwise the predicate is applied inside the graph walk
//! and a walk that returns fewer than `k` of the matching rows falls back
//! to the exact scan — so a filtered search returns `k` rows whenever `k`
//! rows match. Ties are broken by position ([`ranking`]). The planner's
//! rule (`rewrite::vector_index_rule`) chooses this operator for
//! `ORDER BY <distance>(v, constant) LIMIT k` over a durable table; a
//! prepared statement's `ORDER BY v <=> $1 LIMIT k` keeps one plan whose
//! search binds each execution's vector and ranks its rows itself. A
//! batch of queries (`LATERAL VECTOR_SEARCH`) is searched exactly in one
//! pass ([`batch`], chosen by `rewrite::vector_batch_rule`).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result;

mod batch;
mod build;
mod cache;
mod columns;
mod definition;
mod exact;
mod graph_map;
mod hit_rows;
mod hnsw;
mod ranking;
mod search;

pub(super) use batch::plan_batch;
pub use batch::{BatchRequest, VectorBatchTopKExec};
pub(super) use build::{
    adopt, build_missing, commit_with_graphs, cover, delete_graphs, dropped_graphs, prebuild,
    sweep_unreferenced,
};
pub use definition::{IndexMetric, VectorIndex, VectorSearchSettings, limits};
pub use graph_map::{GraphMap, GraphPart};
pub(super) use search::plan_search;
pub use search::{SearchRequest, VectorTopKExec, query_vector};

/// Data files with fewer rows get no graph: an exact scan of them costs
/// less than walking a graph would save.
pub const MIN_INDEXED_ROWS: u64 = 1000;

/// The schema a search operator returns and the positions of `schema`'s
/// columns in it: the `projection` DataFusion pushed into the scan, or
/// every column.
fn projected(
    schema: &SchemaRef,
    projection: Option<&Vec<usize>>,
) -> Result<(SchemaRef, Vec<usize>)> {
    match projection {
        Some(columns) => Ok((Arc::new(schema.project(columns)?), columns.clone())),
        None => Ok((Arc::clone(schema), (0..schema.fields().len()).collect())),
    }
}
