//! `audio_to_tensor(audio[, rate[, mono]])`: decoded PCM as a float32
//! tensor of shape `[channels, frames]` (`[1, frames]` when `mono`),
//! resampled to `rate` when given: what speech and audio models take.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, new_null_array};
use datafusion::arrow::datatypes::{DataType, FieldRef, Float32Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use sluice_types::SluiceType;
use sluice_types::media::{audio_ops, encoded_bytes};
use sluice_types::tensor::{TensorBuilder, TensorElement};

use super::arguments::{arrays, dimension, expect_count, expect_type, integers, media_error};

const NAME: &str = "audio_to_tensor";

/// See the module documentation.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AudioToTensor {
    signature: Signature,
}

impl ScalarUDFImpl for AudioToTensor {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(SluiceType::Tensor(TensorElement::Float32, None).storage_type())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        expect_count(
            NAME,
            args.arg_fields.len(),
            &[1, 2, 3],
            "(audio[, sample_rate[, mono]])",
        )?;
        expect_type(NAME, &args.arg_fields[0], SluiceType::Audio)?;
        if let Some(mono) = args.arg_fields.get(2)
            && !matches!(mono.data_type(), DataType::Boolean | DataType::Null)
        {
            return Err(DataFusionError::Plan(format!(
                "function {NAME}: mono must be a boolean"
            )));
        }
        Ok(Arc::new(
            SluiceType::Tensor(TensorElement::Float32, None).field(NAME, true),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = arrays(&args.args, rows)?;
        let clips = &arrays[0];
        if clips.data_type() == &DataType::Null {
            return Ok(ColumnarValue::Array(new_null_array(
                args.return_field.data_type(),
                rows,
            )));
        }
        let rates = match arrays.get(1) {
            Some(rates) => integers(NAME, "sample_rate", rates.as_ref())?,
            None => vec![None; rows],
        };
        let mono: Vec<bool> = match arrays.get(2) {
            Some(flags) if flags.data_type() == &DataType::Boolean => {
                let flags = flags.as_boolean();
                (0..rows)
                    .map(|i| flags.is_valid(i) && flags.value(i))
                    .collect()
            }
            _ => vec![false; rows],
        };
        let resample = arrays.len() > 1;
        let mut tensors = TensorBuilder::<Float32Type>::with_capacity(rows);
        for row in 0..rows {
            // A NULL rate given explicitly makes the row NULL, as in SQL.
            if clips.is_null(row) || (resample && rates[row].is_none()) {
                tensors.push_null();
                continue;
            }
            let rate = rates[row]
                .map(|r| dimension(NAME, "sample_rate", r))
                .transpose()?;
            let pcm = audio_ops::to_tensor(encoded_bytes(clips.as_ref(), row)?, rate, mono[row])
                .map_err(media_error)?;
            tensors.push(&[usize::from(pcm.channels), pcm.frames], &pcm.samples)?;
        }
        let array = tensors.finish(TensorElement::Float32, None)?;
        Ok(ColumnarValue::Array(array))
    }
}

/// The audio functions beyond the header properties.
pub fn all() -> Vec<ScalarUDF> {
    vec![ScalarUDF::new_from_impl(AudioToTensor {
        signature: Signature::variadic_any(Volatility::Immutable),
    })]
}
