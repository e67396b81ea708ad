//! The `pg_catalog` schema Sluice registers: the library's, with the tables
//! Sluice corrects or extends ([`crate::pg::types_catalog`] for column types,
//! [`crate::pg::relations_catalog`] for indexes and materialized views,
//! [`crate::pg::settings_catalog`] for the session's settings)
//! served in their place, and every table's OIDs made stable
//! ([`crate::pg::stable_oids`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::Result;

use crate::pg::array_columns::with_acl_list_columns;
use crate::pg::relations_catalog::{PgIndexes, RelationsSource, replacement};
use crate::pg::settings_catalog::PgSettings;
use crate::pg::stable_oids::with_stable_oids;
use crate::pg::types_catalog::PgAttribute;

/// The view Sluice adds that the library lacks.
const PG_INDEXES: &str = "pg_indexes";

/// The view Sluice serves in place of the library's (which has one row).
const PG_SETTINGS: &str = "pg_settings";

/// The library's `pg_catalog` with Sluice's corrections.
#[derive(Debug)]
pub(crate) struct SluicePgCatalog {
    source: RelationsSource,
    /// Postgres' OIDs of `pg_catalog`'s own tables and views.
    system: Arc<HashMap<String, u32>>,
}

impl SluicePgCatalog {
    /// Wraps `source.library`; `system` gives `pg_catalog`'s own tables
    /// and views their Postgres OIDs.
    pub(crate) fn new(source: RelationsSource, system: Arc<HashMap<String, u32>>) -> Self {
        Self { source, system }
    }

    fn catalogs(&self) -> Arc<dyn CatalogProviderList> {
        Arc::clone(&self.source.catalogs)
    }
}

#[async_trait]
impl SchemaProvider for SluicePgCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.source.library.table_names();
        names.push(PG_INDEXES.to_owned());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case(PG_INDEXES) {
            return Ok(Some(PgIndexes::table(&self.source)));
        }
        if name.eq_ignore_ascii_case(PG_SETTINGS) {
            return Ok(Some(Arc::new(PgSettings)));
        }
        let Some(library) = self.source.library.table(name).await? else {
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        let table: Arc<dyn TableProvider> = if name == "pg_attribute" {
            Arc::new(PgAttribute::new(
                library,
                Arc::clone(&self.source.library),
                self.catalogs(),
            ))
        } else {
            replacement(&name, Arc::clone(&library), &self.source).unwrap_or(library)
        };
        // Last, over the library's rows and Sluice's alike, so every table
        // shows the same OID for the same object.
        Ok(Some(with_stable_oids(
            &name,
            with_acl_list_columns(table),
            Arc::clone(&self.source.library),
            Arc::clone(&self.system),
        )))
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(PG_INDEXES) || self.source.library.table_exist(name)
    }
}
