//! Sluice's types in `pg_catalog`, so psql's `\d` and drivers' catalog
//! queries show `vector(384)`, `tensor(float32,[3,224,224])`, `image`, …
//! instead of the storage type.
//!
//! `datafusion-pg-catalog` derives `pg_attribute.atttypid` from a column's
//! Arrow storage type alone (field metadata, where Sluice types live, is not
//! consulted) and has no hook for it, so this module wraps its schema:
//! - `pg_type` gains `tensor`, `image`, `audio` and `object_ref` as domains
//!   (over `json`, `bytea`, `bytea` and `json`: Postgres announces a domain
//!   column as its base type, which is what Sluice sends on the wire);
//! - `pg_attribute` is the library's, with each Sluice-typed column's type
//!   OID and type modifier corrected from the table's own schema;
//! - `format_type(oid, typmod)` renders those types with their modifiers.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{DataType, Int32Type, SchemaRef};
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{
    ArrowTable, PgCatalogSchemaProvider, PgCatalogStaticTables,
};
use sluice_types::SluiceType;
use sluice_types::wire::{CatalogType, catalog_type, catalog_type_name};

use crate::context::DEFAULT_CATALOG;

/// Replaces the `pg_catalog` schema and `format_type` that
/// `datafusion_pg_catalog::setup_pg_catalog` installed (which must run
/// first, for its other functions).
pub(crate) fn install(ctx: &SessionContext) -> Result<()> {
    let catalog_list = Arc::clone(ctx.state().catalog_list());
    let mut tables = PgCatalogStaticTables::try_new()?;
    tables.pg_type = Arc::new(with_domains(&tables.pg_type)?);
    let inner = Arc::new(PgCatalogSchemaProvider::try_new(
        Arc::clone(&catalog_list),
        Arc::new(tables),
        EmptyContextProvider,
    )?);
    let schema = Arc::new(SluicePgCatalog {
        inner,
        catalog_list,
    });
    ctx.catalog(DEFAULT_CATALOG)
        .ok_or_else(|| DataFusionError::Internal(format!("catalog {DEFAULT_CATALOG} missing")))?
        .register_schema("pg_catalog", schema)?;
    if let Some(library) = ctx.state().scalar_functions().get("format_type").cloned() {
        ctx.register_udf(ScalarUDF::new_from_impl(FormatType {
            signature: library.signature().clone(),
            library,
        }));
    }
    Ok(())
}

/// The domains Sluice adds to `pg_type`, with their base type's OID.
fn domains() -> Vec<(CatalogType, u32)> {
    [
        (
            SluiceType::Tensor(sluice_types::tensor::TensorElement::Float32, None),
            114,
        ),
        (SluiceType::Image, 17),
        (SluiceType::Audio, 17),
        (SluiceType::ObjectRef, 114),
    ]
    .into_iter()
    .map(|(ty, base)| (catalog_type(ty), base))
    .collect()
}

/// `pg_type` with a row per Sluice domain, each a copy of its base type's
/// row with the domain's OID, name, `typtype = 'd'` and `typbasetype`.
fn with_domains(pg_type: &ArrowTable) -> Result<ArrowTable> {
    let schema = pg_type.schema();
    let oid_column = schema.index_of("oid")?;
    let mut batches = pg_type.data().to_vec();
    for (domain, base) in domains() {
        let template = batches.iter().find_map(|batch| {
            let oids = batch.column(oid_column);
            (0..oids.len())
                .find(|&i| oid_at(oids.as_ref(), i) == Some(base))
                .map(|i| (batch.clone(), i))
        });
        let Some((batch, row)) = template else {
            return Err(DataFusionError::Internal(format!(
                "pg_type has no row for OID {base}"
            )));
        };
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let value = match field.name().as_str() {
                    "oid" => Some(ScalarValue::Int64(Some(i64::from(domain.oid)))),
                    "typname" => Some(ScalarValue::Utf8(Some(domain.name.to_owned()))),
                    "typtype" => Some(ScalarValue::Utf8(Some("d".to_owned()))),
                    "typbasetype" => Some(ScalarValue::Int64(Some(i64::from(base)))),
                    "typarray" | "typelem" => Some(ScalarValue::Int64(Some(0))),
                    _ => None,
                };
                match value {
                    Some(v) => v.cast_to(field.data_type())?.to_array_of_size(1),
                    None => Ok(batch.column(i).slice(row, 1)),
                }
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        batches.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
    }
    // `ArrowTable` is built from Arrow IPC only.
    let mut bytes = Vec::new();
    {
        let mut writer = FileWriter::try_new(&mut bytes, &schema)?;
        for batch in &batches {
            writer.write(batch)?;
        }
        writer.finish()?;
    }
    ArrowTable::from_ipc_data(bytes)
}

fn oid_at(array: &dyn Array, i: usize) -> Option<u32> {
    let value = ScalarValue::try_from_array(array, i).ok()?;
    match value.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(Some(v)) => u32::try_from(v).ok(),
        _ => None,
    }
}

/// The library's `pg_catalog` with `pg_attribute` corrected.
#[derive(Debug)]
struct SluicePgCatalog {
    inner: Arc<dyn SchemaProvider>,
    catalog_list: Arc<dyn CatalogProviderList>,
}

#[async_trait]
impl SchemaProvider for SluicePgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
        if !name.eq_ignore_ascii_case("pg_attribute") {
            return Ok(table);
        }
        Ok(table.map(|library| {
            Arc::new(PgAttribute {
                library,
                catalog: Arc::clone(&self.inner),
                catalog_list: Arc::clone(&self.catalog_list),
            }) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// `pg_attribute` with Sluice types' OIDs and modifiers.
#[derive(Debug)]
struct PgAttribute {
    library: Arc<dyn TableProvider>,
    catalog: Arc<dyn SchemaProvider>,
    catalog_list: Arc<dyn CatalogProviderList>,
}

#[async_trait]
impl TableProvider for PgAttribute {
    fn schema(&self) -> SchemaRef {
        self.library.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let attributes = read_all(state, self.library.as_ref()).await?;
        let relations = self.relations(state).await?;
        let mut patched = Vec::with_capacity(attributes.len());
        for batch in attributes {
            patched.push(self.patch(batch, &relations).await?);
        }
        Ok(MemorySourceConfig::try_new_exec(
            &[patched],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

impl PgAttribute {
    /// Relation OID → (schema, name), from the same catalog's pg_class and
    /// pg_namespace (whose OIDs pg_attribute shares).
    async fn relations(&self, state: &dyn Session) -> Result<HashMap<u32, (String, String)>> {
        let table = |name: &'static str| async move {
            self.catalog
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
        Ok(read_all(state, table("pg_class").await?.as_ref())
            .await?
            .iter()
            .flat_map(|batch| rows(batch, &["oid", "relname", "relnamespace"]))
            .filter_map(|row| {
                let schema = namespaces.get(&row[2].as_oid()?)?.clone();
                Some((row[0].as_oid()?, (schema, row[1].as_text()?)))
            })
            .collect())
    }

    async fn patch(
        &self,
        batch: RecordBatch,
        relations: &HashMap<u32, (String, String)>,
    ) -> Result<RecordBatch> {
        let schema = batch.schema();
        let (Ok(typid_at), Ok(typmod_at)) =
            (schema.index_of("atttypid"), schema.index_of("atttypmod"))
        else {
            return Ok(batch);
        };
        let mut typids: Vec<Option<i32>> = column_i32(batch.column(typid_at));
        let mut typmods: Vec<Option<i32>> = column_i32(batch.column(typmod_at));
        let mut changed = false;
        let mut schemas: HashMap<u32, Option<SchemaRef>> = HashMap::new();
        for (i, row) in rows(&batch, &["attrelid", "attnum"])
            .into_iter()
            .enumerate()
        {
            let (Some(relid), Some(attnum)) = (row[0].as_oid(), row[1].as_oid()) else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = schemas.entry(relid) {
                slot.insert(match relations.get(&relid) {
                    Some((schema, name)) => self.table_schema(schema, name).await,
                    None => None,
                });
            }
            let field = schemas
                .get(&relid)
                .and_then(|s| s.as_ref())
                .and_then(|s| s.fields().get((attnum as usize).checked_sub(1)?).cloned());
            if let Some(ty) = field.as_deref().and_then(SluiceType::of_field) {
                let catalog = catalog_type(ty);
                typids[i] = Some(catalog.oid as i32);
                typmods[i] = Some(catalog.typmod);
                changed = true;
            }
        }
        if !changed {
            return Ok(batch);
        }
        let mut columns = batch.columns().to_vec();
        columns[typid_at] = with_type(Int32Array::from(typids), batch.column(typid_at))?;
        columns[typmod_at] = with_type(Int32Array::from(typmods), batch.column(typmod_at))?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    async fn table_schema(&self, schema: &str, name: &str) -> Option<SchemaRef> {
        for catalog in self.catalog_list.catalog_names() {
            let provider = self.catalog_list.catalog(&catalog)?.schema(schema);
            if let Some(provider) = provider
                && let Ok(Some(table)) = provider.table(name).await
            {
                return Some(table.schema());
            }
        }
        None
    }
}

/// Every batch of `table`.
async fn read_all(state: &dyn Session, table: &dyn TableProvider) -> Result<Vec<RecordBatch>> {
    let plan = table.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

/// A catalog cell, read leniently (catalog columns are int32, int64 or
/// oid-typed, depending on the table).
struct Cell(ScalarValue);

impl Cell {
    fn as_oid(&self) -> Option<u32> {
        match self.0.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(Some(v)) => u32::try_from(v).ok(),
            _ => None,
        }
    }

    fn as_text(&self) -> Option<String> {
        match self.0.cast_to(&DataType::Utf8).ok()? {
            ScalarValue::Utf8(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// The named columns of every row of `batch` (no rows when one is missing).
fn rows(batch: &RecordBatch, names: &[&str]) -> Vec<Vec<Cell>> {
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

fn column_i32(array: &ArrayRef) -> Vec<Option<i32>> {
    match datafusion::arrow::compute::cast(array, &DataType::Int32) {
        Ok(ints) => ints.as_primitive::<Int32Type>().iter().collect(),
        Err(_) => vec![None; array.len()],
    }
}

/// `values` in the type (and field) of `like`.
fn with_type(values: Int32Array, like: &ArrayRef) -> Result<ArrayRef> {
    if like.data_type() == &DataType::Int32 {
        return Ok(Arc::new(values));
    }
    Ok(datafusion::arrow::compute::cast(&values, like.data_type())
        .unwrap_or_else(|_| new_null_array(like.data_type(), like.len())))
}

/// `format_type(oid, typmod)`: Sluice's types by name with their modifiers,
/// every other type as the library renders it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FormatType {
    library: Arc<ScalarUDF>,
    signature: Signature,
}

impl ScalarUDFImpl for FormatType {
    fn name(&self) -> &str {
        "format_type"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let library = self.library.invoke_with_args(args)?.to_array(rows)?;
        let (Some(oids), Some(typmods)) = (arrays.first(), arrays.get(1)) else {
            return Ok(ColumnarValue::Array(library));
        };
        let oids = column_i32(oids);
        let typmods = column_i32(typmods);
        let library = datafusion::arrow::compute::cast(&library, &DataType::Utf8)?;
        let library = library.as_string::<i32>();
        let names: datafusion::arrow::array::StringArray = (0..rows)
            .map(|i| {
                let ours = oids[i].and_then(|oid| {
                    catalog_type_name(u32::try_from(oid).ok()?, typmods[i].unwrap_or(-1))
                });
                ours.or_else(|| (!library.is_null(i)).then(|| library.value(i).to_owned()))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(names)))
    }
}
