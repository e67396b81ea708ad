//! The rows of a COPY in flight as a DataFusion source: the connection
//! parses the client's data and sends batches through a bounded channel;
//! the INSERT reading this source writes them as they come, so a COPY of
//! any size holds a few batches in memory and parsing overlaps writing.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::stream;
use tokio::sync::mpsc;

/// Batches in flight between the parser and the INSERT: enough to keep both
/// busy, few enough to bound memory.
const BATCHES_IN_FLIGHT: usize = 2;

/// What the parser sends.
pub(super) enum CopyMessage {
    /// Parsed rows.
    Rows(RecordBatch),
    /// The data ended cleanly: the INSERT may commit.
    End,
}

/// The sending side, kept by the COPY in progress.
pub(super) type CopySender = mpsc::Sender<CopyMessage>;

/// A source yielding the rows sent through the returned sender, and the
/// sender. The source fails (and so the INSERT commits nothing) when the
/// sender goes away before [`CopyMessage::End`]: a client that disconnects
/// or aborts mid-COPY leaves the table as it was.
pub(super) fn copy_source(schema: SchemaRef) -> Result<(StreamingTable, CopySender)> {
    let (sender, receiver) = mpsc::channel(BATCHES_IN_FLIGHT);
    let partition = CopyPartition {
        schema: Arc::clone(&schema),
        receiver: Mutex::new(Some(receiver)),
    };
    let table = StreamingTable::try_new(schema, vec![Arc::new(partition)])?;
    Ok((table, sender))
}

struct CopyPartition {
    schema: SchemaRef,
    /// Taken by the one execution of the INSERT.
    receiver: Mutex<Option<mpsc::Receiver<CopyMessage>>>,
}

impl std::fmt::Debug for CopyPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyPartition").finish_non_exhaustive()
    }
}

impl PartitionStream for CopyPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let receiver = match self.receiver.lock() {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        let first = match receiver {
            Some(receiver) => ReadState::Reading(receiver),
            None => ReadState::Taken,
        };
        let rows = stream::unfold(first, |state| async move {
            match state {
                ReadState::Taken => Some((
                    Err(DataFusionError::Internal(
                        "COPY's rows can be read only once".into(),
                    )),
                    ReadState::Done,
                )),
                ReadState::Done => None,
                ReadState::Reading(mut receiver) => match receiver.recv().await {
                    Some(CopyMessage::Rows(batch)) => {
                        Some((Ok(batch), ReadState::Reading(receiver)))
                    }
                    Some(CopyMessage::End) => None,
                    None => Some((
                        Err(DataFusionError::Execution(
                            "COPY ended before its data did: nothing was written".into(),
                        )),
                        ReadState::Done,
                    )),
                },
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            rows,
        ))
    }
}

/// Where the source's one stream stands.
enum ReadState {
    Reading(mpsc::Receiver<CopyMessage>),
    /// Another execution took the receiver.
    Taken,
    /// An error was reported; the stream ends.
    Done,
}
