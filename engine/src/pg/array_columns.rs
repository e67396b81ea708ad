//! Catalog columns the library ships as the text of Postgres arrays
//! (`{postgres=X/postgres}`), read as arrays, which is what clients'
//! queries take them for: psql's `\df+`, `\dT+` and `\dn+` pass the
//! access-privilege columns (`proacl`, `typacl`, `nspacl`, …) to
//! `array_to_string`, `\dy` and `\drds` map `evttags` and `setconfig`,
//! `\dp` compares OIDs with `ANY(polroles)`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, AsArray, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_pg_catalog::pg_catalog::ArrowTable;

use crate::pg::catalog_rows::{arrow_table, read_all};

/// The element type a text column is read as, if it is an array column.
type ArrayElement<'a> = dyn Fn(&Field) -> Option<DataType> + 'a;

/// An access-privilege column kept as text: an array of ACL items.
fn acl_column(field: &Field) -> Option<DataType> {
    field.name().ends_with("acl").then_some(DataType::Utf8)
}

/// `table` with its access-privilege columns as text arrays.
pub(crate) fn with_acl_lists(table: &ArrowTable) -> Result<ArrowTable> {
    with_array_columns(table, &acl_column)
}

/// `table` with the named text columns as arrays of the given element
/// types.
pub(crate) fn with_named_array_columns(
    table: &ArrowTable,
    columns: &[(&str, DataType)],
) -> Result<ArrowTable> {
    with_array_columns(table, &|field: &Field| {
        columns
            .iter()
            .find(|(name, _)| field.name() == name)
            .map(|(_, element)| element.clone())
    })
}

/// `table` with the text columns `element` picks as arrays.
fn with_array_columns(table: &ArrowTable, element: &ArrayElement<'_>) -> Result<ArrowTable> {
    let Some(arrays) = arrays_schema(&table.schema(), element) else {
        return Ok(table.clone());
    };
    let batches = table
        .data()
        .iter()
        .map(|batch| as_arrays(batch, &arrays))
        .collect::<Result<Vec<_>>>()?;
    arrow_table(&arrays, &batches)
}

/// `schema` with the text columns `element` picks as arrays; `None` when
/// it picks none.
fn arrays_schema(schema: &SchemaRef, element: &ArrayElement<'_>) -> Option<SchemaRef> {
    let picked = |field: &Field| {
        (field.data_type() == &DataType::Utf8)
            .then(|| element(field))
            .flatten()
    };
    if !schema.fields().iter().any(|f| picked(f).is_some()) {
        return None;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match picked(f) {
            Some(element) => Field::new(
                f.name(),
                DataType::List(Arc::new(Field::new_list_field(element, true))),
                true,
            ),
            None => f.as_ref().clone(),
        })
        .collect();
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

/// `batch` in `arrays`, the schema [`arrays_schema`] made of its own: each
/// column whose type changed is parsed from array text and cast to it.
fn as_arrays(batch: &RecordBatch, arrays: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(arrays.fields())
        .map(|(column, wanted)| {
            if column.data_type() == wanted.data_type() {
                return Ok(Arc::clone(column));
            }
            let texts = array_texts(column.as_string::<i32>());
            Ok(datafusion::arrow::compute::cast(
                &texts,
                wanted.data_type(),
            )?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(arrays), columns)?)
}

/// Postgres array texts (`{a,b}`) as lists of their items' texts; an item's
/// double quotes are dropped (no built-in row has a quoted item).
fn array_texts(texts: &StringArray) -> ArrayRef {
    let mut lists = ListBuilder::new(StringBuilder::new());
    for text in texts {
        match text {
            None => lists.append(false),
            Some(text) => {
                let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
                for item in inner.split(',').filter(|i| !i.is_empty()) {
                    lists.values().append_value(item.trim_matches('"'));
                }
                lists.append(true);
            }
        }
    }
    Arc::new(lists.finish())
}

/// `table` (one the library builds per query, like `pg_namespace`) with its
/// access-privilege text columns read as text arrays; `table` itself when
/// it has none.
pub(crate) fn with_acl_list_columns(table: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
    match arrays_schema(&table.schema(), &acl_column) {
        Some(arrays) => Arc::new(AclListTable {
            inner: table,
            arrays,
        }),
        None => table,
    }
}

/// See [`with_acl_list_columns`].
#[derive(Debug)]
struct AclListTable {
    inner: Arc<dyn TableProvider>,
    arrays: SchemaRef,
}

#[async_trait]
impl TableProvider for AclListTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.arrays)
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batches = read_all(state, self.inner.as_ref())
            .await?
            .iter()
            .map(|batch| as_arrays(batch, &self.arrays))
            .collect::<Result<Vec<_>>>()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, ListArray};

    use super::*;

    #[test]
    fn array_texts_parse_into_lists() {
        let texts = StringArray::from(vec![
            Some("{postgres=X/postgres,=U/postgres}"),
            Some("{}"),
            None,
        ]);
        let lists = array_texts(&texts);
        let lists = lists.as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(lists.value(0).len(), 2);
        assert_eq!(lists.value(1).len(), 0);
        assert!(lists.is_null(2));
    }
}
