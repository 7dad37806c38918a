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
