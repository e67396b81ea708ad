//! Postgres compatibility: the `pg_catalog` schema and the catalog functions
//! that psql, drivers and ORMs query, from `datafusion-pg-catalog`.
//!
//! We borrow that crate rather than writing catalog tables by hand: it tracks
//! what real clients send (psql's `\d` queries, JDBC metadata, DBeaver).

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::context::DEFAULT_CATALOG;

/// Registers `pg_catalog` and the Postgres catalog functions on `ctx`.
pub(crate) fn install(ctx: &SessionContext) -> Result<()> {
    datafusion_pg_catalog::setup_pg_catalog(ctx, DEFAULT_CATALOG, EmptyContextProvider)
        .map_err(|e| DataFusionError::Context("installing pg_catalog".into(), e))?;
    crate::pg::types_catalog::install(ctx)
}

/// Returns the shared rewriter for catalog queries, which turns Postgres-only
/// constructs in client catalog queries into SQL DataFusion can plan.
pub(crate) fn compat_parser() -> Arc<PostgresCompatibilityParser> {
    static PARSER: std::sync::OnceLock<Arc<PostgresCompatibilityParser>> =
        std::sync::OnceLock::new();
    Arc::clone(PARSER.get_or_init(|| Arc::new(PostgresCompatibilityParser::new())))
}
