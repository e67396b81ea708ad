//! The bottom of the engine: its constants and the handles every layer
//! reaches through a session (the table store, the model registry), plus
//! the one reader of DataFusion's DML result convention. It imports
//! nothing of the engine but [`crate::storage`].

use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, UInt64Array};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use sluice_functions::model::ModelRegistry;

use crate::storage::TableStore;

/// Name of the catalog (the Postgres "database") every session starts in.
pub const DEFAULT_CATALOG: &str = "sluice";
/// Name of the schema every session starts in, as in Postgres.
pub const DEFAULT_SCHEMA: &str = "public";

/// The table store of a session, when the session has durable storage.
pub(crate) fn table_store(ctx: &SessionContext) -> Option<Arc<TableStore>> {
    ctx.state_ref()
        .read()
        .config()
        .get_extension::<TableStore>()
}

/// The model registry of a session's engine.
pub(crate) fn model_registry(ctx: &SessionContext) -> Result<Arc<ModelRegistry>> {
    ctx.state_ref()
        .read()
        .config()
        .get_extension::<ModelRegistry>()
        .ok_or_else(|| DataFusionError::Internal("engine has no model registry".into()))
}

/// Reads the affected-row `count` DataFusion's DML and COPY plans return.
pub(crate) fn dml_count(batches: Vec<RecordBatch>) -> Result<u64> {
    let mut total = 0;
    for batch in batches {
        let Some(column) = batch.column_by_name("count") else {
            continue;
        };
        let counts = column
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "DML count column has type {}, expected UInt64",
                    column.data_type()
                ))
            })?;
        total += counts.iter().flatten().sum::<u64>();
    }
    Ok(total)
}
