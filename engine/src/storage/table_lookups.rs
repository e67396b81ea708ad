//! A durable table's point lookups (see [`super::key_lookup`]), and the
//! scan that answers one when its columns are too large to keep.

use std::sync::Arc;

use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;

use super::durable_table::DurableTable;
use super::key_lookup::{self, LookupKey, LookupRequest};

impl DurableTable {
    /// The plan of `request` over the table as `session` sees it now: a
    /// lookup in memory, or a filtered scan when the columns it reads are
    /// too large to keep (a parameter then cannot be planned).
    pub async fn plan_key_lookup(
        &self,
        session: &dyn Session,
        request: &LookupRequest,
        projection: Option<&Vec<usize>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snapshot = self.snapshot_for(session).await?;
        let table = self.table_files(session);
        if let Some(lookup) =
            key_lookup::plan_lookup(table, snapshot, request, projection, session).await?
        {
            return Ok(lookup);
        }
        let key = match &request.key {
            LookupKey::Value(value) => Expr::Literal(value.clone(), None),
            // The statement is then planned with its values bound instead.
            LookupKey::Parameter(id) => {
                return Err(DataFusionError::Plan(format!(
                    "a scan cannot hold the unbound parameter {id}"
                )));
            }
        };
        let key_equal = Expr::Column(request.column.as_str().into()).eq(key);
        let predicate = match &request.residual {
            Some(residual) => key_equal.and(residual.clone()),
            None => key_equal,
        };
        // The scan reads the condition's columns too; the projection above
        // drops them again.
        let schema = self.schema();
        let projection = projection
            .cloned()
            .unwrap_or_else(|| (0..schema.fields().len()).collect());
        let read = key_lookup::columns_read(&schema, &projection, Some(&predicate))?;
        let scan = self.scan(session, Some(&read), &[], None).await?;
        let read_schema = DFSchema::try_from(Arc::new(schema.project(&read)?))?;
        let filter = Arc::new(FilterExec::try_new(
            session.create_physical_expr(predicate, &read_schema)?,
            scan,
        )?);
        let columns = projection
            .iter()
            .map(|&column| {
                let at = read.binary_search(&column).unwrap_or_default();
                let name = schema.field(column).name().clone();
                (Arc::new(Column::new(&name, at)) as _, name)
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(ProjectionExec::try_new(columns, filter)?))
    }
}
