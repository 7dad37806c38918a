//! COPY FROM STDIN and COPY TO STDOUT through tokio-postgres.

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};

use crate::common::{rows, sqlstate, Server};

async fn copy_in(
    c: &tokio_postgres::Client,
    sql: &str,
    data: &str,
) -> Result<u64, tokio_postgres::Error> {
    let sink = c.copy_in(sql).await?;
    futures::pin_mut!(sink);
    // Two chunks split mid-record, as clients send them.
    let (a, b) = data.split_at(data.len() / 2);
    sink.send(Bytes::from(a.to_string())).await?;
    sink.send(Bytes::from(b.to_string())).await?;
    sink.finish().await
}

#[tokio::test]
async fn copy_in_text_and_csv_then_out() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE contacts (id INT, email TEXT, vip BOOLEAN)")
        .await
        .expect("create");
    let n = copy_in(&c, "COPY contacts FROM STDIN", "1\ta@x.com\tt\n2\t\\N\tf\n")
        .await
        .expect("text");
    assert_eq!(n, 2);
    let n = copy_in(
        &c,
        "COPY contacts (email, id) FROM STDIN WITH (FORMAT csv, HEADER true)",
        "email,id\n\"c,quoted\"\"@x.com\",3\n,4\n",
    )
    .await
    .expect("csv");
    assert_eq!(n, 2);
    assert_eq!(
        rows(&c, "SELECT id, email, vip FROM contacts ORDER BY id").await,
        vec![
            vec!["1", "a@x.com", "t"],
            vec!["2", "NULL", "f"],
            vec!["3", "c,quoted\"@x.com", "NULL"],
            vec!["4", "NULL", "NULL"],
        ]
    );

    let out = c
        .copy_out(
            "COPY (SELECT id, email FROM contacts ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)",
        )
        .await
        .expect("out");
    let chunks: Vec<Bytes> = out.try_collect().await.expect("collect");
    let text: String = chunks
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(
        text,
        "id,email\n1,a@x.com\n2,\n3,\"c,quoted\"\"@x.com\"\n4,\n"
    );
    // A header still comes out when there are no rows.
    let out = c
        .copy_out("COPY (SELECT id, email FROM contacts WHERE id < 0) TO STDOUT WITH (FORMAT csv, HEADER)")
        .await
        .expect("out");
    let chunks: Vec<Bytes> = out.try_collect().await.expect("collect");
    assert_eq!(chunks.concat(), b"id,email\n");
}

#[tokio::test]
async fn malformed_copy_line_rejects_everything() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE nums (id INT, label TEXT)")
        .await
        .expect("create");
    let e = copy_in(
        &c,
        "COPY nums FROM STDIN (FORMAT csv)",
        "1,a\n2,b\nthree,c\n4,d\n",
    )
    .await
    .expect_err("bad line");
    assert_eq!(sqlstate(&e), "22P02");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("line 3"), "{msg}");
    let e = copy_in(&c, "COPY nums FROM STDIN (FORMAT csv)", "1,a\n2\n")
        .await
        .expect_err("short line");
    assert_eq!(sqlstate(&e), "22P04");
    assert_eq!(
        rows(&c, "SELECT count(*) FROM nums").await,
        vec![vec!["0"]],
        "nothing committed"
    );
    // The connection is usable afterwards.
    assert_eq!(
        copy_in(&c, "COPY nums FROM STDIN (FORMAT csv)", "5,e\n")
            .await
            .expect("ok"),
        1
    );
}

#[tokio::test]
async fn copy_into_a_view_or_missing_table_is_refused() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE VIEW v AS SELECT 1 AS a")
        .await
        .expect("view");
    assert_eq!(
        sqlstate(
            &c.copy_in::<_, Bytes>("COPY v FROM STDIN")
                .await
                .err()
                .expect("view")
        ),
        "42809"
    );
    assert_eq!(
        sqlstate(
            &c.copy_in::<_, Bytes>("COPY nope FROM STDIN")
                .await
                .err()
                .expect("missing")
        ),
        "42P01"
    );
    assert_eq!(
        sqlstate(
            &c.batch_execute("COPY v FROM '/etc/passwd'")
                .await
                .expect_err("file")
        ),
        "0A000"
    );
}

#[tokio::test]
async fn copy_in_binary_format() {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::{ToSql, Type};
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE bin (id INT, name TEXT, score DOUBLE PRECISION, ok BOOLEAN, at TIMESTAMP)",
    )
    .await
    .expect("create");
    let sink = c
        .copy_in("COPY bin FROM STDIN (FORMAT binary)")
        .await
        .expect("copy");
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT4,
            Type::TEXT,
            Type::FLOAT8,
            Type::BOOL,
            Type::TIMESTAMP,
        ],
    );
    futures::pin_mut!(writer);
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_704_164_645_500);
    let rows_in: [[&(dyn ToSql + Sync); 5]; 2] = [
        [&1i32, &"anna, \"quoted\"", &1.5f64, &true, &at],
        [
            &2i32,
            &None::<&str>,
            &-0.25f64,
            &false,
            &None::<std::time::SystemTime>,
        ],
    ];
    for r in &rows_in {
        writer.as_mut().write(r).await.expect("row");
    }
    assert_eq!(writer.finish().await.expect("finish"), 2);
    assert_eq!(
        rows(&c, "SELECT id, name, score, ok, at = TIMESTAMP '2024-01-02 03:04:05.5' FROM bin ORDER BY id").await,
        vec![
            vec!["1", "anna, \"quoted\"", "1.5", "t", "t"],
            vec!["2", "NULL", "-0.25", "f", "NULL"],
        ]
    );
    // A truncated stream is rejected whole.
    let sink = c
        .copy_in::<_, Bytes>("COPY bin FROM STDIN (FORMAT binary)")
        .await
        .expect("copy");
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(
        b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\0\x05",
    ))
    .await
    .expect("send");
    assert_eq!(
        sqlstate(&sink.finish().await.expect_err("truncated")),
        "22P04"
    );
    assert_eq!(rows(&c, "SELECT count(*) FROM bin").await, vec![vec!["2"]]);
}
