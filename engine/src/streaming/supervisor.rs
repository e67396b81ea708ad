//! Whole-query restarts: a checkpointed query that fails (an error or a
//! panic outside a region that recovers on its own: a single-region
//! query's operators, an upstream region's sources or model calls) is
//! started again from its last checkpoint — what Flink and Arroyo do for
//! every failure. Regions with a log before them never get here for a
//! failure of their own ([`super::region`]).

use std::sync::Arc;
use std::time::Duration;

use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use futures::future::BoxFuture;

use super::metrics::QueryState;
use super::registry::{continuous_queries, retire};

/// Starts the query again from its checkpoint (its creating statement, run
/// as a restore).
pub type Restart = Arc<dyn Fn() -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// How often the supervisor looks at its query.
const POLL: Duration = Duration::from_millis(50);

/// Restarts after which a query that keeps failing is left failed.
const MAX_RESTARTS: u64 = 100;

/// Watches query `key` and, when it fails, replaces it by what `restart`
/// starts. Stops once the query is dropped, finished or replaced.
pub fn watch(ctx: SessionContext, key: String, restart: Restart) {
    tokio::spawn(async move {
        let queries = continuous_queries(&ctx);
        let Some(watched) = queries.get(&key) else {
            return;
        };
        loop {
            tokio::time::sleep(POLL).await;
            match queries.get(&key) {
                Some(current) if std::sync::Arc::ptr_eq(&current, &watched) => {}
                _ => return,
            }
            match watched.running.metrics().state {
                QueryState::Failed => break,
                QueryState::Finished => return,
                QueryState::Running | QueryState::Paused => {}
            }
        }
        let restarts = queries.note_restart(&key);
        let error = watched.running.metrics().last_error.unwrap_or_default();
        if restarts > MAX_RESTARTS {
            log::warn!("{key} failed again ({error}); left failed after {MAX_RESTARTS} restarts");
            return;
        }
        log::warn!("{key} failed ({error}); restarting it from its checkpoint");
        // Later restarts wait longer: a failure that repeats may be the
        // store or a model coming back.
        tokio::time::sleep(POLL * restarts.min(20) as u32).await;
        if let Err(e) = retire(&ctx, &watched) {
            log::warn!("{key} could not be taken out for its restart: {e}");
            return;
        }
        drop(watched);
        for attempt in 1..=5u32 {
            match restart().await {
                Ok(()) => return,
                Err(e) => {
                    log::warn!("{key} could not restart (attempt {attempt}): {e}");
                    tokio::time::sleep(POLL * 4 * attempt).await;
                }
            }
        }
    });
}
