//! Header properties of images and audio (`image_width`, `audio_duration`,
//! …): each is a field of the value's struct, read when the value was made,
//! so these functions never decode.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, make_array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use sluice_types::SluiceType;
use sluice_types::error::{SluiceError, SqlState};

use super::arguments::expect_type;

/// One property function: the struct field it reads and the SQL type it
/// returns it as.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MediaProperty {
    name: &'static str,
    of: SluiceType,
    field: &'static str,
    returns: DataType,
    signature: Signature,
}

impl MediaProperty {
    fn new(name: &'static str, of: SluiceType, field: &'static str, returns: DataType) -> Self {
        Self {
            name,
            of,
            field,
            returns,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for MediaProperty {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let [source] = args.arg_fields else {
            return Err(DataFusionError::from(SluiceError::new(
                SqlState::UNDEFINED_FUNCTION,
                format!("function {} takes one {}", self.name, self.of),
            )));
        };
        expect_type(self.name, source, self.of)?;
        // Durations are unknown for some streams.
        let nullable = source.is_nullable() || self.field == "duration";
        Ok(Arc::new(Field::new(
            self.name,
            self.returns.clone(),
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [arg] = args.args.as_slice() else {
            return Err(DataFusionError::Internal("one argument expected".into()));
        };
        let values = arg.to_array(rows)?;
        if values.data_type() == &DataType::Null {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_null_array(&self.returns, rows),
            ));
        }
        let parts = values.as_struct_opt().ok_or_else(|| {
            DataFusionError::Internal(format!("{} stored as {}", self.of, values.data_type()))
        })?;
        let field = parts.column_by_name(self.field).ok_or_else(|| {
            DataFusionError::Internal(format!("{} without its {} field", self.of, self.field))
        })?;
        let converted = cast(field, &self.returns)?;
        Ok(ColumnarValue::Array(with_nulls_of(
            &converted,
            values.logical_nulls().as_ref(),
        )))
    }
}

/// `values` with the rows that are NULL in `outer` NULL too (a NULL struct's
/// fields hold placeholders).
fn with_nulls_of(values: &ArrayRef, outer: Option<&NullBuffer>) -> ArrayRef {
    let Some(outer) = outer else {
        return Arc::clone(values);
    };
    let nulls = NullBuffer::union(Some(outer), values.logical_nulls().as_ref());
    let data = values.to_data().into_builder().nulls(nulls);
    match data.build() {
        Ok(data) => make_array(data),
        Err(_) => Arc::clone(values),
    }
}

/// Every property function.
pub fn all() -> Vec<ScalarUDF> {
    [
        MediaProperty::new("image_width", SluiceType::Image, "width", DataType::Int32),
        MediaProperty::new("image_height", SluiceType::Image, "height", DataType::Int32),
        MediaProperty::new("image_format", SluiceType::Image, "format", DataType::Utf8),
        MediaProperty::new(
            "audio_sample_rate",
            SluiceType::Audio,
            "sample_rate",
            DataType::Int32,
        ),
        MediaProperty::new(
            "audio_channels",
            SluiceType::Audio,
            "channels",
            DataType::Int32,
        ),
        MediaProperty::new(
            "audio_duration",
            SluiceType::Audio,
            "duration",
            DataType::Float64,
        ),
        MediaProperty::new("audio_format", SluiceType::Audio, "format", DataType::Utf8),
    ]
    .into_iter()
    .map(ScalarUDF::new_from_impl)
    .collect()
}
