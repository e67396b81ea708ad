//! The Sluice engine: the library a Rust program embeds, and the one the
//! `sluice` server, the SQL tests and the benchmarks all run on.
//!
//! The entry point is [`Sluice`], built with [`Sluice::builder`]. It wraps a
//! DataFusion [`SessionContext`](datafusion::prelude::SessionContext) with
//! every Sluice function, catalog and planner extension registered in one
//! place ([`SluiceBuilder::build`]), so every front end sees the same engine.
//! Each client gets its own [`SluiceSession`]: a session shares the catalog
//! with every other session but keeps its own settings (`SET`), prepared
//! statements and transaction state.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> datafusion::error::Result<()> {
//! use sluice_engine::Sluice;
//!
//! # let dir = std::env::temp_dir().join(format!("sluice-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! // Tables are durable: they live in the data directory (default ./sluice-data).
//! let sluice = Sluice::builder().data_dir(&dir).build().await?;
//! sluice.sql("CREATE TABLE t (id BIGINT, name TEXT)").await?;
//! sluice.sql("INSERT INTO t VALUES (1, 'one'), (2, 'two')").await?;
//! let batches = sluice.sql("SELECT name FROM t WHERE id = 2").await?.collect().await?;
//! assert_eq!(batches[0].num_rows(), 1);
//! # let _ = std::fs::remove_dir_all(&dir);
//! # Ok(())
//! # }
//! ```
//!
//! # The house
//! Folders by concept; each top-level module imports only those below it
//! (`python3 scripts/module_cycles.py engine` checks there is no circle):
//!
//! ```text
//! sluice/     Sluice, SluiceBuilder: registers everything on DataFusion once
//!   session/  SluiceSession: prepare/execute for every front end, outputs, cursors
//!     copy_in/   COPY … FROM STDIN running: client data streamed into an INSERT
//!     streaming/ continuous queries: materialized views, sources (tables,
//!                generators), stages, the runner (barriers, watermarks),
//!                SUBSCRIBE, the status table
//!       ddl/       durable CREATE/DROP TABLE and SCHEMA, ALTER TABLE, the model catalog
//!         planner  the one planning pipeline: parse → rewrites → DataFusion → bind and fold
//!           rewrite/ AST and plan rewrites: ML_PREDICT's table form, TUMBLE/HOP, typed inserts, async calls
//!             sql/   Sluice's statements over sqlparser (CREATE MODEL, CREATE MATERIALIZED VIEW,
//!                    connector tables, WATERMARK, COPY's parse half, SET …)
//!               pg/  Postgres' face: pg_catalog, settings, column names, `$n` parameters
//!                 context   constants (default catalog/schema) and shared handles
//!                   storage/  tables as Parquet files + manifests, the commit protocol,
//!                             the change feed continuous queries read; imports
//!                             nothing of the engine
//! ```
//!
//! Checkpoints will be one more room, `checkpoint/`, beside `streaming/`: a
//! continuous query's state is committed with the storage layer's commit
//! protocol. They stay folders of this crate rather than crates of their
//! own while they share its private handles; a nested crate pays off once a
//! worker process needs them without the pgwire-facing parts.
//!
//! This crate depends on `sluice-functions` and `sluice-types`, never on the
//! server.

mod context;
pub mod copy_in;
mod ddl;
pub mod failpoints;
pub mod pg;
mod planner;
mod rewrite;
pub mod roles;
pub mod session;
mod sluice;
pub mod sql;
pub mod storage;
pub mod streaming;

pub use ddl::models::DEFAULT_EMBEDDING_MODEL;
pub use pg::parameters;
pub use pg::settings;
pub use session::SluiceSession;
pub use session::output::{
    CommandComplete, CopyOutput, PreparedStatement, QueryOutput, TransactionEffect,
};
pub use sluice::Sluice;
pub use sluice::builder::{SluiceBuilder, SluiceConfig};
pub use sql::model_statement::{CreateModel, ModelStatement};
pub use sql::statement;
pub use storage::DataLocation;
