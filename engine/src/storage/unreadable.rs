//! [`UnreadableTable`]: what a table whose files cannot be read (a corrupt
//! or truncated manifest) is registered as when the data directory opens,
//! so that one bad file never stops the server: the other tables serve,
//! and every use of this one says which file is wrong and how to get rid
//! of it (DROP TABLE still works).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::physical_plan::ExecutionPlan;
use sluice_types::error::{SluiceError, SqlState};

/// A table that failed to open; see the module docs.
#[derive(Debug)]
pub struct UnreadableTable {
    /// `schema.table`.
    name: String,
    /// Why it could not be opened (naming the file).
    why: String,
    schema: SchemaRef,
}

impl UnreadableTable {
    /// Table `name` that failed to open because of `why`.
    pub fn new(name: String, why: String) -> Self {
        Self {
            name,
            why,
            schema: Arc::new(Schema::empty()),
        }
    }

    fn error(&self) -> datafusion::error::DataFusionError {
        SluiceError::new(
            SqlState::DATA_CORRUPTED,
            format!(
                "table {} cannot be read: {} (DROP TABLE {} removes it)",
                self.name, self.why, self.name
            ),
        )
        .into()
    }
}

#[async_trait]
impl TableProvider for UnreadableTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(self.error())
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(self.error())
    }
}
