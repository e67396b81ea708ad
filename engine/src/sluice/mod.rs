//! [`Sluice`]: one engine instance, shared by every session.

pub mod builder;
mod relation_details;

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{DataFrame, SessionContext};

use crate::session::SluiceSession;
use builder::{SluiceBuilder, SluiceConfig};

/// A Sluice engine: the catalog, functions and runtime every session shares.
///
/// Cheap to clone; clones share the engine.
#[derive(Clone)]
pub struct Sluice {
    /// The context every session is derived from. Its catalog list is shared
    /// by all sessions, so tables created in one are seen by all.
    base: Arc<SessionContext>,
    config: Arc<SluiceConfig>,
    /// The session behind [`Sluice::sql`].
    default_session: Arc<SluiceSession>,
}

impl std::fmt::Debug for Sluice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sluice")
            .field("config", &self.config)
            .finish()
    }
}

impl Sluice {
    /// Starts building an engine; see [`SluiceBuilder`].
    pub fn builder() -> SluiceBuilder {
        SluiceBuilder::default()
    }

    pub(crate) fn new(base: Arc<SessionContext>, config: SluiceConfig) -> Self {
        let default_session = Arc::new(SluiceSession::new(new_session_context(&base)));
        Self {
            base,
            config: Arc::new(config),
            default_session,
        }
    }

    /// The roles of the engine's data directory (`CREATE ROLE`), which the
    /// server authenticates against.
    pub fn roles(&self) -> Option<Arc<crate::roles::RoleCatalog>> {
        self.base
            .state_ref()
            .read()
            .config()
            .get_extension::<crate::roles::RoleCatalog>()
    }

    /// The engine's configuration.
    pub fn config(&self) -> &SluiceConfig {
        &self.config
    }

    /// Opens a new session: it shares the catalog but has its own settings,
    /// prepared statements and transaction state.
    pub fn session(&self) -> SluiceSession {
        SluiceSession::new(new_session_context(&self.base))
    }

    /// Runs one SQL statement in the engine's default session and returns
    /// its result as a DataFrame. Statements that return no rows (DDL, DML,
    /// `SET`) have already taken effect when this returns; DML yields one
    /// row with the affected `count`.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        self.default_session.sql(sql).await
    }
}

/// A session's own DataFusion context: same catalogs, functions and runtime
/// as the engine, separate configuration and prepared statements.
fn new_session_context(base: &SessionContext) -> SessionContext {
    let state = SessionStateBuilder::new_from_existing(base.state())
        .with_session_id(uuid_like_id())
        .build();
    SessionContext::new_with_state(state)
}

/// A process-unique session id; DataFusion only needs it to be distinct.
fn uuid_like_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("sluice-session-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
