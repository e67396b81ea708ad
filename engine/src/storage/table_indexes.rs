//! A durable table's vector indexes: `CREATE INDEX … USING hnsw`,
//! `DROP INDEX`, and planning vector searches, through one or exact (see
//! [`super::vector_index`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::Session;
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use sluice_types::error::{SluiceError, SqlState};

use super::change_feed::ChangeKind;
use super::durable_table::DurableTable;
use super::files::Snapshot;
use super::manifest;
use super::transaction::SessionTransaction;
use super::vector_index::{
    self, BatchRequest, SearchRequest, VectorIndex, build_missing, delete_graphs,
};

impl DurableTable {
    /// The table's vector indexes (their graph lists left out).
    pub fn vector_indexes(&self) -> Vec<VectorIndex> {
        self.index_catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Creates `index` (its graph list empty): builds the graph of every
    /// data file large enough, on every core, then commits them with the
    /// definition in one version. Writes and scans go on meanwhile; files
    /// they add are covered at the commit.
    pub async fn create_vector_index(&self, index: VectorIndex) -> Result<()> {
        let Ok(field) = self.schema.field_with_name(&index.column) else {
            return Err(SluiceError::new(
                SqlState::UNDEFINED_COLUMN,
                format!("column \"{}\" does not exist", index.column),
            )
            .into());
        };
        if !matches!(field.data_type(), DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32)
        {
            return Err(SluiceError::new(
                SqlState::DATATYPE_MISMATCH,
                format!(
                    "column \"{}\" is not a vector: an hnsw index needs a VECTOR(n) column",
                    index.column
                ),
            )
            .into());
        }
        let current = self.state.lock().await.manifest.clone();
        let mut building = [VectorIndex {
            graphs: Default::default(),
            ..index
        }];
        build_missing(
            &self.store,
            &self.dir,
            &self.schema,
            &mut building,
            &current.files,
        )
        .await?;
        let [built] = building;
        let graphs = built.graphs.graph_paths();
        let mut state = self.state.lock().await;
        let mut next = state.manifest.next();
        if next.vector_indexes.iter().any(|i| i.name == built.name) {
            drop(state);
            delete_graphs(&self.store, &self.dir, &graphs).await;
            return Err(duplicate_relation(&built.name));
        }
        next.vector_indexes.push(built);
        if let Err(e) = state.commit(&self.store, &self.dir, &mut next).await {
            drop(state);
            delete_graphs(&self.store, &self.dir, &graphs).await;
            return Err(e);
        }
        state
            .install(&self.store, &self.dir, next, ChangeKind::Index)
            .await;
        Ok(())
    }

    /// Drops the index `name`; `false` when the table has none of that
    /// name. Its graphs are deleted once the version without it commits
    /// (a search already under way scans exactly where they are gone).
    pub async fn drop_vector_index(&self, name: &str) -> Result<bool> {
        let mut state = self.state.lock().await;
        if !state.manifest.vector_indexes.iter().any(|i| i.name == name) {
            return Ok(false);
        }
        let mut next = state.manifest.next();
        next.vector_indexes.retain(|i| i.name != name);
        manifest::commit(self.store.as_ref(), &self.dir, &next).await?;
        state
            .install(&self.store, &self.dir, next, ChangeKind::Index)
            .await;
        Ok(true)
    }

    /// The plan of `request` (indexed or exact) over the table as of now:
    /// the committed files and their graphs, read consistently.
    pub async fn plan_vector_search(
        &self,
        session: &dyn Session,
        request: &SearchRequest,
        projection: Option<&Vec<usize>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (snapshot, index) = self
            .searched(session, |i| request.index.as_ref() == Some(&i.name))
            .await?;
        let table = self.table_files(session);
        vector_index::plan_search(table, snapshot, index, request, projection, session).await
    }

    /// The plan of a batch of searches over the table as of now, its
    /// query vectors from `queries`: walks of the index for the batch's
    /// distance on its column if there is one, else one exact pass.
    pub async fn plan_vector_batch(
        &self,
        session: &dyn Session,
        request: BatchRequest,
        queries: Arc<dyn ExecutionPlan>,
        projection: Option<&Vec<usize>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (snapshot, index) = self
            .searched(session, |i| {
                i.column == request.column && i.metric.sql_metric() == request.metric
            })
            .await?;
        let table = self.table_files(session);
        vector_index::plan_batch(
            table, snapshot, index, request, queries, projection, session,
        )
        .await
    }

    /// The files a search in `session` sees and the committed index that
    /// `wanted` picks, read consistently. Inside a transaction its own
    /// files: graphs are found by file, so the committed index still
    /// serves the files it shares with them and the rest are searched
    /// exactly.
    async fn searched(
        &self,
        session: &dyn Session,
        wanted: impl Fn(&VectorIndex) -> bool,
    ) -> Result<(Arc<Snapshot>, Option<VectorIndex>)> {
        let transaction = SessionTransaction::of(session.config());
        let (committed, index) = {
            let state = self.state.lock().await;
            let index = state.manifest.vector_indexes.iter().find(|i| wanted(i));
            (Arc::clone(&state.snapshot), index.cloned())
        };
        let snapshot = match transaction {
            Some(transaction) => transaction.snapshot(&self.handle()).await?,
            None => committed,
        };
        Ok((snapshot, index))
    }
}

/// An index name already taken (Postgres: 42P07, as for any relation).
pub fn duplicate_relation(name: &str) -> datafusion::error::DataFusionError {
    SluiceError::new(
        SqlState::DUPLICATE_TABLE,
        format!("relation \"{name}\" already exists"),
    )
    .into()
}
