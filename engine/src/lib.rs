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
//! SQL is parsed by Sluice's own statement layer ([`statement`]), which
//! handles session commands (`SET`, `SHOW`, `BEGIN`, …) and, later, Sluice's
//! own statements (`CREATE MODEL`, …), and hands everything else to
//! DataFusion's parser and planner.
//!
//! This crate depends on `sluice-functions` and `sluice-types`, never on the
//! server.

mod alter_table;
mod async_calls;
mod builder;
mod column_names;
pub mod copy_in;
mod durable_ddl;
mod literal_insert;
mod ml_predict;
mod model_statement;
mod models;
mod output;
pub mod parameters;
mod pg_compat;
mod pg_types_catalog;
mod session;
pub mod settings;
mod sluice;
pub mod statement;
pub mod storage;
mod text_insert;
mod type_syntax;
mod typed_values;

pub use builder::{SluiceBuilder, SluiceConfig};
pub use model_statement::{CreateModel, ModelStatement};
pub use models::DEFAULT_EMBEDDING_MODEL;
pub use output::{CommandComplete, PreparedStatement, QueryOutput, TransactionEffect};
pub use session::SluiceSession;
pub use sluice::Sluice;
pub use storage::DataLocation;
