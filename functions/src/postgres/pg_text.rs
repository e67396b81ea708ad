//! The text a timestamp, time, interval or array becomes in a cast to
//! text (`ts::text`, `CAST(t AS TEXT)`, `'at ' || ts`): Postgres' own form
//! (`2024-01-02 03:04:05`, `12:00:00.5`, `1 day 02:00:00`, `{b,a}`), not
//! arrow's (`2024-01-02T03:04:05`, `1 days 2 hours`, `[b, a]`).
//! The engine's planner puts this function where such a cast was; it is
//! not meant to be called by name.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::functions::utils::make_scalar_function;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use sluice_types::array_text::ArrayText;
use sluice_types::interval_text::IntervalText;
use sluice_types::timestamp_text::TimestampText;

/// The function's name.
pub const PG_TEXT: &str = "__sluice_pg_text";

/// `__sluice_pg_text(timestamp | time | interval | array) → text`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgTextFunc {
    signature: Signature,
}

impl Default for PgTextFunc {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl PgTextFunc {
    /// Whether a cast of `data_type` to text is this function's to write.
    pub fn writes(data_type: &DataType) -> bool {
        Writer::of(data_type).is_some()
    }
}

/// How a column of one of the function's types is written.
enum Writer {
    Datetime(TimestampText),
    Interval(IntervalText),
    Array(ArrayText),
}

impl Writer {
    fn of(data_type: &DataType) -> Option<Self> {
        match data_type {
            DataType::Timestamp(..) | DataType::Time32(_) | DataType::Time64(_) => {
                TimestampText::of(data_type).map(Self::Datetime)
            }
            DataType::List(_) | DataType::LargeList(_) => ArrayText::of(data_type).map(Self::Array),
            _ => IntervalText::of(data_type).map(Self::Interval),
        }
    }

    fn format(&self, array: &dyn Array, row: usize) -> Option<String> {
        match self {
            Self::Datetime(text) => text.format(array, row),
            Self::Interval(text) => text.format(array, row),
            Self::Array(text) => text.format(array, row),
        }
    }
}

impl ScalarUDFImpl for PgTextFunc {
    fn name(&self) -> &str {
        PG_TEXT
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        // As nullable as the cast it stands for, so no schema above changes.
        let nullable = args.arg_fields.first().is_none_or(|f| f.is_nullable());
        Ok(Arc::new(Field::new(self.name(), DataType::Utf8, nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        make_scalar_function(write_texts, vec![])(&args.args)
    }
}

/// Each value's Postgres text.
fn write_texts(args: &[ArrayRef]) -> Result<ArrayRef> {
    let [array] = args else {
        return Err(DataFusionError::Plan(format!(
            "{PG_TEXT} takes one argument"
        )));
    };
    let text = Writer::of(array.data_type()).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "{PG_TEXT} writes timestamps, times, intervals and arrays, not {}",
            array.data_type()
        ))
    })?;
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 26);
    for row in 0..array.len() {
        out.append_option(text.format(array.as_ref(), row));
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::TimeUnit;
    use datafusion::config::ConfigOptions;

    use super::*;

    #[test]
    fn writes_postgres_text() {
        let array = TimestampMicrosecondArray::from(vec![Some(1_704_164_645_500_000), None]);
        let field = Arc::new(Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ));
        let result = PgTextFunc::default()
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(Arc::new(array))],
                arg_fields: vec![field],
                number_rows: 2,
                return_field: Arc::new(Field::new("r", DataType::Utf8, true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .expect("text");
        let ColumnarValue::Array(out) = result else {
            panic!("an array");
        };
        let out = out.as_string::<i32>();
        assert_eq!(out.value(0), "2024-01-02 03:04:05.5");
        assert!(out.is_null(1));
        assert!(PgTextFunc::writes(&DataType::Time64(TimeUnit::Microsecond)));
        assert!(!PgTextFunc::writes(&DataType::Date32));
    }
}
