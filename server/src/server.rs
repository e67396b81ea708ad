//! The accept loop: one task per connection, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use sluice_engine::Sluice;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::handlers::SluiceHandlers;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// How long shutdown waits for open connections to finish their work.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5433)),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `engine` on `listener` until `shutdown` resolves, then stops
/// accepting connections and gives open ones `shutdown_grace` to finish.
pub async fn serve(
    engine: Sluice,
    listener: TcpListener,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let handlers = Arc::new(SluiceHandlers::new(engine));
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let handlers = Arc::clone(&handlers);
                    connections.spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                            info!("connection from {peer} ended: {e}");
                        }
                    });
                }
                // Accept errors (e.g. too many open files) are transient:
                // back off briefly instead of spinning or exiting.
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    connections.close();
    info!(
        "shutting down: waiting up to {:?} for {} connection(s)",
        config.shutdown_grace,
        connections.len()
    );
    if tokio::time::timeout(config.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        warn!("closing {} connection(s) still open", connections.len());
    }
    Ok(())
}
