//! The SQL functions that call models: `EMBED(model, text)` and the scalar
//! `ML_PREDICT(model, arg, …)` (the table form `ML_PREDICT(TABLE t, MODEL m,
//! DESCRIPTOR(…))` is rewritten by the engine into a query over this one).
//!
//! Both are async UDFs: DataFusion hands them whole batches in
//! `AsyncFuncExec`, and they await the model's batching queue, so model work
//! never blocks the async runtime's threads. The model name must be a
//! constant: the result type (`EMBEDDING(n)`, the struct of outputs) comes
//! from the model.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, StructArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use sluice_types::SluiceType;
use sluice_types::error::{SluiceError, SqlState};

use super::batcher::RunStats;
use super::call_options::{CallOptions, check_option_names, has_options, read_options};
use super::registry::{LoadedModel, ModelInterface, ModelRegistry};

/// Which model-calling function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// `EMBED(model, text)`.
    Embed,
    /// `ML_PREDICT(model, args…)`.
    Predict,
}

impl CallKind {
    /// The SQL function's name.
    pub fn function_name(self) -> &'static str {
        match self {
            Self::Embed => "embed",
            Self::Predict => "ml_predict",
        }
    }

    /// The kind of model call a function of this name is, if any: how plan
    /// rewrites recognise model calls.
    pub fn of_function(name: &str) -> Option<Self> {
        [Self::Embed, Self::Predict]
            .into_iter()
            .find(|k| k.function_name() == name)
    }
}

/// `EMBED` or scalar `ML_PREDICT`, bound to an engine's model registry.
#[derive(Debug)]
pub struct ModelCall {
    kind: CallKind,
    signature: Signature,
    registry: Arc<ModelRegistry>,
    /// The model of this call site, looked up once when its plan was made
    /// (`None`: looked up by name at each call).
    bound: Option<Arc<LoadedModel>>,
    /// Where one query plan's calls are counted (for `EXPLAIN ANALYZE`);
    /// `None` in the function registered with the session.
    stats: Option<Arc<CallStats>>,
}

/// What one plan's calls of one model did, shown by `EXPLAIN ANALYZE`.
#[derive(Debug, Default)]
pub struct CallStats {
    /// Rows this plan sent to the model.
    pub rows: AtomicU64,
    /// Model runs that served them.
    pub batches: AtomicU64,
    /// Rows in those runs (other queries' rows merged in included).
    pub batch_rows: AtomicU64,
    /// Nanoseconds of those runs.
    pub model_nanos: AtomicU64,
}

impl PartialEq for ModelCall {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && Arc::ptr_eq(&self.registry, &other.registry)
            && match (&self.stats, &other.stats) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl Eq for ModelCall {}

impl Hash for ModelCall {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

impl ModelCall {
    /// The function of `kind` over `registry`.
    pub fn new(kind: CallKind, registry: Arc<ModelRegistry>) -> Self {
        // Volatile: a model call must not be folded at planning time (the
        // async UDF has no synchronous form) nor assumed repeatable.
        let signature = match kind {
            CallKind::Embed => Signature::new(TypeSignature::Any(2), Volatility::Volatile),
            CallKind::Predict => Signature::new(TypeSignature::VariadicAny, Volatility::Volatile),
        };
        Self {
            kind,
            signature,
            registry,
            bound: None,
            stats: None,
        }
    }

    /// The same function, counting its calls into `stats`.
    pub fn counting_into(&self, stats: Arc<CallStats>) -> Self {
        Self {
            kind: self.kind,
            signature: self.signature.clone(),
            registry: Arc::clone(&self.registry),
            bound: self.bound.clone(),
            stats: Some(stats),
        }
    }

    /// The same function with its model looked up once, for one call site
    /// of one plan: its batches reach the model without a catalog lookup.
    pub fn bound_to(mut self, model: Arc<LoadedModel>) -> Self {
        self.bound = Some(model);
        self
    }

    /// Runs the model named by `name` on argument columns: the one code
    /// path behind the async UDF and constant folding.
    pub async fn call(
        &self,
        name: Option<&ScalarValue>,
        fields: &[FieldRef],
        columns: Vec<ArrayRef>,
    ) -> Result<ArrayRef> {
        let model = self.model(name)?;
        let rows = columns.first().map_or(0, |c| c.len());
        let (fields, columns, options) = if self.kind == CallKind::Predict && has_options(fields) {
            let mut columns = columns;
            let options = match columns.pop() {
                Some(column) => read_options(&column)?,
                None => CallOptions::default(),
            };
            (&fields[..fields.len() - 1], columns, options)
        } else {
            (fields, columns, CallOptions::default())
        };
        match (&model.interface, self.kind) {
            (ModelInterface::Embedding { .. }, CallKind::Embed) => {
                let (mut outputs, run) = model.infer(columns, None).await?;
                self.record(rows, &run);
                outputs
                    .pop()
                    .ok_or_else(|| DataFusionError::Internal("EMBED got no output".into()))
            }
            (ModelInterface::Predict(layout), CallKind::Predict) => {
                let inputs = layout.assemble(&model.spec.name, fields, &columns)?;
                let (outputs, run) = model.infer(inputs, options.batch_size).await?;
                self.record(rows, &run);
                let fields: Fields = layout.outputs.iter().map(|(_, f)| Arc::clone(f)).collect();
                prediction_struct(fields, outputs)
            }
            (ModelInterface::Chat { output, .. }, CallKind::Predict) => {
                let prompts = columns.first().ok_or_else(|| {
                    DataFusionError::Plan(format!("model {} takes a prompt", model.spec.name))
                })?;
                let inputs = vec![cast(prompts, &DataType::Utf8)?];
                let (outputs, run) = model.infer(inputs, options.batch_size).await?;
                self.record(rows, &run);
                prediction_struct(Fields::from(vec![Arc::clone(output)]), outputs)
            }
            _ => Err(DataFusionError::Internal(format!(
                "{} planned against a model of another kind",
                self.name()
            ))),
        }
    }

    fn record(&self, rows: usize, run: &RunStats) {
        if let Some(stats) = &self.stats {
            stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
            stats.batches.fetch_add(run.batches, Ordering::Relaxed);
            stats.batch_rows.fetch_add(run.rows, Ordering::Relaxed);
            stats
                .model_nanos
                .fetch_add(run.model_time.as_nanos() as u64, Ordering::Relaxed);
        }
    }

    fn model(&self, name: Option<&ScalarValue>) -> Result<Arc<LoadedModel>> {
        if let Some(model) = &self.bound {
            return Ok(Arc::clone(model));
        }
        let name = match name {
            Some(
                ScalarValue::Utf8(Some(n))
                | ScalarValue::LargeUtf8(Some(n))
                | ScalarValue::Utf8View(Some(n)),
            ) => n,
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "{}: the first argument must be a model name given as a constant string",
                    self.name()
                )));
            }
        };
        self.registry.get(name)
    }

    fn output_field(&self, model: &LoadedModel, arg_fields: &[FieldRef]) -> Result<Field> {
        let arg_fields = match arg_fields.split_last() {
            Some((last, rest)) if self.kind == CallKind::Predict && has_options(arg_fields) => {
                check_option_names(last)?;
                rest
            }
            _ => arg_fields,
        };
        let arg_types: Vec<DataType> = arg_fields.iter().map(|f| f.data_type().clone()).collect();
        let name = self.name();
        match (&model.interface, self.kind) {
            (ModelInterface::Embedding { dim }, CallKind::Embed) => {
                match arg_types.as_slice() {
                    [
                        _,
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null,
                    ] => {}
                    [_, other] => {
                        return Err(DataFusionError::from(SluiceError::new(
                            SqlState::DATATYPE_MISMATCH,
                            format!(
                                "EMBED with model {} takes text, got {other}",
                                model.spec.name
                            ),
                        )));
                    }
                    _ => {
                        return Err(DataFusionError::Plan(
                            "EMBED takes two arguments: EMBED(model, text)".into(),
                        ));
                    }
                }
                Ok(SluiceType::Vector(*dim as i32).field(name, true))
            }
            (ModelInterface::Predict(layout), CallKind::Predict) => {
                let fields: Fields = layout.outputs.iter().map(|(_, f)| Arc::clone(f)).collect();
                // Checks the argument count and types now, at planning.
                let probe: Vec<ArrayRef> = arg_types[1..]
                    .iter()
                    .map(|t| datafusion::arrow::array::new_null_array(t, 0))
                    .collect();
                layout.assemble(&model.spec.name, &arg_fields[1..], &probe)?;
                Ok(Field::new(name, DataType::Struct(fields), true))
            }
            (ModelInterface::Chat { output, .. }, CallKind::Predict) => match arg_types.get(1..) {
                Some(
                    [DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null],
                ) => Ok(Field::new(
                    name,
                    DataType::Struct(Fields::from(vec![Arc::clone(output)])),
                    true,
                )),
                _ => Err(DataFusionError::Plan(format!(
                    "chat model {} takes one text argument: ML_PREDICT('{}', prompt)",
                    model.spec.name, model.spec.name
                ))),
            },
            (ModelInterface::Chat { .. }, CallKind::Embed) => Err(DataFusionError::Plan(format!(
                "model {} is a chat model: call it with ML_PREDICT",
                model.spec.name
            ))),
            (ModelInterface::Embedding { .. }, CallKind::Predict) => {
                Err(DataFusionError::Plan(format!(
                    "model {} is an embedding model: call it with EMBED",
                    model.spec.name
                )))
            }
            (ModelInterface::Predict(_), CallKind::Embed) => Err(DataFusionError::Plan(format!(
                "model {} is not an embedding model: call it with ML_PREDICT",
                model.spec.name
            ))),
        }
    }
}

/// The struct `ML_PREDICT` returns: one field per output. A row the model
/// did not see (a NULL input) is a NULL struct.
fn prediction_struct(fields: Fields, outputs: Vec<ArrayRef>) -> Result<ArrayRef> {
    let nulls = outputs.first().and_then(|c| c.logical_nulls());
    Ok(Arc::new(StructArray::try_new(fields, outputs, nulls)?))
}

impl ScalarUDFImpl for ModelCall {
    fn name(&self) -> &str {
        self.kind.function_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Err(DataFusionError::Internal(
            "model calls report their type through return_field_from_args".into(),
        ))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if args.arg_fields.is_empty() {
            return Err(DataFusionError::Plan(format!(
                "{} needs a model name as its first argument",
                self.name()
            )));
        }
        let model = self.model(args.scalar_arguments.first().copied().flatten())?;
        Ok(Arc::new(self.output_field(&model, args.arg_fields)?))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::Internal(format!(
            "{} runs asynchronously",
            self.name()
        )))
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for ModelCall {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let name = match args.args.first() {
            Some(ColumnarValue::Scalar(name)) => Some(name.clone()),
            _ => None,
        };
        let columns: Vec<ArrayRef> = args.args[1..]
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let fields = args.arg_fields.get(1..).unwrap_or_default();
        Ok(ColumnarValue::Array(
            self.call(name.as_ref(), fields, columns).await?,
        ))
    }
}
