//! A multiset of rows in Arrow's row format: how many times each row is
//! present. A view's content and an aggregate's kept values are one.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use datafusion::arrow::row::{OwnedRow, RowParser, Rows};
use datafusion::common::hash_utils::RandomState;
use datafusion::error::{DataFusionError, Result};

/// Row → count; a row whose count reaches zero is removed. Hashed with
/// DataFusion's own fast hasher: SipHash's DoS resistance buys nothing for
/// rows the engine itself encodes, and cost half of a view's upkeep.
pub type RowCounts = HashMap<OwnedRow, i64, RandomState>;

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

/// `counts` as bytes for a checkpoint: per row its count (i64), its
/// length (u32) and its row-format bytes, little-endian. Hand-written
/// because Arrow's row format has no container of its own and the rows are
/// already a self-describing binary encoding.
pub fn encode_counts(counts: &RowCounts) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (row, count) in counts {
        let data = row.row().data();
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
        bytes.extend_from_slice(data);
    }
    bytes
}

/// What [`encode_counts`] wrote, parsed with the converter that made the
/// rows.
pub fn decode_counts(mut bytes: &[u8], parser: &RowParser) -> Result<RowCounts> {
    let corrupt = || DataFusionError::Execution("corrupt row multiset in a checkpoint".into());
    let mut counts = RowCounts::default();
    while !bytes.is_empty() {
        let (count, rest) = bytes.split_first_chunk::<8>().ok_or_else(corrupt)?;
        let (length, rest) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let length = u32::from_le_bytes(*length) as usize;
        if rest.len() < length {
            return Err(corrupt());
        }
        let (data, rest) = rest.split_at(length);
        counts.insert(parser.parse(data).owned(), i64::from_le_bytes(*count));
        bytes = rest;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::arrow::row::{RowConverter, SortField};

    use super::*;

    #[test]
    fn counts_come_back_from_their_bytes() {
        let converter = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
        let column: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None, Some("a")]));
        let rows = converter.convert_columns(&[column]).unwrap();
        let mut counts = RowCounts::default();
        add_rows(&mut counts, &rows, 1);
        let decoded = decode_counts(&encode_counts(&counts), &converter.parser()).unwrap();
        assert_eq!(decoded, counts);
        assert!(decode_counts(&[1, 2, 3], &converter.parser()).is_err());
    }
}
