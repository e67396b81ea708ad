//! Catalog functions the library lacks that psql and drivers call:
//! `pg_get_indexdef` (psql's `\d t` lists indexes with it),
//! `pg_get_viewdef` (`\d+ view`), `pg_tablespace_location` (`\db`),
//! `pg_get_serial_sequence`, OID functions taking any integer, the
//! visibility tests of `\df`, `\dT`, `\do` and the like, and the privilege
//! tests the library has no form of.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::CatalogProviderList;
use datafusion::common::types::{NativeType, logical_int32};
use datafusion::error::Result;
use datafusion::logical_expr::{
    Coercion, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignatureClass, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::pg::catalog_rows::{Shared, argument_arrays, column_i32};
use crate::pg::relations_catalog::{RelationDetails, SluiceRelations};
use crate::pg::stable_oids::relation_oid;

/// Registers the functions on `ctx`.
pub(crate) fn install(
    ctx: &SessionContext,
    catalogs: Arc<dyn CatalogProviderList>,
    details: Arc<dyn RelationDetails>,
) {
    ctx.register_udf(ScalarUDF::new_from_impl(PgGetViewdef {
        catalogs: Shared(Arc::clone(&catalogs)),
        details: Shared(Arc::clone(&details)),
        signature: Signature::variadic_any(Volatility::Stable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(PgGetIndexdef {
        catalogs: Shared(catalogs),
        details: Shared(details),
        signature: Signature::variadic_any(Volatility::Stable),
    }));
    for (name, text) in [
        ("pg_tablespace_location", Some("")),
        ("pg_get_serial_sequence", None),
    ] {
        ctx.register_udf(ConstantText::udf(
            name,
            text,
            Signature::variadic_any(Volatility::Stable),
        ));
    }
    for name in ALWAYS_TRUE {
        ctx.register_udf(ScalarUDF::new_from_impl(AlwaysTrue {
            name,
            signature: Signature::variadic_any(Volatility::Stable),
        }));
    }
}

/// The library's functions of one `int4` OID, which a client calls with an
/// integer literal (`pg_get_userbyid(10)`): Sluice reads integer literals
/// as `bigint`, which their exact signatures refuse.
const OID_FUNCTIONS: [&str; 5] = [
    "pg_get_userbyid",
    "pg_table_is_visible",
    "pg_relation_is_publishable",
    "pg_get_statisticsobjdef_columns",
    "pg_stat_get_numscans",
];

/// Re-registers each of [`OID_FUNCTIONS`] to take any integer, cast to
/// `int4` before the library's function runs.
pub(crate) fn widen_oid_arguments(ctx: &SessionContext) {
    for name in OID_FUNCTIONS {
        if let Some(library) = ctx.state().scalar_functions().get(name).cloned() {
            ctx.register_udf(ScalarUDF::new_from_impl(IntegerOid {
                library,
                signature: Signature::coercible(
                    vec![Coercion::new_implicit(
                        TypeSignatureClass::Native(logical_int32()),
                        vec![TypeSignatureClass::Integer],
                        NativeType::Int32,
                    )],
                    Volatility::Stable,
                ),
            }));
        }
    }
}

/// One of [`OID_FUNCTIONS`], taking any integer.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IntegerOid {
    library: Arc<ScalarUDF>,
    signature: Signature,
}

impl ScalarUDFImpl for IntegerOid {
    fn name(&self) -> &str {
        self.library.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        self.library.return_type(&[DataType::Int32])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let oids = args
            .args
            .iter()
            .map(|a| {
                let array = datafusion::arrow::compute::cast(&a.to_array(rows)?, &DataType::Int32)?;
                Ok(ColumnarValue::Array(array))
            })
            .collect::<Result<Vec<_>>>()?;
        let arg_fields = args
            .arg_fields
            .iter()
            .map(|f| Arc::new(f.as_ref().clone().with_data_type(DataType::Int32)))
            .collect();
        self.library.invoke_with_args(ScalarFunctionArgs {
            args: oids,
            arg_fields,
            ..args
        })
    }
}

/// Tests that hold for every object Sluice has:
/// - visibility: every function, type, operator, collation and text search
///   object is found unqualified (they are all `pg_catalog`'s, which is
///   always on the search path);
/// - privileges on columns, functions, sequences, types and languages:
///   Sluice grants no privileges per object (every role may use every
///   function and column; what it does restrict, reading server files or
///   creating models, goes by predefined roles, checked per statement).
///   The library already answers `has_table_privilege` and the schema and
///   database forms alike.
const ALWAYS_TRUE: [&str; 17] = [
    "pg_function_is_visible",
    "pg_type_is_visible",
    "pg_operator_is_visible",
    "pg_opclass_is_visible",
    "pg_opfamily_is_visible",
    "pg_collation_is_visible",
    "pg_conversion_is_visible",
    "pg_statistics_obj_is_visible",
    "pg_ts_parser_is_visible",
    "pg_ts_dict_is_visible",
    "pg_ts_template_is_visible",
    "pg_ts_config_is_visible",
    "has_column_privilege",
    "has_function_privilege",
    "has_sequence_privilege",
    "has_type_privilege",
    "has_language_privilege",
];

/// `pg_get_indexdef(index_oid [, column, pretty])`: the `CREATE INDEX`
/// statement of a Sluice index, or with a column number > 0 that column's
/// name; NULL for an OID that is not an index, as in Postgres.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgGetIndexdef {
    catalogs: Shared<dyn CatalogProviderList>,
    details: Shared<dyn RelationDetails>,
    signature: Signature,
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
        let arrays = argument_arrays(&args)?;
        let oids = arrays.first().map(column_i32).unwrap_or_default();
        let columns = arrays
            .get(1)
            .map(column_i32)
            .unwrap_or_else(|| vec![Some(0); rows]);
        let relations = SluiceRelations::gather(&*self.catalogs, &*self.details);
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

/// A function whose answer is the same text for every row:
/// - `pg_tablespace_location(oid)` (psql's `\db`): empty, as Postgres
///   answers for its two built-in tablespaces, the only ones there are;
/// - `pg_get_serial_sequence(table, column)` (ORMs reading the sequence
///   behind a key): NULL, Sluice has no sequences;
/// - `getdatabaseencoding()` and `pg_client_encoding()`: `UTF8`
///   ([`crate::pg::encodings`]).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConstantText {
    name: &'static str,
    text: Option<&'static str>,
    signature: Signature,
}

impl ConstantText {
    /// The function `name`, answering `text` (NULL for `None`).
    pub(crate) fn udf(
        name: &'static str,
        text: Option<&'static str>,
        signature: Signature,
    ) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            name,
            text,
            signature,
        })
    }
}

impl ScalarUDFImpl for ConstantText {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let texts: StringArray = (0..args.number_rows).map(|_| self.text).collect();
        Ok(ColumnarValue::Array(Arc::new(texts)))
    }
}

/// One of [`ALWAYS_TRUE`]: true for every non-NULL object.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AlwaysTrue {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for AlwaysTrue {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = argument_arrays(&args)?;
        // Postgres answers NULL for a NULL argument (the functions are
        // strict).
        let answers: BooleanArray = (0..rows)
            .map(|i| {
                arrays
                    .iter()
                    .all(|a| a.logical_nulls().is_none_or(|nulls| nulls.is_valid(i)))
                    .then_some(true)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(answers)))
    }
}

/// `pg_get_viewdef(view_oid [, pretty])`: the query of a view or
/// materialized view, ending in `;` as Postgres writes it; NULL for an OID
/// that is not a view's.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgGetViewdef {
    catalogs: Shared<dyn CatalogProviderList>,
    details: Shared<dyn RelationDetails>,
    signature: Signature,
}

impl ScalarUDFImpl for PgGetViewdef {
    fn name(&self) -> &str {
        "pg_get_viewdef"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let oids = match args.args.first() {
            Some(oids) => column_i32(&oids.to_array(rows)?),
            None => vec![None; rows],
        };
        let relations = SluiceRelations::gather(&*self.catalogs, &*self.details);
        let views: Vec<(u32, &str)> = relations
            .views
            .iter()
            .chain(&relations.plain_views)
            .filter_map(|view| {
                let definition = view.definition.as_deref()?;
                Some((relation_oid(&view.schema, &view.name), definition))
            })
            .collect();
        let definitions: StringArray = oids
            .iter()
            .map(|oid| {
                let oid = u32::try_from((*oid)?).ok()?;
                let (_, query) = views.iter().find(|(o, _)| *o == oid)?;
                Some(format!(" {};", query.trim_end_matches(';')))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(definitions)))
    }
}
