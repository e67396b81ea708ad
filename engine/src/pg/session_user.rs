//! `current_user`, `session_user` and `user`: the name the
//! client logged in with. The catalog library's `session_user` answers
//! `postgres` for everyone, and the others are missing, so tools that ask
//! who they are (SQLAlchemy, psql's `\conninfo`, audit queries) were told
//! wrong or got an error. Registered in each session's own context once
//! its user is known.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;

/// The SQL names that all mean "the user of this session" (Sluice has no
/// `SET ROLE`, so they never differ).
/// (`current_role` would join them, but sqlparser reads it as a column.)
const USER_FUNCTIONS: [&str; 3] = ["current_user", "session_user", "user"];

/// Makes the user functions of `ctx` return `user`.
pub fn register_session_user(ctx: &SessionContext, user: &str) {
    for name in USER_FUNCTIONS {
        ctx.register_udf(user_function(name, user));
    }
}

fn user_function(name: &str, user: &str) -> ScalarUDF {
    let value = ScalarValue::Utf8(Some(user.to_owned()));
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        // Fixed for the session's life: the planner may fold it.
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(value.clone()))),
    )
}
