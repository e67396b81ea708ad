//! Functions Postgres clients expect to find (`version()`, …), where
//! DataFusion's own differ in a way clients notice.

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

mod version;

pub use version::VersionFunc;

/// Registers the Postgres compatibility functions.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(VersionFunc::new()));
}
