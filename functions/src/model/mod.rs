//! Models and batched inference: the model catalog (`CREATE MODEL`), ONNX
//! Runtime sessions shared by every query, the adaptive batching runtime,
//! and the SQL functions `EMBED` and `ML_PREDICT` that call them.
//!
//! - [`runtime`]: finding and loading ONNX Runtime; device choice (CUDA/CPU).
//! - [`spec`]: a validated `CREATE MODEL` definition.
//! - [`registry`]: the catalog of models and their loaded sessions.
//! - [`batcher`]: one worker per model gathering rows from all callers.
//! - [`embedding`] / [`predictor`]: text embedding and tabular models.
//! - [`remote`]: OpenAI-compatible HTTP models; [`secrets`]: which
//!   environment variables their API keys may come from.
//! - [`tensors`]: Arrow ↔ ONNX tensors.
//! - [`calls`]: the SQL functions.
//! - [`explain`]: per-plan model figures in `EXPLAIN ANALYZE`.

use std::sync::Arc;

use datafusion::logical_expr::async_udf::AsyncScalarUDF;
use datafusion::prelude::SessionContext;

pub mod batcher;
pub mod call_options;
pub mod calls;
pub mod describe;
pub mod embedding;
pub mod explain;
pub mod predictor;
pub mod registry;
pub mod remote;
pub mod runtime;
pub mod secrets;
pub mod spec;
pub mod tensor_inputs;
pub mod tensors;

pub use registry::{LoadedModel, ModelEntry, ModelInterface, ModelRegistry};
pub use spec::{ModelSpec, Task};

use calls::{CallKind, ModelCall};

/// Registers `EMBED` and `ML_PREDICT` over `registry`.
pub(crate) fn register(ctx: &SessionContext, registry: &Arc<ModelRegistry>) {
    for kind in [CallKind::Embed, CallKind::Predict] {
        let call = ModelCall::new(kind, Arc::clone(registry));
        ctx.register_udf(AsyncScalarUDF::new(Arc::new(call)).into_scalar_udf());
    }
}
