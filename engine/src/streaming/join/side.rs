//! [`SideRows`]: the rows one input of a join has produced and not
//! retracted, kept as Arrow batches so they can feed DataFusion's join, and
//! (with a [`KeyIndex`]) found by join key.
//!
//! Every kept row has an id, counted up as rows arrive and never reused, so
//! a batch holds the ids `start..start + rows`: the index stays valid as
//! batches are merged (the newest ones, binary-counter style, so there are
//! O(log n) of them and each row is copied O(log n) times) and as whole
//! batches leave. A deleted or expired row inside a batch is marked dead
//! rather than cut out; when dead rows and stale index entries outnumber
//! the live rows, everything is rewritten once and indexed afresh.

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, interleave_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::error::Result;
use std::collections::HashMap;

use super::key_index::{KeyIndex, key_nulls};
use crate::streaming::signal::event_time_nanos;

/// Rewrites are not worth it below this many dead rows.
const MIN_DEAD_TO_COMPACT: usize = 1024;

/// A change goes through the key index only when the kept rows outnumber
/// its rows this many times; a larger change (the first read of a table)
/// is joined with everything at once, as cheaply as DataFusion's hash join
/// builds its own table.
const INDEX_WHEN_KEPT_EXCEEDS_CHANGE: usize = 4;

/// One batch of kept rows.
struct Kept {
    /// The id of its first row.
    start: u64,
    batch: RecordBatch,
    /// Which rows are dead (deleted or expired); `None`: none is.
    dead: Option<Vec<bool>>,
    dead_rows: usize,
    /// The earliest and latest event time (of the column expiry reads),
    /// once asked for.
    times: Option<(i64, i64)>,
}

impl Kept {
    fn end(&self) -> u64 {
        self.start + self.batch.num_rows() as u64
    }

    fn live_rows(&self) -> usize {
        self.batch.num_rows() - self.dead_rows
    }

    fn is_dead(&self, row: usize) -> bool {
        self.dead.as_ref().is_some_and(|dead| dead[row])
    }

    /// Marks `row` dead; false if it was already.
    fn kill(&mut self, row: usize) -> bool {
        let rows = self.batch.num_rows();
        let dead = self.dead.get_or_insert_with(|| vec![false; rows]);
        if dead[row] {
            return false;
        }
        dead[row] = true;
        self.dead_rows += 1;
        true
    }

    /// Its live rows.
    fn live(&self) -> Result<RecordBatch> {
        match &self.dead {
            Some(dead) if self.dead_rows > 0 => {
                let keep: BooleanArray = dead.iter().map(|d| Some(!d)).collect();
                Ok(filter_record_batch(&self.batch, &keep)?)
            }
            _ => Ok(self.batch.clone()),
        }
    }
}

/// One join input's current rows.
pub struct SideRows {
    schema: SchemaRef,
    kept: Vec<Kept>,
    next_id: u64,
    /// Live rows in all.
    rows: usize,
    /// Dead rows still in kept batches.
    dead: usize,
    /// The key index, where the join has keys; built when a change first
    /// needs it, then kept current.
    index: Option<KeyIndex>,
    indexed: bool,
}

impl SideRows {
    /// No rows yet, of `schema`; `index`: find them by join key.
    pub fn new(schema: SchemaRef, index: Option<KeyIndex>) -> Self {
        Self {
            schema,
            kept: Vec::new(),
            next_id: 0,
            rows: 0,
            dead: 0,
            index,
            indexed: false,
        }
    }

    /// How many rows are kept.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The kept rows (shared where no row of a batch has died).
    pub fn batches(&self) -> Result<Vec<RecordBatch>> {
        self.kept
            .iter()
            .filter(|kept| kept.live_rows() > 0)
            .map(Kept::live)
            .collect()
    }

    /// The kept rows a change can join with: with an index, those whose
    /// key equals one of `probe`'s (its key columns at `probe_columns`);
    /// without one, all of them.
    pub fn candidates(
        &mut self,
        probe: &RecordBatch,
        probe_columns: Option<&[usize]>,
    ) -> Result<Vec<RecordBatch>> {
        match probe_columns {
            Some(columns) if self.is_small(probe) && self.index.is_some() => {
                self.by_key(probe, columns)
            }
            _ => self.batches(),
        }
    }

    /// Whether a change of `probe`'s rows is small against the kept rows,
    /// so finding its partners by key beats joining with everything.
    pub fn is_small(&self, probe: &RecordBatch) -> bool {
        probe
            .num_rows()
            .saturating_mul(INDEX_WHEN_KEPT_EXCEEDS_CHANGE)
            < self.rows
    }

    /// The kept rows whose key hashes as one of `probe`'s (its key columns
    /// at `probe_columns`), through the key index (built if it is not);
    /// every kept row if the join has no keys.
    pub fn by_key(
        &mut self,
        probe: &RecordBatch,
        probe_columns: &[usize],
    ) -> Result<Vec<RecordBatch>> {
        if !self.build_index()? {
            return self.batches();
        }
        let ids = match &self.index {
            Some(index) => index.matching(probe, probe_columns)?,
            None => Vec::new(),
        };
        Ok(self.gather(&ids)?.into_iter().collect())
    }

    /// Builds the key index over the kept rows if it is not yet built;
    /// false if the join has no keys.
    fn build_index(&mut self) -> Result<bool> {
        let Some(index) = &mut self.index else {
            return Ok(false);
        };
        if !self.indexed {
            index.clear();
            for kept in &self.kept {
                index.add(&kept.batch, kept.start)?;
            }
            index.forget(self.dead);
            self.indexed = true;
            log::debug!("a join side's {} kept rows are indexed by key", self.rows);
        }
        Ok(true)
    }

    /// The live rows of `ids` (ascending), as one batch.
    fn gather(&self, ids: &[u64]) -> Result<Option<RecordBatch>> {
        let mut positions = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some((at, row)) = self.locate(id)
                && !self.kept[at].is_dead(row)
            {
                positions.push((at, row));
            }
        }
        if positions.is_empty() {
            return Ok(None);
        }
        let batches: Vec<&RecordBatch> = self.kept.iter().map(|k| &k.batch).collect();
        Ok(Some(interleave_record_batch(&batches, &positions)?))
    }

    /// The batch and row of `id`, if it is still kept.
    fn locate(&self, id: u64) -> Option<(usize, usize)> {
        let at = self.kept.partition_point(|kept| kept.end() <= id);
        let kept = self.kept.get(at)?;
        (kept.start <= id).then(|| (at, (id - kept.start) as usize))
    }

    /// Keeps `batch`'s rows.
    pub fn insert(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let start = self.next_id;
        if let Some(index) = &mut self.index
            && self.indexed
        {
            index.add(&batch, start)?;
        }
        self.next_id += batch.num_rows() as u64;
        self.rows += batch.num_rows();
        self.kept.push(Kept {
            start,
            batch,
            dead: None,
            dead_rows: 0,
            times: None,
        });
        self.merge_newest()
    }

    /// Merges the newest batches while the last is at least as large as
    /// the one before it (and their ids are contiguous).
    fn merge_newest(&mut self) -> Result<()> {
        while let [.., before, last] = self.kept.as_slice() {
            if last.batch.num_rows() < before.batch.num_rows() || before.end() != last.start {
                break;
            }
            let (Some(last), Some(before)) = (self.kept.pop(), self.kept.pop()) else {
                break;
            };
            let dead = match (&before.dead, &last.dead) {
                (None, None) => None,
                _ => {
                    let mut dead = before
                        .dead
                        .unwrap_or_else(|| vec![false; before.batch.num_rows()]);
                    dead.extend(
                        last.dead
                            .unwrap_or_else(|| vec![false; last.batch.num_rows()]),
                    );
                    Some(dead)
                }
            };
            let times = match (before.times, last.times) {
                (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
                _ => None,
            };
            self.kept.push(Kept {
                start: before.start,
                batch: concat_batches(&self.schema, [&before.batch, &last.batch])?,
                dead,
                dead_rows: before.dead_rows + last.dead_rows,
                times,
            });
        }
        Ok(())
    }

    /// Removes one kept copy of each of `batch`'s rows (a retraction).
    pub fn delete(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 || self.rows == 0 {
            return Ok(());
        }
        let converter = RowConverter::new(
            self.schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let mut wanted: HashMap<Vec<u8>, usize> = HashMap::new();
        for row in converter.convert_columns(batch.columns())?.iter() {
            *wanted.entry(row.as_ref().to_vec()).or_default() += 1;
        }
        // The rows that may be deleted, by id: those with the deleted rows'
        // keys, or every live row. The index leaves out rows with a NULL
        // key (they match nothing), so deleting one looks at every row: an
        // outer join's NULL-keyed rows stayed behind, and their NULL-padded
        // output with them, when the keyed exchange gathered them in one
        // copy whose index was built.
        let ids: Vec<u64> = match &self.index {
            Some(index)
                if self.indexed
                    && key_nulls(batch, index.columns()).is_none_or(|n| n.null_count() == 0) =>
            {
                index.matching(batch, index.columns())?
            }
            _ => self
                .kept
                .iter()
                .flat_map(|kept| kept.start..kept.end())
                .collect(),
        };
        let before = self.rows;
        for chunk in ids.chunks(8192) {
            if wanted.is_empty() {
                break;
            }
            let live: Vec<u64> = chunk
                .iter()
                .copied()
                .filter(|&id| {
                    self.locate(id)
                        .is_some_and(|(at, row)| !self.kept[at].is_dead(row))
                })
                .collect();
            let Some(rows) = self.gather(&live)? else {
                continue;
            };
            let rows = converter.convert_columns(rows.columns())?;
            for (id, row) in live.iter().zip(rows.iter()) {
                let Some(count) = wanted.get_mut(row.as_ref()) else {
                    continue;
                };
                *count -= 1;
                if *count == 0 {
                    wanted.remove(row.as_ref());
                }
                if let Some((at, row)) = self.locate(*id) {
                    self.kept[at].kill(row);
                }
            }
        }
        self.settle(before)
    }

    /// Recounts after rows died (`before`: the live rows there were),
    /// dropping wholly dead batches (their ids are never reused), and
    /// rewrites everything once the dead outnumber the living.
    fn settle(&mut self, before: usize) -> Result<()> {
        self.kept.retain(|kept| kept.live_rows() > 0);
        self.rows = self.kept.iter().map(Kept::live_rows).sum();
        self.dead = self.kept.iter().map(|kept| kept.dead_rows).sum();
        let waste = match &mut self.index {
            Some(index) if self.indexed => {
                index.forget(before.saturating_sub(self.rows));
                index.stale().max(self.dead)
            }
            _ => self.dead,
        };
        if waste > self.rows.max(MIN_DEAD_TO_COMPACT) {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the live rows into one batch with fresh ids, indexed anew.
    fn compact(&mut self) -> Result<()> {
        let live = self.batches()?;
        self.kept.clear();
        self.next_id = 0;
        self.rows = 0;
        self.dead = 0;
        if let Some(index) = &mut self.index {
            index.clear();
        }
        // Indexed again when a change next needs it.
        self.indexed = false;
        if live.is_empty() {
            return Ok(());
        }
        let batch = concat_batches(&self.schema, &live)?;
        self.insert(batch)
    }

    /// Drops the rows whose event time (column `column`) is below `bound`
    /// nanoseconds: they can match nothing that is still to come.
    pub fn retain_from(&mut self, column: usize, bound: i64) -> Result<()> {
        let before = self.rows;
        let mut changed = false;
        for kept in &mut self.kept {
            // Each batch's times are read once: its span is kept, and only a
            // batch the bound cuts through is read again, row by row.
            let mut read = None;
            let (earliest, latest) = match kept.times {
                Some(times) => times,
                None => {
                    let times = event_time_nanos(kept.batch.column(column))?;
                    let earliest = times.iter().flatten().min().unwrap_or(i64::MIN);
                    let latest = times.iter().flatten().max().unwrap_or(i64::MIN);
                    kept.times = Some((earliest, latest));
                    read = Some(times);
                    (earliest, latest)
                }
            };
            if earliest >= bound {
                continue;
            }
            if latest < bound {
                // The whole batch goes (rows with no time match nothing).
                kept.dead = None;
                kept.dead_rows = kept.batch.num_rows();
                changed = true;
                continue;
            }
            let times = match read {
                Some(times) => times,
                None => event_time_nanos(kept.batch.column(column))?,
            };
            for (row, time) in times.iter().enumerate() {
                if time.is_none_or(|t| t < bound) {
                    changed |= kept.kill(row);
                }
            }
            kept.times = Some((bound, latest));
        }
        if !changed {
            return Ok(());
        }
        self.settle(before)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use datafusion::arrow::array::{Array, Int64Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    fn batch(ids: &[i64], times: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(TimestampNanosecondArray::from(times.to_vec())),
            ],
        )
        .unwrap()
    }

    fn ids(side: &SideRows) -> Vec<i64> {
        let mut ids: Vec<i64> = side
            .batches()
            .unwrap()
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_delete_removes_one_copy_of_each_row() {
        let mut side = SideRows::new(batch(&[], &[]).schema(), None);
        side.insert(batch(&[1, 2, 2], &[10, 20, 20])).unwrap();
        side.insert(batch(&[3], &[30])).unwrap();
        side.delete(&batch(&[2, 3, 9], &[20, 30, 90])).unwrap();
        assert_eq!(ids(&side), vec![1, 2]);
        assert_eq!(side.rows(), 2);
    }

    #[test]
    fn rows_below_the_bound_are_dropped() {
        let mut side = SideRows::new(batch(&[], &[]).schema(), None);
        for i in 0..40 {
            side.insert(batch(&[i], &[i * 10])).unwrap();
        }
        side.retain_from(1, 355).unwrap();
        assert_eq!(ids(&side), (36..40).collect::<Vec<_>>());
    }

    fn indexed(batch: &RecordBatch) -> SideRows {
        let index = KeyIndex::new(vec![0]);
        SideRows::new(batch.schema(), Some(index))
    }

    fn all_ids(batches: &[RecordBatch]) -> Vec<i64> {
        let mut ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_change_meets_only_the_rows_with_its_keys_through_merges_and_deletes() {
        let mut side = indexed(&batch(&[], &[]));
        // One row at a time: the newest batches merge binary-counter style.
        for i in 0..1000 {
            side.insert(batch(&[i % 100], &[i])).unwrap();
        }
        assert!(side.kept.len() <= 11, "{} batches", side.kept.len());
        let probe = batch(&[7, 7, 42, 1000], &[0, 0, 0, 0]);
        let found = side.candidates(&probe, Some(&[0])).unwrap();
        assert_eq!(all_ids(&found), [vec![7; 10], vec![42; 10]].concat());
        // Deleting rows (one copy each) takes them out of what is found.
        side.delete(&batch(&[7, 7], &[7, 107])).unwrap();
        let found = side.candidates(&probe, Some(&[0])).unwrap();
        assert_eq!(all_ids(&found), [vec![7; 8], vec![42; 10]].concat());
        assert_eq!(side.rows(), 998);
        // Without probe columns every kept row is a candidate.
        assert_eq!(
            side.candidates(&probe, None)
                .unwrap()
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>(),
            998
        );
    }

    #[test]
    fn expiry_and_compaction_keep_the_index_right() {
        let mut side = indexed(&batch(&[], &[]));
        for i in 0..5000 {
            side.insert(batch(&[i % 10], &[i])).unwrap();
        }
        // A small change builds the index.
        let found = side.candidates(&batch(&[3], &[0]), Some(&[0])).unwrap();
        assert_eq!(found.iter().map(RecordBatch::num_rows).sum::<usize>(), 500);
        assert!(side.indexed);
        // Most rows expire: the stale entries outnumber the living rows, so
        // the rows are rewritten (and indexed afresh when next needed).
        side.retain_from(1, 4990).unwrap();
        assert_eq!(side.rows(), 10);
        assert_eq!(side.dead, 0);
        assert_eq!(side.kept.len(), 1);
        let found = side.candidates(&batch(&[3], &[0]), Some(&[0])).unwrap();
        assert_eq!(found.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
        for i in 0..100 {
            side.insert(batch(&[i % 10 + 100], &[7000 + i])).unwrap();
        }
        side.insert(batch(&[3, 3], &[6000, 6001])).unwrap();
        let found = side.candidates(&batch(&[3], &[0]), Some(&[0])).unwrap();
        assert_eq!(all_ids(&found), vec![3, 3, 3]);
        // A change as large as what is kept meets every kept row.
        let everything = side
            .candidates(&batch(&[3; 40], &[0; 40]), Some(&[0]))
            .unwrap();
        assert_eq!(
            everything.iter().map(RecordBatch::num_rows).sum::<usize>(),
            112
        );
    }
}
