//! [`ViewSource`]: a materialized view read as a stream — its content when
//! the query starts, then each epoch it applies. Views over views, and
//! `CREATE SINK … FROM v`, read their view this way.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result;
use sluice_types::error::{SluiceError, SqlState};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::StreamSource;
use crate::streaming::signal::{Change, Watermark};
use crate::streaming::view::{EpochChanges, MaterializedView, ViewFollower};

/// A view's changes as a source.
pub struct ViewSource {
    name: String,
    schema: SchemaRef,
    pending: VecDeque<Change>,
    receiver: broadcast::Receiver<Arc<EpochChanges>>,
    ended: bool,
}

impl ViewSource {
    /// Reads view `name`, starting with its content.
    pub fn new(name: &str, view: &MaterializedView) -> Result<Self> {
        let ViewFollower { snapshot, receiver } = view.subscribe(true)?;
        let pending = snapshot
            .into_iter()
            .flat_map(|(_, batches)| batches.into_iter().map(Change::insert))
            .collect();
        Ok(Self {
            name: name.to_owned(),
            schema: Arc::clone(view.schema()),
            pending,
            receiver,
            ended: false,
        })
    }

    fn take(&mut self, changes: &EpochChanges) {
        self.pending.extend(changes.changes.iter().cloned());
    }

    fn lagged(&self, missed: u64) -> datafusion::error::DataFusionError {
        SluiceError::new(
            SqlState::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "fell {missed} epochs behind materialized view {} and lost them; create this \
                 query again",
                self.name
            ),
        )
        .into()
    }
}

#[async_trait]
impl StreamSource for ViewSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn wait(&mut self) -> Result<bool> {
        if !self.pending.is_empty() {
            return Ok(true);
        }
        if self.ended {
            return Ok(false);
        }
        // Cancel-safe: a broadcast receive loses nothing when abandoned.
        match self.receiver.recv().await {
            Ok(changes) => {
                self.take(&changes);
                Ok(true)
            }
            Err(RecvError::Lagged(missed)) => Err(self.lagged(missed)),
            Err(RecvError::Closed) => {
                self.ended = true;
                Ok(!self.pending.is_empty())
            }
        }
    }

    async fn read(&mut self) -> Result<Vec<Change>> {
        loop {
            match self.receiver.try_recv() {
                Ok(changes) => self.take(&changes),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(missed)) => return Err(self.lagged(missed)),
                Err(TryRecvError::Closed) => {
                    self.ended = true;
                    break;
                }
            }
        }
        Ok(self.pending.drain(..).collect())
    }

    fn watermark(&self) -> Option<Watermark> {
        None
    }

    fn exhausted(&self) -> bool {
        self.ended && self.pending.is_empty()
    }
}
