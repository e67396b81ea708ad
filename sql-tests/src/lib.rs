//! Sluice's SQL test harness: the `.slt` files under `sql-tests/slt/` run
//! by one sqllogictest runner in two ways — in-process against the engine
//! ([`InProcessDb`]) and over the Postgres wire protocol against a server
//! started by the test ([`WireDb`], through tokio-postgres). The same files
//! pass both ways.
//!
//! Records that only hold for one way carry a label: `onlyif in-process` /
//! `skipif in-process` and `onlyif wire` / `skipif wire`. The stock
//! `sqllogictest` CLI (engines `postgres` and `postgres-extended`) runs the
//! files against a running `sluice serve` too; records for the wire hold for
//! it, so those runs pass the label `wire` as well, and the extended-protocol
//! run adds `extended`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sluice_engine::Sluice;
use sluice_server::{ServerConfig, serve};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod in_process;
mod wire;

pub use in_process::InProcessDb;
pub use wire::WireDb;

/// Opens (or creates) an engine on `dir`, as tests that reopen a data
/// directory do; panics with the reason if it cannot.
pub async fn open_engine(dir: &Path) -> Sluice {
    Sluice::builder()
        .data_dir(dir)
        .build()
        .await
        .expect("open the data directory")
}

/// Runs one statement on `sluice` and collects its batches; panics with
/// the statement on an error (for tests that expect success).
pub async fn run_sql(sluice: &Sluice, sql: &str) -> Vec<datafusion::arrow::array::RecordBatch> {
    sluice
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs `statements` one after another in `session` (a transaction's,
/// say), each to completion; panics with the statement on an error.
pub async fn run_in_session(session: &sluice_engine::SluiceSession, statements: &[&str]) {
    for statement in statements {
        session
            .sql(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"))
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// Rows of a statement in text form (as psql shows them), in query order.
pub async fn text_rows_of(sluice: &Sluice, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for batch in run_sql(sluice, sql).await {
        out.extend(sluice_server::encoding::text_rows(batch).expect("text"));
    }
    out
}

/// An error from either way of running SQL: the SQLSTATE and the message,
/// so `statement error (22012)` and `statement error <regex>` both work.
#[derive(Debug)]
pub struct SqlError {
    /// Five-character SQLSTATE, when the engine or server gave one.
    pub sqlstate: Option<String>,
    /// The human-readable message.
    pub message: String,
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for SqlError {}

/// How sqllogictest shows a text value: NULL as `NULL`, an empty string as
/// `(empty)` (the convention the stock runner uses too).
pub(crate) fn display_value(value: Option<&str>) -> String {
    match value {
        None => "NULL".to_string(),
        Some("") => "(empty)".to_string(),
        Some(v) => v.to_string(),
    }
}

/// Every `.slt` file under `sql-tests/slt`, sorted.
pub fn slt_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("slt");
    let mut files = Vec::new();
    collect_slt(&root, &mut files);
    files.sort();
    files
}

fn collect_slt(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_slt(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

/// A `sluice` server running inside the test process on an ephemeral port.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// The folder of media fixtures (images, audio) that test engines may read
/// as their object root.
pub fn media_fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/media")
}

/// An engine builder for tests: data in `data_dir`, the media fixtures as
/// the object root.
pub fn test_engine(data_dir: &Path) -> sluice_engine::SluiceBuilder {
    Sluice::builder()
        .data_dir(data_dir)
        .object_root(media_fixtures().to_string_lossy())
}

impl TestServer {
    /// Starts a server over a fresh engine whose data lives in `data_dir`.
    pub async fn start(data_dir: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        Self::start_configured(data_dir, |_| {}).await
    }

    /// Starts a server as [`Self::start`] does, its settings changed by
    /// `configure` (a connection limit, …).
    pub async fn start_configured(
        data_dir: &Path,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Result<Self, Box<dyn std::error::Error>> {
        Self::start_engine(test_engine(data_dir), configure).await
    }

    /// Starts a server over the engine `engine` builds (a memory limit,
    /// …), its settings changed by `configure`.
    pub async fn start_engine(
        engine: sluice_engine::SluiceBuilder,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let engine = engine.build().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let mut config = ServerConfig {
            listen: addr,
            ..ServerConfig::default()
        };
        configure(&mut config);
        let task = tokio::spawn(async move {
            serve(engine, listener, &config, async {
                let _ = stopped.await;
            })
            .await
        });
        Ok(Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// A libpq-style connection string for this server.
    pub fn connection_string(&self) -> String {
        format!(
            "host={} port={} user=sluice dbname=sluice",
            self.addr.ip(),
            self.addr.port()
        )
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
