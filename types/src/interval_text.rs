//! Postgres' text form of `interval` (IntervalStyle postgres): `1 year 2
//! mons 3 days 04:05:06.5`, units singular only for 1, a `+` on a part
//! that follows a negative one (`-1 days +02:00:00`), the time shown when it
//! is not zero or nothing else is, its fraction's trailing zeros trimmed.
//! A duration (what `timestamp − timestamp` gives in Arrow) is written as
//! Postgres writes that difference: whole days of 24 hours, then the time.
//!
//! pgwire's encoder writes every fraction to six digits and a duration
//! as hours only (`27:04:05` for `1 day 03:04:05`).

use std::fmt::Write;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType,
    DurationSecondType, IntervalDayTimeType, IntervalMonthDayNanoType, IntervalUnit,
    IntervalYearMonthType, TimeUnit,
};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// How one interval or duration column is written.
#[derive(Debug, Clone, Copy)]
pub struct IntervalText;

impl IntervalText {
    /// The writer for a column of `data_type`; `None` if it is neither an
    /// interval nor a duration.
    pub fn of(data_type: &DataType) -> Option<Self> {
        matches!(data_type, DataType::Interval(_) | DataType::Duration(_)).then_some(Self)
    }

    /// Row `row` of `array` as Postgres writes it; `None` when NULL.
    pub fn format(&self, array: &dyn Array, row: usize) -> Option<String> {
        if array.is_null(row) {
            return None;
        }
        let (months, days, micros) = match array.data_type() {
            DataType::Interval(IntervalUnit::YearMonth) => (
                array
                    .as_primitive_opt::<IntervalYearMonthType>()?
                    .value(row),
                0,
                0,
            ),
            DataType::Interval(IntervalUnit::DayTime) => {
                let value = array.as_primitive_opt::<IntervalDayTimeType>()?.value(row);
                (0, value.days, i64::from(value.milliseconds) * 1_000)
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                let value = array
                    .as_primitive_opt::<IntervalMonthDayNanoType>()?
                    .value(row);
                (value.months, value.days, value.nanoseconds / 1_000)
            }
            DataType::Duration(unit) => {
                let micros = match unit {
                    TimeUnit::Second => array
                        .as_primitive_opt::<DurationSecondType>()?
                        .value(row)
                        .checked_mul(1_000_000)?,
                    TimeUnit::Millisecond => array
                        .as_primitive_opt::<DurationMillisecondType>()?
                        .value(row)
                        .checked_mul(1_000)?,
                    TimeUnit::Microsecond => array
                        .as_primitive_opt::<DurationMicrosecondType>()?
                        .value(row),
                    TimeUnit::Nanosecond => {
                        array
                            .as_primitive_opt::<DurationNanosecondType>()?
                            .value(row)
                            / 1_000
                    }
                };
                // Postgres justifies a difference of timestamps into days.
                let days = i32::try_from(micros / MICROS_PER_DAY).ok()?;
                (0, days, micros % MICROS_PER_DAY)
            }
            _ => return None,
        };
        Some(format_interval(months, days, micros))
    }
}

/// An interval of `months`, `days` and `micros` as Postgres writes it.
pub fn format_interval(months: i32, days: i32, micros: i64) -> String {
    let mut text = String::with_capacity(32);
    // Whether nothing was written yet, and whether the last part was
    // negative (the next positive one then shows its `+`).
    let (mut is_zero, mut is_before) = (true, false);
    let mut part = |text: &mut String, value: i64, unit: &str| {
        if value == 0 {
            return;
        }
        let _ = write!(
            text,
            "{}{}{value} {unit}{}",
            if is_zero { "" } else { " " },
            if is_before && value > 0 { "+" } else { "" },
            if value != 1 { "s" } else { "" }
        );
        is_before = value < 0;
        is_zero = false;
    };
    part(&mut text, i64::from(months / 12), "year");
    part(&mut text, i64::from(months % 12), "mon");
    part(&mut text, i64::from(days), "day");
    if is_zero || micros != 0 {
        let sign = if micros < 0 {
            "-"
        } else if is_before {
            "+"
        } else {
            ""
        };
        let magnitude = micros.unsigned_abs();
        let (hours, minutes, seconds, fraction) = (
            magnitude / 3_600_000_000,
            magnitude / 60_000_000 % 60,
            magnitude / 1_000_000 % 60,
            magnitude % 1_000_000,
        );
        let _ = write!(
            text,
            "{}{sign}{hours:02}:{minutes:02}:{seconds:02}",
            if is_zero { "" } else { " " }
        );
        if fraction > 0 {
            let digits = format!("{fraction:06}");
            text.push('.');
            text.push_str(digits.trim_end_matches('0'));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::DurationMicrosecondArray;

    use super::*;

    #[test]
    fn parts_as_postgres_writes_them() {
        assert_eq!(format_interval(0, 1, 2 * 3_600_000_000), "1 day 02:00:00");
        assert_eq!(format_interval(3, 4, 1_500_000), "3 mons 4 days 00:00:01.5");
        assert_eq!(format_interval(14, 0, 0), "1 year 2 mons");
        assert_eq!(format_interval(0, 0, 0), "00:00:00");
        assert_eq!(
            format_interval(0, -1, 2 * 3_600_000_000),
            "-1 days +02:00:00"
        );
        assert_eq!(format_interval(0, 2, -1), "2 days -00:00:00.000001");
        assert_eq!(format_interval(-13, 0, 0), "-1 years -1 mons");
        assert_eq!(format_interval(0, 0, 100 * 3_600_000_000), "100:00:00");
    }

    #[test]
    fn a_difference_of_timestamps_is_whole_days_then_time() {
        let micros = (27 * 3_600 + 4 * 60 + 5) * 1_000_000;
        let array = DurationMicrosecondArray::from(vec![Some(micros), Some(-micros), None]);
        let text = IntervalText::of(array.data_type()).expect("a duration");
        assert_eq!(text.format(&array, 0).as_deref(), Some("1 day 03:04:05"));
        assert_eq!(text.format(&array, 1).as_deref(), Some("-1 days -03:04:05"));
        assert_eq!(text.format(&array, 2), None);
    }
}
