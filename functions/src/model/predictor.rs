//! Tabular and tensor models (`ML_PREDICT`): SQL columns in, the model's
//! outputs out, one column per output.
//!
//! Arguments map onto the model's inputs in order: an input whose rows are
//! scalars takes one argument; an input whose rows hold `k` values takes
//! either one `VECTOR(k)`/array argument or `k` scalar arguments (the usual
//! shape of a scikit-learn export, `float_input [N, k]`); an input whose
//! rows are tensors (`pixels [N, 3, H, W]`) takes one `TENSOR` or `IMAGE`
//! argument ([`super::tensor_inputs`]).

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, PrimitiveArray, UInt32Array,
};
use datafusion::arrow::compute::{can_cast_types, cast, concat, filter, take};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Float32Type, Float64Type, Int32Type, Int64Type,
};
use datafusion::error::{DataFusionError, Result};
use ort::session::Session;
use ort::value::DynValue;
use sluice_types::error::{SluiceError, SqlState};

use super::batcher::{BatchRunner, ModelMetrics};
use sluice_types::SluiceType;
use sluice_types::tensor::{TensorElement, TensorShape};

use super::spec::{ImagePreprocessing, ModelSpec};
use super::tensor_inputs::{TensorSource, batch_tensor, check_source, row_dims, to_model_tensors};
use super::tensors::{TensorSpec, from_tensor, model_error, rows_with_all_inputs, to_tensor};

/// What one row of a model input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRows {
    /// `k` values (1: a scalar).
    Values(usize),
    /// A tensor of the input's per-row shape.
    Tensor,
}

/// How SQL values map onto a model's tensors.
#[derive(Debug, Clone)]
pub struct PredictLayout {
    /// Model inputs with what each row holds.
    pub inputs: Vec<(TensorSpec, InputRows)>,
    /// Model outputs returned to SQL, with the column each becomes.
    pub outputs: Vec<(TensorSpec, FieldRef)>,
    /// The SQL columns a call takes (declared INPUT, or derived from the model).
    pub input_fields: Vec<FieldRef>,
    /// The batch size the model was exported with, when fixed (some
    /// exports fix it at 1, or at the size of their sample input).
    pub fixed_batch: Option<usize>,
    /// How IMAGE arguments become tensors.
    pub image: ImagePreprocessing,
}

impl PredictLayout {
    /// Matches the declared INPUT/OUTPUT of `spec` against the model's own
    /// signature.
    pub fn of(spec: &ModelSpec, inputs: &[TensorSpec], outputs: &[TensorSpec]) -> Result<Self> {
        let model = &spec.name;
        if inputs.is_empty() {
            return Err(plan(format!("model {model} has no tensor inputs")));
        }
        let mut layout_inputs = Vec::with_capacity(inputs.len());
        let mut derived_fields = Vec::new();
        for input in inputs {
            let element = input.element_type()?;
            match input.row_width() {
                Some(1) => {
                    derived_fields.push(Arc::new(Field::new(&input.name, element, true)));
                    layout_inputs.push((input.clone(), InputRows::Values(1)));
                }
                Some(width) => {
                    for i in 0..width {
                        derived_fields.push(Arc::new(Field::new(
                            format!("{}_{i}", input.name),
                            element.clone(),
                            true,
                        )));
                    }
                    layout_inputs.push((input.clone(), InputRows::Values(width)));
                }
                None => {
                    derived_fields.push(Arc::new(tensor_field(model, input)?));
                    layout_inputs.push((input.clone(), InputRows::Tensor));
                }
            }
        }
        let input_fields = if spec.inputs.is_empty() {
            derived_fields
        } else {
            check_arguments(model, &layout_inputs, &spec.inputs, &spec.image).map_err(|e| {
                DataFusionError::from(SluiceError::new(
                    SqlState::DATATYPE_MISMATCH,
                    format!(
                        "declared INPUT does not match model {model}: {}",
                        e.message()
                    ),
                ))
            })?;
            spec.inputs.clone()
        };
        let outputs = match_outputs(spec, outputs)?;
        let fixed: Vec<usize> = inputs.iter().filter_map(TensorSpec::fixed_batch).collect();
        if fixed.windows(2).any(|w| w[0] != w[1]) {
            return Err(plan(format!(
                "model {model}: its inputs fix different batch sizes {fixed:?}"
            )));
        }
        Ok(Self {
            fixed_batch: fixed.first().copied(),
            inputs: layout_inputs,
            outputs,
            input_fields,
            image: spec.image.clone(),
        })
    }

    /// Groups call arguments (of `fields`) into one column per model input.
    pub fn assemble(
        &self,
        model: &str,
        fields: &[FieldRef],
        args: &[ArrayRef],
    ) -> Result<Vec<ArrayRef>> {
        let groups = check_arguments(model, &self.inputs, fields, &self.image)?;
        groups
            .into_iter()
            .zip(&self.inputs)
            .map(|(group, (spec, _))| match group {
                ArgumentGroup::List(i) => Ok(Arc::clone(&args[i])),
                ArgumentGroup::Tensor(i, source) => {
                    to_model_tensors(model, spec, source, &self.image, &args[i])
                }
                ArgumentGroup::Scalars(range) => {
                    if range.len() == 1 {
                        return Ok(Arc::clone(&args[range.start]));
                    }
                    interleave_scalars(&args[range])
                }
            })
            .collect()
    }
}

/// The SQL column a tensor input is described by when INPUT is left out:
/// `TENSOR(elem, [dims])` when the model fixes every dimension.
fn tensor_field(model: &str, input: &TensorSpec) -> Result<Field> {
    let element = TensorElement::of_data_type(&input.element_type()?).ok_or_else(|| {
        DataFusionError::NotImplemented(format!(
            "model {model}: input '{}' holds {:?}, which TENSOR cannot hold",
            input.name, input.element
        ))
    })?;
    let dims = row_dims(input);
    let shape = if dims.iter().all(|&d| d > 0) {
        let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
        Some(TensorShape::try_new(&dims)?)
    } else {
        None
    };
    Ok(SluiceType::Tensor(element, shape).field(&input.name, true))
}

enum ArgumentGroup {
    /// One array-valued argument fills the input.
    List(usize),
    /// One tensor-valued argument (TENSOR or IMAGE) fills the input.
    Tensor(usize, TensorSource),
    /// These scalar arguments fill the input, one value each.
    Scalars(std::ops::Range<usize>),
}

/// Checks argument types against the model's inputs and says which
/// arguments feed which input.
fn check_arguments(
    model: &str,
    inputs: &[(TensorSpec, InputRows)],
    fields: &[FieldRef],
    image: &ImagePreprocessing,
) -> Result<Vec<ArgumentGroup>> {
    let types: Vec<&DataType> = fields.iter().map(|f| f.data_type()).collect();
    let mut groups = Vec::with_capacity(inputs.len());
    let mut next = 0;
    for (spec, rows) in inputs {
        let element = spec.element_type()?;
        let width = match rows {
            InputRows::Values(width) => width,
            InputRows::Tensor => {
                let source = fields.get(next).and_then(|f| TensorSource::of_field(f));
                let Some(source) = source else {
                    let got = types
                        .get(next)
                        .map_or("nothing".to_string(), |t| t.to_string());
                    return Err(plan(format!(
                        "model {model}: input '{}' takes a TENSOR or IMAGE argument (argument \
                         {}), got {got}",
                        spec.name,
                        next + 1
                    )));
                };
                check_source(model, spec, source, image)?;
                groups.push(ArgumentGroup::Tensor(next, source));
                next += 1;
                continue;
            }
        };
        match types.get(next).copied() {
            Some(DataType::FixedSizeList(child, k)) if *k as usize == *width && *width > 1 => {
                if !can_cast_types(child.data_type(), &element) {
                    return Err(plan(format!(
                        "model {model}: argument {} has elements of type {}, input '{}' needs {element}",
                        next + 1,
                        child.data_type(),
                        spec.name
                    )));
                }
                groups.push(ArgumentGroup::List(next));
                next += 1;
            }
            _ => {
                let end = next + width;
                if end > types.len() {
                    return Err(wrong_argument_count(
                        model,
                        total_width(inputs),
                        types.len(),
                    ));
                }
                for (i, ty) in types[next..end].iter().enumerate() {
                    if !can_cast_types(ty, &element)
                        || matches!(ty, DataType::FixedSizeList(..) | DataType::List(_))
                    {
                        return Err(plan(format!(
                            "model {model}: argument {} has type {ty}, input '{}' needs {element}",
                            next + i + 1,
                            spec.name
                        )));
                    }
                }
                groups.push(ArgumentGroup::Scalars(next..end));
                next = end;
            }
        }
    }
    if next != types.len() {
        return Err(wrong_argument_count(
            model,
            total_width(inputs),
            types.len(),
        ));
    }
    Ok(groups)
}

fn total_width(inputs: &[(TensorSpec, InputRows)]) -> usize {
    inputs
        .iter()
        .map(|(_, rows)| match rows {
            InputRows::Values(width) => *width,
            InputRows::Tensor => 1,
        })
        .sum()
}

/// `k` scalar columns → one fixed-size list column of `k` per row.
fn interleave_scalars(columns: &[ArrayRef]) -> Result<ArrayRef> {
    let rows = columns.first().map_or(0, |c| c.len());
    let width = columns.len();
    let element = columns[0].data_type().clone();
    let columns: Vec<ArrayRef> = columns
        .iter()
        .map(|c| cast(c, &element))
        .collect::<std::result::Result<_, _>>()?;
    // Row-major order: row 0's k values, then row 1's, …
    let values = match element {
        DataType::Float32 => row_major::<Float32Type>(&columns),
        DataType::Float64 => row_major::<Float64Type>(&columns),
        DataType::Int64 => row_major::<Int64Type>(&columns),
        DataType::Int32 => row_major::<Int32Type>(&columns),
        _ => {
            let indices: Vec<(usize, usize)> = (0..rows)
                .flat_map(|r| (0..width).map(move |c| (c, r)))
                .collect();
            let parts: Vec<&dyn Array> = columns.iter().map(|c| c.as_ref()).collect();
            datafusion::arrow::compute::interleave(&parts, &indices)?
        }
    };
    let field = Arc::new(Field::new_list_field(element, true));
    // A row missing any value is a missing row: the list is null there.
    let nulls = if columns.iter().all(|c| c.null_count() == 0) {
        None
    } else {
        let valid: Vec<bool> = (0..rows)
            .map(|r| columns.iter().all(|c| c.is_valid(r)))
            .collect();
        Some(valid.into())
    };
    Ok(Arc::new(
        datafusion::arrow::array::FixedSizeListArray::try_new(field, width as i32, values, nulls)?,
    ))
}

/// The values of equally long primitive columns, row by row. A tight loop
/// over plain slices: the generic `interleave` kernel costs several times
/// more per value, which showed in ML_PREDICT's throughput.
fn row_major<T: ArrowPrimitiveType>(columns: &[ArrayRef]) -> ArrayRef {
    let slices: Vec<&[T::Native]> = columns
        .iter()
        .map(|c| c.as_primitive::<T>().values().as_ref())
        .collect();
    let rows = slices.first().map_or(0, |s| s.len());
    let mut values = Vec::with_capacity(rows * slices.len());
    for r in 0..rows {
        for slice in &slices {
            values.push(slice[r]);
        }
    }
    Arc::new(PrimitiveArray::<T>::from_iter_values(values))
}

fn match_outputs(spec: &ModelSpec, outputs: &[TensorSpec]) -> Result<Vec<(TensorSpec, FieldRef)>> {
    let model = &spec.name;
    if spec.outputs.is_empty() {
        let usable: Vec<(TensorSpec, FieldRef)> = outputs
            .iter()
            .filter_map(|o| {
                o.column_field(&o.name)
                    .ok()
                    .map(|f| (o.clone(), Arc::new(f)))
            })
            .collect();
        if usable.is_empty() {
            return Err(plan(format!(
                "model {model} has no output Sluice can return (scalars or one-dimensional rows)"
            )));
        }
        return Ok(usable);
    }
    let by_name = spec
        .outputs
        .iter()
        .all(|f| outputs.iter().any(|o| o.name == *f.name()));
    if !by_name && spec.outputs.len() != outputs.len() {
        let names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
        return Err(SluiceError::new(
            SqlState::DATATYPE_MISMATCH,
            format!(
                "declared OUTPUT does not match model {model}: it has {} output(s) ({}); declare \
                 them by these names or all of them in order",
                outputs.len(),
                names.join(", ")
            ),
        )
        .into());
    }
    spec.outputs
        .iter()
        .enumerate()
        .map(|(i, declared)| {
            let tensor = if by_name {
                outputs.iter().find(|o| o.name == *declared.name())
            } else {
                outputs.get(i)
            }
            .ok_or_else(|| plan(format!("model {model} has no output '{}'", declared.name())))?;
            let natural = tensor.column_field(declared.name())?;
            let compatible = match (natural.data_type(), declared.data_type()) {
                (DataType::FixedSizeList(a, k), DataType::FixedSizeList(b, j)) => {
                    k == j && can_cast_types(a.data_type(), b.data_type())
                }
                (DataType::FixedSizeList(..), _) | (_, DataType::FixedSizeList(..)) => false,
                (from, to) => can_cast_types(from, to),
            };
            if !compatible {
                return Err(plan(format!(
                    "declared OUTPUT column '{}' has type {}, but model {model}'s output '{}' is {}",
                    declared.name(),
                    declared.data_type(),
                    tensor.name,
                    natural.data_type()
                )));
            }
            Ok((tensor.clone(), Arc::clone(declared)))
        })
        .collect()
}

/// Runs a tabular/tensor model on assembled input columns.
pub struct Predictor {
    model: String,
    session: Session,
    layout: PredictLayout,
}

impl Predictor {
    /// A predictor over an open session.
    pub fn new(session: Session, layout: PredictLayout, spec: &ModelSpec) -> Self {
        Self {
            model: spec.name.clone(),
            session,
            layout,
        }
    }

    fn predict(
        &mut self,
        inputs: &[ArrayRef],
        batch_size: usize,
        metrics: &ModelMetrics,
    ) -> Result<Vec<ArrayRef>> {
        // A model exported with a fixed batch size takes only that.
        let batch_size = self.layout.fixed_batch.unwrap_or(batch_size).max(1);
        let rows = inputs.first().map_or(0, |c| c.len());
        // NULL in, NULL out: the model only sees complete rows.
        let present = rows_with_all_inputs(inputs);
        let model_inputs: Vec<ArrayRef> = match &present {
            Some(mask) => inputs
                .iter()
                .map(|c| filter(c, mask))
                .collect::<std::result::Result<_, _>>()?,
            None => inputs.to_vec(),
        };
        let model_rows = model_inputs.first().map_or(0, |c| c.len());
        let mut pieces: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.layout.outputs.len()];
        let mut start = 0;
        while start < model_rows {
            let len = batch_size.min(model_rows - start);
            let mut batch: Vec<ArrayRef> =
                model_inputs.iter().map(|c| c.slice(start, len)).collect();
            // A model exported with a fixed batch size gets full batches:
            // the last one is padded by repeating its last row.
            let run_rows = match self.layout.fixed_batch {
                Some(fixed) if len < fixed => {
                    let indices = UInt32Array::from_iter_values(
                        (0..fixed as u32).map(|i| i.min(len as u32 - 1)),
                    );
                    batch = batch
                        .iter()
                        .map(|c| take(c.as_ref(), &indices, None))
                        .collect::<std::result::Result<_, _>>()?;
                    fixed
                }
                _ => len,
            };
            let started = Instant::now();
            let outputs = self.run_batch(&batch, run_rows)?;
            metrics.record_batch(len, started.elapsed());
            for (piece, output) in pieces.iter_mut().zip(outputs) {
                piece.push(output.slice(0, len));
            }
            start += len;
        }
        let columns: Vec<ArrayRef> = pieces
            .into_iter()
            .zip(&self.layout.outputs)
            .map(|(parts, (_, field))| {
                if parts.is_empty() {
                    return Ok(datafusion::arrow::array::new_empty_array(field.data_type()));
                }
                let parts: Vec<&dyn Array> = parts.iter().map(|p| p.as_ref()).collect();
                Ok(concat(&parts)?)
            })
            .collect::<Result<_>>()?;
        match present {
            None => Ok(columns),
            Some(mask) => scatter(&columns, &mask, rows),
        }
    }

    fn run_batch(&mut self, batch: &[ArrayRef], rows: usize) -> Result<Vec<ArrayRef>> {
        let values: Vec<(String, DynValue)> = self
            .layout
            .inputs
            .iter()
            .zip(batch)
            .map(|((spec, rows), column)| {
                let tensor = match rows {
                    InputRows::Values(width) => to_tensor(spec, column, *width)?,
                    InputRows::Tensor => batch_tensor(&self.model, spec, column)?,
                };
                Ok((spec.name.clone(), tensor))
            })
            .collect::<Result<_>>()?;
        let outputs = self
            .session
            .run(values)
            .map_err(|e| model_error("model run", e))?;
        self.layout
            .outputs
            .iter()
            .map(|(spec, field)| {
                let value = outputs
                    .get(&spec.name)
                    .ok_or_else(|| model_error(&spec.name, "output missing"))?;
                from_tensor(spec, value, rows, field)
            })
            .collect()
    }
}

/// Spreads the model's rows back over all rows; rows the model did not see
/// are NULL.
fn scatter(columns: &[ArrayRef], present: &BooleanArray, rows: usize) -> Result<Vec<ArrayRef>> {
    let mut next = 0u32;
    let indices: UInt32Array = (0..rows)
        .map(|r| {
            present.value(r).then(|| {
                let i = next;
                next += 1;
                i
            })
        })
        .collect();
    columns
        .iter()
        .map(|c| Ok(take(c.as_ref(), &indices, None)?))
        .collect()
}

impl BatchRunner for Predictor {
    fn run(
        &mut self,
        inputs: &[ArrayRef],
        batch_size: usize,
        metrics: &ModelMetrics,
    ) -> Result<Vec<ArrayRef>> {
        self.predict(inputs, batch_size, metrics)
    }
}

fn plan(message: String) -> DataFusionError {
    DataFusionError::Plan(message)
}

/// No model signature takes this many arguments (SQLSTATE 42883, as an
/// unknown function signature in Postgres).
fn wrong_argument_count(model: &str, wanted: usize, got: usize) -> DataFusionError {
    SluiceError::new(
        SqlState::UNDEFINED_FUNCTION,
        format!("model {model} takes {wanted} argument(s) after the model name, got {got}"),
    )
    .into()
}
