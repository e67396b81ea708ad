//! Catalog functions the library lacks that psql and drivers call:
//! `pg_get_indexdef` (psql's `\d t` lists indexes with it) and
//! `pg_function_is_visible` (psql's `\df`).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::CatalogProviderList;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::pg::catalog_rows::column_i32;
use crate::pg::relations_catalog::{RelationDetails, SluiceRelations};

/// Registers the functions on `ctx`.
pub(crate) fn install(
    ctx: &SessionContext,
    catalogs: Arc<dyn CatalogProviderList>,
    details: Arc<dyn RelationDetails>,
) {
    ctx.register_udf(ScalarUDF::new_from_impl(PgGetIndexdef {
        catalogs,
        details,
        signature: Signature::variadic_any(Volatility::Stable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(PgFunctionIsVisible {
        signature: Signature::variadic_any(Volatility::Stable),
    }));
}

/// `pg_get_indexdef(index_oid [, column, pretty])`: the `CREATE INDEX`
/// statement of a Sluice index, or with a column number > 0 that column's
/// name; NULL for an OID that is not an index, as in Postgres.
#[derive(Debug)]
struct PgGetIndexdef {
    catalogs: Arc<dyn CatalogProviderList>,
    details: Arc<dyn RelationDetails>,
    signature: Signature,
}

impl PartialEq for PgGetIndexdef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.catalogs, &other.catalogs)
    }
}

impl Eq for PgGetIndexdef {}

impl std::hash::Hash for PgGetIndexdef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl ScalarUDFImpl for PgGetIndexdef {
    fn name(&self) -> &str {
        "pg_get_indexdef"
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
        let oids = arrays.first().map(column_i32).unwrap_or_default();
        let columns = arrays
            .get(1)
            .map(column_i32)
            .unwrap_or_else(|| vec![Some(0); rows]);
        let relations = SluiceRelations::gather(self.catalogs.as_ref(), self.details.as_ref());
        let definitions: StringArray = (0..rows)
            .map(|i| {
                let oid = u32::try_from(oids.get(i).copied().flatten()?).ok()?;
                let index = relations.index(oid)?;
                match columns.get(i).copied().flatten().unwrap_or(0) {
                    0 => Some(index.definition()),
                    1 => Some(index.detail.column.clone()),
                    _ => None,
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(definitions)))
    }
}

/// `pg_function_is_visible(oid)`: true. Every function Sluice has is
/// callable unqualified (there is no schema search path for functions).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgFunctionIsVisible {
    signature: Signature,
}

impl ScalarUDFImpl for PgFunctionIsVisible {
    fn name(&self) -> &str {
        "pg_function_is_visible"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(vec![
            true;
            args.number_rows
        ]))))
    }
}
