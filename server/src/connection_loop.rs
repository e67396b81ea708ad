//! One client connection from first byte to close: TLS negotiation and the
//! message loop of pgwire's `process_socket`, plus the idle timeouts
//! Postgres enforces. pgwire's loop waits for the next message without a
//! limit and has no hook for one, so Sluice runs the loop itself over
//! pgwire's public pieces (`negotiate_tls`, `process_message`,
//! `process_error`): while a session waits at ReadyForQuery, the wait is
//! bounded by its `idle_session_timeout` (outside a transaction) or
//! `idle_in_transaction_session_timeout` (inside one), and a session that
//! exceeds it is closed with Postgres' FATAL error.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, SinkExt, StreamExt};
use log::info;
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::ErrorInfo;
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder, Framed, FramedParts};

use crate::held_output::{HeldOutput, OutputHold};
use crate::startup::Connection;

/// Time a client has to finish connecting (pgwire's own limit).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves one client connection until it ends.
pub(crate) async fn serve_connection<H: PgWireServerHandlers>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: Arc<H>,
) -> io::Result<()> {
    let startup_deadline = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_deadline);
    let negotiated = tokio::select! {
        _ = &mut startup_deadline => return Ok(()),
        negotiated = negotiate_tls(socket, tls) => negotiated?,
    };
    // None: a direct TLS handshake with no certificate configured.
    let Some(socket) = negotiated else {
        return Ok(());
    };
    let (mut socket, hold) = with_held_output(socket);
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let message = match socket.state() {
            PgWireConnectionState::AwaitingStartup
            | PgWireConnectionState::AuthenticationInProgress => tokio::select! {
                _ = &mut startup_deadline => None,
                message = next_message(&mut socket) => message,
            },
            PgWireConnectionState::ReadyForQuery => {
                let in_transaction = socket.transaction_status() != TransactionStatus::Idle;
                let limit = socket
                    .session_extensions()
                    .get::<Connection>()
                    .and_then(|conn| conn.session.idle_timeout(in_transaction));
                match limit {
                    None => next_message(&mut socket).await,
                    Some(limit) => {
                        match tokio::time::timeout(limit, next_message(&mut socket)).await {
                            Ok(message) => message,
                            Err(_) => {
                                info!(
                                    "closing the idle session of {} after {limit:?}",
                                    socket.socket_addr()
                                );
                                let error = idle_timeout_error(in_transaction);
                                // The client may be gone already: closing is all
                                // that is left either way.
                                hold.release();
                                let _ = socket
                                    .send(PgWireBackendMessage::ErrorResponse(error.into()))
                                    .await;
                                return Ok(());
                            }
                        }
                    }
                }
            }
            _ => next_message(&mut socket).await,
        };
        let Some(Ok(message)) = message else {
            break;
        };
        hold.hold();
        // Terminate: the client is leaving and waits for the socket to
        // close (asyncpg blocks on it).
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let is_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        if let Err(mut e) = process_message(
            message,
            &mut socket,
            Arc::clone(&startup),
            Arc::clone(&simple),
            Arc::clone(&extended),
            Arc::clone(&copy),
            Arc::clone(&cancel),
        )
        .await
        {
            pgwire::api::ErrorHandler::on_error(errors.as_ref(), &socket, &mut e);
            process_error(&mut socket, e, is_extended_query).await?;
            if let Some(conn) = socket.session_extensions().get::<Connection>() {
                let status = crate::query::after_error(&conn, socket.transaction_status());
                socket.set_transaction_status(status);
            }
        }
    }
    // What is still held goes out before the connection closes.
    hold.release();
    let _ = socket.flush().await;
    Ok(())
}

/// `socket` writing through a [`HeldOutput`], and the switch that holds its
/// output, which the handlers find among the session extensions.
fn with_held_output<S, C>(socket: Framed<S, C>) -> (Framed<HeldOutput<S>, C>, Arc<OutputHold>)
where
    C: Encoder<PgWireBackendMessage>,
    Framed<S, C>: ClientInfo,
{
    let hold = socket
        .session_extensions()
        .get_or_insert_with(OutputHold::default);
    let parts = socket.into_parts();
    let mut held = FramedParts::new::<PgWireBackendMessage>(
        HeldOutput::new(parts.io, Arc::clone(&hold)),
        parts.codec,
    );
    held.read_buf = parts.read_buf;
    held.write_buf = parts.write_buf;
    (Framed::from_parts(held), hold)
}

/// The client's next message. pgwire 0.41's decoder panics on some
/// truncated messages (a Bind, Parse, Execute, Describe or Close whose
/// body is shorter than its fields); such a message ends the connection
/// with Postgres' protocol-violation error instead of a silent drop.
async fn next_message<T, E>(socket: &mut T) -> Option<Result<PgWireFrontendMessage, E>>
where
    T: futures::Stream<Item = Result<PgWireFrontendMessage, E>>
        + futures::Sink<PgWireBackendMessage>
        + Unpin,
{
    match AssertUnwindSafe(socket.next()).catch_unwind().await {
        Ok(message) => message,
        Err(_) => {
            log::warn!("closing a connection that sent a malformed message");
            let error = ErrorInfo::new(
                "FATAL".into(),
                "08P01".into(),
                "invalid frontend message: a field runs past the end of the message".into(),
            );
            // The client may be gone already: closing is all that is left.
            let _ = socket
                .send(PgWireBackendMessage::ErrorResponse(error.into()))
                .await;
            None
        }
    }
}

/// Postgres' FATAL error for a session closed while idle.
fn idle_timeout_error(in_transaction: bool) -> ErrorInfo {
    let (code, message) = if in_transaction {
        (
            "25P03",
            "terminating connection due to idle-in-transaction timeout",
        )
    } else {
        (
            "57P05",
            "terminating connection due to idle-session timeout",
        )
    };
    ErrorInfo::new("FATAL".into(), code.into(), message.into())
}
