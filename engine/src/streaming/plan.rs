//! Plans a continuous query: the query goes through the one planning
//! pipeline ([`crate::planner`]) like any other, then its logical plan is
//! cut into stages that run incrementally:
//!
//! - a **stateless** stage for every run of projections, filters, aliases
//!   and unions (planned and optimised by DataFusion as a sub-plan whose
//!   leaf is the stage's input, see [`super::feed`]);
//! - an **aggregate** stage for every `GROUP BY` ([`AggregateOperator`]),
//!   windowed when it groups by `window_start, window_end` (TUMBLE, HOP);
//! - a **union** stage where the branches of a `UNION ALL` over different
//!   tables meet ([`UnionOperator`]), each branch split on its own;
//! - a **join** stage where two branches meet ([`KeyedJoin`]): each side
//!   (a table, or a join in turn) is split on its own into the stages
//!   before the join, and the join with the projections and filters above
//!   it runs as one DataFusion sub-plan over two feeds.
//!
//! Anything else is refused with an error that names the part of the query
//! and why it cannot run incrementally yet.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::DFSchemaRef;
use datafusion::common::TableReference;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Aggregate, Distinct, Expr, JoinType, LogicalPlan, LogicalPlanBuilder, TableScan,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast;
use futures::future::BoxFuture;
use sluice_types::error::{SluiceError, SqlState};

use sluice_functions::model::calls::CallKind;

use super::aggregate::plan_aggregate;
use super::feed::{FeedNode, FeedPlanner, FeedSlot};
use super::join::{JoinOperator, KeyedJoin, join_keys, time_bounds};
use super::operator::StreamOperator;
use super::parallel::HeadStages;
use super::pipeline::{JoinStep, Meeting, Pipeline, Stream};
use super::source::files::{FileSource, FilesTable};
use super::source::nats::{NatsSource, NatsTable};
use super::source::{
    GeneratorSource, GeneratorTable, StreamSource, TableSource, ViewSource, WatermarkTracker,
};
use super::stateless::StatelessOperator;
use super::union::UnionOperator;
use super::view::MaterializedViewTable;
use crate::planner;
use crate::rewrite::async_calls;
use crate::rewrite::window_tvf::{self, SessionSpec};
use crate::sql::watermark::WatermarkSpec;
use crate::storage::DurableTable;

/// A continuous query ready to start.
pub struct PlannedQuery {
    /// Where its rows come from, one source per input (a join's left first).
    pub sources: Vec<Box<dyn StreamSource>>,
    /// The tables it reads, one per source.
    pub source_tables: Vec<TableReference>,
    /// Per source, copies of the stateless stages that run first, in
    /// parallel (empty: none, as with parallelism 1).
    pub heads: Vec<Vec<HeadStages>>,
    /// Its operators.
    pub pipeline: Pipeline,
    /// The rows it produces.
    pub output_schema: SchemaRef,
    /// Whether it takes only inserts from its sources (a windowed stage or
    /// an interval join).
    pub append_only: bool,
    /// Whether its output retracts rows (deletes as well as inserts).
    pub updating: bool,
    /// Whether its head stages call a model: the query is then cut into
    /// two regions at a durable log of their outputs.
    pub region_cut: bool,
}

/// Plans `query` as a continuous query whose stateless stages at the head of
/// each input run on `parallelism` batches at once.
pub async fn plan_continuous_query(
    ctx: &SessionContext,
    query: &ast::Query,
    parallelism: usize,
) -> Result<PlannedQuery> {
    // SESSION windows become proto-sessions merged by the aggregate.
    let mut query = query.clone();
    let mut sessions = window_tvf::rewrite_for_streaming(&mut query)?;
    if sessions.len() > 1 {
        return Err(unsupported(
            "cannot run incrementally: a continuous query has one SESSION window for now",
        ));
    }
    let statement = DFStatement::Statement(Box::new(ast::Statement::Query(Box::new(query))));
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
    // The aggregate operator evaluates its arguments synchronously: model
    // calls in them run in a projection below it instead.
    let plan = async_calls::project_aggregate_calls(plan)?;
    let output_schema = Arc::new(plan.schema().as_arrow().clone());

    let mut splitter = Splitter::default();
    let top = splitter.split(&plan)?;
    splitter.push_stateless(top);

    // Stages run one batch at a time: one partition, no exchanges.
    let state = SessionStateBuilder::new_from_existing(ctx.state())
        .with_config(ctx.state().config().clone().with_target_partitions(1))
        .build();
    let mut builder = ChainBuilder {
        state,
        task: None,
        append_only: false,
        updating: false,
        session: sessions.pop(),
        parallelism,
    };
    builder.task = Some(Arc::new(TaskContext::from(&builder.state)));
    let single = splitter.join_inputs.is_empty();
    let mut assembly = Assembly::default();
    builder.branch(splitter, &mut assembly).await?;
    let pipeline = Pipeline::joined(assembly.inputs, assembly.joins)?;
    Ok(PlannedQuery {
        sources: assembly.sources,
        source_tables: assembly.source_tables,
        heads: assembly.heads,
        pipeline,
        output_schema,
        append_only: builder.append_only,
        updating: builder.updating,
        // The log after the model calls is cut for a query over one
        // input; a joined query is one region.
        region_cut: single && assembly.calls_a_model,
    })
}

/// Whether `plan` calls a model (EMBED, ML_PREDICT): where a query's
/// regions are cut, so that a failure after it never runs the model again.
fn calls_a_model(plan: &LogicalPlan) -> bool {
    plan.exists(|node| {
        Ok(node.expressions().iter().any(|expr| {
            expr.exists(|e| {
                Ok(matches!(e, Expr::ScalarFunction(f)
                    if CallKind::of_function(f.name()).is_some()))
            })
            .unwrap_or(false)
        }))
    })
    .unwrap_or(false)
}

/// Why a windowed aggregate over `scan`'s rows would get no watermark.
fn missing_watermark(scan: &TableScan, bound: &BoundSource) -> Option<String> {
    bound.watermark.is_none().then(|| {
        format!(
            "{} declares no watermark: add `WATERMARK FOR <column> AS <column> - INTERVAL '…'` \
             to its CREATE TABLE",
            scan.table_name
        )
    })
}

/// What planning a query's branches gathers, input by input and join by
/// join (each join after the joins it reads).
#[derive(Default)]
struct Assembly {
    sources: Vec<Box<dyn StreamSource>>,
    source_tables: Vec<TableReference>,
    heads: Vec<Vec<HeadStages>>,
    inputs: Vec<Vec<Box<dyn StreamOperator>>>,
    joins: Vec<JoinStep>,
    /// Whether an input's head stages call a model.
    calls_a_model: bool,
}

/// A planned branch of the query.
struct Branch {
    /// Where its rows come out.
    stream: Stream,
    /// Its event-time column as its source stamps it: rows straight from
    /// a table with a watermark, maybe projected (what an interval join
    /// bounds).
    event_time: Option<String>,
    /// Whether watermarks come out of it.
    watermarked: bool,
}

/// Plans stages into operators, tracking what they make of the output.
struct ChainBuilder {
    state: SessionState,
    task: Option<Arc<TaskContext>>,
    /// Whether a stage so far takes only inserts.
    append_only: bool,
    /// Whether the rows at this point retract.
    updating: bool,
    /// The query's SESSION window, if it has one.
    session: Option<SessionSpec>,
    /// Tasks a grouped aggregate's groups are spread over.
    parallelism: usize,
}

impl ChainBuilder {
    fn task(&self) -> Result<Arc<TaskContext>> {
        self.task
            .clone()
            .ok_or_else(|| DataFusionError::Internal("no task context".into()))
    }

    /// Plans `splitter`'s branch: an input (a source and its stages), or a
    /// join of two branches and the stages after it, into `assembly`.
    fn branch<'a>(
        &'a mut self,
        splitter: Splitter,
        assembly: &'a mut Assembly,
    ) -> BoxFuture<'a, Result<Branch>> {
        Box::pin(async move {
            if splitter.join_inputs.is_empty() {
                return self.input(splitter, assembly).await;
            }
            let mut sides = Vec::with_capacity(splitter.join_inputs.len());
            let mut event_times = [None, None];
            let mut retracts = false;
            let mut watermarked = true;
            for (side, input) in splitter.join_inputs.into_iter().enumerate() {
                let branch = self.branch(input, assembly).await?;
                retracts |= self.updating;
                watermarked &= branch.watermarked;
                if let Some(time) = event_times.get_mut(side) {
                    *time = branch.event_time;
                }
                sides.push(branch.stream);
            }
            let mut stages = splitter.stages.into_iter();
            let fragment = match stages.next() {
                Some(Stage::Join(fragment)) => fragment,
                Some(Stage::Union(fragment)) => {
                    let union = self.union(fragment, sides.len()).await?;
                    // Each side's changes pass through, retractions too.
                    self.updating = retracts;
                    let no_watermark = (!watermarked).then(|| {
                        "a side of the UNION has no watermark: every side must declare one \
                         for windows after it"
                            .to_string()
                    });
                    let chain = self.chain(stages.collect(), no_watermark).await?;
                    assembly.joins.push(JoinStep {
                        meeting: Meeting::Union(union),
                        sides,
                        chain,
                    });
                    return Ok(Branch {
                        stream: Stream::Join(assembly.joins.len() - 1),
                        event_time: None,
                        watermarked,
                    });
                }
                _ => {
                    return Err(DataFusionError::Internal(
                        "a branch that meets others starts with its join or union".into(),
                    ));
                }
            };
            let join = self.join(fragment, event_times).await?;
            let is_interval = join.is_interval();
            let no_watermark = (!join.is_interval()).then(|| {
                "a regular join passes on no watermark (a new row may pair with a row of any \
                 age): bound its inputs' event times against each other, e.g. `ON a.ts BETWEEN \
                 b.ts - INTERVAL '5' SECOND AND b.ts + INTERVAL '5' SECOND`, to make it an \
                 interval join"
                    .to_string()
            });
            // Expired rows cannot be retracted: an interval join's inputs
            // are append-only.
            self.append_only |= join.is_interval();
            // An outer join takes back NULL-padded rows whatever its
            // inputs do.
            self.updating = (retracts && !join.is_interval()) || join.is_outer();
            let chain = self.chain(stages.collect(), no_watermark).await?;
            assembly.joins.push(JoinStep {
                meeting: Meeting::Join(Box::new(join)),
                sides,
                chain,
            });
            Ok(Branch {
                stream: Stream::Join(assembly.joins.len() - 1),
                event_time: None,
                // A regular join passes on no watermark.
                watermarked: watermarked && is_interval,
            })
        })
    }

    /// Plans an input branch: `splitter`'s source and its stages.
    async fn input(&mut self, splitter: Splitter, assembly: &mut Assembly) -> Result<Branch> {
        let Some(scan) = splitter.source else {
            return Err(unsupported(
                "a continuous query reads a table: this one reads none",
            ));
        };
        let bound = open_source(&scan).await?;
        let event_time = splitter
            .stages
            .iter()
            .all(|stage| matches!(stage, Stage::Stateless(_)))
            .then(|| bound.watermark.as_ref().map(|w| w.column.clone()))
            .flatten();
        self.updating = bound.retracts;
        let (head, stages, calls_a_model) = self.head(splitter.stages, self.parallelism).await?;
        assembly.calls_a_model |= calls_a_model;
        assembly.heads.push(head);
        let chain = self.chain(stages, missing_watermark(&scan, &bound)).await?;
        assembly.inputs.push(chain);
        assembly.sources.push(bound.source);
        assembly.source_tables.push(scan.table_name);
        Ok(Branch {
            stream: Stream::Input(assembly.inputs.len() - 1),
            event_time,
            watermarked: bound.watermark.is_some(),
        })
    }

    /// Splits off the stateless stages at the front of `stages` and plans
    /// `parallelism` copies of them, to run on several batches at once;
    /// with parallelism 1 (or no such stages) nothing is split off.
    async fn head(
        &self,
        stages: Vec<Stage>,
        parallelism: usize,
    ) -> Result<(Vec<HeadStages>, Vec<Stage>, bool)> {
        let leading = stages
            .iter()
            .take_while(|stage| matches!(stage, Stage::Stateless(_)))
            .count();
        // Model calls at the head get a head even at parallelism 1: the
        // region boundary (a durable log of their outputs) follows it.
        let calls_a_model = stages[..leading]
            .iter()
            .any(|stage| matches!(stage, Stage::Stateless(fragment) if calls_a_model(fragment)));
        if leading == 0 || (parallelism <= 1 && !calls_a_model) {
            return Ok((Vec::new(), stages, false));
        }
        let parallelism = parallelism.max(1);
        let mut stages = stages;
        let rest = stages.split_off(leading);
        let mut copies = Vec::with_capacity(parallelism);
        for _ in 0..parallelism {
            let mut copy: HeadStages = Vec::with_capacity(leading);
            for stage in &stages {
                if let Stage::Stateless(fragment) = stage {
                    copy.push(Box::new(
                        stateless_operator(&self.state, fragment.clone(), self.task()?).await?,
                    ));
                }
            }
            copies.push(copy);
        }
        Ok((copies, rest, calls_a_model))
    }

    /// The operators of `stages`, whose input has a watermark unless
    /// `no_watermark` says why not.
    async fn chain(
        &mut self,
        stages: Vec<Stage>,
        no_watermark: Option<String>,
    ) -> Result<Vec<Box<dyn StreamOperator>>> {
        let mut operators: Vec<Box<dyn StreamOperator>> = Vec::new();
        for stage in stages {
            operators.push(match stage {
                Stage::Stateless(fragment) => {
                    Box::new(stateless_operator(&self.state, fragment, self.task()?).await?)
                }
                Stage::Aggregate(aggregate) => {
                    let planned = plan_aggregate(
                        &self.state,
                        &aggregate,
                        self.updating,
                        no_watermark.as_deref(),
                        self.session.as_ref(),
                        self.parallelism,
                    )?;
                    // A window's rows are final; a group's are replaced.
                    self.updating = !planned.append_only;
                    self.append_only |= planned.append_only;
                    planned.operator
                }
                Stage::Join(_) | Stage::Union(_) => {
                    return Err(DataFusionError::Internal(
                        "a join or union stage after the first stage of a branch".into(),
                    ));
                }
            });
        }
        Ok(operators)
    }

    /// The join stage `fragment` (a join over feeds 0 and 1, with the
    /// projections and filters above it); `event_times` are the inputs'
    /// event-time columns, where they have one. A join with equality keys
    /// runs as `parallelism` copies keyed by them.
    async fn join(
        &mut self,
        fragment: LogicalPlan,
        event_times: [Option<String>; 2],
    ) -> Result<KeyedJoin> {
        let feeds = feed_schemas(&fragment)?;
        let [Some(left), Some(right)] = [
            feeds.first().cloned().flatten(),
            feeds.get(1).cloned().flatten(),
        ] else {
            return Err(DataFusionError::Internal(
                "a join stage without two feeds".into(),
            ));
        };
        // The optimizer moves the WHERE clause's conditions into the join,
        // where the time bounds are found.
        let optimized = self.state.optimize(&fragment)?;
        let mut bounds = None;
        // The optimizer turns an outer join whose NULL rows the WHERE
        // clause drops into an inner one: the join type is read after it.
        let mut join_type = JoinType::Inner;
        optimized.apply(|node| {
            if let LogicalPlan::Join(join) = node {
                join_type = join.join_type;
                let equalities = join.on.iter().map(|(l, r)| l.clone().eq(r.clone()));
                if let Some(condition) = conjunction(equalities.chain(join.filter.clone())) {
                    bounds = time_bounds(
                        &condition,
                        [&left, &right],
                        [event_times[0].as_deref(), event_times[1].as_deref()],
                    );
                }
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })?;
        let keys = join_keys(&optimized);
        let outer = join_type != JoinType::Inner;
        if outer && keys.is_none() {
            return Err(unsupported(format!(
                "cannot run incrementally: {} JOIN: an outer join needs an equality condition \
                 between a column of each table (e.g. ON a.k = b.k)",
                join_type.to_string().to_uppercase()
            )));
        }
        if outer && bounds.is_some() {
            return Err(unsupported(format!(
                "cannot run incrementally: {} JOIN with time bounds: interval joins are inner \
                 joins for now",
                join_type.to_string().to_uppercase()
            )));
        }
        let input_schemas: [SchemaRef; 2] = [
            Arc::new(left.as_arrow().clone()),
            Arc::new(right.as_arrow().clone()),
        ];
        let copies = match keys {
            Some(_) => self.parallelism.max(1),
            None => 1,
        };
        let mut operators = Vec::with_capacity(copies);
        for _ in 0..copies {
            // Each copy reads its own feeds through its own plan.
            let slots = [Arc::new(FeedSlot::default()), Arc::new(FeedSlot::default())];
            let planner = DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(
                FeedPlanner::new(slots.to_vec()),
            )]);
            let plan = planner
                .create_physical_plan(&optimized, &self.state)
                .await?;
            operators.push(JoinOperator::try_new(
                plan,
                slots,
                input_schemas.clone(),
                bounds,
                keys.clone(),
                outer,
                self.task()?,
            )?);
        }
        KeyedJoin::try_new(operators, keys, &input_schemas[0])
    }
}

impl ChainBuilder {
    /// The union stage `fragment` (a union over feeds `0..sides`, with the
    /// projections and filters above it).
    async fn union(&mut self, fragment: LogicalPlan, sides: usize) -> Result<UnionOperator> {
        let feeds = feed_schemas(&fragment)?;
        let schemas = (0..sides)
            .map(|side| {
                feeds
                    .get(side)
                    .cloned()
                    .flatten()
                    .map(|schema| Arc::new(schema.as_arrow().clone()))
                    .ok_or_else(|| DataFusionError::Internal("a union side without a feed".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        let slots: Vec<Arc<FeedSlot>> = (0..sides).map(|_| Arc::default()).collect();
        let optimized = self.state.optimize(&fragment)?;
        let planner = DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(
            FeedPlanner::new(slots.clone()),
        )]);
        let plan = planner
            .create_physical_plan(&optimized, &self.state)
            .await?;
        UnionOperator::try_new(plan, slots, schemas, self.task()?)
    }
}

/// The schemas of a fragment's feeds, by slot.
fn feed_schemas(fragment: &LogicalPlan) -> Result<Vec<Option<DFSchemaRef>>> {
    let mut feeds: Vec<Option<DFSchemaRef>> = Vec::new();
    fragment.apply(|node| {
        if let LogicalPlan::Extension(extension) = node
            && let Some(feed) = extension.node.as_any().downcast_ref::<FeedNode>()
        {
            if feeds.len() <= feed.slot {
                feeds.resize(feed.slot + 1, None);
            }
            feeds[feed.slot] = Some(Arc::clone(&feed.schema));
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    Ok(feeds)
}

/// A stage before it is planned physically.
enum Stage {
    Stateless(LogicalPlan),
    Aggregate(Aggregate),
    /// A join over feeds 0 and 1 and the stateless plan above it.
    Join(LogicalPlan),
    /// A union over feeds 0, 1, … and the stateless plan above it.
    Union(LogicalPlan),
}

#[derive(Default)]
struct Splitter {
    source: Option<TableScan>,
    stages: Vec<Stage>,
    /// A join's two inputs, each split on its own (a table, or a join in
    /// turn): their stages run before the join, this splitter's after it.
    join_inputs: Vec<Splitter>,
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
            LogicalPlan::Join(join) => {
                refuse_subqueries(plan)?;
                if !matches!(
                    join.join_type,
                    JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full
                ) {
                    return Err(unsupported(format!(
                        "cannot run incrementally: {} JOIN: only inner, left, right and full \
                         joins are incremental for now",
                        join.join_type.to_string().to_uppercase()
                    )));
                }
                if self.source.is_some() || !self.join_inputs.is_empty() {
                    return Err(unjoined_inputs());
                }
                let mut feeds = Vec::with_capacity(2);
                for (slot, input) in [&join.left, &join.right].into_iter().enumerate() {
                    let mut side = Splitter::default();
                    let top = side.split(input)?;
                    side.push_stateless(top);
                    if side.source.is_none() && side.join_inputs.is_empty() {
                        return Err(unsupported(
                            "cannot run incrementally: each input of a join reads a table",
                        ));
                    }
                    self.join_inputs.push(side);
                    feeds.push(FeedNode::plan(slot, Arc::clone(input.schema())));
                }
                plan.with_new_exprs(plan.expressions(), feeds)
            }
            // SELECT DISTINCT is a GROUP BY of every column without
            // aggregates: the updating aggregate keeps each row's count and
            // emits a row while its count is above zero.
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let columns: Vec<Expr> = input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                let grouped = LogicalPlanBuilder::from(input.as_ref().clone())
                    .aggregate(columns, Vec::<Expr>::new())?
                    .build()?;
                self.split(&grouped)
            }
            LogicalPlan::Union(union) if !stateless_over_one_table(plan) => {
                refuse_subqueries(plan)?;
                if self.source.is_some() || !self.join_inputs.is_empty() {
                    return Err(unjoined_inputs());
                }
                let mut feeds = Vec::with_capacity(union.inputs.len());
                for (slot, input) in union.inputs.iter().enumerate() {
                    let mut side = Splitter::default();
                    let top = side.split(input)?;
                    side.push_stateless(top);
                    if side.source.is_none() && side.join_inputs.is_empty() {
                        return Err(unsupported(
                            "cannot run incrementally: each input of a UNION reads a table",
                        ));
                    }
                    self.join_inputs.push(side);
                    feeds.push(FeedNode::plan(slot, Arc::clone(input.schema())));
                }
                plan.with_new_exprs(plan.expressions(), feeds)
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
        let has_join = fragment
            .exists(|node| Ok(matches!(node, LogicalPlan::Join(_))))
            .unwrap_or(false);
        // Only the fragment where branches meet reads more than one feed.
        let meets = feed_schemas(&fragment).is_ok_and(|feeds| feeds.len() > 1);
        if has_join {
            self.stages.push(Stage::Join(fragment));
        } else if meets {
            self.stages.push(Stage::Union(fragment));
        } else if !matches!(fragment, LogicalPlan::Extension(_)) {
            self.stages.push(Stage::Stateless(fragment));
        }
    }

    fn bind_source(&mut self, scan: &TableScan) -> Result<()> {
        if !self.join_inputs.is_empty() {
            return Err(unjoined_inputs());
        }
        match &self.source {
            Some(bound) if bound.table_name != scan.table_name => Err(unsupported(format!(
                "a continuous query reads one table, or joins two, for now; this one reads {} \
                 and {} without joining them",
                bound.table_name, scan.table_name
            ))),
            _ => {
                self.source = Some(scan.clone());
                Ok(())
            }
        }
    }
}

/// Whether `plan` only projects, filters and unites rows of one table: a
/// union of such branches runs as one stateless stage.
fn stateless_over_one_table(plan: &LogicalPlan) -> bool {
    let mut table = None;
    let mut one = true;
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::TableScan(scan) => match &table {
                Some(seen) if seen != &scan.table_name => one = false,
                _ => table = Some(scan.table_name.clone()),
            },
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Union(_) => {}
            _ => one = false,
        }
        Ok(match one {
            true => datafusion::common::tree_node::TreeNodeRecursion::Continue,
            false => datafusion::common::tree_node::TreeNodeRecursion::Stop,
        })
    });
    one
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

/// A branch that both joins and reads another table beside the join (a
/// UNION of a join and a table).
fn unjoined_inputs() -> DataFusionError {
    unsupported(
        "cannot run incrementally: a continuous query combines its tables by joining them; this \
         one also reads a table beside a join (UNION of different tables is not incremental yet)",
    )
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
        LogicalPlan::Window(_) => {
            "window functions (OVER …) are not supported in continuous queries; use TUMBLE or \
             HOP with GROUP BY"
                .to_string()
        }
        LogicalPlan::Distinct(_) => {
            "DISTINCT ON is not supported in continuous queries yet; use GROUP BY".to_string()
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

/// Opens the source `scan` reads: a Sluice table, a generator, files or a
/// materialized view.
async fn open_source(scan: &TableScan) -> Result<BoundSource> {
    let table = &scan.table_name;
    let provider = source_as_provider(&scan.source)?;
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
    if let Some(nats) = any.downcast_ref::<NatsTable>() {
        return Ok(BoundSource {
            source: Box::new(NatsSource::new(nats)?),
            watermark: WatermarkSpec::from_schema(&nats.schema()),
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
    let input_schema = feed_schemas(&fragment)?
        .into_iter()
        .flatten()
        .next()
        .map(|schema| Arc::new(schema.as_arrow().clone()))
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
