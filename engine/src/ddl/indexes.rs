//! `CREATE INDEX … USING hnsw` and `DROP INDEX`: vector indexes on Sluice
//! tables (see [`crate::storage::vector_index`]).
//!
//! ```sql
//! CREATE INDEX [IF NOT EXISTS] [name] ON docs USING hnsw (v [vector_cosine_ops])
//!     [WITH (metric = 'cosine' | 'l2' | 'ip', m = 16, ef_construction = 64)];
//! DROP INDEX [IF EXISTS] name;
//! ```
//! Index names share the schema's namespace with its tables, as in
//! Postgres; an unnamed index is called `<table>_<column>_idx`.

use std::any::Any;
use std::sync::Arc;

use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, CreateIndex, Expr, IndexType, ObjectName, Value,
};
use sluice_types::error::{SluiceError, SqlState};

use crate::context::{DEFAULT_CATALOG, DEFAULT_SCHEMA};
use crate::sql::names::ident_name;
use crate::sql::statement::IndexStatement;
use crate::storage::DurableTable;
use crate::storage::vector_index::{IndexMetric, VectorIndex, limits};

/// Runs an index statement; returns its command tag.
pub(crate) async fn execute(
    ctx: &SessionContext,
    statement: &IndexStatement,
) -> Result<&'static str> {
    match statement {
        IndexStatement::Create(create) => {
            create_index(ctx, create).await?;
            Ok("CREATE INDEX")
        }
        IndexStatement::Drop { names, if_exists } => {
            for name in names {
                drop_index(ctx, name, *if_exists).await?;
            }
            Ok("DROP INDEX")
        }
    }
}

async fn create_index(ctx: &SessionContext, create: &CreateIndex) -> Result<()> {
    match &create.using {
        Some(IndexType::Custom(method)) if method.value.eq_ignore_ascii_case("hnsw") => {}
        other => {
            let method = other.as_ref().map_or("btree".to_owned(), |m| m.to_string());
            return Err(unsupported(format!(
                "index method {method} is not supported: Sluice indexes vector columns \
                 (CREATE INDEX … USING hnsw (column))"
            )));
        }
    }
    if create.unique || create.predicate.is_some() || !create.include.is_empty() {
        return Err(unsupported(
            "UNIQUE, partial (WHERE) and INCLUDE hnsw indexes are not supported".into(),
        ));
    }
    let [column] = create.columns.as_slice() else {
        return Err(unsupported(
            "an hnsw index covers exactly one column".into(),
        ));
    };
    let ast::Expr::Identifier(column_ident) = &column.column.expr else {
        return Err(unsupported(format!(
            "an hnsw index covers a column, not the expression {}",
            column.column.expr
        )));
    };
    let column_name = ident_name(column_ident);
    let options = IndexOptions::parse(&create.with, column.operator_class.as_ref())?;

    let reference = object_name_to_table_reference(create.table_name.clone(), true)?;
    let provider = ctx.table_provider(reference.clone()).await?;
    let table = durable(&provider, &reference)?;
    let name = match &create.name {
        Some(name) => last_part(name),
        None => format!("{}_{column_name}_idx", reference.table()),
    };
    let schema = schema_of(ctx, &reference)?;
    if relation_exists(schema.as_ref(), &name).await? {
        if create.if_not_exists {
            return Ok(());
        }
        return Err(crate::storage::duplicate_relation(&name));
    }
    table
        .create_vector_index(VectorIndex {
            name,
            column: column_name,
            metric: options.metric,
            m: options.m,
            ef_construction: options.ef_construction,
            graphs: Default::default(),
        })
        .await
}

async fn drop_index(ctx: &SessionContext, name: &ObjectName, if_exists: bool) -> Result<()> {
    let reference = object_name_to_table_reference(name.clone(), true)?;
    let schema = schema_of(ctx, &reference)?;
    let index = reference.table();
    for table_name in schema.table_names() {
        let Some(provider) = schema.table(&table_name).await? else {
            continue;
        };
        let any: &dyn Any = provider.as_ref();
        if let Some(table) = any.downcast_ref::<DurableTable>()
            && table.drop_vector_index(index).await?
        {
            return Ok(());
        }
    }
    if if_exists {
        return Ok(());
    }
    Err(SluiceError::new(
        SqlState::UNDEFINED_OBJECT,
        format!("index \"{index}\" does not exist"),
    )
    .into())
}

/// Whether a table or an index of the schema is called `name`.
async fn relation_exists(schema: &dyn SchemaProvider, name: &str) -> Result<bool> {
    if schema.table_exist(name) {
        return Ok(true);
    }
    for table_name in schema.table_names() {
        let Some(provider) = schema.table(&table_name).await? else {
            continue;
        };
        let any: &dyn Any = provider.as_ref();
        if let Some(table) = any.downcast_ref::<DurableTable>()
            && table.vector_indexes().iter().any(|i| i.name == name)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn durable<'a>(
    provider: &'a Arc<dyn TableProvider>,
    reference: &TableReference,
) -> Result<&'a DurableTable> {
    let any: &dyn Any = provider.as_ref();
    any.downcast_ref::<DurableTable>().ok_or_else(|| {
        SluiceError::new(
            SqlState::WRONG_OBJECT_TYPE,
            format!("\"{reference}\" is not a Sluice table: only Sluice tables have indexes"),
        )
        .into()
    })
}

fn schema_of(ctx: &SessionContext, reference: &TableReference) -> Result<Arc<dyn SchemaProvider>> {
    let catalog = ctx
        .catalog(reference.catalog().unwrap_or(DEFAULT_CATALOG))
        .ok_or_else(|| DataFusionError::Plan(format!("no catalog for {reference}")))?;
    let schema = reference.schema().unwrap_or(DEFAULT_SCHEMA);
    catalog.schema(schema).ok_or_else(|| {
        SluiceError::new(
            SqlState::INVALID_SCHEMA_NAME,
            format!("schema \"{schema}\" does not exist"),
        )
        .into()
    })
}

fn last_part(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .map(ident_name)
        .unwrap_or_else(|| name.to_string())
}

fn unsupported(message: String) -> DataFusionError {
    SluiceError::new(SqlState::FEATURE_NOT_SUPPORTED, message).into()
}

fn invalid(message: String) -> DataFusionError {
    SluiceError::new(SqlState::INVALID_PARAMETER_VALUE, message).into()
}

/// The build options of `CREATE INDEX … WITH (…)` and the column's
/// operator class.
struct IndexOptions {
    metric: IndexMetric,
    m: usize,
    ef_construction: usize,
}

impl IndexOptions {
    fn parse(with: &[Expr], operator_class: Option<&ObjectName>) -> Result<Self> {
        let mut metric = match operator_class {
            Some(class) => Some(IndexMetric::parse(&last_part(class)).ok_or_else(|| {
                invalid(format!(
                    "operator class {class} is not an hnsw one: use vector_cosine_ops, \
                     vector_l2_ops or vector_ip_ops"
                ))
            })?),
            None => None,
        };
        let mut m = limits::DEFAULT_M;
        let mut ef_construction = limits::DEFAULT_EF_CONSTRUCTION;
        for option in with {
            let Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } = option
            else {
                return Err(invalid(format!(
                    "expected name = value in WITH, found {option}"
                )));
            };
            let Expr::Identifier(key) = left.as_ref() else {
                return Err(invalid(format!("expected an option name, found {left}")));
            };
            let value = option_value(right)?;
            match key.value.to_ascii_lowercase().as_str() {
                "metric" | "distance" => {
                    let chosen = IndexMetric::parse(&value).ok_or_else(|| {
                        invalid(format!(
                            "unknown metric '{value}': use 'cosine', 'l2' or 'ip'"
                        ))
                    })?;
                    if metric.is_some_and(|m| m != chosen) {
                        return Err(invalid(format!(
                            "metric '{value}' disagrees with the column's operator class"
                        )));
                    }
                    metric = Some(chosen);
                }
                "m" => m = bounded(&value, "m", limits::M)?,
                "ef_construction" => {
                    ef_construction = bounded(&value, "ef_construction", limits::EF_CONSTRUCTION)?
                }
                other => {
                    return Err(invalid(format!(
                        "unrecognized parameter \"{other}\": hnsw takes metric, m and \
                         ef_construction"
                    )));
                }
            }
        }
        if ef_construction < 2 * m {
            return Err(invalid(format!(
                "ef_construction ({ef_construction}) must be at least twice m ({m})"
            )));
        }
        Ok(Self {
            metric: metric.unwrap_or(IndexMetric::Cosine),
            m,
            ef_construction,
        })
    }
}

fn option_value(expr: &Expr) -> Result<String> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Ok(s.clone()),
            Value::Number(n, _) => Ok(n.to_string()),
            other => Err(invalid(format!("unexpected option value {other}"))),
        },
        Expr::Identifier(ident) => Ok(ident.value.clone()),
        other => Err(invalid(format!("unexpected option value {other}"))),
    }
}

fn bounded(value: &str, name: &str, range: std::ops::RangeInclusive<usize>) -> Result<usize> {
    value
        .parse::<usize>()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            invalid(format!(
                "value {value} out of bounds for option \"{name}\": must be from {} to {}",
                range.start(),
                range.end()
            ))
        })
}
