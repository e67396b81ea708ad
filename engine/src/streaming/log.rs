//! [`RegionLog`]: the durable log at a region boundary. The upstream
//! region (sources and the model calls at the head of the query) appends
//! one [`LogSegment`] per epoch — its output changes and signals, in order,
//! and the sources' offsets after the epoch — so the model's outputs are
//! kept, not its inputs: nothing downstream ever makes the model run again.
//! The downstream region reads the segments in epoch order, from memory
//! while it keeps up, from the store after it restarts.
//!
//! ```text
//! checkpoints/<query>/log/<epoch>.seg
//! ```
//! A segment is one object, written once with a create-if-absent put (a
//! second writer of the same epoch, a zombie, fails), so it is either
//! whole or absent. It is a small JSON header followed by each change's
//! rows as an Arrow IPC stream; the framing around the IPC streams is
//! hand-written because IPC has no container for batches of different
//! schemas (a join's two inputs) interleaved with signals.
//!
//! A segment is also the upstream region's checkpoint: its offsets are
//! where the sources resume after a crash. Segments the downstream region
//! has checkpointed past are deleted ([`RegionLog::truncate_through`]).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::error::{DataFusionError, Result};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::signal::{Change, ChangeOp, Epoch, InputIndex, Message, Signal, Watermark};
use crate::storage::{delete_if_present, read_object, storage_error};

/// Segments kept in memory for a downstream region that keeps up.
const CACHED_SEGMENTS: usize = 64;

/// Epochs the upstream region may run ahead of what the downstream region
/// has applied before it waits: a slow sink or operator slows the sources
/// (backpressure across the log), and a downstream region that keeps up
/// within the bound reads every segment from memory.
pub const MAX_LAG_EPOCHS: u64 = CACHED_SEGMENTS as u64;

const MAGIC: &[u8] = b"SLUICELOG1\n";

/// One epoch of an upstream region's output.
#[derive(Debug, Clone)]
pub struct LogSegment {
    /// The epoch.
    pub epoch: Epoch,
    /// Whether the downstream region checkpoints at its end.
    pub checkpoint: bool,
    /// The sources' offsets after the epoch.
    pub offsets: Vec<serde_json::Value>,
    /// The changes and signals (watermarks, end of data), in order.
    pub messages: Vec<Message>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    epoch: u64,
    checkpoint: bool,
    offsets: Vec<serde_json::Value>,
    entries: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Entry {
    Insert { input: InputIndex },
    Delete { input: InputIndex },
    Watermark { input: InputIndex, nanos: i64 },
    End { input: InputIndex },
}

fn corrupt(why: &str) -> DataFusionError {
    DataFusionError::Execution(format!("corrupt log segment: {why}"))
}

impl LogSegment {
    /// The segment as bytes; see the module docs.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut entries = Vec::with_capacity(self.messages.len());
        let mut bodies = Vec::new();
        for message in &self.messages {
            match message {
                Message::Data(input, change) => {
                    entries.push(match change.op {
                        ChangeOp::Insert => Entry::Insert { input: *input },
                        ChangeOp::Delete => Entry::Delete { input: *input },
                    });
                    let mut writer = StreamWriter::try_new(Vec::new(), &change.batch.schema())?;
                    writer.write(&change.batch)?;
                    bodies.push(writer.into_inner()?);
                }
                Message::Signal(input, Signal::Watermark(watermark)) => {
                    entries.push(Entry::Watermark {
                        input: *input,
                        nanos: watermark.0,
                    })
                }
                Message::Signal(input, Signal::EndOfData) => {
                    entries.push(Entry::End { input: *input })
                }
                // The segment's end is its barrier.
                Message::Signal(_, Signal::Barrier(_)) => {}
            }
        }
        let header = serde_json::to_vec(&Header {
            epoch: self.epoch.0,
            checkpoint: self.checkpoint,
            offsets: self.offsets.clone(),
            entries,
        })
        .map_err(|e| DataFusionError::Internal(format!("cannot encode a log segment: {e}")))?;
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        for body in bodies {
            bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
            bytes.extend_from_slice(&body);
        }
        Ok(bytes)
    }

    /// What [`Self::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut rest = bytes.strip_prefix(MAGIC).ok_or_else(|| corrupt("magic"))?;
        let mut chunk = || -> Result<&[u8]> {
            let (length, after) = rest
                .split_first_chunk::<8>()
                .ok_or_else(|| corrupt("length"))?;
            let length =
                usize::try_from(u64::from_le_bytes(*length)).map_err(|_| corrupt("length"))?;
            if after.len() < length {
                return Err(corrupt("truncated"));
            }
            let (body, after) = after.split_at(length);
            rest = after;
            Ok(body)
        };
        let header: Header =
            serde_json::from_slice(chunk()?).map_err(|e| corrupt(&e.to_string()))?;
        let mut messages = Vec::with_capacity(header.entries.len());
        for entry in header.entries {
            messages.push(match entry {
                Entry::Insert { input } | Entry::Delete { input } => {
                    let op = if matches!(entry, Entry::Insert { .. }) {
                        ChangeOp::Insert
                    } else {
                        ChangeOp::Delete
                    };
                    let mut reader = StreamReader::try_new(Cursor::new(chunk()?), None)?;
                    let batch = reader.next().ok_or_else(|| corrupt("no rows"))??;
                    Message::Data(input, Change { op, batch })
                }
                Entry::Watermark { input, nanos } => {
                    Message::Signal(input, Signal::Watermark(Watermark(nanos)))
                }
                Entry::End { input } => Message::Signal(input, Signal::EndOfData),
            });
        }
        Ok(Self {
            epoch: Epoch(header.epoch),
            checkpoint: header.checkpoint,
            offsets: header.offsets,
            messages,
        })
    }
}

/// The log between two regions of one query; see the module docs.
pub struct RegionLog {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    cache: Mutex<BTreeMap<Epoch, Arc<LogSegment>>>,
    /// The newest epoch appended.
    written: watch::Sender<Option<Epoch>>,
    /// Bytes of the segments not yet truncated.
    bytes: Mutex<BTreeMap<Epoch, u64>>,
    /// The newest epoch the downstream region has applied.
    applied: watch::Sender<Option<Epoch>>,
}

impl std::fmt::Debug for RegionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionLog").field("dir", &self.dir).finish()
    }
}

fn segment_name(epoch: Epoch) -> String {
    format!("{:020}.seg", epoch.0)
}

impl RegionLog {
    /// The log under `dir`, with what an earlier run left there.
    pub async fn open(store: Arc<dyn ObjectStore>, dir: Path) -> Result<Self> {
        let listed: Vec<_> = store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(storage_error)?;
        let mut bytes = BTreeMap::new();
        for meta in listed {
            if let Some(epoch) = meta
                .location
                .filename()
                .and_then(|name| name.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                bytes.insert(Epoch(epoch), meta.size);
            }
        }
        let newest = bytes.keys().next_back().copied();
        Ok(Self {
            store,
            dir,
            cache: Mutex::new(BTreeMap::new()),
            written: watch::channel(newest).0,
            bytes: Mutex::new(bytes),
            applied: watch::channel(None).0,
        })
    }

    fn cache(&self) -> MutexGuard<'_, BTreeMap<Epoch, Arc<LogSegment>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sizes(&self) -> MutexGuard<'_, BTreeMap<Epoch, u64>> {
        self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest epoch in the log.
    pub fn newest(&self) -> Option<Epoch> {
        *self.written.borrow()
    }

    /// Bytes of the segments kept.
    pub fn size(&self) -> u64 {
        self.sizes().values().sum()
    }

    /// Waits for epochs appended after the caller last looked.
    pub fn watch(&self) -> watch::Receiver<Option<Epoch>> {
        self.written.subscribe()
    }

    /// The downstream region has applied `epoch`. A region that restores
    /// an earlier checkpoint and replays does not move this back: the
    /// upstream region keeps running through a downstream recovery.
    pub fn mark_applied(&self, epoch: Epoch) {
        self.applied.send_if_modified(|applied| {
            let newer = applied.is_none_or(|a| epoch > a);
            if newer {
                *applied = Some(epoch);
            }
            newer
        });
    }

    /// Waits until appending `epoch` keeps the upstream region within
    /// [`MAX_LAG_EPOCHS`] of the downstream one; returns how long it
    /// waited.
    pub async fn wait_for_room(&self, epoch: Epoch) -> std::time::Duration {
        let began = std::time::Instant::now();
        let mut applied = self.applied.subscribe();
        loop {
            let done = applied.borrow_and_update().map_or(0, |a| a.0);
            if epoch.0 <= done.saturating_add(MAX_LAG_EPOCHS) {
                return began.elapsed();
            }
            // The sender lives as long as the log: a closed channel only
            // means the query is going away.
            if applied.changed().await.is_err() {
                return began.elapsed();
            }
        }
    }

    /// Appends `segment` durably, then announces it.
    pub async fn append(&self, segment: LogSegment) -> Result<()> {
        let encoded = segment.encode()?;
        let size = encoded.len() as u64;
        let path = self.dir.clone().join(segment_name(segment.epoch));
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(encoded), options)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(DataFusionError::Execution(format!(
                    "log segment {} was written by another instance",
                    segment.epoch
                )));
            }
            Err(e) => return Err(storage_error(e)),
        }
        let epoch = segment.epoch;
        self.sizes().insert(epoch, size);
        {
            let mut cache = self.cache();
            cache.insert(epoch, Arc::new(segment));
            while cache.len() > CACHED_SEGMENTS {
                cache.pop_first();
            }
        }
        self.written.send_replace(Some(epoch));
        Ok(())
    }

    /// The segment of `epoch` (which has been appended).
    pub async fn read(&self, epoch: Epoch) -> Result<Arc<LogSegment>> {
        if let Some(segment) = self.cache().get(&epoch) {
            return Ok(Arc::clone(segment));
        }
        let path = self.dir.clone().join(segment_name(epoch));
        let bytes = read_object(self.store.as_ref(), &path).await?;
        Ok(Arc::new(LogSegment::decode(&bytes)?))
    }

    /// The newest segment, read back (where the upstream region resumes).
    pub async fn newest_segment(&self) -> Result<Option<Arc<LogSegment>>> {
        match self.newest() {
            Some(epoch) => self.read(epoch).await.map(Some),
            None => Ok(None),
        }
    }

    /// The oldest epoch kept.
    pub fn oldest(&self) -> Option<Epoch> {
        self.sizes().keys().next().copied()
    }

    /// Deletes the segments up to `epoch`: every consumer has checkpointed
    /// past them. The newest segment stays (the upstream resumes from it).
    pub async fn truncate_through(&self, epoch: Epoch) -> Result<()> {
        let newest = self.newest();
        let doomed: Vec<Epoch> = self
            .sizes()
            .keys()
            .copied()
            .filter(|e| *e <= epoch && Some(*e) != newest)
            .collect();
        for old in doomed {
            delete_if_present(
                self.store.as_ref(),
                &self.dir.clone().join(segment_name(old)),
            )
            .await?;
            self.sizes().remove(&old);
            self.cache().remove(&old);
        }
        Ok(())
    }
}

impl RegionLog {
    /// Deletes every segment: the query starts over (created anew, or its
    /// checkpoint was unusable).
    pub async fn clear(&self) -> Result<()> {
        let all: Vec<Epoch> = self.sizes().keys().copied().collect();
        for epoch in all {
            delete_if_present(
                self.store.as_ref(),
                &self.dir.clone().join(segment_name(epoch)),
            )
            .await?;
            self.sizes().remove(&epoch);
        }
        self.cache().clear();
        self.written.send_replace(None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use object_store::memory::InMemory;

    use super::*;

    fn segment(epoch: u64) -> LogSegment {
        let ints = RecordBatch::try_from_iter([(
            "n",
            Arc::new(Int64Array::from(vec![epoch as i64, 2])) as ArrayRef,
        )])
        .unwrap();
        let texts =
            RecordBatch::try_from_iter([("s", Arc::new(StringArray::from(vec!["a"])) as ArrayRef)])
                .unwrap();
        LogSegment {
            epoch: Epoch(epoch),
            checkpoint: epoch.is_multiple_of(2),
            offsets: vec![serde_json::json!({ "position": epoch * 10 })],
            messages: vec![
                Message::Data(0, Change::insert(ints.clone())),
                Message::Signal(0, Signal::Watermark(Watermark(7))),
                Message::Data(1, Change::delete(texts)),
                Message::Signal(0, Signal::EndOfData),
            ],
        }
    }

    #[test]
    fn a_segment_comes_back_from_its_bytes() {
        let original = segment(3);
        let decoded = LogSegment::decode(&original.encode().unwrap()).unwrap();
        assert_eq!(decoded.epoch, Epoch(3));
        assert_eq!(decoded.offsets, original.offsets);
        assert_eq!(decoded.messages.len(), 4);
        match (&decoded.messages[2], &original.messages[2]) {
            (Message::Data(1, a), Message::Data(1, b)) => {
                assert_eq!(a.op, ChangeOp::Delete);
                assert_eq!(a.batch, b.batch);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            decoded.messages[1],
            Message::Signal(0, Signal::Watermark(Watermark(7)))
        ));
        let bytes = original.encode().unwrap();
        assert!(LogSegment::decode(&bytes[..bytes.len() - 3]).is_err());
    }

    #[tokio::test]
    async fn segments_survive_a_reopen_and_are_truncated_behind_consumers() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let log = RegionLog::open(Arc::clone(&store), Path::from("q/log"))
            .await
            .unwrap();
        for epoch in 1..=3 {
            log.append(segment(epoch)).await.unwrap();
        }
        // A second writer of an epoch (a zombie) is refused.
        assert!(log.append(segment(3)).await.is_err());
        let reopened = RegionLog::open(Arc::clone(&store), Path::from("q/log"))
            .await
            .unwrap();
        assert_eq!(reopened.newest(), Some(Epoch(3)));
        let newest = reopened.newest_segment().await.unwrap().unwrap();
        assert_eq!(newest.offsets, vec![serde_json::json!({ "position": 30 })]);
        reopened.truncate_through(Epoch(3)).await.unwrap();
        assert_eq!(
            reopened.oldest(),
            Some(Epoch(3)),
            "the newest segment stays"
        );
        assert!(reopened.read(Epoch(1)).await.is_err());
    }
}
