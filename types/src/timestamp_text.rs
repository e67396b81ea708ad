//! Postgres' text form of `timestamp`, `timestamptz` and `time` (DateStyle
//! ISO): `2020-01-01 12:00:00`, a fraction only when the seconds have one,
//! its trailing zeros trimmed (`12:00:00.5`), a `timestamptz` with its UTC
//! offset in hours, and minutes only when it has them (`+00`, `+05:30`),
//! years before 1 as `… BC`; a `time` as `12:00:00` or `12:00:00.5`.
//!
//! pgwire's text encoder writes every fraction to six digits and every
//! offset in hours only (`12:00:00.000000+05` for `+05:30`), and psql
//! users, `.slt` expectations and drivers that parse text see the
//! difference.

use std::fmt::Write;

use chrono::{Datelike, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};

/// How one timestamp or time column is written: a timestamp in its own
/// time zone, if it has one.
#[derive(Debug, Clone, Copy)]
pub struct TimestampText {
    /// `None` for a time of day.
    zone: Option<Option<Tz>>,
}

impl TimestampText {
    /// The writer for a column of `data_type`; `None` if it is no
    /// timestamp or time, or its zone is one arrow cannot read.
    pub fn of(data_type: &DataType) -> Option<Self> {
        let zone = match data_type {
            DataType::Time32(_) | DataType::Time64(_) => return Some(Self { zone: None }),
            DataType::Timestamp(_, zone) => zone,
            _ => return None,
        };
        let zone = match zone {
            Some(zone) => Some(zone.parse::<Tz>().ok()?),
            None => None,
        };
        Some(Self { zone: Some(zone) })
    }

    /// Row `row` of `array` (a column of this writer's type) as Postgres
    /// writes it; `None` when it is NULL or out of chrono's range.
    pub fn format(&self, array: &dyn Array, row: usize) -> Option<String> {
        if array.is_null(row) {
            return None;
        }
        let Some(zone) = &self.zone else {
            return time_of(array, row).map(format_time);
        };
        let utc_or_local = match array.data_type() {
            DataType::Timestamp(TimeUnit::Second, _) => array
                .as_primitive_opt::<TimestampSecondType>()?
                .value_as_datetime(row),
            DataType::Timestamp(TimeUnit::Millisecond, _) => array
                .as_primitive_opt::<TimestampMillisecondType>()?
                .value_as_datetime(row),
            DataType::Timestamp(TimeUnit::Microsecond, _) => array
                .as_primitive_opt::<TimestampMicrosecondType>()?
                .value_as_datetime(row),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => array
                .as_primitive_opt::<TimestampNanosecondType>()?
                .value_as_datetime(row),
            _ => None,
        }?;
        Some(match zone {
            None => format_timestamp(utc_or_local, None),
            Some(zone) => {
                let offset = zone.offset_from_utc_datetime(&utc_or_local).fix();
                let local = utc_or_local + offset;
                format_timestamp(local, Some(offset.local_minus_utc()))
            }
        })
    }
}

/// Row `row` of a time-of-day column.
fn time_of(array: &dyn Array, row: usize) -> Option<NaiveTime> {
    match array.data_type() {
        DataType::Time32(TimeUnit::Second) => array
            .as_primitive_opt::<Time32SecondType>()?
            .value_as_time(row),
        DataType::Time32(TimeUnit::Millisecond) => array
            .as_primitive_opt::<Time32MillisecondType>()?
            .value_as_time(row),
        DataType::Time64(TimeUnit::Microsecond) => array
            .as_primitive_opt::<Time64MicrosecondType>()?
            .value_as_time(row),
        DataType::Time64(TimeUnit::Nanosecond) => array
            .as_primitive_opt::<Time64NanosecondType>()?
            .value_as_time(row),
        _ => None,
    }
}

/// `time` as Postgres writes a `time`.
pub fn format_time(time: NaiveTime) -> String {
    let mut text = format!(
        "{:02}:{:02}:{:02}",
        time.hour(),
        time.minute(),
        time.second()
    );
    push_fraction(&mut text, time.nanosecond());
    text
}

/// `.` and the microseconds of `nanos` without trailing zeros, if any (a
/// leap second's nanoseconds past 1e9 are not Postgres' to show).
fn push_fraction(text: &mut String, nanos: u32) {
    let micros = (nanos % 1_000_000_000) / 1_000;
    if micros > 0 {
        let fraction = format!("{micros:06}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
}

/// `local` as Postgres writes a timestamp, with `offset_seconds` east of
/// UTC for a `timestamptz`.
pub fn format_timestamp(local: NaiveDateTime, offset_seconds: Option<i32>) -> String {
    let mut text = String::with_capacity(32);
    let year = local.year();
    // Postgres has no year 0: 1 BC is year 0 in chrono's proleptic count.
    let (shown_year, bc) = if year <= 0 {
        (1 - year, true)
    } else {
        (year, false)
    };
    let _ = write!(
        text,
        "{shown_year:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second()
    );
    // Microseconds, as Postgres keeps them.
    push_fraction(&mut text, local.nanosecond());
    if let Some(offset) = offset_seconds {
        let sign = if offset < 0 { '-' } else { '+' };
        let offset = offset.unsigned_abs();
        let (hours, minutes, seconds) = (offset / 3600, offset / 60 % 60, offset % 60);
        let _ = write!(text, "{sign}{hours:02}");
        if minutes > 0 || seconds > 0 {
            let _ = write!(text, ":{minutes:02}");
        }
        if seconds > 0 {
            let _ = write!(text, ":{seconds:02}");
        }
    }
    if bc {
        text.push_str(" BC");
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::NaiveDate;
    use datafusion::arrow::array::TimestampMicrosecondArray;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, micro: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|date| date.and_hms_micro_opt(h, mi, s, micro))
            .expect("a valid date")
    }

    #[test]
    fn whole_seconds_have_no_fraction_and_fractions_lose_trailing_zeros() {
        assert_eq!(
            format_timestamp(at(2020, 1, 1, 12, 0, 0, 0), None),
            "2020-01-01 12:00:00"
        );
        assert_eq!(
            format_timestamp(at(2020, 1, 1, 12, 0, 0, 500_000), None),
            "2020-01-01 12:00:00.5"
        );
        assert_eq!(
            format_timestamp(at(2020, 1, 1, 12, 0, 0, 123_456), None),
            "2020-01-01 12:00:00.123456"
        );
    }

    #[test]
    fn offsets_show_minutes_only_when_they_have_them() {
        let noon = at(2020, 1, 1, 12, 0, 0, 0);
        assert_eq!(format_timestamp(noon, Some(0)), "2020-01-01 12:00:00+00");
        assert_eq!(
            format_timestamp(noon, Some(-8 * 3600)),
            "2020-01-01 12:00:00-08"
        );
        assert_eq!(
            format_timestamp(noon, Some(5 * 3600 + 30 * 60)),
            "2020-01-01 12:00:00+05:30"
        );
    }

    #[test]
    fn years_before_one_are_bc() {
        assert_eq!(
            format_timestamp(at(-43, 3, 15, 0, 0, 0, 0), None),
            "0044-03-15 00:00:00 BC"
        );
    }

    #[test]
    fn times_of_day_are_written_as_postgres_writes_them() {
        use datafusion::arrow::array::{Time32SecondArray, Time64MicrosecondArray};
        let micros = Time64MicrosecondArray::from(vec![
            Some(45_296_000_000),
            Some(45_296_500_000),
            Some(1),
            None,
        ]);
        let text = TimestampText::of(micros.data_type()).expect("a time column");
        let written: Vec<Option<String>> = (0..4).map(|row| text.format(&micros, row)).collect();
        assert_eq!(
            written,
            vec![
                Some("12:34:56".to_string()),
                Some("12:34:56.5".to_string()),
                Some("00:00:00.000001".to_string()),
                None
            ]
        );
        let seconds = Time32SecondArray::from(vec![3_723]);
        let text = TimestampText::of(seconds.data_type()).expect("a time column");
        assert_eq!(text.format(&seconds, 0).as_deref(), Some("01:02:03"));
    }

    #[test]
    fn a_zoned_column_is_written_in_its_zone() {
        let noon_utc = at(2020, 1, 1, 12, 0, 0, 250_000)
            .and_utc()
            .timestamp_micros();
        let array = TimestampMicrosecondArray::from(vec![Some(noon_utc), None])
            .with_timezone(Arc::<str>::from("Asia/Kolkata"));
        let text = TimestampText::of(array.data_type()).expect("a timestamp column");
        assert_eq!(
            text.format(&array, 0).as_deref(),
            Some("2020-01-01 17:30:00.25+05:30")
        );
        assert_eq!(text.format(&array, 1), None);
    }
}
