//! Whole-query restarts: a checkpointed query that fails (an error or a
//! panic of a query without a region log, or a region that gave up
//! recovering on its own) is started again from its last checkpoint —
//! what Flink and Arroyo do for every failure. The two regions of a query
//! cut at a region log recover on their own ([`super::region`]) and get
//! here only when that keeps failing.
//!
//! The failed instance stays registered, its content readable and its
//! error in the status table, until a replacement has caught up with its
//! sources; only then does the replacement take its place. A failure that
//! is bound to come back — the replacement fails with the same error while
//! catching up, or fails again at the same epoch with the same error — is
//! left failed: restarting cannot help a division by zero in the data.

use std::sync::Arc;
use std::time::Duration;

use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use futures::future::BoxFuture;

use super::metrics::QueryState;
use super::registry::continuous_queries;

/// Starts the query again from its checkpoint (its creating statement, run
/// as a restart that replaces the failed instance once it has caught up).
pub type Restart = Arc<dyn Fn() -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// How often the supervisor looks at its query.
const POLL: Duration = Duration::from_millis(50);

/// Restarts after which a query that keeps failing is left failed.
const MAX_RESTARTS: u64 = 100;

/// Attempts at starting a replacement that fails for a new reason each
/// time (a store or a model coming back).
const MAX_ATTEMPTS: u32 = 5;

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
                Some(current) if Arc::ptr_eq(&current, &watched) => {}
                _ => return,
            }
            match watched.running.metrics().state {
                QueryState::Failed => break,
                QueryState::Finished => return,
                QueryState::Running | QueryState::Paused => {}
            }
        }
        let metrics = watched.running.metrics();
        let error = metrics.last_error.unwrap_or_default();
        // What still runs of it (a region after its failed one) stops
        // before a replacement claims the checkpoints.
        watched.running.stop();
        drop(watched);
        let before = queries.note_restart(&key, &error, metrics.epoch);
        if before.last_failure == Some((error.clone(), metrics.epoch)) {
            log::warn!(
                "{key} failed again at epoch {} ({error}); left failed",
                metrics.epoch
            );
            return;
        }
        if before.count >= MAX_RESTARTS {
            log::warn!("{key} failed again ({error}); left failed after {MAX_RESTARTS} restarts");
            return;
        }
        log::warn!("{key} failed ({error}); restarting it from its checkpoint");
        // Later restarts wait longer: a failure that repeats may be the
        // store or a model coming back.
        tokio::time::sleep(POLL * (before.count + 1).min(20) as u32).await;
        for attempt in 1..=MAX_ATTEMPTS {
            match restart().await {
                Ok(()) => return,
                Err(e) if !error.is_empty() && e.to_string().contains(&error) => {
                    log::warn!("{key} fails again while catching up ({e}); left failed");
                    return;
                }
                Err(e) => {
                    log::warn!("{key} could not restart (attempt {attempt}): {e}");
                    tokio::time::sleep(POLL * 4 * attempt).await;
                }
            }
        }
    });
}
