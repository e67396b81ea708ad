//! Bounds on the DataFusion settings a client may `SET` that size
//! allocations. DataFusion checks that a value parses, not that it is sane:
//! `SET datafusion.execution.batch_size = 2147483647` made the next query's
//! batch coalescer reserve 32 GiB of views up front, and the allocator
//! aborted the server (fuzzing found it). A value outside its bound is
//! refused with 22023, as Postgres refuses an out-of-range setting.

use datafusion::error::Result;
use sluice_types::error::{SluiceError, SqlState};

/// (setting, smallest, largest value): rows per batch, and counts of
/// partitions, tasks or buffers, each of which DataFusion allocates or
/// spawns per unit (0 is DataFusion's "as many as there are cores" for
/// some, and harmless for the rest).
const BOUNDS: &[(&str, i128, i128)] = &[
    ("datafusion.execution.batch_size", 1, 1 << 20),
    ("datafusion.execution.target_partitions", 0, 1024),
    ("datafusion.execution.planning_concurrency", 0, 1024),
    ("datafusion.execution.meta_fetch_concurrency", 0, 1024),
    (
        "datafusion.execution.minimum_parallel_output_files",
        0,
        1024,
    ),
    (
        "datafusion.execution.max_buffered_batches_per_output_file",
        0,
        1024,
    ),
    (
        "datafusion.execution.soft_max_rows_per_output_file",
        0,
        1 << 30,
    ),
    (
        "datafusion.execution.parquet.max_row_group_size",
        0,
        1 << 24,
    ),
    (
        "datafusion.execution.parquet.maximum_parallel_row_group_writers",
        0,
        1024,
    ),
    (
        "datafusion.execution.parquet.maximum_buffered_record_batches_per_stream",
        0,
        1024,
    ),
];

/// Refuses `value` for `name` when it is outside the setting's bound.
/// Settings without a bound, and values that are not numbers (DataFusion
/// reports those), pass.
pub fn check(name: &str, value: Option<&str>) -> Result<()> {
    let name = name.to_ascii_lowercase();
    let Some((_, min, max)) = BOUNDS.iter().find(|(bounded, _, _)| *bounded == name) else {
        return Ok(());
    };
    let Some(Ok(number)) = value.map(|v| v.trim().parse::<i128>()) else {
        return Ok(());
    };
    if (*min..=*max).contains(&number) {
        return Ok(());
    }
    Err(SluiceError::new(
        SqlState::INVALID_PARAMETER_VALUE,
        format!("{number} is outside the valid range for parameter \"{name}\" ({min} .. {max})"),
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizing_settings_are_bounded() {
        assert!(check("datafusion.execution.batch_size", Some("8192")).is_ok());
        assert!(check("DataFusion.Execution.Batch_Size", Some("2147483647")).is_err());
        assert!(check("datafusion.execution.batch_size", Some("0")).is_err());
        assert!(check("datafusion.execution.target_partitions", Some("100000")).is_err());
        // Unbounded settings and unparsable values are DataFusion's to judge.
        assert!(check("datafusion.execution.time_zone", Some("UTC")).is_ok());
        assert!(check("datafusion.execution.batch_size", Some("many")).is_ok());
    }
}
