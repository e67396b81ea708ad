//! Postgres compatibility: the `pg_catalog` schema and the catalog functions
//! that psql, drivers and ORMs query, from `datafusion-pg-catalog`.
//!
//! We borrow that crate rather than writing catalog tables by hand: it tracks
//! what real clients send (psql's `\d` queries, JDBC metadata, DBeaver).
//! What it cannot know (Sluice's types, indexes, materialized views) is
//! added by wrapping its tables ([`crate::pg::catalog_schema`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::context::DEFAULT_CATALOG;
use crate::pg::array_columns::{with_acl_lists, with_named_array_columns};
use crate::pg::catalog_rows::{system_relation_oids, with_column_copy};
use crate::pg::catalog_schema::SluicePgCatalog;
use crate::pg::relations_catalog::{RelationDetails, RelationsSource, with_access_methods};
use crate::pg::roles_catalog::RolesProvider;
use crate::pg::{
    catalog_functions, descriptions, encodings, function_signatures, oid_arrays, regclass, regproc,
    regtype, relation_sizes, types_catalog,
};
use crate::roles::RoleCatalog;

/// Registers `pg_catalog` and the Postgres catalog functions on `ctx`;
/// `details` tells which relations are materialized views and which
/// tables have indexes, `roles` which roles exist.
pub(crate) fn install(
    ctx: &SessionContext,
    details: Arc<dyn RelationDetails>,
    roles: Arc<RoleCatalog>,
) -> Result<()> {
    let roles = RolesProvider(roles);
    datafusion_pg_catalog::setup_pg_catalog(ctx, DEFAULT_CATALOG, roles.clone())
        .map_err(|e| DataFusionError::Context("installing pg_catalog".into(), e))?;
    let catalogs = Arc::clone(ctx.state().catalog_list());
    let mut tables = PgCatalogStaticTables::try_new()?;
    tables.pg_type = Arc::new(with_acl_lists(&types_catalog::with_domains(
        &tables.pg_type,
    )?)?);
    for table in [
        &mut tables.pg_proc,
        &mut tables.pg_language,
        &mut tables.pg_tablespace,
        &mut tables.pg_default_acl,
        &mut tables.pg_foreign_data_wrapper,
        &mut tables.pg_foreign_server,
        &mut tables.pg_largeobject_metadata,
    ] {
        *table = Arc::new(with_acl_lists(table)?);
    }
    tables.pg_policy = Arc::new(with_named_array_columns(
        &tables.pg_policy,
        &[("polroles", DataType::Int32)],
    )?);
    // `'d' = any(es.stxkind)` in psql's `\dX`.
    tables.pg_statistic_ext = Arc::new(with_named_array_columns(
        &tables.pg_statistic_ext,
        &[("stxkind", DataType::Utf8)],
    )?);
    // Postgres 15's name of the library's (17's) `colllocale`, which
    // psql's `\dO` reads.
    tables.pg_collation = Arc::new(with_column_copy(
        &tables.pg_collation,
        "colllocale",
        "colliculocale",
    )?);
    tables.pg_event_trigger = Arc::new(with_named_array_columns(
        &tables.pg_event_trigger,
        &[("evttags", DataType::Utf8)],
    )?);
    tables.pg_db_role_setting = Arc::new(with_named_array_columns(
        &tables.pg_db_role_setting,
        &[("setconfig", DataType::Utf8)],
    )?);
    tables.pg_am = Arc::new(with_access_methods(&tables.pg_am)?);
    let pg_type = Arc::clone(&tables.pg_type);
    let system = system_relation_oids(&pg_type);
    let (pg_proc, pg_description, pg_shdescription) = (
        Arc::clone(&tables.pg_proc),
        Arc::clone(&tables.pg_description),
        Arc::clone(&tables.pg_shdescription),
    );
    let library = Arc::new(PgCatalogSchemaProvider::try_new(
        Arc::clone(&catalogs),
        Arc::new(tables),
        roles,
    )?);
    let schema = SluicePgCatalog::new(
        RelationsSource {
            library,
            catalogs: Arc::clone(&catalogs),
            details: Arc::clone(&details),
        },
        Arc::clone(&system),
    );
    ctx.catalog(DEFAULT_CATALOG)
        .ok_or_else(|| DataFusionError::Internal(format!("catalog {DEFAULT_CATALOG} missing")))?
        .register_schema("pg_catalog", Arc::new(schema))?;
    types_catalog::install_format_type(ctx, &pg_type);
    function_signatures::install(ctx, &pg_proc)?;
    descriptions::install(ctx, &pg_description, &pg_shdescription, Arc::clone(&system));
    relation_sizes::install(ctx, Arc::clone(&catalogs), Arc::clone(&details));
    regclass::install(ctx, Arc::clone(&catalogs), Arc::clone(&details), system);
    regtype::install(ctx, &pg_type);
    regproc::install(ctx, &pg_proc);
    catalog_functions::install(ctx, catalogs, details);
    catalog_functions::widen_oid_arguments(ctx);
    encodings::install(ctx);
    oid_arrays::install(ctx);
    Ok(())
}

/// Returns the shared rewriter for catalog queries, which turns Postgres-only
/// constructs in client catalog queries into SQL DataFusion can plan.
pub(crate) fn compat_parser() -> Arc<PostgresCompatibilityParser> {
    static PARSER: std::sync::OnceLock<Arc<PostgresCompatibilityParser>> =
        std::sync::OnceLock::new();
    Arc::clone(PARSER.get_or_init(|| Arc::new(PostgresCompatibilityParser::new())))
}
