//! Which graph holds each data file's vectors, and under which keys.
//!
//! A graph covers one or more data files (those one write produced
//! together, up to [`MAX_GRAPH_VECTOR_BYTES`]): a search walks one graph
//! per group rather than one per file, and a walk's cost grows with the
//! logarithm of the rows it covers, so fewer larger graphs answer faster
//! (at 200k rows in five files, five walks took most of a query's time).
//! A vector's key says where its row is: the file's slot in the graph and
//! the row's position in that file ([`key`]). A graph written before
//! graphs covered several files has its one file at slot 0 under keys that
//! are plain row positions, so it reads the same way.
//!
//! A file a later write replaces (DELETE, UPDATE, compaction) leaves its
//! graph; the graph stays for the files it still covers, and a walk skips
//! the keys of files no longer in its snapshot. Once fewer than half of a
//! graph's rows are live, its remaining files are regrouped into a new
//! graph at the next commit ([`GraphMap::retain_files`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

/// Bits of a key holding the row's position in its file (the rest hold
/// the file's slot): 2^40 rows is far beyond any data file.
const ROW_BITS: u32 = 40;

/// A group's vectors in memory at most while its graph is built (the
/// graph holds a copy, so building takes about twice this): 1M rows of
/// 384 dimensions fit, so the benchmark's table is one graph.
pub(super) const MAX_GRAPH_VECTOR_BYTES: u64 = 2 << 30;

/// The key of the row at `row` of the file at `slot` of a graph.
pub(super) fn key(slot: u32, row: u64) -> u64 {
    (u64::from(slot) << ROW_BITS) | row
}

/// The slot and row a key names.
pub(super) fn split(key: u64) -> (u32, u64) {
    // The shifted value has at most 24 bits.
    ((key >> ROW_BITS) as u32, key & ((1 << ROW_BITS) - 1))
}

/// Where one data file's vectors are: a graph and the file's slot in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "GraphPartRepr")]
pub struct GraphPart {
    /// The graph's path in the table.
    pub graph: String,
    /// The file's slot among the graph's files.
    pub slot: u32,
}

/// A [`GraphPart`] as manifests write it: manifests from before graphs
/// covered several files name the graph alone.
#[derive(Deserialize)]
#[serde(untagged)]
enum GraphPartRepr {
    Whole(String),
    Part { graph: String, slot: u32 },
}

impl From<GraphPartRepr> for GraphPart {
    fn from(repr: GraphPartRepr) -> Self {
        match repr {
            GraphPartRepr::Whole(graph) => Self { graph, slot: 0 },
            GraphPartRepr::Part { graph, slot } => Self { graph, slot },
        }
    }
}

/// The graphs of one index: per data file its part, per graph the rows it
/// was built over.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphMap {
    /// Per data file (its path in the table) the graph holding its vectors;
    /// files without one are searched exactly.
    #[serde(default)]
    pub files: BTreeMap<String, GraphPart>,
    /// Per graph the rows of the files it was built over (NULL vectors
    /// included), live or not; absent for graphs from before graphs
    /// covered several files, which cover exactly their one file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub graph_rows: BTreeMap<String, u64>,
}

impl GraphMap {
    /// The part of `file`, if it has a graph.
    pub fn part(&self, file: &str) -> Option<&GraphPart> {
        self.files.get(file)
    }

    /// Every graph in use, once each.
    pub fn graphs(&self) -> BTreeSet<&String> {
        self.files.values().map(|part| &part.graph).collect()
    }

    /// Every graph in use, once each, as owned paths (for deleting them).
    pub fn graph_paths(&self) -> Vec<String> {
        self.graphs().into_iter().cloned().collect()
    }

    /// Rows `graph` was built over, given the rows of the files it serves
    /// (used for old single-file graphs, which record none).
    pub fn rows_of(&self, graph: &str, live_rows: u64) -> u64 {
        self.graph_rows.get(graph).copied().unwrap_or(live_rows)
    }

    /// Records a graph at `graph` over `files` (path and rows each), the
    /// slots in order.
    pub fn insert_graph<'a>(
        &mut self,
        graph: &str,
        files: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        let mut rows = 0;
        for (slot, (file, file_rows)) in (0u32..).zip(files) {
            self.files.insert(
                file.to_owned(),
                GraphPart {
                    graph: graph.to_owned(),
                    slot,
                },
            );
            rows += file_rows;
        }
        self.graph_rows.insert(graph.to_owned(), rows);
    }

    /// Moves `other`'s graphs into this map.
    pub fn extend(&mut self, other: GraphMap) {
        self.files.extend(other.files);
        self.graph_rows.extend(other.graph_rows);
    }

    /// Keeps the entries of the files `listed` (with their rows) still
    /// holds. A graph whose kept files hold fewer than half the rows it
    /// was built over loses them too, so that they are grouped into a new
    /// graph: its walks would otherwise skip more keys than they keep.
    pub fn retain_files(&mut self, listed: &BTreeMap<&str, u64>) {
        self.files
            .retain(|file, _| listed.contains_key(file.as_str()));
        let mut live: BTreeMap<&str, u64> = BTreeMap::new();
        for (file, part) in &self.files {
            *live.entry(part.graph.as_str()).or_default() += listed[file.as_str()];
        }
        let sparse: HashSet<String> = live
            .iter()
            .filter(|(graph, rows)| 2 * **rows < self.rows_of(graph, **rows))
            .map(|(graph, _)| (*graph).to_owned())
            .collect();
        self.files.retain(|_, part| !sparse.contains(&part.graph));
        let used: HashSet<String> = self.graph_paths().into_iter().collect();
        self.graph_rows.retain(|graph, _| used.contains(graph));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_slot_and_row() {
        assert_eq!(split(key(0, 17)), (0, 17));
        assert_eq!(key(0, 17), 17, "slot 0 keys are plain rows (old graphs)");
        assert_eq!(split(key(3, (1 << 40) - 1)), (3, (1 << 40) - 1));
        assert_ne!(key(1, 0), key(0, 1));
    }

    #[test]
    fn old_manifests_name_the_graph_alone() -> serde_json::Result<()> {
        let map: GraphMap =
            serde_json::from_str(r#"{"files": {"data/a.parquet": "indexes/g.usearch"}}"#)?;
        let part = map.part("data/a.parquet");
        assert_eq!(
            part.map(|p| (p.graph.as_str(), p.slot)),
            Some(("indexes/g.usearch", 0))
        );
        assert_eq!(map.rows_of("indexes/g.usearch", 5000), 5000);
        let again: GraphMap = serde_json::from_str(&serde_json::to_string(&map)?)?;
        assert_eq!(again, map);
        Ok(())
    }

    #[test]
    fn a_graph_mostly_replaced_gives_up_its_files() {
        let mut map = GraphMap::default();
        map.insert_graph("g1", [("a", 100), ("b", 100), ("c", 100)]);
        map.insert_graph("g2", [("d", 100)]);
        assert_eq!(map.part("c").map(|p| p.slot), Some(2));
        // "a" replaced: g1 keeps two thirds of its rows and its files.
        map.retain_files(&BTreeMap::from([("b", 100), ("c", 100), ("d", 100)]));
        assert_eq!(map.graphs().len(), 2);
        assert_eq!(map.rows_of("g1", 0), 300);
        // "b" too: one third live, so "c" leaves g1 to be regrouped.
        map.retain_files(&BTreeMap::from([("c", 100), ("d", 100)]));
        assert!(map.part("c").is_none());
        assert_eq!(map.graphs().into_iter().collect::<Vec<_>>(), ["g2"]);
        assert!(!map.graph_rows.contains_key("g1"));
    }
}
