//! The planner's choice of a vector top-k: an optimizer rule that plans
//! `ORDER BY <distance>(v, q) LIMIT k` over a durable table — the pgvector
//! idiom, and what [`super::vector_search`] makes of `VECTOR_SEARCH` — as
//! Sluice's own top-k operator, walking an index when the table has one
//! for that distance and scanning exactly otherwise.
//!
//! It fires on `Sort(fetch = k)` by one ascending distance (NULLs last)
//! between a vector column and a constant vector (after `$n` binding and
//! constant folding, so `EMBED('m', 'text')` and parameters count), over
//! an optional projection, an optional filter and an optional alias of
//! the table's scan. The scan and filter become a scan of [`IndexedTopK`],
//! which returns the `k` nearest rows passing the filter; the projection
//! and sort above stay and order them by their exact distance. Everything
//! else — a query vector from a column, a filter with a subquery, more
//! sort keys, another kind of table — keeps DataFusion's plan (a top-k
//! heap per partition over a full scan).

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Cast, Expr, LogicalPlan, Projection, Sort, SubqueryAlias, TableScan, TableScanBuilder,
    TableType, TryCast,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use sluice_functions::vector::distance::Metric;

use super::{needs_more_than_its_row, unqualified};
use crate::storage::DurableTable;
use crate::storage::vector_index::{SearchRequest, query_vector};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct VectorIndexRule;

impl OptimizerRule for VectorIndexRule {
    fn name(&self) -> &str {
        "sluice_vector_index"
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
        let LogicalPlan::Sort(sort) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match index_search(sort, QueryKind::Constant)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// The nodes between the sort and the scan, as the rule found them.
struct Chain<'a> {
    projection: Option<&'a Projection>,
    filter: Option<&'a Expr>,
    alias: Option<&'a SubqueryAlias>,
    scan: &'a TableScan,
}

/// Which query vectors a search may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryKind {
    /// A constant (bound parameters included): the optimizer's rule.
    Constant,
    /// An unbound parameter, for a plan kept across executions.
    Parameter,
}

/// The query vector of a distance call.
enum QueryVector {
    Constant(Vec<f32>),
    Parameter(String),
}

/// `plan`, optimized with its parameters unbound, with each top-k by the
/// distance to a parameter planned as a ranked search that binds the
/// parameter at each execution (see the session's plan cache): the
/// sort goes, since no sort can hold a parameter, and the search returns
/// its rows nearest first.
pub(crate) fn searches_by_parameter(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_down_with_subqueries(|node| match &node {
        LogicalPlan::Sort(sort) => match index_search(sort, QueryKind::Parameter)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(node)),
        },
        _ => Ok(Transformed::no(node)),
    })
    .map(|rewritten| rewritten.data)
}

/// `sort` with its scan replaced by an index search, when it qualifies.
fn index_search(sort: &Sort, kind: QueryKind) -> Result<Option<LogicalPlan>> {
    let (Some(k), [key]) = (sort.fetch, sort.expr.as_slice()) else {
        return Ok(None);
    };
    if !key.asc || key.nulls_first || k == 0 {
        return Ok(None);
    }
    let Some(chain) = chain_below(&sort.input) else {
        return Ok(None);
    };
    // The sort key is the distance itself or a projected column naming it.
    let (distance, over_projection) = match (&key.expr, chain.projection) {
        (Expr::Column(column), Some(projection)) => {
            match projection.schema.index_of_column(column) {
                Ok(i) => (projection.expr[i].clone(), false),
                Err(_) => return Ok(None),
            }
        }
        (expr, projection) => (expr.clone(), projection.is_some()),
    };
    let Some((column, metric, query)) = distance_call(&distance) else {
        return Ok(None);
    };
    let (query, parameter) = match (query, kind) {
        (QueryVector::Constant(query), QueryKind::Constant) => (query, None),
        (QueryVector::Parameter(id), QueryKind::Parameter) => (Vec::new(), Some(id)),
        _ => return Ok(None),
    };
    // A distance over the projection's output must read a table column
    // passed through unchanged (not a computed one, such as EMBED(body)).
    if over_projection
        && let Some(projection) = chain.projection
        && !projection
            .schema
            .index_of_column(&column)
            .is_ok_and(|i| matches!(projection.expr[i].clone().unalias_nested().data, Expr::Column(c) if c.name == column.name))
    {
        return Ok(None);
    }
    let provider = source_as_provider(&chain.scan.source)?;
    let any: &dyn Any = provider.as_ref();
    let Some(table) = any.downcast_ref::<DurableTable>() else {
        return Ok(None);
    };
    let Ok(field) = table.schema().field_with_name(&column.name).cloned() else {
        return Ok(None);
    };
    let index = table
        .vector_indexes()
        .into_iter()
        .find(|i| i.column == column.name && i.metric.sql_metric() == metric);
    match field.data_type() {
        DataType::FixedSizeList(item, n)
            if (parameter.is_some() || *n as usize == query.len())
                && item.data_type() == &DataType::Float32 => {}
        // A dimension mismatch: the exact plan reports it.
        _ => return Ok(None),
    }
    if !chain.scan.filters.is_empty() || chain.scan.fetch.is_some() {
        return Ok(None);
    }
    let vector_present = |c: &Expr| matches!(c, Expr::IsNotNull(e) if matches!(e.as_ref(), Expr::Column(c) if c.name == column.name));
    let (filter, keep_nulls) = match chain.filter {
        Some(filter)
            if filter.exists(|e| {
                Ok(needs_more_than_its_row(e) || matches!(e, Expr::Placeholder(_)))
            })? =>
        {
            return Ok(None);
        }
        Some(filter) => {
            let conjuncts = unqualified(filter.clone())?;
            let conjuncts = split_conjunction(&conjuncts);
            // The search skips NULL vectors itself when told to; evaluating
            // this would read every vector to plan.
            let keep_nulls = !conjuncts.iter().any(|c| vector_present(c));
            (
                conjunction(
                    conjuncts
                        .into_iter()
                        .filter(|c| !vector_present(c))
                        .cloned(),
                ),
                keep_nulls,
            )
        }
        None => (None, true),
    };
    let request_ranked = parameter.is_some();
    let request = SearchRequest {
        index: index.as_ref().map(|i| i.name.clone()),
        column: column.name.clone(),
        metric,
        query,
        ranked: parameter.is_some(),
        parameter,
        k,
        filter,
        keep_nulls,
    };
    let searched = TableScanBuilder::new(
        chain.scan.table_name.clone(),
        provider_as_source(Arc::new(IndexedTopK {
            table: Arc::clone(&provider),
            request,
        })),
    )
    .with_projection(chain.scan.projection.clone())
    .build()?;
    let mut input = LogicalPlan::TableScan(searched);
    if let Some(alias) = chain.alias {
        input = LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
            Arc::new(input),
            alias.alias.clone(),
        )?);
    }
    if request_ranked {
        // The projection below the sort computed the sort key (the
        // distance to the parameter) for the sort alone: the search ranks
        // its rows itself, and no operator could hold the parameter.
        if let Some(projection) = chain.projection {
            let kept: Vec<Expr> = projection
                .expr
                .iter()
                .filter(|e| {
                    !e.exists(|e| Ok(matches!(e, Expr::Placeholder(_))))
                        .unwrap_or(true)
                })
                .cloned()
                .collect();
            input = LogicalPlan::Projection(Projection::try_new(kept, Arc::new(input))?);
        }
        return Ok(Some(input));
    }
    if let Some(projection) = chain.projection {
        input = LogicalPlan::Projection(Projection::try_new_with_schema(
            projection.expr.clone(),
            Arc::new(input),
            Arc::clone(&projection.schema),
        )?);
    }
    Ok(Some(LogicalPlan::Sort(Sort {
        expr: sort.expr.clone(),
        input: Arc::new(input),
        fetch: sort.fetch,
    })))
}

/// Projection? → Filter? → SubqueryAlias? → TableScan below a sort.
fn chain_below(plan: &LogicalPlan) -> Option<Chain<'_>> {
    let (projection, plan) = match plan {
        LogicalPlan::Projection(p) => (Some(p), p.input.as_ref()),
        other => (None, other),
    };
    let (filter, plan) = match plan {
        LogicalPlan::Filter(f) => (Some(&f.predicate), f.input.as_ref()),
        other => (None, other),
    };
    let (alias, plan) = match plan {
        LogicalPlan::SubqueryAlias(a) => (Some(a), a.input.as_ref()),
        other => (None, other),
    };
    match plan {
        LogicalPlan::TableScan(scan) => Some(Chain {
            projection,
            filter,
            alias,
            scan,
        }),
        _ => None,
    }
}

/// `(column, metric, query)` of `<metric>(column, query vector)` (either
/// order), the query a constant vector or a parameter (cast to a vector
/// or not).
fn distance_call(expr: &Expr) -> Option<(Column, Metric, QueryVector)> {
    let Expr::ScalarFunction(call) = expr.clone().unalias_nested().data else {
        return None;
    };
    let metric = Metric::ALL
        .into_iter()
        .find(|m| m.function_name() == call.func.name())?;
    match call.args.as_slice() {
        [Expr::Column(column), Expr::Literal(value, _)]
        | [Expr::Literal(value, _), Expr::Column(column)] => Some((
            column.clone(),
            metric,
            QueryVector::Constant(query_vector(value)?),
        )),
        [Expr::Column(column), query] | [query, Expr::Column(column)] => Some((
            column.clone(),
            metric,
            QueryVector::Parameter(parameter_vector(query)?),
        )),
        _ => None,
    }
}

/// The id of a parameter standing for a query vector: `$n`, `$n` cast to
/// a vector of float4, or `$n` parsed as vector text (`$n::vector(3)` with
/// a text parameter plans as `vector_in(CAST($n AS Utf8))`).
pub(crate) fn parameter_vector(expr: &Expr) -> Option<String> {
    let inner = match expr {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) if matches!(field.data_type(), DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32) => {
            expr.as_ref()
        }
        Expr::ScalarFunction(call) if call.func.name() == "vector_in" => match call.args.as_slice()
        {
            [arg] => arg,
            _ => return None,
        },
        other => other,
    };
    let inner = match inner {
        Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => expr.as_ref(),
        other => other,
    };
    match inner {
        Expr::Placeholder(placeholder) => Some(placeholder.id.clone()),
        _ => None,
    }
}

/// A durable table seen through one vector top-k: its scan is the search.
#[derive(Debug)]
pub struct IndexedTopK {
    table: Arc<dyn TableProvider>,
    request: SearchRequest,
}

#[async_trait]
impl TableProvider for IndexedTopK {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
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
            DataFusionError::Internal("vector search over a non-durable table".into())
        })?;
        table
            .plan_vector_search(state, &self.request, projection)
            .await
    }
}
