//! Functions Postgres clients expect to find (`version()`, `to_regtype()`, …), where
//! DataFusion's own differ in a way clients notice (or, for `lpad`, `rpad` and
//! `repeat`, take lengths Postgres refuses).

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

mod length_bound;
mod pg_typeof;
mod quote_literal;
mod to_regtype;
mod version;

pub use length_bound::LengthBound;
pub use pg_typeof::PgTypeofFunc;
pub use quote_literal::QuoteLiteralFunc;
pub use to_regtype::ToRegtypeFunc;
pub use version::VersionFunc;

/// Registers the Postgres compatibility functions.
pub fn register(ctx: &SessionContext) {
    crate::register_replacing(ctx, ScalarUDF::new_from_impl(VersionFunc::new()));
    crate::register_replacing(ctx, ScalarUDF::new_from_impl(ToRegtypeFunc::default()));
    crate::register_replacing(ctx, ScalarUDF::new_from_impl(PgTypeofFunc::default()));
    crate::register_replacing(ctx, ScalarUDF::new_from_impl(QuoteLiteralFunc::default()));
    for bounded in LengthBound::all() {
        crate::register_replacing(ctx, bounded);
    }
}
