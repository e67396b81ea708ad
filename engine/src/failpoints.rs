//! Faults injected by tests, through the `fail` crate: the failures a test
//! cannot otherwise cause at a chosen place (an operator erroring or
//! panicking mid-epoch). `SLUICE_FAILPOINTS` configures them when an
//! engine is built, in `fail`'s own action syntax:
//!
//! ```text
//! SLUICE_FAILPOINTS='sink-apply=3*off->1*return->3*off->1*panic;aggregate-change=1%return'
//! ```
//!
//! The points:
//! - `sink-apply`: before a continuous query applies an epoch to its sink;
//! - `aggregate-change`: as an aggregate takes a change;
//! - `plan-statement`: as any statement is planned (its `panic` action
//!   proves a panic costs the statement, not the connection);
//! - `transaction-commit-table`: as a transaction commits one of its
//!   tables, the one its `return(schema.table)` names.
//!
//! Unset (always, outside tests), every point is a no-op.

use datafusion::error::{DataFusionError, Result};

/// The environment variable read by [`configure_from_env`].
pub const FAILPOINTS_VARIABLE: &str = "SLUICE_FAILPOINTS";

/// Configures the points named in `SLUICE_FAILPOINTS`, if it is set.
pub fn configure_from_env() -> Result<()> {
    let Ok(spec) = std::env::var(FAILPOINTS_VARIABLE) else {
        return Ok(());
    };
    for point in spec.split(';').filter(|p| !p.trim().is_empty()) {
        let (name, actions) = point.split_once('=').ok_or_else(|| {
            DataFusionError::Configuration(format!(
                "{FAILPOINTS_VARIABLE}: `{point}` is not name=actions"
            ))
        })?;
        fail::cfg(name.trim(), actions.trim()).map_err(|e| {
            DataFusionError::Configuration(format!("{FAILPOINTS_VARIABLE}: {name}: {e}"))
        })?;
        log::warn!("failpoint {name} set to {actions}");
    }
    Ok(())
}

/// The error an injected `return` produces at point `name`.
pub fn injected(name: &str) -> DataFusionError {
    DataFusionError::Execution(format!("injected failure at failpoint {name}"))
}
