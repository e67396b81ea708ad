//! Runs sqllogictest records over the Postgres wire protocol with
//! tokio-postgres' simple query protocol (text results, as psql sees them).

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::{SqlError, display_value};

/// A sqllogictest database that is one client connection.
pub struct WireDb {
    client: Client,
    connection: JoinHandle<()>,
}

impl WireDb {
    /// Connects with a libpq-style connection string.
    pub async fn connect(conn_str: &str) -> Result<Self, SqlError> {
        let (client, connection) = tokio_postgres::connect(conn_str, NoTls)
            .await
            .map_err(client_error)?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::warn!("test connection ended: {e}");
            }
        });
        Ok(Self { client, connection })
    }
}

/// The server's SQLSTATE and message, or the client library's own error.
pub(crate) fn client_error(e: tokio_postgres::Error) -> SqlError {
    match e.as_db_error() {
        Some(db) => SqlError {
            sqlstate: Some(db.code().code().to_string()),
            message: db.message().to_string(),
        },
        None => SqlError {
            sqlstate: e.code().map(|c| c.code().to_string()),
            message: e.to_string(),
        },
    }
}

#[async_trait]
impl AsyncDB for WireDb {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let messages = self.client.simple_query(sql).await.map_err(client_error)?;
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut columns = None;
        let mut affected = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(desc) => {
                    // A later statement's result replaces an earlier one's,
                    // as in the in-process runner.
                    columns = Some(desc.len());
                    rows.clear();
                }
                SimpleQueryMessage::Row(row) => {
                    columns.get_or_insert(row.len());
                    rows.push((0..row.len()).map(|i| display_value(row.get(i))).collect());
                }
                SimpleQueryMessage::CommandComplete(n) => affected = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(columns) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; columns],
                rows,
            },
            None => DBOutput::StatementComplete(affected),
        })
    }

    async fn shutdown(&mut self) {
        self.connection.abort();
    }

    fn engine_name(&self) -> &str {
        "sluice-wire"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }

    fn error_sql_state(err: &SqlError) -> Option<String> {
        err.sqlstate.clone()
    }
}
