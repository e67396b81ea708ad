//! How a continuous query is started: for a client or from a stored
//! definition ([`Origin`]), and with which session settings
//! ([`QueryConfig`]).

use std::time::Duration;

/// Whether a statement runs for a client or replays a stored definition at
/// start (which must not be stored again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client's statement.
    Client,
    /// A stored definition restored when the engine opens.
    Restore,
    /// A running instance replaced by one restored from its checkpoint (a
    /// whole-query restart after a failure, a rescale): the old instance
    /// stays registered, its content readable, until the new one has
    /// caught up.
    Restart,
}

impl Origin {
    /// Whether the query resumes from its checkpoint (not a client's new
    /// query, which starts from nothing).
    pub fn resumes(self) -> bool {
        self != Origin::Client
    }
}

/// How a continuous query created now runs (the session's settings).
#[derive(Debug, Clone, Copy)]
pub struct QueryConfig {
    /// `barrier_interval_ms`: how often it closes an epoch.
    pub barrier_interval: Duration,
    /// `streaming_parallelism`: batches through its stateless stages at once.
    pub parallelism: usize,
    /// `checkpoint_interval_ms` (`None`: only at `CHECKPOINT`).
    pub checkpoint_interval: Option<Duration>,
    /// `region_logs`: whether a query whose head calls a model is cut into
    /// two regions at a durable log of the model's outputs.
    pub region_logs: bool,
}
