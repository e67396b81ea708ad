//! Settings of one `ML_PREDICT` call, Flink's trailing configuration map:
//! `ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(c), MAP['batch_size', '16'])`.
//!
//! The SQL layer hands them to the scalar function as a trailing
//! `named_struct('batch_size', '16')` argument (a plain struct: no model
//! input is one). Only what can differ per call without changing the
//! shared model is accepted; everything else belongs to `CREATE MODEL`.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::{DataFusionError, Result};
use sluice_types::SluiceType;

/// The options a call may set.
pub const CALL_OPTIONS: &[&str] = &["batch_size"];

/// Per-call settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Rows per model run for this call's rows (the model's own when unset).
    pub batch_size: Option<usize>,
}

/// Whether the last argument of a call (of `fields`) holds its options.
pub fn has_options(fields: &[FieldRef]) -> bool {
    fields.last().is_some_and(|f| is_options(f))
}

fn is_options(field: &Field) -> bool {
    matches!(field.data_type(), DataType::Struct(_)) && SluiceType::of_field(field).is_none()
}

/// Checks the option names of an options argument at planning.
pub fn check_option_names(field: &Field) -> Result<()> {
    let DataType::Struct(fields) = field.data_type() else {
        return Ok(());
    };
    for option in fields {
        let name = option.name().to_ascii_lowercase();
        if !CALL_OPTIONS.contains(&name.as_str()) {
            return Err(DataFusionError::Plan(format!(
                "unknown ML_PREDICT option '{}' (known: {}; the model's own settings are set \
                 by CREATE MODEL … WITH (…))",
                option.name(),
                CALL_OPTIONS.join(", ")
            )));
        }
    }
    Ok(())
}

/// Reads the options from their argument column (a constant: row 0).
pub fn read_options(column: &ArrayRef) -> Result<CallOptions> {
    let mut options = CallOptions::default();
    let Some(parts) = column.as_struct_opt() else {
        return Ok(options);
    };
    if parts.is_empty() || parts.is_null(0) {
        return Ok(options);
    }
    for (field, values) in parts.fields().iter().zip(parts.columns()) {
        let text = cast(values, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let value = text.is_valid(0).then(|| text.value(0).trim().to_string());
        match field.name().to_ascii_lowercase().as_str() {
            "batch_size" => {
                let size = value
                    .as_deref()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "ML_PREDICT option 'batch_size' must be a positive integer, not {}",
                            value.as_deref().unwrap_or("NULL")
                        ))
                    })?;
                options.batch_size = Some(size);
            }
            other => {
                return Err(DataFusionError::Plan(format!(
                    "unknown ML_PREDICT option '{other}' (known: {})",
                    CALL_OPTIONS.join(", ")
                )));
            }
        }
    }
    Ok(options)
}
