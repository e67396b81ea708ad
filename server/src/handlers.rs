//! The set of pgwire handlers one server uses for every connection.

use std::sync::Arc;

use async_trait::async_trait;
use log::info;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireServerHandlers};
use pgwire::error::PgWireError;
use pgwire::messages::cancel::CancelRequest;
use sluice_engine::Sluice;

use crate::auth::Authenticator;
use crate::cancel::CancelRegistry;
use crate::copy::SluiceCopyHandler;
use crate::query::SluiceQueryHandler;
use crate::startup::SluiceStartupHandler;

/// pgwire handlers backed by one Sluice engine.
pub(crate) struct SluiceHandlers {
    startup: Arc<SluiceStartupHandler>,
    query: Arc<SluiceQueryHandler>,
    cancel: Arc<SluiceCancelHandler>,
}

impl SluiceHandlers {
    /// `tls_required`: refuse clients that did not encrypt their connection.
    pub(crate) fn new(engine: Sluice, auth: Arc<Authenticator>, tls_required: bool) -> Self {
        let registry = Arc::new(CancelRegistry::default());
        Self {
            startup: Arc::new(SluiceStartupHandler::new(
                engine,
                Arc::clone(&registry),
                auth,
                tls_required,
            )),
            query: Arc::new(SluiceQueryHandler::default()),
            cancel: Arc::new(SluiceCancelHandler { registry }),
        }
    }
}

impl PgWireServerHandlers for SluiceHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.query)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.query)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::new(SluiceCopyHandler)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// Routes CancelRequests (which arrive on a fresh socket) to the connection
/// whose key they carry.
struct SluiceCancelHandler {
    registry: Arc<CancelRegistry>,
}

#[async_trait]
impl CancelHandler for SluiceCancelHandler {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.registry.cancel(request.pid, &request.secret_key);
    }
}

/// Logs every error sent to a client, at info level: they are the clients'
/// mistakes far more often than the server's.
struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        info!("error sent to {}: {error}", client.socket_addr());
    }
}
