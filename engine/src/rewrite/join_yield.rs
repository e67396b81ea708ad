//! Joins that yield to the scheduler while they multiply their input.
//!
//! DataFusion spends tokio's cooperative budget at the leaves of a plan
//! (`EnsureCooperative` wraps scans and exchanges), which bounds the work a
//! task does between yields by the batches it *reads*. A join can make
//! thousands of output batches from one input batch: a cross join of two
//! 100,000-row tables made 100,000 batches per probe batch, the aggregate
//! above it consumed them all without yielding, and on a 2-core server both
//! runtime threads stayed busy past `statement_timeout`, so the cancel (and
//! every other connection) waited for them (fuzzing, seeds 8 and 9).
//! [`YieldingJoins`] wraps every join in a [`CooperativeExec`], so each
//! output batch spends budget and an aborted or timed-out query stops within
//! one budget's worth of batches.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};

/// The physical optimizer rule that puts a [`CooperativeExec`] above every
/// join, whose output the leaves' budget does not bound.
#[derive(Debug, Default)]
pub struct YieldingJoins;

impl PhysicalOptimizerRule for YieldingJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Children are wrapped from their parent, so that a join already
        // under a CooperativeExec (this rule run twice) is left alone.
        let plan = plan
            .transform_up(|node| {
                if node.downcast_ref::<CooperativeExec>().is_some()
                    || !node
                        .children()
                        .into_iter()
                        .any(|child| is_join(child.as_ref()))
                {
                    return Ok(Transformed::no(node));
                }
                let children = node
                    .children()
                    .into_iter()
                    .cloned()
                    .map(cooperative)
                    .collect();
                // A CooperativeExec has its input's properties, so the
                // parent's stay as they were.
                let keep = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep);
                Ok(Transformed::yes(node.replace_children(children, keep)?))
            })
            .data()?;
        Ok(cooperative(plan))
    }

    fn name(&self) -> &str {
        "yielding_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `plan` under a [`CooperativeExec`] when it is a join.
fn cooperative(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    if is_join(plan.as_ref()) {
        Arc::new(CooperativeExec::new(plan))
    } else {
        plan
    }
}

/// Whether `plan` is one of DataFusion's joins, any of which can make many
/// output batches from one input batch (a cross join always; the others on
/// repeated keys).
fn is_join(plan: &dyn ExecutionPlan) -> bool {
    plan.downcast_ref::<CrossJoinExec>().is_some()
        || plan.downcast_ref::<NestedLoopJoinExec>().is_some()
        || plan.downcast_ref::<HashJoinExec>().is_some()
        || plan.downcast_ref::<SortMergeJoinExec>().is_some()
        || plan.downcast_ref::<SymmetricHashJoinExec>().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Poll;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use futures::StreamExt;

    /// A cross join of two 1,000-row tables, each one batch: 1,000 output
    /// batches from one probe batch.
    async fn cross_join_plan() -> Result<(SessionContext, Arc<dyn ExecutionPlan>)> {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let column = Arc::new(Int64Array::from_iter_values(0..1_000));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![column])?;
        for name in ["a", "b"] {
            let table = MemTable::try_new(Arc::clone(&schema), vec![vec![batch.clone()]])?;
            ctx.register_table(name, Arc::new(table))?;
        }
        let plan = ctx
            .sql("SELECT a.x, b.x FROM a CROSS JOIN b")
            .await?
            .create_physical_plan()
            .await?;
        Ok((ctx, plan))
    }

    /// The batches `plan` returns before its first `Pending`, and whether it
    /// ended before yielding at all.
    async fn batches_before_yielding(
        ctx: &SessionContext,
        plan: Arc<dyn ExecutionPlan>,
    ) -> Result<(usize, bool)> {
        let mut stream = plan.execute(0, ctx.task_ctx())?;
        std::future::poll_fn(|cx| {
            let mut batches = 0;
            loop {
                match stream.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(_))) => batches += 1,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => return Poll::Ready(Ok((batches, true))),
                    Poll::Pending => return Poll::Ready(Ok((batches, false))),
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn a_cross_join_yields_within_one_budget() -> Result<()> {
        let (ctx, plan) = cross_join_plan().await?;
        // DataFusion's own plan makes all 1,000 batches in one poll: the
        // reason for this rule.
        let (batches, ended) = batches_before_yielding(&ctx, Arc::clone(&plan)).await?;
        assert_eq!((batches, ended), (1_000, true));

        let plan = YieldingJoins.optimize(plan, &ConfigOptions::default())?;
        let (batches, ended) = batches_before_yielding(&ctx, plan).await?;
        assert!(
            !ended && batches <= 128,
            "{batches} batches before yielding"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_join_is_wrapped_once() -> Result<()> {
        let (_ctx, plan) = cross_join_plan().await?;
        let config = ConfigOptions::default();
        let once = YieldingJoins.optimize(plan, &config)?;
        let twice = YieldingJoins.optimize(Arc::clone(&once), &config)?;
        let shown = |plan: &Arc<dyn ExecutionPlan>| {
            datafusion::physical_plan::displayable(plan.as_ref())
                .indent(false)
                .to_string()
        };
        assert_eq!(shown(&once), shown(&twice));
        assert_eq!(shown(&once).matches("CooperativeExec").count(), 1);
        Ok(())
    }
}
