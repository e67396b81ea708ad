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
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::startup::ParameterStatus;
use pgwire::types::format::FormatOptions;
use sluice_engine::statement::SessionCommand;
use sluice_engine::{PreparedStatement, QueryOutput, TransactionEffect};

use crate::cancel::QueryToken;
use crate::encoding::{bound_parameters, cancel_error, data_rows, parameter_type, result_fields};
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
        let mut statements = conn.session.parse(sql).map_err(pg_error)?;
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
        let prepared = conn.session.prepare(&statement).await.map_err(pg_error)?;
        let inferred = prepared.parameter_types().map_err(pg_error)?;
        let count = inferred.len().max(types.len());
        let announced = (0..count)
            .map(|i| match types.get(i).cloned().flatten() {
                Some(client_type) if client_type != Type::UNKNOWN => client_type,
                _ => parameter_type(inferred.get(i).and_then(Option::as_ref)),
            })
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
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = connection(client)?;
        let statements = conn.session.parse(query).map_err(pg_error)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let token = conn.canceller.begin_query(conn.session.statement_timeout());
        let mut responses = Vec::with_capacity(statements.len());
        for statement in &statements {
            let result = match conn.session.prepare(statement).await {
                Ok(prepared) => {
                    run(client, &conn, &prepared, None, &Format::UnifiedText, &token).await
                }
                Err(e) => Err(pg_error(e)),
            };
            match result {
                Ok(response) => responses.push(response),
                Err(e) => {
                    // Postgres runs a multi-statement query until the first
                    // error and skips the rest.
                    responses.push(Response::Error(Box::new(ErrorInfo::from(e))));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for SluiceQueryHandler {
    type Statement = WireStatement;
    type QueryParser = SluiceQueryParser;

    fn query_parser(&self) -> Arc<SluiceQueryParser> {
        Arc::clone(&self.parser)
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
    if status == TransactionStatus::Error && !ends_transaction(prepared) {
        return Err(user_error(
            codes::IN_FAILED_SQL_TRANSACTION,
            "current transaction is aborted, commands ignored until end of transaction block",
        ));
    }

    let output = tokio::select! {
        biased;
        reason = token.cancelled() => return Err(cancel_error(reason)),
        output = conn.session.execute(prepared, params) => output.map_err(pg_error)?,
    };

    match output {
        QueryOutput::Rows(batches) => {
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            let fields = Arc::new(result_fields(&batches.schema(), format, Some(options))?);
            let rows = data_rows(batches, Arc::clone(&fields), token.clone());
            Ok(Response::Query(QueryResponse::new(fields, rows)))
        }
        QueryOutput::Command(done) => {
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
                TransactionEffect::Begin => Response::TransactionStart(tag),
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

fn ends_transaction(prepared: &PreparedStatement) -> bool {
    matches!(
        prepared.session_command(),
        Some(SessionCommand::Commit | SessionCommand::Rollback)
    )
}
