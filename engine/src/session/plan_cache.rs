//! Reusing what planning a query made, from one execution to the next: a
//! prepared `SELECT 1` costs a lookup and a walk of its physical plan
//! instead of a trip through DataFusion's analyzer, optimizer and physical
//! planner; every query (one with parameters or a table scan is planned
//! each time) is planned from a copy of DataFusion's session state made
//! once per plan generation, not once per statement (the copy holds every
//! function registry).
//!
//! A plan is only as good as what it was made from:
//! - the catalog and the session's settings: every statement that is not a
//!   query moves a plan generation on ([`PlanGenerations`]): the engine's
//!   for DDL, the session's for its settings, transactions and writes;
//! - the table versions its scans read: the commit clock's tick
//!   ([`crate::storage::TableStore::commit_tick`]) moves on with every commit,
//!   compactions and background writers included.
//!
//! A cached plan records both ([`PlanKey`]) and is used only while both
//! stay. Physical plans are cached only where running one again is known to
//! be sound (see [`reusable`]).
//!
//! A statement with parameters is planned once with its parameters unbound
//! where every one of them lands in an operator that binds it at execution
//! (a key lookup's value, a vector search's query vector:
//! [`bind_parameters`]); DataFusion's own operators cannot hold one, so any
//! other statement fails that planning and is planned with its values,
//! every execution, as before.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use datafusion::common::ParamValues;
use datafusion::common::alias::AliasGenerator;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, Operator, Volatility};
use datafusion::optimizer::OptimizerConfig;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::prelude::SessionContext;

use crate::rewrite::key_lookup_rule::{self, KeyLookup};
use crate::rewrite::vector_index_rule::{self, IndexedTopK};
use crate::storage::DurableTable;
use crate::storage::key_lookup::KeyLookupExec;
use crate::storage::vector_index::VectorTopKExec;
use sluice_functions::vector::distance::Metric;

/// Counts the statements, in every session of one engine, that may change
/// how any session's queries plan: DDL, models, indexes, roles.
#[derive(Debug, Default)]
pub struct PlanGeneration(AtomicU64);

impl PlanGeneration {
    fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Marks every plan made before now as stale. Called after the change
    /// took effect, so a plan made during it is stale too.
    fn advance(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// A session's two plan generations: the engine's, and its own, which
/// its settings, transaction boundaries and writes move on (another
/// session's writes reach its plans through the commit clock instead).
#[derive(Debug)]
pub(crate) struct PlanGenerations {
    engine: Arc<PlanGeneration>,
    session: PlanGeneration,
}

/// Both plan generations at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Generations {
    engine: u64,
    session: u64,
}

impl PlanGenerations {
    /// A session's generations, the engine's shared with `ctx`'s engine
    /// (a context built elsewhere has its own).
    pub(crate) fn of(ctx: &SessionContext) -> Self {
        let engine = ctx
            .state_ref()
            .read()
            .config()
            .get_extension::<PlanGeneration>()
            .unwrap_or_default();
        Self {
            engine,
            session: PlanGeneration::default(),
        }
    }

    /// The generations now: a plan made from here on is made under them.
    pub(crate) fn now(&self) -> Generations {
        Generations {
            engine: self.engine.now(),
            session: self.session.now(),
        }
    }

    /// After a statement that may change how every session plans.
    pub(crate) fn advance_engine(&self) {
        self.engine.advance();
    }

    /// After a statement that may change how this session plans.
    pub(crate) fn advance_session(&self) {
        self.session.advance();
    }
}

/// What a plan was made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanKey {
    generations: Generations,
    commit_tick: u64,
}

impl PlanKey {
    /// The key of a plan made now in `ctx`'s session.
    pub(crate) fn now(generations: &PlanGenerations, ctx: &SessionContext) -> Self {
        Self {
            generations: generations.now(),
            commit_tick: crate::context::table_store(ctx).map_or(0, |store| store.commit_tick()),
        }
    }
}

/// A session's copy of its DataFusion state and the task context made from
/// it, kept while the plan generations stay: both copy every function
/// registry, which cost more than planning `SELECT 1` itself.
#[derive(Debug, Default)]
pub(crate) struct StateSnapshot {
    current: Mutex<Option<CopiedState>>,
}

/// The session state copied under `generations`, and its task context.
#[derive(Debug)]
struct CopiedState {
    generations: Generations,
    state: Arc<SessionState>,
    task: Arc<TaskContext>,
}

impl StateSnapshot {
    /// The session's state as of `key`, copied anew if it moved on.
    pub(crate) fn get(
        &self,
        ctx: &SessionContext,
        key: PlanKey,
    ) -> (Arc<SessionState>, Arc<TaskContext>) {
        let mut current = lock(&self.current);
        if let Some(copied) = current.as_ref()
            && copied.generations == key.generations
        {
            return (Arc::clone(&copied.state), Arc::clone(&copied.task));
        }
        let state = Arc::new(ctx.state());
        let task = Arc::new(TaskContext::from(state.as_ref()));
        *current = Some(CopiedState {
            generations: key.generations,
            state: Arc::clone(&state),
            task: Arc::clone(&task),
        });
        (state, task)
    }
}

/// One prepared statement's physical plan, kept between executions.
#[derive(Debug, Default)]
pub(crate) struct PlanCache {
    physical: Mutex<Option<(PlanKey, Arc<dyn ExecutionPlan>)>>,
    /// The generations under which planning it with unbound parameters
    /// failed: not tried again until DDL or a setting changes how it plans
    /// (writes do not change which operators hold its parameters).
    unbound_refused: Mutex<Option<Generations>>,
}

impl PlanCache {
    /// A fresh copy of the cached plan, if it was made under `key`.
    pub(crate) fn get(&self, key: PlanKey) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let cached = lock(&self.physical);
        match cached.as_ref() {
            Some((made_under, plan)) if *made_under == key => Ok(Some(
                datafusion::physical_plan::execution_plan::reset_plan_states(Arc::clone(plan))?,
            )),
            _ => Ok(None),
        }
    }

    /// Keeps `plan`, made under `key`, for the next execution; forgets a
    /// stale one.
    pub(crate) fn put(&self, key: PlanKey, plan: Option<&Arc<dyn ExecutionPlan>>) {
        *lock(&self.physical) = plan.map(|plan| (key, Arc::clone(plan)));
    }

    /// Whether planning with unbound parameters is worth a try under `key`.
    pub(crate) fn may_plan_unbound(&self, key: PlanKey) -> bool {
        lock(&self.unbound_refused).is_none_or(|refused| refused.engine != key.generations.engine)
    }

    /// Notes that planning with unbound parameters failed under `key`.
    pub(crate) fn refuse_unbound(&self, key: PlanKey) {
        *lock(&self.unbound_refused) = Some(key.generations);
    }
}

/// `plan`, planned with unbound parameters, with each execution's values
/// from `params` bound into the operators holding them.
pub(crate) fn bind_parameters(
    plan: Arc<dyn ExecutionPlan>,
    params: &ParamValues,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let bound = if let Some(lookup) = node.downcast_ref::<KeyLookupExec>() {
            lookup.bind(params)?
        } else if let Some(search) = node.downcast_ref::<VectorTopKExec>() {
            search.bind(params)?
        } else {
            None
        };
        Ok(match bound {
            Some(bound) => Transformed::yes(bound),
            None => Transformed::no(node),
        })
    })
    .map(|bound| bound.data)
}

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock; a poisoned one still holds
    // a consistent value.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Plans a bound query physically with `state`, as
/// [`SessionState::create_physical_plan`] does, but with `now()` read at
/// this call: the shared state's own start time is the snapshot's.
pub(crate) async fn physical_plan(
    state: &SessionState,
    plan: &LogicalPlan,
) -> Result<Arc<dyn ExecutionPlan>> {
    let optimized = optimized(state, plan)?;
    state
        .query_planner()
        .create_physical_plan(&optimized, state)
        .await
}

/// Plans a query whose parameters stay unbound, for a plan kept with them
/// (see [`bind_parameters`]): fails where an operator that cannot bind a
/// parameter would hold one.
pub(crate) async fn physical_plan_unbound(
    state: &SessionState,
    plan: &LogicalPlan,
) -> Result<Arc<dyn ExecutionPlan>> {
    let optimized = key_lookup_rule::lookups_by_parameter(optimized(state, plan)?)?;
    let optimized = vector_index_rule::searches_by_parameter(optimized)?;
    state
        .query_planner()
        .create_physical_plan(&optimized, state)
        .await
}

/// `plan` analyzed and optimized, with `now()` read at this call.
fn optimized(state: &SessionState, plan: &LogicalPlan) -> Result<LogicalPlan> {
    let analyzed =
        state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {})?;
    let started = StartedNow {
        state,
        start: Utc::now(),
    };
    state.optimizer().optimize(analyzed, &started, |_, _| {})
}

/// A session state whose query started now.
struct StartedNow<'a> {
    state: &'a SessionState,
    start: DateTime<Utc>,
}

impl OptimizerConfig for StartedNow<'_> {
    fn query_execution_start_time(&self) -> Option<DateTime<Utc>> {
        Some(self.start)
    }

    fn alias_generator(&self) -> &Arc<AliasGenerator> {
        &self.state.execution_props().alias_generator
    }

    fn options(&self) -> Arc<ConfigOptions> {
        OptimizerConfig::options(self.state)
    }

    fn function_registry(&self) -> Option<&dyn datafusion::execution::FunctionRegistry> {
        self.state.function_registry()
    }
}

/// Whether `physical`, planned from `logical`, may run again for a later
/// execution of the same statement. Only where that is known to be sound:
/// - no function the optimizer evaluates once per query (`now()`, …: every
///   non-immutable function but the volatile ones, which run per row);
/// - tables: durable ones only, whose versions the plan key follows (other
///   tables may snapshot rows when planned), and of those only the empty
///   ones and key lookups: a Parquet scan keeps every run's metrics in its
///   file source, which no reset empties, so a scan run a million times
///   would hold a million runs' metrics;
/// - operators that carry no state from one run to the next once
///   [`reset_plan_states`] has renewed them: no joins, aggregates or top-k
///   sorts, whose dynamic filters are pushed into the scans below them.
///
/// [`reset_plan_states`]: datafusion::physical_plan::execution_plan::reset_plan_states
pub(crate) fn reusable(logical: &LogicalPlan, physical: &Arc<dyn ExecutionPlan>) -> bool {
    logical_plan_reusable(logical) && physical_plan_reusable(physical)
}

fn logical_plan_reusable(plan: &LogicalPlan) -> bool {
    let stateless_node = |node: &LogicalPlan| match node {
        LogicalPlan::Projection(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Union(_)
        | LogicalPlan::EmptyRelation(_)
        | LogicalPlan::Values(_) => true,
        LogicalPlan::TableScan(scan) => source_as_provider(&scan.source).is_ok_and(|provider| {
            let any: &dyn std::any::Any = provider.as_ref();
            any.is::<DurableTable>() || any.is::<KeyLookup>() || any.is::<IndexedTopK>()
        }),
        _ => false,
    };
    !any_node(plan, |node| !stateless_node(node))
        && !any_node(plan, |node| any_expression(node, evaluated_once_per_query))
}

/// Whether `found` holds for any node of `plan`, subqueries included (or
/// the walk failed, which counts as found: the callers refuse then).
fn any_node(plan: &LogicalPlan, found: impl Fn(&LogicalPlan) -> bool) -> bool {
    let mut any = false;
    let walked = plan.apply_with_subqueries(|node| {
        any = found(node);
        Ok(if any {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    any || walked.is_err()
}

/// Whether `found` holds for any expression of `node`, at any depth.
fn any_expression(node: &LogicalPlan, found: impl Fn(&Expr) -> bool) -> bool {
    let mut any = false;
    let walked = node.apply_expressions(|expr| {
        expr.apply(|expr| {
            any = found(expr);
            Ok(if any {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
    });
    any || walked.is_err()
}

/// Functions DataFusion folds to a constant when it plans the query:
/// stable ones (`now()`, `current_date`) and session variables.
fn evaluated_once_per_query(expr: &Expr) -> bool {
    match expr {
        Expr::ScalarFunction(function) => {
            function.func.signature().volatility == Volatility::Stable
        }
        Expr::ScalarVariable(..) | Expr::ScalarSubquery(_) | Expr::Exists(_) => true,
        Expr::InSubquery(_) | Expr::SetComparison(_) => true,
        _ => false,
    }
}

fn physical_plan_reusable(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut reusable = true;
    let walked = plan.apply(|node| {
        let stateless = match node.name() {
            "ProjectionExec"
            | "FilterExec"
            | "EmptyExec"
            | "PlaceholderRowExec"
            | "CoalesceBatchesExec"
            | "CoalescePartitionsExec"
            | "RepartitionExec"
            | "CooperativeExec"
            | "GlobalLimitExec"
            | "LocalLimitExec"
            | "SortPreservingMergeExec"
            | "UnionExec"
            // Their columns come from the shared decoded-column cache (and
            // the search's graphs from the shared graph cache); they keep
            // nothing of a run but counters.
            | "KeyLookupExec"
            | "VectorTopKExec" => true,
            // A sort with a limit keeps the top rows in a dynamic filter.
            "SortExec" => node
                .downcast_ref::<SortExec>()
                .is_some_and(|sort| sort.fetch().is_none()),
            _ => false,
        };
        reusable &= stateless;
        Ok(if reusable {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    walked.is_ok() && reusable
}

/// Whether every parameter of `plan` is compared with a column for
/// equality (`col = $1`) or is the query vector of a distance to a column
/// (`v <=> $1`, cast or not), the places a plan kept with unbound
/// parameters can hold one (a key lookup's value, a search's query; a
/// distance anywhere but a top-k's sort key fails that planning). Checked before trying
/// such a plan: drivers prepare an unnamed statement for every query with
/// parameters, and each would otherwise be planned twice.
pub(crate) fn parameters_only_compared_to_columns(plan: &LogicalPlan) -> bool {
    let mut compared = 0usize;
    let mut elsewhere = 0usize;
    let walked = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|expr| {
                match expr {
                    Expr::BinaryExpr(binary)
                        if binary.op == Operator::Eq
                            && matches!(
                                (binary.left.as_ref(), binary.right.as_ref()),
                                (Expr::Column(_), Expr::Placeholder(_))
                                    | (Expr::Placeholder(_), Expr::Column(_))
                            ) =>
                    {
                        compared += 1;
                        return Ok(TreeNodeRecursion::Jump);
                    }
                    Expr::ScalarFunction(call)
                        if Metric::ALL
                            .iter()
                            .any(|m| m.function_name() == call.func.name())
                            && matches!(
                                call.args.as_slice(),
                                [Expr::Column(_), query] | [query, Expr::Column(_)]
                                    if vector_index_rule::parameter_vector(query).is_some()
                            ) =>
                    {
                        compared += 1;
                        return Ok(TreeNodeRecursion::Jump);
                    }
                    Expr::Placeholder(_) => elsewhere += 1,
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    walked.is_ok() && compared > 0 && elsewhere == 0
}

/// Whether `plan` only reads: running it changes nothing a later plan
/// depends on. `EXECUTE`, `EXPLAIN ANALYZE` and `set_config` may.
pub(crate) fn only_reads(plan: &LogicalPlan) -> bool {
    let statement = matches!(
        plan,
        LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::DescribeTable(_)
    );
    !statement && !calls_set_config(plan)
}

fn calls_set_config(plan: &LogicalPlan) -> bool {
    any_node(plan, |node| {
        any_expression(
            node,
            |expr| matches!(expr, Expr::ScalarFunction(function) if function.name() == "set_config"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn plan_of(sql: &str) -> LogicalPlan {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (id BIGINT, name TEXT)")
            .await
            .expect("create");
        ctx.state()
            .create_logical_plan(sql)
            .await
            .expect("plan the test query")
    }

    #[tokio::test]
    async fn only_parameters_compared_with_a_column_may_stay_unbound() {
        for (sql, expected) in [
            ("SELECT name FROM t WHERE id = $1", true),
            ("SELECT name FROM t WHERE $1 = id AND name = $2", true),
            ("SELECT name FROM t WHERE id = $1 AND name LIKE $2", false),
            ("SELECT name, $1 FROM t", false),
            ("SELECT name FROM t WHERE id > $1", false),
            ("SELECT name FROM t WHERE id = 1", false),
        ] {
            assert_eq!(
                parameters_only_compared_to_columns(&plan_of(sql).await),
                expected,
                "{sql}"
            );
        }
    }
}
