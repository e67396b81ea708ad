//! `TENSOR` values: element types, shapes, storage and the text form.
//!
//! A fixed-shape tensor (`TENSOR(FLOAT, [3,224,224])`) is Arrow's canonical
//! `arrow.fixed_shape_tensor`: a `FixedSizeList<elem>` of the shape's
//! product, row-major, the shape in the field metadata. A variable-shape
//! tensor (`TENSOR(FLOAT)`) is `Struct{data: List<elem>, shape: List<Int32>}`
//! named `sluice.tensor`: Arrow's canonical `arrow.variable_shape_tensor`
//! fixes the number of dimensions in its storage type, which would make
//! `image_decode` (rank 3) and `tensor_reshape` (any rank) return different
//! SQL types for one function; one type of any rank keeps them simple.
//!
//! The text form is nested arrays, as numpy's `tolist()` and JSON write
//! them: `[[1,2],[3,4]]`. Input accepts the same and checks that it is
//! rectangular and fits the element type.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Int32Array, ListArray, PrimitiveArray,
    StructArray, new_null_array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Fields, Float16Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, UInt8Type,
};
use datafusion::error::{DataFusionError, Result};

use half::f16;

use crate::float_text::{format_f32, format_f64};

/// The most dimensions a tensor may have. A bound keeps [`TensorShape`]
/// `Copy` (so [`crate::SluiceType`] stays a plain value); ONNX models and
/// image/audio tensors use at most 5.
pub const MAX_TENSOR_RANK: usize = 8;

/// The largest number of elements one tensor value may hold (Arrow's
/// `FixedSizeList` length is an `i32`).
pub const MAX_TENSOR_ELEMENTS: usize = i32::MAX as usize;

/// The element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorElement {
    /// `FLOAT` / `FLOAT32` / `REAL`.
    Float32,
    /// `FLOAT16` / `HALF`.
    Float16,
    /// `DOUBLE` / `FLOAT64`.
    Float64,
    /// `INT8` / `TINYINT`.
    Int8,
    /// `UINT8` (image pixels).
    UInt8,
    /// `INT16` / `SMALLINT`.
    Int16,
    /// `INT32` / `INT` / `INTEGER`.
    Int32,
    /// `INT64` / `BIGINT`.
    Int64,
}

impl TensorElement {
    /// Every element type, for name lookups and tests.
    pub const ALL: [TensorElement; 8] = [
        TensorElement::Float32,
        TensorElement::Float16,
        TensorElement::Float64,
        TensorElement::Int8,
        TensorElement::UInt8,
        TensorElement::Int16,
        TensorElement::Int32,
        TensorElement::Int64,
    ];

    /// The element type a SQL name denotes (case-insensitive).
    pub fn from_sql_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "float" | "float32" | "float4" | "real" => TensorElement::Float32,
            "float16" | "half" => TensorElement::Float16,
            "double" | "float64" | "float8" => TensorElement::Float64,
            "int8" | "tinyint" => TensorElement::Int8,
            "uint8" => TensorElement::UInt8,
            "int16" | "smallint" => TensorElement::Int16,
            "int32" | "int" | "integer" => TensorElement::Int32,
            "int64" | "bigint" => TensorElement::Int64,
            _ => return None,
        })
    }

    /// The name shown in type names (`tensor(float32,[2,2])`).
    pub fn sql_name(self) -> &'static str {
        match self {
            TensorElement::Float32 => "float32",
            TensorElement::Float16 => "float16",
            TensorElement::Float64 => "float64",
            TensorElement::Int8 => "int8",
            TensorElement::UInt8 => "uint8",
            TensorElement::Int16 => "int16",
            TensorElement::Int32 => "int32",
            TensorElement::Int64 => "int64",
        }
    }

    /// The Arrow type of the elements.
    pub fn data_type(self) -> DataType {
        match self {
            TensorElement::Float32 => DataType::Float32,
            TensorElement::Float16 => DataType::Float16,
            TensorElement::Float64 => DataType::Float64,
            TensorElement::Int8 => DataType::Int8,
            TensorElement::UInt8 => DataType::UInt8,
            TensorElement::Int16 => DataType::Int16,
            TensorElement::Int32 => DataType::Int32,
            TensorElement::Int64 => DataType::Int64,
        }
    }

    /// The element type stored as `data_type`.
    pub fn of_data_type(data_type: &DataType) -> Option<Self> {
        Self::ALL.into_iter().find(|e| &e.data_type() == data_type)
    }

    fn is_float(self) -> bool {
        matches!(
            self,
            TensorElement::Float32 | TensorElement::Float16 | TensorElement::Float64
        )
    }
}

/// A fixed tensor shape of at most [`MAX_TENSOR_RANK`] dimensions, each ≥ 1.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TensorShape {
    rank: u8,
    dims: [u32; MAX_TENSOR_RANK],
}

impl TensorShape {
    /// A shape from its dimensions, checking rank, sizes and element count.
    pub fn try_new(dims: &[usize]) -> Result<Self> {
        if dims.is_empty() || dims.len() > MAX_TENSOR_RANK {
            return Err(DataFusionError::Plan(format!(
                "a tensor shape has 1 to {MAX_TENSOR_RANK} dimensions, not {}",
                dims.len()
            )));
        }
        let mut stored = [0u32; MAX_TENSOR_RANK];
        for (slot, &d) in stored.iter_mut().zip(dims) {
            *slot = u32::try_from(d)
                .ok()
                .filter(|d| *d >= 1)
                .ok_or_else(|| bad_shape(dims))?;
        }
        let shape = Self {
            rank: dims.len() as u8,
            dims: stored,
        };
        if shape.checked_len().is_none() {
            return Err(bad_shape(dims));
        }
        Ok(shape)
    }

    /// The dimensions.
    pub fn dims(&self) -> Vec<usize> {
        self.dims[..usize::from(self.rank)]
            .iter()
            .map(|d| *d as usize)
            .collect()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.checked_len().unwrap_or(0)
    }

    /// Never true: every dimension is at least 1.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn checked_len(&self) -> Option<usize> {
        self.dims()
            .into_iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(d))
            .filter(|n| *n <= MAX_TENSOR_ELEMENTS)
    }
}

impl fmt::Debug for TensorShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for TensorShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.dims().iter().map(usize::to_string).collect();
        write!(f, "[{}]", dims.join(","))
    }
}

fn bad_shape(dims: &[usize]) -> DataFusionError {
    DataFusionError::Plan(format!(
        "invalid tensor shape {dims:?}: every dimension must be at least 1 and the tensor hold \
         at most {MAX_TENSOR_ELEMENTS} elements"
    ))
}

/// The storage of `TENSOR(elem, shape)`: Arrow's canonical fixed-shape
/// tensor requires a non-nullable item field.
pub fn fixed_storage(elem: TensorElement, shape: TensorShape) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new_list_field(elem.data_type(), false)),
        shape.len() as i32,
    )
}

/// The storage of `TENSOR(elem)` (variable shape).
pub fn variable_storage(elem: TensorElement) -> DataType {
    DataType::Struct(variable_fields(elem))
}

fn variable_fields(elem: TensorElement) -> Fields {
    Fields::from(vec![
        Field::new(
            "data",
            DataType::List(Arc::new(Field::new_list_field(elem.data_type(), false))),
            false,
        ),
        Field::new(
            "shape",
            DataType::List(Arc::new(Field::new_list_field(DataType::Int32, false))),
            false,
        ),
    ])
}

/// The canonical extension metadata (`{"shape":[…]}`) of a fixed shape.
/// Written by hand: arrow-rs serialises absent dimension names and
/// permutations as `null`, which the C++ implementation (pyarrow) rejects.
pub fn fixed_metadata(_elem: TensorElement, shape: TensorShape) -> Option<String> {
    Some(serde_json::json!({ "shape": shape.dims() }).to_string())
}

/// The shape a fixed-shape tensor field's metadata names (`{"shape":[…]}`;
/// dimension names and permutations, which Sluice never writes, are ignored).
pub fn shape_of_metadata(metadata: &str) -> Option<TensorShape> {
    let value: serde_json::Value = serde_json::from_str(metadata).ok()?;
    let dims: Vec<usize> = value
        .get("shape")?
        .as_array()?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<_>>()?;
    TensorShape::try_new(&dims).ok()
}

/// One tensor value: its shape and its elements as f64 (every supported
/// element type converts to f64 exactly, except int64 beyond 2^53, which
/// [`Elements`] keeps separately).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorValue {
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub elements: Elements,
}

/// Tensor elements in a type that holds each element type exactly.
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    /// Float and small integer elements.
    Float(Vec<f64>),
    /// `int64` elements.
    Int(Vec<i64>),
}

impl Elements {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Elements::Float(v) => v.len(),
            Elements::Int(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses the nested-array text form into a tensor of `elem`.
pub fn parse_tensor(text: &str, elem: TensorElement) -> Result<TensorValue> {
    let invalid = |why: &str| {
        DataFusionError::Execution(format!(
            "invalid input syntax for type tensor: \"{}\": {why}",
            abbreviate(text)
        ))
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| invalid("expected nested arrays of numbers"))?;
    let mut shape = Vec::new();
    let mut level = &value;
    while let serde_json::Value::Array(items) = level {
        shape.push(items.len());
        match items.first() {
            Some(first) => level = first,
            None => break,
        }
    }
    if shape.is_empty() {
        return Err(invalid("expected an array"));
    }
    if shape.contains(&0) {
        return Err(invalid("a tensor dimension is empty"));
    }
    if shape.len() > MAX_TENSOR_RANK {
        return Err(invalid("too many dimensions"));
    }
    let mut floats = Vec::new();
    let mut ints = Vec::new();
    collect_elements(&value, &shape, elem, &mut floats, &mut ints).map_err(|why| invalid(&why))?;
    let elements = if elem == TensorElement::Int64 {
        Elements::Int(ints)
    } else {
        Elements::Float(floats)
    };
    Ok(TensorValue { shape, elements })
}

fn collect_elements(
    value: &serde_json::Value,
    shape: &[usize],
    elem: TensorElement,
    floats: &mut Vec<f64>,
    ints: &mut Vec<i64>,
) -> std::result::Result<(), String> {
    match (shape.split_first(), value) {
        (Some((&len, rest)), serde_json::Value::Array(items)) => {
            if items.len() != len {
                return Err("the arrays are not rectangular".into());
            }
            items
                .iter()
                .try_for_each(|item| collect_elements(item, rest, elem, floats, ints))
        }
        (None, serde_json::Value::Number(n)) => {
            if elem == TensorElement::Int64 {
                ints.push(n.as_i64().ok_or_else(|| format!("{n} is not an int64"))?);
            } else {
                let v = n.as_f64().ok_or_else(|| format!("{n} is not a number"))?;
                check_fits(v, elem)?;
                floats.push(v);
            }
            Ok(())
        }
        _ => Err("the arrays are not rectangular or hold something other than numbers".into()),
    }
}

/// Whether `v` is representable in `elem` (integers must be whole and in
/// range; floats must be finite in their width).
pub fn check_fits(v: f64, elem: TensorElement) -> std::result::Result<(), String> {
    let (min, max) = match elem {
        TensorElement::Int8 => (i8::MIN as f64, i8::MAX as f64),
        TensorElement::UInt8 => (0.0, u8::MAX as f64),
        TensorElement::Int16 => (i16::MIN as f64, i16::MAX as f64),
        TensorElement::Int32 => (i32::MIN as f64, i32::MAX as f64),
        TensorElement::Int64 => (i64::MIN as f64, i64::MAX as f64),
        TensorElement::Float16 => (-65504.0, 65504.0),
        TensorElement::Float32 => (f32::MIN as f64, f32::MAX as f64),
        TensorElement::Float64 => (f64::MIN, f64::MAX),
    };
    if elem.is_float() && !v.is_finite() {
        // NaN and infinities are values of every float type.
        return Ok(());
    }
    if !elem.is_float() && v.fract() != 0.0 {
        return Err(format!("{v} is not an integer ({})", elem.sql_name()));
    }
    if !(min..=max).contains(&v) {
        return Err(format!("{v} is out of range for {}", elem.sql_name()));
    }
    Ok(())
}

fn abbreviate(text: &str) -> String {
    if text.len() <= 60 {
        return text.to_owned();
    }
    let cut = (0..=60)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}…", &text[..cut])
}

/// The element array of `elem` holding `elements` (already range-checked).
pub fn element_array(elem: TensorElement, elements: &Elements) -> ArrayRef {
    fn cast<T: ArrowPrimitiveType>(values: &[f64], convert: impl Fn(f64) -> T::Native) -> ArrayRef {
        Arc::new(PrimitiveArray::<T>::from_iter_values(
            values.iter().map(|v| convert(*v)),
        ))
    }
    match (elem, elements) {
        (_, Elements::Int(ints)) => Arc::new(PrimitiveArray::<Int64Type>::from_iter_values(
            ints.iter().copied(),
        )),
        (TensorElement::Float32, Elements::Float(v)) => cast::<Float32Type>(v, |x| x as f32),
        (TensorElement::Float16, Elements::Float(v)) => cast::<Float16Type>(v, f16::from_f64),
        (TensorElement::Float64, Elements::Float(v)) => cast::<Float64Type>(v, |x| x),
        (TensorElement::Int8, Elements::Float(v)) => cast::<Int8Type>(v, |x| x as i8),
        (TensorElement::UInt8, Elements::Float(v)) => cast::<UInt8Type>(v, |x| x as u8),
        (TensorElement::Int16, Elements::Float(v)) => cast::<Int16Type>(v, |x| x as i16),
        (TensorElement::Int32, Elements::Float(v)) => cast::<Int32Type>(v, |x| x as i32),
        (TensorElement::Int64, Elements::Float(v)) => cast::<Int64Type>(v, |x| x as i64),
    }
}

/// Builds tensor storage from per-row values (`None` = NULL). A fixed
/// `shape` requires every value to have exactly that shape.
pub fn tensor_array(
    elem: TensorElement,
    shape: Option<TensorShape>,
    rows: &[Option<TensorValue>],
) -> Result<ArrayRef> {
    let nulls = rows
        .iter()
        .any(Option::is_none)
        .then(|| NullBuffer::from_iter(rows.iter().map(Option::is_some)));
    let element_count = |v: &TensorValue| v.elements.len();
    match shape {
        Some(shape) => {
            let width = shape.len();
            let mut all = Vec::with_capacity(rows.len() * width);
            let mut ints = Vec::new();
            for row in rows {
                match row {
                    Some(value) => {
                        if value.shape != shape.dims() {
                            return Err(DataFusionError::Execution(format!(
                                "expected a tensor of shape {shape}, not {}",
                                format_shape(&value.shape)
                            )));
                        }
                        match &value.elements {
                            Elements::Float(v) => all.extend_from_slice(v),
                            Elements::Int(v) => ints.extend_from_slice(v),
                        }
                    }
                    None if elem == TensorElement::Int64 => {
                        ints.extend(std::iter::repeat_n(0, width))
                    }
                    None => all.extend(std::iter::repeat_n(0.0, width)),
                }
            }
            let values = if elem == TensorElement::Int64 {
                element_array(elem, &Elements::Int(ints))
            } else {
                element_array(elem, &Elements::Float(all))
            };
            Ok(Arc::new(FixedSizeListArray::try_new(
                Arc::new(Field::new_list_field(elem.data_type(), false)),
                width as i32,
                values,
                nulls,
            )?))
        }
        None => {
            let mut floats = Vec::new();
            let mut ints = Vec::new();
            let mut data_lengths = Vec::with_capacity(rows.len());
            let mut shape_values = Vec::new();
            let mut shape_lengths = Vec::with_capacity(rows.len());
            for row in rows {
                match row {
                    Some(value) => {
                        data_lengths.push(element_count(value));
                        shape_lengths.push(value.shape.len());
                        for d in &value.shape {
                            shape_values.push(i32::try_from(*d).map_err(|_| {
                                DataFusionError::Execution("tensor dimension too large".into())
                            })?);
                        }
                        match &value.elements {
                            Elements::Float(v) => floats.extend_from_slice(v),
                            Elements::Int(v) => ints.extend_from_slice(v),
                        }
                    }
                    None => {
                        data_lengths.push(0);
                        shape_lengths.push(0);
                    }
                }
            }
            let values = if elem == TensorElement::Int64 {
                element_array(elem, &Elements::Int(ints))
            } else {
                element_array(elem, &Elements::Float(floats))
            };
            variable_array(
                elem,
                values,
                OffsetBuffer::from_lengths(data_lengths),
                Arc::new(Int32Array::from(shape_values)),
                OffsetBuffer::from_lengths(shape_lengths),
                nulls,
            )
        }
    }
}

/// Variable-shape tensor storage from its parts.
pub fn variable_array(
    elem: TensorElement,
    values: ArrayRef,
    data_offsets: OffsetBuffer<i32>,
    shape_values: ArrayRef,
    shape_offsets: OffsetBuffer<i32>,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef> {
    let data = ListArray::try_new(
        Arc::new(Field::new_list_field(elem.data_type(), false)),
        data_offsets,
        values,
        None,
    )?;
    let shape = ListArray::try_new(
        Arc::new(Field::new_list_field(DataType::Int32, false)),
        shape_offsets,
        shape_values,
        None,
    )?;
    Ok(Arc::new(StructArray::try_new(
        variable_fields(elem),
        vec![Arc::new(data), Arc::new(shape)],
        nulls,
    )?))
}

/// The shape and element array of the non-null tensor at `idx` of
/// `values` (fixed or variable storage).
pub fn tensor_at(
    values: &dyn Array,
    shape: Option<TensorShape>,
    idx: usize,
) -> Result<(Vec<usize>, ArrayRef)> {
    match shape {
        Some(shape) => {
            let list = values.as_fixed_size_list_opt().ok_or_else(|| {
                DataFusionError::Internal(format!("tensor stored as {}", values.data_type()))
            })?;
            Ok((shape.dims(), list.value(idx)))
        }
        None => {
            let (data, shapes) = variable_parts(values)?;
            Ok((dims_at(shapes, idx)?, data.value(idx)))
        }
    }
}

/// The data and shape lists of variable-shape tensor storage.
pub fn variable_parts(values: &dyn Array) -> Result<(&ListArray, &ListArray)> {
    let parts = values.as_struct_opt().ok_or_else(|| {
        DataFusionError::Internal(format!("tensor stored as {}", values.data_type()))
    })?;
    match (
        parts
            .column_by_name("data")
            .and_then(|c| c.as_list_opt::<i32>()),
        parts
            .column_by_name("shape")
            .and_then(|c| c.as_list_opt::<i32>()),
    ) {
        (Some(data), Some(shapes)) => Ok((data, shapes)),
        _ => Err(DataFusionError::Internal(
            "variable tensor without data/shape lists".into(),
        )),
    }
}

/// The dimensions of the tensor at `idx` of a variable tensor's shape list.
pub fn dims_at(shapes: &ListArray, idx: usize) -> Result<Vec<usize>> {
    let dims = shapes.value(idx);
    Ok(dims
        .as_primitive_opt::<Int32Type>()
        .ok_or_else(|| DataFusionError::Internal("tensor shape not int32".into()))?
        .values()
        .iter()
        .map(|d| usize::try_from(*d).unwrap_or(0))
        .collect())
}

/// Appends the nested-array text form of one tensor.
pub fn format_tensor(shape: &[usize], elements: &dyn Array, out: &mut String) -> Result<()> {
    let mut items = Vec::with_capacity(elements.len());
    for i in 0..elements.len() {
        items.push(format_element(elements, i)?);
    }
    nest(shape, &items, out);
    Ok(())
}

fn nest(shape: &[usize], items: &[String], out: &mut String) {
    match shape.split_first() {
        None => {
            if let Some(item) = items.first() {
                out.push_str(item);
            }
        }
        Some((&len, rest)) => {
            let stride = rest.iter().product::<usize>();
            out.push('[');
            for i in 0..len {
                if i > 0 {
                    out.push(',');
                }
                let start = (i * stride).min(items.len());
                let end = (start + stride).min(items.len());
                nest(rest, &items[start..end], out);
            }
            out.push(']');
        }
    }
}

fn format_element(elements: &dyn Array, i: usize) -> Result<String> {
    Ok(match elements.data_type() {
        DataType::Float32 => format_f32(elements.as_primitive::<Float32Type>().value(i)),
        DataType::Float16 => format_f32(elements.as_primitive::<Float16Type>().value(i).to_f32()),
        DataType::Float64 => format_f64(elements.as_primitive::<Float64Type>().value(i)),
        DataType::Int8 => elements.as_primitive::<Int8Type>().value(i).to_string(),
        DataType::UInt8 => elements.as_primitive::<UInt8Type>().value(i).to_string(),
        DataType::Int16 => elements.as_primitive::<Int16Type>().value(i).to_string(),
        DataType::Int32 => elements.as_primitive::<Int32Type>().value(i).to_string(),
        DataType::Int64 => elements.as_primitive::<Int64Type>().value(i).to_string(),
        other => {
            return Err(DataFusionError::Internal(format!(
                "tensor elements stored as {other}"
            )));
        }
    })
}

/// `[2,3]`: how shapes appear in messages and `tensor_shape`'s text.
pub fn format_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(","))
}

/// Converts `array` into `TENSOR(elem[, shape])` storage. `source_shape`
/// is `Some` when `array` already holds tensors (of that fixed shape, or
/// variable); otherwise `array` holds nested arrays (or vectors) whose
/// nesting gives the shape.
pub fn convert_to_tensor(
    array: &dyn Array,
    source_shape: Option<Option<TensorShape>>,
    elem: TensorElement,
    shape: Option<TensorShape>,
) -> Result<ArrayRef> {
    let mut rows = Vec::with_capacity(array.len());
    for idx in 0..array.len() {
        if array.is_null(idx) {
            rows.push(None);
            continue;
        }
        let (dims, leaves) = match source_shape {
            Some(source_shape) => tensor_at(array, source_shape, idx)?,
            None => nested_at(array, idx)?,
        };
        rows.push(Some(TensorValue {
            shape: dims,
            elements: elements_of(leaves.as_ref(), elem)?,
        }));
    }
    tensor_array(elem, shape, &rows)
}

/// The shape and leaf values of the nested array at `idx`.
fn nested_at(array: &dyn Array, idx: usize) -> Result<(Vec<usize>, ArrayRef)> {
    let mut shape = Vec::new();
    let mut leaves = Vec::new();
    collect_nested(list_item(array, idx)?.as_ref(), 0, &mut shape, &mut leaves)?;
    if shape.contains(&0) {
        return Err(DataFusionError::Execution(
            "a tensor dimension is empty".into(),
        ));
    }
    let leaves: Vec<&dyn Array> = leaves.iter().map(|a| a.as_ref()).collect();
    let flat = if leaves.is_empty() {
        new_null_array(&DataType::Float64, 0)
    } else {
        datafusion::arrow::compute::concat(&leaves)?
    };
    Ok((shape, flat))
}

fn list_item(array: &dyn Array, idx: usize) -> Result<ArrayRef> {
    Ok(match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(idx),
        DataType::LargeList(_) => array.as_list::<i64>().value(idx),
        DataType::FixedSizeList(..) => array.as_fixed_size_list().value(idx),
        other => {
            return Err(DataFusionError::Plan(format!(
                "cannot make a tensor from {other}: expected nested arrays"
            )));
        }
    })
}

fn collect_nested(
    level: &dyn Array,
    depth: usize,
    shape: &mut Vec<usize>,
    leaves: &mut Vec<ArrayRef>,
) -> Result<()> {
    if depth >= MAX_TENSOR_RANK {
        return Err(DataFusionError::Execution(format!(
            "a tensor has at most {MAX_TENSOR_RANK} dimensions"
        )));
    }
    match shape.get(depth) {
        Some(&len) if len != level.len() => {
            return Err(DataFusionError::Execution(
                "cannot make a tensor from arrays that are not rectangular".into(),
            ));
        }
        Some(_) => {}
        None => shape.push(level.len()),
    }
    if level.null_count() > 0 {
        return Err(DataFusionError::Execution(
            "tensor elements cannot be NULL".into(),
        ));
    }
    if level.data_type().is_nested() {
        for i in 0..level.len() {
            collect_nested(list_item(level, i)?.as_ref(), depth + 1, shape, leaves)?;
        }
    } else {
        if shape.len() != depth + 1 {
            return Err(DataFusionError::Execution(
                "cannot make a tensor from arrays that are not rectangular".into(),
            ));
        }
        leaves.push(datafusion::arrow::array::make_array(level.to_data()));
    }
    Ok(())
}

/// The elements of `values` (any numeric array) for a tensor of `elem`,
/// each checked to fit.
pub fn elements_of(values: &dyn Array, elem: TensorElement) -> Result<Elements> {
    use datafusion::arrow::compute::cast;
    if elem == TensorElement::Int64 {
        let ints = cast(values, &DataType::Int64)?;
        if ints.null_count() > values.null_count() {
            return Err(DataFusionError::Execution(
                "a tensor element does not fit int64".into(),
            ));
        }
        return Ok(Elements::Int(
            ints.as_primitive::<Int64Type>().values().to_vec(),
        ));
    }
    if !values.data_type().is_numeric() {
        return Err(DataFusionError::Execution(format!(
            "cannot make a tensor of {} elements",
            values.data_type()
        )));
    }
    let floats = cast(values, &DataType::Float64)?;
    let floats = floats.as_primitive::<Float64Type>().values().to_vec();
    for v in &floats {
        check_fits(*v, elem).map_err(DataFusionError::Execution)?;
    }
    Ok(Elements::Float(floats))
}

/// Builds tensors of one element type row by row, each with its own
/// shape: the functions that make tensors (`image_decode`,
/// `image_to_tensor`, `audio_to_tensor`) share it.
#[derive(Debug)]
pub struct TensorBuilder<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    lengths: Vec<usize>,
    dims: Vec<i32>,
    ranks: Vec<usize>,
    valid: Vec<bool>,
}

impl<T: ArrowPrimitiveType> TensorBuilder<T> {
    /// An empty builder for about `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            values: Vec::new(),
            lengths: Vec::with_capacity(rows),
            dims: Vec::new(),
            ranks: Vec::with_capacity(rows),
            valid: Vec::with_capacity(rows),
        }
    }

    /// Appends a tensor of `shape` holding `data` (row-major).
    pub fn push(&mut self, shape: &[usize], data: &[T::Native]) -> Result<()> {
        for d in shape {
            self.dims.push(i32::try_from(*d).map_err(|_| {
                DataFusionError::Execution(format!("tensor dimension {d} is too large"))
            })?);
        }
        self.ranks.push(shape.len());
        self.lengths.push(data.len());
        self.values.extend_from_slice(data);
        self.valid.push(true);
        Ok(())
    }

    /// Appends a NULL.
    pub fn push_null(&mut self) {
        self.ranks.push(0);
        self.lengths.push(0);
        self.valid.push(false);
    }

    /// The tensors of `elem` (the element type `T` stands for): fixed-shape
    /// storage when `fixed` is given (every row must hold `fixed`'s element
    /// count), variable-shape storage otherwise.
    pub fn finish(self, elem: TensorElement, fixed: Option<TensorShape>) -> Result<ArrayRef>
    where
        PrimitiveArray<T>: From<Vec<T::Native>>,
    {
        let nulls = self
            .valid
            .iter()
            .any(|v| !v)
            .then(|| NullBuffer::from(self.valid.clone()));
        let Some(shape) = fixed else {
            return variable_array(
                elem,
                Arc::new(PrimitiveArray::<T>::from(self.values)),
                OffsetBuffer::from_lengths(self.lengths),
                Arc::new(Int32Array::from(self.dims)),
                OffsetBuffer::from_lengths(self.ranks),
                nulls,
            );
        };
        // Fixed-size storage holds placeholder elements for NULL rows.
        let width = shape.len();
        let mut values = Vec::with_capacity(self.valid.len() * width);
        let mut start = 0;
        for (valid, length) in self.valid.iter().zip(&self.lengths) {
            if *valid {
                if *length != width {
                    return Err(DataFusionError::Execution(format!(
                        "expected a tensor of shape {shape}, not one of {length} elements"
                    )));
                }
                values.extend_from_slice(&self.values[start..start + length]);
            } else {
                values.extend(std::iter::repeat_n(T::Native::default(), width));
            }
            start += length;
        }
        Ok(Arc::new(FixedSizeListArray::try_new(
            Arc::new(Field::new_list_field(elem.data_type(), false)),
            width as i32,
            Arc::new(PrimitiveArray::<T>::from(values)),
            nulls,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_for_fixed_and_variable_shapes() {
        for shape in [Some(TensorShape::try_new(&[2, 3]).unwrap()), None] {
            let value = parse_tensor("[[1,2,3],[4,5.5,6]]", TensorElement::Float32).unwrap();
            assert_eq!(value.shape, vec![2, 3]);
            let array = tensor_array(TensorElement::Float32, shape, &[Some(value), None]).unwrap();
            assert!(array.is_null(1));
            let (dims, elements) = tensor_at(array.as_ref(), shape, 0).unwrap();
            let mut text = String::new();
            format_tensor(&dims, elements.as_ref(), &mut text).unwrap();
            assert_eq!(text, "[[1,2,3],[4,5.5,6]]");
        }
    }

    #[test]
    fn input_errors_are_clear() {
        for (text, elem, message) in [
            ("[[1,2],[3]]", TensorElement::Float32, "not rectangular"),
            ("[1,\"a\"]", TensorElement::Float32, "not rectangular"),
            ("[]", TensorElement::Float32, "dimension is empty"),
            ("3", TensorElement::Float32, "expected an array"),
            ("[300]", TensorElement::UInt8, "out of range for uint8"),
            ("[1.5]", TensorElement::Int32, "not an integer"),
            ("[1e40]", TensorElement::Float32, "out of range for float32"),
            ("[[1,2]", TensorElement::Float32, "expected nested arrays"),
        ] {
            let err = parse_tensor(text, elem).unwrap_err().to_string();
            assert!(err.contains(message), "{text}: {err}");
        }
        let value = parse_tensor("[1,2]", TensorElement::Float32).unwrap();
        let fixed = TensorShape::try_new(&[3]).unwrap();
        let err = tensor_array(TensorElement::Float32, Some(fixed), &[Some(value)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected a tensor of shape [3], not [2]"),
            "{err}"
        );
    }

    #[test]
    fn int64_elements_are_exact() {
        let value = parse_tensor("[9007199254740993]", TensorElement::Int64).unwrap();
        let array = tensor_array(TensorElement::Int64, None, &[Some(value)]).unwrap();
        let (dims, elements) = tensor_at(array.as_ref(), None, 0).unwrap();
        let mut text = String::new();
        format_tensor(&dims, elements.as_ref(), &mut text).unwrap();
        assert_eq!(text, "[9007199254740993]");
    }

    #[test]
    fn shapes_are_checked_and_carried_in_canonical_metadata() {
        assert!(TensorShape::try_new(&[]).is_err());
        assert!(TensorShape::try_new(&[0, 3]).is_err());
        assert!(TensorShape::try_new(&[1; 9]).is_err());
        assert!(TensorShape::try_new(&[1 << 20, 1 << 20]).is_err());
        let shape = TensorShape::try_new(&[3, 224, 224]).unwrap();
        let metadata = fixed_metadata(TensorElement::Float32, shape).unwrap();
        assert_eq!(metadata, r#"{"shape":[3,224,224]}"#);
        assert_eq!(shape_of_metadata(&metadata), Some(shape));
    }
}
