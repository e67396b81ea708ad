//! `COPY … TO STDOUT` over the wire: a stream of rows sent as COPY text
//! data (tab-separated, `\N` for NULL, Postgres' escapes), one CopyData
//! message per row, for as long as the stream lasts. `COPY (SUBSCRIBE v)
//! TO STDOUT` never ends by itself: it stops when the client cancels
//! (psql's Ctrl-C: an ErrorResponse 57014, as Postgres ends a cancelled
//! COPY), goes away, or the view is dropped.
//!
//! A client that goes away is only noticed when something is written to
//! it, and a quiet view writes nothing: so while waiting for rows the
//! sender writes a ParameterStatus (a message the protocol allows at any
//! time and clients apply silently) every [`HEARTBEAT`], and a closed
//! connection ends the subscription within two of them.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::startup::ParameterStatus;

use crate::cancel::QueryToken;
use crate::encoding::{cancellable, result_fields, text_rows};
use crate::sqlstate::pg_error;

/// The CopyOut response streaming `rows` until `token` is cancelled.
pub fn copy_out_response(
    rows: SendableRecordBatchStream,
    token: QueryToken,
) -> PgWireResult<CopyResponse> {
    let fields = Arc::new(result_fields(&rows.schema(), &Format::UnifiedText, None)?);
    let columns = fields.len();
    let data = rows
        .map(move |batch| match batch {
            Ok(batch) => copy_rows(batch, &fields),
            Err(e) => vec![Err(pg_error(e))],
        })
        .flat_map(stream::iter);
    // Text format (0) for every column.
    Ok(CopyResponse::new(0, columns, cancellable(data, token)))
}

/// How often a waiting COPY stream checks that its client is still there.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Sends `copy` to the client: CopyOutResponse, the rows as they come,
/// then CopyDone and the `COPY n` tag. An error in the stream (a cancel)
/// is returned for the caller to report; no CopyDone follows it.
pub async fn send_copy_out<C>(client: &mut C, copy: CopyResponse) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let column_formats = copy.column_formats();
    let CopyResponse {
        format,
        columns,
        mut data_stream,
        ..
    } = copy;
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            format,
            i16::try_from(columns).unwrap_or(i16::MAX),
            column_formats,
        )))
        .await?;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rows = 0usize;
    loop {
        tokio::select! {
            item = data_stream.next() => match item {
                Some(Ok(data)) => {
                    rows += 1;
                    client.send(PgWireBackendMessage::CopyData(data)).await?;
                }
                Some(Err(e)) => return Err(e),
                None => break,
            },
            _ = heartbeat.tick() => {
                client
                    .send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                        "integer_datetimes".into(),
                        "on".into(),
                    )))
                    .await?;
            }
        }
    }
    client
        .send(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    client
        .send(PgWireBackendMessage::CommandComplete(
            Tag::new("COPY").with_rows(rows).into(),
        ))
        .await?;
    Ok(())
}

/// One CopyData message per row of `batch`.
fn copy_rows(batch: RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> Vec<PgWireResult<CopyData>> {
    let rows = match text_rows(batch) {
        Ok(rows) => rows,
        Err(e) => return vec![Err(e)],
    };
    let mut encoder = CopyEncoder::new_text(Arc::clone(fields), CopyTextOptions::default());
    rows.into_iter()
        .map(|row| {
            for value in &row {
                encoder.encode_field(value)?;
            }
            Ok(encoder.take_copy())
        })
        .collect()
}
