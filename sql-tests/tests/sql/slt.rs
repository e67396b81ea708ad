//! Every `.slt` file, run in-process and over the wire.

use std::path::Path;

use sluice_sql_tests::{InProcessDb, TestServer, WireDb, media_fixtures, slt_files, test_engine};
use sqllogictest::Runner;

async fn run_in_process(file: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let engine = test_engine(dir.path())
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let mut runner = Runner::new(move || {
        let engine = engine.clone();
        async move { Ok(InProcessDb::new(&engine)) }
    });
    runner.add_label("in-process");
    set_media_variable(&mut runner);
    runner
        .run_file_async(file)
        .await
        .map_err(|e| e.display(true).to_string())
}

async fn run_over_wire(file: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let server = TestServer::start(dir.path())
        .await
        .map_err(|e| e.to_string())?;
    let conn = server.connection_string();
    let mut runner = Runner::new(move || {
        let conn = conn.clone();
        async move { WireDb::connect(&conn).await }
    });
    runner.add_label("wire");
    set_media_variable(&mut runner);
    let result = runner
        .run_file_async(file)
        .await
        .map_err(|e| e.display(true).to_string());
    drop(runner);
    server.stop().await.map_err(|e| e.to_string())?;
    result
}

/// `${MEDIA}` in `.slt` files (with `control substitution on`): the media
/// fixtures folder, which every test engine has as its object root.
fn set_media_variable<D: sqllogictest::AsyncDB, M: sqllogictest::MakeConnection<Conn = D>>(
    runner: &mut Runner<D, M>,
) {
    runner.set_var(
        "MEDIA".into(),
        media_fixtures().to_string_lossy().into_owned(),
    );
}

fn report(mode: &str, failures: Vec<String>, total: usize) {
    assert!(total > 0, "no .slt files found");
    assert!(
        failures.is_empty(),
        "{} of {total} .slt files failed {mode}:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Runs every .slt file one way and fails with every file's failure.
async fn run_all<F, Fut>(mode: &str, run: F)
where
    F: Fn(std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let files = slt_files();
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = run(file.clone()).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    report(mode, failures, files.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_in_process() {
    run_all(
        "in-process",
        |file| async move { run_in_process(&file).await },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_over_wire() {
    run_all(
        "over the wire",
        |file| async move { run_over_wire(&file).await },
    )
    .await;
}
