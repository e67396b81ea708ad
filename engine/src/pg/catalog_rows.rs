//! Reading and extending the rows of `pg_catalog` tables: the helpers the
//! modules that correct or add to `datafusion-pg-catalog`'s tables share.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};
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
    arrow_table(&table.schema(), table.data().iter().chain(&extra))
}

/// The OID of each name in the first argument of `args`, by `lookup`:
/// what the name-to-OID functions (`regclassin`, `regtypein`,
/// `regprocin`, `to_regclass`, `to_regproc`) share. A NULL name gives
/// NULL, and so does a name `lookup` finds nothing for (`Ok(None)`); its
/// error ends the statement.
pub(crate) fn oids_by_name(
    args: &ScalarFunctionArgs,
    mut lookup: impl FnMut(&str) -> Result<Option<u32>>,
) -> Result<ColumnarValue> {
    let rows = args.number_rows;
    let Some(names) = args.args.first() else {
        return Ok(ColumnarValue::Array(Arc::new(Int32Array::new_null(rows))));
    };
    let names = datafusion::arrow::compute::cast(&names.to_array(rows)?, &DataType::Utf8)?;
    let oids = names
        .as_string::<i32>()
        .iter()
        .map(|name| match name {
            Some(name) => Ok(lookup(name)?.and_then(|oid| i32::try_from(oid).ok())),
            None => Ok(None),
        })
        .collect::<Result<Int32Array>>()?;
    Ok(ColumnarValue::Array(Arc::new(oids)))
}

/// `table` with a copy of column `from` named `to` after it: a column
/// Postgres 15 names otherwise than the library's (17's) rows do.
pub(crate) fn with_column_copy(table: &ArrowTable, from: &str, to: &str) -> Result<ArrowTable> {
    let schema = table.schema();
    let Ok(at) = schema.index_of(from) else {
        return arrow_table(&schema, table.data());
    };
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    fields.insert(
        at + 1,
        Arc::new(schema.field(at).as_ref().clone().with_name(to)),
    );
    let copied = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let batches = table
        .data()
        .iter()
        .map(|batch| {
            let mut columns = batch.columns().to_vec();
            columns.insert(at + 1, Arc::clone(batch.column(at)));
            Ok(RecordBatch::try_new(Arc::clone(&copied), columns)?)
        })
        .collect::<Result<Vec<_>>>()?;
    arrow_table(&copied, &batches)
}

/// `batches` of `schema` as an [`ArrowTable`], which the library builds
/// from Arrow IPC only.
pub(crate) fn arrow_table<'a>(
    schema: &SchemaRef,
    batches: impl IntoIterator<Item = &'a RecordBatch>,
) -> Result<ArrowTable> {
    let mut bytes = Vec::new();
    {
        let mut writer = FileWriter::try_new(&mut bytes, schema)?;
        for batch in batches {
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

/// `pg_catalog`'s OID.
pub(crate) const PG_CATALOG_NAMESPACE: u32 = 11;

/// `pg_catalog`'s own tables and views by name, with Postgres' OIDs: the
/// `typrelid` of their row types in (the static) `pg_type`. Read once, at
/// install, by everything that must agree on them (stable OIDs,
/// `regclass`, the comment functions).
pub(crate) fn system_relation_oids(pg_type: &ArrowTable) -> Arc<HashMap<String, u32>> {
    let mut system = HashMap::new();
    for batch in pg_type.data() {
        for row in rows(batch, &["typname", "typrelid", "typnamespace"]) {
            if let (Some(name), Some(relation @ 1..), Some(PG_CATALOG_NAMESPACE)) =
                (row[0].as_text(), row[1].as_oid(), row[2].as_oid())
            {
                system.insert(name, relation);
            }
        }
    }
    Arc::new(system)
}
