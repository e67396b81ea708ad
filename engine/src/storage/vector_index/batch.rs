//! A batch of searches (`LATERAL VECTOR_SEARCH` with a query vector per
//! row of another table), each query's `k` nearest rows read once and
//! returned with their query and rank — the rows the window plan it
//! replaces (`row_number()` per query over a cross join) would return.
//! With an index for the batch's distance, each query walks the graphs as
//! a search of its own would ([`BatchWalks`], several queries at once);
//! without one, the query vectors are ranked against the table in one
//! pass over its vectors (a matrix product per run of rows,
//! [`exact::scan_batch`]).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch, RecordBatchOptions,
    UInt32Array, UInt64Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Float32Type, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, collect,
};
use sluice_functions::vector::distance::Metric;

use super::super::files::Snapshot;
use super::super::table_files::TableFiles;
use super::definition::VectorIndex;
use super::hit_rows::HitRows;
use super::search::BatchWalks;
use super::{columns, exact, projected};

/// A batch search the planner's rule hands a table: for each query vector
/// the `queries` plan yields (its only column), the `k` rows nearest by
/// `metric` on `column` among rows with a vector.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    /// The vector column.
    pub column: String,
    /// The distance ranked by.
    pub metric: Metric,
    /// Rows per query.
    pub k: usize,
    /// The table's columns returned, in order; then come the query vector
    /// and the rank (from 1), as in `schema`.
    pub table_columns: Vec<usize>,
    /// The rows' schema: `table_columns`, the query, the rank.
    pub schema: SchemaRef,
}

/// Plans `request` over `snapshot`, its queries from `queries`, walking
/// `index` when there is one; `projection` picks columns of the request's
/// schema.
pub(in crate::storage) async fn plan_batch(
    table: TableFiles,
    snapshot: Arc<Snapshot>,
    index: Option<VectorIndex>,
    request: BatchRequest,
    queries: Arc<dyn ExecutionPlan>,
    projection: Option<&Vec<usize>>,
    state: &dyn Session,
) -> Result<Arc<dyn ExecutionPlan>> {
    let vector_column = table.schema.index_of(&request.column)?;
    let (output_schema, projection) = projected(&request.schema, projection)?;
    // Only the table columns the plan above reads are read for the hits:
    // `SELECT q.id, s.id` reads no vectors.
    let mut read_columns: Vec<usize> = Vec::new();
    for &at in &projection {
        if let Some(&column) = request.table_columns.get(at)
            && !read_columns.contains(&column)
        {
            read_columns.push(column);
        }
    }
    let walks = match index {
        Some(index) => Some(
            BatchWalks::plan(
                table.clone(),
                Arc::clone(&snapshot),
                index,
                request.k,
                &read_columns,
                state,
            )
            .await?,
        ),
        None => None,
    };
    Ok(Arc::new(VectorBatchTopKExec {
        properties: Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&output_schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        )),
        batch: Arc::new(Batch {
            table,
            snapshot,
            vector_column,
            request,
            walks,
            read_columns,
            projection,
            output_schema,
        }),
        queries,
        metrics: ExecutionPlanMetricsSet::new(),
    }))
}

#[derive(Debug)]
struct Batch {
    table: TableFiles,
    snapshot: Arc<Snapshot>,
    vector_column: usize,
    request: BatchRequest,
    /// The graph walks of every query; `None` for an exact batch.
    walks: Option<BatchWalks>,
    /// Table columns read for the hits: those `projection` returns.
    read_columns: Vec<usize>,
    /// Columns of the request's schema returned.
    projection: Vec<usize>,
    output_schema: SchemaRef,
}

/// The operator: its child yields the query vectors; it returns each
/// query's `k` nearest rows with the query and the rank.
#[derive(Debug)]
pub struct VectorBatchTopKExec {
    properties: Arc<PlanProperties>,
    batch: Arc<Batch>,
    queries: Arc<dyn ExecutionPlan>,
    metrics: ExecutionPlanMetricsSet,
}

/// Where a batch's time goes, for `EXPLAIN ANALYZE`.
struct BatchMetrics {
    /// Distinct query vectors searched.
    queries: Count,
    /// Reading the query vectors (the input plan).
    query_time: Time,
    /// Walking the graphs or scanning exactly.
    search_time: Time,
    /// Reading the chosen rows and building the output.
    rows_time: Time,
}

impl BatchMetrics {
    fn new(metrics: &ExecutionPlanMetricsSet) -> Self {
        Self {
            queries: MetricBuilder::new(metrics).counter("queries", 0),
            query_time: MetricBuilder::new(metrics).subset_time("query_time", 0),
            search_time: MetricBuilder::new(metrics).subset_time("search_time", 0),
            rows_time: MetricBuilder::new(metrics).subset_time("rows_time", 0),
        }
    }
}

impl DisplayAs for VectorBatchTopKExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let request = &self.batch.request;
        match &self.batch.walks {
            Some(walks) => {
                write!(f, "VectorBatchTopKExec: k={} per query, ", request.k)?;
                walks.describe(f)
            }
            None => write!(
                f,
                "VectorBatchTopKExec: exact, distance={}, k={} per query, files={}",
                request.metric.function_name(),
                request.k,
                self.batch.snapshot.files.len()
            ),
        }
    }
}

impl ExecutionPlan for VectorBatchTopKExec {
    fn name(&self) -> &str {
        "VectorBatchTopKExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.queries]
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(queries), true) => Ok(Arc::new(Self {
                properties: Arc::clone(&self.properties),
                batch: Arc::clone(&self.batch),
                queries,
                metrics: ExecutionPlanMetricsSet::new(),
            })),
            _ => Err(DataFusionError::Internal(
                "VectorBatchTopKExec has one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "VectorBatchTopKExec has one partition, not {}",
                partition + 1
            )));
        }
        let batch = Arc::clone(&self.batch);
        let queries = Arc::clone(&self.queries);
        let metrics = BatchMetrics::new(&self.metrics);
        let rows = async move {
            let reading = metrics.query_time.timer();
            let queries = if queries.output_partitioning().partition_count() == 1 {
                collect(queries, context).await?
            } else {
                datafusion::physical_plan::collect_partitioned(queries, context)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect()
            };
            reading.done();
            batch.run(&queries, &metrics).await
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.batch.output_schema),
            futures::stream::once(rows),
        )))
    }
}

impl Batch {
    async fn run(
        &self,
        query_batches: &[RecordBatch],
        metrics: &BatchMetrics,
    ) -> Result<RecordBatch> {
        let DataType::FixedSizeList(_, width) =
            self.table.schema.field(self.vector_column).data_type()
        else {
            return Err(DataFusionError::Internal(
                "a batch search over a column that holds no vectors".into(),
            ));
        };
        let dimensions = *width as usize;
        // The distinct query vectors, by their bits (NULL ones find
        // nothing): the rows are joined back to every query row with the
        // same vector, so each must come once.
        let mut seen: HashSet<Vec<u32>> = HashSet::new();
        let mut queries: Vec<f32> = Vec::new();
        for batch in query_batches {
            let column = batch.column(0);
            let list = column.as_fixed_size_list_opt().ok_or_else(|| {
                DataFusionError::Internal("batch search queries are not vectors".into())
            })?;
            if list.value_length() as usize != dimensions {
                return Err(DataFusionError::Execution(format!(
                    "different vector dimensions {dimensions} and {}",
                    list.value_length()
                )));
            }
            let values = list.values().as_primitive::<Float32Type>().values();
            for row in 0..list.len() {
                if list.is_null(row) {
                    continue;
                }
                let start = list.value_offset(row) as usize;
                let query = &values[start..start + dimensions];
                if !seen.insert(query.iter().map(|x| x.to_bits()).collect()) {
                    continue;
                }
                queries.extend_from_slice(query);
            }
        }
        metrics.queries.add(queries.len() / dimensions.max(1));
        let searching = metrics.search_time.timer();
        let found = match &self.walks {
            Some(walks) => walks.hits(&queries, dimensions).await?,
            None => {
                let mut files = Vec::with_capacity(self.snapshot.files.len());
                for (ordinal, live) in self.snapshot.files.iter().enumerate() {
                    if live.file.rows > 0 {
                        let column = columns::load(&self.table, live, self.vector_column).await?;
                        files.push((ordinal, column));
                    }
                }
                exact::scan_batch(
                    files,
                    queries.as_slice().into(),
                    dimensions,
                    self.request.metric,
                    self.request.k,
                )
                .await?
            }
        };
        searching.done();
        let _building = metrics.rows_time.timer();
        // Every chosen row read once, in file then row order.
        let mut by_file: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        for hit in found.iter().flatten() {
            by_file.entry(hit.ordinal).or_default().push(hit.row);
        }
        for rows in by_file.values_mut() {
            rows.sort_unstable();
            rows.dedup();
        }
        // The position of each chosen row in what is read.
        let order: Vec<(usize, u64)> = by_file
            .iter()
            .flat_map(|(ordinal, rows)| rows.iter().map(move |row| (*ordinal, *row)))
            .collect();
        let read_schema = Arc::new(self.table.schema.project(&self.read_columns)?);
        // An exact batch reads many rows of each file once: its pages
        // cost less than decoding and keeping whole columns. Walks read
        // their vectors from the graphs, the rest as a search does.
        let (graphs, from_memory) = match &self.walks {
            Some(walks) => walks.hit_sources(),
            None => (Vec::new(), false),
        };
        let read = HitRows {
            table: &self.table,
            snapshot: &self.snapshot,
            graphs: &graphs,
            vector_column: self.vector_column,
            projection: &self.read_columns,
            output_schema: &read_schema,
            from_memory,
        }
        .read(by_file)
        .await?;
        let mut picks = Vec::new();
        let mut query_picks = Vec::new();
        let mut ranks = Vec::new();
        for (query, hits) in found.iter().enumerate() {
            for (rank, hit) in hits.iter().enumerate() {
                let at = order
                    .binary_search(&(hit.ordinal, hit.row))
                    .map_err(|_| DataFusionError::Internal("a chosen row was not read".into()))?;
                picks.push(at as u32);
                query_picks.push(query as u32);
                ranks.push(rank as u64 + 1);
            }
        }
        let picks = UInt32Array::from(picks);
        let query_picks = UInt32Array::from(query_picks);
        let ranks: ArrayRef = Arc::new(UInt64Array::from(ranks));
        let table_count = self.request.table_columns.len();
        let columns = self
            .projection
            .iter()
            .map(|&at| match at.cmp(&table_count) {
                Ordering::Less => {
                    let column = self.request.table_columns[at];
                    let read_at = self
                        .read_columns
                        .iter()
                        .position(|c| *c == column)
                        .ok_or_else(|| {
                            DataFusionError::Internal(format!("column {column} not read"))
                        })?;
                    Ok(take(read.column(read_at).as_ref(), &picks, None)?)
                }
                Ordering::Equal => self.query_column(&queries, &query_picks),
                Ordering::Greater => Ok(Arc::clone(&ranks)),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.output_schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(picks.len())),
        )?)
    }

    /// The query vector of each output row: `picks` of the distinct
    /// `queries` (row-major).
    fn query_column(&self, queries: &[f32], picks: &UInt32Array) -> Result<ArrayRef> {
        let field = self.request.schema.field(self.request.table_columns.len());
        let DataType::FixedSizeList(item, width) = field.data_type() else {
            return Err(DataFusionError::Internal(
                "batch search queries are not vectors".into(),
            ));
        };
        let distinct = FixedSizeListArray::try_new(
            Arc::clone(item),
            *width,
            Arc::new(Float32Array::from(queries.to_vec())),
            None,
        )?;
        Ok(take(&distinct, picks, None)?)
    }
}
