//! `lpad`, `rpad` and `repeat` with Postgres' bound on the text they make:
//! a result over 1 GB is refused with 54000 ("requested length too
//! large"). DataFusion's own allocate whatever length they are given, and
//! `rpad(x, 9223372036854775807)` panicked with a capacity overflow
//! (fuzzing found it). Each wraps DataFusion's function and checks its
//! length argument (for `repeat`, the count times the text's length) before
//! calling it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::length::length as byte_length;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};
use sluice_types::error::{SluiceError, SqlState};

use super::guarded::{ArgumentGuard, Guarded};

/// The most bytes one text value may hold, as in Postgres.
pub const MAX_TEXT_BYTES: i64 = (1 << 30) - 1;

/// Which argument sizes the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Sizing {
    /// `lpad(text, length [, fill])`: the length, in characters (at most
    /// four bytes each).
    PadLength,
    /// `repeat(text, count)`: the count times the text's bytes.
    RepeatCount,
}

/// `lpad`, `rpad` and `repeat`, each with a [`LengthGuard`] in front.
pub fn bounded_functions() -> Vec<ScalarUDF> {
    use datafusion::functions::{string, unicode};
    [
        (unicode::lpad(), Sizing::PadLength),
        (unicode::rpad(), Sizing::PadLength),
        (string::repeat(), Sizing::RepeatCount),
    ]
    .into_iter()
    .map(|(inner, sizing)| Guarded::udf(&inner, Arc::new(LengthGuard(sizing))))
    .collect()
}

/// Checks a text function's result length before it runs.
#[derive(Debug)]
struct LengthGuard(Sizing);

impl ArgumentGuard for LengthGuard {
    fn name(&self) -> &'static str {
        match self.0 {
            Sizing::PadLength => "pad length",
            Sizing::RepeatCount => "repeat count",
        }
    }

    fn guard(&self, function: &str, mut args: ScalarFunctionArgs) -> Result<ScalarFunctionArgs> {
        self.check(function, &args)?;
        if let Some(length) = args.args.get_mut(1) {
            *length = at_least_zero(length)?;
        }
        Ok(args)
    }
}

impl LengthGuard {
    fn check(&self, function: &str, args: &ScalarFunctionArgs) -> Result<()> {
        // Constant arguments (the usual case) are checked once, not per row.
        let all_constant = args
            .args
            .iter()
            .take(2)
            .all(|arg| matches!(arg, ColumnarValue::Scalar(_)));
        let rows = if all_constant { 1 } else { args.number_rows };
        let Some(length) = args.args.get(1) else {
            return Ok(());
        };
        let lengths = as_int64(&length.to_array(rows)?)?;
        let lengths = lengths.as_primitive::<Int64Type>();
        // Bytes per unit of the length argument, per row.
        let unit_bytes = match (self.0, args.args.first()) {
            (Sizing::RepeatCount, Some(text)) => {
                Some(as_int64(&byte_length(&text.to_array(rows)?)?)?)
            }
            _ => None,
        };
        // The whole batch's text is allocated at once: the rows' sizes are
        // bounded together, as one value is.
        let mut batch_bytes: i128 = 0;
        for row in 0..lengths.len() {
            if lengths.is_null(row) {
                continue;
            }
            let unit = match &unit_bytes {
                None => 4,
                Some(bytes) if bytes.is_null(row) => 0,
                Some(bytes) => bytes.as_primitive::<Int64Type>().value(row),
            };
            let n = lengths.value(row);
            let bytes = i128::from(n.max(0)) * i128::from(unit);
            // Padding allocates a byte per character up front (more only
            // when the fill is wider).
            batch_bytes += match self.0 {
                Sizing::PadLength => i128::from(n.max(0)),
                Sizing::RepeatCount => bytes,
            };
            if bytes > i128::from(MAX_TEXT_BYTES) {
                return Err(SluiceError::new(
                    SqlState::PROGRAM_LIMIT_EXCEEDED,
                    format!("requested length too large: {function}(…, {n}) over 1 GB"),
                )
                .into());
            }
        }
        let batch_bytes = if all_constant {
            batch_bytes * args.number_rows as i128
        } else {
            batch_bytes
        };
        if batch_bytes > i128::from(MAX_TEXT_BYTES) {
            return Err(SluiceError::new(
                SqlState::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "{function}: the results of one batch of {} rows would take up to \
                     {batch_bytes} bytes, over 1 GB; lower datafusion.execution.batch_size",
                    args.number_rows
                ),
            )
            .into());
        }
        Ok(())
    }
}

/// A length or count below zero as zero, which is what Postgres makes of
/// it (an empty result): DataFusion's padding sizes its buffer by the sum
/// of the lengths taken as unsigned, and `rpad(x, -5, y)` over a column
/// panicked with a capacity overflow (fuzzing, seed 10).
fn at_least_zero(length: &ColumnarValue) -> Result<ColumnarValue> {
    Ok(match length {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(n))) if *n < 0 => {
            ColumnarValue::Scalar(ScalarValue::Int64(Some(0)))
        }
        ColumnarValue::Array(array) if array.data_type() == &DataType::Int64 => {
            let lengths = array.as_primitive::<Int64Type>();
            if lengths.values().iter().any(|n| *n < 0) {
                let clamped: Int64Array = lengths.unary(|n| n.max(0));
                ColumnarValue::Array(Arc::new(clamped))
            } else {
                length.clone()
            }
        }
        other => other.clone(),
    })
}

fn as_int64(array: &ArrayRef) -> Result<ArrayRef> {
    cast(array, &DataType::Int64).map_err(DataFusionError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn run(sql: &str) -> Result<()> {
        let ctx = SessionContext::new();
        for udf in bounded_functions() {
            ctx.register_udf(udf);
        }
        ctx.sql(sql).await?.collect().await.map(|_| ())
    }

    #[tokio::test]
    async fn negative_lengths_pad_to_nothing() {
        let sql = "SELECT rpad('40', n::bigint - 3, 'ab'), lpad('x', n::bigint - 3), \
                   repeat('x', n::bigint - 3) FROM generate_series(1, 4) t(n)";
        assert!(run(sql).await.is_ok(), "{sql}");
    }

    #[tokio::test]
    async fn lengths_over_a_gigabyte_are_refused() {
        assert!(
            run("SELECT rpad('a', 5, 'x'), lpad('a', 3), repeat('ab', 3)")
                .await
                .is_ok()
        );
        for sql in [
            "SELECT rpad('-40', 9223372036854775807, 'x')",
            "SELECT lpad('a', 300000000)",
            "SELECT repeat('abcd', 300000000)",
            "SELECT rpad('a', 600000 + n::int, 'x') FROM generate_series(1, 2000) t(n)",
        ] {
            let err = run(sql).await.expect_err(sql).to_string();
            assert!(
                err.contains("requested length too large") || err.contains("over 1 GB"),
                "{sql}: {err}"
            );
        }
    }
}
