//! `sluice_catalog.continuous_queries`: one row per continuous query with
//! its state and counters, read fresh at every scan.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::registry::ContinuousQueries;

/// The schema the status table lives in.
pub const STATUS_SCHEMA: &str = "sluice_catalog";
/// The status table's name.
pub const STATUS_TABLE: &str = "continuous_queries";

/// The status table over a registry.
#[derive(Debug)]
pub struct ContinuousQueriesTable {
    queries: Arc<ContinuousQueries>,
    schema: SchemaRef,
}

impl ContinuousQueriesTable {
    /// The table of `queries`.
    pub fn new(queries: Arc<ContinuousQueries>) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("rows_in", DataType::UInt64, false),
            Field::new("rows_out", DataType::UInt64, false),
            Field::new("events_per_second", DataType::Float64, false),
            Field::new("lag_versions", DataType::UInt64, false),
            Field::new("epoch", DataType::UInt64, false),
            Field::new(
                "watermark",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                true,
            ),
            Field::new("late_rows_dropped", DataType::UInt64, false),
            Field::new("state_entries", DataType::UInt64, false),
            Field::new("view_rows", DataType::UInt64, false),
            Field::new("subscribers", DataType::UInt64, false),
            Field::new("checkpointing", DataType::Boolean, false),
            Field::new("checkpoint_epoch", DataType::UInt64, true),
            Field::new("checkpoint_bytes", DataType::UInt64, true),
            Field::new("checkpoint_ms", DataType::Float64, true),
            Field::new("checkpoint_age_ms", DataType::Float64, true),
            Field::new("regions", DataType::UInt64, false),
            Field::new("region_restarts", DataType::UInt64, false),
            Field::new("upstream_restarts", DataType::UInt64, false),
            Field::new("recovery_ms", DataType::Float64, false),
            Field::new("log_epoch", DataType::UInt64, true),
            Field::new("log_bytes", DataType::UInt64, false),
            Field::new("backpressured_ms", DataType::Float64, false),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("definition", DataType::Utf8, false),
        ]));
        Self { queries, schema }
    }

    fn batch(&self) -> Result<RecordBatch> {
        let queries = self.queries.all();
        let metrics: Vec<_> = queries.iter().map(|q| q.running.metrics()).collect();
        let text = |f: &dyn Fn(usize) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(
                (0..queries.len()).map(f).collect::<Vec<_>>(),
            ))
        };
        let count = |f: &dyn Fn(usize) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from(
                (0..queries.len()).map(f).collect::<Vec<_>>(),
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            text(&|i| Some(queries[i].name.clone())),
            text(&|i| Some(queries[i].kind.name().into())),
            text(&|i| Some(metrics[i].state.name().into())),
            text(&|i| {
                Some(
                    queries[i]
                        .sources
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            }),
            count(&|i| metrics[i].rows_in),
            count(&|i| metrics[i].rows_out),
            Arc::new(Float64Array::from(
                metrics
                    .iter()
                    .map(|m| {
                        let seconds = m.started.elapsed().as_secs_f64();
                        if seconds > 0.0 {
                            m.rows_in as f64 / seconds
                        } else {
                            0.0
                        }
                    })
                    .collect::<Vec<_>>(),
            )),
            count(&|i| metrics[i].lag),
            count(&|i| metrics[i].epoch),
            Arc::new(TimestampNanosecondArray::from(
                metrics
                    .iter()
                    .map(|m| m.watermark.filter(|w| *w != i64::MAX))
                    .collect::<Vec<_>>(),
            )),
            count(&|i| metrics[i].late_rows),
            count(&|i| metrics[i].state_entries),
            count(&|i| queries[i].view.as_ref().map_or(0, |v| v.row_count())),
            count(&|i| {
                queries[i]
                    .view
                    .as_ref()
                    .map_or(0, |v| v.subscriber_count() as u64)
            }),
            Arc::new(BooleanArray::from(
                metrics.iter().map(|m| m.checkpointing).collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from(
                metrics
                    .iter()
                    .map(|m| m.checkpoint.map(|c| c.epoch))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from(
                metrics
                    .iter()
                    .map(|m| m.checkpoint.map(|c| c.bytes))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                metrics
                    .iter()
                    .map(|m| m.checkpoint.map(|c| c.duration.as_secs_f64() * 1e3))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                metrics
                    .iter()
                    .map(|m| m.checkpoint.map(|c| c.at.elapsed().as_secs_f64() * 1e3))
                    .collect::<Vec<_>>(),
            )),
            count(&|i| metrics[i].regions),
            count(&|i| metrics[i].region_restarts + self.queries.restarts(&queries[i].name)),
            count(&|i| metrics[i].upstream_restarts),
            Arc::new(Float64Array::from(
                metrics
                    .iter()
                    .map(|m| m.recovery.as_secs_f64() * 1e3)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from(
                metrics.iter().map(|m| m.log_epoch).collect::<Vec<_>>(),
            )),
            count(&|i| metrics[i].log_bytes),
            Arc::new(Float64Array::from(
                metrics
                    .iter()
                    .map(|m| m.backpressured.as_secs_f64() * 1e3)
                    .collect::<Vec<_>>(),
            )),
            text(&|i| metrics[i].last_error.clone()),
            text(&|i| Some(queries[i].definition.clone())),
        ];
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

#[async_trait]
impl TableProvider for ContinuousQueriesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![self.batch()?]],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?)
    }
}
