//! [`UnionOperator`]: where the branches of a `UNION ALL` over different
//! tables meet. It keeps no rows: a change from one side runs through the
//! union's DataFusion sub-plan (the union over one feed per side, with the
//! projections and filters above it) with the other sides' feeds empty,
//! and keeps its op, so inserts, updates and deletes of every side flow
//! through. Event time passes on as the lowest of the sides' watermarks,
//! once every side has one.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{ExecutionPlan, collect};

use super::feed::FeedSlot;
use super::signal::{Change, InputIndex, Watermark};

/// The meeting point of a union's sides; see the module docs.
pub struct UnionOperator {
    plan: Arc<dyn ExecutionPlan>,
    /// One per side.
    slots: Vec<Arc<FeedSlot>>,
    /// Each side's rows as the plan's feed reads them.
    input_schemas: Vec<SchemaRef>,
    /// Each side's watermark so far.
    watermarks: Vec<Option<Watermark>>,
    /// The watermark last passed on.
    passed: Option<Watermark>,
    task: Arc<TaskContext>,
}

impl UnionOperator {
    /// Runs `plan`, whose leaves read `slots` (side `i` of `input_schemas[i]`
    /// feeds slot `i`).
    pub fn try_new(
        plan: Arc<dyn ExecutionPlan>,
        slots: Vec<Arc<FeedSlot>>,
        input_schemas: Vec<SchemaRef>,
        task: Arc<TaskContext>,
    ) -> Result<Self> {
        if slots.len() != input_schemas.len() || slots.len() < 2 {
            return Err(DataFusionError::Internal(
                "a union needs one feed per side, two or more".into(),
            ));
        }
        Ok(Self {
            watermarks: vec![None; slots.len()],
            plan,
            slots,
            input_schemas,
            passed: None,
            task,
        })
    }

    /// How many sides meet here.
    pub fn sides(&self) -> usize {
        self.slots.len()
    }

    /// Takes a change from `side`; what the sub-plan makes of it goes to
    /// `out`, with the change's op.
    pub async fn process_change(
        &mut self,
        side: InputIndex,
        change: Change,
        out: &mut Vec<Change>,
    ) -> Result<()> {
        if change.batch.num_rows() == 0 {
            return Ok(());
        }
        let schema = self
            .input_schemas
            .get(side)
            .ok_or_else(|| DataFusionError::Internal(format!("a union has no side {side}")))?;
        // The side's field names may differ from the feed's (qualified)
        // ones; the columns are what matter.
        let batch = RecordBatch::try_new(Arc::clone(schema), change.batch.columns().to_vec())?;
        for (i, slot) in self.slots.iter().enumerate() {
            match i == side {
                true => slot.put(batch.clone()),
                false => slot.put_all(Vec::new()),
            }
        }
        for batch in collect(Arc::clone(&self.plan), Arc::clone(&self.task)).await? {
            if batch.num_rows() > 0 {
                out.push(Change { batch, ..change });
            }
        }
        Ok(())
    }

    /// Event time of `side` has reached `watermark`: returns the lowest of
    /// the sides' watermarks when that advanced (`None` until every side
    /// has one).
    pub fn handle_watermark(
        &mut self,
        side: InputIndex,
        watermark: Watermark,
    ) -> Option<Watermark> {
        let kept = self.watermarks.get_mut(side)?;
        if kept.is_none_or(|w| watermark > w) {
            *kept = Some(watermark);
        }
        let lowest = self
            .watermarks
            .iter()
            .copied()
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()?;
        if self.passed.is_some_and(|p| p >= lowest) {
            return None;
        }
        self.passed = Some(lowest);
        Some(lowest)
    }
}
