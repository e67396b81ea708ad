//! Runs sqllogictest records against the engine directly.

use async_trait::async_trait;
use datafusion::error::DataFusionError;
use sluice_engine::{QueryOutput, Sluice, SluiceSession};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

use crate::{SqlError, display_value};

/// A sqllogictest database that is one engine session.
pub struct InProcessDb {
    session: SluiceSession,
}

impl InProcessDb {
    /// Opens a session on `engine`.
    pub fn new(engine: &Sluice) -> Self {
        Self {
            session: engine.session(),
        }
    }
}

fn engine_error(e: DataFusionError) -> SqlError {
    let info = sluice_server::sqlstate::error_info(&e);
    SqlError {
        sqlstate: Some(info.code),
        message: info.message,
    }
}

#[async_trait]
impl AsyncDB for InProcessDb {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let statements = self.session.parse(sql).map_err(engine_error)?;
        let mut output = DBOutput::StatementComplete(0);
        for statement in &statements {
            let prepared = self
                .session
                .prepare(statement)
                .await
                .map_err(engine_error)?;
            output = match self
                .session
                .execute(&prepared, None)
                .await
                .map_err(engine_error)?
            {
                QueryOutput::Rows(stream) => {
                    let columns = stream.schema().fields().len();
                    let batches = datafusion::physical_plan::common::collect(stream)
                        .await
                        .map_err(engine_error)?;
                    let mut rows = Vec::new();
                    for batch in batches {
                        let text = sluice_server::encoding::text_rows(batch).map_err(|e| {
                            let info = pgwire_error_info(e);
                            SqlError {
                                sqlstate: Some(info.0),
                                message: info.1,
                            }
                        })?;
                        rows.extend(
                            text.into_iter().map(|row| {
                                row.iter().map(|v| display_value(v.as_deref())).collect()
                            }),
                        );
                    }
                    DBOutput::Rows {
                        types: vec![DefaultColumnType::Any; columns],
                        rows,
                    }
                }
                QueryOutput::Command(done) => DBOutput::StatementComplete(done.rows.unwrap_or(0)),
                QueryOutput::CopyOut(_) => {
                    return Err(SqlError {
                        sqlstate: None,
                        message: "COPY TO STDOUT needs a wire client".into(),
                    });
                }
                QueryOutput::CopyIn(_) => {
                    return Err(SqlError {
                        sqlstate: None,
                        message: "COPY FROM STDIN needs a wire client".into(),
                    });
                }
            };
        }
        Ok(output)
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "sluice-in-process"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }

    fn error_sql_state(err: &SqlError) -> Option<String> {
        err.sqlstate.clone()
    }
}

fn pgwire_error_info(e: pgwire::error::PgWireError) -> (String, String) {
    let info = pgwire::error::ErrorInfo::from(e);
    (info.code, info.message)
}
