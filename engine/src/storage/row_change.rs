//! [`RowChangeExec`]: DELETE, UPDATE and TRUNCATE on a durable table as a
//! plan node that changes the table when it runs, not when it is planned.
//!
//! DataFusion builds the physical plan of `EXPLAIN DELETE …` (and of a
//! prepared DELETE that may never run) just to show it; a table that
//! rewrote its files while being planned changed data on EXPLAIN. Planning
//! here only turns the predicate and the new values into physical
//! expressions; reading, rewriting and committing happen in `execute`.

use std::fmt;
use std::sync::Arc;

use super::change_feed::{ChangeKind, RowDelta};
use super::files::{read_files, write_data_files};
use super::manifest::DataFile;
use super::table_state::TableHandle;
use super::transaction::{SessionTransaction, Transaction};
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{filter_record_batch, not, prep_null_mask_filter};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::cast::as_boolean_array;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::apply_expression_roots;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

/// What a DELETE or UPDATE does to the rows its predicate selects (all rows
/// when there is none).
#[derive(Debug, Clone)]
pub(super) enum RowChange {
    /// The selected rows go.
    Delete,
    /// The selected rows get new values: (column index, value).
    Update(Vec<(usize, Arc<dyn PhysicalExpr>)>),
}

/// Rewrites the files of a durable table that hold selected rows and
/// commits them in one manifest version; yields one row, `count`, the rows
/// affected (DataFusion's DML convention).
#[derive(Debug)]
pub(super) struct RowChangeExec {
    table: TableHandle,
    change: RowChange,
    predicate: Option<Arc<dyn PhysicalExpr>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl RowChangeExec {
    pub fn new(
        table: TableHandle,
        change: RowChange,
        predicate: Option<Arc<dyn PhysicalExpr>>,
    ) -> Self {
        let schema = count_schema();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            table,
            change,
            predicate,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

impl DisplayAs for RowChangeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let op = match &self.change {
            RowChange::Delete => "DELETE",
            RowChange::Update(_) => "UPDATE",
        };
        write!(f, "RowChangeExec: op={op}, table={}", self.table.dir)?;
        if let RowChange::Update(assignments) = &self.change {
            let set: Vec<String> = assignments
                .iter()
                .map(|(i, value)| format!("{}={value}", self.table.schema.field(*i).name()))
                .collect();
            write!(f, ", set=[{}]", set.join(", "))?;
        }
        if let Some(predicate) = &self.predicate {
            write!(f, ", predicate={predicate}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for RowChangeExec {
    fn name(&self) -> &str {
        "RowChangeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let values = match &self.change {
            RowChange::Delete => Vec::new(),
            RowChange::Update(assignments) => assignments.iter().map(|(_, v)| v).collect(),
        };
        apply_expression_roots(self.predicate.iter().chain(values), f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "RowChangeExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "RowChangeExec has one partition, not {}",
                partition + 1
            )));
        }
        let table = self.table.clone();
        let change = self.change.clone();
        let predicate = self.predicate.clone();
        let transaction = SessionTransaction::of_task(&context);
        let affected_metric = MetricBuilder::new(&self.metrics).counter("rows_affected", 0);
        let output_rows = MetricBuilder::new(&self.metrics).output_rows(0);
        let rows = async move {
            let affected = match transaction {
                Some(transaction) => {
                    apply_in(&transaction, &table, &change, predicate.as_ref()).await?
                }
                None => apply(&table, &change, predicate.as_ref()).await?,
            };
            affected_metric.add(affected as usize);
            output_rows.add(1);
            RecordBatch::try_new(
                count_schema(),
                vec![Arc::new(UInt64Array::from(vec![affected]))],
            )
            .map_err(DataFusionError::from)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            count_schema(),
            futures::stream::once(rows),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Applies the change and commits it as the table's next version.
/// Returns the rows affected.
async fn apply(
    table: &TableHandle,
    change: &RowChange,
    predicate: Option<&Arc<dyn PhysicalExpr>>,
) -> Result<u64> {
    let mut state = Arc::clone(&table.state).lock_owned().await;
    state.check_not_dropped(&table.dir)?;
    // The exact rows changed, for continuous queries reading the table
    // (kept only when some do): the files rewritten also hold rows that
    // did not change.
    let keep_rows = !state.subscribers.is_empty();
    let rewrite = rewrite(table, &state.manifest.files, change, predicate, keep_rows).await?;
    if rewrite.affected > 0 {
        let table = table.clone();
        let kind = ChangeKind::RowChange(rewrite.rows.map(Arc::new));
        // Once the commit starts it finishes and is installed, even when
        // the statement is cancelled (statement_timeout, a client's
        // cancel): dropped halfway, it could leave the store a version
        // ahead of what this server shows.
        let committing = tokio::spawn(async move {
            let mut next = state.manifest.next();
            next.files = rewrite.files;
            state.commit(&table.store, &table.dir, &mut next).await?;
            state.install(&table.store, &table.dir, next, kind).await;
            Ok::<_, DataFusionError>(())
        });
        committing.await.map_err(|e| {
            DataFusionError::Execution(format!("a row change's commit failed: {e}"))
        })??;
    }
    Ok(rewrite.affected)
}

/// Applies the change inside `transaction`: to the table as the
/// transaction sees it, visible to others only when it commits.
async fn apply_in(
    transaction: &Transaction,
    table: &TableHandle,
    change: &RowChange,
    predicate: Option<&Arc<dyn PhysicalExpr>>,
) -> Result<u64> {
    // The snapshot keeps the files while they are read.
    let (files, _snapshot) = transaction.files(table).await?;
    let rewrite = rewrite(table, &files, change, predicate, false).await?;
    if rewrite.affected > 0 {
        transaction
            .replace(table, rewrite.files, &rewrite.written)
            .await?;
    }
    Ok(rewrite.affected)
}

/// A table's files after a change.
struct Rewrite {
    affected: u64,
    /// All the files, in order.
    files: Vec<DataFile>,
    /// Those of them just written.
    written: Vec<DataFile>,
    /// The exact rows deleted and inserted, when asked for.
    rows: Option<RowDelta>,
}

/// Applies the change file by file, so only files with selected rows are
/// rewritten.
async fn rewrite(
    table: &TableHandle,
    current: &[DataFile],
    change: &RowChange,
    predicate: Option<&Arc<dyn PhysicalExpr>>,
    keep_rows: bool,
) -> Result<Rewrite> {
    let mut affected = 0u64;
    let mut files = Vec::with_capacity(current.len());
    let mut written = Vec::new();
    let mut rows = keep_rows.then(RowDelta::default);
    for file in current {
        let batches = read_files(
            table.store.as_ref(),
            &table.dir,
            std::slice::from_ref(file),
            &table.schema,
        )
        .await?;
        let mut changed = Vec::with_capacity(batches.len());
        let mut file_affected = 0u64;
        for batch in &batches {
            let selected = selection(predicate, batch)?;
            let count = selected.true_count();
            file_affected += count as u64;
            changed.push(if count == 0 {
                batch.clone()
            } else {
                let after = change_batch(change, batch, &selected, &table.schema)?;
                if let Some(rows) = &mut rows {
                    rows.deleted.push(filter_record_batch(batch, &selected)?);
                    if matches!(change, RowChange::Update(_)) {
                        rows.inserted.push(filter_record_batch(&after, &selected)?);
                    }
                }
                after
            });
        }
        if file_affected == 0 {
            files.push(file.clone());
            continue;
        }
        affected += file_affected;
        let kept: Vec<RecordBatch> = changed.into_iter().filter(|b| b.num_rows() > 0).collect();
        if !kept.is_empty() {
            let new =
                write_data_files(table.store.as_ref(), &table.dir, &table.schema, &kept).await?;
            written.extend(new.iter().cloned());
            files.extend(new);
        }
    }
    Ok(Rewrite {
        affected,
        files,
        written,
        rows,
    })
}

/// The rows the predicate selects: true only where it is true (SQL's
/// three-valued logic: NULL selects nothing).
fn selection(
    predicate: Option<&Arc<dyn PhysicalExpr>>,
    batch: &RecordBatch,
) -> Result<BooleanArray> {
    let Some(predicate) = predicate else {
        return Ok(BooleanArray::from(vec![true; batch.num_rows()]));
    };
    let values = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
    let mask = as_boolean_array(&values)?;
    Ok(if mask.null_count() > 0 {
        prep_null_mask_filter(mask)
    } else {
        mask.clone()
    })
}

/// `batch` with the change applied to its `selected` rows.
fn change_batch(
    change: &RowChange,
    batch: &RecordBatch,
    selected: &BooleanArray,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    match change {
        RowChange::Delete => Ok(filter_record_batch(batch, &not(selected)?)?),
        RowChange::Update(assignments) => {
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            for (index, value) in assignments {
                // Only the selected rows are evaluated: a value that fails on
                // rows the UPDATE does not touch (1/x where x = 0) is no error.
                let new = value
                    .evaluate_selection(batch, selected)?
                    .into_array(batch.num_rows())?;
                columns[*index] = zip(selected, &new, &columns[*index])?;
            }
            Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
        }
    }
}
