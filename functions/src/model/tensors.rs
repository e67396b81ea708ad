//! Moving data between Arrow arrays and ONNX Runtime tensors, and describing
//! a model's inputs and outputs in Arrow terms.
//!
//! A model's first dimension is the batch; what follows is one row's shape.
//! A row of shape `[]` or `[1]` is one SQL scalar; `[k]` is `k` values: a
//! `VECTOR(k)` for float32, a fixed-size array otherwise.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, BooleanArray, FixedSizeListArray, PrimitiveArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::error::{DataFusionError, Result};
use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};
use sluice_types::SluiceType;
use sluice_types::error::{SluiceError, SqlState};

/// One model input or output, as the model declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// The tensor's name in the model.
    pub name: String,
    /// Element type.
    pub element: TensorElementType,
    /// Shape; `-1` marks a dynamic dimension.
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// Values per row when one row's shape is fixed and at most one
    /// dimension deep; `None` otherwise.
    pub fn row_width(&self) -> Option<usize> {
        match self.shape.get(1..) {
            None | Some([]) => Some(1),
            Some([k]) if *k > 0 => Some(*k as usize),
            _ => None,
        }
    }

    /// The Arrow type of one element.
    pub fn element_type(&self) -> Result<DataType> {
        arrow_type_of(self.element).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "tensor '{}' has element type {:?}, which Sluice cannot exchange with a model",
                self.name, self.element
            ))
        })
    }

    /// The SQL column this tensor is one row of.
    pub fn column_field(&self, name: &str) -> Result<Field> {
        let element = self.element_type()?;
        match self.row_width() {
            Some(1) => Ok(Field::new(name, element, true)),
            Some(k) if element == DataType::Float32 => {
                Ok(SluiceType::Vector(k as i32).field(name, true))
            }
            Some(k) => Ok(Field::new(
                name,
                DataType::FixedSizeList(Arc::new(Field::new_list_field(element, true)), k as i32),
                true,
            )),
            None => Err(DataFusionError::NotImplemented(format!(
                "tensor '{}' has per-row shape {:?}; Sluice exchanges scalars and \
                 one-dimensional rows with models so far",
                self.name,
                self.shape.get(1..).unwrap_or(&[])
            ))),
        }
    }

    /// The batch size the model was exported with, when it is fixed.
    pub fn fixed_batch(&self) -> Option<usize> {
        self.shape.first().filter(|&&d| d > 0).map(|&d| d as usize)
    }
}

/// The Arrow type matching an ONNX element type.
pub fn arrow_type_of(element: TensorElementType) -> Option<DataType> {
    Some(match element {
        TensorElementType::Float32 => DataType::Float32,
        TensorElementType::Float64 => DataType::Float64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Uint8 => DataType::UInt8,
        TensorElementType::Uint16 => DataType::UInt16,
        TensorElementType::Uint32 => DataType::UInt32,
        TensorElementType::Uint64 => DataType::UInt64,
        TensorElementType::Bool => DataType::Boolean,
        _ => return None,
    })
}

/// The tensor inputs and outputs of a session. Non-tensor outputs (the
/// sequence-of-maps that scikit-learn converters emit for probabilities)
/// are left out: SQL has no use for them.
pub fn signature(session: &Session) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    let describe = |outlets: &[ort::value::Outlet]| {
        outlets
            .iter()
            .filter_map(|outlet| match outlet.dtype() {
                ValueType::Tensor { ty, shape, .. } => Some(TensorSpec {
                    name: outlet.name().to_string(),
                    element: *ty,
                    shape: shape.iter().copied().collect(),
                }),
                _ => None,
            })
            .collect()
    };
    (describe(session.inputs()), describe(session.outputs()))
}

/// Builds the tensor for `spec` from a column of `rows` rows holding one
/// row's values each: a scalar column, or a fixed-size list of `width`.
pub fn to_tensor(spec: &TensorSpec, column: &ArrayRef, width: usize) -> Result<DynValue> {
    let rows = column.len();
    let values = match column.data_type() {
        DataType::FixedSizeList(_, _) => {
            let list = column
                .as_any()
                .downcast_ref::<FixedSizeListArray>()
                .ok_or_else(|| DataFusionError::Internal("fixed-size list expected".into()))?;
            let start = list.offset() * width;
            list.values().slice(start, rows * width)
        }
        _ => Arc::clone(column),
    };
    let mut shape: Vec<i64> = vec![rows as i64];
    match spec.shape.len() {
        0 | 1 => {}
        _ => shape.extend(
            spec.shape[1..]
                .iter()
                .map(|&d| if d < 0 { width as i64 } else { d }),
        ),
    }
    tensor_from_values(spec, &values, shape)
}

/// The tensor for `spec` of `shape` holding `values` (row-major, any
/// numeric type: cast to the model's element type).
pub fn tensor_from_values(
    spec: &TensorSpec,
    values: &ArrayRef,
    shape: Vec<i64>,
) -> Result<DynValue> {
    let element = spec.element_type()?;
    let values = cast(values, &element)?;
    macro_rules! tensor {
        ($arrow:ty) => {{
            let array = values
                .as_any()
                .downcast_ref::<PrimitiveArray<$arrow>>()
                .ok_or_else(|| DataFusionError::Internal("primitive array expected".into()))?;
            Tensor::from_array((shape, array.values().to_vec()))
                .map(|t| t.into_dyn())
                .map_err(|e| model_error(&spec.name, e))
        }};
    }
    match element {
        DataType::Float32 => tensor!(Float32Type),
        DataType::Float64 => tensor!(Float64Type),
        DataType::Int8 => tensor!(Int8Type),
        DataType::Int16 => tensor!(Int16Type),
        DataType::Int32 => tensor!(Int32Type),
        DataType::Int64 => tensor!(Int64Type),
        DataType::UInt8 => tensor!(UInt8Type),
        DataType::UInt16 => tensor!(UInt16Type),
        DataType::UInt32 => tensor!(UInt32Type),
        DataType::UInt64 => tensor!(UInt64Type),
        DataType::Boolean => {
            let array = values
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| DataFusionError::Internal("boolean array expected".into()))?;
            let data: Vec<bool> = (0..array.len()).map(|i| array.value(i)).collect();
            Tensor::from_array((shape, data))
                .map(|t| t.into_dyn())
                .map_err(|e| model_error(&spec.name, e))
        }
        other => Err(DataFusionError::NotImplemented(format!(
            "model input of type {other}"
        ))),
    }
}

/// Reads `rows` rows of an output tensor as the column `field` describes.
pub fn from_tensor(
    spec: &TensorSpec,
    value: &DynValue,
    rows: usize,
    field: &Field,
) -> Result<ArrayRef> {
    fn values<T>(spec: &TensorSpec, value: &DynValue) -> Result<ArrayRef>
    where
        T: ArrowPrimitiveType,
        T::Native: ort::value::PrimitiveTensorElementType + Copy,
    {
        let (_, data) = value
            .try_extract_tensor::<T::Native>()
            .map_err(|e| model_error(&spec.name, e))?;
        Ok(Arc::new(PrimitiveArray::<T>::from_iter_values(
            data.iter().copied(),
        )))
    }
    let flat: ArrayRef = match spec.element {
        TensorElementType::Float32 => values::<Float32Type>(spec, value)?,
        TensorElementType::Float64 => values::<Float64Type>(spec, value)?,
        TensorElementType::Int8 => values::<Int8Type>(spec, value)?,
        TensorElementType::Int16 => values::<Int16Type>(spec, value)?,
        TensorElementType::Int32 => values::<Int32Type>(spec, value)?,
        TensorElementType::Int64 => values::<Int64Type>(spec, value)?,
        TensorElementType::Uint8 => values::<UInt8Type>(spec, value)?,
        TensorElementType::Uint16 => values::<UInt16Type>(spec, value)?,
        TensorElementType::Uint32 => values::<UInt32Type>(spec, value)?,
        TensorElementType::Uint64 => values::<UInt64Type>(spec, value)?,
        TensorElementType::Bool => {
            let (_, data) = value
                .try_extract_tensor::<bool>()
                .map_err(|e| model_error(&spec.name, e))?;
            Arc::new(BooleanArray::from(data.to_vec()))
        }
        other => {
            return Err(DataFusionError::NotImplemented(format!(
                "model output of element type {other:?}"
            )));
        }
    };
    if !flat.len().is_multiple_of(rows.max(1)) || (rows == 0 && !flat.is_empty()) {
        return Err(DataFusionError::Execution(format!(
            "model output '{}' has {} values for {rows} rows",
            spec.name,
            flat.len()
        )));
    }
    let width = flat.len().checked_div(rows).unwrap_or(0);
    match field.data_type() {
        DataType::FixedSizeList(child, k) => {
            if width != *k as usize {
                return Err(DataFusionError::Execution(format!(
                    "model output '{}' has {width} values per row, expected {k}",
                    spec.name
                )));
            }
            let flat = cast(&flat, child.data_type())?;
            Ok(Arc::new(FixedSizeListArray::try_new(
                Arc::clone(child),
                *k,
                flat,
                None,
            )?))
        }
        target => {
            if width != 1 {
                return Err(DataFusionError::Execution(format!(
                    "model output '{}' has {width} values per row, expected one",
                    spec.name
                )));
            }
            Ok(cast(&flat, target)?)
        }
    }
}

/// Rows where every column is present (and every list has no missing
/// element): the rows a model sees. `None` when all rows are.
pub fn rows_with_all_inputs(columns: &[ArrayRef]) -> Option<BooleanArray> {
    let rows = columns.first()?.len();
    let mut valid = vec![true; rows];
    let mut any_missing = false;
    for column in columns {
        if let Some(nulls) = column.logical_nulls() {
            for (row, ok) in valid.iter_mut().enumerate() {
                if nulls.is_null(row) {
                    *ok = false;
                    any_missing = true;
                }
            }
        }
        if let Some(list) = column.as_any().downcast_ref::<FixedSizeListArray>()
            && list.values().null_count() > 0
        {
            for (row, ok) in valid.iter_mut().enumerate() {
                if *ok && list.value(row).null_count() > 0 {
                    *ok = false;
                    any_missing = true;
                }
            }
        }
    }
    any_missing.then(|| BooleanArray::from(valid))
}

/// An ONNX Runtime failure, named after the tensor or model involved.
pub fn model_error(what: &str, e: impl std::fmt::Display) -> DataFusionError {
    SluiceError::new(
        SqlState::EXTERNAL_ROUTINE_EXCEPTION,
        format!("model error ({what}): {e}"),
    )
    .into()
}

/// The field of an output column, with the name the user sees.
pub fn output_field(spec: &TensorSpec, name: &str) -> Result<FieldRef> {
    Ok(Arc::new(spec.column_field(name)?))
}
