//! Sluice's SQL functions: scalar, table and aggregate functions, and the
//! model registry and batched inference runtime behind `EMBED` and
//! `ML_PREDICT`.
//!
//! Grouped by family: [`postgres`] (compatibility), [`vector`], [`tensor`],
//! [`media`] (images and audio), [`object`] (object storage) and [`model`]
//! (the model catalog, inference, `EMBED`, `ML_PREDICT`). [`register_all`]
//! is the single entry point the engine, the tests and any future
//! distributed worker call, so every entry point sees the same functions.
//! The same implementations serve batch and continuous queries.
//!
//! This crate depends only on `sluice-types` and DataFusion.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

pub mod media;
pub mod model;
pub mod object;
pub mod postgres;
pub mod tensor;
pub mod vector;

use model::ModelRegistry;
use object::ObjectAccess;

/// What the functions that reach outside the engine work with: the model
/// catalog (`EMBED`, `ML_PREDICT`) and the object roots (`read_image`,
/// `list_objects`, …). One of each per engine, shared by every session.
#[derive(Debug, Clone)]
pub struct FunctionHandles {
    /// The engine's models.
    pub models: Arc<ModelRegistry>,
    /// Where object functions may read.
    pub objects: Arc<ObjectAccess>,
}

/// Registers every Sluice function on `ctx` (Postgres compatibility,
/// vectors, tensors, media, conversions, objects and models), replacing
/// DataFusion's own where Sluice defines the same name.
pub fn register_all(ctx: &SessionContext, handles: &FunctionHandles) -> Result<()> {
    postgres::register(ctx)?;
    vector::register(ctx)?;
    media::register(ctx);
    tensor::register(ctx);
    for udf in sluice_types::conversion::all_functions() {
        register_replacing(ctx, udf);
    }
    object::register(ctx, &handles.objects);
    model::register(ctx, &handles.models);
    Ok(())
}

/// Registers `udf` in place of any function of the same name.
///
/// DataFusion keys functions by name *and* alias, and rebuilds that map from
/// its values whenever a session state is copied: a replaced function still
/// reachable through an alias (`dot_product` for DataFusion's
/// `inner_product`) would come back under its old name in new sessions. The
/// replaced function's aliases are therefore dropped with it.
pub fn register_replacing(ctx: &SessionContext, udf: ScalarUDF) {
    let old_aliases: Vec<String> = ctx
        .state_ref()
        .read()
        .scalar_functions()
        .get(udf.name())
        .map(|old| old.aliases().to_vec())
        .unwrap_or_default();
    for alias in old_aliases {
        if alias != udf.name() && !udf.aliases().contains(&alias) {
            ctx.deregister_udf(&alias);
        }
    }
    ctx.register_udf(udf);
}
