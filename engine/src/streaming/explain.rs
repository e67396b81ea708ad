//! `EXPLAIN CREATE MATERIALIZED VIEW …` / `EXPLAIN CREATE SINK …`: how the
//! query would run, one row per step, each with its region. Planned as the
//! statement itself would be; nothing is created or started.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

use super::config::QueryConfig;
use super::create_sink::plan_sink;
use super::plan::{PlannedQuery, plan_continuous_query};
use super::resume::checkpointable;
use super::sink::EpochSink;
use super::view::MaterializedView;
use crate::sql::streaming_statement::StreamingStatement;

/// The columns `EXPLAIN` of a continuous query returns.
pub fn explain_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, false),
        Field::new("step", DataType::Utf8, false),
    ]))
}

/// The steps of the query `statement` creates, run with `config`.
pub async fn explain(
    ctx: &SessionContext,
    statement: &StreamingStatement,
    config: QueryConfig,
) -> Result<RecordBatch> {
    let (planned, sink, delivery): (PlannedQuery, Arc<dyn EpochSink>, String) = match statement {
        StreamingStatement::CreateMaterializedView { name, query, .. } => {
            let planned = plan_continuous_query(ctx, query, config.parallelism).await?;
            let view =
                MaterializedView::try_new(Arc::clone(&planned.output_schema), planned.updating)?;
            (planned, Arc::new(view), format!("materialized view {name}"))
        }
        StreamingStatement::CreateSink(create) => {
            let key = create.name.to_string();
            let (planned, sink) = plan_sink(ctx, create, &key, config.parallelism).await?;
            (planned, sink, format!("sink {key}"))
        }
        _ => {
            return Err(DataFusionError::Plan(
                "EXPLAIN of a continuous query takes CREATE MATERIALIZED VIEW or CREATE SINK"
                    .into(),
            ));
        }
    };
    let checkpoints = checkpointable(&planned, sink.as_ref());
    let cut = planned.region_cut && config.region_logs && checkpoints;
    let (upstream, downstream) = match cut {
        true => ("1 (sources, model calls)", "2 (operators, sink)"),
        false => ("1", "1"),
    };
    let mut rows: Vec<(&str, String)> = Vec::new();
    for (table, source) in planned.source_tables.iter().zip(&planned.sources) {
        let resumes = match source.offset() {
            Some(_) => "resumes from its checkpointed offset",
            None => "read again from the start after a restart",
        };
        rows.push((upstream, format!("source {table} ({resumes})")));
    }
    for (input, copies) in planned.heads.iter().enumerate() {
        let Some(first) = copies.first() else {
            continue;
        };
        for operator in first {
            let prefix = match planned.sources.len() {
                1 => String::new(),
                _ => format!("input {input}: "),
            };
            rows.push((
                upstream,
                format!(
                    "{prefix}{} (x{} in parallel)",
                    operator.describe(),
                    copies.len()
                ),
            ));
        }
    }
    if cut {
        rows.push((
            "log",
            "durable log of the model's outputs: one segment per epoch; a failure after it \
             restores region 2 alone and replays the log"
                .into(),
        ));
    }
    for step in planned.pipeline.describe() {
        rows.push((downstream, step));
    }
    rows.push((downstream, delivery));
    rows.push((
        "checkpoints",
        match (checkpoints, config.checkpoint_interval) {
            (false, _) => "none: a table or file source, or a table sink; the query starts over \
                           after a restart"
                .into(),
            (true, Some(interval)) => format!("every {} ms", interval.as_millis()),
            (true, None) => "only at CHECKPOINT".into(),
        },
    ));
    Ok(RecordBatch::try_new(
        explain_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|(r, _)| *r))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|(_, s)| s))),
        ],
    )?)
}
