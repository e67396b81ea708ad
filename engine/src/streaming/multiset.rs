//! A multiset of rows in Arrow's row format: how many times each row is
//! present. A view's content and an aggregate's kept values are one.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use datafusion::arrow::row::{OwnedRow, Rows};

/// Row → count; a row whose count reaches zero is removed.
pub type RowCounts = HashMap<OwnedRow, i64>;

/// Adds `delta` (1 for an insert, -1 for a delete) to each of `rows`.
pub fn add_rows(counts: &mut RowCounts, rows: &Rows, delta: i64) {
    for row in rows.iter() {
        match counts.entry(row.owned()) {
            Entry::Occupied(mut entry) => {
                *entry.get_mut() += delta;
                if *entry.get() == 0 {
                    entry.remove();
                }
            }
            Entry::Vacant(entry) => {
                entry.insert(delta);
            }
        }
    }
}
