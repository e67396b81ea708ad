//! [`JoinOperator`]: joins each change of one input with the rows the other
//! input holds now, through DataFusion's own join (a hash join on the
//! equality keys) run over the change and the kept rows.
//!
//! Where the join has equality keys that are plain columns of both inputs,
//! each side's kept rows are indexed by key ([`super::key_index`]) and a
//! change meets only the kept rows with its keys, so a change costs what it
//! matches, not the whole state.
//!
//! Joining is linear: with `L` and `R` the inputs' rows, a change `ΔL`
//! changes the result by `ΔL ⋈ R` (inserted or deleted as `ΔL` is), so
//! applying the changes one at a time, each against the other input's rows
//! as they are then, keeps the output equal to `L ⋈ R` at every epoch.

use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{ExecutionPlan, collect};

use super::bounds::TimeBounds;
use super::key_index::KeyIndex;
use super::outer::{difference, null_keyed};
use super::side::SideRows;
use crate::streaming::checkpoint::{DeltaCadence, StateSnapshot, counted_changes, counted_schema};
use crate::streaming::feed::FeedSlot;
use crate::streaming::operator::OperatorMetrics;
use crate::streaming::signal::{
    Change, ChangeOp, CheckpointBarrier, InputIndex, Watermark, event_time_nanos,
};

/// An inner join of a continuous query's two inputs, regular or (with
/// [`TimeBounds`]) an interval join.
pub struct JoinOperator {
    /// The join (and the projections and filters above it) over two feeds.
    plan: Arc<dyn ExecutionPlan>,
    /// Where each input's rows are put for the plan to read.
    slots: [Arc<FeedSlot>; 2],
    /// Each input's rows as the plan's feeds name them.
    input_schemas: [SchemaRef; 2],
    /// Each input's rows held for the other's changes.
    sides: [SideRows; 2],
    /// Each input's equality-key columns, where the join has such keys.
    keys: Option<JoinKeys>,
    /// A LEFT, RIGHT or FULL join: changes recompute their key groups
    /// (see [`super::outer`]).
    outer: bool,
    /// Set for an interval join: kept rows expire with the watermarks.
    bounds: Option<TimeBounds>,
    watermarks: [Option<Watermark>; 2],
    /// The watermark last passed downstream.
    passed: Option<Watermark>,
    late_rows: u64,
    task: Arc<TaskContext>,
    /// Each side's changes since the last snapshot, for incremental
    /// checkpoints (expiries are not among them: a restore expires again
    /// from the restored watermarks).
    unsaved: [Vec<Change>; 2],
    cadence: DeltaCadence,
}

/// The columns of each input that the join's equality conditions compare,
/// pair by pair (left key `i` equals right key `i`), of the same types.
pub type JoinKeys = [Vec<usize>; 2];

impl JoinOperator {
    /// Runs `plan`, whose two feeds read `slots` (rows of `input_schemas`);
    /// `keys`: the inputs' equality-key columns, to index the kept rows by
    /// (an `outer` join must have them).
    pub fn try_new(
        plan: Arc<dyn ExecutionPlan>,
        slots: [Arc<FeedSlot>; 2],
        input_schemas: [SchemaRef; 2],
        bounds: Option<TimeBounds>,
        keys: Option<JoinKeys>,
        outer: bool,
        task: Arc<TaskContext>,
    ) -> Result<Self> {
        if outer && (keys.is_none() || bounds.is_some()) {
            return Err(datafusion::error::DataFusionError::Internal(
                "an outer join runs with equality keys and without time bounds".into(),
            ));
        }
        let sides = [
            Self::side(&input_schemas[0], keys.as_ref().map(|k| &k[0]))?,
            Self::side(&input_schemas[1], keys.as_ref().map(|k| &k[1]))?,
        ];
        Ok(Self {
            plan,
            slots,
            input_schemas,
            sides,
            keys,
            outer,
            bounds,
            watermarks: [None, None],
            passed: None,
            late_rows: 0,
            task,
            unsaved: [Vec::new(), Vec::new()],
            cadence: DeltaCadence::default(),
        })
    }

    /// An input's kept rows, indexed by `keys` where given.
    fn side(schema: &SchemaRef, keys: Option<&Vec<usize>>) -> Result<SideRows> {
        let index = keys.map(|columns| KeyIndex::new(columns.clone()));
        Ok(SideRows::new(Arc::clone(schema), index))
    }

    /// Whether rows expire with the watermarks (an interval join), which
    /// also makes the output append-only and gives it a watermark.
    pub fn is_interval(&self) -> bool {
        self.bounds.is_some()
    }

    /// Whether it is a LEFT, RIGHT or FULL join.
    pub fn is_outer(&self) -> bool {
        self.outer
    }

    /// Whether each side's kept rows are found by key.
    pub fn is_indexed(&self) -> bool {
        self.keys.is_some()
    }

    /// The schema of the rows it emits.
    pub fn output_schema(&self) -> SchemaRef {
        self.plan.schema()
    }

    /// Joins a change of `input` with the other input's rows, then keeps it.
    pub async fn process_change(
        &mut self,
        input: InputIndex,
        change: Change,
        out: &mut Vec<Change>,
    ) -> Result<()> {
        let other = 1 - input.min(1);
        // The input's field names may differ from the feed's (a table's
        // rows vs the qualified leaf); the columns are what matter.
        let mut batch = RecordBatch::try_new(
            Arc::clone(&self.input_schemas[input]),
            change.batch.columns().to_vec(),
        )?;
        if let (Some(bounds), Some(watermark)) = (self.bounds, self.watermarks[input]) {
            batch = self.drop_late(batch, bounds.columns[input], watermark)?;
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.outer {
            return self.recompute_key_group(input, change.op, batch, out).await;
        }
        let probe_columns = self.keys.as_ref().map(|keys| keys[input].as_slice());
        let candidates = match self.sides[other].rows() {
            0 => Vec::new(),
            _ => self.sides[other].candidates(&batch, probe_columns)?,
        };
        if !candidates.is_empty() {
            self.slots[input].put(batch.clone());
            self.slots[other].put_all(candidates);
            // A join keeps its build side in the plan after running: a
            // fresh copy of the plan's state reads the new rows.
            let plan = reset_plan_states(Arc::clone(&self.plan))?;
            for joined in collect(plan, Arc::clone(&self.task)).await? {
                if joined.num_rows() > 0 {
                    out.push(Change {
                        op: change.op,
                        batch: joined,
                    });
                }
            }
            // Release the kept rows' batches until the next change.
            self.slots[other].put_all(Vec::new());
        }
        match change.op {
            ChangeOp::Insert => self.sides[input].insert(batch.clone())?,
            ChangeOp::Delete => self.sides[input].delete(&batch)?,
        }
        if self.cadence.is_active() {
            self.unsaved[input].push(Change {
                op: change.op,
                batch,
            });
        }
        Ok(())
    }

    /// An outer join's change: joins the rows of both inputs that share
    /// the change's keys before and after it, and emits the difference.
    async fn recompute_key_group(
        &mut self,
        input: usize,
        op: ChangeOp,
        batch: RecordBatch,
        out: &mut Vec<Change>,
    ) -> Result<()> {
        let Some(keys) = self.keys.clone() else {
            return Err(datafusion::error::DataFusionError::Internal(
                "an outer join without keys".into(),
            ));
        };
        // Both results must cover the same rows but the change: one way
        // of finding them for both (by key, or all rows for a change as
        // large as what is kept).
        let by_key = self.sides.iter().any(|side| side.is_small(&batch));
        let unkeyed = null_keyed(&batch, &keys[input])?;
        let mut before = self.key_group(&batch, &keys[input], by_key)?;
        if let (ChangeOp::Delete, Some(rows), true) = (op, &unkeyed, by_key) {
            before[input].push(rows.clone());
        }
        let old = self.run(before).await?;
        match op {
            ChangeOp::Insert => self.sides[input].insert(batch.clone())?,
            ChangeOp::Delete => self.sides[input].delete(&batch)?,
        }
        if self.cadence.is_active() {
            self.unsaved[input].push(Change {
                op,
                batch: batch.clone(),
            });
        }
        let mut after = self.key_group(&batch, &keys[input], by_key)?;
        if let (ChangeOp::Insert, Some(rows), true) = (op, unkeyed, by_key) {
            after[input].push(rows);
        }
        let new = self.run(after).await?;
        let (deleted, inserted) = difference(&self.plan.schema(), &old, &new)?;
        out.extend(deleted.map(Change::delete));
        out.extend(inserted.map(Change::insert));
        Ok(())
    }

    /// Each input's rows that share a key with `probe` (its key columns
    /// at `probe_columns`), or every row.
    fn key_group(
        &mut self,
        probe: &RecordBatch,
        probe_columns: &[usize],
        by_key: bool,
    ) -> Result<[Vec<RecordBatch>; 2]> {
        let group = |side: &mut SideRows| match by_key {
            true => side.by_key(probe, probe_columns),
            false => side.batches(),
        };
        let [left, right] = &mut self.sides;
        Ok([group(left)?, group(right)?])
    }

    /// The join over `feeds` (each input's rows).
    async fn run(&self, [left, right]: [Vec<RecordBatch>; 2]) -> Result<Vec<RecordBatch>> {
        self.slots[0].put_all(left);
        self.slots[1].put_all(right);
        let plan = reset_plan_states(Arc::clone(&self.plan))?;
        let joined = collect(plan, Arc::clone(&self.task)).await;
        self.slots[0].put_all(Vec::new());
        self.slots[1].put_all(Vec::new());
        Ok(joined?.into_iter().filter(|b| b.num_rows() > 0).collect())
    }

    /// Event time of `input` has reached `watermark`: drops the kept rows
    /// it expires (an interval join) and returns the watermark to pass
    /// downstream if it advanced. A regular join can pair a new row with a
    /// row of any age, so it passes none until both inputs have ended.
    pub fn handle_watermark(
        &mut self,
        input: InputIndex,
        watermark: Watermark,
    ) -> Result<Option<Watermark>> {
        let input = input.min(1);
        if self.watermarks[input].is_some_and(|w| w >= watermark) {
            return Ok(None);
        }
        self.watermarks[input] = Some(watermark);
        let [Some(left), Some(right)] = self.watermarks else {
            return Ok(None);
        };
        let downstream = if left == Watermark::END && right == Watermark::END {
            Watermark::END
        } else if let Some(bounds) = self.bounds {
            self.expire()?;
            // Rows still to come carry a left time of at least
            // min(left, right + lower) and a right time of at least
            // min(right, left − upper).
            Watermark(
                left.0
                    .min(right.0)
                    .min(right.0.saturating_add(bounds.lower))
                    .min(left.0.saturating_sub(bounds.upper)),
            )
        } else {
            return Ok(None);
        };
        if self.passed.is_some_and(|p| p >= downstream) {
            return Ok(None);
        }
        self.passed = Some(downstream);
        Ok(Some(downstream))
    }

    /// Drops the kept rows an interval join's watermarks have expired.
    fn expire(&mut self) -> Result<()> {
        let (Some(bounds), [Some(left), Some(right)]) = (self.bounds, self.watermarks) else {
            return Ok(());
        };
        // A left row matches right rows with times in
        // [left − upper, left − lower]; right rows still to come are at
        // or after the right watermark. And the other way round.
        self.sides[0].retain_from(bounds.columns[0], right.0.saturating_add(bounds.lower))?;
        self.sides[1].retain_from(bounds.columns[1], left.0.saturating_sub(bounds.upper))
    }

    /// A checkpoint barrier of `epoch` has passed: its snapshot is next.
    pub fn checkpoint_barrier(&mut self, barrier: CheckpointBarrier) {
        if barrier.checkpoint {
            self.cadence.barrier(barrier.epoch.0);
        }
    }

    /// Each input's kept rows for a checkpoint (the left one also carries
    /// the watermarks and counters): all of them, or (between whole
    /// checkpoints, see [`DeltaCadence`]) the changes since the last one,
    /// each row with a count of +1 or -1.
    pub fn snapshot(&mut self) -> Result<[StateSnapshot; 2]> {
        let meta = serde_json::json!({
            "watermarks": [self.watermarks[0].map(|w| w.0), self.watermarks[1].map(|w| w.0)],
            "passed": self.passed.map(|w| w.0),
            "late_rows": self.late_rows,
        });
        let unsaved = std::mem::take(&mut self.unsaved);
        let since = self.cadence.next_snapshot();
        let mut parts = Vec::with_capacity(2);
        for (input, (changes, meta)) in unsaved
            .into_iter()
            .zip([meta, serde_json::json!({})])
            .enumerate()
        {
            parts.push(match since {
                Some(since) => StateSnapshot::delta(
                    counted_changes(&counted_schema(&self.input_schemas[input]), &changes)?,
                    meta,
                    since,
                ),
                None => StateSnapshot {
                    batches: self.sides[input].batches()?,
                    meta,
                },
            });
        }
        let [left, right]: [StateSnapshot; 2] = parts
            .try_into()
            .map_err(|_| datafusion::error::DataFusionError::Internal("two sides".into()))?;
        Ok([left, right])
    }

    /// Takes back what [`Self::snapshot`] took.
    pub fn restore(&mut self, [left, right]: [StateSnapshot; 2]) -> Result<()> {
        let meta = &left.meta;
        for (input, watermark) in self.watermarks.iter_mut().enumerate() {
            *watermark = meta["watermarks"][input].as_i64().map(Watermark);
        }
        self.passed = meta["passed"].as_i64().map(Watermark);
        self.late_rows = meta["late_rows"].as_u64().unwrap_or(0);
        for (input, snapshot) in [left, right].into_iter().enumerate() {
            let schema = Arc::clone(&self.input_schemas[input]);
            let mut rows = Self::side(&schema, self.keys.as_ref().map(|k| &k[input]))?;
            let width = schema.fields().len();
            for batch in snapshot.batches {
                // Checkpointed batches carry the feed's schema again; a
                // delta's carry a count column after it.
                let rows_of = |keep: Option<&BooleanArray>| -> Result<RecordBatch> {
                    let batch = RecordBatch::try_new(
                        Arc::clone(&schema),
                        batch.columns().get(..width).unwrap_or_default().to_vec(),
                    )?;
                    Ok(match keep {
                        Some(keep) => filter_record_batch(&batch, keep)?,
                        None => batch,
                    })
                };
                match batch.columns().get(width) {
                    None => rows.insert(rows_of(None)?)?,
                    Some(counts) => {
                        let counts =
                            counts
                                .as_any()
                                .downcast_ref::<Int64Array>()
                                .ok_or_else(|| {
                                    datafusion::error::DataFusionError::Execution(
                                        "corrupt join checkpoint: no counts".into(),
                                    )
                                })?;
                        let inserted: BooleanArray =
                            counts.iter().map(|c| Some(c.unwrap_or(0) > 0)).collect();
                        let deleted: BooleanArray =
                            counts.iter().map(|c| Some(c.unwrap_or(0) < 0)).collect();
                        rows.insert(rows_of(Some(&inserted))?)?;
                        rows.delete(&rows_of(Some(&deleted))?)?;
                    }
                }
            }
            self.sides[input] = rows;
        }
        self.unsaved = [Vec::new(), Vec::new()];
        // The next checkpoint is a whole one.
        self.cadence = DeltaCadence::default();
        // Rows a delta chain brings back after they had expired.
        self.expire()
    }

    /// The operator's counters.
    pub fn metrics(&self) -> OperatorMetrics {
        OperatorMetrics {
            late_rows: self.late_rows,
            state_entries: (self.sides[0].rows() + self.sides[1].rows()) as u64,
        }
    }

    /// An interval join drops rows behind their input's watermark: the
    /// rows they would have matched may already be gone.
    fn drop_late(
        &mut self,
        batch: RecordBatch,
        column: usize,
        watermark: Watermark,
    ) -> Result<RecordBatch> {
        let times = event_time_nanos(batch.column(column))?;
        let keep: BooleanArray = times
            .iter()
            .map(|t| Some(t.is_some_and(|t| t >= watermark.0)))
            .collect();
        let late = keep.false_count();
        if late == 0 {
            return Ok(batch);
        }
        self.late_rows += late as u64;
        Ok(filter_record_batch(&batch, &keep)?)
    }
}
