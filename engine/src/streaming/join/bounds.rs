//! Finds how a join bounds its inputs' event times against each other
//! (`a.ts BETWEEN b.ts AND b.ts + INTERVAL '10' SECOND`, `a.ts >= b.ts - …
//! AND a.ts <= b.ts + …`): what makes a join an interval join whose kept
//! rows expire with the watermarks.

use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

/// Nanoseconds in a day, for intervals written in days.
const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// An interval join's bounds: `left time − right time` lies in
/// `[lower, upper]` nanoseconds for every pair of rows it joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    /// Each input's event-time column (its index in the input's rows).
    pub columns: [usize; 2],
    /// The least `left time − right time` of a joined pair.
    pub lower: i64,
    /// The greatest `left time − right time` of a joined pair.
    pub upper: i64,
}

/// The bounds a join condition puts on `inputs`' event-time columns
/// (`event_times`, by name), or `None` when it bounds them on one side
/// only or not at all (a regular join).
pub fn time_bounds(
    condition: &Expr,
    inputs: [&DFSchema; 2],
    event_times: [Option<&str>; 2],
) -> Option<TimeBounds> {
    let mut lower: Option<i64> = None;
    let mut upper: Option<i64> = None;
    let mut columns: [Option<usize>; 2] = [None, None];
    let mut bound = |a: &Expr, op: Operator, b: &Expr| {
        let (Some(a), Some(b)) = (
            TimeTerm::parse(a, inputs, event_times),
            TimeTerm::parse(b, inputs, event_times),
        ) else {
            return;
        };
        if a.input == b.input {
            return;
        }
        // a + a.offset  op  b + b.offset, as  left − right  op'  constant.
        let (constant, op) = if a.input == 0 {
            (b.offset.saturating_sub(a.offset), op)
        } else {
            match op.swap() {
                Some(swapped) => (a.offset.saturating_sub(b.offset), swapped),
                None => return,
            }
        };
        columns[a.input] = Some(a.column);
        columns[b.input] = Some(b.column);
        match op {
            Operator::Gt | Operator::GtEq => {
                lower = Some(lower.map_or(constant, |l| l.max(constant)))
            }
            Operator::Lt | Operator::LtEq => {
                upper = Some(upper.map_or(constant, |u| u.min(constant)))
            }
            Operator::Eq => {
                lower = Some(lower.map_or(constant, |l| l.max(constant)));
                upper = Some(upper.map_or(constant, |u| u.min(constant)));
            }
            _ => {}
        }
    };
    for conjunct in split_conjunction(condition) {
        match conjunct {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => bound(left, *op, right),
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                bound(expr, Operator::GtEq, low);
                bound(expr, Operator::LtEq, high);
            }
            _ => {}
        }
    }
    Some(TimeBounds {
        columns: [columns[0]?, columns[1]?],
        lower: lower?,
        upper: upper?,
    })
}

/// An input's event-time column plus a constant.
struct TimeTerm {
    input: usize,
    column: usize,
    offset: i64,
}

impl TimeTerm {
    fn parse(expr: &Expr, inputs: [&DFSchema; 2], event_times: [Option<&str>; 2]) -> Option<Self> {
        match expr {
            Expr::Column(column) => Self::column(column, inputs, event_times),
            Expr::Cast(cast) => Self::parse(&cast.expr, inputs, event_times),
            Expr::TryCast(cast) => Self::parse(&cast.expr, inputs, event_times),
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (term, interval, sign) = match (op, interval_nanos(left), interval_nanos(right))
                {
                    (Operator::Plus, Some(nanos), None) => (right, nanos, 1),
                    (Operator::Plus, None, Some(nanos)) => (left, nanos, 1),
                    (Operator::Minus, None, Some(nanos)) => (left, nanos, -1),
                    _ => return None,
                };
                let mut term = Self::parse(term, inputs, event_times)?;
                term.offset = term.offset.checked_add(sign * interval)?;
                Some(term)
            }
            _ => None,
        }
    }

    fn column(
        column: &Column,
        inputs: [&DFSchema; 2],
        event_times: [Option<&str>; 2],
    ) -> Option<Self> {
        let mut found = None;
        for (input, schema) in inputs.iter().enumerate() {
            if let Ok(index) = schema.index_of_column(column) {
                if found.is_some() {
                    // Named ambiguously: not a bound we can rely on.
                    return None;
                }
                found = Some((input, index));
            }
        }
        let (input, index) = found?;
        (event_times[input]? == column.name).then_some(Self {
            input,
            column: index,
            offset: 0,
        })
    }
}

/// A constant interval in nanoseconds (months have no fixed length).
fn interval_nanos(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => (v.days as i64)
            .checked_mul(NANOS_PER_DAY)?
            .checked_add(v.nanoseconds),
        ScalarValue::IntervalDayTime(Some(v)) => (v.days as i64)
            .checked_mul(NANOS_PER_DAY)?
            .checked_add((v.milliseconds as i64).checked_mul(1_000_000)?),
        ScalarValue::DurationSecond(Some(s)) => s.checked_mul(1_000_000_000),
        ScalarValue::DurationMillisecond(Some(ms)) => ms.checked_mul(1_000_000),
        ScalarValue::DurationMicrosecond(Some(us)) => us.checked_mul(1_000),
        ScalarValue::DurationNanosecond(Some(ns)) => Some(*ns),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::IntervalMonthDayNano;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::logical_expr::{col, lit};

    fn schema(qualifier: &str) -> DFSchema {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]);
        DFSchema::try_from_qualified_schema(qualifier, &schema).unwrap()
    }

    fn seconds(s: i64) -> Expr {
        lit(ScalarValue::IntervalMonthDayNano(Some(
            IntervalMonthDayNano::new(0, 0, s * 1_000_000_000),
        )))
    }

    fn bounds_of(condition: Expr) -> Option<TimeBounds> {
        let (a, b) = (schema("a"), schema("b"));
        time_bounds(&condition, [&a, &b], [Some("ts"), Some("ts")])
    }

    #[test]
    fn between_bounds_both_sides() {
        let condition = col("a.id")
            .eq(col("b.id"))
            .and(col("a.ts").between(col("b.ts"), col("b.ts") + seconds(10)));
        assert_eq!(
            bounds_of(condition),
            Some(TimeBounds {
                columns: [1, 1],
                lower: 0,
                upper: 10_000_000_000
            })
        );
    }

    #[test]
    fn comparisons_written_from_the_right_input_are_turned_around() {
        // b.ts >= a.ts - 5 s  and  b.ts < a.ts + 2 s  ⇔  a − b ∈ (−2 s, 5 s]
        let condition = col("b.ts")
            .gt_eq(col("a.ts") - seconds(5))
            .and(col("b.ts").lt(col("a.ts") + seconds(2)));
        let bounds = bounds_of(condition).unwrap();
        assert_eq!(
            (bounds.lower, bounds.upper),
            (-2_000_000_000, 5_000_000_000)
        );
    }

    #[test]
    fn a_one_sided_or_missing_bound_is_a_regular_join() {
        assert_eq!(bounds_of(col("a.id").eq(col("b.id"))), None);
        assert_eq!(bounds_of(col("a.ts").gt_eq(col("b.ts"))), None);
        // Not the event-time column.
        assert_eq!(
            bounds_of(col("a.id").between(col("b.id"), col("b.id") + lit(3))),
            None
        );
    }
}
