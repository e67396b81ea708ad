//! Sluice's SQL functions: scalar, table and aggregate functions, and (later)
//! the model registry and inference runtime behind `EMBED` and `ML_PREDICT`.
//!
//! One function per file, grouped by family (`postgres/`, and to come
//! `vector/`, `image/`, `model/`). [`register_all`] is the single entry point
//! the engine, the tests and any future distributed worker call, so every
//! entry point sees the same functions. The same implementations serve batch
//! and continuous queries.
//!
//! This crate depends only on `sluice-types` and DataFusion.

use datafusion::error::Result;
use datafusion::prelude::SessionContext;

pub mod postgres;

/// Registers every Sluice function on `ctx`, replacing DataFusion's own
/// where Sluice defines the same name.
pub fn register_all(ctx: &SessionContext) -> Result<()> {
    postgres::register(ctx);
    for udf in sluice_types::conversion::all_functions() {
        ctx.register_udf(udf);
    }
    Ok(())
}
