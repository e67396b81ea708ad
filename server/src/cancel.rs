//! Query cancellation: Postgres `CancelRequest`s (psql's Ctrl-C, drivers'
//! `cancel()`) and `statement_timeout`.
//!
//! pgwire only races its cancel signal against the future that *starts* a
//! query, not against the rows streamed afterwards, so Sluice keeps its own
//! token per running query and checks it while streaming (the `query`
//! module's row loop).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use pgwire::messages::startup::SecretKey;
use tokio_util::sync::CancellationToken;

/// Why a query was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The client sent a CancelRequest.
    UserRequest,
    /// `statement_timeout` expired.
    StatementTimeout,
}

/// The cancellation handle of one connection.
#[derive(Debug, Default)]
pub struct QueryCanceller {
    current: Mutex<Option<QueryToken>>,
}

/// The token of one running query and the reason it was cancelled, if so.
#[derive(Debug, Clone)]
pub struct QueryToken {
    token: CancellationToken,
    reason: Arc<Mutex<Option<CancelReason>>>,
}

impl QueryToken {
    fn new() -> Self {
        Self {
            token: CancellationToken::new(),
            reason: Arc::new(Mutex::new(None)),
        }
    }

    /// Cancels the query, recording why (the first reason wins).
    pub fn cancel(&self, reason: CancelReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(reason);
        self.token.cancel();
    }

    /// Resolves when the query is cancelled, with the reason.
    pub async fn cancelled(&self) -> CancelReason {
        self.token.cancelled().await;
        self.reason().unwrap_or(CancelReason::UserRequest)
    }

    /// The reason, if the query has been cancelled.
    pub fn reason(&self) -> Option<CancelReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl QueryCanceller {
    /// Starts a new query on this connection and returns its token. If a
    /// timeout is given, the query is cancelled when it expires.
    pub fn begin_query(&self, timeout: Option<Duration>) -> QueryToken {
        let query = QueryToken::new();
        if let Some(timeout) = timeout {
            let timer = query.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(timeout) => timer.cancel(CancelReason::StatementTimeout),
                    _ = timer.token.cancelled() => {}
                }
            });
        }
        // The previous query's token is left alone: a suspended portal may
        // still be streaming from it. Its timer, if any, ends at its timeout.
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(query.clone());
        query
    }

    /// Cancels the running query, if any.
    pub fn cancel_current(&self) {
        if let Some(query) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            query.cancel(CancelReason::UserRequest);
        }
    }
}

type ConnectionKey = (i32, Bytes);

/// Server-wide map from (backend pid, secret key) to each live connection's
/// canceller, consulted when a CancelRequest arrives on a new socket.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    connections: Mutex<HashMap<ConnectionKey, Weak<QueryCanceller>>>,
}

impl CancelRegistry {
    /// Registers a connection; the returned guard unregisters it on drop.
    pub fn register(
        self: &Arc<Self>,
        pid: i32,
        secret: &SecretKey,
        canceller: &Arc<QueryCanceller>,
    ) -> RegistrationGuard {
        let key = (pid, secret.to_bytes());
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), Arc::downgrade(canceller));
        RegistrationGuard {
            registry: Arc::clone(self),
            key,
        }
    }

    /// Cancels the running query of the connection with this key. Unknown
    /// keys are ignored, as Postgres does, so a wrong key reveals nothing.
    pub fn cancel(&self, pid: i32, secret: &SecretKey) {
        let canceller = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(pid, secret.to_bytes()))
            .and_then(Weak::upgrade);
        if let Some(canceller) = canceller {
            canceller.cancel_current();
        }
    }
}

/// Removes a connection from the [`CancelRegistry`] when it closes.
#[derive(Debug)]
pub struct RegistrationGuard {
    registry: Arc<CancelRegistry>,
    key: ConnectionKey,
}

impl Drop for RegistrationGuard {
    fn drop(&mut self) {
        self.registry
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancel_request_reaches_running_query() {
        let registry = Arc::new(CancelRegistry::default());
        let canceller = Arc::new(QueryCanceller::default());
        let key = SecretKey::I32(42);
        let _guard = registry.register(7, &key, &canceller);
        let query = canceller.begin_query(None);
        registry.cancel(7, &SecretKey::I32(41));
        assert_eq!(query.reason(), None, "a wrong key must not cancel");
        registry.cancel(7, &key);
        assert_eq!(query.cancelled().await, CancelReason::UserRequest);
    }

    #[tokio::test]
    async fn statement_timeout_cancels() {
        let canceller = QueryCanceller::default();
        let query = canceller.begin_query(Some(Duration::from_millis(10)));
        assert_eq!(query.cancelled().await, CancelReason::StatementTimeout);
    }

    #[test]
    fn guard_unregisters() {
        let registry = Arc::new(CancelRegistry::default());
        let canceller = Arc::new(QueryCanceller::default());
        let guard = registry.register(1, &SecretKey::I32(1), &canceller);
        drop(guard);
        assert!(registry.connections.lock().unwrap().is_empty());
    }
}
