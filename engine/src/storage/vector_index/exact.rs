//! The exact scan: every matching row's distance to the query, computed
//! over vectors already in memory (a decoded column from the cache, or the
//! vectors a file's graph holds) on all cores, the `k` nearest kept per
//! piece of work and merged.
//!
//! The distances are the SQL functions' own ([`Metric::distance`]), so an
//! exact search returns exactly the rows (ties broken by position) that
//! sorting every row by the SQL expression would.
//!
//! A batch of queries ([`scan_batch`]) is a matrix product instead: the
//! dot products of every query with every row of a run of rows in one
//! GEMM (matrixmultiply's, through ndarray), from which inner products,
//! cosine and L2 distances follow with the rows' and queries' norms. GEMM
//! sums in another order than the SQL functions, so its distances can
//! differ from theirs in the last bits: each query keeps [`candidates`]
//! rows by them, and those are ranked again by the SQL function's own
//! distance — the `k` returned are the ones a single search returns.

use std::sync::Arc;

use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::error::{DataFusionError, Result};
use rayon::prelude::*;
use sluice_functions::vector::distance::Metric;

use ndarray::{Array2, ArrayView2};
use sluice_functions::vector::kernels;

use super::columns::{Rows, VectorColumn};
use super::graph_map;
use super::hnsw::Graph;
use super::ranking::{Best, Hit};

/// Where a file's vectors are read from.
#[derive(Clone)]
pub(super) enum Vectors {
    /// The decoded column.
    Column(Arc<VectorColumn>),
    /// The loaded graph holding the file's vectors, and the file's slot in
    /// it (the graph keeps the vectors as float32): cheaper than decoding
    /// the column when a filter keeps few rows.
    Graph(Arc<Graph>, u32),
}

/// One file to scan exactly.
pub(super) struct FileScan {
    /// Position of the file in the snapshot.
    pub ordinal: usize,
    /// The rows passing the search's filter; `None` without one.
    pub allowed: Option<BooleanBuffer>,
    pub vectors: Vectors,
}

/// A piece of the scan one thread takes.
enum Piece<'a> {
    Rows(&'a Rows),
    Graph(&'a Graph, u32),
}

/// The `k` nearest rows to `query` by `metric` over `files` (NULL vectors
/// skipped), computed on the blocking thread pool.
pub(super) async fn scan(
    files: Vec<FileScan>,
    query: Arc<[f32]>,
    metric: Metric,
    k: usize,
) -> Result<Vec<Hit>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    tokio::task::spawn_blocking(move || scan_now(&files, &query, metric, k))
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))
}

fn scan_now(files: &[FileScan], query: &[f32], metric: Metric, k: usize) -> Vec<Hit> {
    let pieces: Vec<(&FileScan, Piece<'_>)> = files
        .iter()
        .flat_map(|file| -> Vec<(&FileScan, Piece<'_>)> {
            match &file.vectors {
                Vectors::Column(column) => column
                    .runs
                    .iter()
                    .map(|rows| (file, Piece::Rows(rows)))
                    .collect(),
                Vectors::Graph(graph, slot) => vec![(file, Piece::Graph(graph, *slot))],
            }
        })
        .collect();
    pieces
        .par_iter()
        .map(|(file, piece)| {
            let mut best = Best::new(k);
            match piece {
                Piece::Rows(rows) => scan_rows(rows, file, query, metric, &mut best),
                Piece::Graph(graph, slot) => {
                    scan_graph(graph, *slot, file, query, metric, &mut best)
                }
            }
            best
        })
        .reduce(|| Best::new(k), Best::merged)
        .into_hits()
}

fn scan_rows(rows: &Rows, file: &FileScan, query: &[f32], metric: Metric, best: &mut Best) {
    let dimensions = query.len();
    let query_norm = kernels::dot(query, query);
    for (i, vector) in rows.values.chunks_exact(dimensions).enumerate() {
        let position = rows.first + i;
        if file
            .allowed
            .as_ref()
            .is_some_and(|allowed| !allowed.value(position))
            || rows.nulls.as_ref().is_some_and(|nulls| nulls.is_null(i))
        {
            continue;
        }
        let distance = match metric {
            // The SQL function's value, from the row's kept norm.
            Metric::Cosine => {
                kernels::cosine_from_dots(kernels::dot(vector, query), rows.norms[i], query_norm)
            }
            _ => metric.distance(vector, query),
        };
        if best.admits(distance) {
            best.offer(Hit::at(distance, file.ordinal, position as u64));
        }
    }
}

fn scan_graph(
    graph: &Graph,
    slot: u32,
    file: &FileScan,
    query: &[f32],
    metric: Metric,
    best: &mut Best,
) {
    let Some(allowed) = &file.allowed else {
        return;
    };
    for row in allowed.set_indices() {
        // No vector under the key: the row's vector is NULL.
        if let Some(vector) = graph.vector(graph_map::key(slot, row as u64)) {
            let distance = metric.distance(vector, query);
            best.offer(Hit::at(distance, file.ordinal, row as u64));
        }
    }
}

/// Rows ranked by GEMM distance per query before the exact ranking: a row
/// whose distance GEMM rounded differently can move only among rows
/// within a rounding error of it, far fewer than this margin.
fn candidates(k: usize) -> usize {
    k.saturating_add(k.max(16))
}

/// Queries multiplied together: bounds the product block (queries × rows
/// of a run) each thread holds.
const QUERIES_PER_PRODUCT: usize = 256;

/// The `k` nearest rows to each of `queries` (`dimensions` floats each,
/// back to back) by `metric` over `files` (decoded columns by file position,
/// ascending; NULL vectors skipped), on the blocking thread pool: one list
/// of hits per query.
pub(super) async fn scan_batch(
    files: Vec<(usize, Arc<VectorColumn>)>,
    queries: Arc<[f32]>,
    dimensions: usize,
    metric: Metric,
    k: usize,
) -> Result<Vec<Vec<Hit>>> {
    tokio::task::spawn_blocking(move || scan_batch_now(&files, &queries, dimensions, metric, k))
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))
}

fn scan_batch_now(
    files: &[(usize, Arc<VectorColumn>)],
    queries: &[f32],
    dimensions: usize,
    metric: Metric,
    k: usize,
) -> Vec<Vec<Hit>> {
    let count = queries.len() / dimensions.max(1);
    if count == 0 || dimensions == 0 {
        return vec![Vec::new(); count];
    }
    let runs: Vec<(usize, &Rows)> = files
        .iter()
        .flat_map(|(ordinal, column)| column.runs.iter().map(|rows| (*ordinal, rows)))
        .collect();
    let mut found = Vec::with_capacity(count);
    for group in queries.chunks(QUERIES_PER_PRODUCT * dimensions) {
        let best = runs
            .par_iter()
            .map(|(ordinal, rows)| rank_run(*ordinal, rows, group, dimensions, metric, k))
            .reduce(
                || {
                    (0..group.len() / dimensions)
                        .map(|_| Best::new(candidates(k)))
                        .collect()
                },
                |a: Vec<Best>, b: Vec<Best>| {
                    a.into_iter().zip(b).map(|(a, b)| a.merged(b)).collect()
                },
            );
        for (query, best) in group.chunks_exact(dimensions).zip(best) {
            found.push(rerank(best, files, query, metric, k));
        }
    }
    found
}

/// Each query's nearest rows of one run by GEMM distance (exact for L1,
/// which no product gives).
fn rank_run(
    ordinal: usize,
    rows: &Rows,
    queries: &[f32],
    dimensions: usize,
    metric: Metric,
    k: usize,
) -> Vec<Best> {
    let count = queries.len() / dimensions;
    let mut best: Vec<Best> = (0..count).map(|_| Best::new(candidates(k))).collect();
    let n = rows.len(dimensions);
    let skip = |i: usize| rows.nulls.as_ref().is_some_and(|nulls| nulls.is_null(i));
    let (Ok(q), Ok(r)) = (
        ArrayView2::from_shape((count, dimensions), queries),
        ArrayView2::from_shape((n, dimensions), &rows.values[..n * dimensions]),
    ) else {
        return best;
    };
    if metric == Metric::L1 {
        for (i, vector) in rows.values.chunks_exact(dimensions).enumerate() {
            if skip(i) {
                continue;
            }
            for (query, best) in queries.chunks_exact(dimensions).zip(&mut best) {
                let distance = metric.distance(vector, query);
                if best.admits(distance) {
                    best.offer(Hit::at(distance, ordinal, (rows.first + i) as u64));
                }
            }
        }
        return best;
    }
    let mut dots = Array2::<f32>::zeros((count, n));
    ndarray::linalg::general_mat_mul(1.0, &q, &r.t(), 0.0, &mut dots);
    let row_norms = &rows.norms;
    for ((query, dots), best) in queries
        .chunks_exact(dimensions)
        .zip(dots.rows())
        .zip(&mut best)
    {
        let query_norm = kernels::dot(query, query);
        for (i, dot) in dots.iter().enumerate() {
            if skip(i) {
                continue;
            }
            let distance = match metric {
                Metric::InnerProduct => f64::from(*dot),
                Metric::NegativeInnerProduct => -f64::from(*dot),
                Metric::Cosine => {
                    let similarity =
                        f64::from(*dot) / (f64::from(row_norms[i]) * f64::from(query_norm)).sqrt();
                    1.0 - similarity.clamp(-1.0, 1.0)
                }
                _ => (f64::from(row_norms[i]) + f64::from(query_norm) - 2.0 * f64::from(*dot))
                    .max(0.0)
                    .sqrt(),
            };
            if best.admits(distance) {
                best.offer(Hit::at(distance, ordinal, (rows.first + i) as u64));
            }
        }
    }
    best
}

/// The `k` best of a query's candidates by the SQL function's distance.
fn rerank(
    candidates: Best,
    files: &[(usize, Arc<VectorColumn>)],
    query: &[f32],
    metric: Metric,
    k: usize,
) -> Vec<Hit> {
    let mut best = Best::new(k);
    for hit in candidates.into_hits() {
        // `files` is in ordinal order.
        let vector = files
            .binary_search_by_key(&hit.ordinal, |(ordinal, _)| *ordinal)
            .ok()
            .and_then(|at| files[at].1.vector(hit.row as usize));
        if let Some(vector) = vector {
            best.offer(Hit::at(
                metric.distance(vector, query),
                hit.ordinal,
                hit.row,
            ));
        }
    }
    let mut hits = best.into_hits();
    hits.sort();
    hits
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};

    use super::*;

    fn file(ordinal: usize, vectors: &[[f32; 2]], nulls: Option<Vec<bool>>) -> FileScan {
        let values: Vec<f32> = vectors.iter().flatten().copied().collect();
        FileScan {
            ordinal,
            allowed: None,
            vectors: Vectors::Column(Arc::new(VectorColumn {
                dimensions: 2,
                runs: vec![Rows::new(
                    0,
                    ScalarBuffer::from(values),
                    nulls.map(NullBuffer::from),
                    2,
                )],
            })),
        }
    }

    #[test]
    fn finds_the_nearest_across_files_skipping_nulls_and_filtered_rows() {
        let a = file(0, &[[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]], None);
        let mut b = file(
            1,
            &[[1.0, 0.0], [1.0, 0.0], [0.5, 0.5]],
            Some(vec![false, true, true]),
        );
        b.allowed = Some(BooleanBuffer::from(vec![true, false, true]));
        let mut hits = scan_now(&[a, b], &[1.0, 0.0], Metric::L2, 3);
        hits.sort();
        let found: Vec<(usize, u64)> = hits.iter().map(|h| (h.ordinal, h.row)).collect();
        // File 1's row 0 is NULL and its row 1 filtered out.
        assert_eq!(found, vec![(0, 0), (0, 2), (1, 2)]);
    }

    #[test]
    fn equal_distances_go_to_the_earlier_row() {
        let a = file(0, &[[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], None);
        let b = file(1, &[[1.0, 0.0]], None);
        let hits = scan_now(&[b, a], &[1.0, 0.0], Metric::Cosine, 2);
        let mut found: Vec<(usize, u64)> = hits.iter().map(|h| (h.ordinal, h.row)).collect();
        found.sort();
        assert_eq!(found, vec![(0, 1), (0, 2)]);
    }

    #[test]
    fn a_batch_finds_what_each_single_search_finds() {
        let mut seed = 7u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed % 2000) as f32 / 1000.0 - 1.0
        };
        let vectors: Vec<[f32; 2]> = (0..3000).map(|_| [next(), next()]).collect();
        let files = [
            file(0, &vectors[..1700], None),
            file(1, &vectors[1700..], None),
        ];
        let queries: Vec<f32> = (0..40).map(|_| next()).collect();
        let columns: Vec<(usize, Arc<VectorColumn>)> = files
            .iter()
            .map(|f| match &f.vectors {
                Vectors::Column(c) => (f.ordinal, Arc::clone(c)),
                Vectors::Graph(..) => unreachable!(),
            })
            .collect();
        for metric in Metric::ALL {
            let batch = scan_batch_now(&columns, &queries, 2, metric, 5);
            assert_eq!(batch.len(), 20);
            for (query, found) in queries.chunks_exact(2).zip(batch) {
                let mut single = scan_now(&files, query, metric, 5);
                single.sort();
                let key = |h: &Hit| (h.ordinal, h.row);
                assert_eq!(
                    found.iter().map(key).collect::<Vec<_>>(),
                    single.iter().map(key).collect::<Vec<_>>(),
                    "{metric:?}"
                );
            }
        }
    }
}
