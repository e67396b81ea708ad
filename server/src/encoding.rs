//! Arrow ↔ Postgres: result columns and rows in text or binary format, and
//! bound parameter values. The per-type codecs are `arrow-pg`'s (bool, ints,
//! floats, numeric, text, bytea, date/time/timestamp(tz), interval, arrays,
//! structs); this module adapts them to Sluice's streams and cancellation.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::common::ParamValues;
use datafusion::physical_plan::SendableRecordBatchStream;
use std::panic::AssertUnwindSafe;

use futures::{FutureExt, Stream, StreamExt, stream};
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::FieldInfo;
use pgwire::api::stmt::StoredStatement;
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::Bind;
use pgwire::types::format::FormatOptions;

use crate::cancel::{CancelReason, QueryToken};
use crate::row_encoder::{announced_type, encode_batch_rows};
use crate::sqlstate::{codes, pg_error, user_error};
use sluice_engine::pg::oid_arrays::is_oid_array;
use sluice_types::SluiceType;

/// Describes result columns for the client: Sluice types as the Postgres
/// type they stand for, everything else by `arrow-pg`'s mapping.
pub fn result_fields(
    schema: &Schema,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> PgWireResult<Vec<FieldInfo>> {
    // pgwire indexes a Bind's result format codes by column and panics
    // past their end (fuzzing, seed 10); Postgres refuses the mismatch.
    if let Format::Individual(formats) = format
        && formats.len() != schema.fields().len()
    {
        return Err(user_error(
            codes::PROTOCOL_VIOLATION,
            format!(
                "bind message has {} result formats but query has {} columns",
                formats.len(),
                schema.fields().len()
            ),
        ));
    }
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(idx, field)| {
            let pg_type = match SluiceType::of_field(field) {
                Some(ty) => announced_type(ty),
                None if is_oid_array(field) => Type::OID_ARRAY,
                None => arrow_pg::datatypes::field_into_pg_type(field).map_err(|_| {
                    user_error(
                        codes::FEATURE_NOT_SUPPORTED,
                        format!(
                            "column \"{}\" is of type {}, which cannot be sent to clients yet \
                             (nested arrays, arrays of vectors); cast it to text",
                            field.name(),
                            field.data_type()
                        ),
                    )
                })?,
            };
            let info = FieldInfo::new(
                field.name().clone(),
                None,
                None,
                pg_type,
                format.format_for(idx),
            );
            Ok(match &options {
                Some(options) => info.with_format_options(Arc::clone(options)),
                None => info,
            })
        })
        .collect()
}

/// The Postgres type to announce for a parameter DataFusion inferred (or
/// could not infer: those are announced as text, and DataFusion casts the
/// text value where the query needs another type).
pub fn parameter_type(inferred: Option<&FieldRef>) -> Type {
    let Some(field) = inferred else {
        return Type::TEXT;
    };
    if field.data_type() == &DataType::Null {
        return Type::TEXT;
    }
    if let Some(ty) = SluiceType::of_field(field) {
        return announced_type(ty);
    }
    if is_oid_array(field) {
        return Type::OID_ARRAY;
    }
    // Inference often keeps only the storage type; these storage types stand
    // for one Sluice type each.
    if let Some(ty) = sluice_types::extension::text_target_of_storage(field.data_type()) {
        return announced_type(ty);
    }
    // arrow-pg reads `pg.oid_alias` metadata: a parameter compared with
    // `pg_type.oid` is announced as `oid`, which drivers bind as u32.
    arrow_pg::datatypes::field_into_pg_type(field).unwrap_or(Type::TEXT)
}

/// Decodes the parameter values bound to a portal, using the types the
/// client sent or else the ones Sluice announced.
pub fn bound_parameters<S: Clone>(
    portal: &Portal<S>,
    inferred: &[Option<DataType>],
    announced: &[Type],
) -> PgWireResult<ParamValues> {
    let inferred: Vec<Option<&DataType>> = inferred.iter().map(Option::as_ref).collect();
    let declared_int4 = oid_arrays_declared_as_int4(portal)?;
    let portal = declared_int4.as_ref().unwrap_or(portal);
    let rewritten = sluice_parameters_as_text(portal, announced)?;
    let (portal, announced) = match &rewritten {
        Some((portal, announced)) => (portal, announced.as_slice()),
        None => (portal, announced),
    };
    let announced: Vec<Option<&Type>> = announced
        .iter()
        .map(|ty| Some(decodable_type(ty)))
        .collect();
    arrow_pg::datatypes::df::deserialize_parameters_with_server_types(portal, &inferred, &announced)
}

/// `arrow-pg` cannot decode UUID or JSON parameters (it asks for a Rust
/// `String`, which refuses those types). Such parameters are handed to it
/// as text instead (binary UUIDs rewritten to their text form); the engine
/// then parses the text into the type the query needs.
fn sluice_parameters_as_text<S: Clone>(
    portal: &Portal<S>,
    announced: &[Type],
) -> PgWireResult<Option<(Portal<S>, Vec<Type>)>> {
    let client_types = &portal.statement.parameter_types;
    let sluice_type = |i: usize| -> Option<SluiceType> {
        let ty = client_types
            .get(i)
            .cloned()
            .flatten()
            .filter(|t| *t != Type::UNKNOWN)
            .or_else(|| announced.get(i).cloned())?;
        sluice_types::wire::sluice_type_for_oid(ty.oid())
    };
    let count = portal.parameter_len();
    if !(0..count).any(|i| sluice_type(i).is_some()) {
        return Ok(None);
    }
    let mut parameters = portal.parameters.clone();
    let mut formats = Vec::with_capacity(count);
    let mut types = client_types.clone();
    types.resize(count, None);
    let mut announced = announced.to_vec();
    for i in 0..count {
        let binary = portal.parameter_format.is_binary(i);
        let Some(ty) = sluice_type(i) else {
            formats.push(i16::from(binary));
            continue;
        };
        formats.push(0);
        types[i] = Some(Type::TEXT);
        if let Some(slot) = announced.get_mut(i) {
            *slot = Type::TEXT;
        }
        if binary && let Some(Some(bytes)) = portal.parameters.get(i) {
            let text = sluice_types::wire::binary_parameter_to_text(ty, bytes).map_err(pg_error)?;
            parameters[i] = Some(bytes::Bytes::from(text));
        }
    }
    Ok(Some((
        decoder_portal(portal, types, formats, parameters)?,
        announced,
    )))
}

/// `arrow-pg` has no decoder for `oid[]` parameters (asyncpg binds its type
/// introspection query's list as one). Their values are `int4[]`'s, with
/// another element OID in the binary header, which the `int4[]` decoder
/// does not check: they are decoded as `int4[]`.
fn decodable_type(ty: &Type) -> &Type {
    static INT4_ARRAY: Type = Type::INT4_ARRAY;
    if *ty == Type::OID_ARRAY {
        &INT4_ARRAY
    } else {
        ty
    }
}

/// The portal with the `oid[]` parameters its client declared retyped by
/// [`decodable_type`]; `None` when it declared none.
fn oid_arrays_declared_as_int4<S: Clone>(portal: &Portal<S>) -> PgWireResult<Option<Portal<S>>> {
    let declared = &portal.statement.parameter_types;
    if !declared.iter().flatten().any(|t| *t == Type::OID_ARRAY) {
        return Ok(None);
    }
    let types = declared
        .iter()
        .map(|t| t.as_ref().map(|t| decodable_type(t).clone()))
        .collect();
    let formats = (0..portal.parameter_len())
        .map(|i| i16::from(portal.parameter_format.is_binary(i)))
        .collect();
    decoder_portal(portal, types, formats, portal.parameters.clone()).map(Some)
}

/// A throwaway portal carrying rewritten parameters for the decoder (only
/// the parameters matter to it).
fn decoder_portal<S: Clone>(
    portal: &Portal<S>,
    types: Vec<Option<Type>>,
    formats: Vec<i16>,
    parameters: Vec<Option<bytes::Bytes>>,
) -> PgWireResult<Portal<S>> {
    let statement = Arc::new(StoredStatement::new(
        portal.statement.id.clone(),
        portal.statement.statement.clone(),
        types,
    ));
    let bind = Bind::new(
        Some(portal.name.clone()),
        None,
        formats,
        parameters,
        Vec::new(),
    );
    Portal::try_new(&bind, statement)
}

/// Turns a record-batch stream into Postgres data rows, one row at a time
/// (a large result, or a large batch, is never materialised: a batch of
/// 8,192 one-megabyte values once became 8 GB of encoded rows before the
/// first was sent), stopping with `57014` when the query is cancelled or
/// times out.
pub fn data_rows(
    batches: SendableRecordBatchStream,
    fields: Arc<Vec<FieldInfo>>,
    token: QueryToken,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    let schema = batches.schema();
    let rows = batches
        .map(move |batch| match batch {
            Ok(batch) => encode_batch(&schema, Arc::clone(&fields), batch),
            Err(e) => Box::new(std::iter::once(Err(pg_error(e)))),
        })
        .flat_map(stream::iter);
    cancellable(rows, token)
}

/// The rows of one batch, encoded as they are read. Columns are first cast
/// to the declared schema's types (DataFusion can hand out `Utf8` arrays
/// under a `Utf8View` schema), and a panic inside the codec ends the rows
/// with an error for this query instead of a dropped connection.
fn encode_batch(
    schema: &SchemaRef,
    fields: Arc<Vec<FieldInfo>>,
    batch: RecordBatch,
) -> Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send> {
    let batch = match conform(schema, batch) {
        Ok(batch) => batch,
        Err(e) => return Box::new(std::iter::once(Err(pg_error(e.into())))),
    };
    let mut rows = encode_batch_rows(batch, fields);
    let mut failed = false;
    Box::new(std::iter::from_fn(move || {
        if failed {
            return None;
        }
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rows.next())).unwrap_or_else(
            |_| {
                failed = true;
                Some(Err(user_error(
                    codes::INTERNAL_ERROR,
                    "internal error while encoding a result row",
                )))
            },
        )
    }))
}

fn conform(schema: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

/// Ends `rows` with a cancellation error as soon as `token` fires; after an
/// error nothing more is produced.
/// `rows` ending with the query's cancellation (Postgres' error) or with
/// an error for a panic inside the stream.
pub fn cancellable<S, T>(rows: S, token: QueryToken) -> impl Stream<Item = PgWireResult<T>> + Send
where
    S: Stream<Item = PgWireResult<T>> + Send + 'static,
    T: Send + 'static,
{
    let rows = Box::pin(rows);
    stream::unfold(Some((rows, token)), |state| async move {
        let (mut rows, token) = state?;
        tokio::select! {
            biased;
            reason = token.cancelled() => Some((Err(cancel_error(reason)), None)),
            // A panic inside an operator must cost this query, not the
            // connection (or, unwinding further, the server's task).
            item = AssertUnwindSafe(rows.next()).catch_unwind() => match item {
                Ok(Some(Ok(row))) => Some((Ok(row), Some((rows, token)))),
                Ok(Some(Err(e))) => Some((Err(e), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(user_error(codes::INTERNAL_ERROR, "internal error while executing the query")),
                    None,
                )),
            },
        }
    })
}

/// The error Postgres sends for a cancelled statement.
pub fn cancel_error(reason: CancelReason) -> pgwire::error::PgWireError {
    let message = match reason {
        CancelReason::UserRequest => "canceling statement due to user request",
        CancelReason::StatementTimeout => "canceling statement due to statement timeout",
    };
    user_error(codes::QUERY_CANCELED, message)
}

/// Renders a batch the way a client sees it in text format: one string per
/// value, `None` for NULL. The same codec as the wire, so in-process tests
/// and embedding programs see exactly what psql would.
pub fn text_rows(
    batch: datafusion::arrow::array::RecordBatch,
) -> PgWireResult<Vec<Vec<Option<String>>>> {
    let fields = Arc::new(result_fields(&batch.schema(), &Format::UnifiedText, None)?);
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in encode_batch_rows(batch, fields) {
        rows.push(decode_text_row(&row?)?);
    }
    Ok(rows)
}

/// Splits a DataRow message body into its values: each is a 4-byte length
/// (-1 for NULL) followed by that many bytes.
fn decode_text_row(row: &DataRow) -> PgWireResult<Vec<Option<String>>> {
    let malformed = || user_error(codes::INTERNAL_ERROR, "malformed data row");
    let mut data: &[u8] = &row.data;
    let mut values = Vec::with_capacity(usize::try_from(row.field_count).unwrap_or(0));
    for _ in 0..row.field_count {
        let (len, rest) = data.split_first_chunk::<4>().ok_or_else(malformed)?;
        let len = i32::from_be_bytes(*len);
        data = rest;
        if len < 0 {
            values.push(None);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| malformed())?;
        if data.len() < len {
            return Err(malformed());
        }
        let (value, rest) = data.split_at(len);
        values.push(Some(String::from_utf8_lossy(value).into_owned()));
        data = rest;
    }
    Ok(values)
}
