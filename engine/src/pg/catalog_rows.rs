//! Reading and extending the rows of `pg_catalog` tables: the helpers the
//! modules that correct or add to `datafusion-pg-catalog`'s tables share.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
    new_null_array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::collect;
use datafusion_pg_catalog::pg_catalog::ArrowTable;

/// Every batch of `table`.
pub(crate) async fn read_all(
    state: &dyn Session,
    table: &dyn TableProvider,
) -> Result<Vec<RecordBatch>> {
    let plan = table.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

/// A catalog cell, read leniently (catalog columns are int32, int64 or
/// oid-typed, depending on the table).
pub(crate) struct Cell(ScalarValue);

impl Cell {
    pub(crate) fn as_oid(&self) -> Option<u32> {
        match self.0.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(Some(v)) => u32::try_from(v).ok(),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self.0 {
            ScalarValue::Boolean(value) => value,
            _ => None,
        }
    }

    pub(crate) fn as_text(&self) -> Option<String> {
        match self.0.cast_to(&DataType::Utf8).ok()? {
            ScalarValue::Utf8(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// The named columns of every row of `batch` (no rows when one is missing).
pub(crate) fn rows(batch: &RecordBatch, names: &[&str]) -> Vec<Vec<Cell>> {
    let Some(columns) = names
        .iter()
        .map(|n| batch.column_by_name(n).cloned())
        .collect::<Option<Vec<ArrayRef>>>()
    else {
        return Vec::new();
    };
    (0..batch.num_rows())
        .map(|i| {
            columns
                .iter()
                .map(|c| Cell(ScalarValue::try_from_array(c, i).unwrap_or(ScalarValue::Null)))
                .collect()
        })
        .collect()
}

pub(crate) fn column_i32(array: &ArrayRef) -> Vec<Option<i32>> {
    match datafusion::arrow::compute::cast(array, &DataType::Int32) {
        Ok(ints) => ints.as_primitive::<Int32Type>().iter().collect(),
        Err(_) => vec![None; array.len()],
    }
}

/// `values` in the type (and field) of `like`.
pub(crate) fn with_type(values: Int32Array, like: &ArrayRef) -> Result<ArrayRef> {
    if like.data_type() == &DataType::Int32 {
        return Ok(Arc::new(values));
    }
    Ok(datafusion::arrow::compute::cast(&values, like.data_type())
        .unwrap_or_else(|_| new_null_array(like.data_type(), like.len())))
}

/// The OID at row `i` of an integer column of any width.
pub(crate) fn oid_at(array: &dyn Array, i: usize) -> Option<u32> {
    let value = ScalarValue::try_from_array(array, i).ok()?;
    match value.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(Some(v)) => u32::try_from(v).ok(),
        _ => None,
    }
}

/// A one-row batch: row `row` of `batch` with the named columns replaced
/// (each value cast to its column's type; names the schema lacks are
/// ignored, so a library upgrade that drops a column is not an error).
pub(crate) fn copy_row(
    batch: &RecordBatch,
    row: usize,
    overrides: &[(&str, ScalarValue)],
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(
            |(i, field)| match overrides.iter().find(|(name, _)| name == field.name()) {
                Some((_, value)) => value.cast_to(field.data_type())?.to_array_of_size(1),
                None => Ok(batch.column(i).slice(row, 1)),
            },
        )
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The first row of `batches` whose `oid` is `oid`, as (batch, row).
pub(crate) fn find_oid(batches: &[RecordBatch], oid: u32) -> Result<(RecordBatch, usize)> {
    batches
        .iter()
        .find_map(|batch| {
            let oids = batch.column_by_name("oid")?;
            (0..oids.len())
                .find(|&i| oid_at(oids.as_ref(), i) == Some(oid))
                .map(|i| (batch.clone(), i))
        })
        .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog has no row for OID {oid}")))
}

/// `table` with `extra` batches after its own, as a new [`ArrowTable`]
/// (which the library builds from Arrow IPC only).
pub(crate) fn with_rows(table: &ArrowTable, extra: Vec<RecordBatch>) -> Result<ArrowTable> {
    let schema: SchemaRef = table.schema();
    let mut bytes = Vec::new();
    {
        let mut writer = FileWriter::try_new(&mut bytes, &schema)?;
        for batch in table.data().iter().chain(&extra) {
            writer.write(batch)?;
        }
        writer.finish()?;
    }
    ArrowTable::from_ipc_data(bytes)
}

/// The library's `pg_class` and `pg_namespace`, read once per query.
pub(crate) struct LibraryClasses {
    pub batches: Vec<RecordBatch>,
    /// (schema, name) → (relation OID, namespace OID).
    pub by_name: HashMap<(String, String), (u32, u32)>,
}

impl LibraryClasses {
    pub(crate) async fn read(state: &dyn Session, library: &dyn SchemaProvider) -> Result<Self> {
        let table = |name: &'static str| async move {
            library
                .table(name)
                .await?
                .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog.{name} missing")))
        };
        let namespaces: HashMap<u32, String> =
            read_all(state, table("pg_namespace").await?.as_ref())
                .await?
                .iter()
                .flat_map(|batch| rows(batch, &["oid", "nspname"]))
                .filter_map(|row| Some((row[0].as_oid()?, row[1].as_text()?)))
                .collect();
        let batches = read_all(state, table("pg_class").await?.as_ref()).await?;
        let by_name = batches
            .iter()
            .flat_map(|batch| rows(batch, &["oid", "relname", "relnamespace"]))
            .filter_map(|row: Vec<Cell>| {
                let namespace = row[2].as_oid()?;
                let schema = namespaces.get(&namespace)?.clone();
                Some(((schema, row[1].as_text()?), (row[0].as_oid()?, namespace)))
            })
            .collect();
        Ok(Self { batches, by_name })
    }

    /// The (schema, name) of every row of `batch`.
    pub(crate) fn names(&self, batch: &RecordBatch) -> Vec<Option<(String, String)>> {
        let by_oid: HashMap<u32, &(String, String)> = self
            .by_name
            .iter()
            .map(|(name, (oid, _))| (*oid, name))
            .collect();
        rows(batch, &["oid"])
            .iter()
            .map(|row| {
                row[0]
                    .as_oid()
                    .and_then(|oid| by_oid.get(&oid).map(|n| (*n).clone()))
            })
            .collect()
    }

    /// The library's row of a relation, as (batch, row).
    pub(crate) fn row_of(&self, schema: &str, name: &str) -> Option<(RecordBatch, usize)> {
        let (oid, _) = self.by_name.get(&(schema.to_owned(), name.to_owned()))?;
        find_oid(&self.batches, *oid).ok()
    }
}

/// `table` with its access-privilege columns (`proacl`, `typacl`, …), which
/// the library ships as the text of Postgres arrays (`{postgres=X/postgres}`),
/// as text arrays: psql's `\df+` and `\dT+` pass them to `array_to_string`.
pub(crate) fn with_acl_lists(table: &ArrowTable) -> Result<ArrowTable> {
    let Some(listed) = acl_listed_schema(&table.schema()) else {
        return Ok(table.clone());
    };
    let mut bytes = Vec::new();
    {
        let mut writer = FileWriter::try_new(&mut bytes, &listed)?;
        for batch in table.data() {
            writer.write(&acl_listed(batch, &listed)?)?;
        }
        writer.finish()?;
    }
    ArrowTable::from_ipc_data(bytes)
}

/// Whether `field` is an access-privilege column kept as text.
fn is_acl_text(field: &Field) -> bool {
    field.name().ends_with("acl") && field.data_type() == &DataType::Utf8
}

/// `schema` with its access-privilege text columns as text arrays; `None`
/// when it has none.
pub(crate) fn acl_listed_schema(schema: &SchemaRef) -> Option<SchemaRef> {
    if !schema.fields().iter().any(|f| is_acl_text(f)) {
        return None;
    }
    let list_type = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match is_acl_text(f) {
            true => Field::new(f.name(), list_type.clone(), true),
            false => f.as_ref().clone(),
        })
        .collect();
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

/// `batch` in `listed`, the schema [`acl_listed_schema`] made of its own.
pub(crate) fn acl_listed(batch: &RecordBatch, listed: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| match is_acl_text(field) {
            true => acl_list(column.as_string::<i32>()),
            false => Arc::clone(column),
        })
        .collect();
    Ok(RecordBatch::try_new(Arc::clone(listed), columns)?)
}

/// Postgres array texts of ACL items as lists; an item with a quoted role
/// name loses its quotes (no built-in row has one).
fn acl_list(texts: &StringArray) -> ArrayRef {
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
    match acl_listed_schema(&table.schema()) {
        Some(listed) => Arc::new(AclListTable {
            inner: table,
            listed,
        }),
        None => table,
    }
}

/// See [`with_acl_list_columns`].
#[derive(Debug)]
struct AclListTable {
    inner: Arc<dyn TableProvider>,
    listed: SchemaRef,
}

#[async_trait::async_trait]
impl TableProvider for AclListTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.listed)
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let batches = read_all(state, self.inner.as_ref())
            .await?
            .iter()
            .map(|batch| acl_listed(batch, &self.listed))
            .collect::<Result<Vec<_>>>()?;
        Ok(
            datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
                &[batches],
                self.schema(),
                projection.cloned(),
            )?,
        )
    }
}

/// Data a catalog function holds, compared by identity: DataFusion wants
/// every function comparable and hashable, and two instances are the same
/// function when they read the same data.
#[derive(Debug)]
pub(crate) struct Shared<T: ?Sized>(pub Arc<T>);

impl<T: ?Sized> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: ?Sized> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T: ?Sized> Eq for Shared<T> {}

impl<T: ?Sized> std::hash::Hash for Shared<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).cast::<()>().hash(state);
    }
}

impl<T: ?Sized> std::ops::Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The arguments of a function call as arrays of the call's row count
/// (`ColumnarValue::values_to_arrays` makes all-constant ones one row long).
pub(crate) fn argument_arrays(
    args: &datafusion::logical_expr::ScalarFunctionArgs,
) -> Result<Vec<ArrayRef>> {
    args.args
        .iter()
        .map(|a| a.to_array(args.number_rows))
        .collect()
}

/// `table` with the named text columns, which the library ships as the
/// text of Postgres arrays, as arrays of the given element types: psql's
/// `\dp` compares an OID with `ANY(pg_policy.polroles)`, `\dy` and `\drds`
/// map `evttags` and `setconfig`.
pub(crate) fn with_array_columns(
    table: &ArrowTable,
    columns: &[(&str, DataType)],
) -> Result<ArrowTable> {
    let schema = table.schema();
    let element_of = |field: &Field| {
        columns
            .iter()
            .find(|(name, _)| field.name() == name && field.data_type() == &DataType::Utf8)
            .map(|(_, element)| element.clone())
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match element_of(f) {
            Some(element) => Field::new(
                f.name(),
                DataType::List(Arc::new(Field::new_list_field(element, true))),
                true,
            ),
            None => f.as_ref().clone(),
        })
        .collect();
    let arrays = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let mut bytes = Vec::new();
    {
        let mut writer = FileWriter::try_new(&mut bytes, &arrays)?;
        for batch in table.data() {
            let columns = schema
                .fields()
                .iter()
                .zip(batch.columns())
                .zip(arrays.fields())
                .map(|((field, column), wanted)| match element_of(field) {
                    Some(_) => Ok(datafusion::arrow::compute::cast(
                        &acl_list(column.as_string::<i32>()),
                        wanted.data_type(),
                    )?),
                    None => Ok(Arc::clone(column)),
                })
                .collect::<Result<Vec<_>>>()?;
            writer.write(&RecordBatch::try_new(Arc::clone(&arrays), columns)?)?;
        }
        writer.finish()?;
    }
    ArrowTable::from_ipc_data(bytes)
}
