//! Parallel stateless stages: the projections, filters and function calls
//! (model calls, image decoding) at the head of each input run on several
//! batches at once, each in a task of its own, while everything after them
//! sees the batches in the order they arrived.
//!
//! A [`Dispatcher`] stands between the source task and the operator task.
//! It merges queued changes into larger batches ([`Dispatcher`] docs), hands
//! each to a free copy of its input's head stages (`streaming_parallelism`
//! copies, planned alike) running in a spawned task, and passes the task's
//! handle on, in order, with the signals; the operator task awaits the
//! handles in that order. Order, and so every result, is the same as with
//! one copy; the stateful stages after the head (aggregates, joins) run in
//! the operator task.

use datafusion::error::{DataFusionError, Result};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::operator::StreamOperator;
use super::pipeline::push;
use super::signal::{COALESCE_ROWS, Change, InputIndex, Message, coalesce_changes};

/// One copy of an input's head stages.
pub type HeadStages = Vec<Box<dyn StreamOperator>>;

/// What the operator task receives, in the source's order.
pub enum Staged {
    /// A message to handle as it is (signals; rows of an input whose head
    /// runs in the operator task).
    Message(Message),
    /// Rows of `input` going through its head stages in a task: its output.
    Running(InputIndex, JoinHandle<Result<Vec<Change>>>),
}

impl Staged {
    /// The messages it stands for, once its head stages (if running) are
    /// done: in arrival order, so every consumer sees the source's order.
    pub async fn resolve(self) -> Result<Vec<Message>> {
        match self {
            Staged::Message(message) => Ok(vec![message]),
            Staged::Running(input, task) => {
                let changes = task.await.map_err(|e| {
                    DataFusionError::Execution(match e.try_into_panic() {
                        Ok(panic) => super::metrics::panic_message(panic.as_ref()),
                        Err(e) => e.to_string(),
                    })
                })??;
                Ok(changes
                    .into_iter()
                    .map(|change| Message::Data(input, change))
                    .collect())
            }
        }
    }
}

/// Free copies of one input's head stages.
struct Pool {
    free: mpsc::Receiver<HeadStages>,
    give_back: mpsc::Sender<HeadStages>,
}

impl Pool {
    fn new(copies: Vec<HeadStages>) -> Result<Self> {
        let (give_back, free) = mpsc::channel(copies.len().max(1));
        for copy in copies {
            give_back
                .try_send(copy)
                .map_err(|_| DataFusionError::Internal("a stage pool overflowed".into()))?;
        }
        Ok(Self { free, give_back })
    }
}

/// Takes the source's messages, batches them and starts their head stages.
pub struct Dispatcher {
    receiver: mpsc::Receiver<Message>,
    sender: mpsc::Sender<Staged>,
    /// Per input, its head stages' copies (`None`: the head runs in the
    /// operator task, as with parallelism 1).
    pools: Vec<Option<Pool>>,
}

impl Dispatcher {
    /// A dispatcher from `receiver` to `sender`; `heads[input]` holds the
    /// copies of that input's head stages (empty for none).
    pub fn new(
        receiver: mpsc::Receiver<Message>,
        sender: mpsc::Sender<Staged>,
        heads: Vec<Vec<HeadStages>>,
    ) -> Result<Self> {
        let pools = heads
            .into_iter()
            .map(|copies| {
                if copies.is_empty() {
                    Ok(None)
                } else {
                    Pool::new(copies).map(Some)
                }
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            receiver,
            sender,
            pools,
        })
    }

    /// Runs until the source is gone or the operator task has stopped.
    pub async fn run(mut self) -> Result<()> {
        let mut next: Option<Message> = None;
        loop {
            let message = match next.take() {
                Some(message) => message,
                None => match self.receiver.recv().await {
                    Some(message) => message,
                    None => return Ok(()),
                },
            };
            let Message::Data(input, change) = message else {
                self.send(Staged::Message(message)).await?;
                continue;
            };
            let (changes, following) = self.take_queued(input, change)?;
            next = following;
            for change in changes {
                let staged = match self.pools.get_mut(input) {
                    Some(Some(pool)) => {
                        let mut head = pool.free.recv().await.ok_or_else(|| {
                            DataFusionError::Internal("a stage pool is empty".into())
                        })?;
                        let give_back = pool.give_back.clone();
                        Staged::Running(
                            input,
                            tokio::spawn(async move {
                                let out = push(&mut head, 0, vec![change]).await;
                                // The pool outlives every task it lends to.
                                let _ = give_back.send(head).await;
                                out
                            }),
                        )
                    }
                    _ => Staged::Message(Message::Data(input, change)),
                };
                self.send(staged).await?;
            }
        }
    }

    /// Adaptive batching: while the stages were busy (a model call), the
    /// source may have queued more rows; those of the same input and kind
    /// join `change`, so a slow model gets larger batches and a fast one
    /// never waits for rows that have not come. Returns the merged changes
    /// (one, unless their schemas differ) and the first message that did
    /// not join them.
    fn take_queued(
        &mut self,
        input: InputIndex,
        change: Change,
    ) -> Result<(Vec<Change>, Option<Message>)> {
        let op = change.op;
        let mut rows = change.batch.num_rows();
        let mut changes = vec![change];
        let mut following = None;
        while rows < COALESCE_ROWS {
            match self.receiver.try_recv() {
                Ok(Message::Data(next_input, next))
                    if next_input == input
                        && next.op == op
                        && rows + next.batch.num_rows() <= COALESCE_ROWS =>
                {
                    rows += next.batch.num_rows();
                    changes.push(next);
                }
                Ok(other) => {
                    following = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        Ok((coalesce_changes(changes)?, following))
    }

    async fn send(&mut self, staged: Staged) -> Result<()> {
        self.sender
            .send(staged)
            .await
            .map_err(|_| DataFusionError::Execution(super::metrics::OPERATORS_STOPPED.into()))
    }
}
