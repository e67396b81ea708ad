//! The commit clock and each table's recent versions: what lets a
//! transaction read every table as of one instant (snapshot isolation)
//! while other sessions keep committing.
//!
//! Every commit publishes the versions it installs under one tick of the
//! [`CommitClock`]; a commit of several tables (a transaction's) publishes
//! them under the same tick, so a reader sees all of it or none. A reader
//! takes a [`ReadPoint`] (the clock's time) and reads, per table, the newest
//! version published at or before it. A table keeps the versions some open
//! reader may still need, and no older ones: their snapshots hold files a
//! later version replaced (see [`super::files::LiveFile`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::files::Snapshot;

/// Orders commits and knows the read points still open. One per data
/// directory.
#[derive(Debug, Default)]
pub struct CommitClock {
    state: Mutex<ClockState>,
}

#[derive(Debug, Default)]
struct ClockState {
    /// The tick of the newest commit published.
    now: u64,
    /// Open read points: tick → how many readers hold it.
    readers: BTreeMap<u64, usize>,
}

/// One published version of a table.
#[derive(Debug, Clone)]
pub struct PublishedVersion {
    /// The clock tick it was published at.
    pub tick: u64,
    /// The manifest version.
    pub version: u64,
    /// Its files.
    pub snapshot: Arc<Snapshot>,
}

/// A table's versions that open readers may still read, oldest first; the
/// last is the newest.
#[derive(Debug)]
pub struct TableHistory {
    versions: Mutex<Vec<PublishedVersion>>,
}

/// A reader's place on the clock: versions published after it are not
/// its to see. Registered with the clock until dropped.
#[derive(Debug)]
pub struct ReadPoint {
    clock: Arc<CommitClock>,
    tick: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock; a poisoned one still holds
    // consistent plain data.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl CommitClock {
    /// A clock for a data directory just opened.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The tick of the newest commit published: it moves on with every
    /// commit of any table.
    pub fn now(&self) -> u64 {
        lock(&self.state).now
    }

    /// A read point at the clock's current time.
    pub fn read_point(self: &Arc<Self>) -> ReadPoint {
        let mut state = lock(&self.state);
        let tick = state.now;
        *state.readers.entry(tick).or_default() += 1;
        ReadPoint {
            clock: Arc::clone(self),
            tick,
        }
    }

    /// Publishes new versions of one or more tables as one commit: a read
    /// point sees all of them or none.
    pub fn publish(&self, versions: Vec<(&TableHistory, u64, Arc<Snapshot>)>) {
        let mut state = lock(&self.state);
        state.now += 1;
        let tick = state.now;
        let oldest_reader = state.readers.keys().next().copied().unwrap_or(tick);
        for (history, version, snapshot) in versions {
            let mut kept = lock(&history.versions);
            kept.push(PublishedVersion {
                tick,
                version,
                snapshot,
            });
            forget_unreadable(&mut kept, oldest_reader);
        }
    }

    fn release(&self, tick: u64) {
        let mut state = lock(&self.state);
        if let Some(count) = state.readers.get_mut(&tick) {
            *count -= 1;
            if *count == 0 {
                state.readers.remove(&tick);
            }
        }
    }
}

/// Drops the versions no reader at or after `oldest_reader` can read:
/// everything before the newest version published at or before it.
fn forget_unreadable(versions: &mut Vec<PublishedVersion>, oldest_reader: u64) {
    let first_needed = versions
        .iter()
        .rposition(|v| v.tick <= oldest_reader)
        .unwrap_or(0);
    versions.drain(..first_needed);
}

impl TableHistory {
    /// The history of a table opened or created at `version`: readable by
    /// every read point (a table that did not exist at a reader's time is
    /// not hidden from it; DDL is not transactional).
    pub fn new(version: u64, snapshot: Arc<Snapshot>) -> Arc<Self> {
        Arc::new(Self {
            versions: Mutex::new(vec![PublishedVersion {
                tick: 0,
                version,
                snapshot,
            }]),
        })
    }

    /// The newest version published.
    pub fn newest(&self) -> Option<PublishedVersion> {
        lock(&self.versions).last().cloned()
    }

    /// The version `point` reads: the newest published at or before it.
    pub fn at(&self, point: &ReadPoint) -> Option<PublishedVersion> {
        lock(&self.versions)
            .iter()
            .rev()
            .find(|v| v.tick <= point.tick)
            .cloned()
    }
}

impl Drop for ReadPoint {
    fn drop(&mut self) {
        self.clock.release(self.tick);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Arc<Snapshot> {
        Arc::new(Snapshot::default())
    }

    #[test]
    fn a_reader_sees_the_versions_of_its_time_not_later_ones() {
        let clock = CommitClock::new();
        let orders = TableHistory::new(1, snapshot());
        let items = TableHistory::new(1, snapshot());
        clock.publish(vec![(&orders, 2, snapshot())]);
        let reader = clock.read_point();
        // One commit of both tables after the reader's time.
        clock.publish(vec![(&orders, 3, snapshot()), (&items, 2, snapshot())]);
        assert_eq!(orders.at(&reader).map(|v| v.version), Some(2));
        assert_eq!(items.at(&reader).map(|v| v.version), Some(1));
        let later = clock.read_point();
        assert_eq!(orders.at(&later).map(|v| v.version), Some(3));
        assert_eq!(items.at(&later).map(|v| v.version), Some(2));
    }

    #[test]
    fn versions_no_reader_needs_are_forgotten() {
        let clock = CommitClock::new();
        let table = TableHistory::new(1, snapshot());
        let reader = clock.read_point();
        for version in 2..6 {
            clock.publish(vec![(&table, version, snapshot())]);
        }
        // The reader still needs version 1; everything after it is kept.
        assert_eq!(lock(&table.versions).len(), 5);
        assert_eq!(table.at(&reader).map(|v| v.version), Some(1));
        drop(reader);
        clock.publish(vec![(&table, 6, snapshot())]);
        let kept: Vec<u64> = lock(&table.versions).iter().map(|v| v.version).collect();
        assert_eq!(kept, vec![6]);
    }
}
