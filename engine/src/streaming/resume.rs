//! Where a continuous query starts: from its last checkpoint when the
//! engine reopens a data directory, from the beginning when a client
//! creates it, and with checkpoints only when every part of it can be
//! checkpointed (replayable sources, operators whose state is snapshotted,
//! a sink that restores — a materialized view).

use std::sync::Arc;
use std::time::Duration;

use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::checkpoint::{CheckpointContent, CheckpointStore};
use super::config::{Origin, QueryConfig};
use super::log::RegionLog;
use super::plan::{PlannedQuery, plan_continuous_query};
use super::region::{RebuildUpstream, Upstream};
use super::runner::{Checkpointing, RegionStart, StartPoint};
use super::signal::Epoch;
use super::sink::EpochSink;
use super::source::StreamSource;
use crate::context::table_store;
use crate::storage::{TableStore, delete_if_present, storage_error};

/// The folder of the data directory that holds checkpoints.
const CHECKPOINTS_FOLDER: &str = "checkpoints";

/// What an unusable checkpoint's error says; the restore then starts over.
const UNUSABLE: &str = "cannot resume from its checkpoint";

/// The checkpoints of query `key` (its one region, `main`), when the
/// engine has a data directory.
pub fn checkpoint_store(ctx: &SessionContext, key: &str) -> Option<CheckpointStore> {
    let tables = table_store(ctx)?;
    let dir = tables.folder(CHECKPOINTS_FOLDER).join(key).join("main");
    Some(CheckpointStore::new(Arc::clone(tables.object_store()), dir))
}

/// Whether every part of `planned` feeding `sink` can be checkpointed.
pub fn checkpointable(planned: &PlannedQuery, sink: &dyn EpochSink) -> bool {
    planned.sources.iter().all(|s| s.offset().is_some())
        && planned.pipeline.checkpointable()
        && sink.checkpointable()
}

/// Decides where query `key` starts and, restoring, puts its sources,
/// operators and sink where its last checkpoint left them.
pub async fn start_point(
    ctx: &SessionContext,
    key: &str,
    planned: &mut PlannedQuery,
    sink: &Arc<dyn EpochSink>,
    config: &QueryConfig,
    origin: Origin,
) -> Result<StartPoint> {
    let interval = config.checkpoint_interval;
    let fresh = StartPoint {
        first_epoch: Epoch(1),
        checkpointing: None,
        region: None,
    };
    let Some(mut store) = checkpoint_store(ctx, key) else {
        return Ok(fresh);
    };
    if origin == Origin::Client {
        // A query created now starts from nothing, whatever an earlier
        // query of the same name left.
        store.remove_all().await?;
    }
    if !checkpointable(planned, sink.as_ref()) {
        return Ok(fresh);
    }
    let generation = store.claim_generation().await?;
    sink.use_checkpoints(generation);
    let log = match planned.region_cut && config.region_logs {
        true => Some(Arc::new(open_log(ctx, key, origin).await?)),
        false => None,
    };
    let mut first_epoch = Epoch(1);
    let mut downstream_next = Epoch(1);
    if origin.resumes()
        && let Some(manifest) = store.latest().await?
    {
        let mut content = store.load(&manifest).await?;
        if let Some(log) = &log {
            // The upstream region resumes after the log's newest segment,
            // the downstream one after the epoch its checkpoint consumed.
            content.sources = match log.newest_segment().await? {
                Some(segment) => segment.offsets.clone(),
                None => Vec::new(),
            };
        }
        if let Err(e) = restore(planned, sink.as_ref(), content).await {
            // Restoring may have changed some operators: the caller plans
            // the query again and it starts over (its sources replay).
            store.remove_all().await?;
            if let Some(log) = &log {
                log.clear().await?;
            }
            return Err(DataFusionError::Execution(format!(
                "{key} {UNUSABLE} (epoch {}): {e}",
                manifest.epoch
            )));
        }
        log::info!(
            "{key} resumes after its checkpoint of epoch {}",
            manifest.epoch
        );
        first_epoch = Epoch(manifest.epoch + 1);
        downstream_next = Epoch(manifest.consumed_log.unwrap_or(manifest.epoch) + 1);
    }
    let region = match log {
        Some(log) => {
            if let Some(newest) = log.newest() {
                first_epoch = first_epoch.max(newest.next());
            }
            if store.latest().await?.is_none() {
                // The downstream region restores from a checkpoint after a
                // failure: it has one from the start.
                let content = CheckpointContent {
                    operators: planned.pipeline.snapshot()?,
                    sink: sink.snapshot()?,
                    sources: Vec::new(),
                    consumed_log: Some(downstream_next.0 - 1),
                };
                store.commit(Epoch(downstream_next.0 - 1), &content).await?;
            }
            Some(RegionStart {
                log,
                downstream_next,
                rebuild: None,
            })
        }
        None => None,
    };
    Ok(StartPoint {
        first_epoch,
        checkpointing: Some(Checkpointing { store, interval }),
        region,
    })
}

/// How the upstream region of `query` (cut at `log`) is planned again when
/// it restarts on its own: the same plan's sources and head stages, the
/// sources resumed after the log's newest segment.
pub fn upstream_rebuild(
    ctx: &SessionContext,
    query: ast::Query,
    parallelism: usize,
    log: Arc<RegionLog>,
) -> RebuildUpstream {
    let ctx = ctx.clone();
    Arc::new(move || {
        let (ctx, query, log) = (ctx.clone(), query.clone(), Arc::clone(&log));
        Box::pin(async move {
            let planned = plan_continuous_query(&ctx, &query, parallelism).await?;
            let mut sources = planned.sources;
            if let Some(segment) = log.newest_segment().await? {
                restore_sources(&mut sources, &segment.offsets)?;
            }
            Ok(Upstream {
                sources,
                heads: planned.heads,
            })
        })
    })
}

/// The log after query `key`'s model calls; a client's new query starts
/// with an empty one.
async fn open_log(ctx: &SessionContext, key: &str, origin: Origin) -> Result<RegionLog> {
    let tables = table_store(ctx)
        .ok_or_else(|| DataFusionError::Internal("a region log needs a data directory".into()))?;
    let dir = tables.folder(CHECKPOINTS_FOLDER).join(key).join("log");
    let log = RegionLog::open(Arc::clone(tables.object_store()), dir).await?;
    if origin == Origin::Client {
        log.clear().await?;
    }
    Ok(log)
}

/// Whether `error` is a restore that found its checkpoint unusable (the
/// checkpoint is gone then: trying again starts over).
pub fn is_unusable_checkpoint(error: &DataFusionError) -> bool {
    error.to_string().contains(UNUSABLE)
}

/// Restores `planned` and `sink` from `content`; its sources too unless
/// the content has no offsets (a region log's downstream region, whose
/// input resumes from the log).
async fn restore(
    planned: &mut PlannedQuery,
    sink: &dyn EpochSink,
    content: CheckpointContent,
) -> Result<()> {
    if !content.sources.is_empty() && content.sources.len() != planned.sources.len() {
        return Err(DataFusionError::Execution(format!(
            "the checkpoint has {} sources, the plan {}",
            content.sources.len(),
            planned.sources.len()
        )));
    }
    planned
        .pipeline
        .restore_with_sink(sink, content.operators, content.sink)
        .await?;
    restore_sources(&mut planned.sources, &content.sources)
}

/// Puts each source back at its checkpointed offset.
fn restore_sources(
    sources: &mut [Box<dyn StreamSource>],
    offsets: &[serde_json::Value],
) -> Result<()> {
    for (source, offset) in sources.iter_mut().zip(offsets) {
        source.restore(offset)?;
    }
    Ok(())
}

/// Deletes query `key`'s checkpoints, region log and settings (it was
/// dropped).
pub async fn remove_checkpoints(ctx: &SessionContext, key: &str) -> Result<()> {
    if let Some(store) = checkpoint_store(ctx, key) {
        store.remove_all().await?;
        open_log(ctx, key, Origin::Client).await?;
    }
    if let Some(tables) = table_store(ctx) {
        delete_if_present(tables.object_store().as_ref(), &settings_path(&tables, key)).await?;
    }
    Ok(())
}

/// The settings a query was created with, as stored beside its
/// checkpoints.
#[derive(Serialize, Deserialize)]
struct SavedSettings {
    barrier_interval_ms: u64,
    parallelism: usize,
    /// 0: only at `CHECKPOINT`.
    checkpoint_interval_ms: u64,
    #[serde(default = "on")]
    region_logs: bool,
}

fn on() -> bool {
    true
}

fn settings_path(tables: &TableStore, key: &str) -> object_store::path::Path {
    tables
        .folder(CHECKPOINTS_FOLDER)
        .join(key)
        .join("settings.json")
}

/// Stores the settings query `key` is created with, so that it runs with
/// them again after a restart (not with the restoring session's defaults).
pub async fn save_settings(ctx: &SessionContext, key: &str, config: &QueryConfig) -> Result<()> {
    let Some(tables) = table_store(ctx) else {
        return Ok(());
    };
    let saved = SavedSettings {
        barrier_interval_ms: config.barrier_interval.as_millis() as u64,
        parallelism: config.parallelism,
        checkpoint_interval_ms: config
            .checkpoint_interval
            .map_or(0, |interval| interval.as_millis() as u64),
        region_logs: config.region_logs,
    };
    let body = serde_json::to_vec(&saved)
        .map_err(|e| DataFusionError::Internal(format!("cannot encode settings: {e}")))?;
    tables
        .object_store()
        .put(&settings_path(&tables, key), body.into())
        .await
        .map_err(storage_error)?;
    Ok(())
}

/// The settings query `key` was created with, if stored.
pub async fn saved_settings(ctx: &SessionContext, key: &str) -> Result<Option<QueryConfig>> {
    let Some(tables) = table_store(ctx) else {
        return Ok(None);
    };
    let bytes = match tables
        .object_store()
        .get(&settings_path(&tables, key))
        .await
    {
        Ok(found) => found.bytes().await.map_err(storage_error)?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(storage_error(e)),
    };
    let saved: SavedSettings = serde_json::from_slice(&bytes).map_err(|e| {
        DataFusionError::Execution(format!("corrupt settings of continuous query {key}: {e}"))
    })?;
    Ok(Some(QueryConfig {
        barrier_interval: Duration::from_millis(saved.barrier_interval_ms),
        parallelism: saved.parallelism,
        checkpoint_interval: (saved.checkpoint_interval_ms > 0)
            .then(|| Duration::from_millis(saved.checkpoint_interval_ms)),
        region_logs: saved.region_logs,
    }))
}
