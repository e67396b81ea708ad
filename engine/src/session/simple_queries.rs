//! The statements of simple queries by their text, so that a client
//! repeating `SELECT 1` without preparing it is not parsed and planned each
//! time.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::session::output::PreparedStatement;
use crate::session::plan_cache::{Generations, lock};

/// A session's simple-query statements by text. Holds queries only; a
/// statement is used only while the plan generations it was planned under
/// stay.
#[derive(Debug, Default)]
pub(crate) struct SimpleQueries {
    by_text: Mutex<HashMap<String, PreparedStatement>>,
}

/// Texts a session keeps at most. When full the cache starts over: a
/// client that sends this many distinct texts is not repeating itself, and
/// an LRU crate would buy nothing for it.
const SIMPLE_QUERIES_KEPT: usize = 256;

impl SimpleQueries {
    /// The statement planned from `sql`, if it still holds at `now`.
    pub(crate) fn get(&self, sql: &str, now: Generations) -> Option<PreparedStatement> {
        let by_text = lock(&self.by_text);
        by_text
            .get(sql)
            .filter(|prepared| prepared.planned_at == now)
            .cloned()
    }

    /// Keeps `prepared`, planned from the whole of `sql`, if it is a query.
    pub(crate) fn put(&self, sql: &str, prepared: &PreparedStatement) {
        if !prepared.only_reads() || sql.len() > MAX_KEPT_TEXT {
            return;
        }
        let mut by_text = lock(&self.by_text);
        if by_text.len() >= SIMPLE_QUERIES_KEPT {
            by_text.clear();
        }
        by_text.insert(sql.to_owned(), prepared.clone());
    }
}

/// The longest text kept, so a session's cache stays near 1 MiB.
const MAX_KEPT_TEXT: usize = 4096;
