//! [`ContinuousQueries`]: the engine's running continuous queries, by
//! name, shared by every session (a session-config extension, like the
//! table store).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::common::TableReference;
use datafusion::prelude::SessionContext;

use crate::sql::streaming_statement::StreamingStatement;

use super::config::QueryConfig;
use super::runner::RunningQuery;
use super::view::MaterializedView;

/// What a continuous query feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// A materialized view.
    View,
    /// A sink (`CREATE SINK`).
    Sink,
}

impl QueryKind {
    /// The kind's name in the status table.
    pub fn name(self) -> &'static str {
        match self {
            QueryKind::View => "materialized view",
            QueryKind::Sink => "sink",
        }
    }
}

/// One continuous query: a materialized view or a sink, and the query
/// feeding it.
pub struct ContinuousQuery {
    /// `schema.name`.
    pub name: String,
    /// View or sink.
    pub kind: QueryKind,
    /// Creation order: `FLUSH` goes through queries in it, so a query
    /// reading a view is flushed after that view.
    pub sequence: u64,
    /// The statement that created it.
    pub definition: String,
    /// The same, parsed (a restart runs it again).
    pub statement: StreamingStatement,
    /// The settings it runs with.
    pub config: QueryConfig,
    /// The tables it reads, resolved to `catalog.schema.table`.
    pub sources: Vec<TableReference>,
    /// Whether it can only take inserts from its source (windowed
    /// aggregates): rows of the source may then not be deleted or updated.
    pub append_only: bool,
    /// A view's current content (`None` for a sink).
    pub view: Option<Arc<MaterializedView>>,
    /// The running query.
    pub running: RunningQuery,
}

/// Every continuous query of an engine.
#[derive(Default)]
pub struct ContinuousQueries {
    queries: Mutex<BTreeMap<String, Arc<ContinuousQuery>>>,
    next_sequence: std::sync::atomic::AtomicU64,
    /// Per query, its whole-query restarts from its checkpoint.
    restarts: Mutex<BTreeMap<String, Restarts>>,
}

/// A query's whole-query restarts.
#[derive(Debug, Default, Clone)]
pub struct Restarts {
    /// How many there were.
    pub count: u64,
    /// The failure that caused the last one: its error and epoch.
    pub last_failure: Option<(String, u64)>,
}

impl std::fmt::Debug for ContinuousQueries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContinuousQueries")
            .field("names", &self.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ContinuousQueries {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<ContinuousQuery>>> {
        self.queries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A number for the next query created (see [`ContinuousQuery::sequence`]).
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Adds a query.
    pub fn insert(&self, query: ContinuousQuery) {
        self.lock().insert(query.name.clone(), Arc::new(query));
    }

    /// Removes (and so stops, once unused) the query `name`.
    pub fn remove(&self, name: &str) -> Option<Arc<ContinuousQuery>> {
        self.lock().remove(name)
    }

    /// The query `name`.
    pub fn get(&self, name: &str) -> Option<Arc<ContinuousQuery>> {
        self.lock().get(name).cloned()
    }

    /// Every query, by name.
    pub fn all(&self) -> Vec<Arc<ContinuousQuery>> {
        self.lock().values().cloned().collect()
    }

    /// Every query, in creation order.
    pub fn in_creation_order(&self) -> Vec<Arc<ContinuousQuery>> {
        let mut all = self.all();
        all.sort_by_key(|q| q.sequence);
        all
    }

    /// Counts a whole-query restart of `name` after it failed with `error`
    /// at `epoch`; returns its restarts before this one.
    pub fn note_restart(&self, name: &str, error: &str, epoch: u64) -> Restarts {
        let mut restarts = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = restarts.entry(name.to_owned()).or_default();
        let before = entry.clone();
        entry.count += 1;
        entry.last_failure = Some((error.to_owned(), epoch));
        before
    }

    /// How often `name` was restarted whole.
    pub fn restarts(&self, name: &str) -> u64 {
        let restarts = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
        restarts.get(name).map_or(0, |r| r.count)
    }

    /// Forgets `name`'s restarts (it was dropped).
    pub fn forget_restarts(&self, name: &str) {
        let mut restarts = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
        restarts.remove(name);
    }

    /// The queries reading `table` (resolved).
    pub fn readers_of(&self, table: &TableReference) -> Vec<Arc<ContinuousQuery>> {
        self.lock()
            .values()
            .filter(|q| q.sources.iter().any(|source| source.resolved_eq(table)))
            .cloned()
            .collect()
    }
}

/// The continuous queries of a session's engine (an empty registry when the
/// engine was built without one, as in unit tests).
pub fn continuous_queries(ctx: &SessionContext) -> Arc<ContinuousQueries> {
    ctx.state_ref()
        .read()
        .config()
        .get_extension::<ContinuousQueries>()
        .unwrap_or_default()
}
