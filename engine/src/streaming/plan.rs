//! Plans a continuous query: the query goes through the one planning
//! pipeline ([`crate::planner`]) like any other, then its logical plan is
//! cut into stages that run incrementally:
//!
//! - a **stateless** stage for every run of projections, filters, aliases
//!   and unions (planned and optimised by DataFusion as a sub-plan whose
//!   leaf is the stage's input, see [`super::feed`]);
//! - an **aggregate** stage for every `GROUP BY` ([`AggregateOperator`]),
//!   windowed when it groups by `window_start, window_end` (TUMBLE, HOP).
//!
//! Anything else is refused with an error that names the part of the query
//! and why it cannot run incrementally yet.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, TableScan};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast;
use sluice_types::error::{SluiceError, SqlState};

use super::aggregate::{AggregateOperator, AggregateStrategy, Emission};
use super::feed::{FeedNode, FeedPlanner, FeedSlot};
use super::operator::StreamOperator;
use super::source::files::{FileSource, FilesTable};
use super::source::{
    GeneratorSource, GeneratorTable, StreamSource, TableSource, ViewSource, WatermarkTracker,
};
use super::stateless::StatelessOperator;
use super::view::MaterializedViewTable;
use crate::planner;
use crate::sql::watermark::WatermarkSpec;
use crate::storage::DurableTable;

/// A continuous query ready to start.
pub struct PlannedQuery {
    /// Where its rows come from.
    pub source: Box<dyn StreamSource>,
    /// The table it reads.
    pub source_table: TableReference,
    /// Its stages, source side first.
    pub operators: Vec<Box<dyn StreamOperator>>,
    /// The rows it produces.
    pub output_schema: SchemaRef,
    /// Whether it takes only inserts from its source (a windowed stage).
    pub append_only: bool,
    /// Whether its output retracts rows (deletes as well as inserts).
    pub updating: bool,
}

/// Plans `query` as a continuous query.
pub async fn plan_continuous_query(
    ctx: &SessionContext,
    query: &ast::Query,
) -> Result<PlannedQuery> {
    let statement =
        DFStatement::Statement(Box::new(ast::Statement::Query(Box::new(query.clone()))));
    let plan = planner::plan_statement(ctx, &statement).await?;
    let plan = planner::bind_and_fold(ctx, plan, None).await?;
    // The analyzer's rules (type coercion, Sluice's types), but not the
    // optimizer's: they would reshape the plan (DISTINCT aggregates into
    // two levels of GROUP BY) where the stages are cut. Each stateless
    // stage is optimised on its own below.
    let state = ctx.state();
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})?;
    let output_schema = Arc::new(plan.schema().as_arrow().clone());

    let mut splitter = Splitter::default();
    let top = splitter.split(&plan)?;
    splitter.push_stateless(top);
    let Some(scan) = splitter.source else {
        return Err(unsupported(
            "a continuous query reads a table: this one reads none",
        ));
    };

    let provider = source_as_provider(&scan.source)?;
    let BoundSource {
        source,
        watermark,
        retracts,
    } = table_source(&scan.table_name, provider).await?;

    // Stages run one batch at a time: one partition, no exchanges.
    let state = SessionStateBuilder::new_from_existing(ctx.state())
        .with_config(ctx.state().config().clone().with_target_partitions(1))
        .build();
    let task = Arc::new(TaskContext::from(&state));
    let mut operators: Vec<Box<dyn StreamOperator>> = Vec::new();
    let mut append_only = false;
    let mut updating = retracts;
    for stage in splitter.stages {
        operators.push(match stage {
            Stage::Stateless(fragment) => {
                Box::new(stateless_operator(&state, fragment, Arc::clone(&task)).await?)
            }
            Stage::Aggregate(aggregate) => {
                let operator = aggregate_operator(&state, &aggregate, watermark.is_some(), &scan)?;
                // A window's rows are final; a group's are replaced.
                updating = !operator.is_append_only();
                append_only |= operator.is_append_only();
                Box::new(operator)
            }
        });
    }
    Ok(PlannedQuery {
        source,
        source_table: scan.table_name.clone(),
        operators,
        output_schema,
        append_only,
        updating,
    })
}

/// A stage before it is planned physically.
enum Stage {
    Stateless(LogicalPlan),
    Aggregate(Aggregate),
}

#[derive(Default)]
struct Splitter {
    source: Option<TableScan>,
    stages: Vec<Stage>,
}

impl Splitter {
    /// Returns `plan` with everything below its top stateless part replaced
    /// by a [`FeedNode`]; the stages that compute that input are pushed.
    fn split(&mut self, plan: &LogicalPlan) -> Result<LogicalPlan> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                self.bind_source(scan)?;
                Ok(FeedNode::plan(0, Arc::clone(plan.schema())))
            }
            LogicalPlan::Aggregate(aggregate) => {
                let input = self.split(&aggregate.input)?;
                self.push_stateless(input);
                self.stages.push(Stage::Aggregate(aggregate.clone()));
                Ok(FeedNode::plan(0, Arc::clone(plan.schema())))
            }
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Union(_) => {
                refuse_subqueries(plan)?;
                Ok(plan
                    .clone()
                    .map_children(|child| Ok(Transformed::yes(self.split(&child)?)))?
                    .data)
            }
            other => Err(not_incremental(other)),
        }
    }

    /// Adds a stateless stage, unless it is only its input passed through.
    fn push_stateless(&mut self, fragment: LogicalPlan) {
        if !matches!(fragment, LogicalPlan::Extension(_)) {
            self.stages.push(Stage::Stateless(fragment));
        }
    }

    fn bind_source(&mut self, scan: &TableScan) -> Result<()> {
        match &self.source {
            Some(bound) if bound.table_name != scan.table_name => Err(unsupported(format!(
                "a continuous query reads one table for now; this one reads {} and {}",
                bound.table_name, scan.table_name
            ))),
            _ => {
                self.source = Some(scan.clone());
                Ok(())
            }
        }
    }
}

/// A subquery inside an expression would be run once per batch against
/// the table as it is then, not kept up to date: refused until it can be.
fn refuse_subqueries(plan: &LogicalPlan) -> Result<()> {
    for expr in plan.expressions() {
        let has_subquery = expr.exists(|e| {
            Ok(matches!(
                e,
                Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
            ))
        })?;
        if has_subquery {
            return Err(unsupported(format!(
                "cannot run incrementally: the subquery in {expr} would not follow its table; \
                 subqueries are not supported in continuous queries yet"
            )));
        }
    }
    Ok(())
}

fn unsupported(message: impl Into<String>) -> DataFusionError {
    SluiceError::new(SqlState::FEATURE_NOT_SUPPORTED, message).into()
}

/// Why `plan` cannot be part of a continuous query.
fn not_incremental(plan: &LogicalPlan) -> DataFusionError {
    let why = match plan {
        LogicalPlan::Sort(_) => {
            "ORDER BY: a materialized view keeps no order; order its rows when you query it"
                .to_string()
        }
        LogicalPlan::Limit(_) => {
            "LIMIT/OFFSET: the first n rows of a changing result are not kept incrementally"
                .to_string()
        }
        LogicalPlan::Join(_) => "joins are not supported in continuous queries yet".to_string(),
        LogicalPlan::Window(_) => {
            "window functions (OVER …) are not supported in continuous queries; use TUMBLE or \
             HOP with GROUP BY"
                .to_string()
        }
        LogicalPlan::Distinct(_) => {
            "DISTINCT is not supported in continuous queries yet; use GROUP BY".to_string()
        }
        LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => {
            "a continuous query reads a table: constant rows never change".to_string()
        }
        other => format!(
            "{} is not supported in continuous queries",
            other
                .display()
                .to_string()
                .split(':')
                .next()
                .unwrap_or("this operator")
        ),
    };
    unsupported(format!("cannot run incrementally: {why}"))
}

/// A query's source, opened.
struct BoundSource {
    source: Box<dyn StreamSource>,
    /// The watermark the table declares.
    watermark: Option<WatermarkSpec>,
    /// Whether the source can delete rows it produced.
    retracts: bool,
}

/// Opens the source for `table`: a Sluice table, a generator or a
/// materialized view.
async fn table_source(
    table: &TableReference,
    provider: Arc<dyn TableProvider>,
) -> Result<BoundSource> {
    let any: &dyn std::any::Any = provider.as_ref();
    if let Some(generator) = any.downcast_ref::<GeneratorTable>() {
        return Ok(BoundSource {
            source: Box::new(GeneratorSource::new(generator)?),
            watermark: WatermarkSpec::from_schema(&generator.schema()),
            retracts: false,
        });
    }
    if let Some(files) = any.downcast_ref::<FilesTable>() {
        return Ok(BoundSource {
            source: Box::new(FileSource::new(files)?),
            watermark: WatermarkSpec::from_schema(&files.schema()),
            retracts: false,
        });
    }
    if let Some(view) = any.downcast_ref::<MaterializedViewTable>() {
        return Ok(BoundSource {
            source: Box::new(ViewSource::new(&table.to_string(), view.view())?),
            watermark: None,
            retracts: view.view().is_updating(),
        });
    }
    let Some(durable) = any.downcast_ref::<DurableTable>() else {
        return Err(unsupported(format!(
            "{table} cannot be read by a continuous query: Sluice tables, connector tables and \
             materialized views are sources"
        )));
    };
    let schema = durable.schema();
    let spec = WatermarkSpec::from_schema(&schema);
    let tracker = match &spec {
        Some(spec) => {
            let column = schema.index_of(&spec.column)?;
            Some(WatermarkTracker::new(column, spec))
        }
        None => None,
    };
    let subscription = durable.subscribe().await;
    Ok(BoundSource {
        source: Box::new(TableSource::new(subscription, tracker)),
        watermark: spec,
        retracts: true,
    })
}

async fn stateless_operator(
    state: &SessionState,
    fragment: LogicalPlan,
    task: Arc<TaskContext>,
) -> Result<StatelessOperator> {
    let mut input_schema = None;
    fragment.apply(|node| {
        if let LogicalPlan::Extension(extension) = node
            && let Some(feed) = extension.node.as_any().downcast_ref::<FeedNode>()
        {
            input_schema = Some(Arc::new(feed.schema.as_arrow().clone()));
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    let input_schema = input_schema
        .ok_or_else(|| DataFusionError::Internal("a stateless stage without input".into()))?;
    let slot = Arc::new(FeedSlot::default());
    let optimized = state.optimize(&fragment)?;
    let planner =
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(FeedPlanner::new(vec![
            Arc::clone(&slot),
        ]))]);
    let plan = planner.create_physical_plan(&optimized, state).await?;
    Ok(StatelessOperator::new(plan, slot, input_schema, task))
}

fn aggregate_operator(
    state: &SessionState,
    aggregate: &Aggregate,
    has_watermark: bool,
    scan: &TableScan,
) -> Result<AggregateOperator> {
    let input = aggregate.input.schema();
    let arrow_input = input.as_arrow();
    let props = state.execution_props();
    let planning = PhysicalPlanningContext::default();
    let mut group_exprs = Vec::with_capacity(aggregate.group_expr.len());
    let mut group_types: Vec<DataType> = Vec::with_capacity(aggregate.group_expr.len());
    let mut window_start = false;
    let mut window_end = None;
    for (i, expr) in aggregate.group_expr.iter().enumerate() {
        if matches!(expr, Expr::GroupingSet(_)) {
            return Err(unsupported(
                "cannot run incrementally: GROUPING SETS, CUBE and ROLLUP are not supported in \
                 continuous queries yet",
            ));
        }
        if let Expr::Column(column) = expr {
            match column.name.as_str() {
                "window_start" => window_start = true,
                "window_end" => window_end = Some(i),
                _ => {}
            }
        }
        let physical = create_physical_expr(expr, input, props, &planning)?;
        group_types.push(physical.data_type(arrow_input)?);
        group_exprs.push(physical);
    }
    let emission = match window_end {
        Some(window_end) if window_start => {
            if !has_watermark {
                return Err(unsupported(format!(
                    "a windowed aggregate emits a window when the watermark passes its end, and \
                     {} declares no watermark: add `WATERMARK FOR <column> AS <column> - \
                     INTERVAL '…'` to its CREATE TABLE",
                    scan.table_name
                )));
            }
            Emission::OnWindowClose { window_end }
        }
        _ => Emission::Updating,
    };
    let mut aggregates = Vec::with_capacity(aggregate.aggr_expr.len());
    let mut strategies = Vec::with_capacity(aggregate.aggr_expr.len());
    for expr in &aggregate.aggr_expr {
        let lowered =
            LoweredAggregateBuilder::new(expr, input, arrow_input, props, &planning).build()?;
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
            matches!(emission, Emission::Updating),
        )?);
        aggregates.push(lowered.aggregate);
    }
    AggregateOperator::try_new(
        group_exprs,
        group_types,
        aggregates,
        strategies,
        emission,
        Arc::new(aggregate.schema.as_arrow().clone()),
    )
}
