//! Plans a continuous query's `GROUP BY` into its operator: an updating
//! [`AggregateOperator`], a [`WindowAggregateOperator`] (`GROUP BY
//! window_start, window_end, …` over TUMBLE or HOP), or a
//! [`SessionOperator`] (over SESSION).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Aggregate, Expr};
use datafusion::physical_expr::aggregate::{AggregateFunctionExpr, LoweredAggregateBuilder};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use sluice_types::error::{SluiceError, SqlState};

use super::keyed::KeyedAggregate;
use super::operator::AggregateOperator;
use super::session::{GroupRole, SessionOperator};
use super::state::AggregateStrategy;
use super::window::WindowAggregateOperator;
use crate::rewrite::window_tvf::SessionSpec;
use crate::streaming::operator::StreamOperator;

/// A planned `GROUP BY`.
pub struct PlannedAggregate {
    /// Its operator.
    pub operator: Box<dyn StreamOperator>,
    /// Whether it takes only inserts and emits final rows (windows,
    /// sessions); otherwise it retracts and re-emits groups.
    pub append_only: bool,
}

/// Plans `aggregate`. Its input deletes rows if `input_retracts`, and has a
/// watermark unless `no_watermark` says why not; `session` is the query's
/// SESSION window, if it has one. A
/// grouped aggregate runs as `parallelism` copies keyed by its groups
/// ([`KeyedAggregate`]) when that is more than one.
pub fn plan_aggregate(
    state: &SessionState,
    aggregate: &Aggregate,
    input_retracts: bool,
    no_watermark: Option<&str>,
    session: Option<&SessionSpec>,
    parallelism: usize,
) -> Result<PlannedAggregate> {
    let (group_exprs, group_types) = group_columns(state, aggregate)?;
    let name_of = |i: usize| match &aggregate.group_expr[i] {
        Expr::Column(column) => Some(column.name.as_str()),
        _ => None,
    };
    let position = |name: &str| (0..group_exprs.len()).find(|&i| name_of(i) == Some(name));
    let windowed = match (position("window_start"), position("window_end")) {
        (Some(_), Some(end)) => Some(end),
        _ => None,
    };
    if windowed.is_some()
        && let Some(why) = no_watermark
    {
        return Err(unsupported(format!(
            "a windowed aggregate emits a window when the watermark passes its end, and {why}"
        )));
    }
    let output_schema = Arc::new(aggregate.schema.as_arrow().clone());
    match (windowed, session) {
        (Some(_), Some(session)) => {
            let roles = (0..group_exprs.len())
                .map(|i| match name_of(i) {
                    Some("window_start") => Ok(GroupRole::Start),
                    Some("window_end") => Ok(GroupRole::End),
                    Some("window_time") => Ok(GroupRole::Time),
                    name => Ok(GroupRole::Key {
                        partition: name
                            .is_some_and(|n| session.partition_by.iter().any(|p| p == n)),
                    }),
                })
                .collect::<Result<Vec<_>>>()?;
            for column in &session.partition_by {
                if position(column).is_none() {
                    return Err(unsupported(format!(
                        "SESSION(… PARTITION BY {column} …): group by {column} too, so each \
                         session's rows are one partition's"
                    )));
                }
            }
            let copy = || -> Result<Box<dyn StreamOperator>> {
                let (aggregates, strategies) = aggregate_functions(state, aggregate, false)?;
                Ok(Box::new(SessionOperator::try_new(
                    group_exprs.clone(),
                    roles.clone(),
                    group_types.clone(),
                    aggregates,
                    strategies,
                    session.gap_nanos,
                    Arc::clone(&output_schema),
                )?))
            };
            // Sessions merge within a partition only: copies keyed by the
            // partition columns (the same row bytes a session checkpoint
            // holds in its first column, so a restore splits alike).
            let partition: Vec<usize> = (0..roles.len())
                .filter(|&i| roles[i] == GroupRole::Key { partition: true })
                .collect();
            let operator: Box<dyn StreamOperator> = if parallelism > 1 && !partition.is_empty() {
                let copies = (0..parallelism)
                    .map(|_| copy())
                    .collect::<Result<Vec<_>>>()?;
                Box::new(KeyedAggregate::try_new(
                    copies,
                    partition
                        .iter()
                        .map(|&i| Arc::clone(&group_exprs[i]))
                        .collect(),
                    partition.iter().map(|&i| group_types[i].clone()).collect(),
                    "partition key",
                )?)
            } else {
                copy()?
            };
            Ok(PlannedAggregate {
                operator,
                append_only: true,
            })
        }
        (windowed, _) => {
            let copy = || -> Result<Box<dyn StreamOperator>> {
                let (aggregates, strategies) =
                    aggregate_functions(state, aggregate, input_retracts && windowed.is_none())?;
                Ok(match windowed {
                    Some(window_end) => Box::new(WindowAggregateOperator::try_new(
                        group_exprs.clone(),
                        group_types.clone(),
                        window_end,
                        aggregates,
                        Arc::clone(&output_schema),
                    )?),
                    None => Box::new(AggregateOperator::try_new(
                        group_exprs.clone(),
                        group_types.clone(),
                        aggregates,
                        strategies,
                        input_retracts,
                        Arc::clone(&output_schema),
                    )?),
                })
            };
            let append_only = windowed.is_some();
            let operator: Box<dyn StreamOperator> = if parallelism > 1 && !group_exprs.is_empty() {
                let copies = (0..parallelism)
                    .map(|_| copy())
                    .collect::<Result<Vec<_>>>()?;
                Box::new(KeyedAggregate::try_new(
                    copies,
                    group_exprs.clone(),
                    group_types.clone(),
                    "group key",
                )?)
            } else {
                copy()?
            };
            Ok(PlannedAggregate {
                append_only,
                operator,
            })
        }
    }
}

/// The group-by expressions, physical, and their types.
type GroupColumns = (Vec<Arc<dyn PhysicalExpr>>, Vec<DataType>);

fn group_columns(state: &SessionState, aggregate: &Aggregate) -> Result<GroupColumns> {
    let input = aggregate.input.schema();
    let planning = PhysicalPlanningContext::default();
    let mut exprs = Vec::with_capacity(aggregate.group_expr.len());
    let mut types = Vec::with_capacity(aggregate.group_expr.len());
    for expr in &aggregate.group_expr {
        if matches!(expr, Expr::GroupingSet(_)) {
            return Err(unsupported(
                "cannot run incrementally: GROUPING SETS, CUBE and ROLLUP are not supported in \
                 continuous queries yet",
            ));
        }
        let physical = create_physical_expr(expr, input, state.execution_props(), &planning)?;
        types.push(physical.data_type(input.as_arrow())?);
        exprs.push(physical);
    }
    Ok((exprs, types))
}

/// The aggregate functions, physical, each with how it keeps its state
/// (`retracting`: it must take deletes).
fn aggregate_functions(
    state: &SessionState,
    aggregate: &Aggregate,
    retracting: bool,
) -> Result<(Vec<Arc<AggregateFunctionExpr>>, Vec<AggregateStrategy>)> {
    let input = aggregate.input.schema();
    let arrow_input = input.as_arrow();
    let planning = PhysicalPlanningContext::default();
    let mut aggregates = Vec::with_capacity(aggregate.aggr_expr.len());
    let mut strategies = Vec::with_capacity(aggregate.aggr_expr.len());
    for expr in &aggregate.aggr_expr {
        let lowered = LoweredAggregateBuilder::new(
            expr,
            input,
            arrow_input,
            state.execution_props(),
            &planning,
        )
        .build()?;
        if lowered.filter.is_some() || !lowered.order_bys.is_empty() {
            return Err(unsupported(format!(
                "cannot run incrementally: {expr}: FILTER and ORDER BY inside aggregates are not \
                 supported in continuous queries yet"
            )));
        }
        let argument_types = lowered
            .aggregate
            .expressions()
            .iter()
            .map(|e| e.data_type(arrow_input))
            .collect::<Result<Vec<_>>>()?;
        strategies.push(AggregateStrategy::choose(
            &lowered.aggregate,
            &argument_types,
            retracting,
        )?);
        aggregates.push(lowered.aggregate);
    }
    Ok((aggregates, strategies))
}

fn unsupported(message: impl Into<String>) -> DataFusionError {
    SluiceError::new(SqlState::FEATURE_NOT_SUPPORTED, message).into()
}
