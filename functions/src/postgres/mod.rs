//! Functions Postgres clients expect to find (`version()`, `to_regtype()`,
//! `format()`, …), where
//! DataFusion's own differ in a way clients notice (or, for `lpad`, `rpad` and
//! `repeat`, take lengths Postgres refuses; for the regex functions, compile
//! patterns without bound).

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

mod array_literals;
mod date_arithmetic;
mod format;
mod guarded;
mod length_bound;
mod pattern_bound;
mod pg_array_in;
mod pg_text;
mod pg_typeof;
mod quote_literal;
mod size_pretty;
mod subquery_value;
mod to_regtype;
mod version;

pub use array_literals::ArrayLiteralPlanner;
pub use date_arithmetic::DateIntervalPlanner;
pub use format::FormatFunc;
pub use guarded::{ArgumentGuard, Guarded};
pub use pattern_bound::RegexOperatorPlanner;
pub use pg_array_in::{PG_ARRAY_IN, PgArrayInFunc};
pub use pg_text::{PG_TEXT, PgTextFunc};
pub use pg_typeof::PgTypeofFunc;
pub use quote_literal::QuoteLiteralFunc;
pub use size_pretty::PgSizePrettyFunc;
pub use subquery_value::{SCALAR_SUBQUERY_VALUE, ScalarSubqueryValueFunc};
pub use to_regtype::ToRegtypeFunc;
pub use version::VersionFunc;

/// Registers the Postgres compatibility functions and the expression
/// planners of the regex operators, of text literals compared with arrays
/// and of `date ± interval`.
pub fn register(ctx: &SessionContext) -> Result<()> {
    crate::register_replacing(ctx, ScalarUDF::new_from_impl(VersionFunc::new()));
    crate::register_replacing(ctx, ScalarUDF::new_from_impl(ToRegtypeFunc::default()));
    crate::register_replacing(ctx, ScalarUDF::new_from_impl(PgTypeofFunc::default()));
    crate::register_replacing(ctx, ScalarUDF::new_from_impl(QuoteLiteralFunc::default()));
    crate::register_replacing(ctx, ScalarUDF::new_from_impl(FormatFunc::default()));
    crate::register_replacing(ctx, ScalarUDF::new_from_impl(PgSizePrettyFunc::default()));
    crate::register_replacing(
        ctx,
        ScalarUDF::new_from_impl(ScalarSubqueryValueFunc::default()),
    );
    for bounded in length_bound::bounded_functions() {
        crate::register_replacing(ctx, bounded);
    }
    let mut bounded_like = None;
    for bounded in pattern_bound::bounded_functions() {
        if bounded.name() == "regexp_like" {
            bounded_like = Some(Arc::new(bounded.clone()));
        }
        crate::register_replacing(ctx, bounded);
    }
    ctx.state_ref()
        .write()
        .register_expr_planner(Arc::new(ArrayLiteralPlanner))?;
    ctx.state_ref()
        .write()
        .register_expr_planner(Arc::new(DateIntervalPlanner))?;
    if let Some(regexp_like) = bounded_like {
        ctx.state_ref()
            .write()
            .register_expr_planner(Arc::new(RegexOperatorPlanner::new(regexp_like)))?;
    }
    Ok(())
}
