//! A bound on the regular expressions one batch compiles.
//!
//! Arrow's and DataFusion's regex kernels compile every distinct pattern of
//! a batch (and keep them all until the batch is done), so a pattern column
//! costs memory in proportion to its distinct text, over a hundred times
//! over: `x ~ rpad('-33', n, '…')` across 10,000 rows compiled 50 MB of
//! patterns into 6.7 GB, for 19 s that no `statement_timeout` could
//! interrupt, and aborted the fuzzed server (seed 10). Postgres keeps 32
//! compiled patterns; Sluice instead refuses, with 54000, a batch whose
//! distinct patterns total more than [`MAX_PATTERN_BYTES_PER_BATCH`].
//!
//! The regex functions (`regexp_like`, `regexp_match`, …) are guarded
//! ([`PatternGuard`]); the operators `~`, `~*`, `!~` and `!~*` are planned as
//! the wrapped `regexp_like` ([`RegexOperatorPlanner`]), the same function
//! with the same flags, so both spellings share the bound.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, lit};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use sluice_types::error::{SluiceError, SqlState};

use super::guarded::{ArgumentGuard, Guarded};

/// The most bytes of distinct patterns one batch may compile: generous for
/// a table of rules, a small fraction of any memory limit once compiled.
pub const MAX_PATTERN_BYTES_PER_BATCH: usize = 1 << 20;

/// The argument holding the pattern, in every regex function.
const PATTERN_ARGUMENT: usize = 1;

/// `regexp_like`, `regexp_match`, `regexp_replace`, `regexp_count` and
/// `regexp_instr`, each with a [`PatternGuard`] in front.
pub fn bounded_functions() -> Vec<ScalarUDF> {
    use datafusion::functions::regex;
    [
        regex::regexp_like(),
        regex::regexp_match(),
        regex::regexp_replace(),
        regex::regexp_count(),
        regex::regexp_instr(),
    ]
    .into_iter()
    .map(|inner| Guarded::udf(&inner, Arc::new(PatternGuard)))
    .collect()
}

/// Measures a regex function's patterns before it compiles them.
#[derive(Debug)]
struct PatternGuard;

impl ArgumentGuard for PatternGuard {
    fn name(&self) -> &'static str {
        "regex patterns"
    }

    fn guard(&self, function: &str, args: ScalarFunctionArgs) -> Result<ScalarFunctionArgs> {
        if let Some(patterns) = args.args.get(PATTERN_ARGUMENT) {
            check_pattern_bytes(function, patterns)?;
        }
        Ok(args)
    }
}

/// Fails when `patterns`' distinct values total more than the bound.
fn check_pattern_bytes(function: &str, patterns: &ColumnarValue) -> Result<()> {
    let total = match patterns {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(text))
            | ScalarValue::LargeUtf8(Some(text))
            | ScalarValue::Utf8View(Some(text)),
        ) => text.len(),
        ColumnarValue::Scalar(_) => 0,
        ColumnarValue::Array(array) => distinct_text_bytes(array.as_ref()),
    };
    if total > MAX_PATTERN_BYTES_PER_BATCH {
        return Err(SluiceError::new(
            SqlState::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "{function}: the regular expressions of one batch total {total} bytes, more \
                 than the {MAX_PATTERN_BYTES_PER_BATCH} Sluice compiles at once"
            ),
        )
        .into());
    }
    Ok(())
}

/// The bytes of `array`'s distinct non-null text values; a repeated
/// pattern is compiled once, so it counts once. Stops counting past the
/// bound.
fn distinct_text_bytes(array: &dyn Array) -> usize {
    match array.data_type() {
        DataType::Utf8 => distinct_bytes(array.as_string::<i32>().iter()),
        DataType::LargeUtf8 => distinct_bytes(array.as_string::<i64>().iter()),
        DataType::Utf8View => distinct_bytes(array.as_string_view().iter()),
        _ => 0,
    }
}

/// The bytes of `values`' distinct non-null strings, borrowed from their
/// array (nothing copied per row).
fn distinct_bytes<'a>(values: impl Iterator<Item = Option<&'a str>>) -> usize {
    let mut seen = HashSet::new();
    let mut total = 0usize;
    for text in values.flatten() {
        if total > MAX_PATTERN_BYTES_PER_BATCH {
            break;
        }
        if seen.insert(text) {
            total += text.len();
        }
    }
    total
}

/// Plans Postgres' regex operators as the bounded `regexp_like`.
#[derive(Debug)]
pub struct RegexOperatorPlanner {
    regexp_like: Arc<ScalarUDF>,
}

impl RegexOperatorPlanner {
    /// A planner calling `regexp_like` (the bounded one Sluice registers).
    pub fn new(regexp_like: Arc<ScalarUDF>) -> Self {
        Self { regexp_like }
    }
}

impl ExprPlanner for RegexOperatorPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        _schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let (case_insensitive, negated) = match &expr.op {
            BinaryOperator::PGRegexMatch => (false, false),
            BinaryOperator::PGRegexIMatch => (true, false),
            BinaryOperator::PGRegexNotMatch => (false, true),
            BinaryOperator::PGRegexNotIMatch => (true, true),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let mut args = vec![as_text(expr.left), as_text(expr.right)];
        if case_insensitive {
            args.push(lit("i"));
        }
        let matches = self.regexp_like.call(args);
        Ok(PlannerResult::Planned(if negated {
            Expr::Not(Box::new(matches))
        } else {
            matches
        }))
    }
}

/// A parameter in a regex operator is text, as Postgres infers it (a
/// function argument alone would leave it untyped).
fn as_text(expr: Expr) -> Expr {
    match expr {
        Expr::Placeholder(_) => Expr::Cast(Cast::new(Box::new(expr), DataType::Utf8)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::FunctionRegistry;
    use datafusion::prelude::SessionContext;

    fn context() -> Result<SessionContext> {
        let ctx = SessionContext::new();
        let mut bounded_like = None;
        for udf in bounded_functions() {
            if udf.name() == "regexp_like" {
                bounded_like = Some(Arc::new(udf.clone()));
            }
            ctx.register_udf(udf);
        }
        if let Some(like) = bounded_like {
            ctx.state_ref()
                .write()
                .register_expr_planner(Arc::new(RegexOperatorPlanner::new(like)))?;
        }
        Ok(ctx)
    }

    async fn run(sql: &str) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
        context()?.sql(sql).await?.collect().await
    }

    #[tokio::test]
    async fn operators_answer_as_before() -> Result<()> {
        let batches =
            run("SELECT 'abc' ~ 'b', 'abc' ~* 'B', 'abc' !~ 'b', 'abc' !~* 'B', 'abc' ~ NULL")
                .await?;
        let row: Vec<Option<bool>> = batches[0]
            .columns()
            .iter()
            .map(|column| {
                let column = column.as_boolean();
                column.is_valid(0).then(|| column.value(0))
            })
            .collect();
        assert_eq!(
            row,
            [Some(true), Some(true), Some(false), Some(false), None]
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_batch_of_large_distinct_patterns_is_refused() -> Result<()> {
        // 2,000 distinct patterns of 1,000 bytes: 2 MB to compile.
        let sql = "SELECT count(*) FROM generate_series(1, 2000) t(n) \
                   WHERE 'x' ~ (n::text || repeat('a', 1000))";
        let err = run(sql).await.expect_err(sql).to_string();
        assert!(
            err.contains("the regular expressions of one batch total"),
            "{err}"
        );
        // The same bytes as one repeated pattern compile once and pass.
        run("SELECT count(*) FROM generate_series(1, 2000) t(n) \
             WHERE regexp_like('x', repeat('a', 1000) || (n % 2)::text)")
        .await?;
        Ok(())
    }
}
