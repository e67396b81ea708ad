//! The accept loop: one task per connection, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use log::{info, warn};
use pgwire::error::ErrorInfo;
use pgwire::messages::Message;
use pgwire::messages::response::ErrorResponse;
use sluice_engine::Sluice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::connection_loop::serve_connection;
use crate::handlers::SluiceHandlers;
use crate::tls::TlsPolicy;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// How long shutdown waits for open connections to finish their work.
    pub shutdown_grace: Duration,
    /// Connections served at once; one more is refused with SQLSTATE 53300
    /// while the others go on.
    pub max_connections: usize,
    /// How clients log in (`trust` by default).
    pub auth: Arc<Authenticator>,
    /// Whether clients may, or must, encrypt their connections.
    pub tls: TlsPolicy,
}

/// Postgres' own default for `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5433)),
            shutdown_grace: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            auth: Arc::new(Authenticator::trust()),
            tls: TlsPolicy::default(),
        }
    }
}

/// An SSL or GSSAPI encryption request: the first message a client may
/// send before its startup message.
const ENCRYPTION_REQUESTS: [u32; 2] = [80_877_103, 80_877_104];

/// The longest startup message read from a client about to be refused.
const MAX_STARTUP_BYTES: usize = 10_000;

/// Time a client over the limit gets to send its startup message.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Tells a client over the limit so, as Postgres does: it declines an
/// encryption request, reads the startup message, then answers `FATAL
/// 53300` (so psql and the drivers show the message), and closes.
async fn refuse(mut socket: TcpStream, peer: SocketAddr, limit: usize) {
    warn!("refusing a connection from {peer}: {limit} connections already open");
    let exchange = async {
        let mut startup = read_message(&mut socket).await?;
        if startup.len() == 4
            && ENCRYPTION_REQUESTS.contains(&u32::from_be_bytes([
                startup[0], startup[1], startup[2], startup[3],
            ]))
        {
            socket.write_all(b"N").await?;
            startup = read_message(&mut socket).await?;
        }
        drop(startup);
        let info = ErrorInfo::new(
            "FATAL".into(),
            "53300".into(),
            format!("sorry, too many clients already (max_connections is {limit})"),
        );
        let mut buf = BytesMut::new();
        ErrorResponse::from(info)
            .encode(&mut buf)
            .map_err(std::io::Error::other)?;
        socket.write_all(&buf).await?;
        socket.shutdown().await
    };
    // The client may be gone or silent: nothing more to do about it.
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, exchange).await;
}

/// Reads one length-prefixed message without a type byte (what a client
/// sends first) and returns its body.
async fn read_message(socket: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let length = socket.read_u32().await? as usize;
    if !(4..=MAX_STARTUP_BYTES).contains(&length) {
        return Err(std::io::Error::other("not a startup message"));
    }
    let mut body = vec![0; length - 4];
    socket.read_exact(&mut body).await?;
    Ok(body)
}

/// Serves `engine` on `listener` until `shutdown` resolves, then stops
/// accepting connections and gives open ones `shutdown_grace` to finish.
pub async fn serve(
    engine: Sluice,
    listener: TcpListener,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let handlers = Arc::new(SluiceHandlers::new(
        engine,
        Arc::clone(&config.auth),
        config.tls.required,
    ));
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) if connections.len() >= config.max_connections => {
                    // Answered in a task of its own: a slow client over the
                    // limit must not hold up the accept loop.
                    tokio::spawn(refuse(socket, peer, config.max_connections));
                }
                Ok((socket, peer)) => {
                    let handlers = Arc::clone(&handlers);
                    let tls = config.tls.acceptor.clone();
                    connections.spawn(async move {
                        if let Err(e) = serve_connection(socket, tls, handlers).await {
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
