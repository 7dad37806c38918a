//! Materialised views: CREATE / REFRESH / DROP MATERIALIZED VIEW over the wire, their
//! stored results across restarts, the refresh bookkeeping of
//! `tessera.materialized_views`, dependencies, schedules and PostgreSQL's errors.

use std::process::Command;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::common::{rows, sqlstate, Server};

fn tags(msgs: &[SimpleQueryMessage]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

/// `[populated, rows, status, version, last_error]` of a view.
async fn state(c: &Client, name: &str) -> Vec<String> {
    let mut r = rows(
        c,
        &format!(
            "SELECT populated, rows, status, version, last_error \
             FROM tessera.materialized_views WHERE name = '{name}'"
        ),
    )
    .await;
    assert_eq!(r.len(), 1, "one row for {name}: {r:?}");
    r.remove(0)
}

async fn error_of(c: &Client, sql: &str) -> tokio_postgres::Error {
    c.batch_execute(sql)
        .await
        .expect_err(&format!("{sql} must fail"))
}

#[tokio::test]
async fn create_select_refresh_and_drop() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE orders (id INT, customer TEXT, amount BIGINT);
         INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 5), (3, 'ann', 7);",
    )
    .await
    .expect("setup");
    let created = c
        .simple_query(
            "CREATE MATERIALIZED VIEW spend AS \
             SELECT customer, sum(amount) AS total FROM orders GROUP BY customer",
        )
        .await
        .expect("create");
    assert_eq!(tags(&created), vec![2], "tagged SELECT 2, as in PostgreSQL");
    assert_eq!(
        rows(&c, "SELECT customer, total FROM spend ORDER BY customer").await,
        vec![vec!["ann", "17"], vec!["bob", "5"]]
    );

    c.batch_execute("INSERT INTO orders VALUES (4, 'cy', 1)")
        .await
        .expect("insert");
    assert_eq!(
        rows(&c, "SELECT count(*) FROM spend").await,
        vec![vec!["2"]],
        "a materialised view keeps its rows until refreshed"
    );
    c.batch_execute("REFRESH MATERIALIZED VIEW spend")
        .await
        .expect("refresh");
    assert_eq!(
        rows(&c, "SELECT customer, total FROM spend ORDER BY customer").await,
        vec![vec!["ann", "17"], vec!["bob", "5"], vec!["cy", "1"]]
    );
    c.batch_execute("INSERT INTO orders VALUES (5, 'dee', 2)")
        .await
        .expect("insert");
    c.batch_execute("REFRESH MATERIALIZED VIEW CONCURRENTLY public.spend")
        .await
        .expect("refresh concurrently");
    assert_eq!(
        rows(&c, "SELECT count(*) FROM spend").await,
        vec![vec!["4"]]
    );
    // The extended protocol (prepared statements) too.
    c.execute("REFRESH MATERIALIZED VIEW spend", &[])
        .await
        .expect("extended refresh");
    let total: i64 = c
        .query_one("SELECT total FROM spend WHERE customer = $1", &[&"ann"])
        .await
        .expect("query")
        .get(0);
    assert_eq!(total, 17);

    for write in [
        "INSERT INTO spend VALUES ('x', 1)",
        "DELETE FROM spend",
        "UPDATE spend SET total = 0",
    ] {
        let e = error_of(&c, write).await;
        assert_eq!(sqlstate(&e), "42809", "{write}: {e:?}");
    }

    let dropped = c
        .simple_query("DROP MATERIALIZED VIEW spend")
        .await
        .expect("drop");
    assert_eq!(tags(&dropped), vec![0]);
    assert_eq!(
        sqlstate(&error_of(&c, "SELECT * FROM spend").await),
        "42P01"
    );
    let left = std::fs::read_dir(s.data_dir.join("matviews"))
        .expect("matviews dir")
        .count();
    assert_eq!(left, 0, "DROP removes the stored result");
}

#[tokio::test]
async fn postgres_errors() {
    let s = Server::start();
    let c = s.client().await;
    let e = error_of(&c, "CREATE MATERIALIZED VIEW m AS SELECT * FROM missing").await;
    assert_eq!(sqlstate(&e), "42P01");
    c.batch_execute(
        "CREATE TABLE t (x INT);
         INSERT INTO t VALUES (1), (2);
         CREATE MATERIALIZED VIEW m AS SELECT x FROM t;",
    )
    .await
    .expect("setup");
    assert_eq!(
        sqlstate(&error_of(&c, "CREATE MATERIALIZED VIEW m AS SELECT 1 AS x").await),
        "42P07"
    );
    c.batch_execute("CREATE MATERIALIZED VIEW IF NOT EXISTS m AS SELECT 3 AS x")
        .await
        .expect("if not exists");
    assert_eq!(
        rows(&c, "SELECT x FROM m ORDER BY x").await,
        vec![vec!["1"], vec!["2"]],
        "IF NOT EXISTS leaves the existing view alone"
    );
    assert_eq!(
        sqlstate(&error_of(&c, "CREATE TABLE m (y INT)").await),
        "42P07"
    );

    assert_eq!(
        sqlstate(&error_of(&c, "DROP MATERIALIZED VIEW gone").await),
        "42P01"
    );
    c.batch_execute("DROP MATERIALIZED VIEW IF EXISTS gone")
        .await
        .expect("if exists");
    assert_eq!(
        sqlstate(&error_of(&c, "REFRESH MATERIALIZED VIEW gone").await),
        "42P01"
    );
    for (sql, hint) in [
        ("DROP TABLE m", "Use DROP MATERIALIZED VIEW"),
        ("DROP VIEW m", "Use DROP MATERIALIZED VIEW"),
        ("DROP MATERIALIZED VIEW t", "Use DROP TABLE"),
    ] {
        let e = error_of(&c, sql).await;
        assert_eq!(sqlstate(&e), "42809", "{sql}");
        let db = e.as_db_error().expect("db error");
        assert!(
            db.hint().is_some_and(|h| h.starts_with(hint)),
            "{sql}: {db:?}"
        );
    }
    let e = error_of(&c, "DROP TABLE m").await;
    assert_eq!(
        e.as_db_error().expect("db error").message(),
        "\"m\" is not a table"
    );
    assert_eq!(
        sqlstate(&error_of(&c, "REFRESH MATERIALIZED VIEW t").await),
        "42809"
    );

    // Unpopulated views: WITH NO DATA, and REFRESH ... WITH NO DATA.
    let created = c
        .simple_query("CREATE MATERIALIZED VIEW lazy AS SELECT x FROM t WITH NO DATA")
        .await
        .expect("with no data");
    assert_eq!(tags(&created), vec![0]);
    let e = error_of(&c, "SELECT * FROM lazy").await;
    assert_eq!(sqlstate(&e), "55000");
    let db = e.as_db_error().expect("db error");
    assert_eq!(
        db.message(),
        "materialized view \"lazy\" has not been populated"
    );
    assert!(db
        .hint()
        .is_some_and(|h| h.contains("REFRESH MATERIALIZED VIEW")));
    c.batch_execute("REFRESH MATERIALIZED VIEW lazy")
        .await
        .expect("populate");
    assert_eq!(rows(&c, "SELECT count(*) FROM lazy").await, vec![vec!["2"]]);
    c.batch_execute("REFRESH MATERIALIZED VIEW lazy WITH NO DATA")
        .await
        .expect("unpopulate");
    assert_eq!(sqlstate(&error_of(&c, "SELECT * FROM lazy").await), "55000");
    assert_eq!(state(&c, "lazy").await[..3], ["f", "0", "unpopulated"]);

    for (sql, code) in [
        (
            "CREATE MATERIALIZED VIEW o WITH (fillfactor = 10) AS SELECT 1 AS a",
            "22023",
        ),
        (
            "CREATE MATERIALIZED VIEW o WITH (refresh_interval = 'soon') AS SELECT 1 AS a",
            "22023",
        ),
        (
            "CREATE MATERIALIZED VIEW o (a, b) AS SELECT 1 AS a",
            "42601",
        ),
        (
            "CREATE OR REPLACE MATERIALIZED VIEW m AS SELECT 1 AS x",
            "0A000",
        ),
        ("ALTER TABLE m RENAME TO m2", "0A000"),
    ] {
        assert_eq!(sqlstate(&error_of(&c, sql).await), code, "{sql}");
    }
    assert_eq!(sqlstate(&error_of(&c, "SELECT * FROM o").await), "42P01");

    // Dependencies: a relation a materialised view reads cannot go without CASCADE.
    c.batch_execute(
        "CREATE VIEW v AS SELECT x FROM t WHERE x > 1;
         CREATE MATERIALIZED VIEW over_view AS SELECT count(*) AS n FROM v;",
    )
    .await
    .expect("view chain");
    let e = error_of(&c, "DROP VIEW v").await;
    assert_eq!(sqlstate(&e), "2BP01");
    let e = error_of(&c, "DROP TABLE t").await;
    assert_eq!(sqlstate(&e), "2BP01");
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("materialized view")),
        "{e:?}"
    );
    c.batch_execute("DROP TABLE t CASCADE")
        .await
        .expect("cascade");
    for gone in ["t", "m", "lazy", "v", "over_view"] {
        let e = error_of(&c, &format!("SELECT * FROM {gone}")).await;
        assert_eq!(sqlstate(&e), "42P01", "{gone}");
    }
    assert_eq!(
        rows(&c, "SELECT count(*) FROM tessera.materialized_views").await,
        vec![vec!["0"]]
    );
}

#[tokio::test]
async fn results_and_refresh_state_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE t (x INT);
         INSERT INTO t VALUES (1), (2), (3);
         CREATE MATERIALIZED VIEW doubled (k, twice) AS SELECT x, x * 2 FROM t;
         CREATE MATERIALIZED VIEW lazy AS SELECT x FROM t WITH NO DATA;",
    )
    .await
    .expect("setup");
    let before = state(&c, "doubled").await;
    assert_eq!(before, ["t", "3", "refreshed", "1", "NULL"]);
    assert!(s.stop().success());

    let s = Server::start_in(&data);
    let c = s.client().await;
    assert_eq!(
        rows(&c, "SELECT k, twice FROM doubled ORDER BY k").await,
        vec![vec!["1", "2"], vec!["2", "4"], vec!["3", "6"]]
    );
    assert_eq!(state(&c, "doubled").await, before);
    assert_eq!(sqlstate(&error_of(&c, "SELECT * FROM lazy").await), "55000");

    // The input versions recorded before the restart still hold: nothing to do. The
    // duration shown stays that of the refresh that computed the result.
    let timing = "SELECT duration_ms, last_refresh, last_attempt \
                  FROM tessera.materialized_views WHERE name = 'doubled'";
    let computed = rows(&c, timing).await;
    c.batch_execute("REFRESH MATERIALIZED VIEW doubled")
        .await
        .expect("refresh");
    assert_eq!(
        state(&c, "doubled").await,
        ["t", "3", "up to date", "1", "NULL"]
    );
    let checked = rows(&c, timing).await;
    assert_eq!(checked[0][..2], computed[0][..2]);
    assert_ne!(checked[0][2], computed[0][2], "the attempt is recorded");
    c.batch_execute("INSERT INTO t VALUES (4); REFRESH MATERIALIZED VIEW doubled")
        .await
        .expect("insert and refresh");
    assert_eq!(
        state(&c, "doubled").await,
        ["t", "4", "refreshed", "2", "NULL"]
    );
    let data = s.kill9();

    let s = Server::start_in(&data);
    let c = s.client().await;
    assert_eq!(
        rows(&c, "SELECT max(twice) FROM doubled").await,
        vec![vec!["8"]],
        "an acknowledged refresh survives kill -9"
    );
    // The stored result is a plain Delta table.
    let dir = std::fs::read_dir(data.join("matviews"))
        .expect("matviews dir")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("doubled-"))
        .expect("result directory");
    assert!(dir
        .path()
        .join("_delta_log/00000000000000000002.json")
        .exists());
}

#[tokio::test]
async fn refresh_with_unchanged_inputs_does_no_work() {
    let s = Server::start();
    let c = s.client().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let csv = tmp.path().join("crm.csv");
    std::fs::write(&csv, "id,email\n1,a@x.com\n").expect("csv");
    c.batch_execute(&format!(
        "CREATE TABLE t (x INT);
         INSERT INTO t VALUES (1);
         CREATE EXTERNAL TABLE crm STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true');
         CREATE MATERIALIZED VIEW both_inputs AS
           SELECT (SELECT count(*) FROM t) AS tables, (SELECT count(*) FROM crm) AS contacts;
         CREATE MATERIALIZED VIEW clock AS SELECT now() AS at;",
        csv.display()
    ))
    .await
    .expect("setup");
    assert_eq!(
        state(&c, "both_inputs").await,
        ["t", "1", "refreshed", "1", "NULL"]
    );
    let inputs = rows(
        &c,
        "SELECT inputs FROM tessera.materialized_views WHERE name = 'both_inputs'",
    )
    .await;
    assert!(
        inputs[0][0].contains("t v1") && inputs[0][0].contains("crm files:"),
        "{inputs:?}"
    );

    c.batch_execute("REFRESH MATERIALIZED VIEW both_inputs")
        .await
        .expect("refresh");
    assert_eq!(
        state(&c, "both_inputs").await,
        ["t", "1", "up to date", "1", "NULL"]
    );
    // A changed table is a changed input...
    c.batch_execute("INSERT INTO t VALUES (2); REFRESH MATERIALIZED VIEW both_inputs")
        .await
        .expect("refresh");
    assert_eq!(state(&c, "both_inputs").await[2..4], ["refreshed", "2"]);
    // ... and so is a changed source file.
    std::fs::write(&csv, "id,email\n1,a@x.com\n2,b@y.com\n").expect("rewrite");
    c.batch_execute("REFRESH MATERIALIZED VIEW both_inputs")
        .await
        .expect("refresh");
    assert_eq!(state(&c, "both_inputs").await[2..4], ["refreshed", "3"]);
    assert_eq!(
        rows(&c, "SELECT tables, contacts FROM both_inputs").await,
        vec![vec!["2", "2"]]
    );

    // A query calling now() has no version to compare: it always runs.
    c.batch_execute("REFRESH MATERIALIZED VIEW clock")
        .await
        .expect("refresh");
    assert_eq!(state(&c, "clock").await[2..4], ["refreshed", "2"]);
}

#[tokio::test]
async fn failed_refresh_keeps_contents_and_records_the_error() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE d (n INT);
         INSERT INTO d VALUES (1), (2);
         CREATE MATERIALIZED VIEW inverse AS SELECT n, 10 / n AS q FROM d;
         INSERT INTO d VALUES (0);",
    )
    .await
    .expect("setup");
    let e = error_of(&c, "REFRESH MATERIALIZED VIEW inverse").await;
    assert_eq!(sqlstate(&e), "22012", "{e:?}");
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("\"inverse\"")),
        "the error names the view: {e:?}"
    );
    assert_eq!(
        rows(&c, "SELECT n, q FROM inverse ORDER BY n").await,
        vec![vec!["1", "10"], vec!["2", "5"]],
        "the previous contents stay"
    );
    let st = state(&c, "inverse").await;
    assert_eq!(st[..4], ["t", "2", "failed", "1"]);
    assert!(st[4].to_lowercase().contains("divide by zero"), "{st:?}");

    // The row that failed it gone again, the refresh finds nothing to add to the
    // stored result: its version stays.
    c.batch_execute("DELETE FROM d WHERE n = 0; REFRESH MATERIALIZED VIEW inverse")
        .await
        .expect("refresh after the fix");
    assert_eq!(
        state(&c, "inverse").await,
        ["t", "2", "refreshed", "1", "NULL"]
    );

    // CREATE whose first refresh fails creates nothing.
    let e = error_of(
        &c,
        "CREATE MATERIALIZED VIEW broken AS SELECT 1 / (n - n) AS q FROM d",
    )
    .await;
    assert_eq!(sqlstate(&e), "22012");
    assert_eq!(
        sqlstate(&error_of(&c, "SELECT * FROM broken").await),
        "42P01"
    );
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) FROM tessera.materialized_views WHERE name = 'broken'"
        )
        .await,
        vec![vec!["0"]]
    );
}

#[tokio::test]
async fn refresh_brings_input_views_up_to_date_first() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE events (u TEXT, n INT);
         INSERT INTO events VALUES ('a', 1), ('b', 2);
         CREATE MATERIALIZED VIEW per_user AS SELECT u, sum(n) AS total FROM events GROUP BY u;
         CREATE VIEW heavy AS SELECT u FROM per_user WHERE total > 1;
         CREATE MATERIALIZED VIEW heavy_count AS SELECT count(*) AS users FROM heavy;",
    )
    .await
    .expect("setup");
    assert_eq!(
        rows(&c, "SELECT users FROM heavy_count").await,
        vec![vec!["1"]]
    );

    c.batch_execute("INSERT INTO events VALUES ('c', 5)")
        .await
        .expect("insert");
    c.batch_execute("REFRESH MATERIALIZED VIEW heavy_count")
        .await
        .expect("refresh");
    assert_eq!(
        rows(&c, "SELECT users FROM heavy_count").await,
        vec![vec!["2"]],
        "per_user, read through a view, was refreshed first"
    );
    assert_eq!(
        state(&c, "per_user").await[..4],
        ["t", "3", "refreshed", "2"]
    );

    c.batch_execute("REFRESH MATERIALIZED VIEW heavy_count")
        .await
        .expect("refresh");
    assert_eq!(state(&c, "per_user").await[2], "up to date");
    assert_eq!(state(&c, "heavy_count").await[2], "up to date");

    // An input that cannot be refreshed fails its dependents, which keep their rows.
    c.batch_execute(
        "CREATE TABLE divisors (d INT);
         INSERT INTO divisors VALUES (1);
         CREATE MATERIALIZED VIEW ratios AS SELECT 6 / d AS r FROM divisors;
         CREATE MATERIALIZED VIEW ratio_sum AS SELECT sum(r) AS s FROM ratios;
         INSERT INTO divisors VALUES (0);",
    )
    .await
    .expect("failing chain");
    let e = error_of(&c, "REFRESH MATERIALIZED VIEW ratio_sum").await;
    assert_eq!(sqlstate(&e), "22012");
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("\"ratios\"")),
        "names the input that failed: {e:?}"
    );
    assert_eq!(rows(&c, "SELECT s FROM ratio_sum").await, vec![vec!["6"]]);
    assert_eq!(state(&c, "ratios").await[2], "failed");
    assert_eq!(state(&c, "ratio_sum").await[2], "failed");

    let e = error_of(&c, "DROP MATERIALIZED VIEW per_user").await;
    assert_eq!(sqlstate(&e), "2BP01");
    c.batch_execute("DROP MATERIALIZED VIEW per_user CASCADE")
        .await
        .expect("cascade");
    for gone in ["per_user", "heavy", "heavy_count"] {
        let e = error_of(&c, &format!("SELECT * FROM {gone}")).await;
        assert_eq!(sqlstate(&e), "42P01", "{gone}");
    }
}

#[tokio::test]
async fn listed_in_pg_matviews_and_psql() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE customers (id INT, vip BOOLEAN);
         INSERT INTO customers VALUES (1, true), (2, false);
         CREATE MATERIALIZED VIEW vips AS SELECT id FROM customers WHERE vip;
         CREATE MATERIALIZED VIEW later AS SELECT id FROM customers WITH NO DATA;",
    )
    .await
    .expect("setup");
    assert_eq!(
        rows(
            &c,
            "SELECT schemaname, matviewname, ispopulated, definition FROM pg_matviews ORDER BY matviewname"
        )
        .await,
        vec![
            vec!["public", "later", "f", "SELECT id FROM customers"],
            vec!["public", "vips", "t", "SELECT id FROM customers WHERE vip"],
        ]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT relname, relkind FROM pg_catalog.pg_class \
             WHERE relname IN ('customers', 'vips') ORDER BY relname"
        )
        .await,
        vec![vec!["customers", "r"], vec!["vips", "m"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = 'public'"
        )
        .await,
        vec![vec!["customers"]]
    );

    let psql = |meta: &str| {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &s.port.to_string()])
            .args(["-U", "tessera", "-d", "tessera", "-X", "-c", meta])
            .env("PGPASSWORD", crate::common::PASSWORD)
            .output()
            .expect("psql is installed");
        assert!(
            out.status.success(),
            "{meta}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dm = psql("\\dm");
    assert!(
        dm.contains("vips") && dm.contains("later") && dm.contains("materialized view"),
        "{dm}"
    );
    assert!(!dm.contains("customers"), "{dm}");
    let dt = psql("\\dt");
    assert!(dt.contains("customers") && !dt.contains("vips"), "{dt}");
    let d = psql("\\d vips");
    assert!(d.contains("Materialized view") && d.contains("id"), "{d}");
}

#[tokio::test]
async fn readers_see_the_old_or_the_new_result_never_a_mix() {
    const ROWS: usize = 3000;
    const GENERATIONS: i32 = 8;
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE src (id BIGINT, gen INT);
         INSERT INTO src SELECT value, 0 FROM generate_series(1, {ROWS});
         CREATE MATERIALIZED VIEW snapshot AS SELECT id, gen FROM src;"
    ))
    .await
    .expect("setup");

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let reader = s.client().await;
        let done = done.clone();
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Acquire);
                let r = rows(&reader, "SELECT count(*), min(gen), max(gen) FROM snapshot").await;
                assert_eq!(r[0][0], ROWS.to_string(), "a partial result: {r:?}");
                assert_eq!(r[0][1], r[0][2], "two generations mixed: {r:?}");
                seen.push(r[0][1].parse::<i32>().expect("gen"));
                if finished {
                    return seen;
                }
            }
        }));
    }
    for generation in 1..=GENERATIONS {
        c.batch_execute(&format!(
            "UPDATE src SET gen = {generation}; REFRESH MATERIALIZED VIEW snapshot"
        ))
        .await
        .expect("update and refresh");
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    for r in readers {
        let seen = r.await.expect("reader");
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "a reader went back in time: {seen:?}"
        );
        assert_eq!(seen.last(), Some(&GENERATIONS));
    }
}

#[tokio::test]
async fn refresh_interval_is_run_by_the_server() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE signups (id INT);
         INSERT INTO signups VALUES (1);
         CREATE MATERIALIZED VIEW signup_count WITH (refresh_interval = '1 second') AS
           SELECT count(*) AS n FROM signups;
         INSERT INTO signups VALUES (2), (3);",
    )
    .await
    .expect("setup");
    assert_eq!(
        rows(
            &c,
            "SELECT refresh_interval FROM tessera.materialized_views WHERE name = 'signup_count'"
        )
        .await,
        vec![vec!["1 second"]]
    );
    // Polls until the scheduler has run (it checks once a second); the limit is only
    // there so a broken scheduler fails the test rather than hanging it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if rows(&c, "SELECT n FROM signup_count").await == vec![vec!["3"]] {
            break;
        }
        assert!(Instant::now() < deadline, "the scheduled refresh never ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(state(&c, "signup_count").await[..2], ["t", "1"]);
}

/// `(unified_id, change, version)` of a segment's recorded changes, in order.
async fn changes(c: &Client, segment: &str) -> Vec<Vec<String>> {
    rows(
        c,
        &format!(
            "SELECT unified_id, change, version FROM tessera.segment_changes \
             WHERE segment = '{segment}' ORDER BY version, change, unified_id"
        ),
    )
    .await
}

#[tokio::test]
async fn segments_record_who_entered_and_who_left() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(tmp.path());
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE scores (unified_id TEXT, score INT);
         INSERT INTO scores VALUES ('a', 9), ('b', 7), ('c', 1);
         CREATE MATERIALIZED VIEW top WITH (segment = true) AS
           SELECT unified_id, score FROM scores WHERE score > 5;",
    )
    .await
    .expect("create");
    // Creating a segment fills it: everyone in it entered.
    assert_eq!(
        changes(&c, "top").await,
        vec![vec!["a", "entered", "1"], vec!["b", "entered", "1"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT segment FROM tessera.materialized_views WHERE name = 'top'"
        )
        .await,
        vec![vec!["t"]]
    );

    // A refresh with nothing changed records nothing.
    c.batch_execute("REFRESH MATERIALIZED VIEW top")
        .await
        .expect("refresh");
    assert_eq!(changes(&c, "top").await.len(), 2);

    c.batch_execute(
        "UPDATE scores SET score = 2 WHERE unified_id = 'a';
         UPDATE scores SET score = 8 WHERE unified_id = 'c';
         UPDATE scores SET score = 6 WHERE unified_id = 'b';
         REFRESH MATERIALIZED VIEW top;",
    )
    .await
    .expect("change and refresh");
    // b stayed in (its row changed, its membership did not).
    assert_eq!(
        changes(&c, "top").await[2..],
        [vec!["c", "entered", "2"], vec!["a", "exited", "2"]]
    );
    // The version is the segment's stored version after the refresh.
    assert_eq!(
        rows(
            &c,
            "SELECT version FROM tessera.materialized_views WHERE name = 'top'"
        )
        .await,
        vec![vec!["2"]]
    );
    assert_eq!(
        rows(&c, "SELECT unified_id FROM top ORDER BY 1").await,
        vec![vec!["b"], vec!["c"]]
    );

    // The feed is read-only and survives a restart.
    let e = error_of(&c, "DELETE FROM tessera.segment_changes").await;
    assert_eq!(sqlstate(&e), "42809", "{e}");
    let e = error_of(
        &c,
        "INSERT INTO tessera.segment_changes SELECT * FROM tessera.segment_changes",
    )
    .await;
    assert_eq!(sqlstate(&e), "42809", "{e}");
    drop(c);
    s.kill9();
    let s = Server::start_in(tmp.path());
    let c = s.client().await;
    assert_eq!(changes(&c, "top").await.len(), 4);
    c.batch_execute(
        "DELETE FROM scores WHERE unified_id = 'b';
         REFRESH MATERIALIZED VIEW top;",
    )
    .await
    .expect("refresh after restart");
    assert_eq!(changes(&c, "top").await[4..], [vec!["b", "exited", "3"]]);

    // Dropping a segment drops its history; created again, it starts a new one.
    c.batch_execute(
        "DROP MATERIALIZED VIEW top;
         CREATE MATERIALIZED VIEW top WITH (segment = true) AS
           SELECT unified_id FROM scores WHERE score > 5;",
    )
    .await
    .expect("drop and create again");
    assert_eq!(changes(&c, "top").await, vec![vec!["c", "entered", "1"]]);
}

#[tokio::test]
async fn a_segment_needs_a_unified_id_column() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE people (id TEXT)")
        .await
        .expect("table");
    let e = error_of(
        &c,
        "CREATE MATERIALIZED VIEW s WITH (segment = true) AS SELECT id FROM people",
    )
    .await;
    assert_eq!(sqlstate(&e), "42703", "{e}");
    let message = e.as_db_error().map(|d| d.message().to_string());
    assert!(message.is_some_and(|m| m.contains("unified_id")), "{e:?}");
    let e = error_of(
        &c,
        "CREATE MATERIALIZED VIEW s WITH (segment = 'perhaps') AS SELECT id AS unified_id FROM people",
    )
    .await;
    assert_eq!(sqlstate(&e), "22023", "{e}");
    assert!(rows(&c, "SELECT name FROM tessera.materialized_views")
        .await
        .is_empty());
    assert!(rows(&c, "SELECT * FROM tessera.segment_changes")
        .await
        .is_empty());
}
