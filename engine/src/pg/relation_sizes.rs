//! The size functions psql's `\dt+`, `\l+` and monitoring dashboards call:
//! `pg_relation_size(oid [, fork])`, `pg_table_size(oid)`,
//! `pg_total_relation_size(oid)` and `pg_database_size(name | oid)`, from
//! what Sluice's tables keep on storage (their Parquet files). The library
//! answers 0 for every relation; these replace its functions.
//!
//! A view, a materialized view (kept in memory) and a catalog table keep
//! nothing: 0 bytes, as Postgres reports for a view. Vector indexes are not
//! counted in a table's total; an OID that names no relation is NULL, as
//! in Postgres.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::CatalogProviderList;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use futures::FutureExt;

use crate::pg::catalog_rows::{Shared, argument_arrays, column_i32};
use crate::pg::relations_catalog::RelationDetails;
use crate::pg::stable_oids::{database_oid, relation_oid};

/// Where Postgres' user objects' OIDs begin; below are system catalogs.
const FIRST_USER_OID: u32 = 16384;

/// Registers the functions on `ctx`.
pub(crate) fn install(
    ctx: &SessionContext,
    catalogs: Arc<dyn CatalogProviderList>,
    details: Arc<dyn RelationDetails>,
) {
    for kind in [
        SizeOf::Relation,
        SizeOf::Table,
        SizeOf::TotalRelation,
        SizeOf::Database,
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(RelationSize {
            kind,
            catalogs: Shared(Arc::clone(&catalogs)),
            details: Shared(Arc::clone(&details)),
            signature: Signature::variadic_any(Volatility::Volatile),
        }));
    }
}

/// A relation and what it keeps.
struct Relation {
    database: String,
    oid: u32,
    /// `schema.name`.
    qualified: String,
    bytes: u64,
}

/// Where an unqualified relation name is looked up.
const CURRENT_SCHEMA: &str = "public";

/// Which size function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SizeOf {
    Relation,
    Table,
    TotalRelation,
    Database,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct RelationSize {
    kind: SizeOf,
    catalogs: Shared<dyn CatalogProviderList>,
    details: Shared<dyn RelationDetails>,
    signature: Signature,
}

impl RelationSize {
    /// Every relation of every database.
    fn relations(&self) -> Vec<Relation> {
        let mut sizes = Vec::new();
        for catalog_name in self.catalogs.catalog_names() {
            let Some(catalog) = self.catalogs.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for table_name in schema.table_names() {
                    // Sluice's schemas answer at once (see
                    // `SluiceRelations::gather`); one that would wait is
                    // left out rather than block a synchronous function.
                    let Some(Ok(Some(table))) = schema.table(&table_name).now_or_never() else {
                        continue;
                    };
                    let bytes = self.details.stored_bytes(table.as_ref()).unwrap_or(0);
                    sizes.push(Relation {
                        database: catalog_name.clone(),
                        oid: relation_oid(&schema_name, &table_name),
                        qualified: format!("{schema_name}.{table_name}"),
                        bytes,
                    });
                }
            }
        }
        sizes
    }
}

impl ScalarUDFImpl for RelationSize {
    fn name(&self) -> &str {
        match self.kind {
            SizeOf::Relation => "pg_relation_size",
            SizeOf::Table => "pg_table_size",
            SizeOf::TotalRelation => "pg_total_relation_size",
            SizeOf::Database => "pg_database_size",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = argument_arrays(&args)?;
        let relations = self.relations();
        let sizes: Int64Array = match (self.kind, arrays.first()) {
            (_, None) => Int64Array::from(vec![None; rows]),
            (SizeOf::Database, Some(databases)) => {
                // A database is named or given by OID; one Sluice does not
                // hold (the library's `postgres`) keeps nothing.
                let names: Vec<Option<String>> = match databases.data_type() {
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                        let names = datafusion::arrow::compute::cast(databases, &DataType::Utf8)?;
                        names
                            .as_string::<i32>()
                            .iter()
                            .map(|n| n.map(str::to_owned))
                            .collect()
                    }
                    _ => column_i32(databases)
                        .iter()
                        .map(|oid| {
                            let oid = u32::try_from((*oid)?).ok()?;
                            Some(
                                self.catalogs
                                    .catalog_names()
                                    .into_iter()
                                    .find(|name| database_oid(name) == oid)
                                    .unwrap_or_default(),
                            )
                        })
                        .collect(),
                };
                names
                    .iter()
                    .map(|name| {
                        let name = name.as_deref()?;
                        let total: u64 = relations
                            .iter()
                            .filter(|r| r.database == name)
                            .map(|r| r.bytes)
                            .sum();
                        i64::try_from(total).ok()
                    })
                    .collect()
            }
            (kind, Some(oids)) => {
                let forks = match (kind, arrays.get(1)) {
                    (SizeOf::Relation, Some(forks)) => {
                        Some(datafusion::arrow::compute::cast(forks, &DataType::Utf8)?)
                    }
                    _ => None,
                };
                let forks = forks.as_ref().map(|f| f.as_string::<i32>());
                let names = match oids.data_type() {
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                        Some(datafusion::arrow::compute::cast(oids, &DataType::Utf8)?)
                    }
                    _ => None,
                };
                let oids = column_i32(oids);
                let found = |i: usize| -> Option<u64> {
                    if let Some(names) = names.as_ref() {
                        // A relation named in text (`pg_table_size('t')`,
                        // which Postgres reads as a regclass): `schema.t`,
                        // or `t` in the current schema.
                        let name = names.as_string::<i32>();
                        let name = name.is_valid(i).then(|| name.value(i))?;
                        let qualified = match name.contains('.') {
                            true => name.to_owned(),
                            false => format!("{CURRENT_SCHEMA}.{name}"),
                        };
                        return relations
                            .iter()
                            .find(|r| r.qualified == qualified)
                            .map(|r| r.bytes);
                    }
                    let oid = u32::try_from(oids.get(i).copied().flatten()?).ok()?;
                    match relations.iter().find(|r| r.oid == oid) {
                        Some(relation) => Some(relation.bytes),
                        // A system catalog: nothing on storage.
                        None if oid < FIRST_USER_OID => Some(0),
                        None => None,
                    }
                };
                (0..rows)
                    .map(|i| {
                        let bytes = found(i)?;
                        // Only the main fork holds data; Sluice has no free
                        // space or visibility maps.
                        let main = forks.is_none_or(|f| f.is_valid(i) && f.value(i) == "main");
                        i64::try_from(if main { bytes } else { 0 }).ok()
                    })
                    .collect()
            }
        };
        Ok(ColumnarValue::Array(Arc::new(sizes)))
    }
}
