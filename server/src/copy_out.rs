//! `COPY … TO STDOUT` over the wire: a stream of rows sent as COPY data in
//! the statement's format (text: tab-separated, `\N` for NULL, Postgres'
//! escapes; CSV; or binary, Postgres' `PGCOPY` framing around each row's
//! binary DataRow body), one CopyData message per row, for as long as the
//! stream lasts. pgwire's `CopyEncoder` writes text and CSV fields.
//! `COPY (SUBSCRIBE v)
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::data::DataRow;
use pgwire::messages::startup::ParameterStatus;
use sluice_engine::CopyOutput;
use sluice_engine::sql::copy::{CopyFormat, CopyFormatKind};

use crate::cancel::QueryToken;
use crate::encoding::{cancellable, data_rows, result_fields, text_rows};
use crate::sqlstate::pg_error;

/// The CopyOut response streaming `copy`'s rows until `token` is
/// cancelled, in its format. `rows_sent` counts the rows (not the header
/// or binary framing) for the `COPY n` tag.
pub fn copy_out_response(
    copy: CopyOutput,
    token: QueryToken,
    rows_sent: Arc<AtomicUsize>,
) -> PgWireResult<CopyResponse> {
    rows_sent.store(0, Ordering::Relaxed);
    let CopyOutput { rows, format } = copy;
    let schema = rows.schema();
    let sent = Arc::clone(&rows_sent);
    let counted = move |row: PgWireResult<CopyData>| {
        if row.is_ok() {
            sent.fetch_add(1, Ordering::Relaxed);
        }
        row
    };
    if format.kind == CopyFormatKind::Binary {
        let fields = Arc::new(result_fields(&schema, &Format::UnifiedBinary, None)?);
        let columns = fields.len();
        // As Postgres does, the header travels with the first row (psycopg
        // reads it from there) and the trailer alone, or with the header
        // when there are no rows.
        let mut first = true;
        let tuples = data_rows(rows, fields, token).map(move |row| {
            row.map(|row| {
                let header: &[u8] = if std::mem::take(&mut first) {
                    BINARY_HEADER
                } else {
                    &[]
                };
                binary_tuple(header, row)
            })
        });
        let trailer = stream::once(async move {
            let mut end = BytesMut::new();
            if rows_sent.load(Ordering::Relaxed) == 0 {
                end.extend_from_slice(BINARY_HEADER);
            }
            end.extend_from_slice(&BINARY_TRAILER);
            Ok(CopyData::new(end.freeze()))
        });
        // Made as a text response, then marked binary: `CopyResponse::new`
        // appends a trailer of its own to a binary one, which cannot carry
        // the header of an empty result.
        let mut response = CopyResponse::new(0, columns, tuples.map(counted).chain(trailer));
        response.format = 1;
        return Ok(response);
    }
    let fields = Arc::new(result_fields(&schema, &Format::UnifiedText, None)?);
    let columns = fields.len();
    let header = format.header.then(|| header_line(&schema, &format));
    let encoder_fields = Arc::clone(&fields);
    let data = rows
        .map(move |batch| match batch {
            Ok(batch) => copy_rows(batch, &encoder_fields, &format),
            Err(e) => vec![Err(pg_error(e))],
        })
        .flat_map(stream::iter)
        .map(counted);
    let data = stream::iter(header.map(|h| Ok(CopyData::new(h)))).chain(data);
    // Text format (0) for every column.
    Ok(CopyResponse::new(0, columns, cancellable(data, token)))
}

/// The signature, flags and header extension of a binary COPY
/// (Postgres' `PGCOPY\n\377\r\n\0`, no OIDs, no extension).
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The field count -1 that ends a binary COPY.
const BINARY_TRAILER: [u8; 2] = (-1i16).to_be_bytes();

/// A binary COPY tuple after `header`: the field count and each field as
/// length and bytes, which is exactly a binary DataRow's body.
fn binary_tuple(header: &[u8], row: DataRow) -> CopyData {
    let mut tuple = BytesMut::with_capacity(header.len() + 2 + row.data.len());
    tuple.extend_from_slice(header);
    tuple.put_i16(row.field_count);
    tuple.extend_from_slice(&row.data);
    CopyData::new(tuple.freeze())
}

/// The column names as COPY's HEADER line writes them.
fn header_line(schema: &Schema, format: &CopyFormat) -> Bytes {
    let delimiter = char::from(format.delimiter).to_string();
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|field| match format.kind {
            CopyFormatKind::Csv => csv_quoted(field.name(), format),
            CopyFormatKind::Text | CopyFormatKind::Binary => field.name().clone(),
        })
        .collect();
    Bytes::from(format!("{}\n", names.join(&delimiter)))
}

/// `value` quoted as CSV output quotes a field that needs it.
fn csv_quoted(value: &str, format: &CopyFormat) -> String {
    let quote = char::from(format.quote);
    let escape = char::from(format.escape);
    // Postgres quotes what could be mistaken for NULL, too.
    let needs_quotes = value.is_empty()
        || value == format.null
        || value.contains([char::from(format.delimiter), quote, '\n', '\r']);
    if !needs_quotes {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push(quote);
    for c in value.chars() {
        if c == quote || c == escape {
            quoted.push(escape);
        }
        quoted.push(c);
    }
    quoted.push(quote);
    quoted
}

/// How often a waiting COPY stream checks that its client is still there.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Sends `copy` to the client: CopyOutResponse, the rows as they come,
/// then CopyDone and the `COPY n` tag. An error in the stream (a cancel)
/// is returned for the caller to report; no CopyDone follows it.
pub async fn send_copy_out<C>(
    client: &mut C,
    copy: CopyResponse,
    rows_sent: &AtomicUsize,
) -> PgWireResult<()>
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
    // Only after a quiet HEARTBEAT: an interval's immediate first tick put
    // a ParameterStatus before the first row, which asyncpg's COPY reader
    // answers by dropping that row; a stream that flows sends none.
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = data_stream.next() => match item {
                Some(Ok(data)) => {
                    client.send(PgWireBackendMessage::CopyData(data)).await?;
                    heartbeat.reset();
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
            Tag::new("COPY")
                .with_rows(rows_sent.load(Ordering::Relaxed))
                .into(),
        ))
        .await?;
    Ok(())
}

/// One CopyData message per row of `batch`, in text or CSV.
fn copy_rows(
    batch: RecordBatch,
    fields: &Arc<Vec<FieldInfo>>,
    format: &CopyFormat,
) -> Vec<PgWireResult<CopyData>> {
    let rows = match text_rows(batch) {
        Ok(rows) => rows,
        Err(e) => return vec![Err(e)],
    };
    if format.kind == CopyFormatKind::Csv {
        // By hand: pgwire's CSV encoder leaves an empty string unquoted,
        // the same as NULL, so '' came back from a round trip as NULL.
        let delimiter = char::from(format.delimiter).to_string();
        return rows
            .into_iter()
            .map(|row| {
                let fields: Vec<String> = row
                    .iter()
                    .map(|value| match value {
                        None => format.null.clone(),
                        Some(value) => csv_quoted(value, format),
                    })
                    .collect();
                Ok(CopyData::new(Bytes::from(format!(
                    "{}\n",
                    fields.join(&delimiter)
                ))))
            })
            .collect();
    }
    let one_byte = |b: u8| char::from(b).to_string().into();
    let mut encoder = CopyEncoder::new_text(
        Arc::clone(fields),
        CopyTextOptions {
            delimiter: one_byte(format.delimiter),
            null_string: format.null.as_str().into(),
        },
    );
    rows.into_iter()
        .map(|row| {
            for value in &row {
                encoder.encode_field(value)?;
            }
            Ok(encoder.take_copy())
        })
        .collect()
}
