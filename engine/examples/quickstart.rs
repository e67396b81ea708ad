//! Embeds Sluice in a Rust program: create a table, insert, query.
//!
//! Run with `cargo run -p sluice-engine --example quickstart`.

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::error::Result;
use sluice_engine::Sluice;

#[tokio::main]
async fn main() -> Result<()> {
    // A fresh data directory per run: tables are durable, so a second run
    // on the same directory would find `docs` already there.
    let data_dir = std::env::temp_dir().join(format!("sluice-quickstart-{}", std::process::id()));
    let sluice = Sluice::builder().data_dir(&data_dir).build().await?;

    sluice
        .sql("CREATE TABLE docs (id BIGINT, body TEXT)")
        .await?;
    sluice
        .sql("INSERT INTO docs VALUES (1, 'rivers'), (2, 'sluices'), (3, 'locks')")
        .await?;
    let batches = sluice
        .sql("SELECT id, upper(body) AS body FROM docs WHERE id > 1 ORDER BY id")
        .await?
        .collect()
        .await?;
    println!("{}", pretty_format_batches(&batches)?);
    drop(sluice);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}
