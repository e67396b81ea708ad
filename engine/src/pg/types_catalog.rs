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
use datafusion::arrow::array::{Array, AsArray, Int32Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::ArrowTable;
use sluice_types::SluiceType;
use sluice_types::wire::{CatalogType, catalog_type, catalog_type_name};

use crate::pg::catalog_rows::{
    LibraryClasses, argument_arrays, column_i32, copy_row, find_oid, read_all, rows, with_rows,
    with_type,
};

/// Replaces the `format_type` that `datafusion_pg_catalog::setup_pg_catalog`
/// installed (which must run first) with one that knows Sluice's types and
/// every type of `pg_type`.
pub(crate) fn install_format_type(ctx: &SessionContext, pg_type: &ArrowTable) {
    if let Some(library) = ctx.state().scalar_functions().get("format_type").cloned() {
        ctx.register_udf(ScalarUDF::new_from_impl(FormatType {
            signature: library.signature().clone(),
            library,
            type_names: Arc::new(TypeNames::of(pg_type)),
        }));
    }
}

/// The names `format_type` gives the types the library names only by OID
/// (`oid(600)` for `point`): as Postgres, the type's name, and for an array
/// type its element's name with `[]`.
#[derive(Debug, Default, PartialEq, Eq)]
struct TypeNames(HashMap<u32, String>);

impl TypeNames {
    fn of(pg_type: &ArrowTable) -> Self {
        let mut names = HashMap::new();
        let mut elements = Vec::new();
        for batch in pg_type.data() {
            for row in rows(batch, &["oid", "typname", "typelem", "typcategory"]) {
                let (Some(oid), Some(name)) = (row[0].as_oid(), row[1].as_text()) else {
                    continue;
                };
                // A true array type is named after its element (`_xml` is
                // `xml[]`); `int2vector`, also of category A, keeps its name.
                match (row[2].as_oid(), row[3].as_text().as_deref()) {
                    (Some(element @ 1..), Some("A")) if name.starts_with('_') => {
                        elements.push((oid, element))
                    }
                    // Names Postgres quotes: a reserved word, and `"char"`
                    // (apart from `char(n)`), also as an array's element.
                    _ if name == "any" || name == "char" => {
                        names.insert(oid, format!("\"{name}\""));
                    }
                    _ => {
                        names.insert(oid, name);
                    }
                }
            }
        }
        for (array, element) in elements {
            if let Some(name) = names.get(&element) {
                names.insert(array, format!("{name}[]"));
            }
        }
        Self(names)
    }
}

impl std::hash::Hash for TypeNames {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.len().hash(state);
    }
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

/// `float4[]`'s row in `pg_type`, the model for `_vector`'s.
const FLOAT4_ARRAY_OID: u32 = 1021;

/// `pg_type` with a row per Sluice domain, each a copy of its base type's
/// row with the domain's OID, name, `typtype = 'd'` and `typbasetype`; and
/// with `_vector`, pgvector's array type, which its psycopg2 and asyncpg
/// adapters look up with `vector` (Sluice sends no vector arrays, but an
/// adapter that cannot find the type refuses to register at all).
pub(crate) fn with_domains(pg_type: &ArrowTable) -> Result<ArrowTable> {
    let mut rows = Vec::new();
    let (batch, row) = find_oid(pg_type.data(), FLOAT4_ARRAY_OID)?;
    rows.push(copy_row(
        &batch,
        row,
        &[
            (
                "oid",
                ScalarValue::Int64(Some(i64::from(sluice_types::wire::VECTOR_ARRAY_OID))),
            ),
            ("typname", ScalarValue::from("_vector")),
            (
                "typelem",
                ScalarValue::Int64(Some(i64::from(sluice_types::wire::VECTOR_OID))),
            ),
        ],
    )?);
    for (domain, base) in domains() {
        let (batch, row) = find_oid(pg_type.data(), base)?;
        rows.push(copy_row(
            &batch,
            row,
            &[
                ("oid", ScalarValue::Int64(Some(i64::from(domain.oid)))),
                ("typname", ScalarValue::from(domain.name)),
                ("typtype", ScalarValue::from("d")),
                ("typbasetype", ScalarValue::Int64(Some(i64::from(base)))),
                ("typarray", ScalarValue::Int64(Some(0))),
                ("typelem", ScalarValue::Int64(Some(0))),
            ],
        )?);
    }
    with_rows(pg_type, rows)
}

/// `pg_attribute` with Sluice types' OIDs and modifiers.
#[derive(Debug)]
pub(crate) struct PgAttribute {
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
    /// Corrects `library`, the library's `pg_attribute`, whose `pg_class`
    /// and `pg_namespace` are in `catalog`.
    pub(crate) fn new(
        library: Arc<dyn TableProvider>,
        catalog: Arc<dyn SchemaProvider>,
        catalog_list: Arc<dyn CatalogProviderList>,
    ) -> Self {
        Self {
            library,
            catalog,
            catalog_list,
        }
    }

    /// Relation OID → (schema, name), from the same catalog's pg_class and
    /// pg_namespace (whose OIDs pg_attribute shares).
    async fn relations(&self, state: &dyn Session) -> Result<HashMap<u32, (String, String)>> {
        let classes = LibraryClasses::read(state, self.catalog.as_ref()).await?;
        Ok(classes
            .by_name
            .into_iter()
            .map(|(name, (oid, _))| (oid, name))
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

/// `format_type(oid, typmod)`: Sluice's types by name with their modifiers,
/// every other type as the library renders it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FormatType {
    library: Arc<ScalarUDF>,
    signature: Signature,
    type_names: Arc<TypeNames>,
}

/// Postgres' names for OIDs the pg_catalog library formats as `oid(n)`:
/// no type (`regtype`'s `-`, what asyncpg's introspection reads for a
/// type without elements) and `oid[]`.
fn names_library_lacks(oid: u32) -> Option<&'static str> {
    match oid {
        0 => Some("-"),
        1028 => Some("oid[]"),
        _ => None,
    }
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
        let arrays = argument_arrays(&args)?;
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
                    let oid = u32::try_from(oid).ok()?;
                    catalog_type_name(oid, typmods[i].unwrap_or(-1))
                        .or_else(|| names_library_lacks(oid).map(str::to_owned))
                });
                let named_by_library = (!library.is_null(i)).then(|| library.value(i));
                ours.or_else(|| match named_by_library {
                    Some(name) if name.starts_with("oid(") => {
                        let oid = u32::try_from(oids[i]?).ok()?;
                        self.type_names.0.get(&oid).cloned()
                    }
                    name => name.map(str::to_owned),
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(names)))
    }
}
