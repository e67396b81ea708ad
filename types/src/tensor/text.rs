//! The text form of tensors, nested arrays (`[[1,2],[3,4]]`): parsing with
//! range checks per element type, and formatting.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    UInt8Type,
};
use datafusion::error::{DataFusionError, Result};

use super::{MAX_TENSOR_RANK, TensorElement};
use crate::error::{SluiceError, SqlState};
use crate::float_text::{format_f32, format_f64};

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
        DataFusionError::from(SluiceError::new(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!(
                "invalid input syntax for type tensor: \"{}\": {why}",
                abbreviate(text)
            ),
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
