//! The point-lookup operator: per data file that may hold the key, the
//! matching rows found in the decoded key column, their other columns
//! taken from the decoded columns, the residual condition applied.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions, UInt32Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{ParamValues, ScalarValue, Statistics};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{
    Boundedness, EmissionType, apply_expression_roots,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::StreamExt;

use super::super::decoded_columns as columns;
use super::super::files::Snapshot;
use super::super::table_files::TableFiles;
use super::LookupKey;
use super::key_ranges::KeyRange;

/// Everything a run of the lookup needs but the key.
#[derive(Debug)]
pub(super) struct Lookup {
    pub table: TableFiles,
    /// Holds the files until the lookup ends.
    pub snapshot: Arc<Snapshot>,
    /// Per file of the snapshot, in its order.
    pub ranges: Vec<KeyRange>,
    pub key_column: usize,
    pub key_type: DataType,
    /// Table columns read from matching rows, ascending.
    pub read: Vec<usize>,
    /// The schema of those columns.
    pub read_schema: SchemaRef,
    /// The rest of the condition, over `read_schema`.
    pub residual: Option<Arc<dyn PhysicalExpr>>,
    /// Table columns returned.
    pub projection: Vec<usize>,
}

/// See the module documentation. One partition; rows in file order.
#[derive(Debug)]
pub struct KeyLookupExec {
    lookup: Arc<Lookup>,
    key: LookupKey,
    output_schema: SchemaRef,
    /// Output column `i` is column `output[i]` of the rows read.
    output: Vec<usize>,
    properties: Arc<PlanProperties>,
}

impl KeyLookupExec {
    /// The operator for `lookup`, looking for `key`.
    pub(super) fn new(lookup: Lookup, key: LookupKey) -> Result<Self> {
        let output_schema = Arc::new(lookup.table.schema.project(&lookup.projection)?);
        let output = lookup
            .projection
            .iter()
            .map(|column| {
                lookup
                    .read
                    .binary_search(column)
                    .map_err(|_| DataFusionError::Internal("a looked-up column is not read".into()))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(Arc::clone(&output_schema)),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Final,
                Boundedness::Bounded,
            )),
            lookup: Arc::new(lookup),
            key,
            output_schema,
            output,
        })
    }

    /// This lookup with its parameter bound to its value in `params`;
    /// `None` when it looks for a constant.
    pub fn bind(&self, params: &ParamValues) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let LookupKey::Parameter(id) = &self.key else {
            return Ok(None);
        };
        let value = params.get_placeholders_with_values(id)?.value;
        Ok(Some(Arc::new(Self {
            lookup: Arc::clone(&self.lookup),
            key: LookupKey::Value(value.cast_to(&self.lookup.key_type)?),
            output_schema: Arc::clone(&self.output_schema),
            output: self.output.clone(),
            properties: Arc::clone(&self.properties),
        })))
    }
}

impl Lookup {
    /// The rows whose key equals `key` and that the residual keeps, their
    /// projected columns.
    async fn run(
        &self,
        key: ScalarValue,
        output: &[usize],
        schema: &SchemaRef,
        batch_size: usize,
    ) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        // `key = NULL` holds for no row.
        if !key.is_null() {
            let key_array = key.to_array()?;
            for (live, range) in self.snapshot.files.iter().zip(&self.ranges) {
                if !range.may_hold(&key) {
                    continue;
                }
                let keys = columns::load(&self.table, live, self.key_column).await?;
                let positions = keys.positions_of(&key_array)?;
                if positions.is_empty() {
                    continue;
                }
                let positions = UInt32Array::from(positions);
                let arrays = columns::take_rows(&self.table, live, &self.read, &positions).await?;
                // With the row count: `count(*)` reads no column.
                let mut rows = RecordBatch::try_new_with_options(
                    Arc::clone(&self.read_schema),
                    arrays,
                    &RecordBatchOptions::new().with_row_count(Some(positions.len())),
                )?;
                if let Some(residual) = &self.residual {
                    let keep = residual.evaluate(&rows)?.into_array(rows.num_rows())?;
                    let keep = keep.as_any().downcast_ref().ok_or_else(|| {
                        DataFusionError::Plan("a WHERE condition must be boolean".into())
                    })?;
                    rows = filter_record_batch(&rows, keep)?;
                }
                batches.push(rows.project(output)?);
            }
        }
        let rows = concat_batches(schema, &batches)?;
        // In batches of the session's size, as a scan returns them: one
        // batch of half a table would not be shared out among the plan's
        // partitions above.
        Ok((0..rows.num_rows())
            .step_by(batch_size.max(1))
            .map(|start| rows.slice(start, batch_size.min(rows.num_rows() - start)))
            .collect())
    }
}

impl DisplayAs for KeyLookupExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lookup = &self.lookup;
        write!(
            f,
            "KeyLookupExec: {} = {}, files={}",
            lookup.table.schema.field(lookup.key_column).name(),
            self.key,
            lookup.snapshot.files.len()
        )?;
        if let Some(residual) = &lookup.residual {
            write!(f, ", residual={residual}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for KeyLookupExec {
    fn name(&self) -> &str {
        "KeyLookupExec"
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
        apply_expression_roots(self.lookup.residual.iter(), f)
    }

    /// As many rows as a filter over the scan would estimate (DataFusion's
    /// default selectivity of the files that may hold the key): without
    /// an estimate the optimizer cannot choose a join's sides, and a
    /// report joining a half of `orders` ran twice as long.
    fn partition_statistics(&self, _partition: Option<usize>) -> Result<Arc<Statistics>> {
        let lookup = &self.lookup;
        let rows: u64 = lookup
            .snapshot
            .files
            .iter()
            .zip(&lookup.ranges)
            .filter(|(_, range)| match &self.key {
                LookupKey::Value(key) => range.may_hold(key),
                LookupKey::Parameter(_) => true,
            })
            .map(|(live, _)| live.file.rows)
            .sum();
        let estimate = usize::try_from(rows / 5).unwrap_or(usize::MAX);
        let mut statistics = Statistics::new_unknown(&self.output_schema);
        statistics.num_rows = Precision::Inexact(estimate);
        Ok(Arc::new(statistics))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "KeyLookupExec has no children".into(),
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
                "KeyLookupExec has one partition, not {partition}"
            )));
        }
        let LookupKey::Value(key) = self.key.clone() else {
            return Err(DataFusionError::Internal(format!(
                "lookup parameter {} executed unbound",
                self.key
            )));
        };
        let lookup = Arc::clone(&self.lookup);
        let output = self.output.clone();
        let schema = Arc::clone(&self.output_schema);
        let batch_size = context.session_config().batch_size();
        let rows = async move { lookup.run(key, &output, &schema, batch_size).await };
        let batches = futures::stream::once(rows).flat_map(|batches| {
            futures::stream::iter(match batches {
                Ok(batches) => batches.into_iter().map(Ok).collect(),
                Err(error) => vec![Err(error)],
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.output_schema),
            batches,
        )))
    }
}
