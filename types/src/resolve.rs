//! The analyzer rule that gives Sluice types their SQL semantics before
//! DataFusion's type coercion runs: casts between text and a Sluice type
//! become the type's input/output functions, text compared with a UUID is
//! parsed as one (as Postgres treats an untyped literal), and text inserted
//! into a Sluice-typed column is parsed (and validated) on the way in.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::DFSchema;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::logical_plan::dml::InsertOp;
use datafusion::logical_expr::{
    BinaryExpr, Cast, DmlStatement, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator,
    TryCast, WriteOp,
};
use datafusion::optimizer::AnalyzerRule;

use crate::conversion::{lenient_value_input, text_input, text_output, value_input};
use crate::extension::SluiceType;
use crate::node_rewrite::rewrite_node_expressions;
use crate::retype::{chooses_an_input, keep_type};

/// See the module documentation. Register it before DataFusion's
/// `TypeCoercion`, which would otherwise reject or mis-cast these
/// expressions.
#[derive(Debug, Default)]
pub struct ResolveSluiceTypes;

impl AnalyzerRule for ResolveSluiceTypes {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(resolve_plan).data()
    }

    fn name(&self) -> &str {
        "resolve_sluice_types"
    }
}

fn resolve_plan(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    if let LogicalPlan::Dml(dml) = &plan
        && matches!(dml.op, WriteOp::Insert(_))
    {
        return resolve_insert(plan);
    }
    rewrite_node_expressions(plan, may_need_resolution, resolve_expr)
}

/// Whether an expression tree holds anything this rule may rewrite; most
/// plans hold none, and skip the schema merge.
fn may_need_resolution(expr: &Expr) -> bool {
    expr.exists(|e| {
        Ok(matches!(
            e,
            Expr::Cast(_) | Expr::TryCast(_) | Expr::BinaryExpr(_) | Expr::InList(_)
        ) || chooses_an_input(e))
    })
    .unwrap_or(true)
}

fn resolve_expr(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    if chooses_an_input(&expr) {
        return Ok(match keep_type(&expr, schema)? {
            Some(typed) => Transformed::yes(typed),
            None => Transformed::no(expr),
        });
    }
    match expr {
        Expr::Cast(Cast { expr: inner, field }) => {
            resolve_cast(*inner, &field, schema, false, |e, f| {
                Expr::Cast(Cast::new_from_field(e, f))
            })
        }
        Expr::TryCast(TryCast { expr: inner, field }) => {
            resolve_cast(*inner, &field, schema, true, |e, f| {
                Expr::TryCast(TryCast::new_from_field(e, f))
            })
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if is_comparison(op) => {
            let (left, right) = (*left, *right);
            match (
                uuid_operand(&left, &right, schema)?,
                uuid_operand(&right, &left, schema)?,
            ) {
                (true, _) => Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(left),
                    op,
                    Box::new(text_input(SluiceType::Uuid, right)),
                )))),
                (_, true) => Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(text_input(SluiceType::Uuid, left)),
                    op,
                    Box::new(right),
                )))),
                _ => Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(left),
                    op,
                    Box::new(right),
                )))),
            }
        }
        Expr::InList(InList {
            expr: needle,
            list,
            negated,
        }) if sluice_type(&needle, schema)? == Some(SluiceType::Uuid)
            && list
                .iter()
                .any(|item| is_text(item, schema).unwrap_or(false)) =>
        {
            let list = list
                .into_iter()
                .map(|item| {
                    Ok(if is_text(&item, schema)? {
                        text_input(SluiceType::Uuid, item)
                    } else {
                        item
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Transformed::yes(Expr::InList(InList::new(
                needle, list, negated,
            ))))
        }
        other => Ok(Transformed::no(other)),
    }
}

/// A cast to or from a Sluice type. `rebuild` recreates the original cast
/// when nothing applies; `lenient` (`TRY_CAST`) turns bytes that are not
/// the media type into NULL.
fn resolve_cast(
    inner: Expr,
    field: &Arc<Field>,
    schema: &DFSchema,
    lenient: bool,
    rebuild: impl Fn(Box<Expr>, Arc<Field>) -> Expr,
) -> Result<Transformed<Expr>> {
    let source = sluice_type(&inner, schema)?;
    // DataFusion's INSERT planning casts to the column's storage type and
    // drops its metadata; text can only reach some storage types as a
    // Sluice type.
    let target = SluiceType::of_field(field)
        .or_else(|| crate::extension::text_target_of_storage(field.data_type()));
    let (_, source_field) = inner.to_field(schema)?;
    match (source, target) {
        (Some(s), Some(t)) if s == t => Ok(Transformed::yes(inner)),
        (_, Some(t)) if is_text(&inner, schema)? => Ok(Transformed::yes(text_input(t, inner))),
        (_, Some(t)) if made_from_value(t, &source_field) => Ok(Transformed::yes(if lenient {
            lenient_value_input(t, inner)
        } else {
            value_input(t, inner)
        })),
        (Some(SluiceType::Image | SluiceType::Audio), None)
            if matches!(
                field.data_type(),
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView
            ) =>
        {
            // An image or audio value cast to bytea is its encoded bytes.
            let bytes = datafusion::functions::core::expr_fn::get_field(inner, "data");
            Ok(Transformed::yes(
                if field.data_type() == &DataType::Binary {
                    bytes
                } else {
                    rebuild(Box::new(bytes), Arc::clone(field))
                },
            ))
        }
        (Some(s), None) if is_string_type(field.data_type()) => {
            let text = text_output(s, inner);
            Ok(Transformed::yes(if field.data_type() == &DataType::Utf8 {
                text
            } else {
                rebuild(Box::new(text), Arc::clone(field))
            }))
        }
        _ => Ok(Transformed::no(rebuild(Box::new(inner), Arc::clone(field)))),
    }
}

/// Whether `this` is a UUID and `other` is text to be read as one.
fn uuid_operand(this: &Expr, other: &Expr, schema: &DFSchema) -> Result<bool> {
    Ok(sluice_type(this, schema)? == Some(SluiceType::Uuid) && is_text(other, schema)?)
}

/// Parses text written into Sluice-typed columns; DataFusion's INSERT
/// planning checks storage types only, so without this an invalid JSON
/// document would be stored as is.
fn resolve_insert(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Dml(dml) = plan else {
        return Ok(Transformed::no(plan));
    };
    let table_schema = dml.target.schema();
    let dml = convert_insert_casts(dml)?;
    let input_schema = dml.input.schema();
    if table_schema.fields().len() != input_schema.fields().len()
        || !table_schema
            .fields()
            .iter()
            .any(|f| SluiceType::of_field(f).is_some())
    {
        return Ok(Transformed::no(LogicalPlan::Dml(dml)));
    }
    let mut changed = false;
    let mut columns = Vec::with_capacity(table_schema.fields().len());
    for (i, target) in table_schema.fields().iter().enumerate() {
        let (qualifier, source) = input_schema.qualified_field(i);
        let column = Expr::Column(datafusion::common::Column::from((qualifier, source)));
        let wanted = SluiceType::of_field(target);
        columns.push(match wanted {
            Some(ty)
                if SluiceType::of_field(source) != Some(ty)
                    && is_string_type(source.data_type()) =>
            {
                changed = true;
                text_input(ty, column).alias(source.name())
            }
            Some(ty) if made_from_value(ty, source) => {
                changed = true;
                value_input(ty, column).alias(source.name())
            }
            _ => column,
        });
    }
    if !changed {
        return Ok(Transformed::no(LogicalPlan::Dml(dml)));
    }
    let input = LogicalPlanBuilder::from(Arc::unwrap_or_clone(dml.input))
        .project(columns)?
        .build()?;
    let op = match dml.op {
        WriteOp::Insert(op) => op,
        _ => InsertOp::Append,
    };
    Ok(Transformed::yes(LogicalPlan::Dml(DmlStatement::new(
        dml.table_name,
        dml.target,
        WriteOp::Insert(op),
        Arc::new(input),
    ))))
}

/// DataFusion's INSERT planning casts each value to its column's storage
/// type, without the column's metadata: a fixed-shape tensor's shape, for
/// one, is then lost. The casts into Sluice-typed columns become the
/// type's own conversion, planned from the table's schema.
fn convert_insert_casts(dml: DmlStatement) -> Result<DmlStatement> {
    if let Some(input) = convert_values_input(&dml)? {
        return Ok(DmlStatement::new(
            dml.table_name,
            dml.target,
            dml.op,
            Arc::new(input),
        ));
    }
    let LogicalPlan::Projection(projection) = dml.input.as_ref() else {
        return Ok(dml);
    };
    let table_schema = dml.target.schema();
    if projection.expr.len() != table_schema.fields().len() {
        return Ok(dml);
    }
    let input_schema = projection.input.schema();
    let mut changed = false;
    let mut exprs = Vec::with_capacity(projection.expr.len());
    for (expr, target) in projection.expr.iter().zip(table_schema.fields()) {
        let converted = match (SluiceType::of_field(target), strip_alias_and_cast(expr)) {
            (Some(ty), Some(inner)) => {
                let (_, source) = inner.to_field(input_schema)?;
                if SluiceType::of_field(&source) == Some(ty) {
                    Some(inner.clone())
                } else if is_text(inner, input_schema)? {
                    Some(text_input(ty, inner.clone()))
                } else if made_from_value(ty, &source) {
                    Some(value_input(ty, inner.clone()))
                } else {
                    None
                }
            }
            _ => None,
        };
        match converted {
            Some(c) => {
                changed = true;
                exprs.push(c.alias(target.name()));
            }
            None => exprs.push(expr.clone()),
        }
    }
    if !changed {
        return Ok(dml);
    }
    let input = LogicalPlanBuilder::from(Arc::unwrap_or_clone(Arc::clone(&projection.input)))
        .project(exprs)?
        .build()?;
    Ok(DmlStatement::new(
        dml.table_name,
        dml.target,
        dml.op,
        Arc::new(input),
    ))
}

/// `INSERT … VALUES` whose rows are not all literals is planned as a
/// `Values` node holding each value cast to its column's storage type
/// (under a projection when a column list is given). Those casts become the
/// column type's conversion, row by row. `None` when nothing changes.
fn convert_values_input(dml: &DmlStatement) -> Result<Option<LogicalPlan>> {
    let table_schema = dml.target.schema();
    let targets: Vec<Option<SluiceType>> = table_schema
        .fields()
        .iter()
        .map(|f| SluiceType::of_field(f))
        .collect();
    if targets.iter().all(Option::is_none) {
        return Ok(None);
    }
    // Which Sluice type each VALUES column must become, and the projection
    // above it (target column i ← VALUES column k) when there is one.
    let (values, column_targets, projection) = match dml.input.as_ref() {
        LogicalPlan::Values(values) if values.schema.fields().len() == targets.len() => {
            (values, targets.clone(), None)
        }
        LogicalPlan::Projection(projection) if projection.expr.len() == targets.len() => {
            let LogicalPlan::Values(values) = projection.input.as_ref() else {
                return Ok(None);
            };
            let mut column_targets = vec![None; values.schema.fields().len()];
            for (expr, target) in projection.expr.iter().zip(&targets) {
                if let (Some(ty), Some(Expr::Column(column))) =
                    (target, strip_alias_and_cast(expr).or(Some(expr)))
                    && let Ok(k) = values.schema.index_of_column(column)
                {
                    column_targets[k] = Some(*ty);
                }
            }
            (values, column_targets, Some(projection))
        }
        _ => return Ok(None),
    };
    let empty = DFSchema::empty();
    let mut changed = false;
    let mut rows = Vec::with_capacity(values.values.len());
    for row in &values.values {
        let mut converted_row = Vec::with_capacity(row.len());
        for (value, target) in row.iter().zip(&column_targets) {
            let converted = match (target, strip_alias_and_cast(value)) {
                (Some(ty), Some(inner)) => {
                    let (_, source) = inner.to_field(&empty)?;
                    if is_text(inner, &empty)? && source.data_type() != &DataType::Null {
                        Some(text_input(*ty, inner.clone()))
                    } else if made_from_value(*ty, &source) {
                        Some(value_input(*ty, inner.clone()))
                    } else {
                        None
                    }
                }
                _ => None,
            };
            changed |= converted.is_some();
            converted_row.push(converted.unwrap_or_else(|| value.clone()));
        }
        rows.push(converted_row);
    }
    if !changed {
        return Ok(None);
    }
    let values_plan = LogicalPlanBuilder::values(rows)?.build()?;
    let Some(projection) = projection else {
        return Ok(Some(values_plan));
    };
    // The same projection, over the new VALUES columns (same names), with
    // the casts into converted columns dropped.
    let exprs = projection
        .expr
        .iter()
        .zip(table_schema.fields())
        .map(|(expr, target)| match strip_alias_and_cast(expr) {
            Some(Expr::Column(column))
                if SluiceType::of_field(target).is_some()
                    && values_plan.schema().index_of_column(column).is_ok() =>
            {
                Expr::Column(column.clone()).alias(target.name())
            }
            _ => expr.clone(),
        })
        .collect::<Vec<_>>();
    Ok(Some(
        LogicalPlanBuilder::from(values_plan)
            .project(exprs)?
            .build()?,
    ))
}

/// The expression under an INSERT projection's `CAST(x AS t) AS name`.
fn strip_alias_and_cast(expr: &Expr) -> Option<&Expr> {
    let unaliased = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    match unaliased {
        Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => Some(expr.as_ref()),
        _ => None,
    }
}

/// Whether a value of `source` (not text) becomes `target` through
/// [`value_input`]: bytes into media, nested arrays or other tensors into
/// tensors.
fn made_from_value(target: SluiceType, source: &Field) -> bool {
    let from = SluiceType::of_field(source);
    // Already the target's storage (its metadata lost on the way, as in
    // VALUES), already the target, or an untyped NULL (cast as text is).
    let already = from == Some(target)
        || (from.is_none() && crate::extension::is_storage_of(target, source.data_type()));
    !already
        && source.data_type() != &DataType::Null
        && crate::conversion::can_make_from(target, source)
}

fn sluice_type(expr: &Expr, schema: &DFSchema) -> Result<Option<SluiceType>> {
    let (_, field) = expr.to_field(schema)?;
    Ok(SluiceType::of_field(&field))
}

/// Text (or an untyped NULL), as an unknown-typed literal is in Postgres.
fn is_text(expr: &Expr, schema: &DFSchema) -> Result<bool> {
    let data_type = expr.get_type(schema)?;
    Ok(is_string_type(&data_type) || data_type == DataType::Null)
}

fn is_string_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_comparison(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}
