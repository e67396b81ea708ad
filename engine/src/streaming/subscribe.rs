//! `SUBSCRIBE`: a materialized view's changes as rows, in Materialize's
//! form — `DECLARE c CURSOR FOR SUBSCRIBE v [WITH (snapshot = false)]`
//! then `FETCH [n | ALL] FROM c [WITH (timeout = '1s')]`, or
//! `COPY (SUBSCRIBE v) TO STDOUT` for a stream that never ends.
//!
//! Each row is `epoch BIGINT, op TEXT` (`'insert'` or `'delete'`; an update
//! is a delete and an insert in one epoch) followed by the view's columns.
//! With a snapshot (the default) the view's content comes first, as
//! inserts at the epoch it was taken, then every later epoch's changes.
//! A subscriber that falls more than a bounded number of epochs behind
//! fails (it never silently misses changes); dropping a subscription frees
//! everything it held.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use sluice_types::error::{SluiceError, SqlState};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::signal::{ChangeOp, Epoch};
use super::view::{EpochChanges, MaterializedView, ViewFollower};

/// A subscription to one view's changes.
pub struct Subscription {
    view: String,
    schema: SchemaRef,
    /// Rows received and not yet handed out, in the subscription's schema.
    pending: VecDeque<RecordBatch>,
    receiver: broadcast::Receiver<Arc<EpochChanges>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("view", &self.view)
            .finish()
    }
}

/// `epoch, op` then the view's columns.
pub fn subscription_schema(view: &Schema) -> SchemaRef {
    let mut fields = vec![
        Arc::new(Field::new("epoch", DataType::Int64, false)),
        Arc::new(Field::new("op", DataType::Utf8, false)),
    ];
    fields.extend(view.fields().iter().cloned());
    Arc::new(Schema::new(fields))
}

impl Subscription {
    /// Subscribes to `view` (named `name`), with its content first when
    /// `snapshot`.
    pub fn new(name: &str, view: &MaterializedView, snapshot: bool) -> Result<Self> {
        let ViewFollower {
            snapshot: content,
            receiver,
        } = view.subscribe(snapshot)?;
        let mut subscription = Self {
            view: name.to_owned(),
            schema: subscription_schema(view.schema()),
            pending: VecDeque::new(),
            receiver,
        };
        if let Some((epoch, batches)) = content {
            for batch in batches {
                subscription.push(epoch, ChangeOp::Insert, &batch)?;
            }
        }
        Ok(subscription)
    }

    /// The rows' schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn push(&mut self, epoch: Epoch, op: ChangeOp, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![epoch.0 as i64; rows])),
            Arc::new(StringArray::from(vec![op.name(); rows])),
        ];
        columns.extend(batch.columns().iter().cloned());
        self.pending
            .push_back(RecordBatch::try_new(Arc::clone(&self.schema), columns)?);
        Ok(())
    }

    fn take_epoch(&mut self, changes: &EpochChanges) -> Result<()> {
        for change in &changes.changes {
            self.push(changes.epoch, change.op, &change.batch)?;
        }
        Ok(())
    }

    /// Receives the next epoch, waiting until `deadline` (forever when
    /// `None`). `Ok(false)`: the deadline passed.
    async fn receive(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let received = match deadline {
            None => self.receiver.recv().await,
            Some(deadline) => match tokio::time::timeout_at(deadline, self.receiver.recv()).await {
                Ok(received) => received,
                Err(_) => return Ok(false),
            },
        };
        match received {
            Ok(changes) => {
                self.take_epoch(&changes)?;
                Ok(true)
            }
            Err(RecvError::Lagged(missed)) => Err(self.lagged(missed)),
            Err(RecvError::Closed) => Err(SluiceError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("materialized view {} was dropped", self.view),
            )
            .into()),
        }
    }

    fn lagged(&self, missed: u64) -> datafusion::error::DataFusionError {
        SluiceError::new(
            SqlState::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "the subscription to {} fell {missed} epochs behind and was dropped: fetch more \
                 often, or subscribe again",
                self.view
            ),
        )
        .into()
    }

    /// Everything already received, without waiting.
    fn drain_ready(&mut self) -> Result<()> {
        loop {
            match self.receiver.try_recv() {
                Ok(changes) => self.take_epoch(&changes)?,
                Err(broadcast::error::TryRecvError::Empty) => return Ok(()),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    return Err(self.lagged(missed));
                }
                Err(broadcast::error::TryRecvError::Closed) => return Ok(()),
            }
        }
    }

    /// `FETCH`: up to `limit` rows (all ready rows when `None`), waiting
    /// up to `timeout` (forever when `None`) for at least one.
    pub async fn fetch(
        &mut self,
        limit: Option<u64>,
        timeout: Option<Duration>,
    ) -> Result<RecordBatch> {
        self.drain_ready()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        while self.pending.is_empty() {
            if !self.receive(deadline).await? {
                break;
            }
        }
        let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let mut taken = Vec::new();
        let mut rows = 0usize;
        while rows < limit {
            let Some(batch) = self.pending.pop_front() else {
                break;
            };
            let wanted = limit - rows;
            if batch.num_rows() > wanted {
                self.pending
                    .push_front(batch.slice(wanted, batch.num_rows() - wanted));
                taken.push(batch.slice(0, wanted));
                rows += wanted;
            } else {
                rows += batch.num_rows();
                taken.push(batch);
            }
        }
        Ok(concat_batches(&self.schema, &taken)?)
    }

    /// The subscription as an endless stream (`COPY (SUBSCRIBE v) TO
    /// STDOUT`): it ends when the view is dropped or the reader goes.
    pub fn into_stream(self) -> SendableRecordBatchStream {
        let schema = self.schema();
        let stream = futures::stream::try_unfold(self, |mut subscription| async move {
            loop {
                if let Some(batch) = subscription.pending.pop_front() {
                    return Ok(Some((batch, subscription)));
                }
                match subscription.receive(None).await {
                    Ok(_) => {}
                    Err(e)
                        if SluiceError::find(&e).is_some_and(|s| {
                            s.sqlstate == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
                        }) =>
                    {
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, stream))
    }
}

/// A session's open SUBSCRIBE cursors, by name.
#[derive(Debug, Default)]
pub struct Cursors {
    open:
        std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<Subscription>>>>,
}

impl Cursors {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<String, Arc<tokio::sync::Mutex<Subscription>>>,
    > {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens cursor `name` over `subscription`.
    pub fn declare(&self, name: &str, subscription: Subscription) -> Result<()> {
        let mut open = self.lock();
        if open.contains_key(name) {
            return Err(SluiceError::new(
                SqlState::DUPLICATE_CURSOR,
                format!("cursor \"{name}\" already exists"),
            )
            .into());
        }
        open.insert(
            name.to_owned(),
            Arc::new(tokio::sync::Mutex::new(subscription)),
        );
        Ok(())
    }

    /// The cursor `name`.
    pub fn get(&self, name: &str) -> Result<Arc<tokio::sync::Mutex<Subscription>>> {
        self.lock().get(name).cloned().ok_or_else(|| {
            SluiceError::new(
                SqlState::INVALID_CURSOR_NAME,
                format!("cursor \"{name}\" does not exist"),
            )
            .into()
        })
    }

    /// Closes cursor `name` (every cursor when `None`).
    pub fn close(&self, name: Option<&str>) -> Result<()> {
        let mut open = self.lock();
        match name {
            None => open.clear(),
            Some(name) => {
                if open.remove(name).is_none() {
                    return Err(SluiceError::new(
                        SqlState::INVALID_CURSOR_NAME,
                        format!("cursor \"{name}\" does not exist"),
                    )
                    .into());
                }
            }
        }
        Ok(())
    }
}
