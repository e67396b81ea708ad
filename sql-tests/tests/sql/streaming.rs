//! Continuous queries end to end, where an `.slt` file cannot say it: a
//! model inside a materialized view runs once per row (counted by the
//! model's own metrics), views come back after a restart, and a query that
//! fails is reported in the status table while the others go on.
//! The SQL behaviour itself is pinned in `slt/streaming/`.

use sluice_engine::{DEFAULT_EMBEDDING_MODEL, Sluice};
use sluice_sql_tests::{open_engine as open, run_sql as run, text_rows_of};

/// Rows in text form, sorted (views have no order).
async fn sorted_rows(sluice: &Sluice, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut out = text_rows_of(sluice, sql).await;
    out.sort();
    out
}

/// Rows the model has been given so far (`DESCRIBE MODEL`'s counter).
async fn model_rows(sluice: &Sluice, model: &str) -> u64 {
    model_counter(sluice, model, "rows").await
}

/// One of `DESCRIBE MODEL`'s counters (`rows`, `batches`).
async fn model_counter(sluice: &Sluice, model: &str, counter: &str) -> u64 {
    sorted_rows(sluice, &format!("DESCRIBE MODEL {model}"))
        .await
        .into_iter()
        .find(|r| r[0].as_deref() == Some(counter))
        .and_then(|r| r[1].as_deref()?.parse().ok())
        .expect("DESCRIBE MODEL reports the counter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_call_inside_an_aggregate_runs_once_per_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = DEFAULT_EMBEDDING_MODEL;
    let sluice = open(dir.path()).await;
    run(&sluice, "CREATE TABLE posts (k BIGINT, body TEXT)").await;
    run(
        &sluice,
        "INSERT INTO posts VALUES (1, 'a cat'), (1, 'a dog'), (2, 'the sea')",
    )
    .await;
    let before = model_rows(&sluice, model).await;
    run(
        &sluice,
        &format!(
            "CREATE MATERIALIZED VIEW dims_per_key AS \
             SELECT k, sum(vector_dims(EMBED('{model}', body))) AS d, count(*) AS n \
             FROM posts GROUP BY k"
        ),
    )
    .await;
    run(&sluice, "INSERT INTO posts VALUES (2, 'the sky')").await;
    run(&sluice, "FLUSH").await;
    assert_eq!(model_rows(&sluice, model).await - before, 4);
    assert_eq!(
        sorted_rows(&sluice, "SELECT k, d, n FROM dims_per_key").await,
        sorted_rows(
            &sluice,
            &format!(
                "SELECT k, sum(vector_dims(EMBED('{model}', body))), count(*) FROM posts GROUP BY k"
            )
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_commits_reach_the_model_in_batches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = DEFAULT_EMBEDDING_MODEL;
    let sluice = open(dir.path()).await;
    run(&sluice, "CREATE TABLE notes (id BIGINT, body TEXT)").await;
    run(
        &sluice,
        &format!("CREATE MATERIALIZED VIEW embedded_notes AS SELECT id, EMBED('{model}', body) AS v FROM notes"),
    )
    .await;
    // Forty one-row commits pile up while the view is paused (as they do
    // behind a busy model); resumed, the view reads them in batches.
    run(&sluice, "ALTER MATERIALIZED VIEW embedded_notes PAUSE").await;
    for id in 0..40 {
        run(
            &sluice,
            &format!("INSERT INTO notes VALUES ({id}, 'note number {id}')"),
        )
        .await;
    }
    let (rows_before, batches_before) = (
        model_rows(&sluice, model).await,
        model_counter(&sluice, model, "batches").await,
    );
    run(&sluice, "ALTER MATERIALIZED VIEW embedded_notes RESUME").await;
    run(&sluice, "FLUSH").await;
    assert_eq!(model_rows(&sluice, model).await - rows_before, 40);
    let batches = model_counter(&sluice, model, "batches").await - batches_before;
    // The source reads four commits at a time and the operators take what
    // is queued: at most ten model runs, where one per commit would be 40.
    assert!(
        (1..=10).contains(&batches),
        "40 one-row commits took {batches} model batches"
    );
    assert_eq!(
        sorted_rows(&sluice, "SELECT count(*) FROM embedded_notes").await,
        vec![vec![Some("40".to_string())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_with_embed_runs_the_model_once_per_row_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = DEFAULT_EMBEDDING_MODEL;
    let embedded = format!("SELECT id, EMBED('{model}', body)::text AS v FROM docs");
    let expected;
    {
        let sluice = open(dir.path()).await;
        run(&sluice, "CREATE TABLE docs (id BIGINT, body TEXT)").await;
        run(
            &sluice,
            "INSERT INTO docs VALUES (1, 'a cat on a mat'), (2, 'stock prices fell'), (3, 'the cat sat')",
        )
        .await;
        let before = model_rows(&sluice, model).await;
        run(
            &sluice,
            &format!(
                "CREATE MATERIALIZED VIEW embedded AS SELECT id, EMBED('{model}', body) AS v FROM docs"
            ),
        )
        .await;
        run(
            &sluice,
            "CREATE MATERIALIZED VIEW per_word AS SELECT split_part(body, ' ', 1) AS word, count(*) AS n FROM docs GROUP BY split_part(body, ' ', 1)",
        )
        .await;
        run(
            &sluice,
            "INSERT INTO docs VALUES (4, 'rain tomorrow'), (5, 'a dog barked')",
        )
        .await;
        run(&sluice, "FLUSH").await;
        assert_eq!(
            model_rows(&sluice, model).await - before,
            5,
            "each of the 5 rows embedded exactly once by the view"
        );
        let view = sorted_rows(&sluice, "SELECT id, v::text FROM embedded").await;
        expected = sorted_rows(&sluice, &embedded).await;
        assert_eq!(view.len(), 5);
        assert_eq!(view, expected, "the view equals the one-off query");
        // A deleted row is retracted by computing its output again: one
        // model call for the deleted row, none for the rows the DELETE's
        // file rewrite kept (the table hands views the exact rows changed).
        let before_delete = model_rows(&sluice, model).await;
        run(&sluice, "DELETE FROM docs WHERE id = 4").await;
        run(&sluice, "FLUSH").await;
        assert_eq!(model_rows(&sluice, model).await - before_delete, 1);
        assert_eq!(
            sorted_rows(&sluice, "SELECT id FROM embedded").await.len(),
            4
        );
    }
    // Reopened: the views are back and keep following their table. The
    // embedded view resumes from its checkpoint and region log: it reads
    // no row of the table again (no model call is repeated).
    let sluice = open(dir.path()).await;
    assert_eq!(
        sorted_rows(
            &sluice,
            "SELECT rows_in FROM sluice_catalog.continuous_queries WHERE name = 'embedded'"
        )
        .await,
        vec![vec![Some("0".to_string())]],
        "the embedded view re-read its table after the restart"
    );
    let view = sorted_rows(&sluice, "SELECT id, v::text FROM embedded").await;
    let expected: Vec<_> = expected
        .into_iter()
        .filter(|r| r[0].as_deref() != Some("4"))
        .collect();
    assert_eq!(view, expected);
    assert_eq!(
        sorted_rows(&sluice, "SELECT word, n FROM per_word").await,
        sorted_rows(
            &sluice,
            "SELECT split_part(body, ' ', 1), count(*) FROM docs GROUP BY 1"
        )
        .await
    );
    run(&sluice, "INSERT INTO docs VALUES (6, 'a new day')").await;
    run(&sluice, "FLUSH").await;
    assert_eq!(
        sorted_rows(&sluice, "SELECT n FROM per_word WHERE word = 'a'").await,
        vec![vec![Some("3".to_string())]]
    );
    let names = sorted_rows(&sluice, "SHOW MATERIALIZED VIEWS").await;
    assert_eq!(names.len(), 2);
    run(&sluice, "DROP MATERIALIZED VIEW embedded").await;
    run(&sluice, "DROP MATERIALIZED VIEW per_word").await;
    drop(sluice);
    let sluice = open(dir.path()).await;
    assert!(
        sorted_rows(&sluice, "SHOW MATERIALIZED VIEWS")
            .await
            .is_empty(),
        "dropped views stay dropped"
    );
}

/// Asserts that `view` holds exactly `query`'s rows (EXCEPT ALL both ways
/// is empty).
async fn assert_view_equals(sluice: &Sluice, view: &str, query: &str) {
    let differing = sorted_rows(
        sluice,
        &format!(
            "SELECT (SELECT count(*) FROM (SELECT * FROM {view} EXCEPT ALL {query}) d) + \
             (SELECT count(*) FROM ({query} EXCEPT ALL SELECT * FROM {view}) e)"
        ),
    )
    .await;
    assert_eq!(
        differing,
        vec![vec![Some("0".to_string())]],
        "{view} differs from {query}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_aggregates_resume_from_incremental_checkpoints() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inner = "SELECT a.k, a.x, b.y FROM a JOIN b ON a.k = b.k";
    let left = "SELECT b.k, b.y, a.x FROM b LEFT JOIN a ON a.k = b.k";
    let grouped = "SELECT k, count(*) AS n, max(x) AS hi FROM a GROUP BY k";
    // Two joins: the second takes the first's output as a side.
    let nested = "SELECT a.k, a.x, b.y, c.y AS z FROM a JOIN b ON a.k = b.k \
                  LEFT JOIN (SELECT k - 1 AS k, y FROM b) c ON c.k = a.k";
    // A union of the two tables (no state of its own), aggregated after.
    let united = "SELECT k, count(*) AS n FROM (SELECT k, x AS v FROM a UNION ALL \
                  SELECT k, y FROM b) GROUP BY k";
    let views = [
        ("ab", inner),
        ("ab_left", left),
        ("a_groups", grouped),
        ("abc", nested),
        ("ab_union", united),
    ];
    {
        let sluice = open(dir.path()).await;
        for sql in [
            "SET checkpoint_interval_ms = 0",
            "CREATE TABLE a (k BIGINT, x TEXT)",
            "CREATE TABLE b (k BIGINT, y TEXT)",
            "INSERT INTO a SELECT g % 50, 'a' || g FROM generate_series(1, 500) AS g",
            "INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 60) AS g",
        ] {
            run(&sluice, sql).await;
        }
        for (name, query) in views {
            run(
                &sluice,
                &format!("CREATE MATERIALIZED VIEW {name} AS {query}"),
            )
            .await;
        }
        // A whole checkpoint, then two that hold only the changes since.
        // FLUSH first: a checkpoint taken before a view has read a DELETE
        // records files the DELETE replaced, and a restore from it would
        // rightly start over.
        for sql in [
            "FLUSH",
            "CHECKPOINT",
            "INSERT INTO a VALUES (55, 'new'), (7, 'new7')",
            "DELETE FROM b WHERE k = 3",
            "UPDATE a SET x = 'upd' WHERE k = 9",
            "FLUSH",
            "CHECKPOINT",
            "INSERT INTO b VALUES (3, 'back')",
            "DELETE FROM a WHERE k = 12",
            "FLUSH",
            "CHECKPOINT",
        ] {
            run(&sluice, sql).await;
        }
    }
    // Reopened: each query resumes from its checkpoint (it reads no table
    // row again) and equals its one-off query, then keeps following.
    let sluice = open(dir.path()).await;
    assert_eq!(
        sorted_rows(
            &sluice,
            "SELECT name, rows_in FROM sluice_catalog.continuous_queries"
        )
        .await,
        ["a_groups", "ab", "ab_left", "ab_union", "abc"]
            .map(|name| vec![Some(name.to_string()), Some("0".to_string())])
            .to_vec()
    );
    for (view, query) in views {
        assert_view_equals(&sluice, view, query).await;
    }
    run(&sluice, "INSERT INTO a VALUES (3, 'after'), (60, 'x60')").await;
    run(&sluice, "DELETE FROM b WHERE k = 7").await;
    run(&sluice, "FLUSH").await;
    for (view, query) in views {
        assert_view_equals(&sluice, view, query).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_view_is_reported_and_the_others_go_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    run(&sluice, "CREATE TABLE t (id BIGINT, d BIGINT)").await;
    run(&sluice, "INSERT INTO t VALUES (1, 2), (2, 5)").await;
    run(
        &sluice,
        "CREATE MATERIALIZED VIEW ratios AS SELECT id, 10 / d AS r FROM t",
    )
    .await;
    run(
        &sluice,
        "CREATE MATERIALIZED VIEW counted AS SELECT count(*) AS n FROM t",
    )
    .await;
    run(&sluice, "INSERT INTO t VALUES (3, 0)").await;
    run(&sluice, "FLUSH").await;
    let status = sorted_rows(
        &sluice,
        "SELECT name, status, last_error FROM sluice_catalog.continuous_queries",
    )
    .await;
    assert_eq!(status[0][0].as_deref(), Some("counted"));
    assert_eq!(status[0][1].as_deref(), Some("running"));
    assert_eq!(status[1][0].as_deref(), Some("ratios"));
    assert_eq!(status[1][1].as_deref(), Some("failed"));
    let error = status[1][2].clone().unwrap_or_default();
    assert!(error.contains("Divide by zero"), "{error}");
    // The failed view keeps its last good epoch; the other one goes on.
    assert_eq!(
        sorted_rows(&sluice, "SELECT id, r FROM ratios").await,
        vec![
            vec![Some("1".into()), Some("5".into())],
            vec![Some("2".into()), Some("2".into())]
        ]
    );
    run(&sluice, "INSERT INTO t VALUES (4, 1)").await;
    run(&sluice, "FLUSH").await;
    assert_eq!(
        sorted_rows(&sluice, "SELECT n FROM counted").await,
        vec![vec![Some("4".into())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_dropped_into_a_folder_are_decoded_scored_and_land_in_a_table() {
    use sluice_functions::model::runtime::sluice_home;
    let dir = tempfile::tempdir().expect("temp dir");
    let drops = tempfile::tempdir().expect("drop folder");
    // The folder is an object root: functions may read what lands in it.
    let sluice = Sluice::builder()
        .data_dir(dir.path())
        .object_root(drops.path().to_string_lossy())
        .build()
        .await
        .expect("open");
    let model = sluice_home().join("test-models").join("channel_mean.onnx");
    assert!(model.is_file(), "run scripts/install-deps.sh");
    run(
        &sluice,
        &format!(
            "CREATE MODEL cm WITH ('path' = '{}', 'image_width' = '32', 'image_height' = '16')",
            model.display()
        ),
    )
    .await;
    run(
        &sluice,
        &format!(
            "CREATE TABLE drops (ref OBJECT_REF) WITH ('connector' = 'filesystem', \
             'path' = 'file://{}/', 'format' = 'object_ref', 'poll_interval_ms' = '50')",
            drops.path().display()
        ),
    )
    .await;
    run(&sluice, "CREATE TABLE scored (name TEXT, red DOUBLE)").await;
    // URI → read_image → ML_PREDICT → a table. Two stages: a model call
    // whose argument is another async call on a column
    // (`ML_PREDICT(…, read_image(ref))`) does not plan yet, in one-off
    // queries either (DataFusion runs async calls at the top of a
    // projection only).
    run(
        &sluice,
        "CREATE MATERIALIZED VIEW images AS SELECT ref::text AS name, read_image(ref) AS img FROM drops",
    )
    .await;
    run(
        &sluice,
        "CREATE SINK scores AS SELECT name, \
         CAST(ML_PREDICT('cm', img)['mean'][1] AS DOUBLE) AS red FROM images \
         WITH ('connector' = 'table', 'table' = 'scored')",
    )
    .await;
    let media = sluice_sql_tests::media_fixtures().join("cats");
    let before = model_rows(&sluice, "cm").await;
    for name in ["gradient.png", "red.jpg"] {
        std::fs::copy(media.join(name), drops.path().join(name)).expect("drop an image");
    }
    run(&sluice, "FLUSH").await;
    let scored = sorted_rows(&sluice, "SELECT name, red FROM scored").await;
    let status = sorted_rows(
        &sluice,
        "SELECT name, status, rows_in, last_error FROM sluice_catalog.continuous_queries",
    )
    .await;
    assert_eq!(scored.len(), 2, "{scored:?} {status:?}");
    let red_of = |rows: &[Vec<Option<String>>], file: &str| -> f64 {
        rows.iter()
            .find(|r| r[0].as_deref().is_some_and(|n| n.contains(file)))
            .and_then(|r| r[1].as_deref()?.parse().ok())
            .unwrap_or_else(|| panic!("no row for {file}: {rows:?}"))
    };
    // gradient.png's red channel is 8x at column x: mean 8 * 15.5 / 255.
    assert!((red_of(&scored, "gradient.png") - 8.0 * 15.5 / 255.0).abs() < 1e-5);
    assert!((red_of(&scored, "red.jpg") - 250.0 / 255.0).abs() < 0.03);
    assert_eq!(
        model_rows(&sluice, "cm").await - before,
        2,
        "once per image"
    );

    // Another image arrives: only it is read and scored.
    std::fs::copy(media.join("red.jpg"), drops.path().join("red-again.jpg")).expect("drop");
    run(&sluice, "FLUSH").await;
    let scored = sorted_rows(&sluice, "SELECT name, red FROM scored").await;
    assert_eq!(scored.len(), 3, "{scored:?}");
    assert_eq!(model_rows(&sluice, "cm").await - before, 3);
}
