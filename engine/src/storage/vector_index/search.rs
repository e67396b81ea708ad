//! The vector top-k operator over a durable table: per data file, a graph
//! walk (filtered inside the walk) when the table has an index for the
//! query's distance, otherwise an exact scan of the matching rows over
//! their vectors in memory; the hits merged, then only the chosen rows
//! read.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch, RecordBatchOptions, UInt32Array};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::prep_null_mask_filter;
use datafusion::arrow::datatypes::Float32Type;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, ParamValues, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
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
use rayon::prelude::*;
use sluice_functions::vector::distance::Metric;

use super::super::decoded_columns;
use super::super::files::{LiveFile, Snapshot, read_rows, resolve};
use super::super::table_files::TableFiles;
use super::definition::limits::DEFAULT_EF_SEARCH;
use super::definition::{IndexMetric, VectorIndex, VectorSearchSettings};
use super::exact::{FileScan, Vectors};
use super::graph_map::{self, GraphPart};
use super::hit_rows::HitRows;
use super::hnsw::Graph;
use super::projected;
use super::ranking::{Best, Hit};
use super::{cache, columns, exact};

/// Below this share of a file's rows passing the filter, the matching
/// rows are scanned exactly: a walk filtered that hard visits most of the
/// graph to find `k` of them (and HNSW's recall collapses), while the
/// exact scan reads only the matching rows' vectors.
const MIN_GRAPH_SELECTIVITY: f64 = 0.05;
/// At most this many matching rows in a file are scanned exactly whatever
/// their share: cheaper than any walk.
const EXACT_MATCHING_ROWS: u64 = 1024;

/// A top-k search the planner's rule hands a table: the `k` rows nearest
/// to `query` by `metric` on `column`, among those `filter` keeps.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The index to walk; `None` for an exact search.
    pub index: Option<String>,
    /// The vector column.
    pub column: String,
    /// The distance the query orders by.
    pub metric: Metric,
    /// The query vector; empty while `parameter` names it.
    pub query: Vec<f32>,
    /// The prepared statement's parameter holding the query vector, bound
    /// at each execution ([`VectorTopKExec::bind`]): the plan is made once.
    pub parameter: Option<String>,
    /// Whether the rows come out nearest first (no sort above orders them:
    /// a plan kept with its parameter unbound has none, since a sort
    /// cannot hold a parameter).
    pub ranked: bool,
    /// Rows wanted.
    pub k: usize,
    /// A filter on the table's columns (unqualified names); NULL drops.
    pub filter: Option<Expr>,
    /// Rows whose vector is NULL count, after every other row (as an
    /// ascending `ORDER BY` puts them); `false` when the query keeps only
    /// rows with a vector.
    pub keep_nulls: bool,
}

/// Why a file is scanned exactly rather than walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ExactReason {
    /// Fewer rows than [`super::MIN_INDEXED_ROWS`]: no graph.
    SmallFile,
    /// The filter keeps too few of its graph's rows.
    SelectiveFilter,
    /// Most of its graph's rows belong to files replaced since it was
    /// built (seen from a transaction, before the next commit regroups
    /// them).
    SparseGraph,
    /// The index was dropped after the query was planned.
    IndexGone,
    /// The table has no index for the query's distance.
    NoIndex,
}

impl ExactReason {
    fn describe(self) -> &'static str {
        match self {
            Self::SmallFile => "too small for a graph",
            Self::SelectiveFilter => "selective filter",
            Self::SparseGraph => "graph mostly of replaced files",
            Self::IndexGone => "index dropped",
            Self::NoIndex => "no index",
        }
    }
}

/// How one data file is searched.
#[derive(Debug, Clone)]
enum Route {
    /// No row passes the filter.
    Skip,
    /// Walk its graph (one walk for every file of the graph).
    Graph,
    /// Scan the matching rows' vectors.
    Exact(ExactReason),
}

/// One data file of the search, with the rows its filter keeps.
#[derive(Debug, Clone)]
struct FileSearch {
    /// Position of the file in the snapshot (ties go to earlier files).
    ordinal: usize,
    route: Route,
    /// The rows passing the filter; `None` without a filter.
    allowed: Option<BooleanBuffer>,
    matching: u64,
    /// The file's graph, if it has one (also when the route is an exact
    /// scan: the graph holds the vectors in memory).
    graph: Option<GraphPart>,
}

/// One graph walk: the graph and the files of the search it serves.
#[derive(Debug, Clone)]
struct GraphWalk {
    /// The graph's path in the table.
    graph: String,
    /// Positions in [`Search::files`] of the files it serves.
    members: Vec<usize>,
    /// Whether every key of the graph is a row the search may return (no
    /// filter, and every file the graph was built over still live), so
    /// the walk needs no predicate.
    complete: bool,
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
    let search = plan(table, snapshot, index, request, projection, state).await?;
    Ok(Arc::new(VectorTopKExec {
        properties: Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&search.output_schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        )),
        search: Arc::new(search),
        metrics: ExecutionPlanMetricsSet::new(),
    }))
}

/// The walks of a batch of indexed searches (`LATERAL VECTOR_SEARCH` over
/// a table with an index for the batch's distance): planned once, then
/// run once per query vector. A batch has no filter, so every file with
/// a graph is walked and the rest scanned exactly.
#[derive(Debug)]
pub(super) struct BatchWalks(Search);

impl BatchWalks {
    /// Plans the walks of `index` over `snapshot` for `k` rows per query,
    /// whose hits' `columns` are read.
    pub(super) async fn plan(
        table: TableFiles,
        snapshot: Arc<Snapshot>,
        index: VectorIndex,
        k: usize,
        columns: &Vec<usize>,
        state: &dyn Session,
    ) -> Result<Self> {
        let request = SearchRequest {
            index: Some(index.name.clone()),
            column: index.column.clone(),
            metric: index.metric.sql_metric(),
            query: Vec::new(),
            parameter: None,
            ranked: true,
            k,
            filter: None,
            keep_nulls: false,
        };
        let search = plan(table, snapshot, Some(index), &request, Some(columns), state).await?;
        Ok(Self(search))
    }

    /// The `k` rows nearest each query (`dimensions` floats each),
    /// nearest first. The graphs are loaded once and the queries walk
    /// them on every core, each query's walks one after another (a
    /// single search instead spreads its walks over the cores).
    pub(super) async fn hits(&self, queries: &[f32], dimensions: usize) -> Result<Vec<Vec<Hit>>> {
        let searches: Vec<Search> = queries
            .chunks_exact(dimensions.max(1))
            .map(|query| Search {
                query: query.into(),
                ..self.0.clone()
            })
            .collect();
        let graphs = self.0.load_graphs().await;
        let (searches, walked) = tokio::task::spawn_blocking(move || {
            let walked = searches
                .par_iter()
                .map(|search| {
                    graphs
                        .iter()
                        .enumerate()
                        .map(|(at, graph)| search.walk_loaded(at, graph.as_deref()))
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<Vec<_>>>();
            (searches, walked)
        })
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let counters = Counters::default();
        let mut found = Vec::with_capacity(searches.len());
        for (search, walked) in searches.iter().zip(walked?) {
            found.push(search.finish(walked, &counters).await?);
        }
        Ok(found)
    }

    /// Where the batch reads the chosen rows' columns: the files' graphs
    /// (by the file's position in the snapshot), and whether the other
    /// columns come from decoded columns in memory ([`HitRows`]).
    pub(super) fn hit_sources(&self) -> (Vec<Option<&GraphPart>>, bool) {
        let graphs = self.0.files.iter().map(|f| f.graph.as_ref()).collect();
        (graphs, self.0.hits_from_memory)
    }

    /// How each query is searched, for EXPLAIN.
    pub(super) fn describe(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let search = &self.0;
        if let Some((name, metric)) = &search.index {
            write!(
                f,
                "index={name} (hnsw, {}), ef_search={}, ",
                metric.name(),
                search.ef_search
            )?;
        }
        search.describe_path(f)
    }
}

/// The search [`plan_search`] runs.
async fn plan(
    table: TableFiles,
    snapshot: Arc<Snapshot>,
    index: Option<VectorIndex>,
    request: &SearchRequest,
    projection: Option<&Vec<usize>>,
    state: &dyn Session,
) -> Result<Search> {
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
            .and_then(|index| index.graphs.part(&live.file.path))
            .cloned();
        let route = if matching == 0 {
            Route::Skip
        } else if request.index.is_none() {
            Route::Exact(ExactReason::NoIndex)
        } else if index.is_none() {
            Route::Exact(ExactReason::IndexGone)
        } else if graph.is_some() {
            // Decided per graph below.
            Route::Graph
        } else {
            Route::Exact(ExactReason::SmallFile)
        };
        files.push(FileSearch {
            ordinal,
            route,
            allowed,
            matching,
            graph,
        });
    }
    let walks = match &index {
        Some(index) => plan_walks(&mut files, &snapshot, index, filter.is_some()),
        None => Vec::new(),
    };
    let (output_schema, projection) = projected(&table.schema, projection)?;
    let hit_columns: Vec<usize> = projection
        .iter()
        .copied()
        .filter(|&c| c != vector_column)
        .collect();
    let hits_from_memory = hit_columns.is_empty()
        || decoded_columns::table_bytes(&table, &snapshot, &hit_columns).await?
            <= decoded_columns::TABLE_BYTES;
    Ok(Search {
        table,
        snapshot,
        files,
        walks,
        index: request
            .index
            .clone()
            .zip(index.as_ref().map(|index| index.metric)),
        metric: request.metric,
        vector_column,
        query: request.query.clone().into(),
        parameter: request.parameter.clone(),
        null_query: false,
        ranked: request.ranked,
        k,
        ef_search,
        filter: filter.map(|(_, predicate)| predicate),
        keep_nulls: request.keep_nulls,
        projection,
        output_schema,
        hits_from_memory,
    })
}

/// Groups the files routed to a graph into one walk per graph, and routes
/// a graph's files to exact scans instead when too few of the rows it was
/// built over may be returned (a selective filter, or files replaced
/// since): a walk that skips most keys visits most of the graph to find
/// `k`, and HNSW's recall collapses.
fn plan_walks(
    files: &mut [FileSearch],
    snapshot: &Snapshot,
    index: &VectorIndex,
    filtered: bool,
) -> Vec<GraphWalk> {
    let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (at, file) in files.iter().enumerate() {
        if let (Route::Graph, Some(part)) = (&file.route, &file.graph) {
            members.entry(part.graph.as_str()).or_default().push(at);
        }
    }
    let mut walks = Vec::with_capacity(members.len());
    let mut exact = Vec::new();
    for (graph, members) in members {
        let live_rows: u64 = members
            .iter()
            .map(|&at| snapshot.files[files[at].ordinal].file.rows)
            .sum();
        let graph_rows = index.graphs.rows_of(graph, live_rows);
        let matching: u64 = members.iter().map(|&at| files[at].matching).sum();
        let complete = !filtered && live_rows >= graph_rows;
        let sparse = !complete
            && (matching <= EXACT_MATCHING_ROWS
                || (matching as f64) < MIN_GRAPH_SELECTIVITY * graph_rows as f64);
        if sparse {
            let reason = if filtered {
                ExactReason::SelectiveFilter
            } else {
                ExactReason::SparseGraph
            };
            exact.extend(members.into_iter().map(|at| (at, reason)));
        } else {
            walks.push(GraphWalk {
                graph: graph.to_owned(),
                members,
                complete,
            });
        }
    }
    for (at, reason) in exact {
        files[at].route = Route::Exact(reason);
    }
    walks
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
        Some(&table.metadata),
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
#[derive(Debug, Clone)]
struct Search {
    table: TableFiles,
    /// Holds the files (and so their graphs' meaning) until the search ends.
    snapshot: Arc<Snapshot>,
    files: Vec<FileSearch>,
    walks: Vec<GraphWalk>,
    /// The index walked and its metric; `None` for an exact search (or an
    /// index dropped since the query was planned).
    index: Option<(String, IndexMetric)>,
    metric: Metric,
    vector_column: usize,
    query: Arc<[f32]>,
    /// See [`SearchRequest::parameter`].
    parameter: Option<String>,
    /// The parameter was bound to NULL: every distance is NULL.
    null_query: bool,
    /// See [`SearchRequest::ranked`].
    ranked: bool,
    k: usize,
    ef_search: usize,
    filter: Option<Arc<dyn PhysicalExpr>>,
    keep_nulls: bool,
    projection: Vec<usize>,
    output_schema: SchemaRef,
    /// Whether the chosen rows' columns are taken from decoded columns
    /// (see [`HitRows`]).
    hits_from_memory: bool,
}

/// The operator: reads the `k` (or fewer, when fewer rows match) rows
/// nearest to the query; the plan above it computes their distance and
/// orders them.
#[derive(Debug)]
pub struct VectorTopKExec {
    properties: Arc<PlanProperties>,
    search: Arc<Search>,
    metrics: ExecutionPlanMetricsSet,
}

impl VectorTopKExec {
    /// This search with its query vector bound to its parameter's value in
    /// `params` (text or a vector); `None` when its query is a constant.
    pub fn bind(&self, params: &ParamValues) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(id) = &self.search.parameter else {
            return Ok(None);
        };
        let value = params.get_placeholders_with_values(id)?.value;
        // Every row's distance to a NULL query is NULL. pgvector (0.5 and
        // later) still returns rows, and so does the sort a NULL constant
        // is planned as: `k` rows, not an error.
        let null_query = value.is_null();
        let query = match null_query {
            true => Vec::new(),
            false => query_vector(&value).ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "the query vector of a vector search must be a vector, not {value}"
                ))
            })?,
        };
        let search = Search {
            query: query.into(),
            null_query,
            ..self.search.as_ref().clone()
        };
        Ok(Some(Arc::new(Self {
            properties: Arc::clone(&self.properties),
            search: Arc::new(search),
            metrics: ExecutionPlanMetricsSet::new(),
        })))
    }
}

/// The floats of a query vector's value: a vector, or vector text
/// (`'[1,2,3]'`, which the distance functions accept for a vector as
/// pgvector does, and drivers send for `%s::vector`).
pub fn query_vector(value: &ScalarValue) -> Option<Vec<f32>> {
    let list = match value {
        ScalarValue::FixedSizeList(list) => list,
        ScalarValue::Utf8(Some(text))
        | ScalarValue::Utf8View(Some(text))
        | ScalarValue::LargeUtf8(Some(text)) => {
            return sluice_types::vector::parse_vector(text).ok();
        }
        _ => return None,
    };
    if list.len() != 1 || list.is_null(0) {
        return None;
    }
    let values = list.value(0);
    let floats = values.as_primitive_opt::<Float32Type>()?;
    (floats.null_count() == 0).then(|| floats.values().to_vec())
}

impl DisplayAs for VectorTopKExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let search = &self.search;
        match &search.index {
            Some((name, metric)) => write!(
                f,
                "VectorTopKExec: index={name} (hnsw, {}), k={}, ef_search={}",
                metric.name(),
                search.k,
                search.ef_search
            )?,
            None => write!(
                f,
                "VectorTopKExec: exact, distance={}, k={}",
                search.metric.function_name(),
                search.k
            )?,
        }
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
        write!(f, ", ")?;
        search.describe_path(f)?;
        if !search.hits_from_memory {
            // Only the exception is shown: most plans take them from memory.
            write!(f, ", rows read from files")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for VectorTopKExec {
    fn name(&self) -> &str {
        "VectorTopKExec"
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
                "VectorTopKExec has no children".into(),
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
                "VectorTopKExec has one partition, not {}",
                partition + 1
            )));
        }
        if self.search.parameter.is_some()
            && self.search.query.is_empty()
            && !self.search.null_query
        {
            return Err(DataFusionError::Internal(
                "a vector search ran with its query parameter unbound".into(),
            ));
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

#[derive(Default)]
struct Counters {
    walks: Count,
    exact: Count,
    fallbacks: Count,
    output_rows: Count,
}

impl Search {
    async fn run(self: Arc<Self>, counters: &Counters) -> Result<RecordBatch> {
        let hits = match self.null_query {
            true => self.first_rows().await?,
            false => Arc::clone(&self).hits(counters).await?,
        };
        let batch = self.read_hits(hits).await?;
        counters.output_rows.add(batch.num_rows());
        Ok(batch)
    }

    /// `path=[…]`: how the files are searched (graph walks, and exact
    /// scans by reason), for EXPLAIN.
    fn describe_path(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let walked = self
            .files
            .iter()
            .filter(|f| matches!(f.route, Route::Graph))
            .count();
        let mut exact: BTreeMap<ExactReason, usize> = BTreeMap::new();
        for file in &self.files {
            if let Route::Exact(reason) = file.route {
                *exact.entry(reason).or_default() += 1;
            }
        }
        let mut paths = Vec::new();
        if self.index.is_some() {
            paths.push(format!(
                "graph walk: {} graph(s) over {walked} file(s)",
                self.walks.len()
            ));
        }
        for (reason, count) in exact {
            paths.push(format!(
                "exact scan: {count} file(s) ({})",
                reason.describe()
            ));
        }
        write!(f, "path=[{}]", paths.join(", "))
    }

    /// The `k` (or fewer) rows nearest the query, nearest first.
    async fn hits(self: Arc<Self>, counters: &Counters) -> Result<Vec<Hit>> {
        let graphs = self.load_graphs().await;
        let walked = match graphs.as_slice() {
            // One walk runs where the statement runs, as DataFusion's own
            // operators compute: a walk takes 0.05-0.4 ms, and handing it
            // to a blocking thread and on to rayon cost about as much in
            // thread wake-ups.
            [] | [_] => graphs
                .iter()
                .enumerate()
                .map(|(at, graph)| self.walk_loaded(at, graph.as_deref()))
                .collect::<Result<Vec<_>>>()?,
            // The walks on every core: a query waits for its slowest
            // graph, not for the sum of them.
            _ => {
                let search = Arc::clone(&self);
                tokio::task::spawn_blocking(move || {
                    graphs
                        .into_par_iter()
                        .enumerate()
                        .map(|(at, graph)| search.walk_loaded(at, graph.as_deref()))
                        .collect::<Result<Vec<_>>>()
                })
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))??
            }
        };
        self.finish(walked, counters).await
    }

    /// The graph of each of the search's walks (`None` where it cannot be
    /// read).
    async fn load_graphs(&self) -> Vec<Option<Arc<Graph>>> {
        let mut graphs = Vec::with_capacity(self.walks.len());
        for walk in &self.walks {
            graphs.push(self.load_graph(&walk.graph).await);
        }
        graphs
    }

    /// The hits of walk `at` over `graph`; `None` when the walk must be
    /// replaced by an exact scan of its files.
    fn walk_loaded(&self, at: usize, graph: Option<&Graph>) -> Result<Option<Vec<Hit>>> {
        match graph {
            Some(graph) => self.walk(&self.walks[at], graph),
            None => Ok(None),
        }
    }

    /// The search's `k` rows from the hits of its walks (by walk, `None`
    /// where a walk came back short or its graph was unreadable) and exact
    /// scans of the other files.
    async fn finish(&self, walked: Vec<Option<Vec<Hit>>>, counters: &Counters) -> Result<Vec<Hit>> {
        let mut best = Best::new(self.k);
        let mut exact: Vec<usize> = (0..self.files.len())
            .filter(|&at| matches!(self.files[at].route, Route::Exact(_)))
            .collect();
        counters.exact.add(exact.len());
        for (walk, hits) in self.walks.iter().zip(walked) {
            match hits {
                Some(hits) => {
                    counters.walks.add(1);
                    hits.into_iter().for_each(|h| best.offer(h));
                }
                None => {
                    counters.fallbacks.add(1);
                    exact.extend(&walk.members);
                }
            }
        }
        exact.sort_unstable();
        let mut scans = Vec::with_capacity(exact.len());
        for at in exact {
            let file = &self.files[at];
            scans.push(FileScan {
                ordinal: file.ordinal,
                allowed: file.allowed.clone(),
                vectors: self.vectors_to_scan(file).await?,
            });
        }
        if !scans.is_empty() {
            for hit in exact::scan(scans, Arc::clone(&self.query), self.metric, self.k).await? {
                best.offer(hit);
            }
        }
        if self.keep_nulls && best.len() < self.k {
            self.offer_null_vectors(&mut best).await?;
        }
        Ok(best.into_hits())
    }

    /// The graph at `graph`; `None` when it cannot be read (its files are
    /// then scanned exactly).
    async fn load_graph(&self, graph: &str) -> Option<Arc<Graph>> {
        let location = resolve(&self.table.dir, graph);
        match cache::load(&self.table.store, &location).await {
            Ok(loaded) => Some(loaded),
            Err(e) => {
                log::warn!("vector index graph {location} unreadable ({e}); scanning exactly");
                cache::forget(&location);
                None
            }
        }
    }

    /// The hits of `walk`'s files by their graph; `None` when the walk
    /// cannot be trusted to be complete (it returned fewer rows than
    /// match): the caller scans its files exactly.
    fn walk(&self, walk: &GraphWalk, loaded: &Graph) -> Result<Option<Vec<Hit>>> {
        let Some((_, index_metric)) = self.index else {
            return Ok(None);
        };
        if loaded.dimensions() != self.query.len() {
            return Err(different_dimensions(loaded.dimensions(), self.query.len()));
        }
        if loaded.metric() != index_metric {
            return Err(DataFusionError::Internal(format!(
                "graph {} was built for {} distance, its index orders by {}",
                walk.graph,
                loaded.metric().name(),
                index_metric.name()
            )));
        }
        // Per slot of the graph, the file of the search it holds (if any).
        let mut slots: Vec<Option<&FileSearch>> = Vec::new();
        for &at in &walk.members {
            let file = &self.files[at];
            if let Some(part) = &file.graph {
                let slot = part.slot as usize;
                if slots.len() <= slot {
                    slots.resize(slot + 1, None);
                }
                slots[slot] = Some(file);
            }
        }
        let returnable = |key: u64| {
            let (slot, row) = graph_map::split(key);
            slots
                .get(slot as usize)
                .copied()
                .flatten()
                .is_some_and(|file| {
                    file.allowed.as_ref().is_none_or(|allowed| {
                        usize::try_from(row)
                            .is_ok_and(|row| row < allowed.len() && allowed.value(row))
                    })
                })
        };
        let matches = if walk.complete {
            loaded.search(&self.query, self.k, self.ef_search, |_| true)
        } else {
            loaded.search(&self.query, self.k, self.ef_search, returnable)
        };
        let reachable = if walk.complete {
            loaded.len() as u64
        } else {
            walk.members.iter().map(|&at| self.files[at].matching).sum()
        };
        if (matches.len() as u64) < reachable.min(self.k as u64) {
            return Ok(None);
        }
        let mut hits = Vec::with_capacity(matches.len());
        for (key, distance) in matches {
            let (slot, row) = graph_map::split(key);
            let Some(file) = slots.get(slot as usize).copied().flatten() else {
                return Err(DataFusionError::Internal(format!(
                    "graph {} returned a key of slot {slot}, which this search does not read",
                    walk.graph
                )));
            };
            // The distance as the SQL function computes it (the walk's
            // own rounds differently), so that hits rank as a sort by the
            // query's distance ranks them and exact scans' hits compare.
            let distance = match loaded.vector(key) {
                Some(vector) => self.metric.distance(vector, &self.query),
                None => loaded.metric().sql_distance(distance),
            };
            hits.push(Hit::at(distance, file.ordinal, row));
        }
        Ok(Some(hits))
    }

    /// Where the exact scan of `file` reads its vectors: the file's graph
    /// when a filter keeps few rows (the graph holds them in memory, while
    /// rows spread over the file touch most of its vector pages), else the
    /// decoded column.
    async fn vectors_to_scan(&self, file: &FileSearch) -> Result<Vectors> {
        if let (Some(part), Some(_)) = (&file.graph, &file.allowed)
            && let Ok(loaded) =
                cache::load(&self.table.store, &resolve(&self.table.dir, &part.graph)).await
            && loaded.dimensions() == self.query.len()
        {
            return Ok(Vectors::Graph(loaded, part.slot));
        }
        let column = self.column(file.ordinal).await?;
        if !column.runs.is_empty() && column.dimensions != self.query.len() {
            return Err(different_dimensions(column.dimensions, self.query.len()));
        }
        Ok(Vectors::Column(column))
    }

    /// The decoded vector column of the file at `ordinal`.
    async fn column(&self, ordinal: usize) -> Result<Arc<columns::VectorColumn>> {
        columns::load(
            &self.table,
            &self.snapshot.files[ordinal],
            self.vector_column,
        )
        .await
    }

    /// The rows of a NULL query, whose distances are all NULL: the first
    /// `k` that pass the filter, by position (ties go to earlier rows, as
    /// everywhere else); rows without a vector only when the search keeps
    /// them.
    async fn first_rows(&self) -> Result<Vec<Hit>> {
        let mut hits = Vec::with_capacity(self.k);
        for file in &self.files {
            if matches!(file.route, Route::Skip) {
                continue;
            }
            let vectors = match self.keep_nulls {
                true => None,
                false => Some(self.column(file.ordinal).await?),
            };
            let rows = self.snapshot.files[file.ordinal].file.rows;
            for (position, row) in (0..rows).enumerate() {
                if hits.len() >= self.k {
                    return Ok(hits);
                }
                let allowed = file
                    .allowed
                    .as_ref()
                    .is_none_or(|a| position < a.len() && a.value(position));
                let has_vector = vectors
                    .as_ref()
                    .is_none_or(|column| column.vector(position).is_some());
                if allowed && has_vector {
                    hits.push(Hit {
                        null: true,
                        distance: 0.0,
                        ordinal: file.ordinal,
                        row,
                    });
                }
            }
        }
        Ok(hits)
    }

    /// Fills a short result with rows whose vector is NULL, by position.
    async fn offer_null_vectors(&self, best: &mut Best) -> Result<()> {
        for file in &self.files {
            if matches!(file.route, Route::Skip) || best.len() >= self.k {
                continue;
            }
            let column = self.column(file.ordinal).await?;
            for rows in &column.runs {
                let Some(nulls) = &rows.nulls else {
                    continue;
                };
                for row in (0..nulls.len()).filter(|&row| nulls.is_null(row)) {
                    let position = rows.first + row;
                    if file.allowed.as_ref().is_none_or(|a| a.value(position)) {
                        best.offer(Hit {
                            null: true,
                            distance: 0.0,
                            ordinal: file.ordinal,
                            row: position as u64,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads the projected columns of the chosen rows (`hits`, nearest
    /// first), in file order or, for a ranked search, nearest first.
    async fn read_hits(&self, hits: Vec<Hit>) -> Result<RecordBatch> {
        let mut by_file: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        for hit in &hits {
            by_file.entry(hit.ordinal).or_default().push(hit.row);
        }
        let graphs: Vec<Option<&GraphPart>> = self.files.iter().map(|f| f.graph.as_ref()).collect();
        let read = HitRows {
            table: &self.table,
            snapshot: &self.snapshot,
            graphs: &graphs,
            vector_column: self.vector_column,
            projection: &self.projection,
            output_schema: &self.output_schema,
            from_memory: self.hits_from_memory,
        }
        .read(by_file)
        .await?;
        if !self.ranked {
            return Ok(read);
        }
        // `read` holds the hits in (file, row) order, once each.
        let mut in_file_order: Vec<(usize, u64)> =
            hits.iter().map(|h| (h.ordinal, h.row)).collect();
        in_file_order.sort_unstable();
        let ranks: Vec<u32> = hits
            .iter()
            .map(|h| {
                in_file_order
                    .binary_search(&(h.ordinal, h.row))
                    .unwrap_or(0) as u32
            })
            .collect();
        let ranks = UInt32Array::from(ranks);
        let columns = read
            .columns()
            .iter()
            .map(|column| datafusion::arrow::compute::take(column, &ranks, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new_with_options(
            read.schema(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(ranks.len())),
        )?)
    }
}

fn different_dimensions(stored: usize, query: usize) -> DataFusionError {
    DataFusionError::Execution(format!("different vector dimensions {stored} and {query}"))
}
