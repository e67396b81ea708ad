//! HNSW vector indexes on durable tables (`CREATE INDEX … USING hnsw`).
//!
//! # One graph per data file
//! A table's data files are immutable, so an index is too: each data file
//! of at least [`MIN_INDEXED_ROWS`] rows gets its own graph, keyed by row
//! position in the file, written under `indexes/` and listed in the table's
//! manifest beside the file ([`VectorIndex::files`]). Every write that adds
//! or replaces files (INSERT, COPY, DELETE, UPDATE, compaction) builds the
//! graphs of its new files before it commits, in the same manifest
//! version — so a crash never leaves an index that disagrees with the data,
//! and a file's graph goes when the file does. This is how Lucene and
//! Lance keep segment indexes; a search walks each file's graph and
//! merges. Smaller files (a run of small INSERTs before compaction merges
//! them) are searched exactly.
//!
//! The graphs are [usearch](https://github.com/unum-cloud/usearch) indexes
//! (built in parallel, serialised to one object each, loaded lazily into a
//! bounded process-wide [`cache`]); no Rust crate offers a comparable HNSW
//! with filtered search and buffer (de)serialisation.
//!
//! # Search
//! [`search`] runs a top-k over a table snapshot ([`IndexSearchExec`]):
//! per file, the filter is evaluated first; a selective filter (or a small
//! file, or a file without a graph) is answered by an exact scan of the
//! matching rows, otherwise the predicate is applied inside the graph walk
//! and a walk that returns fewer than `k` of the matching rows falls back
//! to the exact scan — so a filtered search returns `k` rows whenever `k`
//! rows match. The planner's rule (`rewrite::vector_index_rule`)
//! chooses this operator for `ORDER BY <distance>(v, constant) LIMIT k`
//! over an indexed column.

mod build;
mod cache;
mod definition;
mod search;

pub(super) use build::{
    adopt, build_missing, commit_with_graphs, cover, delete_graphs, dropped_graphs, prebuild,
    sweep_unreferenced,
};
pub use definition::{IndexMetric, VectorIndex, VectorSearchSettings, limits};
pub use search::{IndexSearchExec, SearchRequest};
pub(super) use search::{TableFiles, plan_search};

/// Data files with fewer rows get no graph: an exact scan of them costs
/// less than walking a graph would save.
pub const MIN_INDEXED_ROWS: u64 = 1000;
