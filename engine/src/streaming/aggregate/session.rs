//! [`SessionOperator`]: `GROUP BY window_start, window_end, …` over
//! `SESSION(TABLE t [PARTITION BY k], DESCRIPTOR(ts), gap)` in a continuous
//! query. Each row arrives as its own proto-session `[ts, ts + gap]`
//! (see `rewrite::window_tvf`); sessions of a partition that touch merge,
//! their groups' accumulators merged with DataFusion's own `merge_batch`
//! (as Flink's merging window assigner does). A session is emitted once,
//! when the watermark passes its end; rows behind the watermark are late:
//! dropped and counted, so no row can reach a session already emitted.

use std::collections::HashMap;

use datafusion::common::hash_utils::RandomState;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Int64Array, RecordBatch, TimestampNanosecondArray,
    UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use sluice_types::error::{SluiceError, SqlState};

use super::checkpoint::{StateColumns, load_states, state_batch, state_widths, typed};
use super::operator::{argument_columns, evaluate_columns, evaluate_states, output_batch};
use super::state::{AggregateState, AggregateStrategy};
use crate::streaming::checkpoint::StateSnapshot;
use crate::streaming::operator::{OperatorMetrics, StreamOperator};
use crate::streaming::signal::{Change, ChangeOp, Watermark, event_time_nanos};

/// `window_time` is `window_end` minus this (Flink's convention).
const WINDOW_TIME_OFFSET_NANOS: i64 = 1_000_000;

/// What a group column of a session aggregate holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRole {
    /// `window_start`: the row's time (the proto-session's start).
    Start,
    /// `window_end`.
    End,
    /// `window_time`.
    Time,
    /// Any other column; `true` when it is a `PARTITION BY` column.
    Key { partition: bool },
}

/// One open session of a partition.
struct Session {
    start: i64,
    end: i64,
    /// Per group key (the non-window group columns), each aggregate's state.
    groups: HashMap<OwnedRow, Vec<AggregateState>, RandomState>,
}

/// A session-window `GROUP BY`; see the module docs.
pub struct SessionOperator {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    roles: Vec<GroupRole>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    strategies: Vec<AggregateStrategy>,
    output_schema: SchemaRef,
    gap: i64,
    /// The non-window group columns, as a group's key.
    keys: RowConverter,
    /// The `PARTITION BY` columns (none: one partition).
    partitions: RowConverter,
    /// Per partition, its open sessions.
    sessions: HashMap<OwnedRow, Vec<Session>, RandomState>,
    watermark: Option<Watermark>,
    late_rows: u64,
}

impl SessionOperator {
    /// Sessions ending `gap` nanoseconds after their last row, grouped by
    /// `group_exprs` (each with its role and type), emitting rows of
    /// `output_schema` (group columns, then aggregates).
    pub fn try_new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        roles: Vec<GroupRole>,
        group_types: Vec<DataType>,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        strategies: Vec<AggregateStrategy>,
        gap: i64,
        output_schema: SchemaRef,
    ) -> Result<Self> {
        let key_types = |partition_only: bool| {
            roles
                .iter()
                .zip(&group_types)
                .filter(|(role, _)| match role {
                    GroupRole::Key { partition } => *partition || !partition_only,
                    _ => false,
                })
                .map(|(_, t)| SortField::new(t.clone()))
                .collect::<Vec<_>>()
        };
        // No such columns: rows are keyed by one constant (see `key_rows`).
        let converter = |fields: Vec<SortField>| {
            if fields.is_empty() {
                RowConverter::new(vec![SortField::new(DataType::Boolean)])
            } else {
                RowConverter::new(fields)
            }
        };
        if !roles.contains(&GroupRole::Start) {
            return Err(DataFusionError::Internal(
                "a session aggregate without window_start".into(),
            ));
        }
        Ok(Self {
            keys: converter(key_types(false))?,
            partitions: converter(key_types(true))?,
            group_exprs,
            roles,
            aggregates,
            strategies,
            output_schema,
            gap,
            sessions: HashMap::default(),
            watermark: None,
            late_rows: 0,
        })
    }

    fn new_states(&self) -> Result<Vec<AggregateState>> {
        self.aggregates
            .iter()
            .zip(&self.strategies)
            .map(|(aggregate, strategy)| strategy.new_state(aggregate, false))
            .collect()
    }

    /// Converts the group columns of `roles`' kind: the keys, or the
    /// partitions.
    fn key_rows(&self, columns: &[ArrayRef], partition_only: bool) -> Result<Rows> {
        let selected: Vec<ArrayRef> = self
            .roles
            .iter()
            .zip(columns)
            .filter(|(role, _)| match role {
                GroupRole::Key { partition } => *partition || !partition_only,
                _ => false,
            })
            .map(|(_, column)| Arc::clone(column))
            .collect();
        let converter = if partition_only {
            &self.partitions
        } else {
            &self.keys
        };
        if selected.is_empty() {
            // No such columns: every row has the same key.
            let rows = columns.first().map_or(0, |c| c.len());
            let constant: ArrayRef = Arc::new(BooleanArray::from(vec![true; rows]));
            return Ok(converter.convert_columns(&[constant])?);
        }
        Ok(converter.convert_columns(&selected)?)
    }

    /// Adds the rows `run` (indices into the batch, one partition, times
    /// within `gap` of each other) as the session `[start, end]`, merged
    /// with the open sessions it touches.
    fn add_run(
        &mut self,
        partition: OwnedRow,
        start: i64,
        end: i64,
        run: &[u32],
        keys: &Rows,
        arguments: &[Vec<ArrayRef>],
    ) -> Result<()> {
        let open = self.sessions.entry(partition.clone()).or_default();
        let (touching, apart): (Vec<Session>, Vec<Session>) = std::mem::take(open)
            .into_iter()
            .partition(|s| s.start <= end && s.end >= start);
        *open = apart;
        let mut session = Session {
            start,
            end,
            groups: HashMap::default(),
        };
        for other in touching {
            session.start = session.start.min(other.start);
            session.end = session.end.max(other.end);
            for (key, states) in other.groups {
                match session.groups.entry(key) {
                    Entry::Vacant(entry) => {
                        entry.insert(states);
                    }
                    Entry::Occupied(mut entry) => {
                        for (into, from) in entry.get_mut().iter_mut().zip(states) {
                            into.merge(from)?;
                        }
                    }
                }
            }
        }
        let mut by_key: Vec<(OwnedRow, Vec<u32>)> = Vec::new();
        let mut index: HashMap<OwnedRow, usize, RandomState> = HashMap::default();
        for &row in run {
            let key = keys.row(row as usize).owned();
            match index.get(&key) {
                Some(&at) => by_key[at].1.push(row),
                None => {
                    index.insert(key.clone(), by_key.len());
                    by_key.push((key, vec![row]));
                }
            }
        }
        for (key, rows) in by_key {
            let indices = UInt32Array::from(rows);
            if !session.groups.contains_key(&key) {
                let states = self.new_states()?;
                session.groups.insert(key.clone(), states);
            }
            let Some(states) = session.groups.get_mut(&key) else {
                continue;
            };
            for ((state, strategy), columns) in
                states.iter_mut().zip(&self.strategies).zip(arguments)
            {
                let taken = columns
                    .iter()
                    .map(|column| take(column.as_ref(), &indices, None))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                state.apply(strategy, &taken, ChangeOp::Insert)?;
            }
        }
        self.sessions.entry(partition).or_default().push(session);
        Ok(())
    }

    /// The output rows of closed sessions: (start, end, key, values).
    fn output(
        &self,
        rows: Vec<(i64, i64, OwnedRow, Vec<ScalarValue>)>,
    ) -> Result<Option<RecordBatch>> {
        if rows.is_empty() {
            return Ok(None);
        }
        let key_columns = self
            .keys
            .convert_rows(rows.iter().map(|(_, _, key, _)| key.row()))?;
        let mut keys = key_columns.into_iter();
        let times = |f: &dyn Fn(i64, i64) -> i64| -> ArrayRef {
            Arc::new(TimestampNanosecondArray::from_iter_values(
                rows.iter().map(|(start, end, _, _)| f(*start, *end)),
            ))
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output_schema.fields().len());
        for role in &self.roles {
            columns.push(match role {
                GroupRole::Start => times(&|start, _| start),
                GroupRole::End => times(&|_, end| end),
                GroupRole::Time => times(&|_, end| end - WINDOW_TIME_OFFSET_NANOS),
                GroupRole::Key { .. } => keys.next().ok_or_else(|| {
                    DataFusionError::Internal("a session key column is missing".into())
                })?,
            });
        }
        let values: Vec<&[ScalarValue]> = rows.iter().map(|(_, _, _, v)| v.as_slice()).collect();
        output_batch(&self.output_schema, columns, &values).map(Some)
    }
}

#[async_trait]
impl StreamOperator for SessionOperator {
    fn name(&self) -> &str {
        "session window aggregate"
    }

    fn snapshot(&mut self) -> Result<Option<StateSnapshot>> {
        let meta = serde_json::json!({
            "watermark": self.watermark.map(|w| w.0),
            "late_rows": self.late_rows,
        });
        // One row per (partition, open session, group).
        let (mut partitions, mut starts, mut ends, mut keys) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut states = StateColumns::new(self.aggregates.len());
        for (partition, sessions) in &mut self.sessions {
            for session in sessions {
                for (key, aggregates) in &mut session.groups {
                    partitions.push(partition.row().data().to_vec());
                    starts.push(session.start);
                    ends.push(session.end);
                    keys.push(key.row().data().to_vec());
                    states.push(aggregates)?;
                }
            }
        }
        if partitions.is_empty() {
            return Ok(Some(StateSnapshot {
                batches: Vec::new(),
                meta,
            }));
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(BinaryArray::from_iter_values(partitions)),
            Arc::new(Int64Array::from(starts)),
            Arc::new(Int64Array::from(ends)),
            Arc::new(BinaryArray::from_iter_values(keys)),
        ];
        states.finish(&mut columns)?;
        Ok(Some(StateSnapshot {
            batches: vec![state_batch(columns)?],
            meta,
        }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        self.watermark = snapshot.meta["watermark"].as_i64().map(Watermark);
        self.late_rows = snapshot.meta["late_rows"].as_u64().unwrap_or(0);
        let mut sessions: HashMap<OwnedRow, Vec<Session>, RandomState> = HashMap::default();
        let (partition_parser, key_parser) = (self.partitions.parser(), self.keys.parser());
        for batch in &snapshot.batches {
            let partitions = typed::<BinaryArray>(batch, 0)?;
            let starts = typed::<Int64Array>(batch, 1)?;
            let ends = typed::<Int64Array>(batch, 2)?;
            let keys = typed::<BinaryArray>(batch, 3)?;
            let widths = state_widths(&mut self.new_states()?)?;
            for row in 0..batch.num_rows() {
                let mut states = self.new_states()?;
                load_states(batch, 4, row, &widths, &mut states, &self.strategies)?;
                let partition = partition_parser.parse(partitions.value(row)).owned();
                let open = sessions.entry(partition).or_default();
                let (start, end) = (starts.value(row), ends.value(row));
                let index = match open.iter().position(|s| s.start == start && s.end == end) {
                    Some(index) => index,
                    None => {
                        open.push(Session {
                            start,
                            end,
                            groups: HashMap::default(),
                        });
                        open.len() - 1
                    }
                };
                open[index]
                    .groups
                    .insert(key_parser.parse(keys.value(row)).owned(), states);
            }
        }
        for open in sessions.values_mut() {
            open.sort_by_key(|session| session.start);
        }
        self.sessions = sessions;
        Ok(())
    }

    fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.output_schema)
    }

    async fn process_change(&mut self, change: Change, _out: &mut Vec<Change>) -> Result<()> {
        let batch = &change.batch;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if change.op == ChangeOp::Delete {
            return Err(SluiceError::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                "a session window aggregate is append-only: rows deleted or updated in its \
                 source cannot be retracted from sessions already emitted",
            )
            .into());
        }
        let columns = evaluate_columns(&self.group_exprs, batch)?;
        let start = self
            .roles
            .iter()
            .position(|role| *role == GroupRole::Start)
            .and_then(|i| columns.get(i))
            .ok_or_else(|| DataFusionError::Internal("no window_start column".into()))?;
        let times = event_time_nanos(start)?;
        if times.null_count() > 0 {
            return Err(SluiceError::new(
                SqlState::NULL_VALUE_NOT_ALLOWED,
                "a session window's time column is NULL",
            )
            .into());
        }
        let keys = self.key_rows(&columns, false)?;
        let partitions = self.key_rows(&columns, true)?;
        let arguments = argument_columns(&self.aggregates, batch)?;
        // Rows behind the watermark are late; the rest in partition and
        // time order, so rows within `gap` of each other form runs.
        let watermark = self.watermark.map_or(i64::MIN, |w| w.0);
        let mut order: Vec<u32> = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            if times.value(row) < watermark {
                self.late_rows += 1;
            } else {
                order.push(row as u32);
            }
        }
        order.sort_by(|&a, &b| {
            partitions
                .row(a as usize)
                .cmp(&partitions.row(b as usize))
                .then(times.value(a as usize).cmp(&times.value(b as usize)))
        });
        let mut at = 0;
        while at < order.len() {
            let first = order[at] as usize;
            let start = times.value(first);
            let mut end = start.saturating_add(self.gap);
            let mut next = at + 1;
            while let Some(&row) = order.get(next) {
                let row = row as usize;
                if partitions.row(row) != partitions.row(first) || times.value(row) > end {
                    break;
                }
                end = end.max(times.value(row).saturating_add(self.gap));
                next += 1;
            }
            let partition = partitions.row(first).owned();
            let run = order[at..next].to_vec();
            self.add_run(partition, start, end, &run, &keys, &arguments)?;
            at = next;
        }
        Ok(())
    }

    async fn handle_watermark(
        &mut self,
        watermark: Watermark,
        out: &mut Vec<Change>,
    ) -> Result<Watermark> {
        if self.watermark.is_some_and(|w| w >= watermark) {
            return Ok(watermark);
        }
        self.watermark = Some(watermark);
        // A session closes once the watermark is past its end: a row still
        // to come (at or after the watermark) cannot touch it.
        let mut rows = Vec::new();
        for open in self.sessions.values_mut() {
            let (closed, still_open): (Vec<Session>, Vec<Session>) = std::mem::take(open)
                .into_iter()
                .partition(|s| s.end < watermark.0);
            *open = still_open;
            for session in closed {
                for (key, mut states) in session.groups {
                    let values = evaluate_states(&mut states, &self.strategies, &self.aggregates)?;
                    rows.push((session.start, session.end, key, values));
                }
            }
        }
        self.sessions.retain(|_, open| !open.is_empty());
        if let Some(batch) = self.output(rows)? {
            out.push(Change::insert(batch));
        }
        Ok(watermark)
    }

    fn metrics(&self) -> OperatorMetrics {
        OperatorMetrics {
            late_rows: self.late_rows,
            state_entries: self
                .sessions
                .values()
                .flatten()
                .map(|s| s.groups.len() as u64)
                .sum(),
        }
    }
}
