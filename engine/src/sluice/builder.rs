//! Building a [`Sluice`] engine: configuration and the one place where every
//! Sluice extension is registered on DataFusion.

use sluice_functions::FunctionHandles;
use sluice_functions::object::{ObjectAccess, ObjectRoots};
use std::path::PathBuf;
use std::sync::Arc;

use crate::context::{DEFAULT_CATALOG, DEFAULT_SCHEMA};
use crate::roles::RoleCatalog;
use crate::session::PlanGeneration;
use crate::storage::{DATA_STORE_URL, DataLocation, TableStore};
use crate::streaming::ContinuousQueries;
use crate::streaming::status::{ContinuousQueriesTable, STATUS_SCHEMA, STATUS_TABLE};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use sluice_functions::model::ModelRegistry;
use sluice_functions::model::explain::CountModelCalls;
use sluice_functions::model::secrets::KeyVariablePolicy;

use super::Sluice;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;

use crate::pg::catalog;
use crate::rewrite::broadcast_bound::BoundBroadcasts;
use crate::rewrite::consistent_fields::ConsistentFields;
use crate::rewrite::join_yield::YieldingJoins;
use crate::rewrite::key_lookup_rule::KeyLookupRule;
use crate::rewrite::pg_text_casts::PgTextCasts;
use crate::rewrite::vector_batch_rule::VectorBatchRule;
use crate::rewrite::vector_index_rule::VectorIndexRule;
use crate::sluice::relation_details::SluiceRelationDetails;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;

/// Settings of one engine instance.
#[derive(Debug, Clone)]
pub struct SluiceConfig {
    /// Where the catalog and the table data live: a local folder or an
    /// object-store URL.
    pub data_location: DataLocation,
    /// Partitions DataFusion plans for; defaults to the number of cores.
    pub target_partitions: usize,
    /// Rows per record batch flowing between operators.
    pub batch_size: usize,
    /// Where object functions (`object_ref`, `read_image`, `list_objects`,
    /// …) may read: local folders, `file://` URLs, `s3://bucket/prefix`.
    /// Empty: nowhere.
    pub object_roots: Vec<String>,
    /// Environment variables remote models may read API keys from: exact
    /// names or `PREFIX_*`. Empty: `OPENAI_API_KEY` and `SLUICE_MODEL_KEY_*`.
    pub model_key_variables: Vec<String>,
    /// Bytes all queries together may hold in operators' memory
    /// (DataFusion's memory pool: sorts, aggregations and joins spill to
    /// disk where they can, and a query that still needs more fails with
    /// `ResourcesExhausted`). `None`: no limit.
    pub memory_limit: Option<usize>,
}

impl Default for SluiceConfig {
    fn default() -> Self {
        Self {
            data_location: DataLocation::Local(PathBuf::from("./sluice-data")),
            target_partitions: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            batch_size: 8192,
            object_roots: Vec::new(),
            model_key_variables: Vec::new(),
            memory_limit: None,
        }
    }
}

/// Builder for [`Sluice`]; see [`Sluice::builder`].
#[derive(Debug, Default)]
pub struct SluiceBuilder {
    config: SluiceConfig,
}

impl SluiceBuilder {
    /// Sets a local data directory (default `./sluice-data`).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_location = DataLocation::Local(dir.into());
        self
    }

    /// Sets the data directory: a local folder or an object-store URL
    /// (`s3://bucket/prefix`).
    pub fn data_location(mut self, location: DataLocation) -> Self {
        self.config.data_location = location;
        self
    }

    /// Sets how many partitions queries are planned for.
    pub fn target_partitions(mut self, n: usize) -> Self {
        self.config.target_partitions = n.max(1);
        self
    }

    /// Sets the number of rows per record batch.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.config.batch_size = n.max(1);
        self
    }

    /// Adds a root object functions may read from (a local folder, a
    /// `file://` URL or `s3://bucket/prefix`).
    pub fn object_root(mut self, root: impl Into<String>) -> Self {
        self.config.object_roots.push(root.into());
        self
    }

    /// Allows remote models to read API keys from `variable` (an exact
    /// name or `PREFIX_*`); the first call replaces the default allow-list
    /// (`OPENAI_API_KEY`, `SLUICE_MODEL_KEY_*`).
    pub fn model_key_variable(mut self, variable: impl Into<String>) -> Self {
        self.config.model_key_variables.push(variable.into());
        self
    }

    /// Limits the memory all queries together may hold to `bytes` (see
    /// [`SluiceConfig::memory_limit`]).
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.config.memory_limit = Some(bytes);
        self
    }

    /// Builds the engine: creates the data directory and registers every
    /// Sluice function, catalog table and planner extension.
    pub async fn build(self) -> Result<Sluice> {
        crate::failpoints::configure_from_env()?;
        let config = self.config;
        let objects = Arc::new(ObjectAccess::new(ObjectRoots::parse(&config.object_roots)?));
        let (object_store, root) = config.data_location.open()?;
        let cannot_open = |e: DataFusionError| {
            DataFusionError::Configuration(format!(
                "cannot open data directory {}: {e}",
                config.data_location
            ))
        };
        let store = Arc::new(TableStore::new(Arc::clone(&object_store), root.clone()));
        let tables = store.open_all().await.map_err(cannot_open)?;
        let roles = RoleCatalog::open(Arc::clone(&object_store), &root)
            .await
            .map_err(cannot_open)?;

        let key_variables = if config.model_key_variables.is_empty() {
            KeyVariablePolicy::default()
        } else {
            KeyVariablePolicy::new(config.model_key_variables.iter().cloned())
        };
        let models = Arc::new(ModelRegistry::with_key_variables(key_variables));
        let continuous_queries = Arc::new(ContinuousQueries::default());
        let session_config = SessionConfig::new()
            .with_extension(Arc::clone(&store))
            .with_extension(Arc::clone(&roles))
            .with_extension(Arc::clone(&continuous_queries))
            .with_extension(Arc::clone(&models))
            .with_extension(Arc::new(PlanGeneration::default()))
            .with_default_catalog_and_schema(DEFAULT_CATALOG, DEFAULT_SCHEMA)
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(true)
            .with_target_partitions(config.target_partitions)
            .with_batch_size(config.batch_size)
            // Parquet files carry the Arrow schema with field metadata; Sluice
            // types (UUID, VECTOR, …) live in that metadata, so keep it.
            .set_bool("datafusion.execution.parquet.skip_metadata", false)
            // Postgres' TimeZone (Sluice reports UTC until a client SETs
            // another). DataFusion's default, none, made TIMESTAMPTZ a
            // timestamp without zone: announced as `timestamp`, and a
            // parameter '…+02' stored as its wall-clock time, another instant.
            .set_str("datafusion.execution.time_zone", "UTC")
            // DataFusion 55's leaf-expression pushdown inlines an aliased
            // expression at every `get_field` of it (apache/datafusion#24678,
            // fixed after 55): `ML_PREDICT(…)['a'], …['b']` over one alias ran
            // the model once per output column. Struct field pushdown into
            // scans is worth far less than a second inference.
            .set_bool(
                "datafusion.optimizer.enable_leaf_expression_pushdown",
                false,
            );
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = config.memory_limit {
            // Every reservation counts in full (fraction 1.0): the limit is
            // the figure the operator configured, not a share of it.
            runtime = runtime.with_memory_limit(limit, 1.0);
        }
        let state = SessionStateBuilder::new()
            .with_runtime_env(runtime.build_arc()?)
            .with_config(session_config)
            .with_default_features()
            // First, so that it wraps a projection before DataFusion's own
            // rules move it into a file scan.
            .with_physical_optimizer_rules(
                std::iter::once(Arc::new(BoundBroadcasts) as _)
                    .chain(PhysicalOptimizer::new().rules)
                    .collect(),
            )
            .with_physical_optimizer_rule(Arc::new(YieldingJoins))
            .with_physical_optimizer_rule(Arc::new(CountModelCalls::new(Arc::clone(&models))))
            .with_analyzer_rule(Arc::new(PgTextCasts::default()))
            .with_optimizer_rule(Arc::new(VectorIndexRule))
            .with_optimizer_rule(Arc::new(VectorBatchRule))
            // After the vector rules, which take a filter under a top-k by
            // distance into their own search.
            .with_optimizer_rule(Arc::new(KeyLookupRule))
            .with_optimizer_rule(Arc::new(ConsistentFields))
            .build();
        let ctx = SessionContext::new_with_state(state);
        // Table scans read the data directory through DataFusion's Parquet
        // source, which finds stores by URL.
        let data_url = url::Url::parse(DATA_STORE_URL)
            .map_err(|e| DataFusionError::Internal(format!("bad data store URL: {e}")))?;
        ctx.register_object_store(&data_url, object_store);

        // pg_catalog first: Sluice's functions then take precedence where
        // both define a name (`version()` must say "PostgreSQL 15").
        catalog::install(&ctx, Arc::new(SluiceRelationDetails), Arc::clone(&roles))?;
        // After pg_catalog, whose type planner Sluice's wraps.
        sluice_types::install(&ctx);
        let handles = FunctionHandles {
            models: Arc::clone(&models),
            objects,
        };
        sluice_functions::register_all(&ctx, &handles)?;
        // Schemas before the tables in them (a schema may hold no table yet,
        // and a table folder implies its schema).
        let catalog = ctx.catalog(DEFAULT_CATALOG).ok_or_else(|| {
            DataFusionError::Internal(format!("catalog {DEFAULT_CATALOG} missing"))
        })?;
        let schemas = store.schema_names().await?;
        for schema in schemas.iter().chain(tables.iter().map(|(s, _, _)| s)) {
            if catalog.schema(schema).is_none() {
                catalog.register_schema(schema, Arc::new(MemorySchemaProvider::new()))?;
            }
        }
        for (schema, name, table) in tables {
            ctx.register_table(TableReference::partial(schema, name), table)?;
        }
        let status_schema = Arc::new(MemorySchemaProvider::new());
        status_schema.register_table(
            STATUS_TABLE.into(),
            Arc::new(ContinuousQueriesTable::new(continuous_queries)),
        )?;
        catalog.register_schema(STATUS_SCHEMA, status_schema)?;

        let sluice = Sluice::new(Arc::new(ctx), config);
        // Views and external tables, in the order they were created (a view
        // may read another). One that no longer plans (say, its file is
        // gone) is reported and skipped rather than failing the start.
        let session = sluice.session();
        crate::ddl::models::restore(session.context(), &store).await?;
        for definition in store.definitions().await? {
            if let Err(e) = session.restore_definition(&definition.sql).await {
                log::warn!("could not restore {}: {e}", definition.name);
            }
        }
        Ok(sluice)
    }
}
