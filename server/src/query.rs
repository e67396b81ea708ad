//! The simple and extended query protocols over a [`SluiceSession`]:
//! statements are parsed and planned by the engine, executed with the
//! connection's cancellation token, and their rows streamed batch by batch.
//!
//! [`SluiceSession`]: sluice_engine::SluiceSession

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use futures::{Sink, SinkExt};
use pgwire::api::DEFAULT_NAME;
use pgwire::api::copy::send_copy_in_response;
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{
    ExtendedQueryHandler, SimpleQueryHandler, send_describe_response, send_ready_for_query,
};
use pgwire::api::results::CopyResponse;
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::{NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{Describe, Execute, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::response::{NoticeResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::ParameterStatus;
use pgwire::types::format::FormatOptions;
use sluice_engine::statement::SessionCommand;
use sluice_engine::{PreparedStatement, QueryOutput, TransactionEffect};

use crate::cancel::QueryToken;
use crate::copy_out::{copy_out_response, send_copy_out};
use crate::encoding::{bound_parameters, cancel_error, data_rows, parameter_type, result_fields};
use crate::held_output::stream_output;
use crate::panic_guard::{guard, guard_sync};
use crate::respond::{begin_query, end_query, send_command, send_portal_rows, send_simple};
use crate::sqlstate::{codes, pg_error, user_error};
use crate::startup::{Connection, connection};

/// A statement prepared with the extended protocol's Parse message.
#[derive(Debug, Clone)]
pub struct WireStatement {
    prepared: PreparedStatement,
    /// Parameter types DataFusion inferred, in `$n` order.
    inferred: Vec<Option<DataType>>,
    /// Parameter types announced to the client in ParameterDescription.
    announced: Vec<Type>,
}

/// Parses and plans statements for the extended protocol.
#[derive(Debug, Default)]
pub struct SluiceQueryParser;

#[async_trait]
impl QueryParser for SluiceQueryParser {
    type Statement = WireStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<WireStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let conn = connection(client)?;
        let mut statements = guard_sync("parsing", || conn.session.parse(sql).map_err(pg_error))?;
        if statements.is_empty() {
            return Ok(None);
        }
        if statements.len() > 1 {
            return Err(user_error(
                codes::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let statement = statements.remove(0);
        let prepared = guard("planning", async {
            conn.session.prepare(&statement).await.map_err(pg_error)
        })
        .await?;
        let fields = prepared.parameter_fields().map_err(pg_error)?;
        let count = fields.len().max(types.len());
        let announced = (0..count)
            .map(|i| match types.get(i).cloned().flatten() {
                Some(client_type) if client_type != Type::UNKNOWN => client_type,
                _ => parameter_type(fields.get(i).and_then(Option::as_ref)),
            })
            .collect();
        let inferred = fields
            .into_iter()
            .map(|f| f.map(|f| f.data_type().clone()))
            .collect();
        Ok(Some(WireStatement {
            prepared,
            inferred,
            announced,
        }))
    }

    fn get_parameter_types(&self, stmt: &WireStatement) -> PgWireResult<Vec<Type>> {
        Ok(stmt.announced.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &WireStatement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        result_fields(
            &stmt.prepared.result_schema(),
            column_format.unwrap_or(&Format::UnifiedText),
            None,
        )
    }
}

/// Answers simple and extended queries.
#[derive(Debug, Default)]
pub struct SluiceQueryHandler {
    parser: Arc<SluiceQueryParser>,
}

#[async_trait]
impl SimpleQueryHandler for SluiceQueryHandler {
    /// Runs the statements of a simple query one after another, each one's
    /// response sent before the next starts, stopping at the first error.
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut status = begin_query(client)?;
        let conn = connection(client)?;
        // A query repeated with the same text is neither parsed nor planned again.
        let cached = conn.session.cached_simple_query(&query.query);
        let statements = match cached {
            Some(_) => Vec::new(),
            None => guard_sync("parsing", || {
                conn.session.parse(&query.query).map_err(pg_error)
            })?,
        };
        if cached.is_none() && statements.is_empty() {
            status = send_command(client, Response::EmptyQuery, status).await?;
        }
        let count = if cached.is_some() {
            1
        } else {
            statements.len()
        };
        let token = conn.canceller.begin_query(conn.session.statement_timeout());
        for index in 0..count {
            let prepared = match (&cached, statements.get(index)) {
                (Some(prepared), _) => Ok(prepared.clone()),
                (None, Some(statement)) => {
                    let prepared = guard("planning", async {
                        conn.session.prepare(statement).await.map_err(pg_error)
                    })
                    .await;
                    if let (Ok(prepared), 1) = (&prepared, count) {
                        conn.session.remember_simple_query(&query.query, prepared);
                    }
                    prepared
                }
                (None, None) => break,
            };
            let response = match prepared {
                Ok(prepared) => {
                    run(client, &conn, &prepared, None, &Format::UnifiedText, &token).await
                }
                Err(e) => Err(e),
            };
            let sent = match response {
                Ok(Response::CopyIn(copy)) => {
                    // The client sends the data next; pgwire's copy state
                    // takes the connection from here, ReadyForQuery included.
                    // Postgres, too, ends a multi-statement query at COPY's
                    // data (libpq cannot interleave them).
                    send_copy_in_response(client, copy).await?;
                    client.set_state(PgWireConnectionState::CopyInProgress(false));
                    client.set_transaction_status(status);
                    return Ok(());
                }
                Ok(Response::CopyOut(copy)) => {
                    // Streams until it ends (a subscription: until the
                    // client cancels); pgwire sends CopyDone and the tag.
                    stream_output(client);
                    send_copy_out(client, copy, &conn.copy_out_rows)
                        .await
                        .map(|()| status)
                }
                Ok(response) => send_simple(client, response, status).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(next) => status = next,
                // The client is gone: nothing more to say to it.
                Err(e @ PgWireError::IoError(_)) => return Err(e),
                Err(e) => {
                    // Postgres runs a multi-statement query until the first
                    // error and skips the rest.
                    let error = Response::Error(Box::new(ErrorInfo::from(e)));
                    status = after_error(&conn, send_command(client, error, status).await?);
                    break;
                }
            }
        }
        end_query(client, status);
        send_ready_for_query(client, status).await
    }

    /// Unused: [`Self::on_query`] streams each statement's response itself.
    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(user_error(
            codes::INTERNAL_ERROR,
            "simple queries are answered by on_query",
        ))
    }
}

#[async_trait]
impl ExtendedQueryHandler for SluiceQueryHandler {
    type Statement = WireStatement;
    type QueryParser = SluiceQueryParser;

    fn query_parser(&self) -> Arc<SluiceQueryParser> {
        Arc::clone(&self.parser)
    }

    /// pgwire's describe, except for what returns no columns: a statement
    /// returning no rows (an INSERT with parameters) answers NoData as
    /// Postgres does (pgwire sends an empty RowDescription whenever there
    /// are parameters, and pgjdbc then counts 0 rows for every statement of
    /// a batch), and a query of zero columns (`SELECT FROM t`) an empty
    /// RowDescription (pgwire answers NoData, and a client then meets rows
    /// it was told would not come).
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = WireStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let (parameters, returns_rows) = if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            let Some(Entry::Value(statement)) = client.portal_store().get_statement(name) else {
                return self._on_describe(client, message).await;
            };
            let response = self.do_describe_statement(client, &statement).await?;
            if !response.fields.is_empty() {
                return send_describe_response(client, &response).await;
            }
            let returns_rows = statement.statement.prepared.returns_rows();
            (Some(response.parameters), returns_rows)
        } else {
            let Some(Entry::Value(portal)) = client.portal_store().get_portal(name) else {
                return self._on_describe(client, message).await;
            };
            let response = self.do_describe_portal(client, &portal).await?;
            if !response.fields.is_empty() {
                return send_describe_response(client, &response).await;
            }
            let returns_rows = portal.statement.statement.prepared.returns_rows();
            (None, returns_rows)
        };
        if let Some(parameters) = parameters {
            client
                .feed(PgWireBackendMessage::ParameterDescription(
                    ParameterDescription::new(parameters.iter().map(Type::oid).collect()),
                ))
                .await?;
        }
        let description = if returns_rows {
            PgWireBackendMessage::RowDescription(RowDescription::new(Vec::new()))
        } else {
            PgWireBackendMessage::NoData(NoData::new())
        };
        client.send(description).await?;
        Ok(())
    }

    /// Executes a portal, streaming its rows to the socket (pgwire's default
    /// buffers every row when the client asks for all of them).
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = WireStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut status = begin_query(client)?;
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let max_rows = usize::try_from(message.max_rows).unwrap_or(0);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) => portal,
            Some(Entry::Empty) => {
                status = send_command(client, Response::EmptyQuery, status).await?;
                end_query(client, status);
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(name.to_owned())),
        };
        let state = portal.state();
        let mut state = state.lock().await;
        if matches!(*state, PortalExecutionState::Initial) {
            match ExtendedQueryHandler::do_query(self, client, &portal, max_rows).await? {
                Response::Query(results) => *state = PortalExecutionState::Suspended(results),
                Response::CopyOut(copy) => {
                    *state = PortalExecutionState::Finished;
                    stream_output(client);
                    send_copy_out(client, copy, &connection(client)?.copy_out_rows).await?;
                    end_query(client, status);
                    return Ok(());
                }
                Response::CopyIn(copy) => {
                    *state = PortalExecutionState::Finished;
                    send_copy_in_response(client, copy).await?;
                    client.set_state(PgWireConnectionState::CopyInProgress(true));
                    client.set_transaction_status(status);
                    return Ok(());
                }
                other => {
                    *state = PortalExecutionState::Finished;
                    let ends_transaction = matches!(other, Response::TransactionEnd(_));
                    status = send_command(client, other, status).await?;
                    if ends_transaction {
                        client.portal_store().rm_portal(DEFAULT_NAME);
                    }
                    end_query(client, status);
                    return Ok(());
                }
            }
        }
        send_portal_rows(client, &mut state, max_rows).await?;
        end_query(client, status);
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<WireStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = WireStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = connection(client)?;
        let statement = &portal.statement.statement;
        if portal.parameter_len() != statement.announced.len() {
            return Err(user_error(
                codes::PROTOCOL_VIOLATION,
                format!(
                    "bind message supplies {} parameters, but prepared statement requires {}",
                    portal.parameter_len(),
                    statement.announced.len()
                ),
            ));
        }
        let params = if statement.announced.is_empty() {
            None
        } else {
            Some(bound_parameters(
                portal,
                &statement.inferred,
                &statement.announced,
            )?)
        };
        let token = conn.canceller.begin_query(conn.session.statement_timeout());
        run(
            client,
            &conn,
            &statement.prepared,
            params,
            &portal.result_column_format,
            &token,
        )
        .await
    }
}

/// Executes one planned statement and shapes its result for pgwire.
async fn run<C>(
    client: &mut C,
    conn: &Connection,
    prepared: &PreparedStatement,
    params: Option<ParamValues>,
    format: &Format,
    token: &QueryToken,
) -> PgWireResult<Response>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let status = client.transaction_status();
    if status == TransactionStatus::Error {
        // It may have failed while its rows were sent, which the session
        // did not see: its COMMIT must roll back.
        conn.session.mark_transaction_failed();
    }
    if status == TransactionStatus::Error && !runs_in_failed_transaction(prepared) {
        return Err(user_error(
            codes::IN_FAILED_SQL_TRANSACTION,
            "current transaction is aborted, commands ignored until end of transaction block",
        ));
    }

    let output = tokio::select! {
        biased;
        reason = token.cancelled() => return Err(cancel_error(reason)),
        output = guard("executing", async {
            conn.session.execute(prepared, params).await.map_err(pg_error)
        }) => output?,
    };

    match output {
        QueryOutput::Rows(batches) => {
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            let fields = Arc::new(result_fields(&batches.schema(), format, Some(options))?);
            let rows = data_rows(batches, Arc::clone(&fields), token.clone());
            Ok(Response::Query(QueryResponse::new(fields, rows)))
        }
        QueryOutput::CopyOut(copy) => Ok(Response::CopyOut(copy_out_response(
            copy,
            token.clone(),
            Arc::clone(&conn.copy_out_rows),
        )?)),
        QueryOutput::CopyIn(copy) => {
            let columns = copy.column_count();
            let format = i8::from(copy.is_binary());
            *conn.copy_in.lock().await = Some(copy);
            // Text (0) or binary (1) for every column. Made as text and then
            // marked: `CopyResponse::new` would give a binary response a
            // data trailer, which a CopyIn never sends.
            let mut response = CopyResponse::new(0, columns, futures::stream::empty());
            response.format = format;
            Ok(Response::CopyIn(response))
        }
        QueryOutput::Command(done) => {
            if let Some(warning) = done.warning {
                client
                    .feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                        ErrorInfo::new("WARNING".into(), "01000".into(), warning),
                    )))
                    .await?;
            }
            if let Some((name, value)) = done.parameter_status {
                client
                    .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                        name, value,
                    )))
                    .await?;
            }
            let mut tag = Tag::new(done.tag);
            if done.tag == "INSERT" {
                tag = tag.with_oid(0);
            }
            if let Some(rows) = done.rows {
                tag = tag.with_rows(usize::try_from(rows).unwrap_or(usize::MAX));
            }
            Ok(match done.transaction {
                TransactionEffect::None => Response::Execution(tag),
                TransactionEffect::Begin | TransactionEffect::RollbackToSavepoint => {
                    Response::TransactionStart(tag)
                }
                // COMMIT of a failed transaction rolls it back, and says so.
                TransactionEffect::Commit if status == TransactionStatus::Error => {
                    Response::TransactionEnd(Tag::new("ROLLBACK"))
                }
                TransactionEffect::Commit | TransactionEffect::Rollback => {
                    Response::TransactionEnd(tag)
                }
            })
        }
    }
}

/// The transaction status after an error: failed inside a transaction,
/// idle when there is none (a COMMIT that failed ended its transaction).
pub(crate) fn after_error(conn: &Connection, status: TransactionStatus) -> TransactionStatus {
    if conn.session.in_transaction() {
        status
    } else {
        TransactionStatus::Idle
    }
}

/// What a failed transaction still runs: its end, or a rollback to a savepoint.
fn runs_in_failed_transaction(prepared: &PreparedStatement) -> bool {
    matches!(
        prepared.session_command(),
        Some(
            SessionCommand::Commit
                | SessionCommand::Rollback
                | SessionCommand::RollbackToSavepoint { .. }
        )
    )
}
