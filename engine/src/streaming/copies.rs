//! The keyed exchange of a stateful stage: copies of one operator, each
//! owning the keys that hash to it, run side by side.
//!
//! [`split`] assigns rows to copies by the hash of their key in Arrow's row
//! format; [`run_copies`] runs one step on each copy that has one, all at
//! once in tasks of their own, and gathers their outputs in copy order. The
//! keyed aggregate ([`super::aggregate::keyed`]) and the keyed join
//! ([`super::join::KeyedJoin`]) are both built on them, so a key lands on
//! the same copy whichever stage hashes it.

use std::hash::{Hash, Hasher};

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use futures::FutureExt;
use futures::future::BoxFuture;

use super::metrics::panic_message;

/// The copy a key (in row format) belongs to among `copies`.
pub fn copy_of(key: &[u8], copies: usize) -> usize {
    // Any hash will do, as long as the live split and a restore agree
    // within one process: a restore re-splits every key.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % copies as u64) as usize
}

/// Row indices of `keys` per copy.
pub fn split<'a>(keys: impl Iterator<Item = &'a [u8]>, copies: usize) -> Vec<Vec<u32>> {
    let mut parts = vec![Vec::new(); copies];
    for (row, key) in keys.enumerate() {
        parts[copy_of(key, copies)].push(row as u32);
    }
    parts
}

/// `batch`'s rows per copy, `None` for a copy with none.
pub fn split_batch<'a>(
    batch: &RecordBatch,
    keys: impl Iterator<Item = &'a [u8]>,
    copies: usize,
) -> Result<Vec<Option<RecordBatch>>> {
    split(keys, copies)
        .into_iter()
        .map(|indices| {
            if indices.is_empty() {
                return Ok(None);
            }
            Ok(Some(take_record_batch(batch, &UInt32Array::from(indices))?))
        })
        .collect()
}

/// The work one step does on one copy.
pub type CopyWork<T, S, O> = for<'a> fn(&'a mut T, S) -> BoxFuture<'a, Result<O>>;

/// Runs `work` with `steps[i]` on copy `i` (those given a step), all at
/// once in tasks of their own, and returns their outputs in copy order. A
/// panic is caught in the task, so the copy comes back (its state is then
/// restored from a checkpoint); the first failure is returned.
pub async fn run_copies<T, S, O>(
    copies: &mut [Option<T>],
    steps: Vec<Option<S>>,
    work: CopyWork<T, S, O>,
) -> Result<Vec<O>>
where
    T: Send + 'static,
    S: Send + 'static,
    O: Send + 'static,
{
    let mut running = Vec::new();
    for (at, step) in steps.into_iter().enumerate() {
        let Some(step) = step else { continue };
        let mut copy = copies
            .get_mut(at)
            .and_then(Option::take)
            .ok_or_else(lost_copy)?;
        running.push((
            at,
            tokio::spawn(async move {
                let outcome = std::panic::AssertUnwindSafe(work(&mut copy, step))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        Err(DataFusionError::Execution(panic_message(panic.as_ref())))
                    });
                (copy, outcome)
            }),
        ));
    }
    let mut outputs = Vec::with_capacity(running.len());
    let mut failure = None;
    for (at, task) in running {
        match task.await {
            Ok((copy, outcome)) => {
                copies[at] = Some(copy);
                match outcome {
                    Ok(output) => outputs.push(output),
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
            Err(e) => {
                failure = failure.or(Some(DataFusionError::Execution(format!(
                    "a keyed task failed: {e}"
                ))))
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(outputs),
    }
}

/// The error of a stage that lost a copy to a task that did not return.
pub fn lost_copy() -> DataFusionError {
    DataFusionError::Internal("a keyed stage lost a copy (a task of it panicked)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_goes_to_one_copy_and_keys_spread() {
        let keys: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let parts = split(keys.iter().map(Vec::as_slice), 3);
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 1000);
        assert!(
            parts.iter().all(|p| p.len() > 200),
            "{:?}",
            parts.iter().map(Vec::len).collect::<Vec<_>>()
        );
        for (at, part) in parts.iter().enumerate() {
            for row in part {
                assert_eq!(copy_of(&keys[*row as usize], 3), at);
            }
        }
    }

    fn double(n: &mut u32, by: u32) -> BoxFuture<'_, Result<u32>> {
        Box::pin(async move {
            *n *= by;
            Ok(*n)
        })
    }

    #[tokio::test]
    async fn copies_without_a_step_are_left_alone() -> Result<()> {
        let mut copies = vec![Some(1), Some(2), Some(3)];
        let outputs = run_copies(&mut copies, vec![Some(2), None, Some(3)], double).await?;
        assert_eq!(outputs, [2, 9]);
        assert_eq!(copies, [Some(2), Some(2), Some(9)]);
        Ok(())
    }
}
