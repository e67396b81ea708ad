//! The top-k operator over an indexed table: per data file, a graph walk
//! (filtered inside the walk) or an exact scan of the matching rows, the
//! hits merged, then only the chosen rows read.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::{concat_batches, prep_null_mask_filter};
use datafusion::arrow::datatypes::{Float32Type, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{
    Boundedness, EmissionType, apply_expression_roots,
};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use object_store::ObjectStore;
use object_store::path::Path;

use super::super::files::{LiveFile, Snapshot, read_rows, resolve};
use super::cache;
use super::definition::limits::DEFAULT_EF_SEARCH;
use super::definition::{IndexMetric, VectorIndex, VectorSearchSettings};

/// Below this share of a file's rows passing the filter, the matching
/// rows are scanned exactly: a walk filtered that hard visits most of the
/// graph to find `k` of them (and HNSW's recall collapses), while the
/// exact scan reads only the matching rows' vectors.
const MIN_GRAPH_SELECTIVITY: f64 = 0.05;
/// At most this many matching rows in a file are scanned exactly whatever
/// their share: cheaper than any walk.
const EXACT_MATCHING_ROWS: u64 = 1024;

/// A top-k search the planner's rule hands a table: the `k` rows nearest
/// to `query` by `metric` on the index's column, among those `filter`
/// keeps.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The index to walk.
    pub index: String,
    /// Its column.
    pub column: String,
    /// Its metric (the distance the query orders by).
    pub metric: IndexMetric,
    /// The query vector.
    pub query: Vec<f32>,
    /// Rows wanted.
    pub k: usize,
    /// A filter on the table's columns (unqualified names); NULL drops.
    pub filter: Option<Expr>,
}

/// Why a file is scanned exactly rather than walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ExactReason {
    /// Fewer rows than [`super::MIN_INDEXED_ROWS`]: no graph.
    SmallFile,
    /// The filter keeps too few of its rows.
    SelectiveFilter,
    /// The index was dropped after the query was planned.
    IndexGone,
}

impl ExactReason {
    fn describe(self) -> &'static str {
        match self {
            Self::SmallFile => "too small for a graph",
            Self::SelectiveFilter => "selective filter",
            Self::IndexGone => "index dropped",
        }
    }
}

/// How one data file is searched.
#[derive(Debug, Clone)]
enum Route {
    /// No row passes the filter.
    Skip,
    /// Walk the graph at this path (relative to the table).
    Graph(String),
    /// Scan the matching rows' vectors.
    Exact(ExactReason),
}

/// One data file of the search, with the rows its filter keeps.
#[derive(Debug)]
struct FileSearch {
    /// Position of the file in the snapshot (ties go to earlier files).
    ordinal: usize,
    route: Route,
    /// The rows passing the filter; `None` without a filter.
    allowed: Option<BooleanBuffer>,
    matching: u64,
    /// The file's graph, if it has one (also when the route is an exact
    /// scan: the graph holds the vectors in memory).
    graph: Option<String>,
}

/// Where the table's pieces are.
#[derive(Debug, Clone)]
pub(in crate::storage) struct TableFiles {
    pub store: Arc<dyn ObjectStore>,
    pub dir: Path,
    pub schema: SchemaRef,
}

/// Plans `request` over `snapshot` with `index` (its state in the same
/// version; `None` once dropped): evaluates the filter on every file now,
/// so that the route of each — graph walk or exact scan, by the share of
/// rows passing — is chosen here and shown by EXPLAIN.
pub(in crate::storage) async fn plan_search(
    table: TableFiles,
    snapshot: Arc<Snapshot>,
    index: Option<VectorIndex>,
    request: &SearchRequest,
    projection: Option<&Vec<usize>>,
    state: &dyn Session,
) -> Result<Arc<dyn ExecutionPlan>> {
    let vector_column = table.schema.index_of(&request.column)?;
    // No search returns more rows than the table has: a LIMIT of
    // 9223372036854775807 must not size heaps and graph walks by it.
    let rows: u64 = snapshot.files.iter().map(|live| live.file.rows).sum();
    let k = request.k.min(usize::try_from(rows).unwrap_or(usize::MAX));
    let ef_search = state
        .config()
        .get_extension::<VectorSearchSettings>()
        .map_or(DEFAULT_EF_SEARCH, |s| s.ef_search)
        .max(k);
    let filter = match &request.filter {
        Some(filter) => {
            let mut columns: Vec<usize> = filter
                .column_refs()
                .iter()
                .map(|c| table.schema.index_of(&c.name))
                .collect::<std::result::Result<_, _>>()?;
            columns.sort_unstable();
            columns.dedup();
            let projected = DFSchema::try_from(table.schema.project(&columns)?)?;
            Some((
                columns,
                state.create_physical_expr(filter.clone(), &projected)?,
            ))
        }
        None => None,
    };
    let mut files = Vec::with_capacity(snapshot.files.len());
    for (ordinal, live) in snapshot.files.iter().enumerate() {
        let allowed = match &filter {
            Some((columns, predicate)) => {
                Some(passing_rows(&table, live, columns, predicate).await?)
            }
            None => None,
        };
        let matching = allowed
            .as_ref()
            .map_or(live.file.rows, |a| a.count_set_bits() as u64);
        let graph = index
            .as_ref()
            .and_then(|index| index.files.get(&live.file.path));
        let route = if matching == 0 {
            Route::Skip
        } else if index.is_none() {
            Route::Exact(ExactReason::IndexGone)
        } else if let Some(graph) = graph {
            let selective = allowed.is_some()
                && (matching <= EXACT_MATCHING_ROWS
                    || (matching as f64) < MIN_GRAPH_SELECTIVITY * live.file.rows as f64);
            if selective {
                Route::Exact(ExactReason::SelectiveFilter)
            } else {
                Route::Graph(graph.clone())
            }
        } else {
            Route::Exact(ExactReason::SmallFile)
        };
        files.push(FileSearch {
            ordinal,
            route,
            allowed,
            matching,
            graph: graph.cloned(),
        });
    }
    let output_schema = match projection {
        Some(columns) => Arc::new(table.schema.project(columns)?),
        None => Arc::clone(&table.schema),
    };
    let projection = projection
        .cloned()
        .unwrap_or_else(|| (0..table.schema.fields().len()).collect());
    Ok(Arc::new(IndexSearchExec {
        properties: Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&output_schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        )),
        search: Arc::new(Search {
            table,
            snapshot,
            files,
            index_name: request.index.clone(),
            metric: request.metric,
            vector_column,
            query: request.query.clone(),
            k,
            ef_search,
            filter: filter.map(|(_, predicate)| predicate),
            projection,
            output_schema,
        }),
        metrics: ExecutionPlanMetricsSet::new(),
    }))
}

/// The rows of `live` that `predicate` (over `columns`) keeps.
async fn passing_rows(
    table: &TableFiles,
    live: &LiveFile,
    columns: &[usize],
    predicate: &Arc<dyn PhysicalExpr>,
) -> Result<BooleanBuffer> {
    let batches = read_rows(
        &table.store,
        &live.location,
        live.file.size,
        &table.schema,
        columns,
        None,
    )
    .await?;
    let mut passing = Vec::with_capacity(batches.len());
    for batch in &batches {
        let result = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
        let result = result.as_boolean_opt().ok_or_else(|| {
            DataFusionError::Plan("a vector search filter must be boolean".into())
        })?;
        // NULL is not a match.
        passing.push(if result.null_count() > 0 {
            prep_null_mask_filter(result)
        } else {
            result.clone()
        });
    }
    let arrays: Vec<&dyn Array> = passing.iter().map(|a| a as &dyn Array).collect();
    let all = datafusion::arrow::compute::concat(&arrays)?;
    Ok(all.as_boolean().values().clone())
}

/// Everything a run of the search needs.
#[derive(Debug)]
struct Search {
    table: TableFiles,
    /// Holds the files (and so their graphs' meaning) until the search ends.
    snapshot: Arc<Snapshot>,
    files: Vec<FileSearch>,
    index_name: String,
    metric: IndexMetric,
    vector_column: usize,
    query: Vec<f32>,
    k: usize,
    ef_search: usize,
    filter: Option<Arc<dyn PhysicalExpr>>,
    projection: Vec<usize>,
    output_schema: SchemaRef,
}

/// The operator: reads the `k` (or fewer, when fewer rows match) rows
/// nearest to the query; the plan above it computes their distance and
/// orders them.
#[derive(Debug)]
pub struct IndexSearchExec {
    properties: Arc<PlanProperties>,
    search: Arc<Search>,
    metrics: ExecutionPlanMetricsSet,
}

impl DisplayAs for IndexSearchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let search = &self.search;
        write!(
            f,
            "IndexSearchExec: index={} (hnsw, {}), k={}, ef_search={}",
            search.index_name,
            search.metric.name(),
            search.k,
            search.ef_search
        )?;
        if let Some(filter) = &search.filter {
            let rows: u64 = search
                .files
                .iter()
                .map(|f| search.snapshot.files[f.ordinal].file.rows)
                .sum();
            let matching: u64 = search.files.iter().map(|f| f.matching).sum();
            let share = if rows == 0 {
                0.0
            } else {
                100.0 * matching as f64 / rows as f64
            };
            write!(f, ", filter={filter} (matches {share:.1}% of rows)")?;
        }
        let walked = search
            .files
            .iter()
            .filter(|f| matches!(f.route, Route::Graph(_)))
            .count();
        let mut exact: BTreeMap<ExactReason, usize> = BTreeMap::new();
        for file in &search.files {
            if let Route::Exact(reason) = file.route {
                *exact.entry(reason).or_default() += 1;
            }
        }
        write!(f, ", path=[graph walk: {walked} file(s)")?;
        for (reason, count) in exact {
            write!(f, ", exact scan: {count} file(s) ({})", reason.describe())?;
        }
        write!(f, "]")
    }
}

impl ExecutionPlan for IndexSearchExec {
    fn name(&self) -> &str {
        "IndexSearchExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        apply_expression_roots(self.search.filter.iter(), f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "IndexSearchExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "IndexSearchExec has one partition, not {}",
                partition + 1
            )));
        }
        let search = Arc::clone(&self.search);
        let counters = Counters {
            walks: MetricBuilder::new(&self.metrics).counter("graph_walks", 0),
            exact: MetricBuilder::new(&self.metrics).counter("exact_scans", 0),
            fallbacks: MetricBuilder::new(&self.metrics).counter("short_walk_fallbacks", 0),
            output_rows: MetricBuilder::new(&self.metrics).output_rows(0),
        };
        let rows = async move { search.run(&counters).await };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.search.output_schema),
            futures::stream::once(rows),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

struct Counters {
    walks: Count,
    exact: Count,
    fallbacks: Count,
    output_rows: Count,
}

/// A candidate row: its distance, then its file and row position (which
/// break ties, so results are reproducible).
#[derive(Debug, Clone, Copy)]
struct Hit {
    distance: f64,
    ordinal: usize,
    row: u64,
}

impl Hit {
    fn cmp_key(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.ordinal.cmp(&other.ordinal))
            .then(self.row.cmp(&other.row))
    }
}

impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp_key(other) == Ordering::Equal
    }
}
impl Eq for Hit {}
impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_key(other)
    }
}

/// The `k` best hits seen so far (a max-heap on distance).
struct Best {
    k: usize,
    heap: BinaryHeap<Hit>,
}

impl Best {
    fn offer(&mut self, hit: Hit) {
        if self.heap.len() < self.k {
            self.heap.push(hit);
        } else if self.heap.peek().is_some_and(|worst| hit < *worst) {
            self.heap.pop();
            self.heap.push(hit);
        }
    }
}

impl Search {
    async fn run(&self, counters: &Counters) -> Result<RecordBatch> {
        let mut best = Best {
            k: self.k,
            heap: BinaryHeap::with_capacity(self.k + 1),
        };
        for file in &self.files {
            match &file.route {
                Route::Skip => {}
                Route::Graph(graph) => match self.walk(file, graph).await? {
                    Some(hits) => {
                        counters.walks.add(1);
                        hits.into_iter().for_each(|h| best.offer(h));
                    }
                    None => {
                        counters.fallbacks.add(1);
                        self.scan_exactly(file, &mut best).await?;
                    }
                },
                Route::Exact(_) => {
                    counters.exact.add(1);
                    self.scan_exactly(file, &mut best).await?;
                }
            }
        }
        let batch = self.read_hits(best.heap.into_vec()).await?;
        counters.output_rows.add(batch.num_rows());
        Ok(batch)
    }

    /// The file's hits by its graph; `None` when the walk cannot be
    /// trusted to be complete (it returned fewer rows than match, or the
    /// graph is gone): the caller scans exactly.
    async fn walk(&self, file: &FileSearch, graph: &str) -> Result<Option<Vec<Hit>>> {
        let location = resolve(&self.table.dir, graph);
        let loaded = match cache::load(&self.table.store, &location).await {
            Ok(loaded) => loaded,
            Err(e) => {
                log::warn!("vector index graph {location} unreadable ({e}); scanning exactly");
                cache::forget(&location);
                return Ok(None);
            }
        };
        if loaded.dimensions() != self.query.len() {
            return Err(DataFusionError::Execution(format!(
                "different vector dimensions {} and {}",
                loaded.dimensions(),
                self.query.len()
            )));
        }
        let matches = match &file.allowed {
            None => loaded.with_ef_search(self.ef_search, |g| g.search(&self.query, self.k)),
            Some(allowed) => loaded.with_ef_search(self.ef_search, |g| {
                g.filtered_search(&self.query, self.k, |key| {
                    usize::try_from(key).is_ok_and(|row| row < allowed.len() && allowed.value(row))
                })
            }),
        }
        .map_err(super::definition::usearch_error)?;
        let reachable = match &file.allowed {
            None => loaded.len() as u64,
            Some(_) => file.matching,
        };
        if (matches.keys.len() as u64) < reachable.min(self.k as u64) {
            return Ok(None);
        }
        Ok(Some(
            matches
                .keys
                .iter()
                .zip(&matches.distances)
                .map(|(row, distance)| Hit {
                    distance: self.metric.sql_distance(*distance),
                    ordinal: file.ordinal,
                    row: *row,
                })
                .collect(),
        ))
    }

    /// Offers every matching row of the file with a vector to `best`.
    async fn scan_exactly(&self, file: &FileSearch, best: &mut Best) -> Result<()> {
        if let (Some(graph), Some(allowed)) = (&file.graph, &file.allowed)
            && self.scan_graph_vectors(file, graph, allowed, best).await
        {
            return Ok(());
        }
        let live = &self.snapshot.files[file.ordinal];
        let selection = file
            .allowed
            .as_ref()
            .map(|allowed| RowSelection::from_filters(&[BooleanArray::new(allowed.clone(), None)]));
        let batches = read_rows(
            &self.table.store,
            &live.location,
            live.file.size,
            &self.table.schema,
            &[self.vector_column],
            selection,
        )
        .await?;
        let mut positions: Box<dyn Iterator<Item = usize>> = match &file.allowed {
            Some(allowed) => Box::new(allowed.set_indices()),
            None => Box::new(0..live.file.rows as usize),
        };
        let metric = self.metric.sql_metric();
        let dimensions = self.query.len();
        for batch in &batches {
            let list = batch.column(0).as_fixed_size_list();
            if list.value_length() as usize != dimensions {
                return Err(DataFusionError::Execution(format!(
                    "different vector dimensions {} and {dimensions}",
                    list.value_length()
                )));
            }
            let values = list.values().as_primitive::<Float32Type>().values();
            for row in 0..list.len() {
                let Some(position) = positions.next() else {
                    return Err(DataFusionError::Internal(format!(
                        "{} returned more rows than selected",
                        live.location
                    )));
                };
                if list.is_null(row) {
                    continue;
                }
                let start = list.value_offset(row) as usize;
                best.offer(Hit {
                    distance: metric.distance(&values[start..start + dimensions], &self.query),
                    ordinal: file.ordinal,
                    row: position as u64,
                });
            }
        }
        Ok(())
    }

    /// The exact scan of a filter's matching rows with their vectors taken
    /// from the file's graph (usearch keeps them, as float32, in memory)
    /// rather than from Parquet, where rows spread over the file touch most
    /// of its vector pages. `false` when the graph cannot be loaded (the
    /// caller reads the file instead).
    async fn scan_graph_vectors(
        &self,
        file: &FileSearch,
        graph: &str,
        allowed: &BooleanBuffer,
        best: &mut Best,
    ) -> bool {
        let Ok(loaded) = cache::load(&self.table.store, &resolve(&self.table.dir, graph)).await
        else {
            return false;
        };
        if loaded.dimensions() != self.query.len() {
            return false;
        }
        let metric = self.metric.sql_metric();
        let mut vector = vec![0f32; self.query.len()];
        for row in allowed.set_indices() {
            // No vector under the key: the row's vector is NULL.
            if loaded.vector(row as u64, &mut vector) {
                best.offer(Hit {
                    distance: metric.distance(&vector, &self.query),
                    ordinal: file.ordinal,
                    row: row as u64,
                });
            }
        }
        true
    }

    /// Reads the projected columns of the chosen rows, file by file.
    async fn read_hits(&self, hits: Vec<Hit>) -> Result<RecordBatch> {
        let mut by_file: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        for hit in hits {
            by_file.entry(hit.ordinal).or_default().push(hit.row);
        }
        // Parquet reads columns in file order; the projection may not be.
        let mut columns = self.projection.clone();
        columns.sort_unstable();
        columns.dedup();
        let reorder: Vec<usize> = self
            .projection
            .iter()
            .map(|c| columns.binary_search(c).unwrap_or_default())
            .collect();
        let mut batches = Vec::new();
        for (ordinal, mut rows) in by_file {
            let live = &self.snapshot.files[ordinal];
            rows.sort_unstable();
            let selection = select_rows(&rows, live.file.rows);
            for batch in read_rows(
                &self.table.store,
                &live.location,
                live.file.size,
                &self.table.schema,
                &columns,
                Some(selection),
            )
            .await?
            {
                let batch = batch.project(&reorder)?;
                batches.push(RecordBatch::try_new(
                    Arc::clone(&self.output_schema),
                    batch.columns().to_vec(),
                )?);
            }
        }
        Ok(concat_batches(&self.output_schema, &batches)?)
    }
}

/// A row selection of the (sorted, distinct) `rows` out of `total`.
fn select_rows(rows: &[u64], total: u64) -> RowSelection {
    let mut selectors = Vec::with_capacity(rows.len() * 2 + 1);
    let mut next = 0u64;
    for &row in rows {
        if row > next {
            selectors.push(RowSelector::skip((row - next) as usize));
        }
        selectors.push(RowSelector::select(1));
        next = row + 1;
    }
    if total > next {
        selectors.push(RowSelector::skip((total - next) as usize));
    }
    RowSelection::from(selectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_selection_picks_exactly_the_rows() {
        let selection = select_rows(&[0, 3, 4, 9], 12);
        let picked: Vec<usize> = selection
            .iter()
            .scan(0usize, |at, s| {
                let start = *at;
                *at += s.row_count;
                Some((!s.skip).then(|| start..start + s.row_count))
            })
            .flatten()
            .flatten()
            .collect();
        assert_eq!(picked, vec![0, 3, 4, 9]);
    }

    #[test]
    fn best_keeps_the_k_nearest_and_breaks_ties_by_position() {
        let mut best = Best {
            k: 2,
            heap: BinaryHeap::new(),
        };
        for (distance, ordinal, row) in [(0.5, 1, 0), (0.1, 0, 7), (0.5, 0, 3), (0.9, 0, 1)] {
            best.offer(Hit {
                distance,
                ordinal,
                row,
            });
        }
        let mut kept = best.heap.into_sorted_vec();
        kept.sort();
        let kept: Vec<(usize, u64)> = kept.iter().map(|h| (h.ordinal, h.row)).collect();
        assert_eq!(kept, vec![(0, 7), (0, 3)]);
    }
}
