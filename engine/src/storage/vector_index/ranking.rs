//! The ranking every search shares: candidate rows ordered by distance,
//! then by position (so exact results are reproducible), and the `k` best
//! kept in a bounded heap.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A candidate row: its distance (NULL vectors after every distance, as
/// an ascending `ORDER BY` puts them), then its file and row position,
/// which break ties.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hit {
    /// The row's vector is NULL (its distance is NULL).
    pub null: bool,
    pub distance: f64,
    /// Position of the file in the snapshot.
    pub ordinal: usize,
    /// Position of the row in the file.
    pub row: u64,
}

impl Hit {
    /// A row with a vector at `distance`.
    pub fn at(distance: f64, ordinal: usize, row: u64) -> Self {
        Self {
            null: false,
            distance,
            ordinal,
            row,
        }
    }

    fn cmp_key(&self, other: &Self) -> Ordering {
        self.null
            .cmp(&other.null)
            .then(self.distance.total_cmp(&other.distance))
            .then(self.ordinal.cmp(&other.ordinal))
            .then(self.row.cmp(&other.row))
    }
}

impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp_key(other) == Ordering::Equal
    }
}
impl Eq for Hit {}
impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_key(other)
    }
}

/// The `k` best hits seen so far (a max-heap: the worst kept on top).
#[derive(Debug)]
pub(super) struct Best {
    k: usize,
    heap: BinaryHeap<Hit>,
}

impl Best {
    /// Keeps at most `k` hits.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1),
        }
    }

    /// Keeps `hit` if it is among the `k` best so far.
    #[inline]
    pub fn offer(&mut self, hit: Hit) {
        if self.heap.len() < self.k {
            self.heap.push(hit);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && hit < *worst
        {
            *worst = hit;
        }
    }

    /// Whether a row at `distance` (not NULL) would be kept: lets a scan
    /// skip building hits that cannot be.
    #[inline]
    pub fn admits(&self, distance: f64) -> bool {
        self.heap.len() < self.k
            || self
                .heap
                .peek()
                .is_some_and(|worst| worst.null || distance.total_cmp(&worst.distance).is_le())
    }

    /// The best of both.
    pub fn merged(mut self, other: Best) -> Best {
        for hit in other.heap {
            self.offer(hit);
        }
        self
    }

    /// Hits kept.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// The hits kept, nearest first (ties by position).
    pub fn into_hits(self) -> Vec<Hit> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_keeps_the_k_nearest_and_breaks_ties_by_position() {
        let mut best = Best::new(2);
        for (distance, ordinal, row) in [(0.5, 1, 0), (0.1, 0, 7), (0.5, 0, 3), (0.9, 0, 1)] {
            best.offer(Hit::at(distance, ordinal, row));
        }
        let mut kept = best.into_hits();
        kept.sort();
        let kept: Vec<(usize, u64)> = kept.iter().map(|h| (h.ordinal, h.row)).collect();
        assert_eq!(kept, vec![(0, 7), (0, 3)]);
    }

    #[test]
    fn null_vectors_come_after_every_distance_nan_included() {
        let null = Hit {
            null: true,
            distance: 0.0,
            ordinal: 0,
            row: 0,
        };
        let mut best = Best::new(2);
        best.offer(null);
        best.offer(Hit::at(f64::NAN, 1, 0));
        assert!(best.admits(5.0));
        best.offer(Hit::at(5.0, 2, 0));
        let mut kept = best.into_hits();
        kept.sort();
        assert_eq!(
            kept.iter().map(|h| h.ordinal).collect::<Vec<_>>(),
            vec![2, 1]
        );
    }

    #[test]
    fn merging_keeps_the_best_of_both() {
        let (mut a, mut b) = (Best::new(2), Best::new(2));
        a.offer(Hit::at(0.3, 0, 0));
        a.offer(Hit::at(0.9, 0, 1));
        b.offer(Hit::at(0.1, 1, 0));
        b.offer(Hit::at(0.8, 1, 1));
        let mut kept = a.merged(b).into_hits();
        kept.sort();
        assert_eq!(
            kept.iter().map(|h| h.distance).collect::<Vec<_>>(),
            vec![0.1, 0.3]
        );
    }
}
