//! Model calls in physical plans: a physical optimizer rule makes sure the
//! model sees full batches (see [`CountModelCalls`]) and, for `EXPLAIN
//! ANALYZE`, gives every
//! `EMBED`/`ML_PREDICT` of a plan its own counters and wraps the operator
//! that runs them in a [`ModelStatsExec`], which shows the model, the device
//! and what the plan's calls did: rows, model batches, mean batch size and
//! time in the model.
//!
//! DataFusion runs async functions in `AsyncFuncExec`, whose metrics cannot
//! be extended, hence the wrapper node. Counters live per plan, not per
//! model, so concurrent queries do not blur each other's figures.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::async_udf::AsyncScalarUDF;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::async_scalar_function::AsyncFuncExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::async_func::AsyncFuncExec;
use datafusion::physical_plan::metrics::{Count, Gauge, Metric, MetricValue, MetricsSet, Time};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
    SendableRecordBatchStream,
};

use super::calls::{CallKind, CallStats, ModelCall};
use super::registry::ModelRegistry;

/// The rule; add it to a session with `with_physical_optimizer_rule`.
#[derive(Debug)]
pub struct CountModelCalls {
    registry: Arc<ModelRegistry>,
}

impl CountModelCalls {
    /// The rule for the models of `registry`.
    pub fn new(registry: Arc<ModelRegistry>) -> Self {
        Self { registry }
    }

    /// The instrumented form of `expr` when it calls a model, with the
    /// counters it reports into.
    fn instrument(
        &self,
        expr: &AsyncFuncExpr,
        schema: &datafusion::arrow::datatypes::Schema,
    ) -> Result<Option<(AsyncFuncExpr, ModelCounters)>> {
        let Some(function) = expr.func.downcast_ref::<ScalarFunctionExpr>() else {
            return Ok(None);
        };
        let Some(kind) = CallKind::of_function(function.fun().name()) else {
            return Ok(None);
        };
        let model_name = match function
            .args()
            .first()
            .and_then(|a| a.downcast_ref::<Literal>())
        {
            Some(literal) => match literal.value() {
                ScalarValue::Utf8(Some(n))
                | ScalarValue::LargeUtf8(Some(n))
                | ScalarValue::Utf8View(Some(n)) => n.clone(),
                _ => return Ok(None),
            },
            None => return Ok(None),
        };
        // Looked up once per plan: the call site's batches then reach the
        // model directly.
        let model = self.registry.get(&model_name).ok();
        let device = model
            .as_ref()
            .map_or_else(|| "?".into(), |m| m.device.as_str().to_string());
        let stats = Arc::new(CallStats::default());
        let mut call =
            ModelCall::new(kind, Arc::clone(&self.registry)).counting_into(Arc::clone(&stats));
        if let Some(model) = model {
            call = call.bound_to(model);
        }
        let udf = Arc::new(AsyncScalarUDF::new(Arc::new(call)).into_scalar_udf());
        let config: Arc<ConfigOptions> = Arc::new(function.config_options().clone());
        let instrumented: Arc<dyn PhysicalExpr> = Arc::new(ScalarFunctionExpr::new(
            function.name(),
            udf,
            function.args().to_vec(),
            function.return_field(schema)?,
            config,
        ));
        Ok(Some((
            AsyncFuncExpr::try_new(expr.name(), instrumented, schema)?,
            ModelCounters {
                model: model_name,
                device,
                stats,
            },
        )))
    }
}

impl PhysicalOptimizerRule for CountModelCalls {
    // `AsyncFuncExec::async_exprs` is deprecated as unused by DataFusion
    // itself; reading a plan's async expressions is exactly this rule's job.
    #[expect(deprecated)]
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch_size = usize::from(config.execution.batch_size);
        plan.transform_up(|node| {
            let Some(exec) = node.downcast_ref::<AsyncFuncExec>() else {
                return Ok(Transformed::no(node));
            };
            let schema = exec.input().schema();
            let mut counters = Vec::new();
            let mut exprs = Vec::with_capacity(exec.async_exprs().len());
            for expr in exec.async_exprs().iter() {
                match self.instrument(expr.as_ref(), &schema)? {
                    Some((instrumented, counter)) => {
                        exprs.push(Arc::new(instrumented));
                        counters.push(counter);
                    }
                    None => exprs.push(Arc::clone(expr)),
                }
            }
            if counters.is_empty() {
                return Ok(Transformed::no(node));
            }
            // AsyncFuncExec hands the function each input batch as it comes
            // and awaits it before the next: a table of many small batches
            // (say, one per single-row INSERT) would reach the model a row or
            // two at a time. Coalescing first gives the model full batches.
            // CoalesceBatchesExec is deprecated because DataFusion's own
            // operators now coalesce internally; AsyncFuncExec does not.
            #[expect(deprecated)]
            let input: Arc<dyn ExecutionPlan> = Arc::new(
                datafusion::physical_plan::coalesce_batches::CoalesceBatchesExec::new(
                    Arc::clone(exec.input()),
                    batch_size,
                ),
            );
            let exec = AsyncFuncExec::try_new(exprs, input)?;
            Ok(Transformed::yes(Arc::new(ModelStatsExec::new(
                Arc::new(exec),
                counters,
            ))))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "CountModelCalls"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One model call site's counters.
#[derive(Debug, Clone)]
struct ModelCounters {
    model: String,
    device: String,
    stats: Arc<CallStats>,
}

/// Passes its input through and reports the model calls made in it.
#[derive(Debug)]
pub struct ModelStatsExec {
    input: Arc<dyn ExecutionPlan>,
    counters: Vec<ModelCounters>,
}

impl ModelStatsExec {
    fn new(input: Arc<dyn ExecutionPlan>, counters: Vec<ModelCounters>) -> Self {
        Self { input, counters }
    }
}

impl DisplayAs for ModelStatsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let models: Vec<String> = self
            .counters
            .iter()
            .map(|c| format!("{} on {}", c.model, c.device))
            .collect();
        write!(f, "ModelStatsExec: models=[{}]", models.join(", "))
    }
}

impl ExecutionPlan for ModelStatsExec {
    fn name(&self) -> &str {
        "ModelStatsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
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
        let input = children.swap_remove(0);
        Ok(Arc::new(Self::new(input, self.counters.clone())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        let mut set = MetricsSet::new();
        let count = |name: String, value: u64| {
            let count = Count::new();
            count.add(value as usize);
            Arc::new(Metric::new(
                MetricValue::Count {
                    name: name.into(),
                    count,
                },
                None,
            ))
        };
        for c in &self.counters {
            let s = &c.stats;
            let rows = s.rows.load(Ordering::Relaxed);
            let batches = s.batches.load(Ordering::Relaxed);
            let batch_rows = s.batch_rows.load(Ordering::Relaxed);
            set.push(count(format!("{}_rows", c.model), rows));
            set.push(count(format!("{}_batches", c.model), batches));
            let mean = Gauge::new();
            mean.set(batch_rows.checked_div(batches).unwrap_or(0) as usize);
            set.push(Arc::new(Metric::new(
                MetricValue::Gauge {
                    name: format!("{}_mean_batch_size", c.model).into(),
                    gauge: mean,
                },
                None,
            )));
            let time = Time::new();
            time.add_duration(Duration::from_nanos(s.model_nanos.load(Ordering::Relaxed)));
            set.push(Arc::new(Metric::new(
                MetricValue::Time {
                    name: format!("{}_model_time", c.model).into(),
                    time,
                },
                None,
            )));
        }
        Some(set)
    }
}
