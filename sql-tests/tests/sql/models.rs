//! Models end to end: `CREATE MODEL` on real ONNX files run by ONNX
//! Runtime, `EMBED` checked against Python onnxruntime's output, both forms
//! of `ML_PREDICT`, the model catalog across restarts, batching across
//! concurrent queries, and errors with their SQLSTATEs over the wire.
//!
//! The models come from `scripts/install-models.sh` (run by
//! `scripts/install-deps.sh`): `$SLUICE_HOME/models/minilm` and the small
//! test models in `$SLUICE_HOME/test-models`.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Float32Type;
use sluice_engine::Sluice;
use sluice_functions::model::runtime::sluice_home;
use sluice_sql_tests::{TestServer, open_engine as open, run_sql as run, text_rows_of as rows};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

fn test_model(name: &str) -> PathBuf {
    let path = sluice_home().join("test-models").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/install-deps.sh",
        path.display()
    );
    path
}

/// The error of a statement, whether planning (a constant model call is
/// run then) or running it fails.
async fn failure(sluice: &Sluice, sql: &str) -> datafusion::error::DataFusionError {
    match sluice.sql(sql).await {
        Err(e) => e,
        Ok(df) => df.collect().await.expect_err(sql),
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_match_python_onnxruntime() {
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(test_model("minilm_reference.json")).expect("reference file"),
    )
    .expect("reference json");
    let sentences: Vec<String> = reference["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| s.as_str().expect("text").to_string())
        .collect();
    let expected: Vec<Vec<f32>> = reference["embeddings"]
        .as_array()
        .expect("embeddings")
        .iter()
        .map(|v| {
            v.as_array()
                .expect("vector")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect()
        })
        .collect();
    assert!(sentences.len() >= 10);

    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    run(&sluice, "CREATE TABLE sentences (id INT, body TEXT)").await;
    let values: Vec<String> = sentences
        .iter()
        .enumerate()
        .map(|(i, s)| format!("({i}, {})", quote(s)))
        .collect();
    run(
        &sluice,
        &format!(
            "INSERT INTO sentences VALUES {}, (999, NULL)",
            values.join(", ")
        ),
    )
    .await;
    let batches = run(
        &sluice,
        "SELECT id, EMBED('minilm', body) AS v FROM sentences ORDER BY id",
    )
    .await;
    let mut checked = 0;
    for batch in &batches {
        let ids = batch
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let vectors = batch.column(1).as_fixed_size_list();
        assert_eq!(vectors.value_length(), 384);
        for row in 0..batch.num_rows() {
            let id = ids.value(row) as usize;
            if id == 999 {
                assert!(vectors.is_null(row), "EMBED(NULL) must be NULL");
                continue;
            }
            let got = vectors.value(row);
            let got = got.as_primitive::<Float32Type>().values();
            let want = &expected[id];
            let dot: f32 = got.iter().zip(want).map(|(a, b)| a * b).sum();
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let cosine = dot / (norm(got) * norm(want));
            assert!(
                cosine >= 0.9999,
                "sentence {id} ({:?}): cosine {cosine}",
                sentences[id]
            );
            assert!((norm(got) - 1.0).abs() < 1e-4, "embeddings are normalised");
            checked += 1;
        }
    }
    assert_eq!(checked, sentences.len());
    // A constant argument, and the type the result has in SQL.
    let typed = rows(
        &sluice,
        "SELECT vector_dims(EMBED('minilm', 'hello')), \
         EMBED('minilm', 'hello') <=> EMBED('minilm', 'Hello!') < 0.2",
    )
    .await;
    assert_eq!(typed, vec![vec![Some("384".into()), Some("t".into())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ml_predict_in_scalar_and_table_form() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    let linear = test_model("linear.onnx");
    run(
        &sluice,
        &format!(
            "CREATE MODEL lin WITH ('provider' = 'onnx', 'path' = {})",
            quote(&linear.display().to_string())
        ),
    )
    .await;
    run(
        &sluice,
        "CREATE TABLE t (id INT, x1 REAL, x2 REAL, score TEXT)",
    )
    .await;
    run(
        &sluice,
        "INSERT INTO t VALUES (1, 1, 2, 'a'), (2, 3, 4, 'b'), (3, NULL, 1, 'c'), (4, 4, 0, 'd')",
    )
    .await;
    // score = 0.5 x1 - 0.25 x2 + 1; label = score > 1. NULL in, NULL out.
    let table_form = rows(
        &sluice,
        "SELECT id, score, score0, label FROM ML_PREDICT(TABLE t, MODEL lin, DESCRIPTOR(x1, x2)) AS p ORDER BY id",
    )
    .await;
    let expected: Vec<Vec<Option<String>>> = vec![
        vec![
            Some("1".into()),
            Some("a".into()),
            Some("1".into()),
            Some("0".into()),
        ],
        vec![
            Some("2".into()),
            Some("b".into()),
            Some("1.5".into()),
            Some("1".into()),
        ],
        vec![Some("3".into()), Some("c".into()), None, None],
        vec![
            Some("4".into()),
            Some("d".into()),
            Some("3".into()),
            Some("1".into()),
        ],
    ];
    assert_eq!(
        table_form, expected,
        "input columns, then outputs (clash suffixed)"
    );
    // The scalar form returns a struct; its fields are the outputs.
    let scalar = rows(
        &sluice,
        "SELECT id, ML_PREDICT('lin', x1, x2)['score'], ML_PREDICT('lin', x1, x2) IS NULL FROM t ORDER BY id",
    )
    .await;
    assert_eq!(
        scalar[1],
        vec![Some("2".into()), Some("1.5".into()), Some("f".into())]
    );
    assert_eq!(scalar[2], vec![Some("3".into()), None, Some("t".into())]);

    // One model input per argument, and an export with a fixed batch of 3
    // rows (padded by Sluice) fed 4 rows.
    let two = test_model("two_inputs.onnx");
    let iris = test_model("logreg_iris.onnx");
    run(
        &sluice,
        &format!(
            "CREATE MODEL two WITH ('path' = {})",
            quote(&two.display().to_string())
        ),
    )
    .await;
    run(
        &sluice,
        &format!(
            "CREATE MODEL iris WITH ('path' = {})",
            quote(&iris.display().to_string())
        ),
    )
    .await;
    let two_rows = rows(&sluice, "SELECT ML_PREDICT('two', 1.5, 2)['total'], ML_PREDICT('two', x1, id)['doubled'] FROM t WHERE id = 2").await;
    assert_eq!(two_rows, vec![vec![Some("3.5".into()), Some("4".into())]]);
    let iris_rows = rows(
        &sluice,
        "SELECT count(label) FROM ML_PREDICT(TABLE t, MODEL iris, DESCRIPTOR(x1, x2))",
    )
    .await;
    assert_eq!(iris_rows, vec![vec![Some("3".into())]]);

    // Flink's per-call configuration: MAP['batch_size', …] caps the rows
    // per model run for this call only (the 3 non-NULL rows: 3 runs of 1).
    let batches = |described: Vec<Vec<Option<String>>>| -> u64 {
        described
            .iter()
            .find(|r| r[0].as_deref() == Some("batches"))
            .and_then(|r| r[1].as_deref()?.parse().ok())
            .expect("batches row")
    };
    let before = batches(rows(&sluice, "DESCRIBE MODEL lin").await);
    let configured = rows(
        &sluice,
        "SELECT id, score, score0, label FROM ML_PREDICT(TABLE t, MODEL lin, DESCRIPTOR(x1, x2), MAP['batch_size', '1']) ORDER BY id",
    )
    .await;
    assert_eq!(configured, expected, "same answers with the option");
    assert_eq!(
        batches(rows(&sluice, "DESCRIBE MODEL lin").await) - before,
        3
    );
    let scalar = rows(
        &sluice,
        "SELECT ML_PREDICT('lin', x1, x2, MAP['batch_size', 2])['score'] FROM t WHERE id = 2",
    )
    .await;
    assert_eq!(scalar, vec![vec![Some("1.5".into())]]);
    let err = failure(
        &sluice,
        "SELECT * FROM ML_PREDICT(TABLE t, MODEL lin, DESCRIPTOR(x1, x2), MAP['async', 'true'])",
    )
    .await;
    assert!(
        err.to_string()
            .contains("unknown ML_PREDICT option 'async'"),
        "{err}"
    );
    let err = failure(
        &sluice,
        "SELECT * FROM ML_PREDICT(TABLE t, MODEL lin, DESCRIPTOR(x1, x2), MAP['batch_size', '0'])",
    )
    .await;
    assert!(err.to_string().contains("positive integer"), "{err}");
    // EXPLAIN sees the rewritten table form, with one model call.
    let plan = rows(
        &sluice,
        "EXPLAIN SELECT * FROM ML_PREDICT(TABLE t, MODEL lin, DESCRIPTOR(x1, x2))",
    )
    .await;
    let physical = plan
        .iter()
        .find(|r| r[0].as_deref() == Some("physical_plan"))
        .and_then(|r| r[1].clone())
        .expect("physical plan");
    assert_eq!(physical.matches("ml_predict(lin").count(), 1, "{physical}");
}

/// The per-row channel means `channel_mean` returned for each row, in
/// query order (`None` for a NULL row).
async fn channel_means(sluice: &Sluice, sql: &str) -> Vec<Option<[f32; 3]>> {
    let mut means = Vec::new();
    for batch in run(sluice, sql).await {
        let column = batch.column(0).as_fixed_size_list();
        for row in 0..column.len() {
            means.push(column.is_valid(row).then(|| {
                let values = column.value(row);
                let values = values.as_primitive::<Float32Type>().values();
                [values[0], values[1], values[2]]
            }));
        }
    }
    means
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_and_tensor_models_take_images_and_tensors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = sluice_sql_tests::test_engine(dir.path())
        .build()
        .await
        .expect("open");
    // mean[n, c] = mean of pixels[n, c, :, :], pixels [N, 3, H, W] with H
    // and W left open by the model: the options say what images become.
    let model = quote(&test_model("channel_mean.onnx").display().to_string());
    run(
        &sluice,
        &format!(
            "CREATE MODEL cm WITH ('path' = {model}, 'image_width' = '32', 'image_height' = '16')"
        ),
    )
    .await;
    let media = sluice_sql_tests::media_fixtures();
    let uri = |name: &str| quote(&format!("file://{}/cats/{name}", media.display()));
    run(&sluice, "CREATE TABLE imgs (name TEXT, img IMAGE)").await;
    run(
        &sluice,
        &format!(
            "INSERT INTO imgs VALUES ('a gradient', read_image(object_ref({}))), \
             ('b red', read_image(object_ref({}))), ('c none', NULL)",
            uri("gradient.png"),
            uri("red.jpg")
        ),
    )
    .await;

    // gradient.png is 32x16 with pixel (x, y) = (8x, 16y, 0): no resize,
    // so the means are exact. red.jpg (64x48, about (250, 10, 10)) is
    // resized first. NULL in, NULL out.
    let from_images = channel_means(
        &sluice,
        "SELECT ML_PREDICT('cm', img)['mean'] FROM imgs ORDER BY name",
    )
    .await;
    let gradient = from_images[0].expect("gradient row");
    let exact = [8.0 * 15.5 / 255.0, 16.0 * 7.5 / 255.0, 0.0];
    for (got, want) in gradient.iter().zip(exact) {
        assert!((got - want).abs() < 1e-5, "{gradient:?} vs {exact:?}");
    }
    let red = from_images[1].expect("red row");
    let want = [250.0 / 255.0, 10.0 / 255.0, 10.0 / 255.0];
    for (got, want) in red.iter().zip(want) {
        assert!((got - want).abs() < 0.03, "{red:?}");
    }
    assert_eq!(from_images[2], None);

    // TENSOR arguments give the same answer: image_to_tensor is the same
    // preprocessing, as a SQL function.
    let from_tensors = channel_means(
        &sluice,
        "SELECT ML_PREDICT('cm', image_to_tensor(img, 32, 16))['mean'] FROM imgs ORDER BY name",
    )
    .await;
    assert_eq!(from_tensors, from_images);
    // The table form, with a normalisation declared on the model.
    run(
        &sluice,
        &format!(
            "CREATE MODEL cm_norm WITH ('path' = {model}, 'image_width' = '8', \
             'image_height' = '8', 'image_mean' = '0.5,0.5,0.5', 'image_std' = '0.5')"
        ),
    )
    .await;
    let table_form = channel_means(
        &sluice,
        "SELECT mean FROM ML_PREDICT(TABLE imgs, MODEL cm_norm, DESCRIPTOR(img)) ORDER BY name",
    )
    .await;
    let red = table_form[1].expect("red row");
    assert!(
        (red[0] - (2.0 * 250.0 / 255.0 - 1.0)).abs() < 0.06,
        "normalised red: {red:?}"
    );
    assert!(
        (red[1] - (2.0 * 10.0 / 255.0 - 1.0)).abs() < 0.06,
        "{red:?}"
    );

    // Tensors of a fixed shape, written as nested arrays.
    let fixed = channel_means(
        &sluice,
        "SELECT ML_PREDICT('cm', ARRAY[[[1, 3]], [[2, 2]], [[0, 10]]]::TENSOR(FLOAT32, [3, 1, 2]))['mean']",
    )
    .await;
    assert_eq!(fixed, vec![Some([2.0, 2.0, 5.0])]);

    // Errors: a tensor of the wrong layout, rows of different shapes in
    // one batch, an argument that is no tensor, and images for a model
    // whose size is unknown.
    let err = failure(
        &sluice,
        "SELECT ML_PREDICT('cm', image_decode(img)) FROM imgs",
    )
    .await;
    assert!(
        err.to_string().contains("takes tensors of shape [3, ?, ?]"),
        "{err}"
    );
    run(&sluice, "CREATE TABLE ts (t TENSOR(FLOAT32))").await;
    run(
        &sluice,
        "INSERT INTO ts VALUES ('[[[1]],[[2]],[[3]]]'), ('[[[1,2]],[[3,4]],[[5,6]]]')",
    )
    .await;
    let err = failure(&sluice, "SELECT ML_PREDICT('cm', t) FROM ts").await;
    assert!(err.to_string().contains("must have one shape"), "{err}");
    let err = failure(&sluice, "SELECT ML_PREDICT('cm', 1.5)").await;
    assert!(
        err.to_string().contains("takes a TENSOR or IMAGE argument"),
        "{err}"
    );
    run(
        &sluice,
        &format!("CREATE MODEL cm_any WITH ('path' = {model})"),
    )
    .await;
    let err = failure(&sluice, "SELECT ML_PREDICT('cm_any', img) FROM imgs").await;
    assert!(err.to_string().contains("'image_width'"), "{err}");
    // The model and the session go on serving.
    assert_eq!(
        channel_means(
            &sluice,
            "SELECT ML_PREDICT('cm_any', '[[[1]],[[2]],[[3]]]'::TENSOR(FLOAT32))['mean']"
        )
        .await,
        vec![Some([1.0, 2.0, 3.0])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_catalog_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let linear = test_model("linear.onnx").display().to_string();
    {
        let sluice = open(dir.path()).await;
        let names = rows(&sluice, "SHOW MODELS").await;
        assert_eq!(
            names[0][0].as_deref(),
            Some("minilm"),
            "bundled model registered"
        );
        run(
            &sluice,
            &format!(
                "CREATE MODEL lin INPUT (a REAL, b REAL) OUTPUT (score DOUBLE, label BIGINT) \
             COMMENT 'linear' WITH ('path' = {}, 'max_batch_size' = '7')",
                quote(&linear)
            ),
        )
        .await;
        run(&sluice, "DROP MODEL minilm").await;
        run(
            &sluice,
            &format!("CREATE MODEL gone WITH ('path' = {})", quote(&linear)),
        )
        .await;
        run(&sluice, "DROP MODEL gone").await;
    }
    let sluice = open(dir.path()).await;
    let names: Vec<Option<String>> = rows(&sluice, "SHOW MODELS")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(
        names,
        vec![Some("lin".to_string())],
        "drops are remembered, minilm included"
    );
    let described = rows(&sluice, "DESCRIBE MODEL lin").await;
    let property = |name: &str| -> Vec<String> {
        described
            .iter()
            .filter(|r| r[0].as_deref() == Some(name))
            .filter_map(|r| r[1].clone())
            .collect()
    };
    assert_eq!(property("input"), vec!["a real", "b real"]);
    assert_eq!(
        property("output"),
        vec!["score double precision", "label bigint"]
    );
    assert_eq!(property("max_batch_size"), vec!["7"]);
    assert_eq!(property("comment"), vec!["linear"]);
    assert_eq!(property("device"), vec!["cpu"]);
    let predicted = rows(&sluice, "SELECT ML_PREDICT('lin', 2, 0)['score']").await;
    assert_eq!(
        predicted,
        vec![vec![Some("2".into())]],
        "declared DOUBLE output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_queries_share_model_batches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    let linear = test_model("linear.onnx").display().to_string();
    // A long wait makes the batching visible regardless of machine speed.
    run(
        &sluice,
        &format!(
            "CREATE MODEL lin WITH ('path' = {}, 'max_batch_wait_ms' = '300')",
            quote(&linear)
        ),
    )
    .await;
    let queries: Vec<_> = (0..8)
        .map(|i| {
            let session = Arc::new(sluice.session());
            tokio::spawn(async move {
                let df = session
                    .sql(&format!("SELECT ML_PREDICT('lin', {i}, 0)['score'] AS s"))
                    .await?;
                df.collect().await
            })
        })
        .collect();
    for (i, query) in queries.into_iter().enumerate() {
        let batches = query.await.expect("task").expect("query");
        let score = batches[0].column(0).as_primitive::<Float32Type>().value(0);
        assert_eq!(
            score,
            0.5 * i as f32 + 1.0,
            "each query gets its own row back"
        );
    }
    let described = rows(&sluice, "DESCRIBE MODEL lin").await;
    let batches: u64 = described
        .iter()
        .find(|r| r[0].as_deref() == Some("batches"))
        .and_then(|r| r[1].as_deref()?.parse().ok())
        .expect("batches");
    assert!(
        batches < 8,
        "8 concurrent single-row queries ran in {batches} model batches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_errors_have_sqlstates_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path()).await.expect("start server");
    let (client, connection) = tokio_postgres::connect(&server.connection_string(), NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let linear = quote(&test_model("linear.onnx").display().to_string());
    let gather = quote(&test_model("gather.onnx").display().to_string());
    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"this is not a model").expect("write");
    let corrupt = quote(&corrupt.display().to_string());
    for sql in [
        format!("CREATE MODEL lin WITH ('path' = {linear})"),
        format!("CREATE MODEL g WITH ('path' = {gather})"),
    ] {
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let cases = [
        (
            "SELECT EMBED('nope', 'x')".to_string(),
            SqlState::UNDEFINED_OBJECT,
        ),
        (
            "DESCRIBE MODEL nope".to_string(),
            SqlState::UNDEFINED_OBJECT,
        ),
        ("DROP MODEL nope".to_string(), SqlState::UNDEFINED_OBJECT),
        (
            format!("CREATE MODEL lin WITH ('path' = {linear})"),
            SqlState::DUPLICATE_OBJECT,
        ),
        (
            "CREATE MODEL m WITH ('path' = '/no/such/model.onnx')".to_string(),
            SqlState::UNDEFINED_FILE,
        ),
        (
            format!("CREATE MODEL m WITH ('path' = {corrupt})"),
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            format!("CREATE MODEL m WITH ('path' = {linear}, 'colour' = 'red')"),
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            format!("CREATE MODEL m INPUT (a REAL) WITH ('path' = {linear})"),
            SqlState::DATATYPE_MISMATCH,
        ),
        (
            format!("CREATE MODEL m OUTPUT (a REAL, b REAL, c REAL) WITH ('path' = {linear})"),
            SqlState::DATATYPE_MISMATCH,
        ),
        (
            "SELECT ML_PREDICT('lin', 1)".to_string(),
            SqlState::UNDEFINED_FUNCTION,
        ),
        (
            "SELECT EMBED('minilm', 42)".to_string(),
            SqlState::DATATYPE_MISMATCH,
        ),
        (
            "SELECT EMBED('lin', 'text')".to_string(),
            SqlState::SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION,
        ),
        (
            "SELECT ML_PREDICT('g', 7)".to_string(),
            SqlState::EXTERNAL_ROUTINE_EXCEPTION,
        ),
        (
            "SELECT * FROM ML_PREDICT(TABLE nope, MODEL lin, DESCRIPTOR(a, b))".to_string(),
            SqlState::UNDEFINED_TABLE,
        ),
        (
            "CREATE MODEL WITH ('path' = 'x')".to_string(),
            SqlState::SYNTAX_ERROR,
        ),
    ];
    for (sql, expected) in &cases {
        let err = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(err.code(), Some(expected), "{sql}: {err:?}");
    }
    // The failing model still serves good input, and so does the server.
    let row = client
        .query_one("SELECT ML_PREDICT('g', 2)['value']", &[])
        .await
        .expect("model still serves");
    assert_eq!(row.get::<_, f32>(0), 30.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_analyze_shows_model_figures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    let linear = quote(&test_model("linear.onnx").display().to_string());
    run(
        &sluice,
        &format!("CREATE MODEL lin WITH ('path' = {linear}, 'max_batch_size' = '2')"),
    )
    .await;
    run(&sluice, "CREATE TABLE t (x1 REAL, x2 REAL)").await;
    run(
        &sluice,
        "INSERT INTO t VALUES (1, 2), (3, 4), (5, 6), (NULL, 1), (7, 8)",
    )
    .await;
    let plan: String = rows(
        &sluice,
        "EXPLAIN ANALYZE SELECT ML_PREDICT('lin', x1, x2)['score'] FROM t",
    )
    .await
    .into_iter()
    .flatten()
    .flatten()
    .collect::<Vec<_>>()
    .join("\n");
    assert!(
        plan.contains("ModelStatsExec: models=[lin on cpu]"),
        "{plan}"
    );
    let metric = |name: &str| -> u64 {
        let start = plan
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("{name} in {plan}"));
        plan[start + name.len() + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("{name} value in {plan}"))
    };
    // Five rows reach the call; the NULL row is not sent to the model, so
    // four rows run in batches of at most two (however the plan's
    // partitions split them).
    assert_eq!(metric("lin_rows"), 5, "{plan}");
    let batches = metric("lin_batches");
    assert!((2..=4).contains(&batches), "{plan}");
    let mean = metric("lin_mean_batch_size");
    assert!((1..=2).contains(&mean), "{plan}");
    assert!(plan.contains("lin_model_time="), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_cuda_is_used_or_refused_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    let linear = quote(&test_model("linear.onnx").display().to_string());
    let created = sluice
        .sql(&format!(
            "CREATE MODEL g WITH ('path' = {linear}, 'device' = 'cuda')"
        ))
        .await;
    match created {
        // A machine with a usable CUDA provider runs it there.
        Ok(_) => {
            let described = rows(&sluice, "DESCRIBE MODEL g").await;
            assert!(described.contains(&vec![Some("device".into()), Some("cuda".into())]));
        }
        // Anywhere else the request fails at CREATE, saying why.
        Err(e) => assert!(e.to_string().contains("CUDA"), "{e}"),
    }
}

/// What the fake endpoint does with its `n`-th request (1-based).
#[derive(Clone, Copy)]
enum Answer {
    Serve,
    Status(u16),
    Stall,
}

/// A local OpenAI-compatible endpoint. `/v1/embeddings`: a text embeds as
/// `[length, count of 'a', 1]`; `/v1/chat/completions`: the answer is
/// `<system prompt>|<prompt in upper case>`. Returns its base URL, the
/// number of requests it has received and the `Authorization` headers they
/// carried.
async fn fake_openai(
    answer: impl Fn(usize) -> Answer + Send + Sync + 'static,
) -> (
    String,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let authorizations = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&authorizations);
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let answer = Arc::clone(&answer);
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then as many body bytes as Content-Length says.
                let (body, chat) = loop {
                    let Ok(read) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..read]);
                    let text = String::from_utf8_lossy(&buffer).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let chat = text
                            .lines()
                            .next()
                            .is_some_and(|l| l.contains("/chat/completions"));
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if let Some(key) = text[..end].lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("authorization")
                                .then(|| v.trim().to_string())
                        }) {
                            seen.lock().expect("lock").push(key);
                        }
                        if buffer.len() >= end + 4 + length {
                            break (buffer[end + 4..end + 4 + length].to_vec(), chat);
                        }
                    }
                };
                let (status, payload) = match answer(n) {
                    Answer::Stall => {
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        return;
                    }
                    Answer::Status(code) => (code, r#"{"error":"try later"}"#.to_string()),
                    Answer::Serve if chat => {
                        let request: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        let messages = request["messages"].as_array().cloned().unwrap_or_default();
                        let said = |role: &str| {
                            messages
                                .iter()
                                .find(|m| m["role"] == role)
                                .and_then(|m| m["content"].as_str())
                                .unwrap_or_default()
                                .to_string()
                        };
                        let content = format!("{}|{}", said("system"), said("user").to_uppercase());
                        let answer = serde_json::json!({
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]
                        });
                        (200, answer.to_string())
                    }
                    Answer::Serve => {
                        let request: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        let data: Vec<serde_json::Value> = request["input"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .iter()
                            .enumerate()
                            .map(|(i, text)| {
                                let text = text.as_str().unwrap_or_default();
                                let a = text.matches('a').count();
                                serde_json::json!({"index": i, "embedding": [text.chars().count(), a, 1]})
                            })
                            .collect();
                        (200, serde_json::json!({ "data": data }).to_string())
                    }
                };
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                    payload.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, requests, authorizations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_models_batch_retry_and_time_out() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    // Request 2 (the first after CREATE's probe) fails once with 503.
    let (url, requests, _) = fake_openai(|n| {
        if n == 2 {
            Answer::Status(503)
        } else {
            Answer::Serve
        }
    })
    .await;
    run(&sluice, &format!(
        "CREATE MODEL remote WITH ('provider' = 'openai', 'endpoint' = '{url}', 'model' = 'test-embed', \
         'normalize' = 'false', 'max_batch_size' = '4', 'max_concurrency' = '2')"
    ))
    .await;
    run(&sluice, "CREATE TABLE docs (id INT, body TEXT)").await;
    run(&sluice, "INSERT INTO docs VALUES (1, 'banana'), (2, 'kiwi'), (3, NULL), (4, 'a'), (5, 'papaya'), (6, ''), (7, 'aaa'), (8, 'pear'), (9, 'fig'), (10, 'date')").await;
    let embedded = rows(
        &sluice,
        "SELECT id, EMBED('remote', body)::text FROM docs ORDER BY id",
    )
    .await;
    assert_eq!(embedded[0], vec![Some("1".into()), Some("[6,3,1]".into())]);
    assert_eq!(
        embedded[2],
        vec![Some("3".into()), None],
        "NULL in, NULL out"
    );
    assert_eq!(embedded[6], vec![Some("7".into()), Some("[3,3,1]".into())]);
    // 9 texts in requests of at most 4 (3 requests, or 4 when the plan's
    // two partitions reach the model separately), +1 retry, +1 probe.
    let sent = requests.load(Ordering::SeqCst);
    assert!((5..=6).contains(&sent), "{sent} requests");
    let described = rows(&sluice, "DESCRIBE MODEL remote").await;
    assert!(described.contains(&vec![Some("device".into()), Some("remote".into())]));

    // An endpoint that keeps failing: the query fails with the endpoint's
    // answer after the retries; the engine goes on serving.
    let (url, _, _) = fake_openai(|n| {
        if n == 1 {
            Answer::Serve
        } else {
            Answer::Status(500)
        }
    })
    .await;
    run(&sluice, &format!(
        "CREATE MODEL broken WITH ('provider' = 'openai', 'endpoint' = '{url}', 'max_retries' = '2')"
    ))
    .await;
    let err = failure(&sluice, "SELECT EMBED('broken', 'x')").await;
    let message = err.to_string();
    assert!(
        message.contains("answered 500") && message.contains("after 3 attempt(s)"),
        "{message}"
    );

    // A stalled endpoint runs into the timeout.
    let (url, _, _) = fake_openai(|n| if n == 1 { Answer::Serve } else { Answer::Stall }).await;
    run(&sluice, &format!(
        "CREATE MODEL slow WITH ('provider' = 'openai', 'endpoint' = '{url}', 'timeout_ms' = '300', 'max_retries' = '0')"
    ))
    .await;
    let err = failure(&sluice, "SELECT EMBED('slow', 'x')").await;
    assert!(err.to_string().to_lowercase().contains("time"), "{err}");

    // An endpoint nobody listens on is refused at CREATE.
    let err = sluice
        .sql("CREATE MODEL nowhere WITH ('provider' = 'openai', 'endpoint' = 'http://127.0.0.1:9/v1', 'max_retries' = '0')")
        .await
        .expect_err("unreachable");
    assert!(err.to_string().contains("not usable"), "{err}");
    assert_eq!(
        rows(&sluice, "SELECT 1").await,
        vec![vec![Some("1".into())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_chat_models_answer_each_row() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    // Request 3 fails once with 429: retried.
    let (url, requests, _) = fake_openai(|n| {
        if n == 3 {
            Answer::Status(429)
        } else {
            Answer::Serve
        }
    })
    .await;
    run(&sluice, &format!(
        "CREATE MODEL llm WITH ('provider' = 'openai', 'task' = 'chat', 'endpoint' = '{url}', \
         'model' = 'test-chat', 'system_prompt' = 'be brief', 'temperature' = '0', 'max_concurrency' = '3')"
    ))
    .await;
    assert_eq!(
        requests.load(Ordering::SeqCst),
        0,
        "no paid probe at CREATE"
    );
    run(&sluice, "CREATE TABLE docs (id INT, body TEXT)").await;
    run(
        &sluice,
        "INSERT INTO docs VALUES (1, 'banana'), (2, 'kiwi'), (3, NULL), (4, 'fig')",
    )
    .await;
    let answered = rows(
        &sluice,
        "SELECT id, ML_PREDICT('llm', body)['response'] FROM docs ORDER BY id",
    )
    .await;
    let row =
        |id: &str, answer: Option<&str>| vec![Some(id.to_string()), answer.map(str::to_string)];
    assert_eq!(
        answered,
        vec![
            row("1", Some("be brief|BANANA")),
            row("2", Some("be brief|KIWI")),
            row("3", None),
            row("4", Some("be brief|FIG")),
        ]
    );
    // One request per answered row, plus the retry.
    assert_eq!(requests.load(Ordering::SeqCst), 4);
    // Flink's table form: the table's columns plus `response`.
    let table_form = rows(
        &sluice,
        "SELECT id, body, response FROM ML_PREDICT(TABLE docs, MODEL llm, DESCRIPTOR(body)) WHERE id = 2",
    )
    .await;
    assert_eq!(
        table_form,
        vec![vec![
            Some("2".into()),
            Some("kiwi".into()),
            Some("be brief|KIWI".into())
        ]]
    );
    let described = rows(&sluice, "DESCRIBE MODEL llm").await;
    assert!(described.contains(&vec![Some("task".into()), Some("chat".into())]));
    assert!(
        described.contains(&vec![Some("output".into()), Some("response text".into())]),
        "{described:?}"
    );

    // Misuse is refused at planning, and chat needs an endpoint.
    let err = failure(&sluice, "SELECT EMBED('llm', 'x')").await;
    assert!(err.to_string().contains("is a chat model"), "{err}");
    let err = failure(&sluice, "SELECT ML_PREDICT('llm', 1, 2)").await;
    assert!(err.to_string().contains("takes one text argument"), "{err}");
    let linear = quote(&test_model("linear.onnx").display().to_string());
    let err = failure(
        &sluice,
        &format!("CREATE MODEL local_chat WITH ('path' = {linear}, 'task' = 'chat')"),
    )
    .await;
    assert!(err.to_string().contains("'provider' = 'openai'"), "{err}");
    let err = failure(
        &sluice,
        &format!("CREATE MODEL hot WITH ('provider' = 'openai', 'task' = 'chat', 'endpoint' = '{url}', 'temperature' = 'warm')"),
    )
    .await;
    assert!(err.to_string().contains("'temperature'"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_search_with_embed_in_order_by_and_where() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    run(&sluice, "CREATE TABLE docs (id INT, body TEXT)").await;
    run(
        &sluice,
        "INSERT INTO docs VALUES (1, 'The cat sat on the mat'), (2, 'Stock markets fell sharply today'), \
         (3, 'A kitten is sleeping on the rug'), (4, 'Bond yields rose')",
    )
    .await;
    run(
        &sluice,
        "CREATE TABLE docv AS SELECT id, EMBED('minilm', body) AS v FROM docs",
    )
    .await;
    let ids = |rows: Vec<Vec<Option<String>>>| -> Vec<String> {
        rows.into_iter().filter_map(|r| r[0].clone()).collect()
    };
    // A constant query vector (computed once) in ORDER BY and WHERE.
    let nearest = rows(
        &sluice,
        "SELECT id FROM docv ORDER BY v <=> EMBED('minilm', 'a small cat') LIMIT 2",
    )
    .await;
    let mut nearest = ids(nearest);
    nearest.sort();
    assert_eq!(nearest, vec!["1", "3"]);
    let close = rows(
        &sluice,
        "SELECT id FROM docv WHERE v <=> EMBED('minilm', 'finance and markets') < 0.7 ORDER BY id",
    )
    .await;
    assert!(ids(close).contains(&"2".to_string()));
    // A model call over a column in ORDER BY runs in a projection below the sort.
    let by_column = rows(
        &sluice,
        "SELECT id FROM docs ORDER BY EMBED('minilm', body) <=> EMBED('minilm', 'stock market news') LIMIT 1",
    )
    .await;
    assert_eq!(ids(by_column), vec!["2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_model_keys_come_only_from_allowed_variables() {
    // Variables of this test process are the server's environment.
    // SAFETY: set once, before any thread of this test reads it; no other
    // test reads these names.
    unsafe {
        std::env::set_var("SLUICE_MODEL_KEY_TEST", "allowed-secret");
        std::env::set_var("SLUICE_TEST_NOT_A_KEY", "server-secret");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let sluice = open(dir.path()).await;
    let (url, requests, authorizations) = fake_openai(|_| Answer::Serve).await;
    for variable in ["SLUICE_TEST_NOT_A_KEY", "HOME", "AWS_SECRET_ACCESS_KEY"] {
        let err = sluice
            .sql(&format!(
                "CREATE MODEL leak WITH ('provider' = 'openai', 'endpoint' = '{url}', \
                 'model' = 'x', 'api_key_env' = '{variable}')"
            ))
            .await
            .expect_err(variable);
        let wire = sluice_server::sqlstate::error_info(&err);
        assert_eq!(wire.code, "42501", "{variable}: {err}");
        assert!(wire.message.contains("may not name"), "{}", wire.message);
        assert!(!wire.message.contains("server-secret"), "{}", wire.message);
    }
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a refused model sends nothing"
    );
    assert!(
        failure(&sluice, "SELECT EMBED('leak', 'x')")
            .await
            .to_string()
            .contains("does not exist")
    );

    // An allowed variable's key reaches the endpoint.
    run(
        &sluice,
        &format!(
            "CREATE MODEL keyed WITH ('provider' = 'openai', 'endpoint' = '{url}', \
         'model' = 'x', 'api_key_env' = 'SLUICE_MODEL_KEY_TEST', 'normalize' = 'false')"
        ),
    )
    .await;
    assert_eq!(
        rows(&sluice, "SELECT EMBED('keyed', 'abc')::text").await,
        vec![vec![Some("[3,1,1]".into())]]
    );
    let seen = authorizations.lock().expect("lock").clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|h| h == "Bearer allowed-secret"),
        "{seen:?}"
    );

    // An operator's own allow-list replaces the default.
    let dir = tempfile::tempdir().expect("temp dir");
    let strict = Sluice::builder()
        .data_dir(dir.path())
        .model_key_variable("SLUICE_TEST_NOT_A_KEY")
        .build()
        .await
        .expect("engine");
    let err = strict
        .sql(&format!(
            "CREATE MODEL k WITH ('provider' = 'openai', 'endpoint' = '{url}', 'api_key_env' = 'SLUICE_MODEL_KEY_TEST')"
        ))
        .await
        .expect_err("not on this server's list");
    assert!(err.to_string().contains("may not name"), "{err}");
    strict
        .sql(&format!(
            "CREATE MODEL k WITH ('provider' = 'openai', 'endpoint' = '{url}', 'api_key_env' = 'SLUICE_TEST_NOT_A_KEY')"
        ))
        .await
        .expect("allowed by the operator");
}
