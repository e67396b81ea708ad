//! The functions casts to and from Sluice types are planned into: Arrow's
//! cast kernel knows storage types only (it cannot parse text into a UUID's
//! 16 bytes, nor validate JSON), so `'…'::uuid` becomes `uuid_in('…')` and
//! `u::text` becomes `uuid_out(u)` (planned by the `resolve` analyzer rule). The names follow
//! Postgres's type input/output functions.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::error::{SluiceError, SqlState};
use crate::extension::SluiceType;
use crate::text::{format_array, parse_array};

/// `<type>_in(text) → <type>`: parses text into a Sluice type.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TextInput {
    ty: SluiceType,
    name: String,
    signature: Signature,
}

impl TextInput {
    /// The input function of `ty`.
    pub fn new(ty: SluiceType) -> Self {
        Self {
            ty,
            name: format!("{}_in", ty.sql_name()),
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for TextInput {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.ty.storage_type())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let nullable = args.arg_fields.first().is_none_or(|f| f.is_nullable());
        Ok(Arc::new(self.ty.field(self.name(), nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_single_argument(args, |array| parse_array(self.ty, array))
    }
}

/// `<type>_out(<type>) → text`: renders a Sluice type as text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TextOutput {
    ty: SluiceType,
    name: String,
    signature: Signature,
}

impl TextOutput {
    /// The output function of `ty`.
    pub fn new(ty: SluiceType) -> Self {
        Self {
            ty,
            name: format!("{}_out", ty.sql_name()),
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for TextOutput {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_single_argument(args, |array| format_array(self.ty, array))
    }
}

/// `to_<type>(value) → <type>`: makes a Sluice type from a value that is not
/// text: encoded bytes become an `IMAGE` or `AUDIO` (their header read and
/// checked), nested arrays or another tensor become a `TENSOR`. Casts and
/// INSERTs are planned into it (by the `resolve` analyzer rule); `image(bytea)` and
/// `audio(bytea)` are its public names.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ValueInput {
    ty: SluiceType,
    name: String,
    signature: Signature,
    /// Unreadable media become NULL instead of an error (`TRY_CAST`).
    lenient: bool,
}

impl ValueInput {
    /// The conversion into `ty`, callable as `name`.
    pub fn new(ty: SluiceType, name: &str) -> Self {
        Self {
            ty,
            name: name.to_owned(),
            signature: Signature::any(1, Volatility::Immutable),
            lenient: false,
        }
    }

    /// The lenient form: media whose header cannot be read become NULL.
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }
}

impl ScalarUDFImpl for ValueInput {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.ty.storage_type())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let source = args.arg_fields.first();
        if let Some(source) = source {
            check_value_source(self.ty, source)?;
        }
        let nullable = source.is_none_or(|f| f.is_nullable());
        Ok(Arc::new(self.ty.field(self.name(), nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let source = args
            .arg_fields
            .first()
            .and_then(|f| SluiceType::of_field(f));
        map_single_argument(args, |array| {
            convert_value(self.ty, source, array, self.lenient)
        })
    }
}

/// Whether [`ValueInput`] makes `ty` from a value of `source`: bytes (or
/// NULL) into media, nested arrays, vectors and other tensors into tensors.
/// Casts, INSERTs and the function itself all decide by this one rule.
pub fn can_make_from(ty: SluiceType, source: &Field) -> bool {
    let from = SluiceType::of_field(source);
    let data_type = source.data_type();
    match ty {
        SluiceType::Image | SluiceType::Audio => {
            from.is_none() && (is_binary(data_type) || data_type == &DataType::Null)
        }
        SluiceType::Tensor(..) => match from {
            Some(from) => matches!(from, SluiceType::Tensor(..) | SluiceType::Vector(_)),
            None => matches!(
                data_type,
                DataType::List(_)
                    | DataType::LargeList(_)
                    | DataType::FixedSizeList(..)
                    | DataType::Null
            ),
        },
        _ => false,
    }
}

/// Refuses, at planning, sources `ty` cannot be made from.
fn check_value_source(ty: SluiceType, source: &Field) -> Result<()> {
    if can_make_from(ty, source) {
        return Ok(());
    }
    let shown = SluiceType::of_field(source)
        .map_or_else(|| source.data_type().to_string(), |t| t.type_name());
    Err(DataFusionError::from(SluiceError::new(
        SqlState::CANNOT_COERCE,
        format!("cannot cast type {shown} to {}", ty.type_name()),
    )))
}

fn is_binary(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

fn convert_value(
    ty: SluiceType,
    source: Option<SluiceType>,
    array: &dyn Array,
    lenient: bool,
) -> Result<ArrayRef> {
    match ty {
        SluiceType::Image | SluiceType::Audio => {
            let bytes: Vec<Option<&[u8]>> = match array.data_type() {
                DataType::Binary => array.as_binary::<i32>().iter().collect(),
                DataType::LargeBinary => array.as_binary::<i64>().iter().collect(),
                DataType::BinaryView => array.as_binary_view().iter().collect(),
                _ => vec![None; array.len()],
            };
            let bytes = if lenient {
                crate::media::readable_or_null(ty, bytes)
            } else {
                bytes
            };
            if ty == SluiceType::Image {
                crate::media::image_array(bytes.into_iter())
            } else {
                crate::media::audio_array(bytes.into_iter())
            }
        }
        SluiceType::Tensor(elem, shape) => {
            let source_shape = match source {
                Some(SluiceType::Tensor(_, shape)) => Some(shape),
                _ => None,
            };
            crate::tensor::convert_to_tensor(array, source_shape, elem, shape)
        }
        other => Err(DataFusionError::from(SluiceError::new(
            SqlState::CANNOT_COERCE,
            format!("cannot cast type {} to {other}", array.data_type()),
        ))),
    }
}

/// `expr` (bytes, nested arrays or another tensor) made into `ty`.
pub fn value_input(ty: SluiceType, expr: Expr) -> Expr {
    ScalarUDF::new_from_impl(ValueInput::new(ty, &format!("to_{}", ty.sql_name()))).call(vec![expr])
}

/// [`value_input`] for `TRY_CAST`: unreadable media become NULL.
pub fn lenient_value_input(ty: SluiceType, expr: Expr) -> Expr {
    ScalarUDF::new_from_impl(ValueInput::new(ty, &format!("try_to_{}", ty.sql_name())).lenient())
        .call(vec![expr])
}

/// Applies an array conversion to a one-argument call, keeping a constant
/// argument constant (so the planner can fold it).
fn map_single_argument(
    args: ScalarFunctionArgs,
    convert: impl Fn(&dyn datafusion::arrow::array::Array) -> Result<datafusion::arrow::array::ArrayRef>,
) -> Result<ColumnarValue> {
    let [arg] = <[ColumnarValue; 1]>::try_from(args.args).map_err(|args| {
        datafusion::error::DataFusionError::Plan(format!(
            "expected one argument, got {}",
            args.len()
        ))
    })?;
    match arg {
        ColumnarValue::Array(array) => Ok(ColumnarValue::Array(convert(array.as_ref())?)),
        ColumnarValue::Scalar(scalar) => {
            let converted = convert(scalar.to_array_of_size(1)?.as_ref())?;
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                converted.as_ref(),
                0,
            )?))
        }
    }
}

/// `expr` parsed from text into `ty`.
pub fn text_input(ty: SluiceType, expr: Expr) -> Expr {
    ScalarUDF::new_from_impl(TextInput::new(ty)).call(vec![expr])
}

/// `expr` (of type `ty`) rendered as text.
pub fn text_output(ty: SluiceType, expr: Expr) -> Expr {
    ScalarUDF::new_from_impl(TextOutput::new(ty)).call(vec![expr])
}

/// Every conversion function, for registration (so `uuid_in('…')` can also
/// be written directly).
pub fn all_functions() -> Vec<ScalarUDF> {
    SluiceType::SIMPLE
        .into_iter()
        .flat_map(|ty| {
            [
                ScalarUDF::new_from_impl(TextInput::new(ty)),
                ScalarUDF::new_from_impl(TextOutput::new(ty)),
            ]
        })
        .chain(
            [SluiceType::Image, SluiceType::Audio]
                .map(|ty| ScalarUDF::new_from_impl(ValueInput::new(ty, ty.sql_name()))),
        )
        .collect()
}

/// Converts a bound parameter value to the storage of `target` when the
/// value is text (drivers send UUIDs as text) or bytes (images, audio) and
/// `target` can only be a Sluice type's storage. Returns `None` when no
/// Sluice conversion applies.
pub fn convert_parameter(value: &ScalarValue, target: &DataType) -> Result<Option<ScalarValue>> {
    let Some(ty) = crate::extension::text_target_of_storage(target) else {
        return Ok(None);
    };
    if matches!(ty, SluiceType::Image | SluiceType::Audio) && is_binary(&value.data_type()) {
        let converted = convert_value(ty, None, value.to_array_of_size(1)?.as_ref(), false)?;
        return Ok(Some(ScalarValue::try_from_array(converted.as_ref(), 0)?));
    }
    if !matches!(
        value.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return Ok(None);
    }
    let parsed = parse_array(ty, value.to_array_of_size(1)?.as_ref())?;
    Ok(Some(ScalarValue::try_from_array(parsed.as_ref(), 0)?))
}
