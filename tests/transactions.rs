//! Transaction blocks: the writes between BEGIN and COMMIT land together or not at all,
//! other sessions see none of them before COMMIT, savepoints undo what came after them,
//! and a block a client or the server abandons leaves nothing behind.

use std::path::Path;

use futures::SinkExt;

use crate::common::{rows, sqlstate, Server};

/// How many commits (log entries) the Delta table under `tables/<name>-*` has.
fn log_entries(data_dir: &Path, name: &str) -> usize {
    let table = std::fs::read_dir(data_dir.join("tables"))
        .expect("tables")
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}-"))
        })
        .expect("table dir")
        .path();
    std::fs::read_dir(table.join("_delta_log"))
        .expect("log")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count()
}

/// The forks of open blocks under the table directories.
fn forks(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("tables"))
        .expect("tables")
        .flatten()
        .filter_map(|t| std::fs::read_dir(t.path().join("_txn")).ok())
        .map(|d| d.count())
        .sum()
}

/// Wait until no fork is left under `data_dir` (a connection deletes the forks of its
/// ended blocks when it begins the next one or closes); false after 5 s.
async fn forks_gone(data_dir: &Path) -> bool {
    for _ in 0..100 {
        if forks(data_dir) == 0 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_block_lands_whole_at_commit_and_is_invisible_before() {
    let s = Server::start();
    let a = s.client().await;
    let b = s.client().await;
    a.batch_execute(
        "CREATE TABLE acct (id INT, balance INT); INSERT INTO acct VALUES (1, 100), (2, 50);
         CREATE TABLE ledger (id INT, amount INT)",
    )
    .await
    .expect("setup");
    let (acct_before, ledger_before) = (
        log_entries(&s.data_dir, "acct"),
        log_entries(&s.data_dir, "ledger"),
    );

    a.batch_execute(
        "BEGIN;
         UPDATE acct SET balance = balance - 30 WHERE id = 1;
         UPDATE acct SET balance = balance + 30 WHERE id = 2;
         INSERT INTO ledger VALUES (1, -30), (2, 30);
         DELETE FROM ledger WHERE amount > 0;
         INSERT INTO acct VALUES (3, 0)",
    )
    .await
    .expect("block");
    // The block reads its own writes, through joins and aggregates too.
    assert_eq!(
        rows(
            &a,
            "SELECT sum(a.balance), count(l.id) FROM acct a LEFT JOIN ledger l ON l.id = a.id"
        )
        .await,
        vec![vec!["150", "1"]]
    );
    // Another session sees the committed rows only.
    assert_eq!(
        rows(&b, "SELECT id, balance FROM acct ORDER BY id").await,
        vec![vec!["1", "100"], vec!["2", "50"]]
    );
    assert_eq!(
        rows(&b, "SELECT count(*) FROM ledger").await,
        vec![vec!["0"]]
    );
    assert_eq!(forks(&s.data_dir), 2);

    a.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(
        rows(&b, "SELECT id, balance FROM acct ORDER BY id").await,
        vec![vec!["1", "70"], vec!["2", "80"], vec!["3", "0"]]
    );
    assert_eq!(
        rows(&b, "SELECT id, amount FROM ledger").await,
        vec![vec!["1", "-30"]]
    );
    // One Delta commit per table for the whole block.
    assert_eq!(log_entries(&s.data_dir, "acct"), acct_before + 1);
    assert_eq!(log_entries(&s.data_dir, "ledger"), ledger_before + 1);

    // A block's last rows stream after its COMMIT ran (one query string): its forks stay
    // until the next query starts.
    let m = a
        .simple_query(
            "BEGIN; INSERT INTO ledger VALUES (9, 9); SELECT id FROM ledger ORDER BY id; COMMIT;
             BEGIN; INSERT INTO ledger VALUES (10, 10); ROLLBACK",
        )
        .await
        .expect("one string");
    let ids: Vec<&str> = m
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0),
            _ => None,
        })
        .collect();
    assert_eq!(ids, ["1", "9"]);
    a.batch_execute("BEGIN; ROLLBACK")
        .await
        .expect("next block");
    assert_eq!(
        forks(&s.data_dir),
        0,
        "the next query deletes the ended forks"
    );
}

#[tokio::test]
async fn rollback_a_failed_block_and_a_closed_connection_leave_nothing() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE r (id INT); INSERT INTO r VALUES (1)")
        .await
        .expect("setup");

    c.batch_execute("BEGIN; INSERT INTO r VALUES (2); DELETE FROM r WHERE id = 1; ROLLBACK")
        .await
        .expect("rolled back");
    assert_eq!(rows(&c, "SELECT id FROM r").await, vec![vec!["1"]]);

    // An error fails the block; its COMMIT rolls back.
    c.batch_execute("BEGIN; INSERT INTO r VALUES (3)")
        .await
        .expect("begin");
    assert!(c
        .batch_execute("SELECT * FROM no_such_table")
        .await
        .is_err());
    c.batch_execute("COMMIT")
        .await
        .expect("commit of a failed block");
    assert_eq!(rows(&c, "SELECT id FROM r").await, vec![vec!["1"]]);

    // A client that goes away inside a block.
    let gone = s.client().await;
    gone.batch_execute("BEGIN; INSERT INTO r VALUES (4)")
        .await
        .expect("block");
    // Its fork (the failed block's went at `c`'s next query).
    assert_eq!(forks(&s.data_dir), 1);
    drop(gone);
    drop(c);
    assert!(
        forks_gone(&s.data_dir).await,
        "the closed connections' forks are deleted"
    );
    let c = s.client().await;
    assert_eq!(rows(&c, "SELECT id FROM r").await, vec![vec!["1"]]);
}

#[tokio::test]
async fn savepoints_undo_what_came_after_them() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE sv (id INT); CREATE TABLE other (id INT)")
        .await
        .expect("setup");
    c.batch_execute(
        "BEGIN; INSERT INTO sv VALUES (1); SAVEPOINT a;
         INSERT INTO sv VALUES (2); UPDATE sv SET id = 10 WHERE id = 1;
         INSERT INTO other VALUES (7)",
    )
    .await
    .expect("block");
    // A failed statement, then ROLLBACK TO leaves the failed state.
    assert!(c.batch_execute("SELECT 1/0").await.is_err());
    let e = c
        .batch_execute("INSERT INTO sv VALUES (99)")
        .await
        .expect_err("failed block");
    assert_eq!(sqlstate(&e), "25P02");
    c.batch_execute("ROLLBACK TO SAVEPOINT a")
        .await
        .expect("rollback to");
    assert_eq!(rows(&c, "SELECT id FROM sv").await, vec![vec!["1"]]);
    assert_eq!(
        rows(&c, "SELECT count(*) FROM other").await,
        vec![vec!["0"]]
    );
    // The savepoint stays; rolling back to it again after more writes works too.
    // `other` is written again after its fork was undone: a new fork.
    c.batch_execute(
        "INSERT INTO sv VALUES (3); ROLLBACK TO a; INSERT INTO sv VALUES (4);
         INSERT INTO other VALUES (8)",
    )
    .await
    .expect("again");
    // The same in the extended protocol.
    c.execute("SAVEPOINT b", &[]).await.expect("savepoint");
    c.execute("INSERT INTO sv VALUES ($1)", &[&5i32])
        .await
        .expect("insert");
    assert!(c.execute("SELECT 1/0", &[]).await.is_err());
    c.execute("ROLLBACK TO SAVEPOINT b", &[])
        .await
        .expect("extended rollback to");
    c.execute("INSERT INTO sv VALUES ($1)", &[&6i32])
        .await
        .expect("the block runs again");
    c.execute("ROLLBACK TO SAVEPOINT b", &[])
        .await
        .expect("rollback to, not failed");
    c.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(
        rows(&c, "SELECT id FROM sv ORDER BY id").await,
        vec![vec!["1"], vec!["4"]]
    );
    assert_eq!(rows(&c, "SELECT id FROM other").await, vec![vec!["8"]]);
    let e = c
        .batch_execute("BEGIN; ROLLBACK TO SAVEPOINT nowhere")
        .await
        .expect_err("unknown savepoint");
    assert_eq!(sqlstate(&e), "3B001");
    c.batch_execute("ROLLBACK").await.expect("rollback");
}

#[tokio::test]
async fn concurrent_appends_commit_and_a_conflicting_rewrite_fails_with_40001() {
    let s = Server::start();
    let a = s.client().await;
    let b = s.client().await;
    a.batch_execute("CREATE TABLE cc (id INT, v TEXT); INSERT INTO cc VALUES (1, 'start')")
        .await
        .expect("setup");

    a.batch_execute("BEGIN; INSERT INTO cc VALUES (2, 'a')")
        .await
        .expect("a");
    b.batch_execute("BEGIN; INSERT INTO cc VALUES (3, 'b')")
        .await
        .expect("b");
    a.batch_execute("COMMIT").await.expect("a commits");
    b.batch_execute("COMMIT").await.expect("b commits");
    assert_eq!(rows(&a, "SELECT count(*) FROM cc").await, vec![vec!["3"]]);

    a.batch_execute("BEGIN; UPDATE cc SET v = 'by a' WHERE id = 1")
        .await
        .expect("a updates");
    b.batch_execute("BEGIN; UPDATE cc SET v = 'by b' WHERE id = 1")
        .await
        .expect("b updates");
    a.batch_execute("COMMIT").await.expect("a commits first");
    let e = b.batch_execute("COMMIT").await.expect_err("b conflicts");
    assert_eq!(sqlstate(&e), "40001");
    // The failed COMMIT ended the block, as in PostgreSQL: the session goes on.
    assert_eq!(
        rows(&b, "SELECT v FROM cc WHERE id = 1").await,
        vec![vec!["by a"]]
    );
    assert_eq!(rows(&b, "SELECT count(*) FROM cc").await, vec![vec!["3"]]);
    drop((a, b));
    assert!(forks_gone(&s.data_dir).await);
}

#[tokio::test]
async fn copy_and_prepared_statements_in_a_block() {
    let s = Server::start();
    let mut c = s.client().await;
    c.batch_execute("CREATE TABLE cp (id INT, name TEXT)")
        .await
        .expect("setup");
    let insert = c
        .prepare("INSERT INTO cp VALUES ($1, $2)")
        .await
        .expect("prepare");
    let count = c.prepare("SELECT count(*) FROM cp").await.expect("prepare");

    for commit in [false, true] {
        let tx = c.transaction().await.expect("begin");
        let sink = tx
            .copy_in("COPY cp FROM STDIN (FORMAT csv)")
            .await
            .expect("copy");
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(b"1,a\n2,b\n"))
            .await
            .expect("send");
        assert_eq!(sink.finish().await.expect("copied"), 2);
        tx.execute(&insert, &[&3i32, &"c"]).await.expect("insert");
        let seen: i64 = tx.query_one(&count, &[]).await.expect("count").get(0);
        assert_eq!(seen, 3, "the block reads its own rows");
        if commit {
            tx.commit().await.expect("commit");
        } else {
            tx.rollback().await.expect("rollback");
        }
        let after: i64 = c.query_one(&count, &[]).await.expect("count").get(0);
        assert_eq!(after, if commit { 3 } else { 0 });
    }
}

#[tokio::test]
async fn a_block_is_gone_after_kill_9_and_a_committed_one_stays() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute("CREATE TABLE k (id INT)")
        .await
        .expect("create");
    c.batch_execute("BEGIN; INSERT INTO k VALUES (1); COMMIT")
        .await
        .expect("committed block");
    c.batch_execute("BEGIN; INSERT INTO k VALUES (2); DELETE FROM k WHERE id = 1")
        .await
        .expect("open block");
    assert_eq!(forks(&data), 1);
    let data = s.kill9();

    let s = Server::start_in(&data);
    let c = s.client().await;
    assert_eq!(rows(&c, "SELECT id FROM k").await, vec![vec!["1"]]);
    assert_eq!(
        forks(&data),
        0,
        "start-up deletes the forks of abandoned blocks"
    );
}

#[tokio::test]
async fn catalog_changes_in_a_block_commit_at_once() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE gone (id INT); CREATE TABLE stays (id INT)")
        .await
        .expect("setup");
    // dbt's table materialisation: a table built, renamed and the old one dropped in a
    // block, next to a write that is part of it.
    c.batch_execute(
        "BEGIN; INSERT INTO gone VALUES (1); INSERT INTO stays VALUES (2);
         DROP TABLE gone; CREATE TABLE made AS SELECT count(*) AS n FROM stays;
         ALTER TABLE made RENAME TO renamed; END",
    )
    .await
    .expect("block with catalog changes");
    assert_eq!(rows(&c, "SELECT id FROM stays").await, vec![vec!["2"]]);
    // CREATE TABLE AS committed at once, so it read committed rows only, not the block's.
    assert_eq!(rows(&c, "SELECT n FROM renamed").await, vec![vec!["0"]]);
    assert!(c.batch_execute("SELECT * FROM gone").await.is_err());
    drop(c);
    assert!(forks_gone(&s.data_dir).await);
}
