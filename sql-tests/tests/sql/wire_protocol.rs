//! Protocol behaviour over a real client library (tokio-postgres): the
//! extended protocol with typed parameters and portals, errors that leave
//! the connection usable, cancellation, clients that vanish mid-result, and
//! many connections in a row.

use std::time::Duration;

use futures::{StreamExt, pin_mut};
use sluice_sql_tests::TestServer;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

async fn connect(server: &TestServer) -> (Client, tokio::task::JoinHandle<()>) {
    let (client, connection) = tokio_postgres::connect(&server.connection_string(), NoTls)
        .await
        .expect("connect to the test server");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, task)
}

/// The first data row of a simple-protocol answer.
fn first_row(messages: &[SimpleQueryMessage]) -> &tokio_postgres::SimpleQueryRow {
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("one row")
}

async fn start() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path()).await.expect("start server");
    (server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_with_typed_parameters() {
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    client
        .batch_execute(
            "CREATE TABLE people (id BIGINT, name TEXT, score DOUBLE PRECISION, ok BOOLEAN, small SMALLINT, mid INT, r REAL);
             INSERT INTO people VALUES (1, 'ann', 1.5, true, 1, 10, 0.5), (2, 'bob', NULL, false, 2, 20, 1.5), (3, 'cy', 3.25, NULL, 3, 30, 2.5)",
        )
        .await
        .expect("setup");

    let statement = client
        .prepare("SELECT name, score, ok, small, mid, r FROM people WHERE id = $1")
        .await
        .expect("prepare");
    assert_eq!(statement.params(), &[tokio_postgres::types::Type::INT8]);
    let rows = client.query(&statement, &[&2i64]).await.expect("execute");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "bob");
    assert_eq!(rows[0].get::<_, Option<f64>>(1), None);
    assert!(!rows[0].get::<_, bool>(2));
    assert_eq!(rows[0].get::<_, i16>(3), 2);
    assert_eq!(rows[0].get::<_, i32>(4), 20);
    assert_eq!(rows[0].get::<_, f32>(5), 1.5);

    // The same prepared statement, re-executed with other values.
    let rows = client
        .query(&statement, &[&3i64])
        .await
        .expect("re-execute");
    assert_eq!(rows[0].get::<_, String>(0), "cy");
    assert_eq!(rows[0].get::<_, Option<bool>>(2), None);

    // Several parameters of different types in one statement.
    let rows = client
        .query(
            "SELECT id FROM people WHERE name = $1 OR score > $2 ORDER BY id",
            &[&"ann", &3.0f64],
        )
        .await
        .expect("two parameters");
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1, 3]);

    // DML through the extended protocol reports its row count.
    let inserted = client
        .execute(
            "INSERT INTO people (id, name) VALUES ($1, $2)",
            &[&4i64, &"di"],
        )
        .await
        .expect("insert");
    assert_eq!(inserted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_fetch_in_chunks() {
    let (server, _dir) = start().await;
    let (mut client, _task) = connect(&server).await;
    let tx = client.transaction().await.expect("begin");
    let portal = tx
        .bind("SELECT g FROM generate_series(1, 25) AS g ORDER BY g", &[])
        .await
        .expect("bind");
    let mut seen = Vec::new();
    loop {
        let chunk = tx.query_portal(&portal, 10).await.expect("fetch");
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() <= 10, "a fetch returned {} rows", chunk.len());
        seen.extend(chunk.iter().map(|r| r.get::<_, i64>(0)));
    }
    assert_eq!(seen, (1..=25).collect::<Vec<i64>>());
    tx.commit().await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate_and_keep_the_connection() {
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    let cases = [
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("SELECT * FROM missing", SqlState::UNDEFINED_TABLE),
        ("SELECT 1/0", SqlState::DIVISION_BY_ZERO),
    ];
    for (sql, expected) in cases {
        let err = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(err.code(), Some(&expected), "{sql}: {err:?}");
        // Same through the extended protocol.
        let err = client.query(sql, &[]).await.expect_err(sql);
        assert_eq!(err.code(), Some(&expected), "{sql} (extended): {err:?}");
    }
    let err = client
        .query("SELECT nope FROM (SELECT 1 AS a)", &[])
        .await
        .expect_err("unknown column");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_COLUMN), "{err:?}");
    let row = client
        .query_one("SELECT 41 + 1", &[])
        .await
        .expect("still serving");
    assert_eq!(row.get::<_, i64>(0), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_statements_and_empty_queries() {
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    let messages = client
        .simple_query("SELECT 1 AS a; SELECT 2 AS b, 3 AS c")
        .await
        .expect("two statements");
    let rows: Vec<Vec<String>> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(
        rows,
        vec![vec!["1".to_string()], vec!["2".into(), "3".into()]]
    );
    let messages = client.simple_query("").await.expect("empty query");
    assert!(
        !messages
            .iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(_))),
        "an empty query returns no rows"
    );
    // The first error stops a multi-statement query.
    let err = client
        .simple_query("CREATE TABLE m (a INT); SELECT * FROM missing; CREATE TABLE m2 (a INT)")
        .await
        .expect_err("second statement fails");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE));
    client
        .simple_query("SELECT * FROM m")
        .await
        .expect("first ran");
    let err = client
        .simple_query("SELECT * FROM m2")
        .await
        .expect_err("third skipped");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE));
    // Each statement finishes before the next starts: the SELECT cannot see
    // the INSERT written after it.
    let messages = client
        .simple_query(
            "CREATE TABLE seq (a INT); SELECT count(*) FROM seq; \
             INSERT INTO seq VALUES (1); SELECT count(*) FROM seq",
        )
        .await
        .expect("ordered statements");
    let counts: Vec<String> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(counts, ["0", "1"]);
}

/// A query that runs for minutes unless stopped.
const LONG_QUERY: &str = "SELECT count(*) FROM generate_series(1, 2000000000) a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_running_query() {
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    let cancel = client.cancel_token();
    let query = tokio::spawn(async move {
        let result = client.simple_query(LONG_QUERY).await;
        (client, result)
    });
    // A cancel sent before the query starts cancels nothing (as in Postgres),
    // so keep asking until the query ends; bounded so a broken cancel fails.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !query.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "query was not cancelled"
        );
        cancel.cancel_query(NoTls).await.expect("send cancel");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (client, result) = query.await.expect("query task");
    let err = result.expect_err("cancelled query must fail");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err:?}");
    let row = client
        .query_one("SELECT 1", &[])
        .await
        .expect("connection survives");
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_cancels() {
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    client
        .simple_query("SET statement_timeout = 300")
        .await
        .expect("set timeout");
    // A generator of 10^12 events is read as the query pulls it (it was
    // once generated whole while planning, which no timeout could stop).
    client
        .simple_query(
            "CREATE TABLE endless_bids (auction BIGINT, bidder BIGINT, price BIGINT, \
             channel TEXT, url TEXT, date_time TIMESTAMP, extra TEXT) \
             WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events' = '1000000000000')",
        )
        .await
        .expect("create generator table");
    for query in [
        LONG_QUERY,
        "SELECT count(*), count(DISTINCT auction) FROM endless_bids",
    ] {
        let err = tokio::time::timeout(Duration::from_secs(60), client.simple_query(query))
            .await
            .expect("timeout must fire well before 60 s")
            .expect_err("query must time out");
        assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{query}");
        let message = err.as_db_error().map(|e| e.message().to_string());
        assert_eq!(
            message.as_deref(),
            Some("canceling statement due to statement timeout")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_stream_and_clients_may_leave_mid_result() {
    let (server, _dir) = start().await;
    {
        // Stream 2M rows through the extended protocol and count them.
        let (client, _task) = connect(&server).await;
        let rows = client
            .query_raw(
                "SELECT g FROM generate_series(1, 2000000) AS g",
                Vec::<i64>::new(),
            )
            .await
            .expect("start stream");
        pin_mut!(rows);
        let mut count = 0u64;
        let mut sum = 0i64;
        while let Some(row) = rows.next().await {
            sum += row.expect("row").get::<_, i64>(0);
            count += 1;
        }
        assert_eq!(count, 2_000_000);
        assert_eq!(sum, 2_000_000 * 2_000_001 / 2);
    }
    {
        // Read a few rows of a huge result, then vanish.
        let (client, task) = connect(&server).await;
        let rows = client
            .query_raw(
                "SELECT g FROM generate_series(1, 1000000000) AS g",
                Vec::<i64>::new(),
            )
            .await
            .expect("start stream");
        pin_mut!(rows);
        // The first rows arrive while the rest are still being produced: a
        // server that buffered the result would never answer (and run out
        // of memory), so a bound turns that into a failure.
        tokio::time::timeout(Duration::from_secs(120), async {
            for _ in 0..1000 {
                rows.next().await.expect("a row").expect("row ok");
            }
        })
        .await
        .expect("first rows of a huge result arrive without materialising it");
        task.abort();
        drop(client);
    }
    let (client, _task) = connect(&server).await;
    let row = client
        .query_one("SELECT 7", &[])
        .await
        .expect("server still serves");
    assert_eq!(row.get::<_, i64>(0), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sequential_connections() {
    let (server, _dir) = start().await;
    for i in 0..1000i64 {
        let (client, task) = connect(&server).await;
        let row = client
            .query_one("SELECT $1::BIGINT + 1", &[&i])
            .await
            .expect("query on a fresh connection");
        assert_eq!(row.get::<_, i64>(0), i + 1);
        drop(client);
        task.await.expect("connection closes cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_socket_does_not_kill_the_server() {
    use tokio::io::AsyncWriteExt;
    let (server, _dir) = start().await;
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 64][..],
        &[0, 0, 0, 8, 0, 3, 0][..],
    ] {
        let mut socket = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("tcp");
        let _ = socket.write_all(garbage).await;
        drop(socket);
    }
    let (client, _task) = connect(&server).await;
    let row = client
        .query_one("SELECT 1", &[])
        .await
        .expect("still serving");
    assert_eq!(row.get::<_, i64>(0), 1);
}

/// One frontend message: its tag, its length, its body.
fn frontend_message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![tag];
    message.extend(((body.len() + 4) as i32).to_be_bytes());
    message.extend(body);
    message
}

/// Reads backend messages up to and including ReadyForQuery; returns the
/// SQLSTATEs of the ErrorResponses among them.
async fn errors_until_ready(socket: &mut tokio::net::TcpStream) -> Vec<String> {
    use tokio::io::AsyncReadExt;
    let mut codes = Vec::new();
    loop {
        let tag = socket.read_u8().await.expect("a message tag");
        let length = socket.read_i32().await.expect("a message length");
        let mut body = vec![0; usize::try_from(length - 4).expect("a length")];
        socket.read_exact(&mut body).await.expect("a message body");
        if tag == b'E' {
            // Fields: a type byte and a C string each, then a zero byte.
            let mut fields = body.split(|b| *b == 0);
            for field in fields.by_ref() {
                if let Some((b'C', code)) = field.split_first() {
                    codes.push(String::from_utf8_lossy(code).into_owned());
                }
            }
        }
        if tag == b'Z' {
            return codes;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_with_the_wrong_number_of_result_formats_is_refused() {
    use tokio::io::AsyncWriteExt;
    let (server, _dir) = start().await;
    let mut socket = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    let mut startup = 196_608i32.to_be_bytes().to_vec();
    startup.extend(b"user\0sluice\0\0");
    let mut framed = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
    framed.extend(startup);
    socket.write_all(&framed).await.expect("startup");
    assert!(errors_until_ready(&mut socket).await.is_empty());
    // Three columns, two result format codes: pgwire indexed past the
    // codes and panicked (fuzzing, seed 10); Postgres answers 08P01.
    let mut messages = frontend_message(b'P', b"\0SELECT 1, 2, 3\0\0\0");
    messages.extend(frontend_message(
        b'B',
        &[0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1],
    ));
    messages.extend(frontend_message(b'E', &[0, 0, 0, 0, 0]));
    messages.extend(frontend_message(b'S', &[]));
    socket.write_all(&messages).await.expect("extended query");
    assert_eq!(errors_until_ready(&mut socket).await, ["08P01"]);
    // The connection goes on: the same query with one code for all.
    let mut messages = frontend_message(b'B', &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
    messages.extend(frontend_message(b'E', &[0, 0, 0, 0, 0]));
    messages.extend(frontend_message(b'S', &[]));
    socket.write_all(&messages).await.expect("extended query");
    assert!(errors_until_ready(&mut socket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uuid_and_json_in_binary_and_text() {
    use tokio_postgres::types::Type;
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    client
        .batch_execute("CREATE TABLE docs (id UUID, body JSON)")
        .await
        .expect("create");
    let id = uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").expect("uuid");

    // The driver sends the UUID parameter in binary (16 bytes).
    let insert = client
        .prepare("INSERT INTO docs VALUES ($1, $2)")
        .await
        .expect("prepare insert");
    // As in Postgres, the parameters take the columns' types.
    assert_eq!(insert.params(), &[Type::UUID, Type::JSON]);
    client
        .execute(&insert, &[&id, &serde_json::json!({"n": 1})])
        .await
        .expect("insert with a binary uuid and json");

    // Results come back typed: uuid and json, decoded from binary.
    let select = client
        .prepare("SELECT id, body FROM docs WHERE id = $1")
        .await
        .expect("prepare select");
    assert_eq!(select.columns()[0].type_(), &Type::UUID);
    assert_eq!(select.columns()[1].type_(), &Type::JSON);
    let row = client.query_one(&select, &[&id]).await.expect("select");
    assert_eq!(row.get::<_, uuid::Uuid>(0), id);
    assert_eq!(
        row.get::<_, serde_json::Value>(1),
        serde_json::json!({"n": 1})
    );

    // In text format (simple protocol) they read as Postgres prints them.
    let messages = client
        .simple_query("SELECT id, body FROM docs")
        .await
        .expect("simple select");
    let row = first_row(&messages);
    assert_eq!(row.get(0), Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
    // json keeps the text as sent (serde_json sends it compact).
    assert_eq!(row.get(1), Some(r#"{"n":1}"#));

    // Invalid JSON sent as text is refused like invalid JSON literals.
    let as_text = client
        .prepare_typed(
            "INSERT INTO docs VALUES ($1, $2)",
            &[Type::UUID, Type::TEXT],
        )
        .await
        .expect("prepare with a text parameter");
    let err = client
        .execute(&as_text, &[&id, &"{nope"])
        .await
        .expect_err("invalid json");
    assert_eq!(err.code(), Some(&SqlState::INVALID_TEXT_REPRESENTATION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_resolve_the_vector_type_through_pg_type() {
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    client
        .batch_execute("CREATE TABLE embeddings (id BIGINT, v VECTOR(3)); INSERT INTO embeddings VALUES (1, '[1,2,3]')")
        .await
        .expect("setup");
    // tokio-postgres looks an unknown result type up in pg_type by OID,
    // binding the OID as `oid` (u32): that lookup must succeed.
    let statement = client
        .prepare("SELECT v FROM embeddings")
        .await
        .expect("describe a vector column");
    let column_type = statement.columns()[0].type_();
    assert_eq!(column_type.name(), "vector");
    assert_eq!(column_type.oid(), 16385);
    // A parameter compared with a vector is announced as a vector.
    let nearest = client
        .prepare("SELECT id FROM embeddings ORDER BY v <-> $1 LIMIT 1")
        .await
        .expect("prepare a nearest-neighbour query");
    assert_eq!(nearest.params()[0].name(), "vector");
    let messages = client
        .simple_query("SELECT v, v <-> '[1,2,4]' FROM embeddings")
        .await
        .expect("text form");
    let row = first_row(&messages);
    assert_eq!(row.get(0), Some("[1,2,3]"));
    assert_eq!(row.get(1), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_types_survive_a_parquet_round_trip() {
    use tokio_postgres::types::Type;
    let (server, dir) = start().await;
    let (client, _task) = connect(&server).await;
    let file = dir.path().join("typed.parquet");
    let file = file.to_str().expect("utf-8 path");
    client
        .batch_execute(&format!(
            "CREATE TABLE typed (id UUID, doc JSON, v VECTOR(3));
             INSERT INTO typed VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"a\": 1}}', '[1,2,3]');
             COPY typed TO '{file}' STORED AS PARQUET;
             CREATE EXTERNAL TABLE typed_back STORED AS PARQUET LOCATION '{file}';"
        ))
        .await
        .expect("write and register the Parquet file");
    // The extension metadata came back with the data: same types, same text.
    let statement = client
        .prepare("SELECT id, doc, v, v <-> '[1,2,4]' FROM typed_back")
        .await
        .expect("describe");
    let types: Vec<&Type> = statement.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(types[0], &Type::UUID);
    assert_eq!(types[1], &Type::JSON);
    assert_eq!(types[2].name(), "vector");
    let messages = client
        .simple_query("SELECT id, doc, v, v <-> '[1,2,4]' FROM typed_back")
        .await
        .expect("read back");
    let row = first_row(&messages);
    assert_eq!(row.get(0), Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
    assert_eq!(row.get(1), Some(r#"{"a": 1}"#));
    assert_eq!(row.get(2), Some("[1,2,3]"));
    assert_eq!(row.get(3), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multimodal_types_survive_a_parquet_round_trip() {
    let (server, dir) = start().await;
    let (client, _task) = connect(&server).await;
    let file = dir.path().join("media.parquet");
    let file = file.to_str().expect("utf-8 path");
    let media = sluice_sql_tests::media_fixtures();
    let media = media.to_str().expect("utf-8 path");
    client
        .batch_execute(&format!(
            "CREATE TABLE media_rt (t TENSOR(FLOAT, [2,2]), vt TENSOR(UINT8), img IMAGE, clip AUDIO, r OBJECT_REF);
             INSERT INTO media_rt SELECT '[[1,2],[3,4]]'::tensor(float,[2,2]), image_decode(read_image('file://{media}/cats/gradient.png')),
                 read_image('file://{media}/cats/gradient.png'), read_audio('file://{media}/sounds/tone.wav'),
                 object_ref('file://{media}/cats/red.jpg');
             COPY media_rt TO '{file}' STORED AS PARQUET;
             CREATE EXTERNAL TABLE media_back STORED AS PARQUET LOCATION '{file}';"
        ))
        .await
        .expect("write and register the Parquet file");
    // Each function below accepts only its own type: the field metadata
    // came back from the file.
    let messages = client
        .simple_query(
            "SELECT t, tensor_shape(t), tensor_shape(vt), tensor_get(vt, 0, 1, 0),
                    image_width(img), image_format(img), audio_sample_rate(clip),
                    r::text LIKE '{\"uri\":\"file://%red.jpg\",\"size\":%'
             FROM (SELECT * FROM media_back UNION ALL SELECT * FROM media_rt) u LIMIT 1",
        )
        .await
        .expect("read back");
    let row = first_row(&messages);
    assert_eq!(row.get(0), Some("[[1,2],[3,4]]"));
    assert_eq!(row.get(1), Some("{2,2}"));
    assert_eq!(row.get(2), Some("{16,32,3}"));
    assert_eq!(row.get(3), Some("8"), "gradient.png: r = 8x at x = 1");
    assert_eq!(row.get(4), Some("32"));
    assert_eq!(row.get(5), Some("png"));
    assert_eq!(row.get(6), Some("16000"));
    assert_eq!(row.get(7), Some("t"));
}

/// Sends `data` through `COPY … FROM STDIN` in small chunks (cut inside
/// records and quoted fields) and returns the server's row count.
async fn copy_in(
    client: &Client,
    statement: &str,
    data: &[u8],
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in(statement).await?;
    pin_mut!(sink);
    for chunk in data.chunks(7) {
        futures::SinkExt::send(&mut sink, bytes::Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

/// Parquet files in the data folder of table `t` of the public schema.
fn data_files(dir: &std::path::Path, table: &str) -> usize {
    std::fs::read_dir(dir.join("tables/public").join(table).join("data"))
        .map(|files| files.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_copies_stream_and_failed_or_abandoned_ones_leave_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path()).await.expect("start server");
    let (client, _task) = connect(&server).await;
    client
        .batch_execute("CREATE TABLE big (id BIGINT NOT NULL, name TEXT)")
        .await
        .expect("create");
    // Several of the parser's batches (64k rows each), so rows reach the
    // table's files while the client is still sending.
    let rows: u64 = 150_000;
    let mut data = Vec::new();
    for i in 0..rows {
        data.extend_from_slice(format!("{i}\tname {i}\n").as_bytes());
    }
    let sink = client
        .copy_in("COPY big FROM STDIN")
        .await
        .expect("start copy");
    pin_mut!(sink);
    for chunk in data.chunks(64 * 1024) {
        futures::SinkExt::send(&mut sink, bytes::Bytes::copy_from_slice(chunk))
            .await
            .expect("send");
    }
    assert_eq!(sink.finish().await.expect("copy"), rows);
    let files = data_files(dir.path(), "big");

    // A bad row at the very end fails the COPY after earlier rows were
    // already written to files: none of them is committed or kept.
    let mut bad = data.clone();
    bad.extend_from_slice(b"not a number\tx\n");
    let err = copy_in(&client, "COPY big FROM STDIN", &bad)
        .await
        .expect_err("bad last row");
    assert_eq!(err.code(), Some(&SqlState::INVALID_TEXT_REPRESENTATION));

    // A client that gives up mid-COPY (CopyFail) commits nothing either.
    {
        let sink = client
            .copy_in("COPY big FROM STDIN")
            .await
            .expect("start copy");
        pin_mut!(sink);
        for chunk in data.chunks(64 * 1024).take(3) {
            futures::SinkExt::send(&mut sink, bytes::Bytes::copy_from_slice(chunk))
                .await
                .expect("send");
        }
        // Dropped unfinished: tokio-postgres sends CopyFail.
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .expect("count after failed copies")
        .get(0);
    assert_eq!(count, rows as i64);
    // The failed COPYs' files are deleted once the write fails (polled: the
    // abandoned INSERT finishes beside the connection).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while data_files(dir.path(), "big") != files && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(data_files(dir.path(), "big"), files, "no leftover files");
    let sum: i64 = client
        .query_one("SELECT sum(id) FROM big", &[])
        .await
        .expect("sum")
        .get(0);
    assert_eq!(sum, (rows * (rows - 1) / 2) as i64);
    drop(client);
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_loads_text_and_csv_durably() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path()).await.expect("start server");
    let (client, _task) = connect(&server).await;
    client
        .batch_execute(
            "CREATE TABLE items (id BIGINT NOT NULL, name TEXT, v VECTOR(2), ok BOOLEAN, n INT DEFAULT 7)",
        )
        .await
        .expect("create");

    let text = b"1\tplain\t[1,2]\tt\n2\t\\N\t[3,4]\tf\n3\ttab\\there\\\\\t\\N\t\\N\n";
    let rows = copy_in(&client, "COPY items (id, name, v, ok) FROM STDIN", text)
        .await
        .expect("text copy");
    assert_eq!(rows, 3);
    let csv = b"id,name,v,ok\n4,\"a,b\",\"[5,6]\",true\n5,,,\n6,\"\",\"[7,8]\",false\n7,\"two\nlines\",,\n";
    let rows = copy_in(
        &client,
        "COPY items (id, name, v, ok) FROM STDIN WITH (FORMAT csv, HEADER)",
        csv,
    )
    .await
    .expect("csv copy");
    assert_eq!(rows, 4);

    // Bad data fails the whole COPY with Postgres' codes, writes nothing,
    // and leaves the connection usable.
    let cases: [(&str, &[u8], SqlState); 4] = [
        (
            "COPY items (id, name) FROM STDIN",
            b"100\tx\n101\n",
            SqlState::BAD_COPY_FILE_FORMAT,
        ),
        (
            "COPY items (id) FROM STDIN",
            b"100\n1x\n",
            SqlState::INVALID_TEXT_REPRESENTATION,
        ),
        (
            "COPY items (id, v) FROM STDIN",
            b"100\t[1,2,3]\n",
            SqlState::DATA_EXCEPTION,
        ),
        (
            "COPY items (id) FROM STDIN",
            b"\\N\n",
            SqlState::NOT_NULL_VIOLATION,
        ),
    ];
    for (statement, data, code) in cases {
        let err = copy_in(&client, statement, data)
            .await
            .expect_err(statement);
        assert_eq!(err.code(), Some(&code), "{statement}: {err:?}");
    }
    // An unknown table or column is refused before any data is asked for
    // (simple protocol, as psql sends it).
    let err = client
        .batch_execute("COPY nope FROM STDIN")
        .await
        .expect_err("unknown table");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE));
    let err = client
        .batch_execute("COPY items (id, nope) FROM STDIN")
        .await
        .expect_err("unknown column");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_COLUMN), "{err:?}");
    let count: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 7);
    drop(client);
    server.stop().await.expect("stop");

    // Everything acknowledged is there after a restart, converted to the
    // columns' types, defaults filled in.
    let server = TestServer::start(dir.path()).await.expect("restart");
    let (client, _task) = connect(&server).await;
    let rows = client
        .simple_query("SELECT id, name, v, ok, n FROM items ORDER BY id")
        .await
        .expect("select");
    let got: Vec<Vec<Option<String>>> = rows
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..5).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect();
    let row = |values: [Option<&str>; 5]| values.map(|v| v.map(str::to_owned)).to_vec();
    assert_eq!(
        got,
        vec![
            row([
                Some("1"),
                Some("plain"),
                Some("[1,2]"),
                Some("t"),
                Some("7")
            ]),
            row([Some("2"), None, Some("[3,4]"), Some("f"), Some("7")]),
            row([Some("3"), Some("tab\there\\"), None, None, Some("7")]),
            row([Some("4"), Some("a,b"), Some("[5,6]"), Some("t"), Some("7")]),
            row([Some("5"), None, None, None, Some("7")]),
            row([Some("6"), Some(""), Some("[7,8]"), Some("f"), Some("7")]),
            row([Some("7"), Some("two\nlines"), None, None, Some("7")]),
        ]
    );
    drop(client);
    server.stop().await.expect("stop");
}

/// `$n` numbers come from the client: huge, zero and malformed ones are
/// errors with Postgres' SQLSTATEs on both protocols, never an allocation
/// sized by them (`$100000000000` once aborted the server process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_numbers_are_bounded_on_both_protocols() {
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    let cases = [
        ("SELECT $100000000000::bigint", "54000"),
        ("SELECT $99999::bigint", "54000"),
        ("SELECT $0::bigint", "42P02"),
        ("SELECT $-1::bigint", ""),
    ];
    for (sql, code) in cases {
        let simple = client.simple_query(sql).await.expect_err(sql);
        let prepared = client.prepare(sql).await.expect_err(sql);
        for err in [simple, prepared] {
            let db = err
                .as_db_error()
                .unwrap_or_else(|| panic!("{sql}: not a server error: {err}"));
            if code.is_empty() {
                // Postgres calls `$-1` a syntax error; any clean error will do.
                assert_ne!(db.code().code(), "XX000", "{sql}: {db:?}");
            } else {
                assert_eq!(db.code().code(), code, "{sql}: {db:?}");
            }
        }
    }
    // The simple protocol has no values to give a `$n`.
    let err = client
        .simple_query("SELECT $1::bigint")
        .await
        .expect_err("no parameters");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_PARAMETER), "{err:?}");
    let db = err.as_db_error().expect("server error");
    assert_eq!(db.message(), "there is no parameter $1");
    // The server still serves this connection and new ones.
    let row = client
        .query_one("SELECT $1::bigint + 1", &[&41i64])
        .await
        .expect("typed");
    assert_eq!(row.get::<_, i64>(0), 42);
    let (other, _other_task) = connect(&server).await;
    let rows = other
        .simple_query("SELECT 7")
        .await
        .expect("another connection");
    assert_eq!(first_row(&rows).get(0), Some("7"));
}

/// Planning a write changes nothing: `EXPLAIN` shows the plan, a prepared
/// DELETE that never runs deletes nothing, `EXPLAIN ANALYZE` performs the
/// change and reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_prepare_do_not_write() {
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    client
        .batch_execute(
            "CREATE TABLE explained (id BIGINT); INSERT INTO explained VALUES (1), (2), (3)",
        )
        .await
        .expect("setup");
    let ids = async |client: &Client| -> Vec<i64> {
        client
            .query("SELECT id FROM explained ORDER BY id", &[])
            .await
            .expect("read")
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let plan_text = |messages: Vec<SimpleQueryMessage>| -> String {
        messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .filter_map(|i| r.get(i))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    let plan = plan_text(
        client
            .simple_query("EXPLAIN DELETE FROM explained WHERE id = 1")
            .await
            .expect("explain delete"),
    );
    assert!(plan.contains("RowChangeExec: op=DELETE"), "{plan}");
    let plan = plan_text(
        client
            .simple_query("EXPLAIN UPDATE explained SET id = 20 WHERE id = 2")
            .await
            .expect("explain update"),
    );
    assert!(plan.contains("RowChangeExec: op=UPDATE"), "{plan}");
    client
        .simple_query("EXPLAIN TRUNCATE explained")
        .await
        .expect("explain truncate");
    assert_eq!(ids(&client).await, vec![1, 2, 3], "EXPLAIN changed data");

    // Prepared, never executed: over the extended protocol and with SQL.
    let _statement = client
        .prepare("DELETE FROM explained WHERE id = $1")
        .await
        .expect("prepare");
    client
        .batch_execute("PREPARE never AS DELETE FROM explained WHERE id = 3")
        .await
        .expect("sql prepare");
    assert_eq!(ids(&client).await, vec![1, 2, 3], "PREPARE changed data");

    let plan = plan_text(
        client
            .simple_query("EXPLAIN ANALYZE DELETE FROM explained WHERE id = 1")
            .await
            .expect("explain analyze"),
    );
    assert!(plan.contains("rows_affected=1"), "{plan}");
    assert_eq!(
        ids(&client).await,
        vec![2, 3],
        "EXPLAIN ANALYZE runs the plan"
    );
    client
        .simple_query("EXPLAIN ANALYZE UPDATE explained SET id = id * 10 WHERE id = 3")
        .await
        .expect("explain analyze update");
    assert_eq!(ids(&client).await, vec![2, 30]);
}

/// Unaliased result columns carry Postgres' names in RowDescription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_columns_are_named_as_postgres_names_them() {
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    client
        .batch_execute(
            "CREATE TABLE named (id BIGINT, v VECTOR(2)); INSERT INTO named VALUES (1, '[1,2]')",
        )
        .await
        .expect("setup");
    let sql = "SELECT 1, now(), vector_dims(v), (id * 2)::text, '5'::int, count(*) OVER (), id AS Ident, * FROM named";
    let expected = [
        "?column?",
        "now",
        "vector_dims",
        "text",
        "int4",
        "count",
        "ident",
        "id",
        "v",
    ];
    let statement = client.prepare(sql).await.expect("prepare");
    let described: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(described, expected, "Describe");
    let messages = client.simple_query(sql).await.expect("simple");
    let SimpleQueryMessage::RowDescription(columns) = &messages[0] else {
        panic!("no RowDescription first: {messages:?}");
    };
    let simple: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    assert_eq!(simple, expected, "simple protocol");
    let row = client.query_one(sql, &[]).await.expect("extended");
    assert_eq!(row.get::<_, i64>("id"), 1);
    assert_eq!(row.get::<_, String>("text"), "2");
    // Repeated names, as Postgres repeats them.
    let repeated = client
        .prepare("SELECT 1, 1, id, id::text FROM named")
        .await
        .expect("repeated names plan");
    let names: Vec<&str> = repeated.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["?column?", "?column?", "id", "id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_limit_gets_53300_and_the_others_go_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_configured(dir.path(), |config| config.max_connections = 2)
        .await
        .expect("start server");
    let (first, _first_task) = connect(&server).await;
    let (second, second_task) = connect(&server).await;
    let refused = tokio_postgres::connect(&server.connection_string(), NoTls)
        .await
        .err()
        .expect("a third connection is refused");
    assert_eq!(
        refused.code(),
        Some(&SqlState::TOO_MANY_CONNECTIONS),
        "{refused}"
    );
    // The connections within the limit are served as before.
    let answer = first.simple_query("SELECT 41 + 1").await.expect("query");
    assert_eq!(first_row(&answer).get(0), Some("42"));
    // Once one closes, a new connection gets in (the server notices the
    // close in its own time: try until it has, within a bound).
    drop(second);
    let _ = second_task.await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_postgres::connect(&server.connection_string(), NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                let answer = client.simple_query("SELECT 1").await.expect("query");
                assert_eq!(first_row(&answer).get(0), Some("1"));
                break;
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no connection after one closed: {e}"),
        }
    }
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_memory_limit_gets_53200_and_the_server_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = sluice_sql_tests::test_engine(dir.path()).memory_limit(8 << 20);
    let server = TestServer::start_engine(engine, |_| {})
        .await
        .expect("start server");
    let (client, _task) = connect(&server).await;
    // A sort of 1M rows (8 MB of values alone) spills and succeeds.
    let sorted = client
        .simple_query(
            "SELECT count(*), min(v), max(v) FROM \
             (SELECT v FROM generate_series(1, 1000000) t(v) ORDER BY v DESC)",
        )
        .await
        .expect("a sort over the limit spills");
    let row = first_row(&sorted);
    assert_eq!((row.get(0), row.get(2)), (Some("1000000"), Some("1000000")));
    // A hash join's build side cannot spill: the query fails, nothing else.
    let error = client
        .simple_query(
            "SELECT count(*) FROM generate_series(1, 2000000) a(x) \
             JOIN generate_series(1, 2000000) b(y) ON x = y",
        )
        .await
        .expect_err("a join over the limit fails");
    assert_eq!(error.code(), Some(&SqlState::OUT_OF_MEMORY), "{error}");
    // The same connection and a new one are served; the memory went back.
    let answer = client.simple_query("SELECT 41 + 1").await.expect("query");
    assert_eq!(first_row(&answer).get(0), Some("42"));
    let (other, _other_task) = connect(&server).await;
    let again = other
        .simple_query("SELECT count(*) FROM generate_series(1, 1000) a(x) JOIN generate_series(1, 1000) b(y) ON x = y")
        .await
        .expect("a small join after the failure");
    assert_eq!(first_row(&again).get(0), Some("1000"));
    server.stop().await.expect("stop");
}

/// The bytes of a COPY out stream.
async fn copied(client: &Client, sql: &str) -> Vec<u8> {
    let stream = client.copy_out(sql).await.expect("copy out");
    pin_mut!(stream);
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.expect("copy data"));
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_in_text_csv_and_binary() {
    use tokio_postgres::binary_copy::BinaryCopyOutStream;
    use tokio_postgres::types::Type;

    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    client
        .batch_execute(
            "CREATE TABLE copy_out_rows (id BIGINT, name TEXT, score DOUBLE PRECISION); \
             INSERT INTO copy_out_rows VALUES (1, 'tab\there', 1.5), (2, NULL, -2.25)",
        )
        .await
        .expect("table");
    let text = copied(&client, "COPY copy_out_rows (id, name) TO STDOUT").await;
    let mut lines: Vec<&str> = std::str::from_utf8(&text).expect("utf8").lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["1\ttab\\there", "2\t\\N"]);
    let csv = copied(
        &client,
        "COPY (SELECT id, name FROM copy_out_rows ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER, NULL 'none')",
    )
    .await;
    assert_eq!(
        std::str::from_utf8(&csv).expect("utf8"),
        "id,name\n1,tab\there\n2,none\n"
    );
    let stream = client
        .copy_out("COPY (SELECT id, name, score FROM copy_out_rows ORDER BY id) TO STDOUT (FORMAT binary)")
        .await
        .expect("binary copy");
    let rows: Vec<_> = BinaryCopyOutStream::new(stream, &[Type::INT8, Type::TEXT, Type::FLOAT8])
        .map(|row| row.expect("binary row"))
        .collect()
        .await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<i64>(0), 1);
    assert_eq!(rows[0].get::<Option<&str>>(1), Some("tab\there"));
    assert_eq!(rows[1].get::<Option<&str>>(1), None);
    assert_eq!(rows[1].get::<f64>(2), -2.25);
    let missing = client
        .copy_out("COPY no_such_table TO STDOUT")
        .await
        .err()
        .expect("an unknown table is an error");
    assert_eq!(
        missing.code(),
        Some(&SqlState::UNDEFINED_TABLE),
        "{missing}"
    );
    let answer = client.simple_query("SELECT 41 + 1").await.expect("query");
    assert_eq!(first_row(&answer).get(0), Some("42"));
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_and_password_logins_need_the_right_password() {
    use sluice_server::auth::{AuthMethod, Authenticator, Users};

    for method in [AuthMethod::ScramSha256, AuthMethod::Password] {
        let dir = tempfile::tempdir().expect("temp dir");
        let users = Users::parse("alice:s3cret\n").expect("users");
        let auth = std::sync::Arc::new(Authenticator::new(method, users, None).expect("auth"));
        let server = TestServer::start_configured(dir.path(), |config| config.auth = auth)
            .await
            .expect("start server");
        let login = |user: &str, password: Option<&str>| {
            let mut text = format!(
                "host={} port={} user={user} dbname=sluice",
                server.addr.ip(),
                server.addr.port()
            );
            if let Some(password) = password {
                text.push_str(&format!(" password={password}"));
            }
            text
        };
        let (client, connection) = tokio_postgres::connect(&login("alice", Some("s3cret")), NoTls)
            .await
            .unwrap_or_else(|e| panic!("{method}: the right password is accepted: {e}"));
        tokio::spawn(connection);
        let answer = client.simple_query("SELECT 41 + 1").await.expect("query");
        assert_eq!(first_row(&answer).get(0), Some("42"), "{method}");
        for (user, password) in [("alice", "wrong"), ("mallory", "s3cret")] {
            let refused = tokio_postgres::connect(&login(user, Some(password)), NoTls)
                .await
                .err()
                .unwrap_or_else(|| panic!("{method}: {user}/{password} is refused"));
            assert_eq!(
                refused.code(),
                Some(&SqlState::INVALID_PASSWORD),
                "{method}: {refused}"
            );
        }
        assert!(
            tokio_postgres::connect(&login("alice", None), NoTls)
                .await
                .is_err(),
            "{method}: no password, no session"
        );
        // The logged-in session is unaffected by the failures around it.
        let answer = client.simple_query("SELECT 43").await.expect("query");
        assert_eq!(first_row(&answer).get(0), Some("43"), "{method}");
        server.stop().await.expect("stop");
    }
}

/// Connects and returns the client with its connection's own future, whose
/// end (and error) shows how the server closed the session.
async fn connect_watching(
    server: &TestServer,
) -> (
    Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let (client, connection) = tokio_postgres::connect(&server.connection_string(), NoTls)
        .await
        .expect("connect to the test server");
    (client, tokio::spawn(connection))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_closed_after_their_timeouts() {
    let (server, _dir) = start().await;
    // Outside a transaction: idle_session_timeout, 57P05.
    let (client, connection) = connect_watching(&server).await;
    client
        .simple_query("SET idle_session_timeout = 200")
        .await
        .expect("set idle_session_timeout");
    let closed = tokio::time::timeout(Duration::from_secs(60), connection)
        .await
        .expect("the server closes the idle session well before 60 s")
        .expect("connection task");
    let error = closed.expect_err("closed with an error");
    assert_eq!(
        error.code(),
        Some(&SqlState::IDLE_SESSION_TIMEOUT),
        "{error}"
    );
    // Inside a transaction: idle_in_transaction_session_timeout, 25P03.
    let (client, connection) = connect_watching(&server).await;
    client
        .batch_execute("SET idle_in_transaction_session_timeout = 200; BEGIN")
        .await
        .expect("begin");
    let closed = tokio::time::timeout(Duration::from_secs(60), connection)
        .await
        .expect("the server closes the idle transaction well before 60 s")
        .expect("connection task");
    let error = closed.expect_err("closed with an error");
    assert_eq!(
        error.code(),
        Some(&SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT),
        "{error}"
    );
    // The in-transaction limit does not apply outside a transaction, nor
    // any limit once reset: this session stays.
    let (client, _task) = connect(&server).await;
    client
        .batch_execute("SET idle_in_transaction_session_timeout = 100")
        .await
        .expect("set");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let answer = client
        .simple_query("SELECT 41 + 1")
        .await
        .expect("still open");
    assert_eq!(first_row(&answer).get(0), Some("42"));
    // Closed first, or the server's stop waits out its grace period for it.
    drop(client);
    server.stop().await.expect("stop");
}

/// The ids `sql` returns, as text, over the simple protocol.
async fn simple_ids(client: &Client, sql: &str) -> Vec<i64> {
    client
        .simple_query(sql)
        .await
        .expect(sql)
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(|v| v.parse().expect("an id")),
            _ => None,
        })
        .collect()
}

/// Prepared statements keep their physical plan between executions and
/// repeated simple queries their plan: every change must still be seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_plans_see_every_change() {
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    let (other, _other_task) = connect(&server).await;
    client
        .batch_execute("CREATE TABLE reused (id BIGINT)")
        .await
        .expect("create");
    let ids = client
        .prepare("SELECT id FROM reused ORDER BY id")
        .await
        .expect("prepare");
    let prepared_ids = async |client: &Client| -> Vec<i64> {
        let rows = client.query(&ids, &[]).await.expect("prepared query");
        rows.iter().map(|row| row.get(0)).collect()
    };
    let simple = "SELECT id FROM reused ORDER BY id";
    // A point lookup keeps its plan with the parameter unbound, and binds
    // each execution's value into it.
    let lookup = client
        .prepare("SELECT id FROM reused WHERE id = $1")
        .await
        .expect("prepare the lookup");
    let looked_up = async |client: &Client, id: i64| -> Vec<i64> {
        let rows = client.query(&lookup, &[&id]).await.expect("lookup");
        rows.iter().map(|row| row.get(0)).collect()
    };

    // Twenty one-row commits: the sixteenth compacts the table's small
    // files into one while both plans still hold the files it replaces.
    for id in 1..=20i64 {
        other
            .execute("INSERT INTO reused VALUES ($1)", &[&id])
            .await
            .expect("insert");
        let expected: Vec<i64> = (1..=id).collect();
        assert_eq!(prepared_ids(&client).await, expected, "after insert {id}");
        assert_eq!(looked_up(&client, id).await, vec![id], "after insert {id}");
        assert_eq!(looked_up(&client, 1).await, vec![1], "after insert {id}");
        assert!(
            looked_up(&client, id + 1).await.is_empty(),
            "after insert {id}"
        );
        assert_eq!(
            simple_ids(&client, simple).await,
            expected,
            "after insert {id}"
        );
    }

    other
        .batch_execute("DELETE FROM reused WHERE id > 3; UPDATE reused SET id = 30 WHERE id = 3")
        .await
        .expect("delete and update");
    assert_eq!(prepared_ids(&client).await, vec![1, 2, 30]);
    assert_eq!(simple_ids(&client, simple).await, vec![1, 2, 30]);
    assert!(looked_up(&client, 3).await.is_empty());
    assert!(looked_up(&client, 4).await.is_empty());
    assert_eq!(looked_up(&client, 30).await, vec![30]);

    // A transaction's own writes, then none once rolled back.
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .batch_execute("INSERT INTO reused VALUES (7)")
        .await
        .expect("insert in the transaction");
    assert_eq!(prepared_ids(&client).await, vec![1, 2, 7, 30]);
    assert_eq!(simple_ids(&client, simple).await, vec![1, 2, 7, 30]);
    assert_eq!(looked_up(&client, 7).await, vec![7]);
    // Another session's commit stays invisible to the transaction.
    other
        .batch_execute("INSERT INTO reused VALUES (8)")
        .await
        .expect("concurrent insert");
    assert_eq!(prepared_ids(&client).await, vec![1, 2, 7, 30]);
    assert!(looked_up(&client, 8).await.is_empty());
    client.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(prepared_ids(&client).await, vec![1, 2, 8, 30]);
    assert!(looked_up(&client, 7).await.is_empty());
    assert_eq!(looked_up(&client, 8).await, vec![8]);
    assert_eq!(simple_ids(&client, simple).await, vec![1, 2, 8, 30]);

    // The table dropped and made anew under the same name.
    other
        .batch_execute(
            "DROP TABLE reused; CREATE TABLE reused (id BIGINT); INSERT INTO reused VALUES (5)",
        )
        .await
        .expect("recreate");
    assert_eq!(simple_ids(&client, simple).await, vec![5]);

    // A setting the planner reads: the time zone of a timestamptz cast. (A
    // prepared statement keeps the time zone it was planned with: its
    // types carry it.)
    let as_text = "SELECT CAST(TIMESTAMPTZ '2020-01-01 12:00:00+00' AS TEXT) AS t";
    let mut seen = Vec::new();
    for zone in ["UTC", "Asia/Tokyo"] {
        client
            .batch_execute(&format!("SET TIME ZONE '{zone}'"))
            .await
            .expect("set time zone");
        let shown = client.simple_query(as_text).await.expect("simple");
        seen.push(first_row(&shown).get(0).expect("a value").to_owned());
    }
    assert!(seen[0].contains("12:00:00"), "{seen:?}");
    assert!(seen[1].contains("21:00:00"), "{seen:?}");
}

/// Timestamps in text as Postgres writes them: no fraction for whole
/// seconds, trailing zeros trimmed, offsets with minutes only when needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_times_and_intervals_are_written_as_postgres_writes_them() {
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    let messages = client
        .simple_query(
            "SET TIME ZONE '+05:30'; SELECT TIMESTAMP '2020-01-01 12:00:00' AS whole, \
             TIMESTAMP '2020-01-01 12:00:00.5' AS half, \
             TIMESTAMPTZ '2020-01-01 12:00:00.25+00' AS zoned, \
             CAST(NULL AS TIMESTAMP) AS missing, \
             TIME '12:34:56' AS whole_time, TIME '12:34:56.5' AS half_time, \
             INTERVAL '3 months 4 days 1.5 seconds' AS span, \
             TIMESTAMP '2024-01-02 03:04:05' - TIMESTAMP '2024-01-01 00:00:00' AS apart",
        )
        .await
        .expect("query");
    let row = first_row(&messages);
    assert_eq!(row.get(0), Some("2020-01-01 12:00:00"));
    assert_eq!(row.get(1), Some("2020-01-01 12:00:00.5"));
    assert_eq!(row.get(2), Some("2020-01-01 17:30:00.25+05:30"));
    assert_eq!(row.get(3), None);
    assert_eq!(row.get(4), Some("12:34:56"));
    assert_eq!(row.get(5), Some("12:34:56.5"));
    assert_eq!(row.get(6), Some("3 mons 4 days 00:00:01.5"));
    assert_eq!(row.get(7), Some("1 day 03:04:05"));

    // Binary stays exact: the same instant read back through the driver.
    let row = client
        .query_one("SELECT TIMESTAMP '2020-01-01 12:00:00.5' AS t", &[])
        .await
        .expect("binary");
    let read: std::time::SystemTime = row.get(0);
    let since_epoch = read
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    assert_eq!(since_epoch.as_millis(), 1_577_880_000_500);
}

/// Point lookups by a parameter, planned once: each execution gets its own
/// value's rows, whatever else the condition says, and EXPLAIN shows the
/// lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_lookups_bind_each_executions_value() {
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    client
        .batch_execute(
            "CREATE TABLE lookups (id BIGINT, small INT, name TEXT); \
             INSERT INTO lookups SELECT value, CAST(value % 7 AS INT), 'n' || CAST(value AS TEXT) \
               FROM generate_series(1, 3000) AS g(value); \
             INSERT INTO lookups SELECT value, CAST(value % 7 AS INT), 'm' || CAST(value AS TEXT) \
               FROM generate_series(2000, 4000) AS g(value)",
        )
        .await
        .expect("load");
    let explained = client
        .simple_query("EXPLAIN SELECT name FROM lookups WHERE id = 42")
        .await
        .expect("explain");
    let plan: String = explained
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(1).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert!(plan.contains("KeyLookupExec: id = 42, files=2"), "{plan}");

    let by_id = client
        .prepare("SELECT name FROM lookups WHERE id = $1 ORDER BY name")
        .await
        .expect("prepare");
    let residual = client
        .prepare("SELECT name FROM lookups WHERE id = $1 AND name LIKE $2")
        .await
        .expect("prepare with a residual");
    let by_small = client
        .prepare("SELECT count(*) FROM lookups WHERE small = $1")
        .await
        .expect("prepare by an int key");
    let names = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
        rows.iter().map(|row| row.get(0)).collect()
    };
    for id in [1i64, 1999, 2000, 2500, 3000, 3001, 4000, 4001, 0, -5] {
        let mut expected = Vec::new();
        if (2000..=4000).contains(&id) {
            expected.push(format!("m{id}"));
        }
        if (1..=3000).contains(&id) {
            expected.push(format!("n{id}"));
        }
        let got = names(client.query(&by_id, &[&id]).await.expect("by id"));
        assert_eq!(got, expected, "id {id}");
        let got = names(
            client
                .query(&residual, &[&id, &"n%"])
                .await
                .expect("with a residual"),
        );
        let expected: Vec<String> = expected
            .into_iter()
            .filter(|n| n.starts_with('n'))
            .collect();
        assert_eq!(got, expected, "id {id} and name LIKE 'n%'");
    }
    let none: Option<i64> = None;
    assert!(
        client
            .query(&by_id, &[&none])
            .await
            .expect("NULL")
            .is_empty()
    );
    for small in [0i32, 3, 6, 7] {
        let count: i64 = client
            .query_one(&by_small, &[&small])
            .await
            .expect("by small")
            .get(0);
        let expected = (1..=3000)
            .chain(2000..=4000)
            .filter(|v| v % 7 == i64::from(small))
            .count();
        assert_eq!(count, expected as i64, "small {small}");
    }
    server.stop().await.expect("stop");
}

/// The L2 distances of the rows `ids` of the `vs` table below (`v` =
/// `[id, id % 17, id % 23, 1]`, NULL for id 0) to `query`: rows at equal
/// distances may come in either order, so results compare by these.
fn vs_distances(ids: &[i64], query: &str) -> Vec<Option<i64>> {
    let q: Vec<f64> = query
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|x| x.parse().expect("a float"))
        .collect();
    ids.iter()
        .map(|&id| {
            (id != 0).then(|| {
                let v = [id as f64, (id % 17) as f64, (id % 23) as f64, 1.0];
                let d: f64 = v.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum();
                // Rounded: the server computes in float4.
                (d.sqrt() * 1e3).round() as i64
            })
        })
        .collect()
}

/// A parameter sent in text format whatever its type (as pgvector's
/// adapters send a vector).
#[derive(Debug)]
struct AsText<'a>(&'a str);

impl tokio_postgres::types::ToSql for AsText<'_> {
    fn to_sql(
        &self,
        _ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(_ty: &tokio_postgres::types::Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &tokio_postgres::types::Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A prepared `ORDER BY v <-> $1 LIMIT k` keeps one plan whose search
/// binds each execution's query vector and returns its rows nearest
/// first (no sort above it): the same rows, in the same order, as the
/// query with the vector written out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_searches_bind_each_executions_query() {
    let (server, _dir) = start().await;
    let (client, _task) = connect(&server).await;
    let vector = "CAST('[' || CAST(value AS TEXT) || ',' || CAST(value % 17 AS TEXT) || ',' \
                  || CAST(value % 23 AS TEXT) || ',1]' AS vector(4))";
    client
        .batch_execute(&format!(
            "CREATE TABLE vs (id BIGINT, v VECTOR(4)); \
             INSERT INTO vs SELECT value, {vector} FROM generate_series(1, 3000) AS g(value); \
             INSERT INTO vs SELECT value, {vector} FROM generate_series(3001, 4200) AS g(value); \
             INSERT INTO vs VALUES (0, NULL); \
             CREATE INDEX ON vs USING hnsw (v vector_l2_ops); \
             SET vector.ef_search = 1000"
        ))
        .await
        .expect("load");
    let nearest = client
        .prepare("SELECT id FROM vs ORDER BY v <-> $1::vector(4) LIMIT 10")
        .await
        .expect("prepare");
    let everything = client
        .prepare("SELECT id FROM vs ORDER BY v <-> $1::vector(4) LIMIT 5000")
        .await
        .expect("prepare");
    let filtered = client
        .prepare("SELECT id FROM vs WHERE id % 3 = $2 ORDER BY v <-> $1::vector(4) LIMIT 10")
        .await
        .expect("prepare with a filter");
    let ids =
        |rows: Vec<tokio_postgres::Row>| -> Vec<i64> { rows.iter().map(|r| r.get(0)).collect() };
    for (round, query) in [
        "[100.5,3.3,7.7,0.9]",
        "[2999,16,2,1]",
        "[4100,0,0,1]",
        "[1,1,1,1]",
    ]
    .into_iter()
    .cycle()
    .take(8)
    .enumerate()
    {
        let written = format!("SELECT id FROM vs ORDER BY v <-> '{query}'::vector(4)");
        let got = ids(client
            .query(&nearest, &[&AsText(query)])
            .await
            .expect("nearest"));
        let expected = simple_ids(&client, &format!("{written} LIMIT 10")).await;
        assert_eq!(
            vs_distances(&got, query),
            vs_distances(&expected, query),
            "{query} (round {round}): {got:?} vs {expected:?}"
        );
        assert_eq!(got.len(), 10);
        // Every row, the NULL vector's last (two rounds: it reads them all).
        if round < 2 {
            let all = ids(client
                .query(&everything, &[&AsText(query)])
                .await
                .expect("everything"));
            assert_eq!(all.len(), 4201, "every row, the NULL vector's too");
            assert_eq!(all.last(), Some(&0), "the NULL vector last");
            let expected = simple_ids(&client, &format!("{written} LIMIT 5000")).await;
            assert!(
                vs_distances(&all, query) == vs_distances(&expected, query),
                "{query}: every row, nearest first, as the sort orders them"
            );
        }
        let got = ids(client
            .query(&filtered, &[&AsText(query), &1i64])
            .await
            .expect("filtered"));
        let written = format!(
            "SELECT id FROM vs WHERE id % 3 = 1 ORDER BY v <-> '{query}'::vector(4) LIMIT 10"
        );
        let expected = simple_ids(&client, &written).await;
        assert_eq!(
            vs_distances(&got, query),
            vs_distances(&expected, query),
            "{query} filtered: {got:?} vs {expected:?}"
        );
        assert!(got.iter().all(|id| id % 3 == 1));
    }
    // A NULL query vector: every distance is NULL, and the search still
    // returns k rows (as pgvector does), the filter's rows when filtered.
    let no_query: Option<AsText> = None;
    let got = ids(client
        .query(&nearest, &[&no_query])
        .await
        .expect("a NULL query"));
    let distinct: std::collections::BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!((got.len(), distinct.len()), (10, 10), "{got:?}");
    let got = ids(client
        .query(&filtered, &[&no_query, &2i64])
        .await
        .expect("a NULL query, filtered"));
    assert_eq!(got.len(), 10, "{got:?}");
    assert!(got.iter().all(|id| id % 3 == 2), "{got:?}");
    let Err(error) = client.query(&nearest, &[&AsText("[1,2,3]")]).await else {
        panic!("a query vector of the wrong dimension is refused");
    };
    let message = error.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message.as_deref().is_some_and(|m| m.contains("dimension")),
        "{error:?}"
    );
    assert_eq!(
        ids(client
            .query(&nearest, &[&AsText("[1,1,1,1]")])
            .await
            .expect("after an error"))
        .len(),
        10
    );
    server.stop().await.expect("stop");
}
