//! The planner's choice for a batch of vector searches: an optimizer rule
//! that plans what [`super::vector_search`] makes of a `LATERAL
//! VECTOR_SEARCH` — `row_number()` per distinct query vector, ordered by
//! the distance, over the cross join of the table with the query vectors,
//! kept while `<= k` — as one batch search
//! ([`VectorBatchTopKExec`](crate::storage::vector_index::VectorBatchTopKExec):
//! walks of the table's index for the distance, or one exact pass over
//! its vectors), instead of computing and sorting every (query, row)
//! pair.
//!
//! It fires on `Filter(rank <= k) → [Projection of columns] →
//! Window(row_number() PARTITION BY q
//! ORDER BY <distance>(v, q) ASC NULLS LAST) → CrossJoin(Filter(v IS NOT
//! NULL) → [alias] → scan of a durable table, queries)`, where `q` is the
//! only column of the queries and `k` a constant. The window and its input
//! become a scan of [`BatchedTopK`] with the window's columns (the table's,
//! the query, the rank); the filter above stays. Any other shape keeps the
//! window plan.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Distinct, Expr, Filter, JoinType, LogicalPlan, Operator, Projection, SubqueryAlias,
    TableScan, TableScanBuilder, TableType, Window,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use sluice_functions::vector::distance::Metric;

use crate::storage::DurableTable;
use crate::storage::vector_index::BatchRequest;

/// The name the batch's scan is planned under (its columns are renamed
/// back to the window's right above it).
const BATCH_SCAN: &str = "__sluice_vector_batch";

/// See the module documentation.
#[derive(Debug, Default)]
pub struct VectorBatchRule;

impl OptimizerRule for VectorBatchRule {
    fn name(&self) -> &str {
        "sluice_vector_batch"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Filter(filter) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match batch_search(filter)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// `filter` with the window below it (directly or under a projection of
/// its columns) replaced by a batch search, when the shape qualifies.
fn batch_search(filter: &Filter) -> Result<Option<LogicalPlan>> {
    let (projection, window) = match filter.input.as_ref() {
        LogicalPlan::Window(window) => (None, window),
        LogicalPlan::Projection(projection)
            if projection.expr.iter().all(|e| matches!(e, Expr::Column(_))) =>
        {
            match projection.input.as_ref() {
                LogicalPlan::Window(window) => (Some(projection), window),
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    let Some(rank) = window.schema.fields().last().map(|f| f.name()) else {
        return Ok(None);
    };
    let Some(k) = rank_bound(&filter.predicate, rank) else {
        return Ok(None);
    };
    let Some(mut input) = batch_scan(window, k)? else {
        return Ok(None);
    };
    if let Some(projection) = projection {
        input = LogicalPlan::Projection(Projection::try_new_with_schema(
            projection.expr.clone(),
            Arc::new(input),
            Arc::clone(&projection.schema),
        )?);
    }
    Ok(Some(LogicalPlan::Filter(Filter::try_new(
        filter.predicate.clone(),
        Arc::new(input),
    )?)))
}

/// The batch search standing for `window` (keeping at most `k` rows per
/// query), with the window's schema; `None` when the shape does not
/// qualify.
fn batch_scan(window: &Window, k: usize) -> Result<Option<LogicalPlan>> {
    let Some(search) = window_search(window) else {
        return Ok(None);
    };
    let Some(parts) = cross_join(&window.input, &search) else {
        return Ok(None);
    };
    let provider = source_as_provider(&parts.scan.source)?;
    let any: &dyn Any = provider.as_ref();
    if !any.is::<DurableTable>() {
        return Ok(None);
    }
    let table_columns = match &parts.scan.projection {
        Some(columns) => columns.clone(),
        None => (0..provider.schema().fields().len()).collect(),
    };
    let schema: SchemaRef = Arc::new(window.schema.as_arrow().clone());
    let request = BatchRequest {
        column: search.vector.name.clone(),
        metric: search.metric,
        k,
        table_columns,
        schema: Arc::clone(&schema),
    };
    let scan = TableScanBuilder::new(
        TableReference::bare(BATCH_SCAN),
        provider_as_source(Arc::new(BatchedTopK {
            table: provider,
            request,
            queries: without_distinct(parts.queries)?,
            schema,
        })),
    )
    .build()?;
    // The window's columns under their own qualifiers, so that the plan
    // above reads them as before.
    let renamed = window
        .schema
        .iter()
        .map(|(qualifier, field)| {
            Expr::Column(Column::new(Some(BATCH_SCAN), field.name()))
                .alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    Ok(Some(LogicalPlan::Projection(
        Projection::try_new_with_schema(
            renamed,
            Arc::new(LogicalPlan::TableScan(scan)),
            Arc::clone(&window.schema),
        )?,
    )))
}

/// The query vectors without the DISTINCT the `LATERAL` rewrite puts
/// over them: the batch keeps each distinct vector once itself (by its
/// bits, as hashing groups them), which costs far less than DataFusion's
/// grouping by a list column (its row format encodes every 384-float key
/// and decodes it back: 40 ms of a 100 ms batch of 300 queries). Any
/// other shape is kept as it is.
fn without_distinct(queries: &LogicalPlan) -> Result<LogicalPlan> {
    let (alias, inner) = match queries {
        LogicalPlan::SubqueryAlias(alias) => (Some(alias), alias.input.as_ref()),
        other => (None, other),
    };
    let input = match inner {
        LogicalPlan::Distinct(Distinct::All(input)) => input.as_ref().clone(),
        LogicalPlan::Aggregate(aggregate)
            if aggregate.aggr_expr.is_empty()
                && matches!(aggregate.group_expr.as_slice(), [Expr::Column(_)]) =>
        {
            LogicalPlan::Projection(Projection::try_new(
                aggregate.group_expr.clone(),
                Arc::clone(&aggregate.input),
            )?)
        }
        _ => return Ok(queries.clone()),
    };
    Ok(match alias {
        Some(alias) => LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
            Arc::new(input),
            alias.alias.clone(),
        )?),
        None => input,
    })
}

/// What the window ranks by: the query column and the distance.
struct WindowSearch {
    query: Column,
    vector: Column,
    metric: Metric,
}

/// `row_number() OVER (PARTITION BY q ORDER BY <distance>(v, q) ASC NULLS
/// LAST)`, the window's only expression.
fn window_search(window: &Window) -> Option<WindowSearch> {
    let [expr] = window.window_expr.as_slice() else {
        return None;
    };
    let Expr::WindowFunction(function) = expr.clone().unalias_nested().data else {
        return None;
    };
    let WindowFunction { fun, params } = *function;
    if fun.name() != "row_number" || !params.args.is_empty() || params.filter.is_some() {
        return None;
    }
    let ([Expr::Column(query)], [order]) =
        (params.partition_by.as_slice(), params.order_by.as_slice())
    else {
        return None;
    };
    if !order.asc || order.nulls_first {
        return None;
    }
    let Expr::ScalarFunction(call) = &order.expr else {
        return None;
    };
    let metric = Metric::ALL
        .into_iter()
        .find(|m| m.function_name() == call.func.name())?;
    let vector = match call.args.as_slice() {
        [Expr::Column(a), Expr::Column(b)] if b == query => a.clone(),
        [Expr::Column(a), Expr::Column(b)] if a == query => b.clone(),
        _ => return None,
    };
    Some(WindowSearch {
        query: query.clone(),
        vector,
        metric,
    })
}

/// `k` of a `rank <= k` conjunct of `predicate`.
fn rank_bound(predicate: &Expr, rank: &str) -> Option<usize> {
    split_conjunction(predicate)
        .into_iter()
        .find_map(|conjunct| {
            let Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::LtEq,
                right,
            }) = conjunct
            else {
                return None;
            };
            let (Expr::Column(column), Expr::Literal(value, _)) = (left.as_ref(), right.as_ref())
            else {
                return None;
            };
            if column.name != rank {
                return None;
            }
            let k = match value {
                ScalarValue::UInt64(Some(k)) => usize::try_from(*k).ok()?,
                ScalarValue::Int64(Some(k)) => usize::try_from(*k).ok()?,
                _ => return None,
            };
            (k > 0).then_some(k)
        })
}

/// The table's scan and the queries of the cross join below the window.
struct Parts<'a> {
    scan: &'a TableScan,
    queries: &'a LogicalPlan,
}

fn cross_join<'a>(plan: &'a LogicalPlan, search: &WindowSearch) -> Option<Parts<'a>> {
    let LogicalPlan::Join(join) = plan else {
        return None;
    };
    if join.join_type != JoinType::Inner || !join.on.is_empty() || join.filter.is_some() {
        return None;
    }
    // The queries: one vector column, the one the window partitions by.
    let queries = join.right.as_ref();
    let [(qualifier, field)] = queries.schema().iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    if Column::new(qualifier.cloned(), field.name()) != search.query
        || !matches!(field.data_type(), DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32)
    {
        return None;
    }
    // The table: rows with a vector, nothing else filtered.
    let is_vector_present = |e: &Expr| matches!(e, Expr::IsNotNull(inner) if matches!(inner.as_ref(), Expr::Column(c) if c.name == search.vector.name));
    let LogicalPlan::Filter(present) = join.left.as_ref() else {
        return None;
    };
    if !is_vector_present(&present.predicate) {
        return None;
    }
    let scan = match present.input.as_ref() {
        LogicalPlan::TableScan(scan) => scan,
        LogicalPlan::SubqueryAlias(alias) => match alias.input.as_ref() {
            LogicalPlan::TableScan(scan) => scan,
            _ => return None,
        },
        _ => return None,
    };
    if scan.fetch.is_some() || !scan.filters.iter().all(is_vector_present) {
        return None;
    }
    Some(Parts { scan, queries })
}

/// A durable table seen through a batch of searches: its scan is the
/// batch, with the window's columns.
#[derive(Debug)]
pub struct BatchedTopK {
    table: Arc<dyn TableProvider>,
    request: BatchRequest,
    queries: LogicalPlan,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for BatchedTopK {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let any: &dyn Any = self.table.as_ref();
        let table = any.downcast_ref::<DurableTable>().ok_or_else(|| {
            DataFusionError::Internal("batch vector search over a non-durable table".into())
        })?;
        let queries = state.create_physical_plan(&self.queries).await?;
        table
            .plan_vector_batch(state, self.request.clone(), queries, projection)
            .await
    }
}
