//! Sends query responses to the client as they are produced.
//!
//! pgwire 0.41's default `on_query` runs every statement of a simple query
//! before sending the first response, and its default `on_execute` copies all
//! remaining rows of a portal into a `Vec` before sending them when the
//! client asks for "all rows" (`max_rows = 0`, what every driver sends). The
//! first reorders side effects (`SELECT ...; INSERT ...` would see the
//! insert); the second holds a whole result set in server memory. Sluice
//! overrides both handlers with these helpers, which stream rows straight
//! from DataFusion to the socket.

use std::fmt::Debug;
use std::mem;

use futures::{Sink, SinkExt};
use pgwire::api::portal::PortalExecutionState;
use pgwire::api::query::{send_partial_query_response, send_query_response};
use pgwire::api::results::Response;
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::{CommandComplete, EmptyQueryResponse, TransactionStatus};

use crate::sqlstate::{codes, user_error};

/// Sends one response of a simple query, RowDescription included, and
/// returns the transaction status it leaves behind.
pub async fn send_simple<C>(
    client: &mut C,
    response: Response,
    status: TransactionStatus,
) -> PgWireResult<TransactionStatus>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    match response {
        Response::Query(results) => {
            send_query_response(client, results, true).await?;
            Ok(status)
        }
        other => send_command(client, other, status).await,
    }
}

/// Sends the next rows of a started portal: up to `max_rows` of them (all
/// when 0), then `PortalSuspended` if rows remain or `CommandComplete`.
pub async fn send_portal_rows<C>(
    client: &mut C,
    state: &mut PortalExecutionState,
    max_rows: usize,
) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut results = match mem::take(state) {
        PortalExecutionState::Suspended(results) => results,
        PortalExecutionState::Finished => {
            // Postgres answers a re-executed finished portal with an empty
            // completion rather than an error.
            *state = PortalExecutionState::Finished;
            client
                .feed(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                    "SELECT 0".to_owned(),
                )))
                .await?;
            return Ok(());
        }
        PortalExecutionState::Initial => {
            return Err(internal("portal rows requested before the portal ran"));
        }
    };
    let suspended = send_partial_query_response(client, &mut results, max_rows).await?;
    *state = if suspended {
        PortalExecutionState::Suspended(results)
    } else {
        PortalExecutionState::Finished
    };
    Ok(())
}

/// Sends a response that carries no rows and tracks the transaction state.
pub async fn send_command<C>(
    client: &mut C,
    response: Response,
    status: TransactionStatus,
) -> PgWireResult<TransactionStatus>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let (tag, status) = match response {
        Response::EmptyQuery => {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
            return Ok(status);
        }
        Response::Execution(tag) => (tag, status),
        // BEGIN, or ROLLBACK TO SAVEPOINT: the only statement a failed
        // transaction runs that leaves it open, and no longer failed.
        Response::TransactionStart(tag) => (tag, TransactionStatus::Transaction),
        Response::TransactionEnd(tag) => (tag, status.to_idle_state()),
        Response::Error(error) => {
            client
                .feed(PgWireBackendMessage::ErrorResponse((*error).into()))
                .await?;
            return Ok(status.to_error_state());
        }
        Response::Query(_) => {
            return Err(internal("a row-returning response reached send_command"));
        }
        Response::CopyIn(_) | Response::CopyOut(_) | Response::CopyBoth(_) => {
            return Err(user_error(
                codes::FEATURE_NOT_SUPPORTED,
                "COPY over the wire protocol is not supported yet",
            ));
        }
    };
    client
        .feed(PgWireBackendMessage::CommandComplete(tag.into()))
        .await?;
    Ok(status)
}

fn internal(message: &str) -> PgWireError {
    user_error(codes::INTERNAL_ERROR, message)
}

/// Marks the connection busy for the length of a query, as pgwire's
/// defaults do, refusing a query that arrives while the connection is not
/// ready (for example after an extended-protocol error, before Sync).
pub fn begin_query<C: ClientInfo>(client: &mut C) -> PgWireResult<TransactionStatus> {
    if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
        return Err(PgWireError::NotReadyForQuery);
    }
    client.set_state(PgWireConnectionState::QueryInProgress);
    Ok(client.transaction_status())
}

/// Marks the connection ready again with the transaction status the query
/// left behind.
pub fn end_query<C: ClientInfo>(client: &mut C, status: TransactionStatus) {
    client.set_state(PgWireConnectionState::ReadyForQuery);
    client.set_transaction_status(status);
}
