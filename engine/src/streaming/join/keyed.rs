//! [`KeyedJoin`]: a join run as copies of its operator, each owning the
//! equality keys that hash to it — the keyed exchange that spreads a
//! continuous query's join over the cores (`streaming_parallelism`).
//!
//! Both inputs' rows are split by the hash of their join keys (in Arrow's
//! row format, the right side's keys cast to the left's types), so the rows
//! that can match, and an outer join's key group, always meet in one copy.
//! Each copy is a whole [`JoinOperator`] with its own plan and kept rows;
//! they take their parts of a change at once, in tasks of their own
//! ([`crate::streaming::copies`]). Watermarks and barriers go to every copy.
//! A checkpoint is the copies' rows together, in the one-operator format,
//! and a restore splits them again by the same hash, so a query restored at
//! another parallelism redistributes its join state. A join without
//! equality keys runs as one copy.

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::error::{DataFusionError, Result};
use futures::future::BoxFuture;

use super::operator::{JoinKeys, JoinOperator};
use crate::streaming::checkpoint::StateSnapshot;
use crate::streaming::copies::{lost_copy, run_copies, split_batch};
use crate::streaming::operator::OperatorMetrics;
use crate::streaming::signal::{Change, CheckpointBarrier, InputIndex, Watermark};

/// How rows find their copy.
struct KeySplit {
    /// Each input's equality-key columns.
    columns: JoinKeys,
    /// The left keys' types, which both sides' keys are converted as.
    types: Vec<DataType>,
    converter: RowConverter,
}

impl KeySplit {
    /// `batch`'s rows (of `input`, or a checkpoint of its rows: the key
    /// columns come first in the same places) per copy.
    fn split(
        &self,
        input: usize,
        batch: &RecordBatch,
        copies: usize,
    ) -> Result<Vec<Option<RecordBatch>>> {
        let keys = self.columns[input]
            .iter()
            .zip(&self.types)
            .map(|(&column, data_type)| {
                let values = batch.columns().get(column).ok_or_else(|| {
                    DataFusionError::Internal(format!("a join key column {column} is missing"))
                })?;
                Ok(cast(values, data_type)?)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let rows = self.converter.convert_columns(&keys)?;
        split_batch(batch, rows.iter().map(|row| row.data()), copies)
    }
}

/// Copies of one join, each owning the keys that hash to it (one copy:
/// the join itself).
pub struct KeyedJoin {
    /// `None` only while a copy is out working.
    copies: Vec<Option<JoinOperator>>,
    /// Set when there is more than one copy.
    keys: Option<KeySplit>,
}

impl KeyedJoin {
    /// Runs `copies` of one join side by side; two or more need the join's
    /// equality `keys` (columns of each input, pair by pair) and the left
    /// input's schema to type them.
    pub fn try_new(
        copies: Vec<JoinOperator>,
        keys: Option<JoinKeys>,
        left_schema: &SchemaRef,
    ) -> Result<Self> {
        let keys = match (copies.len(), keys) {
            (0, _) => return Err(DataFusionError::Internal("a join without a copy".into())),
            (1, _) => None,
            (_, None) => {
                return Err(DataFusionError::Internal(
                    "a join without equality keys runs as one copy".into(),
                ));
            }
            (_, Some(columns)) => {
                let types = columns[0]
                    .iter()
                    .map(|&column| left_schema.field(column).data_type().clone())
                    .collect::<Vec<_>>();
                let converter =
                    RowConverter::new(types.iter().cloned().map(SortField::new).collect())?;
                Some(KeySplit {
                    columns,
                    types,
                    converter,
                })
            }
        };
        Ok(Self {
            copies: copies.into_iter().map(Some).collect(),
            keys,
        })
    }

    fn first(&self) -> Result<&JoinOperator> {
        self.copies
            .first()
            .and_then(Option::as_ref)
            .ok_or_else(lost_copy)
    }

    fn first_mut(&mut self) -> Result<&mut JoinOperator> {
        self.copies
            .first_mut()
            .and_then(Option::as_mut)
            .ok_or_else(lost_copy)
    }

    /// How many copies run the join.
    pub fn parallelism(&self) -> usize {
        self.copies.len()
    }

    /// Whether rows expire with the watermarks (an interval join).
    pub fn is_interval(&self) -> bool {
        self.first().is_ok_and(JoinOperator::is_interval)
    }

    /// Whether it is a LEFT, RIGHT or FULL join.
    pub fn is_outer(&self) -> bool {
        self.first().is_ok_and(JoinOperator::is_outer)
    }

    /// Whether each side's kept rows are found by key.
    pub fn is_indexed(&self) -> bool {
        self.first().is_ok_and(JoinOperator::is_indexed)
    }

    /// The schema of the rows it emits.
    pub fn output_schema(&self) -> Result<SchemaRef> {
        Ok(self.first()?.output_schema())
    }

    /// Joins a change of `input` with the other input's rows: each copy
    /// its share of the rows, all at once.
    pub async fn process_change(
        &mut self,
        input: InputIndex,
        change: Change,
        out: &mut Vec<Change>,
    ) -> Result<()> {
        let Some(keys) = &self.keys else {
            return self.first_mut()?.process_change(input, change, out).await;
        };
        let steps = keys
            .split(input.min(1), &change.batch, self.copies.len())?
            .into_iter()
            .map(|part| {
                part.map(|batch| {
                    (
                        input,
                        Change {
                            op: change.op,
                            batch,
                        },
                    )
                })
            })
            .collect();
        for emitted in run_copies(&mut self.copies, steps, join_part).await? {
            out.extend(emitted);
        }
        Ok(())
    }

    /// Event time of `input` has reached `watermark`, for every copy; the
    /// copies see the same watermarks, so they pass on the same one.
    pub fn handle_watermark(
        &mut self,
        input: InputIndex,
        watermark: Watermark,
    ) -> Result<Option<Watermark>> {
        let mut passed = None;
        for copy in &mut self.copies {
            let copy = copy.as_mut().ok_or_else(lost_copy)?;
            passed = passed.or(copy.handle_watermark(input, watermark)?);
        }
        Ok(passed)
    }

    /// A checkpoint barrier has passed, for every copy.
    pub fn checkpoint_barrier(&mut self, barrier: CheckpointBarrier) {
        for copy in self.copies.iter_mut().flatten() {
            copy.checkpoint_barrier(barrier);
        }
    }

    /// Each input's kept rows, the copies' together (their cadence is the
    /// same, so all are whole or all are changes since the same epoch);
    /// the first copy's scalars, with the late rows of all.
    pub fn snapshot(&mut self) -> Result<[StateSnapshot; 2]> {
        let mut merged: [StateSnapshot; 2] = Default::default();
        let mut late_rows = 0;
        for (at, copy) in self.copies.iter_mut().enumerate() {
            let copy = copy.as_mut().ok_or_else(lost_copy)?;
            late_rows += copy.metrics().late_rows;
            for (side, snapshot) in merged.iter_mut().zip(copy.snapshot()?) {
                if at == 0 {
                    side.meta = snapshot.meta;
                }
                side.batches.extend(snapshot.batches);
            }
        }
        if self.copies.len() > 1 && merged[0].meta.is_object() {
            merged[0].meta["late_rows"] = serde_json::json!(late_rows);
        }
        Ok(merged)
    }

    /// Takes back what [`Self::snapshot`] took (or a one-copy join's
    /// snapshot), each row to the copy its keys hash to.
    pub fn restore(&mut self, snapshots: [StateSnapshot; 2]) -> Result<()> {
        let Some(keys) = &self.keys else {
            return self.first_mut()?.restore(snapshots);
        };
        let copies = self.copies.len();
        let mut parts: Vec<[StateSnapshot; 2]> = (0..copies)
            .map(|at| {
                snapshots.clone().map(|snapshot| {
                    let mut meta = snapshot.meta;
                    if at > 0 && meta.get("late_rows").is_some() {
                        // Late rows were counted once, not per copy.
                        meta["late_rows"] = serde_json::json!(0);
                    }
                    StateSnapshot {
                        batches: Vec::new(),
                        meta,
                    }
                })
            })
            .collect();
        for (side, snapshot) in snapshots.iter().enumerate() {
            for batch in &snapshot.batches {
                for (at, part) in keys.split(side, batch, copies)?.into_iter().enumerate() {
                    if let Some(part) = part {
                        parts[at][side].batches.push(part);
                    }
                }
            }
        }
        for (copy, part) in self.copies.iter_mut().zip(parts) {
            copy.as_mut().ok_or_else(lost_copy)?.restore(part)?;
        }
        Ok(())
    }

    /// The copies' counters, summed.
    pub fn metrics(&self) -> OperatorMetrics {
        self.copies
            .iter()
            .flatten()
            .fold(OperatorMetrics::default(), |sum, copy| {
                sum.plus(copy.metrics())
            })
    }
}

/// One copy's part of a change.
fn join_part(
    copy: &mut JoinOperator,
    (input, change): (InputIndex, Change),
) -> BoxFuture<'_, Result<Vec<Change>>> {
    Box::pin(async move {
        let mut out = Vec::new();
        copy.process_change(input, change, &mut out).await?;
        Ok(out)
    })
}
