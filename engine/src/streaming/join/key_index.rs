//! [`KeyIndex`]: one join input's kept rows by their equi-join key, so a
//! change of the other input meets only the rows it can pair with instead
//! of every kept row (which made a regular join O(state) per change).
//!
//! The index is a pre-filter, never the judge: the rows it returns still go
//! through DataFusion's join with its full condition, so a stale entry or a
//! hash collision costs time, not correctness. That is why it keeps key
//! hashes, not keys.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::error::Result;

/// No row.
const NONE: u64 = u64::MAX;

/// Passes a key's hash through: the maps below are keyed by hashes that
/// DataFusion's vectorised `create_hashes` already computed, and hashing
/// them again would only cost time.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

type ByHash<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// Which rows of `batch` have a NULL in one of their key columns at
/// `columns` (invalid in the buffer); `None`: no column has nulls. Such a
/// key equals nothing.
pub fn key_nulls(batch: &RecordBatch, columns: &[usize]) -> Option<NullBuffer> {
    columns.iter().fold(None, |nulls, &i| {
        NullBuffer::union(nulls.as_ref(), batch.column(i).logical_nulls().as_ref())
    })
}

/// Row ids by key hash, as chains (the newest id per hash, then each id's
/// predecessor), the layout of DataFusion's own join hash map; see the
/// module docs. Keys are never stored: equal hashes are candidates, and
/// the join decides.
pub struct KeyIndex {
    /// The key columns in the indexed input's rows.
    columns: Vec<usize>,
    random_state: RandomState,
    /// The newest row id per key hash.
    heads: ByHash<u64>,
    /// Per row id from `first` on, the previous id with the same hash.
    previous: Vec<u64>,
    /// The id `previous` starts at.
    first: u64,
    /// Entries whose row has since gone (deleted or expired).
    stale: usize,
}

impl KeyIndex {
    /// An empty index over `columns` of the input's rows.
    pub fn new(columns: Vec<usize>) -> Self {
        Self {
            columns,
            random_state: RandomState::with_seed(0),
            heads: ByHash::default(),
            previous: Vec::new(),
            first: 0,
            stale: 0,
        }
    }

    /// The hash of each row's key in `batch` (its key columns at
    /// `columns`), `None` where the key has a NULL (it joins with nothing).
    fn hashes(&self, batch: &RecordBatch, columns: &[usize]) -> Result<Vec<Option<u64>>> {
        let arrays: Vec<ArrayRef> = columns
            .iter()
            .map(|&i| std::sync::Arc::clone(batch.column(i)))
            .collect();
        let nulls = key_nulls(batch, columns);
        let mut hashes = vec![0; batch.num_rows()];
        create_hashes(&arrays, &self.random_state, &mut hashes)?;
        Ok(hashes
            .into_iter()
            .enumerate()
            .map(|(row, hash)| {
                nulls
                    .as_ref()
                    .is_none_or(|n| n.is_valid(row))
                    .then_some(hash)
            })
            .collect())
    }

    /// Indexes `batch`'s rows, whose ids run from `first_id` (ids are
    /// added in order, each once).
    pub fn add(&mut self, batch: &RecordBatch, first_id: u64) -> Result<()> {
        if self.previous.is_empty() && self.heads.is_empty() {
            self.first = first_id;
        }
        // Ids skipped (none are, ids being handed out in order) get no entry.
        let next_id = self.first + self.previous.len() as u64;
        if first_id > next_id {
            self.previous
                .resize(self.previous.len() + (first_id - next_id) as usize, NONE);
        }
        let hashes = self.hashes(batch, &self.columns)?;
        for (row, hash) in hashes.into_iter().enumerate() {
            let id = first_id + row as u64;
            match hash {
                Some(hash) => {
                    let before = self.heads.insert(hash, id).unwrap_or(NONE);
                    self.previous.push(before);
                }
                None => self.previous.push(NONE),
            }
        }
        Ok(())
    }

    /// The ids of indexed rows whose key hashes as that of some row of
    /// `probe` (its key columns at `probe_columns`, of the same types as
    /// the indexed ones), each once, ascending.
    pub fn matching(&self, probe: &RecordBatch, probe_columns: &[usize]) -> Result<Vec<u64>> {
        let mut seen: HashSet<u64, BuildHasherDefault<PassThrough>> = HashSet::default();
        let mut ids = Vec::new();
        for hash in self.hashes(probe, probe_columns)?.into_iter().flatten() {
            if !seen.insert(hash) {
                continue;
            }
            let mut id = self.heads.get(&hash).copied().unwrap_or(NONE);
            while id != NONE {
                ids.push(id);
                id = id
                    .checked_sub(self.first)
                    .and_then(|at| self.previous.get(at as usize))
                    .copied()
                    .unwrap_or(NONE);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// `count` entries now point at rows that are gone.
    pub fn forget(&mut self, count: usize) {
        self.stale += count;
    }

    /// Entries pointing at rows that are gone.
    pub fn stale(&self) -> usize {
        self.stale
    }

    /// Empties the index (before the rows are indexed again).
    pub fn clear(&mut self) {
        self.heads.clear();
        self.previous.clear();
        self.first = 0;
        self.stale = 0;
    }

    /// The key columns in the indexed input's rows.
    pub fn columns(&self) -> &[usize] {
        &self.columns
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(keys: &[Option<i64>], names: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("name", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(keys.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_probe_finds_each_matching_row_once_and_nulls_match_nothing() {
        let mut index = KeyIndex::new(vec![0]);
        index
            .add(&batch(&[Some(1), Some(2), None], &["a", "b", "c"]), 0)
            .unwrap();
        index
            .add(&batch(&[Some(1), Some(3)], &["d", "e"]), 10)
            .unwrap();
        let probe = batch(
            &[Some(1), Some(1), None, Some(3), Some(9)],
            &["", "", "", "", ""],
        );
        assert_eq!(index.matching(&probe, &[0]).unwrap(), vec![0, 10, 11]);
    }
}
