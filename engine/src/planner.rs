//! The one planning pipeline. Every entry point — the simple and extended
//! protocols, SQL `PREPARE`, [`crate::Sluice::sql`], `COPY … FROM STDIN`,
//! stored views restored at start, and (next) continuous queries — plans a
//! statement through these steps, in this order:
//!
//! 1. **parse** — [`crate::sql::statement::parse_sql`]: Sluice's statements
//!    and token passes, DataFusion's parser for the rest (done by the
//!    caller, which may hold several statements);
//! 2. **check parameters** — the first thing [`plan_statement`] does:
//!    every `$n` within Postgres' bounds before anything is sized by it;
//! 3. **Sluice rewrites on the AST** — [`plan_statement`]: literal
//!    `INSERT … VALUES` through COPY's text path
//!    ([`crate::rewrite::literal_insert`]), set-returning functions'
//!    columns in FROM ([`crate::rewrite::function_columns`]), unqualified
//!    `pg_catalog` names
//!    ([`crate::rewrite::catalog_path`]), Flink's `ML_PREDICT(TABLE …)`
//!    ([`crate::rewrite::ml_predict`]), Flink's window table functions
//!    `TUMBLE`/`HOP` ([`crate::rewrite::window_tvf`]), `EXISTS` computed in
//!    a SELECT list and `ARRAY(subquery)` ([`crate::rewrite::subquery_values`]),
//!    scalar subqueries that do not aggregate
//!    ([`crate::rewrite::scalar_subqueries`]),
//!    the columns of a relation created from a query
//!    ([`crate::rewrite::created_names`]), repeated names in a SELECT list
//!    ([`crate::rewrite::unique_names`]), text literals into
//!    Sluice-typed columns ([`crate::rewrite::typed_values`]);
//! 4. **DataFusion planning** — `SessionState::statement_to_plan`, with
//!    Sluice's type planner and analyzer rule
//!    (`sluice_types::resolve::ResolveSluiceTypes`) installed on the state;
//! 5. **binding and folding** — [`bind_and_fold`]: `$n` values bound, then
//!    model and object calls with constant arguments run once
//!    ([`crate::rewrite::async_calls`]). Folding runs models, so it happens
//!    when a statement is executed, never when it is only prepared or
//!    described.
//!
//! Folding stays a pass of its own rather than an optimizer rule:
//! DataFusion's rules are synchronous, and a model call is not.

use datafusion::common::ParamValues;
use datafusion::error::Result;
use datafusion::logical_expr::{LogicalPlan, Statement};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;

use crate::pg::parameters;
use crate::rewrite::async_calls;

/// Steps 2 to 4: a DataFusion statement to a logical plan, its `$n`
/// checked and left as placeholders.
pub async fn plan_statement(ctx: &SessionContext, statement: &DFStatement) -> Result<LogicalPlan> {
    fail::fail_point!("plan-statement", |_| Err(crate::failpoints::injected(
        "plan-statement"
    )));
    parameters::check_statement(statement)?;
    let mut statement = statement.clone();
    // An s3:// location needs a store for its bucket before DataFusion can
    // read or write it.
    match &statement {
        DFStatement::CreateExternalTable(table) => {
            for location in &table.locations {
                crate::storage::register_store_for(ctx, location)?;
            }
        }
        DFStatement::CopyTo(copy) => crate::storage::register_store_for(ctx, &copy.target)?,
        _ => {}
    }
    crate::rewrite::operator_precedence::repair(&mut statement);
    if let Some(sql) = crate::rewrite::sql_statement(&mut statement) {
        crate::pg::reg_casts::rewrite_casts(sql);
        crate::pg::table_oids::rewrite_table_oids(sql);
    }
    if let Some(plan) = crate::rewrite::literal_insert::plan(&statement, ctx).await? {
        return Ok(plan);
    }
    crate::rewrite::driver_typeinfo::rewrite(&mut statement);
    crate::rewrite::regtype_text::rewrite(&mut statement);
    crate::rewrite::function_columns::rewrite(&mut statement);
    crate::rewrite::catalog_path::qualify(&mut statement, ctx);
    crate::rewrite::ml_predict::rewrite(&mut statement, ctx).await?;
    crate::rewrite::window_tvf::rewrite(&mut statement)?;
    crate::rewrite::vector_search::rewrite(&mut statement)?;
    crate::rewrite::subquery_values::rewrite(&mut statement);
    {
        let state = ctx.state_ref();
        let state = state.read();
        let is_aggregate = |name: &str| {
            state.aggregate_functions().contains_key(name)
                || state.window_functions().contains_key(name)
        };
        crate::rewrite::scalar_subqueries::rewrite(&mut statement, &is_aggregate);
    }
    crate::rewrite::created_names::rewrite(&mut statement)?;
    crate::rewrite::unique_names::rewrite(&mut statement);
    crate::rewrite::typed_values::cast_values_to_column_types(&mut statement, ctx).await?;
    crate::sql::complexity::check_subquery_columns(&statement)?;
    ctx.state().statement_to_plan(statement).await
}

/// Step 5: binds `params` (or checks that the plan needs none) and folds
/// constant async calls; the plan is then ready to execute.
pub async fn bind_and_fold(
    ctx: &SessionContext,
    plan: LogicalPlan,
    params: Option<ParamValues>,
) -> Result<LogicalPlan> {
    let plan = match params {
        Some(params) => plan.replace_params_with_values(&params)?,
        None => {
            // SQL `PREPARE` keeps its placeholders for `EXECUTE`.
            if !matches!(plan, LogicalPlan::Statement(Statement::Prepare(_)))
                && let Some(&first) = parameters::parameter_numbers(&plan)?.first()
            {
                return Err(parameters::missing_parameter(first).into());
            }
            plan
        }
    };
    async_calls::fold(plan, ctx).await
}
