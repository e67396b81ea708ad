//! [`KeyedAggregate`]: a `GROUP BY` run as several copies of its operator,
//! each owning the groups whose key hashes to it — the keyed exchange of a
//! continuous query's stateful stage, so that its work spreads over the
//! cores (`streaming_parallelism`).
//!
//! Each change is split by the hash of its rows' group keys in Arrow's row
//! format (the bytes the operator itself keys its groups by), the copies
//! take their parts at once in tasks of their own, and their outputs are
//! handed on together. Signals (watermarks, barriers) go to every copy.
//! A checkpoint is the copies' groups together, in the one-operator format;
//! a restore splits the groups by the same hash over however many copies
//! there are now, so a query restored at another parallelism redistributes
//! its keyed state.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, BinaryArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::error::Result;
use datafusion::physical_expr::PhysicalExpr;
use futures::future::BoxFuture;

use super::checkpoint::corrupt;
use super::operator::evaluate_columns;
use crate::streaming::checkpoint::StateSnapshot;
use crate::streaming::copies::{lost_copy, run_copies, split, split_batch};
use crate::streaming::operator::{OperatorMetrics, StreamOperator};
use crate::streaming::signal::{Change, CheckpointBarrier, Watermark};

/// What a copy is asked to do.
enum Step {
    Change(Change),
    Watermark(Watermark),
    Barrier(CheckpointBarrier),
}

/// Does `step` on `copy`: what it emitted and, for a watermark step, the
/// watermark to pass on.
fn perform(
    copy: &mut Box<dyn StreamOperator>,
    step: Step,
) -> BoxFuture<'_, Result<(Vec<Change>, Option<Watermark>)>> {
    Box::pin(async move {
        let mut out = Vec::new();
        let passed = match step {
            Step::Change(change) => copy.process_change(change, &mut out).await.map(|_| None),
            Step::Watermark(watermark) => {
                copy.handle_watermark(watermark, &mut out).await.map(Some)
            }
            Step::Barrier(barrier) => copy
                .handle_checkpoint(barrier, &mut out)
                .await
                .map(|_| None),
        }?;
        Ok((out, passed))
    })
}

/// Copies of one aggregate, each owning the groups whose key hashes to it.
pub struct KeyedAggregate {
    /// `None` only while a copy is out working.
    copies: Vec<Option<Box<dyn StreamOperator>>>,
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    keys: RowConverter,
    name: String,
    /// What the key is, for `EXPLAIN` ("group key", "partition key").
    key_name: &'static str,
}

impl KeyedAggregate {
    /// Runs `copies` (two or more, of one grouped aggregate) side by side,
    /// keyed by `group_exprs` of `group_types`: the group columns, or for
    /// a SESSION aggregate its partition columns (sessions merge within a
    /// partition). Either way the first column of a copy's checkpoint
    /// holds the same key bytes, which a restore splits by.
    pub fn try_new(
        copies: Vec<Box<dyn StreamOperator>>,
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        group_types: Vec<DataType>,
        key_name: &'static str,
    ) -> Result<Self> {
        let name = format!(
            "{} (keyed over {} tasks)",
            copies.first().map_or("aggregate", |c| c.name()),
            copies.len()
        );
        Ok(Self {
            copies: copies.into_iter().map(Some).collect(),
            group_exprs,
            keys: RowConverter::new(group_types.into_iter().map(SortField::new).collect())?,
            name,
            key_name,
        })
    }

    fn first(&self) -> Result<&dyn StreamOperator> {
        self.copies
            .first()
            .and_then(|c| c.as_deref())
            .ok_or_else(lost_copy)
    }

    /// Runs `steps[i]` on copy `i` (those given), all at once, and
    /// gathers what they emitted in copy order; the watermark is the first
    /// copy's.
    async fn run(&mut self, steps: Vec<Option<Step>>) -> Result<(Vec<Change>, Option<Watermark>)> {
        let mut emitted = Vec::new();
        let mut watermark = None;
        for (changes, passed) in run_copies(&mut self.copies, steps, perform).await? {
            emitted.extend(changes);
            watermark = watermark.or(passed);
        }
        Ok((emitted, watermark))
    }

    /// `step` for every copy.
    fn everyone(&self, step: impl Fn() -> Step) -> Vec<Option<Step>> {
        (0..self.copies.len()).map(|_| Some(step())).collect()
    }
}

#[async_trait]
impl StreamOperator for KeyedAggregate {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        let inner = self.first().map(|c| c.describe()).unwrap_or_default();
        format!(
            "{inner}; keyed over {} tasks by the {}",
            self.copies.len(),
            self.key_name
        )
    }

    fn output_schema(&self) -> SchemaRef {
        match self.first() {
            Ok(copy) => copy.output_schema(),
            Err(_) => Arc::new(datafusion::arrow::datatypes::Schema::empty()),
        }
    }

    async fn process_change(&mut self, change: Change, out: &mut Vec<Change>) -> Result<()> {
        let batch = &change.batch;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let key_columns = evaluate_columns(&self.group_exprs, batch)?;
        let rows = self.keys.convert_columns(&key_columns)?;
        let steps = split_batch(batch, rows.iter().map(|row| row.data()), self.copies.len())?
            .into_iter()
            .map(|part| {
                part.map(|batch| {
                    Step::Change(Change {
                        op: change.op,
                        batch,
                    })
                })
            })
            .collect();
        let (emitted, _) = self.run(steps).await?;
        out.extend(emitted);
        Ok(())
    }

    async fn handle_watermark(
        &mut self,
        watermark: Watermark,
        out: &mut Vec<Change>,
    ) -> Result<Watermark> {
        let steps = self.everyone(|| Step::Watermark(watermark));
        let (emitted, passed) = self.run(steps).await?;
        out.extend(emitted);
        Ok(passed.unwrap_or(watermark))
    }

    async fn handle_checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<Change>,
    ) -> Result<()> {
        let steps = self.everyone(|| Step::Barrier(barrier));
        let (emitted, _) = self.run(steps).await?;
        out.extend(emitted);
        Ok(())
    }

    fn metrics(&self) -> OperatorMetrics {
        self.copies
            .iter()
            .flatten()
            .fold(OperatorMetrics::default(), |sum, copy| {
                sum.plus(copy.metrics())
            })
    }

    fn snapshot(&mut self) -> Result<Option<StateSnapshot>> {
        let mut batches = Vec::new();
        let mut meta = serde_json::Value::Null;
        let mut late_rows = 0;
        for copy in &mut self.copies {
            let copy = copy.as_mut().ok_or_else(lost_copy)?;
            late_rows += copy.metrics().late_rows;
            if let Some(snapshot) = copy.snapshot()? {
                batches.extend(snapshot.batches);
                if meta.is_null() {
                    meta = snapshot.meta;
                }
            }
        }
        // One operator's format: the copies' groups together.
        if meta.is_object() {
            meta["late_rows"] = serde_json::json!(late_rows);
        }
        Ok(Some(StateSnapshot { batches, meta }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        let copies = self.copies.len();
        let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); copies];
        for batch in &snapshot.batches {
            // Column 0 holds each group's key in row format.
            let keys = batch
                .columns()
                .first()
                .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
                .ok_or_else(|| corrupt("no group keys"))?;
            let split = split(keys.iter().map(|k| k.unwrap_or_default()), copies);
            for (at, indices) in split.into_iter().enumerate() {
                if !indices.is_empty() {
                    let indices = UInt32Array::from(indices);
                    let columns = batch
                        .columns()
                        .iter()
                        .map(|c| take(c.as_ref(), &indices, None))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    parts[at].push(RecordBatch::try_new(batch.schema(), columns)?);
                }
            }
        }
        for (at, (copy, batches)) in self.copies.iter_mut().zip(parts).enumerate() {
            let mut meta = snapshot.meta.clone();
            if at > 0 && meta.is_object() {
                // Late rows were counted once, not per copy.
                meta["late_rows"] = serde_json::json!(0);
            }
            copy.as_mut()
                .ok_or_else(lost_copy)?
                .restore(StateSnapshot { batches, meta })?;
        }
        Ok(())
    }
}
