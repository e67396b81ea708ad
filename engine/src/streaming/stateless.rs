//! [`StatelessOperator`]: projections, filters, unions and every scalar
//! function (model calls included) of a continuous query, run as a
//! DataFusion physical plan once per incoming batch. Rows keep their op:
//! a deleted row maps to the deleted image of its output, which is what
//! makes retractions flow through projections and filters.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};

use super::feed::FeedSlot;
use super::operator::StreamOperator;
use super::signal::Change;

/// A stateless sub-plan over one input.
pub struct StatelessOperator {
    plan: Arc<dyn ExecutionPlan>,
    slot: Arc<FeedSlot>,
    input_schema: SchemaRef,
    task: Arc<TaskContext>,
}

impl StatelessOperator {
    /// Runs `plan`, whose leaves read `slot`, on every input batch (rows of
    /// `input_schema`).
    pub fn new(
        plan: Arc<dyn ExecutionPlan>,
        slot: Arc<FeedSlot>,
        input_schema: SchemaRef,
        task: Arc<TaskContext>,
    ) -> Self {
        Self {
            plan,
            slot,
            input_schema,
            task,
        }
    }
}

#[async_trait]
impl StreamOperator for StatelessOperator {
    fn name(&self) -> &str {
        "project"
    }

    fn is_stateless(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        // The sub-plan's nodes top-down, minus the feed at its leaf.
        // (Batching and cooperative-scheduling wrappers say nothing here.)
        let mut nodes = Vec::new();
        let mut node = Some(Arc::clone(&self.plan));
        while let Some(plan) = node {
            if !matches!(plan.name(), "CooperativeExec" | "CoalesceBatchesExec") {
                let line = displayable(plan.as_ref()).one_line().to_string();
                nodes.push(line.trim().to_owned());
            }
            node = plan.children().first().map(|child| Arc::clone(child));
        }
        nodes.pop();
        match nodes.is_empty() {
            true => "pass-through".into(),
            false => nodes.join(" <- "),
        }
    }

    fn output_schema(&self) -> SchemaRef {
        self.plan.schema()
    }

    async fn process_change(&mut self, change: Change, out: &mut Vec<Change>) -> Result<()> {
        if change.batch.num_rows() == 0 {
            return Ok(());
        }
        // The input's field names may differ from the plan's (a table's
        // rows vs the qualified leaf); the columns are what matter.
        let batch = RecordBatch::try_new(
            Arc::clone(&self.input_schema),
            change.batch.columns().to_vec(),
        )?;
        self.slot.put(batch);
        for batch in collect(Arc::clone(&self.plan), Arc::clone(&self.task)).await? {
            if batch.num_rows() > 0 {
                out.push(Change { batch, ..change });
            }
        }
        Ok(())
    }
}
