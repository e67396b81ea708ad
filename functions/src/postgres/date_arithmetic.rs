//! `date ± interval` is a `timestamp`, as in Postgres:
//! `DATE '2024-01-02' + INTERVAL '3 hours'` is `2024-01-02 03:00:00`.
//! DataFusion keeps the date type and drops the time of day
//! (`2024-01-02`): a wrong answer, not an error. An expression planner
//! casts the date to `timestamp` before DataFusion plans the arithmetic,
//! which then adds the interval to a timestamp as Postgres does (months
//! first, then days, then time).
//!
//! `date ± integer` (days) stays a date, as in both.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Cast, Expr, ExprSchemable};
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct DateIntervalPlanner;

impl ExprPlanner for DateIntervalPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        if !matches!(expr.op, BinaryOperator::Plus | BinaryOperator::Minus) {
            return Ok(PlannerResult::Original(expr));
        }
        let RawBinaryExpr { op, left, right } = expr;
        let kind = |e: &Expr| e.get_type(schema).ok();
        // The left side is typed only when the right one is an interval or
        // a date, so other arithmetic pays for one side's type.
        let (left, right) = match kind(&right) {
            Some(DataType::Interval(_)) if kind(&left).is_some_and(|l| is_date(&l)) => {
                (timestamp(left), right)
            }
            // `interval - date` has no meaning in Postgres; DataFusion's
            // error for it stays.
            Some(r)
                if is_date(&r)
                    && op == BinaryOperator::Plus
                    && matches!(kind(&left), Some(DataType::Interval(_))) =>
            {
                (left, timestamp(right))
            }
            _ => (left, right),
        };
        Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }))
    }
}

fn is_date(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Date32 | DataType::Date64)
}

/// `date` as `timestamp` (without time zone), in the unit SQL's
/// `TIMESTAMP` has.
fn timestamp(date: Expr) -> Expr {
    Expr::Cast(Cast::new(
        Box::new(date),
        DataType::Timestamp(TimeUnit::Nanosecond, None),
    ))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, IntervalUnit, Schema};
    use datafusion::logical_expr::col;

    use super::*;

    fn planned(op: BinaryOperator, left: &str, right: &str) -> (Expr, Expr) {
        let schema = DFSchema::try_from(Schema::new(vec![
            Field::new("d", DataType::Date32, true),
            Field::new("i", DataType::Interval(IntervalUnit::MonthDayNano), true),
            Field::new("n", DataType::Int64, true),
        ]))
        .unwrap();
        let raw = RawBinaryExpr {
            op,
            left: col(left),
            right: col(right),
        };
        match DateIntervalPlanner.plan_binary_op(raw, &schema).unwrap() {
            PlannerResult::Original(raw) => (raw.left, raw.right),
            PlannerResult::Planned(_) => panic!("the arithmetic is DataFusion's to plan"),
        }
    }

    #[test]
    fn a_date_with_an_interval_becomes_a_timestamp() {
        assert_eq!(
            planned(BinaryOperator::Plus, "d", "i"),
            (timestamp(col("d")), col("i"))
        );
        assert_eq!(
            planned(BinaryOperator::Minus, "d", "i"),
            (timestamp(col("d")), col("i"))
        );
        assert_eq!(
            planned(BinaryOperator::Plus, "i", "d"),
            (col("i"), timestamp(col("d")))
        );
        // Days stay a date; interval - date is left to DataFusion.
        assert_eq!(
            planned(BinaryOperator::Plus, "d", "n"),
            (col("d"), col("n"))
        );
        assert_eq!(
            planned(BinaryOperator::Minus, "i", "d"),
            (col("i"), col("d"))
        );
    }
}
