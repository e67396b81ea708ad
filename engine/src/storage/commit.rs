//! The commit protocol of versioned manifests, as pure decisions.
//!
//! A writer commits version `v + 1` of a table (its base was `v`) with a
//! create-if-absent put of `_manifest/<v+1>.json`. Each attempt carries a
//! fresh commit id, so when the store answers "already exists" the writer
//! can tell a rival's commit (a conflict) from its own earlier put whose
//! answer was lost (the commit happened: it must be neither reported as a
//! conflict nor applied twice).
//!
//! Everything here is a function of what the writer has seen, returning a
//! documented decision; the object-store calls live at the edge
//! ([`super::manifest::commit`]). Checkpoints reuse the same protocol.

/// What one create-if-absent put of a manifest version came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// The store created the object: this attempt committed.
    Created,
    /// An object of that version exists: a rival's, or an earlier attempt
    /// of this writer whose answer never arrived.
    AlreadyExists,
    /// No answer, or an error that may or may not have left the object
    /// written (a timeout, a 5xx, a dropped connection).
    Unknown,
}

/// What the writer does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStep {
    /// The version is committed by this writer: install it.
    Committed,
    /// Another writer committed this version: nothing of this attempt is
    /// visible; the statement fails and may be retried from a new base.
    Conflict,
    /// Read the existing version back and compare its commit id
    /// ([`after_read_back`]).
    ReadBack,
    /// Put the same manifest (same commit id) again.
    Retry,
    /// Give up: the store kept failing; whether the version landed is
    /// unknown, and the next writer's read of the newest version decides.
    GiveUp,
}

/// How many puts a commit tries before it gives up on a failing store.
pub const MAX_PUT_ATTEMPTS: u32 = 4;

/// The decision after the put numbered `attempt` (from 1) came back with
/// `outcome`.
pub fn after_put(outcome: &PutOutcome, attempt: u32) -> CommitStep {
    match outcome {
        PutOutcome::Created => CommitStep::Committed,
        // Whoever wrote it, its commit id says whose it is.
        PutOutcome::AlreadyExists => CommitStep::ReadBack,
        PutOutcome::Unknown if attempt < MAX_PUT_ATTEMPTS => CommitStep::Retry,
        PutOutcome::Unknown => CommitStep::GiveUp,
    }
}

/// The decision after reading back the version this writer tried to
/// commit: `existing` is the commit id found there (`None`: nothing there
/// after all, or a manifest from before commit ids, which is a rival's).
pub fn after_read_back(existing: Option<&str>, ours: &str) -> CommitStep {
    match existing {
        Some(id) if id == ours => CommitStep::Committed,
        Some(_) => CommitStep::Conflict,
        None => CommitStep::Retry,
    }
}

/// Manifest versions kept behind the newest. Only the newest is ever read
/// (each commit is atomic, so it is never half-written); a few older ones
/// stay for inspecting a table's recent history.
pub const KEEP_VERSIONS: u64 = 4;

/// The version whose manifest a commit of `committed` makes expire, if
/// any.
pub fn expired_by(committed: u64) -> Option<u64> {
    committed.checked_sub(KEEP_VERSIONS).filter(|v| *v > 0)
}

/// What a listed object of a table's directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed<'a> {
    /// A manifest of this version.
    Manifest(u64),
    /// A data file, by its path relative to the table's directory.
    DataFile(&'a str),
    /// Anything else (left alone).
    Other,
}

/// Whether garbage collection may delete a listed object, given the newest
/// committed version and the data files it references: manifests older
/// than the kept history and data files no live version references. A
/// file the newest manifest lists is never garbage.
pub fn is_garbage<'a>(
    listed: Listed<'a>,
    newest: u64,
    mut referenced: impl Iterator<Item = &'a str>,
) -> bool {
    match listed {
        Listed::Manifest(version) => version < newest.saturating_sub(KEEP_VERSIONS - 1),
        Listed::DataFile(path) => !referenced.any(|live| live == path),
        Listed::Other => false,
    }
}

/// What opening a data directory does with one table of a commit record
/// (a commit of several tables that a crash may have interrupted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryStep {
    /// The table is at the version before the recorded one: commit it.
    Commit,
    /// The recorded version is there: the commit got that far.
    AlreadyCommitted,
    /// The table is gone or elsewhere in its history (dropped, recreated):
    /// nothing to finish.
    Skip,
}

/// The step for a table whose newest version is `latest` (`None`: no
/// table there) and whose recorded version is `recorded`. Only one process
/// opens a data directory and the committing one held every recorded
/// table's lock, so no rival can have taken the recorded version.
pub fn recovery_step(latest: Option<u64>, recorded: u64) -> RecoveryStep {
    match latest {
        Some(latest) if latest + 1 == recorded => RecoveryStep::Commit,
        Some(latest) if latest >= recorded => RecoveryStep::AlreadyCommitted,
        _ => RecoveryStep::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_put_commits() {
        assert_eq!(after_put(&PutOutcome::Created, 1), CommitStep::Committed);
    }

    #[test]
    fn an_existing_version_is_read_back_before_deciding() {
        assert_eq!(
            after_put(&PutOutcome::AlreadyExists, 1),
            CommitStep::ReadBack
        );
        assert_eq!(after_read_back(Some("rival"), "ours"), CommitStep::Conflict);
        // A manifest written before commit ids existed is a rival's too.
        assert_eq!(after_read_back(Some(""), "ours"), CommitStep::Conflict);
    }

    #[test]
    fn a_lost_answer_to_a_put_that_landed_is_our_commit_not_a_conflict() {
        // Attempt 1: the store wrote the object but the answer was lost.
        let first = after_put(&PutOutcome::Unknown, 1);
        assert_eq!(first, CommitStep::Retry);
        // Attempt 2 puts the same manifest: the store says it exists.
        let second = after_put(&PutOutcome::AlreadyExists, 2);
        assert_eq!(second, CommitStep::ReadBack);
        // Reading it back finds our own commit id: committed, once.
        assert_eq!(after_read_back(Some("ours"), "ours"), CommitStep::Committed);
    }

    #[test]
    fn a_failing_store_is_retried_then_given_up() {
        for attempt in 1..MAX_PUT_ATTEMPTS {
            assert_eq!(after_put(&PutOutcome::Unknown, attempt), CommitStep::Retry);
        }
        assert_eq!(
            after_put(&PutOutcome::Unknown, MAX_PUT_ATTEMPTS),
            CommitStep::GiveUp
        );
        assert_eq!(after_read_back(None, "ours"), CommitStep::Retry);
    }

    #[test]
    fn an_interrupted_commit_of_several_tables_is_finished_once() {
        // Crashed after committing the first table, before the second.
        assert_eq!(recovery_step(Some(8), 8), RecoveryStep::AlreadyCommitted);
        assert_eq!(recovery_step(Some(3), 4), RecoveryStep::Commit);
        // A table dropped since: nothing to do.
        assert_eq!(recovery_step(None, 4), RecoveryStep::Skip);
        assert_eq!(recovery_step(Some(1), 4), RecoveryStep::Skip);
    }

    #[test]
    fn history_expires_behind_the_kept_versions() {
        assert_eq!(expired_by(1), None);
        assert_eq!(expired_by(KEEP_VERSIONS), None);
        assert_eq!(expired_by(KEEP_VERSIONS + 1), Some(1));
    }

    #[test]
    fn garbage_is_what_no_kept_version_needs() {
        let live = ["data/a.parquet", "data/b.parquet"];
        let garbage = |listed| is_garbage(listed, 10, live.iter().copied());
        assert!(garbage(Listed::DataFile("data/orphan.parquet")));
        assert!(!garbage(Listed::DataFile("data/a.parquet")));
        assert!(garbage(Listed::Manifest(6)));
        assert!(!garbage(Listed::Manifest(7)));
        assert!(!garbage(Listed::Manifest(10)));
        assert!(!garbage(Listed::Other));
    }
}
