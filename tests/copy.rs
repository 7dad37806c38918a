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

/// `varchar(n)` and `char(n)` keep their declared length: reported in `pg_attribute`
/// (with numeric precision and scale), checked on INSERT, UPDATE and COPY (22001), and
/// still after a restart. A primary key's columns are NOT NULL.
#[tokio::test]
async fn declared_text_lengths_are_reported_and_enforced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Server::start_in(&tmp.path().join("data"));
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE labels (id INT PRIMARY KEY, code CHAR(3), label VARCHAR(5), \
         note TEXT, amount NUMERIC(10, 2))",
    )
    .await
    .expect("create");
    let types = "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull \
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 WHERE c.relname = 'labels' ORDER BY a.attnum";
    let expected = vec![
        vec!["id", "integer", "t"],
        vec!["code", "character(3)", "f"],
        vec!["label", "character varying(5)", "f"],
        vec!["note", "text", "f"],
        vec!["amount", "numeric(10,2)", "f"],
    ];
    assert_eq!(rows(&c, types).await, expected);

    // Spaces past the length are cut off; anything else past it is an error.
    c.batch_execute("INSERT INTO labels VALUES (1, 'ab', 'äöüß ', 'long note', 1.5)")
        .await
        .expect("fits");
    c.batch_execute("INSERT INTO labels (id, label) VALUES (2, 'abc     ')")
        .await
        .expect("trailing spaces");
    let e = c
        .batch_execute("INSERT INTO labels (id, label) VALUES (3, 'abcdef')")
        .await
        .expect_err("too long");
    assert_eq!(sqlstate(&e), "22001");
    let message = |e: &tokio_postgres::Error| {
        e.as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default()
    };
    assert_eq!(message(&e), "value too long for type character varying(5)");
    let e = c
        .batch_execute("INSERT INTO labels (id, code) VALUES (3, 'abcd')")
        .await
        .expect_err("too long");
    assert_eq!(sqlstate(&e), "22001");
    let e = c
        .batch_execute("UPDATE labels SET label = label || 'xyz' WHERE id = 2")
        .await
        .expect_err("update too long");
    assert_eq!(sqlstate(&e), "22001");
    let e = copy_in(
        &c,
        "COPY labels (id, label) FROM STDIN",
        "4\tok\n5\ttoo long\n",
    )
    .await
    .expect_err("copy too long");
    assert_eq!(sqlstate(&e), "22001");
    assert!(message(&e).contains("line 2, column label"), "{e:?}");
    let e = c
        .batch_execute("INSERT INTO labels (id) VALUES (NULL)")
        .await
        .expect_err("primary key is not null");
    assert_eq!(sqlstate(&e), "23502");
    let contents = "SELECT id, code, label, length(label) FROM labels ORDER BY id";
    let kept = vec![
        vec!["1", "ab", "äöüß ", "5"],
        vec!["2", "NULL", "abc  ", "5"],
    ];
    assert_eq!(rows(&c, contents).await, kept);

    let data = s.kill9();
    let s = Server::start_in(&data);
    let c = s.client().await;
    assert_eq!(rows(&c, types).await, expected);
    let e = c
        .batch_execute("INSERT INTO labels (id, label) VALUES (6, 'abcdef')")
        .await
        .expect_err("still checked");
    assert_eq!(sqlstate(&e), "22001");
    assert_eq!(rows(&c, contents).await, kept);
}
