//! The plan that inserts rows given as text columns: COPY's rows and the
//! literal rows of `INSERT … VALUES` both arrive as text, and both are
//! converted to the table's types by whole-column casts (Sluice types by
//! their own input functions), with defaults for the columns not given.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::catalog::default_table_source::provider_as_source;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, cast, lit};
use sluice_types::SluiceType;

const SOURCE: &str = "text_rows";

/// The schema of text rows holding `columns`: one nullable Utf8 column each.
pub(crate) fn text_schema(columns: &[String]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|name| Field::new(name, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// `INSERT INTO table` of `batches`, each a set of nullable text columns
/// holding the table's `columns` in that order.
pub(crate) fn insert_text_rows(
    table: TableReference,
    provider: Arc<dyn TableProvider>,
    columns: &[String],
    batches: Vec<Vec<ArrayRef>>,
) -> Result<LogicalPlan> {
    let text_schema = text_schema(columns);
    let batches = batches
        .into_iter()
        .map(|columns| RecordBatch::try_new(Arc::clone(&text_schema), columns))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let data = MemTable::try_new(text_schema, vec![batches])?;
    insert_text_source(table, provider, columns, Arc::new(data))
}

/// `INSERT INTO table` of the rows `source` yields (in [`text_schema`] of
/// `columns`): COPY streams its rows through such a source.
pub(crate) fn insert_text_source(
    table: TableReference,
    provider: Arc<dyn TableProvider>,
    columns: &[String],
    source: Arc<dyn TableProvider>,
) -> Result<LogicalPlan> {
    let scan = LogicalPlanBuilder::scan(SOURCE, provider_as_source(source), None)?.build()?;
    let table_schema = provider.schema();
    let mut projection = Vec::with_capacity(table_schema.fields().len());
    for field in table_schema.fields() {
        let value = if columns.contains(field.name()) {
            let text = Expr::Column(Column::new(Some(SOURCE), field.name()));
            if SluiceType::of_field(field).is_some() {
                // Sluice's analyzer rule parses text into its types (with
                // their own validation and error messages).
                text
            } else {
                cast(text, field.data_type().clone())
            }
        } else {
            let default = provider
                .get_column_default(field.name())
                .cloned()
                .unwrap_or(lit(ScalarValue::Null));
            default.cast_to(field.data_type(), scan.schema())?
        };
        projection.push(value.alias(field.name()));
    }
    let rows = LogicalPlanBuilder::from(scan)
        .project(projection)?
        .build()?;
    LogicalPlanBuilder::insert_into(rows, table, provider_as_source(provider), InsertOp::Append)?
        .build()
}
