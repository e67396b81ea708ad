//! [`KeptEpochs`]: an exactly-once sink's pre-committed epochs — rows
//! applied but not yet delivered, kept until a checkpoint covering them is
//! durable, and kept *in* that checkpoint so that a restore can deliver
//! them if the crash came first. The NATS and table sinks share it.

use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};

use super::checkpoint::StateSnapshot;
use super::signal::Epoch;

/// The epoch column of kept rows in a checkpoint.
const EPOCH_COLUMN: &str = "__sluice_epoch";

/// Epochs applied and not yet delivered, oldest first.
#[derive(Default)]
pub struct KeptEpochs {
    epochs: Mutex<Vec<(Epoch, RecordBatch)>>,
}

impl KeptEpochs {
    fn lock(&self) -> MutexGuard<'_, Vec<(Epoch, RecordBatch)>> {
        self.epochs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps epoch `epoch`'s rows.
    pub fn keep(&self, epoch: Epoch, rows: RecordBatch) {
        self.lock().push((epoch, rows));
    }

    /// The kept epochs up to `through`, oldest first (still kept: call
    /// [`Self::forget_through`] once they are delivered).
    pub fn due(&self, through: Epoch) -> Vec<(Epoch, RecordBatch)> {
        self.lock()
            .iter()
            .filter(|(epoch, _)| *epoch <= through)
            .cloned()
            .collect()
    }

    /// Forgets the epochs up to `through` (delivered).
    pub fn forget_through(&self, through: Epoch) {
        self.lock().retain(|(epoch, _)| *epoch > through);
    }

    /// Forgets every kept epoch.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The kept rows for a checkpoint: each batch with its epoch as a first
    /// column (rows of `schema`).
    pub fn snapshot_batches(&self, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
        let mut fields = vec![Arc::new(Field::new(EPOCH_COLUMN, DataType::UInt64, false))];
        fields.extend(schema.fields().iter().cloned());
        let with_epoch = Arc::new(Schema::new(fields));
        self.lock()
            .iter()
            .map(|(epoch, batch)| {
                let mut columns: Vec<ArrayRef> =
                    vec![Arc::new(UInt64Array::from(vec![epoch.0; batch.num_rows()]))];
                columns.extend(batch.columns().iter().cloned());
                Ok(RecordBatch::try_new(Arc::clone(&with_epoch), columns)?)
            })
            .collect()
    }

    /// What [`Self::snapshot_batches`] wrote, by epoch (oldest first), as
    /// rows of `schema`.
    pub fn from_snapshot(
        snapshot: &StateSnapshot,
        schema: &SchemaRef,
    ) -> Result<Vec<(Epoch, RecordBatch)>> {
        let mut epochs: Vec<u64> = Vec::new();
        for batch in &snapshot.batches {
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| {
                    DataFusionError::Execution("corrupt kept epochs in a sink checkpoint".into())
                })?;
            epochs.extend(column.values().iter().copied());
        }
        epochs.sort_unstable();
        epochs.dedup();
        let mut kept = Vec::with_capacity(epochs.len());
        for epoch in epochs {
            for batch in &snapshot.batches {
                let mask = eq(batch.column(0), &UInt64Array::new_scalar(epoch))?;
                let rows = filter_record_batch(batch, &mask)?;
                if rows.num_rows() > 0 {
                    let rows =
                        RecordBatch::try_new(Arc::clone(schema), rows.columns()[1..].to_vec())?;
                    kept.push((Epoch(epoch), rows));
                }
            }
        }
        Ok(kept)
    }
}
