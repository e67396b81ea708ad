//! Plans `CREATE SINK` ([`crate::sql::sink_statement`]): its input (a
//! materialized view's changes, or a query planned like a view's) and the
//! [`EpochSink`] its connector options name.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use sluice_types::error::{SluiceError, SqlState};

use super::location::open_location;
use super::nats_sink::NatsSink;
use super::pipeline::Pipeline;
use super::plan::{PlannedQuery, plan_continuous_query};
use super::registry::{QueryKind, continuous_queries};
use super::sink::{EpochSink, FileFormat, FileSink, SinkRows, TableSink};
use super::source::ViewSource;
use super::source::generator::{OptionBag, invalid_option};
use super::source::nats::NatsOptions;
use crate::sql::sink_statement::{CreateSink, SinkInput};

/// The query a sink delivers and the sink itself.
pub async fn plan_sink(
    ctx: &SessionContext,
    create: &CreateSink,
    key: &str,
    parallelism: usize,
) -> Result<(PlannedQuery, Arc<dyn EpochSink>)> {
    let planned = match &create.input {
        SinkInput::Query(query) => plan_continuous_query(ctx, query, parallelism).await?,
        SinkInput::View(name) => {
            let reference =
                datafusion::sql::planner::object_name_to_table_reference(name.clone(), false)?;
            let view_key = crate::ddl::tables::durable_name(ctx, &reference)
                .map(|n| n.definition_key())
                .unwrap_or_default();
            let view = continuous_queries(ctx)
                .get(&view_key)
                .filter(|q| q.kind == QueryKind::View)
                .and_then(|q| q.view.clone())
                .ok_or_else(|| {
                    SluiceError::new(
                        SqlState::UNDEFINED_TABLE,
                        format!("materialized view \"{name}\" does not exist"),
                    )
                })?;
            PlannedQuery {
                sources: vec![Box::new(ViewSource::new(&view_key, &view)?)],
                source_tables: vec![reference],
                heads: vec![Vec::new()],
                pipeline: Pipeline::chain(Vec::new()),
                output_schema: Arc::clone(view.schema()),
                append_only: false,
                updating: view.is_updating(),
                region_cut: false,
            }
        }
    };
    let rows = SinkRows::new(key, Arc::clone(&planned.output_schema), planned.updating);
    let mut options = OptionBag::new(create.options.clone());
    let connector = options.take("connector").unwrap_or_default();
    let sink: Arc<dyn EpochSink> = match connector.to_ascii_lowercase().as_str() {
        "filesystem" => {
            let path = options
                .take("path")
                .ok_or_else(|| invalid_option("a filesystem sink needs 'path'"))?;
            let format = FileFormat::parse(&options.take("format").unwrap_or("parquet".into()))?;
            let (store, prefix, _) = open_location(ctx, &path)?;
            Arc::new(FileSink::new(rows, store, prefix, format))
        }
        "table" => {
            let name = options
                .take("table")
                .ok_or_else(|| invalid_option("a table sink needs 'table'"))?;
            let provider = ctx.table_provider(name.as_str()).await?;
            Arc::new(TableSink::try_new(rows, provider, &name, ctx.state())?)
        }
        "nats" => Arc::new(NatsSink::new(key, rows, NatsOptions::parse(&mut options)?)),
        other => {
            return Err(invalid_option(&format!(
                "unknown sink connector '{other}': Sluice has 'filesystem', 'table' and 'nats'"
            )));
        }
    };
    options.finish(&connector)?;
    Ok((planned, sink))
}
