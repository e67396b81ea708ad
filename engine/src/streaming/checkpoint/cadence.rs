//! [`DeltaCadence`]: when an operator's checkpoint may hold only its
//! changes since the previous one, and which epoch those build on.

/// Whole checkpoints are written this often; between them, changes only.
/// A fixed cadence, not a size rule, so that parts written side by side
/// (the copies of a keyed aggregate, a join's two sides) always agree on
/// the kind.
const FULL_EVERY: u32 = 16;

/// The checkpoints an operator has taken, as far as deltas need to know.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeltaCadence {
    /// The epoch of the checkpoint barrier just passed, whose snapshot
    /// comes next.
    at: Option<u64>,
    /// The epoch of the last snapshot taken. It is committed by the time
    /// the next one is taken: the query's task waits for each checkpoint
    /// before the next, and a failed one restores the operator (which
    /// starts over with a whole snapshot).
    last: Option<u64>,
    /// Delta snapshots since the last whole one.
    chain: u32,
}

impl DeltaCadence {
    /// A checkpoint barrier of `epoch` has passed: its snapshot is next.
    pub fn barrier(&mut self, epoch: u64) {
        self.at = Some(epoch);
    }

    /// Whether the query checkpoints (a checkpoint barrier has been
    /// seen): only then are changes worth keeping for the next delta.
    pub fn is_active(&self) -> bool {
        self.at.is_some() || self.last.is_some()
    }

    /// A snapshot is being taken: the epoch its changes build on, or `None`
    /// when it must be whole.
    pub fn next_snapshot(&mut self) -> Option<u64> {
        let taken = self.at.take();
        let since = match (taken, self.last) {
            (Some(taken), Some(last)) if taken > last && self.chain + 1 < FULL_EVERY => Some(last),
            _ => None,
        };
        self.last = taken;
        self.chain = if since.is_some() { self.chain + 1 } else { 0 };
        since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_follow_a_whole_snapshot_until_the_cadence_says_whole_again() {
        let mut cadence = DeltaCadence::default();
        // No barrier seen: whole.
        assert_eq!(cadence.next_snapshot(), None);
        let mut kinds = Vec::new();
        for epoch in 1..=18 {
            cadence.barrier(epoch);
            kinds.push(cadence.next_snapshot());
        }
        assert_eq!(kinds[0], None);
        assert_eq!(kinds[1], Some(1));
        assert_eq!(kinds[14], Some(14));
        assert_eq!(kinds[15], Some(15));
        assert_eq!(kinds[16], None);
        assert_eq!(kinds[17], Some(17));
    }
}
