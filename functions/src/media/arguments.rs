//! Reading media function arguments: the media column, and per-row sizes
//! and vectors that may be constants or columns.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;
use sluice_types::SluiceType;
use sluice_types::error::{SluiceError, SqlState};
use sluice_types::extension::is_storage_of;
use sluice_types::media::error::MediaError;

/// Checks, at planning, that `field` is of type `expected`.
pub fn expect_type(function: &str, field: &Field, expected: SluiceType) -> Result<()> {
    match SluiceType::of_field(field) {
        Some(found) if found == expected => Ok(()),
        _ if field.data_type() == &DataType::Null => Ok(()),
        // An expression choosing among images (CASE, COALESCE) is typed by
        // its storage at planning; the analyzer restores its type later.
        None if is_storage_of(expected, field.data_type()) => Ok(()),
        found => Err(DataFusionError::from(SluiceError::new(
            SqlState::UNDEFINED_FUNCTION,
            format!(
                "function {function} takes {} as its first argument, not {} (convert bytes with {}(bytea) or read them with read_{}(ref))",
                expected.sql_name(),
                found.map_or_else(|| field.data_type().to_string(), |t| t.type_name()),
                expected.sql_name(),
                expected.sql_name(),
            ),
        ))),
    }
}

/// Checks the argument count, at planning.
pub fn expect_count(function: &str, found: usize, allowed: &[usize], usage: &str) -> Result<()> {
    if allowed.contains(&found) {
        Ok(())
    } else {
        Err(DataFusionError::from(SluiceError::new(
            SqlState::UNDEFINED_FUNCTION,
            format!("function {function} takes {usage}"),
        )))
    }
}

/// All arguments as arrays of `rows` rows.
pub fn arrays(args: &[ColumnarValue], rows: usize) -> Result<Vec<ArrayRef>> {
    args.iter().map(|a| a.to_array(rows)).collect()
}

/// An integer argument, per row (NULL stays `None`).
pub fn integers(function: &str, what: &str, array: &dyn Array) -> Result<Vec<Option<i64>>> {
    if !array.data_type().is_integer() && array.data_type() != &DataType::Null {
        return Err(DataFusionError::Plan(format!(
            "function {function}: {what} must be an integer, not {}",
            array.data_type()
        )));
    }
    let ints = cast(array, &DataType::Int64)?;
    Ok(ints.as_primitive::<Int64Type>().iter().collect())
}

/// A non-negative `u32` from an integer argument.
pub fn dimension(function: &str, what: &str, value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| {
        DataFusionError::from(SluiceError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!(
                "function {function}: {what} must be between 0 and {}, not {value}",
                u32::MAX
            ),
        ))
    })
}

/// Three numbers per row (`mean`/`std` of `image_to_tensor`), from an
/// array of numbers or a vector; NULL rows are `None`.
pub fn triples(function: &str, what: &str, array: &dyn Array) -> Result<Vec<Option<[f32; 3]>>> {
    let wrong = || {
        DataFusionError::Plan(format!(
            "function {function}: {what} must be an array of 3 numbers, such as ARRAY[0.485, 0.456, 0.406]"
        ))
    };
    let item = |i: usize| -> Option<ArrayRef> {
        match array.data_type() {
            DataType::List(_) => Some(array.as_list::<i32>().value(i)),
            DataType::LargeList(_) => Some(array.as_list::<i64>().value(i)),
            DataType::FixedSizeList(..) => Some(array.as_fixed_size_list().value(i)),
            _ => None,
        }
    };
    if array.data_type() == &DataType::Null {
        return Ok(vec![None; array.len()]);
    }
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                return Ok(None);
            }
            let values = item(i).ok_or_else(wrong)?;
            if !values.data_type().is_numeric() || values.len() != 3 || values.null_count() > 0 {
                return Err(wrong());
            }
            let floats = cast(values.as_ref(), &DataType::Float64)?;
            let floats = floats.as_primitive::<Float64Type>();
            Ok(Some([
                floats.value(0) as f32,
                floats.value(1) as f32,
                floats.value(2) as f32,
            ]))
        })
        .collect()
}

/// A constant integer argument known at planning (for result shapes).
pub fn constant_dimension(value: Option<&datafusion::common::ScalarValue>) -> Option<usize> {
    let value = value?.cast_to(&DataType::Int64).ok()?;
    match value {
        datafusion::common::ScalarValue::Int64(Some(v)) if v > 0 => usize::try_from(v).ok(),
        _ => None,
    }
}

/// A media codec's error as an SQL error, with the SQLSTATE of its kind.
pub fn media_error(error: MediaError) -> DataFusionError {
    error.into()
}
