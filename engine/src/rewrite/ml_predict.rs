//! The table form of `ML_PREDICT`, as Flink writes it:
//!
//! ```sql
//! SELECT * FROM ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(c1, c2)) AS p;
//! ```
//!
//! returns every column of `t` plus the model's output columns (an output
//! whose name clashes with an input column gets a numeric suffix, as in
//! Flink); a trailing `MAP['batch_size', '64']` sets per-call options
//! (`sluice_functions::model::call_options`), in the scalar form too.
//! Neither `TABLE t` nor `MODEL m` is valid in DataFusion's
//! grammar, so it is handled in two steps:
//!
//! 1. [`normalize_text`](crate::sql::table_function_syntax::normalize_text), before parsing, drops the `TABLE`/`MODEL`
//!    keywords of the call (and turns Flink's `MAP[…]` into `MAP(…)`), so the
//!    call parses as an ordinary table function;
//! 2. [`rewrite`], before planning, replaces that table function by a
//!    subquery over the scalar `ml_predict(model, c1, c2)`, built as AST
//!    nodes (never SQL text):
//!    `SELECT <t's columns>, p['out1'] AS out1, … FROM (SELECT *,
//!    ml_predict('m', c1, c2) AS p FROM t)`. Batch and streaming queries
//!    thus run the one scalar function and its shared batching runtime.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{
    self, AccessExpr, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    SelectItem, SetExpr, Subscript, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

use crate::context::model_registry;
use crate::sql::table_function_syntax::ML_PREDICT;

/// Column that carries the model's struct inside the generated subquery.
const PREDICTION_COLUMN: &str = "__sluice_prediction";

/// One `ML_PREDICT(...)` table function found in a statement.
struct Call {
    table: ObjectName,
    model: String,
    columns: Vec<Ident>,
    /// The trailing `MAP[…]`, as a `named_struct(…)` argument.
    options: Option<Expr>,
}

/// Replaces every `ML_PREDICT` table function in `statement` by the
/// equivalent subquery.
pub(crate) async fn rewrite(statement: &mut DFStatement, ctx: &SessionContext) -> Result<()> {
    let Some(inner) = super::sql_statement(statement) else {
        return Ok(());
    };
    // Pass 1: find the calls (the visitor is synchronous; table schemas
    // are looked up asynchronously in between).
    let mut finder = Finder {
        calls: Vec::new(),
        error: None,
    };
    let _ = inner.visit(&mut finder);
    if let Some(e) = finder.error {
        return Err(e);
    }
    if finder.calls.is_empty() {
        return Ok(());
    }
    let mut replacements = Vec::with_capacity(finder.calls.len());
    for call in &finder.calls {
        replacements.push(subquery(ctx, call).await?);
    }
    // Pass 2: swap each call for its subquery, in the same order.
    let mut replacer = Replacer {
        replacements: replacements.into_iter(),
    };
    let _ = inner.visit(&mut replacer);
    Ok(())
}

struct Finder {
    calls: Vec<Call>,
    error: Option<DataFusionError>,
}

impl VisitorMut for Finder {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let Some(args) = ml_predict_args(factor) {
            match parse_call(args) {
                Ok(call) => self.calls.push(call),
                Err(e) => {
                    self.error = Some(e);
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// The scalar form's trailing `MAP(…)` (from `MAP[…]`) becomes the
    /// options argument too.
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        let is_call = function.name.0.len() == 1
            && function.name.0[0].as_ident().is_some_and(|i| {
                i.value.eq_ignore_ascii_case(ML_PREDICT) && i.quote_style.is_none()
            });
        if !is_call {
            return ControlFlow::Continue(());
        }
        let FunctionArguments::List(list) = &mut function.args else {
            return ControlFlow::Continue(());
        };
        if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(last))) = list.args.last_mut()
            && is_map(last)
        {
            match options_argument(last) {
                Ok(options) => *last = options,
                Err(e) => {
                    self.error = Some(e);
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }
}

fn is_map(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("map"))
}

/// Flink's configuration `MAP['k', 'v', …]` (written `MAP(…)` by
/// [`normalize_text`]) as the `named_struct('k', 'v', …)` the scalar
/// function takes its per-call options from (see
/// `sluice_functions::model::call_options`).
fn options_argument(map: &Expr) -> Result<Expr> {
    let bad = || {
        DataFusionError::Plan(format!(
            "ML_PREDICT configuration {map} must be MAP['key', 'value', …] of constants"
        ))
    };
    let Expr::Function(function) = map else {
        return Err(bad());
    };
    let FunctionArguments::List(list) = &function.args else {
        return Err(bad());
    };
    let mut items = Vec::with_capacity(list.args.len());
    for arg in &list.args {
        let FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(value))) = arg else {
            return Err(bad());
        };
        let text = match &value.value {
            ast::Value::SingleQuotedString(s) => s.clone(),
            ast::Value::Number(n, _) => n.to_string(),
            _ => return Err(bad()),
        };
        items.push(text);
    }
    if items.len() % 2 != 0 {
        return Err(bad());
    }
    // The MAP call itself becomes the `named_struct` call: same node, other
    // name and arguments (option names are checked where the options are
    // read, by the function: `sluice_functions::model::call_options`).
    let mut options = function.clone();
    options.name = ObjectName::from(vec![Ident::new("named_struct")]);
    let mut arguments = Vec::with_capacity(items.len());
    for pair in items.chunks(2) {
        arguments.push(text_argument(pair[0].to_ascii_lowercase()));
        arguments.push(text_argument(pair[1].clone()));
    }
    options.args = FunctionArguments::List(ast::FunctionArgumentList {
        duplicate_treatment: None,
        args: arguments,
        clauses: Vec::new(),
    });
    Ok(Expr::Function(options))
}

/// A string literal as a function argument.
fn text_argument(text: String) -> FunctionArg {
    FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
        ast::Value::SingleQuotedString(text),
    )))
}

struct Replacer {
    replacements: std::vec::IntoIter<ast::Query>,
}

impl VisitorMut for Replacer {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if ml_predict_args(factor).is_some()
            && let TableFactor::Table { alias, .. } = factor
            && let Some(query) = self.replacements.next()
        {
            *factor = TableFactor::Derived {
                lateral: false,
                subquery: Box::new(query),
                alias: alias.take(),
                sample: None,
            };
        }
        ControlFlow::Continue(())
    }
}

fn ml_predict_args(factor: &TableFactor) -> Option<&[FunctionArg]> {
    match factor {
        TableFactor::Table {
            name,
            args: Some(args),
            ..
        } if name.0.len() == 1
            && name.0[0].as_ident().is_some_and(|i| {
                i.value.eq_ignore_ascii_case(ML_PREDICT) && i.quote_style.is_none()
            }) =>
        {
            Some(&args.args)
        }
        _ => None,
    }
}

fn usage_error(detail: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "ML_PREDICT: {detail}; expected ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(col, …)[, MAP[…]])"
    ))
}

fn parse_call(args: &[FunctionArg]) -> Result<Call> {
    let exprs: Vec<&Expr> = args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(usage_error("named or wildcard arguments are not accepted")),
        })
        .collect::<Result<_>>()?;
    let [table, model, descriptor, rest @ ..] = exprs.as_slice() else {
        return Err(usage_error("too few arguments"));
    };
    let table = match table {
        Expr::Identifier(i) => ObjectName::from(vec![i.clone()]),
        Expr::CompoundIdentifier(parts) => ObjectName::from(parts.clone()),
        _ => return Err(usage_error("the first argument must name a table")),
    };
    let model = match model {
        Expr::Identifier(i) if i.quote_style.is_some() => i.value.clone(),
        Expr::Identifier(i) => i.value.to_lowercase(),
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => s.clone(),
            _ => return Err(usage_error("the second argument must name a model")),
        },
        _ => return Err(usage_error("the second argument must name a model")),
    };
    let columns = descriptor_columns(descriptor)?;
    let options = match rest {
        [] => None,
        [config] => Some(options_argument(config)?),
        _ => return Err(usage_error("too many arguments")),
    };
    Ok(Call {
        table,
        model,
        columns,
        options,
    })
}

fn descriptor_columns(expr: &Expr) -> Result<Vec<Ident>> {
    let Expr::Function(function) = expr else {
        return Err(usage_error("the third argument must be DESCRIPTOR(col, …)"));
    };
    if !function.name.to_string().eq_ignore_ascii_case("descriptor") {
        return Err(usage_error("the third argument must be DESCRIPTOR(col, …)"));
    }
    let FunctionArguments::List(list) = &function.args else {
        return Err(usage_error("DESCRIPTOR needs at least one column"));
    };
    let columns: Vec<Ident> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(i))) => Ok(i.clone()),
            _ => Err(usage_error("DESCRIPTOR takes column names")),
        })
        .collect::<Result<_>>()?;
    if columns.is_empty() {
        return Err(usage_error("DESCRIPTOR needs at least one column"));
    }
    Ok(columns)
}

/// The subquery standing for one call.
async fn subquery(ctx: &SessionContext, call: &Call) -> Result<ast::Query> {
    let reference = object_name_to_table_reference(call.table.clone(), true)?;
    let provider = ctx.table_provider(reference).await?;
    let schema = provider.schema();
    let model = model_registry(ctx)?.get(&call.model)?;
    let Some(outputs) = model.interface.prediction_fields() else {
        return Err(DataFusionError::Plan(format!(
            "model {} is an embedding model: call it with EMBED",
            call.model
        )));
    };
    let quoted = |name: &str| Ident::with_quote('"', name);
    let mut query = template()?;
    let SetExpr::Select(outer) = query.body.as_mut() else {
        return Err(template_error());
    };
    // The outer SELECT: the table's columns, then one column per output.
    let mut taken: HashSet<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut projection: Vec<SelectItem> = schema
        .fields()
        .iter()
        .map(|f| SelectItem::UnnamedExpr(Expr::Identifier(quoted(f.name()))))
        .collect();
    for field in &outputs {
        let name = unique_name(field.name(), &taken);
        taken.insert(name.clone());
        projection.push(SelectItem::ExprWithAlias {
            expr: Expr::CompoundFieldAccess {
                root: Box::new(Expr::Identifier(quoted(PREDICTION_COLUMN))),
                access_chain: vec![AccessExpr::Subscript(Subscript::Index {
                    index: Expr::value(ast::Value::SingleQuotedString(field.name().clone())),
                })],
            },
            alias: quoted(&name),
        });
    }
    outer.projection = projection;
    // The inner SELECT: every column of the table and the model's struct.
    let Some(TableFactor::Derived { subquery, .. }) =
        outer.from.first_mut().map(|t| &mut t.relation)
    else {
        return Err(template_error());
    };
    let SetExpr::Select(inner) = subquery.body.as_mut() else {
        return Err(template_error());
    };
    let Some(TableFactor::Table { name, .. }) = inner.from.first_mut().map(|t| &mut t.relation)
    else {
        return Err(template_error());
    };
    *name = call.table.clone();
    let Some(SelectItem::ExprWithAlias {
        expr: Expr::Function(function),
        alias,
    }) = inner.projection.get_mut(1)
    else {
        return Err(template_error());
    };
    *alias = quoted(PREDICTION_COLUMN);
    let mut arguments = vec![text_argument(call.model.clone())];
    arguments.extend(
        call.columns
            .iter()
            .map(|c| FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(c.clone())))),
    );
    arguments.extend(
        call.options
            .iter()
            .map(|o| FunctionArg::Unnamed(FunctionArgExpr::Expr(o.clone()))),
    );
    function.args = FunctionArguments::List(ast::FunctionArgumentList {
        duplicate_treatment: None,
        args: arguments,
        clauses: Vec::new(),
    });
    Ok(query)
}

/// The shape of the subquery, parsed from constant text (no user input):
/// its parts are replaced by [`subquery`]. Building every node field by
/// field would tie this code to each field sqlparser adds.
fn template() -> Result<ast::Query> {
    let sql = format!("SELECT * FROM (SELECT *, {ML_PREDICT}() AS p FROM t)");
    match DFParser::parse_sql_with_dialect(&sql, &PostgreSqlDialect {})?.pop_front() {
        Some(DFStatement::Statement(statement)) => match *statement {
            ast::Statement::Query(query) => Ok(*query),
            _ => Err(template_error()),
        },
        _ => Err(template_error()),
    }
}

fn template_error() -> DataFusionError {
    DataFusionError::Internal("ML_PREDICT's subquery template has another shape".into())
}

/// `name`, or `name0`, `name1`, … when taken (Flink's rule for output
/// columns that clash with input columns).
fn unique_name(name: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(name) {
        return name.to_string();
    }
    (0..)
        .map(|i| format!("{name}{i}"))
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or_else(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clashing_outputs_get_suffixes() {
        let taken: HashSet<String> = ["label".to_string(), "label0".to_string()].into();
        assert_eq!(unique_name("label", &taken), "label1");
        assert_eq!(unique_name("score", &taken), "score");
    }
}
