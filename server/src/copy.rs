//! The COPY FROM STDIN sub-protocol: after a `COPY … FROM STDIN` answered
//! CopyInResponse, the client's CopyData messages are fed to the
//! connection's [`CopyIn`](sluice_engine::copy_in::CopyIn), which streams
//! them into the table; CopyDone commits them.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::Tag;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};

use crate::sqlstate::{codes, pg_error, user_error};
use crate::startup::connection;

/// Receives the data of `COPY … FROM STDIN`.
#[derive(Debug, Default)]
pub struct SluiceCopyHandler;

#[async_trait]
impl CopyHandler for SluiceCopyHandler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = connection(client)?;
        let mut copy = conn.copy_in.lock().await;
        match copy.as_mut() {
            // A bad row is remembered and reported at CopyDone; the client
            // keeps sending until then, as with Postgres.
            Some(copy) => {
                copy.push(&copy_data.data).await;
                Ok(())
            }
            None => Err(no_copy()),
        }
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = connection(client)?;
        let copy = conn.copy_in.lock().await.take().ok_or_else(no_copy)?;
        let rows = copy.finish().await.map_err(pg_error)?;
        let tag = Tag::new("COPY").with_rows(usize::try_from(rows).unwrap_or(usize::MAX));
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Dropping the COPY aborts its INSERT: nothing is committed before
        // CopyDone.
        if let Ok(conn) = connection(client) {
            conn.copy_in.lock().await.take();
        }
        user_error(
            codes::QUERY_CANCELED,
            format!("COPY from stdin failed: {}", fail.message),
        )
    }
}

fn no_copy() -> PgWireError {
    user_error(codes::PROTOCOL_VIOLATION, "COPY data received outside COPY")
}
