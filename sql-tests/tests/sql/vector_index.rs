//! HNSW vector indexes: recall against exact search on a clustered set,
//! filtered searches that still return `k` rows, and indexes that follow
//! the table's writes and outlive the engine (graphs left by an
//! interrupted write are removed at open).

use std::collections::HashSet;
use std::path::Path;

use sluice_engine::Sluice;
use sluice_sql_tests::{open_engine as open, run_in_session, run_sql, text_rows_of};

const DIM: usize = 16;

/// A small deterministic generator (xorshift), so every run searches the
/// same set.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    fn vector(&mut self) -> Vec<f32> {
        (0..DIM).map(|_| self.uniform()).collect()
    }

    fn near(&mut self, center: &[f32], spread: f32) -> Vec<f32> {
        center.iter().map(|c| c + spread * self.uniform()).collect()
    }
}

fn vector_text(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.5}")).collect();
    format!("[{}]", parts.join(","))
}

/// Creates `vecs (id, cat, v VECTOR(DIM))` with `rows` rows in `clusters`
/// clusters (one INSERT, so one data file); every 100th row is `rare`.
/// Returns the cluster centres.
async fn clustered_table(
    sluice: &Sluice,
    rng: &mut Rng,
    rows: usize,
    clusters: usize,
) -> Vec<Vec<f32>> {
    run_sql(
        sluice,
        &format!("CREATE TABLE vecs (id BIGINT, cat TEXT, v VECTOR({DIM}))"),
    )
    .await;
    let centers: Vec<Vec<f32>> = (0..clusters).map(|_| rng.vector()).collect();
    insert_rows(sluice, rng, &centers, 0..rows).await;
    centers
}

async fn insert_rows(
    sluice: &Sluice,
    rng: &mut Rng,
    centers: &[Vec<f32>],
    ids: std::ops::Range<usize>,
) {
    let values: Vec<String> = ids
        .map(|id| {
            let cat = if id % 100 == 0 { "rare" } else { "common" };
            let v = rng.near(&centers[id % centers.len()], 0.3);
            format!("({id}, '{cat}', '{}')", vector_text(&v))
        })
        .collect();
    run_sql(
        sluice,
        &format!("INSERT INTO vecs VALUES {}", values.join(", ")),
    )
    .await;
}

async fn ids(sluice: &Sluice, sql: &str) -> Vec<i64> {
    text_rows_of(sluice, sql)
        .await
        .into_iter()
        .map(|row| {
            row[0]
                .as_deref()
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("{sql}: id {row:?}"))
        })
        .collect()
}

async fn plan(sluice: &Sluice, sql: &str) -> String {
    text_rows_of(sluice, &format!("EXPLAIN {sql}"))
        .await
        .into_iter()
        .map(|row| row.into_iter().flatten().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `k` nearest by the index and by an exact search (a second sort key
/// keeps the index out), and the index plan.
async fn both_ways(sluice: &Sluice, select: &str, order: &str, k: usize) -> (Vec<i64>, Vec<i64>) {
    let searched = format!("{select} ORDER BY {order} LIMIT {k}");
    let exact = format!("{select} ORDER BY {order}, id LIMIT {k}");
    assert!(
        plan(sluice, &searched)
            .await
            .contains("VectorTopKExec: index="),
        "{searched} uses the index:\n{}",
        plan(sluice, &searched).await
    );
    assert!(
        !plan(sluice, &exact)
            .await
            .contains("VectorTopKExec: index=")
    );
    (ids(sluice, &searched).await, ids(sluice, &exact).await)
}

fn overlap(a: &[i64], b: &[i64]) -> usize {
    let b: HashSet<&i64> = b.iter().collect();
    a.iter().filter(|id| b.contains(id)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hnsw_index_agrees_with_exact_search_on_a_clustered_set() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    let mut rng = Rng(0x5eed);
    let centers = clustered_table(&sluice, &mut rng, 6000, 30).await;
    run_sql(&sluice, "CREATE INDEX vecs_cos ON vecs USING hnsw (v)").await;
    run_sql(
        &sluice,
        "CREATE INDEX vecs_l2 ON vecs USING hnsw (v vector_l2_ops) WITH (m = 16, ef_construction = 64)",
    )
    .await;
    for operator in ["<=>", "<->"] {
        let (mut found, mut wanted) = (0, 0);
        for center in &centers {
            let q = vector_text(&rng.near(center, 0.2));
            let (searched, exact) = both_ways(
                &sluice,
                "SELECT id FROM vecs",
                &format!("v {operator} '{q}'"),
                10,
            )
            .await;
            assert_eq!(searched.len(), 10);
            found += overlap(&searched, &exact);
            wanted += exact.len();
        }
        let recall = found as f64 / wanted as f64;
        eprintln!("recall@10 for {operator}: {recall:.3}");
        assert!(recall >= 0.95, "recall@10 for {operator}: {recall}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_search_returns_k_rows_whenever_k_rows_match() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    let mut rng = Rng(0xf117e7);
    let centers = clustered_table(&sluice, &mut rng, 6000, 30).await;
    run_sql(&sluice, "CREATE INDEX ON vecs USING hnsw (v)").await;
    let q = vector_text(&rng.near(&centers[3], 0.2));
    let order = format!("v <=> '{q}'");

    // 1% of rows match: the matching rows are scanned exactly.
    let rare = "SELECT id FROM vecs WHERE cat = 'rare'";
    let explained = plan(&sluice, &format!("{rare} ORDER BY {order} LIMIT 10")).await;
    assert!(explained.contains("matches 1.0% of rows"), "{explained}");
    assert!(
        explained.contains("exact scan: 1 file(s) (selective filter)"),
        "{explained}"
    );
    let (searched, exact) = both_ways(&sluice, rare, &order, 10).await;
    assert_eq!(searched.len(), 10);
    assert_eq!(overlap(&searched, &exact), 10);
    assert!(searched.iter().all(|id| id % 100 == 0));

    // A third of the rows: the filter runs inside the graph walk.
    let third = "SELECT id FROM vecs WHERE id % 3 = 0";
    let explained = plan(&sluice, &format!("{third} ORDER BY {order} LIMIT 10")).await;
    assert!(
        explained.contains("graph walk: 1 graph(s) over 1 file(s)"),
        "{explained}"
    );
    let (searched, exact) = both_ways(&sluice, third, &order, 10).await;
    assert_eq!(searched.len(), 10);
    assert!(searched.iter().all(|id| id % 3 == 0));
    assert!(overlap(&searched, &exact) >= 9, "{searched:?} vs {exact:?}");

    // Fewer rows match than asked for: all of them, no more.
    let few = "SELECT id FROM vecs WHERE id < 4";
    let (mut searched, _) = both_ways(&sluice, few, &order, 10).await;
    searched.sort();
    assert_eq!(searched, vec![0, 1, 2, 3]);
    let none = "SELECT id FROM vecs WHERE cat = 'none'";
    assert!(both_ways(&sluice, none, &order, 10).await.0.is_empty());

    // VECTOR_SEARCH with a WHERE clause takes the same path.
    let rows = text_rows_of(
        &sluice,
        &format!(
            "SELECT id, cat FROM VECTOR_SEARCH(TABLE vecs, DESCRIPTOR(v), '{q}'::vector({DIM}), 7) \
             WHERE cat = 'rare'"
        ),
    )
    .await;
    assert_eq!(rows.len(), 7);
    assert!(rows.iter().all(|r| r[1].as_deref() == Some("rare")));
}

/// Data files (path, rows) and the first index's graphs (data file,
/// graph) of the newest manifest (a graph may cover several files).
struct Listed {
    files: Vec<(String, u64)>,
    graphs: Vec<(String, String)>,
}

fn listed(table: &Path) -> Listed {
    let manifests = table.join("_manifest");
    let newest = std::fs::read_dir(&manifests)
        .expect("manifests")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .max()
        .expect("a manifest");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(newest).expect("read")).expect("json");
    let files = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or_default().to_owned(),
                f["rows"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let graphs = manifest["vector_indexes"][0]["files"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(data, part)| {
                    let graph = part["graph"].as_str().unwrap_or_default();
                    (data.clone(), graph.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    Listed { files, graphs }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_follows_writes_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = dir.path().join("tables/public/vecs");
    let mut rng = Rng(0xd1ce);
    let q = vector_text(&rng.vector());
    let order = format!("v <-> '{q}'");
    let before_restart;
    {
        let sluice = open(dir.path()).await;
        let centers = clustered_table(&sluice, &mut rng, 3000, 20).await;
        run_sql(
            &sluice,
            "CREATE INDEX vecs_l2 ON vecs USING hnsw (v) WITH (metric = 'l2')",
        )
        .await;
        // A second large file gets its graph at its INSERT; a small one is
        // searched exactly.
        insert_rows(&sluice, &mut rng, &centers, 3000..4500).await;
        insert_rows(&sluice, &mut rng, &centers, 4500..4503).await;
        run_sql(&sluice, "INSERT INTO vecs VALUES (9999, 'common', NULL)").await;
        // Rewrites every file: one graph is built over the new large ones
        // (one write's files share a graph).
        run_sql(&sluice, "DELETE FROM vecs WHERE id % 7 = 0").await;
        run_sql(&sluice, "SET vector.ef_search = 400").await;
        let (searched, exact) = both_ways(&sluice, "SELECT id FROM vecs", &order, 20).await;
        assert!(searched.iter().all(|id| id % 7 != 0 && *id != 9999));
        assert!(
            overlap(&searched, &exact) >= 19,
            "{searched:?} vs {exact:?}"
        );
        before_restart = searched;

        let Listed { files, graphs } = listed(&table);
        let large: Vec<&String> = files
            .iter()
            .filter(|(_, rows)| *rows >= 1000)
            .map(|(p, _)| p)
            .collect();
        assert_eq!(large.len(), 2, "{files:?}");
        for path in &large {
            let graph = graphs
                .iter()
                .find(|(data, _)| data == *path)
                .unwrap_or_else(|| panic!("no graph for {path}: {graphs:?}"));
            assert!(table.join(&graph.1).exists());
        }
        assert_eq!(graphs.len(), 2, "graphs only for listed files: {graphs:?}");
        assert_eq!(graphs[0].1, graphs[1].1, "one graph over both: {graphs:?}");
        let on_disk = std::fs::read_dir(table.join("indexes"))
            .expect("indexes")
            .count();
        assert_eq!(on_disk, 1, "replaced files' graphs are deleted");
    }
    // What a crash between writing a graph and committing it leaves.
    std::fs::write(table.join("indexes/orphan.usearch"), b"half written").expect("orphan");
    let sluice = open(dir.path()).await;
    assert!(!table.join("indexes/orphan.usearch").exists());
    run_sql(&sluice, "SET vector.ef_search = 400").await;
    let (searched, _) = both_ways(&sluice, "SELECT id FROM vecs", &order, 20).await;
    assert_eq!(searched, before_restart);

    run_sql(&sluice, "DROP INDEX vecs_l2").await;
    let searched = format!("SELECT id FROM vecs ORDER BY {order} LIMIT 20");
    assert!(
        !plan(&sluice, &searched)
            .await
            .contains("VectorTopKExec: index=")
    );
    assert_eq!(
        std::fs::read_dir(table.join("indexes"))
            .expect("indexes")
            .count(),
        0
    );
    let Err(err) = sluice.sql("DROP INDEX vecs_l2").await else {
        panic!("the index is gone");
    };
    assert!(err.to_string().contains("does not exist"), "{err}");
}

/// The distinct graphs of the newest manifest's first index, and how
/// many data files they serve.
fn graph_count(table: &Path) -> (usize, usize) {
    let Listed { graphs, .. } = listed(table);
    let distinct: HashSet<&String> = graphs.iter().map(|(_, graph)| graph).collect();
    (distinct.len(), graphs.len())
}

/// One graph serves the files an index was built over together; a file
/// replaced later leaves its keys in that graph, which walks must skip
/// (in a transaction's snapshot too) until too few of its rows are live
/// and its files are regrouped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_over_several_files_skips_the_rows_of_replaced_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = dir.path().join("tables/public/vecs");
    let sluice = open(dir.path()).await;
    let mut rng = Rng(0x9a7e);
    let centers = clustered_table(&sluice, &mut rng, 2000, 10).await;
    insert_rows(&sluice, &mut rng, &centers, 2000..3500).await;
    insert_rows(&sluice, &mut rng, &centers, 3500..5000).await;
    run_sql(&sluice, "CREATE INDEX ON vecs USING hnsw (v)").await;
    run_sql(&sluice, "SET vector.ef_search = 400").await;
    assert_eq!(
        graph_count(&table),
        (1, 3),
        "one graph over the three files"
    );
    // The query sits on a row of the second file, so its neighbours there
    // are the ones a walk reaching dead keys would return.
    let near = text_rows_of(&sluice, "SELECT v FROM vecs WHERE id = 2002").await;
    let q = near[0][0].clone().expect("a vector");
    let select = "SELECT id FROM vecs";
    let order = format!("v <=> '{q}'");
    let searched = format!("{select} ORDER BY {order} LIMIT 20");
    assert!(
        plan(&sluice, &searched)
            .await
            .contains("graph walk: 1 graph(s) over 3 file(s)"),
        "{}",
        plan(&sluice, &searched).await
    );
    let (before, exact) = both_ways(&sluice, select, &order, 20).await;
    assert_eq!(before[0], 2002);
    assert!(overlap(&before, &exact) >= 19, "{before:?} vs {exact:?}");

    // Rewrites the second file only: the first graph keeps the other two.
    run_sql(&sluice, "DELETE FROM vecs WHERE id BETWEEN 2000 AND 2100").await;
    assert_eq!(graph_count(&table), (2, 3));
    assert!(
        plan(&sluice, &searched)
            .await
            .contains("graph walk: 2 graph(s) over 3 file(s)")
    );
    let (searched_ids, exact) = both_ways(&sluice, select, &order, 20).await;
    assert!(
        searched_ids.iter().all(|id| !(2000..=2100).contains(id)),
        "{searched_ids:?}"
    );
    assert!(
        overlap(&searched_ids, &exact) >= 19,
        "{searched_ids:?} vs {exact:?}"
    );

    // Inside a transaction, its own rewrite of the third file leaves that
    // file's keys in the committed graph, seen by this snapshot only.
    let session = sluice.session();
    run_in_session(
        &session,
        &["BEGIN", "DELETE FROM vecs WHERE id % 2 = 0 AND id >= 3500"],
    )
    .await;
    // Rows of cluster 2 have even ids: every one in the third file goes.
    let far = format!(
        "{select} ORDER BY v <=> '{}' LIMIT 50",
        vector_text(&centers[2])
    );
    let inside: Vec<i64> = session
        .sql(&far)
        .await
        .expect("search")
        .collect()
        .await
        .expect("search")
        .iter()
        .flat_map(|batch| {
            batch
                .column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .expect("ids")
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(inside.len(), 50);
    assert!(
        inside.iter().all(|id| *id < 3500 || id % 2 == 1),
        "rows the transaction deleted: {inside:?}"
    );
    session.sql("ROLLBACK").await.expect("rollback");
    assert!(
        ids(&sluice, &far)
            .await
            .iter()
            .any(|id| *id >= 3500 && id % 2 == 0),
        "the rollback keeps them"
    );

    // Rewrites the first file: its graph keeps 1,500 of 5,000 rows, so
    // the third file leaves it and is grouped with the new first one.
    run_sql(&sluice, "DELETE FROM vecs WHERE id < 10").await;
    assert_eq!(graph_count(&table), (2, 3));
    let on_disk = std::fs::read_dir(table.join("indexes"))
        .expect("indexes")
        .count();
    assert_eq!(on_disk, 2, "the sparse graph is deleted");
    let (searched_ids, exact) = both_ways(&sluice, select, &order, 20).await;
    assert!(
        overlap(&searched_ids, &exact) >= 19,
        "{searched_ids:?} vs {exact:?}"
    );
    drop(sluice);
    let sluice = open(dir.path()).await;
    run_sql(&sluice, "SET vector.ef_search = 400").await;
    let (after_restart, _) = both_ways(&sluice, select, &order, 20).await;
    assert_eq!(after_restart, searched_ids);
}

/// Without an index, `ORDER BY <distance> LIMIT k` runs as Sluice's exact
/// top-k over the decoded vectors: the same rows as DataFusion sorting
/// every row — ties (duplicate vectors) to the earlier row, NULL vectors
/// after every distance, filters inside — for every distance function,
/// and the vectors it returns are the stored ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_search_returns_what_sorting_every_row_returns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    let mut rng = Rng(0xe1ac7);
    run_sql(
        &sluice,
        &format!("CREATE TABLE vecs (id BIGINT, cat TEXT, v VECTOR({DIM}))"),
    )
    .await;
    // Three INSERTs: three data files, ids in file order.
    let mut previous = rng.vector();
    for file in 0..3 {
        let values: Vec<String> = (file * 700..(file + 1) * 700)
            .map(|id| {
                let cat = if id % 10 == 0 { "rare" } else { "common" };
                if id % 50 == 7 {
                    return format!("({id}, '{cat}', NULL)");
                }
                // Every 5th row repeats the one before: equal distances.
                if id % 5 != 0 {
                    previous = rng.vector();
                }
                format!("({id}, '{cat}', '{}')", vector_text(&previous))
            })
            .collect();
        run_sql(
            &sluice,
            &format!("INSERT INTO vecs VALUES {}", values.join(", ")),
        )
        .await;
    }
    let q = vector_text(&rng.vector());
    let stored: std::collections::HashMap<String, String> =
        text_rows_of(&sluice, "SELECT id, v FROM vecs WHERE v IS NOT NULL")
            .await
            .into_iter()
            .map(|row| {
                (
                    row[0].clone().unwrap_or_default(),
                    row[1].clone().unwrap_or_default(),
                )
            })
            .collect();

    let orders = [
        format!("v <-> '{q}'"),
        format!("v <=> '{q}'"),
        format!("v <#> '{q}'"),
        format!("l1_distance(v, '{q}')"),
        format!("inner_product('{q}', v)"),
    ];
    for order in &orders {
        for (filter, k) in [("", 10), ("WHERE cat = 'rare'", 25), ("", 3000)] {
            let select = format!("SELECT id, v, {order} FROM vecs {filter}");
            let searched = format!("{select} ORDER BY {order} LIMIT {k}");
            let explained = plan(&sluice, &searched).await;
            assert!(
                explained.contains("VectorTopKExec: exact")
                    && explained.contains("exact scan: 3 file(s) (no index)"),
                "{searched}:\n{explained}"
            );
            let reference = format!("{select} ORDER BY {order}, id LIMIT {k}");
            assert!(!plan(&sluice, &reference).await.contains("VectorTopKExec"));
            let (mut got, mut want) = (
                text_rows_of(&sluice, &searched).await,
                text_rows_of(&sluice, &reference).await,
            );
            assert_eq!(got.len(), want.len().min(k), "{searched}");
            // The same distances in the same order; among equal distances
            // the same rows (the earlier ones), in an order SQL leaves open.
            let distances = |rows: &[Vec<Option<String>>]| -> Vec<Option<String>> {
                rows.iter().map(|row| row[2].clone()).collect()
            };
            assert_eq!(distances(&got), distances(&want), "{searched}");
            got.sort();
            want.sort();
            assert_eq!(got, want, "{searched}");
        }
    }
    // Every row, NULL vectors last (Postgres' order); VECTOR_SEARCH only
    // rows with a vector.
    let all = text_rows_of(
        &sluice,
        &format!("SELECT id FROM vecs ORDER BY v <-> '{q}' LIMIT 5000"),
    )
    .await;
    assert_eq!(all.len(), 2100);
    assert!(all[2100 - 42..].iter().all(|row| {
        row[0]
            .as_deref()
            .and_then(|id| id.parse::<i64>().ok())
            .is_some_and(|id| id % 50 == 7)
    }));
    let searched = text_rows_of(
        &sluice,
        &format!("SELECT count(*) FROM VECTOR_SEARCH(TABLE vecs, DESCRIPTOR(v), '{q}'::vector({DIM}), 5000)"),
    )
    .await;
    assert_eq!(searched[0][0].as_deref(), Some("2058"));
    // A distance over a computed column of the same name is not a search
    // of the stored vectors.
    let computed =
        format!("SELECT id, l2_normalize(v) AS v FROM vecs ORDER BY v <-> '{q}' LIMIT 3");
    assert!(!plan(&sluice, &computed).await.contains("VectorTopKExec"));
    assert_eq!(text_rows_of(&sluice, &computed).await.len(), 3);
    // NULLS FIRST is not a nearest-first search: DataFusion sorts it.
    let nulls_first = format!("SELECT id FROM vecs ORDER BY v <-> '{q}' NULLS FIRST LIMIT 3");
    assert!(!plan(&sluice, &nulls_first).await.contains("VectorTopKExec"));
    assert_eq!(text_rows_of(&sluice, &nulls_first).await.len(), 3);

    // Through an index, the vectors returned are the stored ones too.
    run_sql(&sluice, "CREATE INDEX ON vecs USING hnsw (v vector_l2_ops)").await;
    let searched = format!("SELECT id, v FROM vecs ORDER BY v <-> '{q}' LIMIT 10");
    assert!(
        plan(&sluice, &searched)
            .await
            .contains("VectorTopKExec: index=")
    );
    let rows = text_rows_of(&sluice, &searched).await;
    assert_eq!(rows.len(), 10);
    for row in rows {
        let id = row[0].clone().unwrap_or_default();
        assert_eq!(row[1].as_ref(), stored.get(&id), "vector of {id}");
    }
    // A dimension mismatch is an error, not an empty answer.
    let result = match sluice
        .sql("SELECT id FROM vecs ORDER BY l1_distance(v, '[1,2]') LIMIT 3")
        .await
    {
        Ok(frame) => frame.collect().await.map(|_| ()),
        Err(err) => Err(err),
    };
    let err = result.expect_err("a dimension mismatch");
    assert!(err.to_string().contains("dimension"), "{err}");
}

/// A `LATERAL` batch of searches runs as one exact pass over the table's
/// vectors (a matrix product) and returns, for every query row, the rows
/// and scores a search with that row's vector alone returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_searches_returns_what_each_search_returns() {
    /// The rows of a batch's result for query `qid` (its first column),
    /// without that column.
    fn rows_of_query(
        rows: &[Vec<Option<String>>],
        qid: &Option<String>,
    ) -> Vec<Vec<Option<String>>> {
        rows.iter()
            .filter(|row| &row[0] == qid)
            .map(|row| row[1..].to_vec())
            .collect()
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    let mut rng = Rng(0xba7c4);
    let centers = clustered_table(&sluice, &mut rng, 3000, 20).await;
    // A second file, with a NULL vector.
    insert_rows(&sluice, &mut rng, &centers, 3000..3500).await;
    run_sql(&sluice, "INSERT INTO vecs VALUES (9999, 'rare', NULL)").await;
    run_sql(
        &sluice,
        &format!("CREATE TABLE queries (qid INT, qv VECTOR({DIM}))"),
    )
    .await;
    let mut values: Vec<String> = (0..30)
        .map(|qid| {
            format!(
                "({qid}, '{}')",
                vector_text(&rng.near(&centers[qid % 20], 0.3))
            )
        })
        .collect();
    // A repeated query vector and a NULL one (which finds nothing).
    values.push("(30, NULL)".into());
    let first = values[0].replacen("(0,", "(31,", 1);
    values.push(first);
    run_sql(
        &sluice,
        &format!("INSERT INTO queries VALUES {}", values.join(", ")),
    )
    .await;
    let queries = text_rows_of(&sluice, "SELECT qid, qv FROM queries WHERE qv IS NOT NULL").await;
    for metric in ["cosine", "l2", "ip", "l1"] {
        let batch = format!(
            "SELECT q.qid, s.id, s.score FROM queries q, \
             LATERAL TABLE(VECTOR_SEARCH(TABLE vecs, q.qv, DESCRIPTOR(v), 7, MAP['metric', '{metric}'])) AS s \
             ORDER BY q.qid, s.score, s.id"
        );
        let explained = plan(&sluice, &batch).await;
        assert!(
            explained.contains("VectorBatchTopKExec: exact"),
            "{explained}"
        );
        let rows = text_rows_of(&sluice, &batch).await;
        assert_eq!(rows.len(), 31 * 7, "{metric}");
        for query in &queries {
            let (qid, qv) = (query[0].clone(), query[1].clone().unwrap_or_default());
            let got: Vec<Vec<Option<String>>> = rows
                .iter()
                .filter(|row| row[0] == qid)
                .map(|row| row[1..].to_vec())
                .collect();
            let single = format!(
                "SELECT id, score FROM VECTOR_SEARCH(TABLE vecs, DESCRIPTOR(v), '{qv}'::vector({DIM}), 7, \
                 MAP['metric', '{metric}']) ORDER BY score, id"
            );
            assert_eq!(
                got,
                text_rows_of(&sluice, &single).await,
                "{metric} {qid:?}"
            );
        }
    }
    // Without the score (the optimizer prunes it between the rank filter
    // and the window), and with a filter on the result: still one pass.
    let ids_only = "SELECT q.qid, s.id FROM queries q, \
         LATERAL TABLE(VECTOR_SEARCH(TABLE vecs, q.qv, DESCRIPTOR(v), 3)) AS s WHERE q.qid < 10";
    assert!(
        plan(&sluice, ids_only)
            .await
            .contains("VectorBatchTopKExec")
    );
    assert_eq!(text_rows_of(&sluice, ids_only).await.len(), 30);
    // With an index for the batch's distance, each query walks the graph
    // as its own search would: the same rows, and EXPLAIN says so.
    run_sql(
        &sluice,
        "CREATE INDEX vecs_v ON vecs USING hnsw (v) WITH (metric = 'cosine')",
    )
    .await;
    let batch = "SELECT q.qid, s.id, s.score FROM queries q, \
         LATERAL TABLE(VECTOR_SEARCH(TABLE vecs, q.qv, DESCRIPTOR(v), 7)) AS s \
         ORDER BY q.qid, s.score, s.id";
    let explained = plan(&sluice, batch).await;
    assert!(
        explained.contains("VectorBatchTopKExec: k=7 per query, index=vecs_v (hnsw, cosine)")
            && explained.contains("graph walk: 1 graph(s) over 1 file(s)"),
        "{explained}"
    );
    let rows = text_rows_of(&sluice, batch).await;
    assert_eq!(rows.len(), 31 * 7);
    for query in &queries {
        let (qid, qv) = (query[0].clone(), query[1].clone().unwrap_or_default());
        let got = rows_of_query(&rows, &qid);
        let single = format!(
            "SELECT id, score FROM VECTOR_SEARCH(TABLE vecs, DESCRIPTOR(v), '{qv}'::vector({DIM}), 7) \
             ORDER BY score, id"
        );
        assert!(plan(&sluice, &single).await.contains("index=vecs_v"));
        assert_eq!(got, text_rows_of(&sluice, &single).await, "{qid:?}");
    }
    // Another distance has no index: still one exact pass.
    let l2 = "SELECT q.qid, s.id FROM queries q, \
         LATERAL TABLE(VECTOR_SEARCH(TABLE vecs, q.qv, DESCRIPTOR(v), 3, MAP['metric', 'l2'])) AS s";
    assert!(
        plan(&sluice, l2)
            .await
            .contains("VectorBatchTopKExec: exact")
    );
}
