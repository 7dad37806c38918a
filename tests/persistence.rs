//! Everything survives a restart, and an acknowledged write survives `kill -9`.

use crate::common::{rows, Server};

#[tokio::test]
async fn restart_keeps_tables_views_and_sources() {
    let tmp = tempfile::tempdir().expect("tmp");
    let csv = tmp.path().join("src.csv");
    std::fs::write(&csv, "k,v\n1,one\n2,two\n").expect("csv");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute(&format!(
        "CREATE EXTERNAL TABLE src STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true');
         CREATE TABLE managed (id INT, label TEXT);
         INSERT INTO managed VALUES (1, 'a'), (2, 'b');
         CREATE VIEW joined AS SELECT m.id, s.v, m.label FROM managed m JOIN src s ON s.k = m.id;
         CREATE TABLE keyed (id INT PRIMARY KEY, label TEXT);
         INSERT INTO keyed VALUES (1, 'one');
         CREATE TABLE doomed (x INT);
         DROP TABLE doomed;
         ALTER TABLE managed RENAME TO managed2;",
        csv.display()
    ))
    .await
    .expect("setup");
    assert!(s.stop().success(), "clean exit on SIGTERM");

    let s = Server::start_in(&data);
    let c = s.client().await;
    assert_eq!(
        rows(&c, "SELECT id, v, label FROM joined ORDER BY id").await,
        vec![vec!["1", "one", "a"], vec!["2", "two", "b"]]
    );
    assert!(c.batch_execute("SELECT * FROM doomed").await.is_err());
    // A declared primary key is recorded, not enforced: DataFusion must not use it to
    // drop a DISTINCT over what are in fact duplicate ids.
    c.batch_execute("INSERT INTO keyed VALUES (1, 'again')")
        .await
        .expect("duplicate key accepted");
    assert_eq!(
        rows(&c, "SELECT count(*) FROM (SELECT DISTINCT id FROM keyed)").await,
        vec![vec!["1"]]
    );
    assert!(c.batch_execute("SELECT * FROM managed").await.is_err());
    assert_eq!(
        rows(&c, "SELECT count(*) FROM managed2").await,
        vec![vec!["2"]]
    );
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute("CREATE TABLE events (id BIGINT, body TEXT)")
        .await
        .expect("create");
    let insert = c
        .prepare("INSERT INTO events VALUES ($1, $2)")
        .await
        .expect("prepare");
    for i in 0..20i64 {
        let body = format!("event {i}");
        c.execute(
            &insert,
            &[&i as &(dyn tokio_postgres::types::ToSql + Sync), &body],
        )
        .await
        .expect("acknowledged");
    }
    c.batch_execute("DELETE FROM events WHERE id < 5")
        .await
        .expect("delete");
    let data = s.kill9();

    let s = Server::start_in(&data);
    let c = s.client().await;
    assert_eq!(
        rows(&c, "SELECT count(*), min(id), max(id) FROM events").await,
        vec![vec!["15", "5", "19"]]
    );
}

#[tokio::test]
async fn managed_tables_are_plain_delta_on_disk() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE plain (a INT); INSERT INTO plain VALUES (1)")
        .await
        .expect("setup");
    let tables = s.data_dir.join("tables");
    let dir = std::fs::read_dir(&tables)
        .expect("tables dir")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("plain-"))
        .expect("table directory");
    let log = dir.path().join("_delta_log");
    assert!(
        log.join("00000000000000000000.json").exists(),
        "Delta log version 0"
    );
    assert!(
        log.join("00000000000000000001.json").exists(),
        "the INSERT is commit 1"
    );
    let parquet = std::fs::read_dir(dir.path())
        .expect("read")
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "parquet"));
    assert!(parquet, "rows are stored as Parquet files");
}
