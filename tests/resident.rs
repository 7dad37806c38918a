//! Materialised views with lookup keys (`ORDER BY` columns) served from memory: the same
//! answers as the base table gives, for lookups, ranges, joins, limits and NULL keys, in
//! both protocols, after a refresh, and masked for roles without the PII privilege.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::common::{explain, rows, Server};

const SETUP: &str = "
CREATE TABLE people (id TEXT, kind TEXT, email TEXT, score INT);
COMMENT ON COLUMN people.email IS 'pii:email';
INSERT INTO people SELECT 'p' || lpad(CAST(value AS TEXT), 5, '0'),
    CASE WHEN value % 3 = 0 THEN 'email' ELSE 'phone' END,
    'user' || CAST(value AS TEXT) || '@mail.test', CAST(value % 100 AS INT)
  FROM generate_series(1, 20000);
INSERT INTO people VALUES (NULL, 'email', 'nobody@mail.test', 1);
CREATE MATERIALIZED VIEW lookup AS SELECT * FROM people ORDER BY id;
CREATE MATERIALIZED VIEW by_kind AS SELECT kind, id, score FROM people ORDER BY kind, id;
CREATE ROLE analyst LOGIN PASSWORD 'analyst-pw';
GRANT SELECT ON lookup TO analyst;
";

/// Queries of the views; the same text over `people` gives the expected rows.
const QUERIES: &[&str] = &[
    "SELECT * FROM lookup WHERE id = 'p00042'",
    "SELECT id, score FROM lookup WHERE id >= 'p19990' ORDER BY id",
    "SELECT id FROM lookup WHERE id < 'p00003' ORDER BY id",
    "SELECT id FROM lookup WHERE 'p00003' > id ORDER BY id",
    "SELECT count(*) FROM lookup WHERE id > 'p10000' AND score = 7",
    "SELECT count(*), count(id), sum(score) FROM lookup",
    "SELECT email FROM lookup WHERE id IS NULL",
    "SELECT id FROM lookup WHERE id IN ('p00001', 'p00002') ORDER BY id",
    "SELECT id FROM lookup WHERE id = 'nobody'",
    "SELECT id FROM lookup WHERE id = 'p00042' LIMIT 1",
    "SELECT id FROM by_kind WHERE kind = 'email' AND id > 'p19980' ORDER BY id",
    "SELECT count(*) FROM by_kind WHERE kind = 'phone'",
    "SELECT l.email, k.score FROM by_kind k JOIN lookup l ON l.id = k.id \
     WHERE k.kind = 'email' AND k.id = 'p00300'",
    "SELECT l.id FROM by_kind k JOIN lookup l ON l.id = k.id \
     WHERE k.kind = 'email' AND k.id BETWEEN 'p00290' AND 'p00310' ORDER BY l.id",
    "SELECT id, score FROM lookup ORDER BY id LIMIT 10",
    "SELECT id FROM lookup ORDER BY id DESC LIMIT 3",
    "SELECT kind, id FROM by_kind ORDER BY kind, id LIMIT 5 OFFSET 9000",
];

fn on_base_table(sql: &str) -> String {
    sql.replace("lookup", "people").replace("by_kind", "people")
}

/// Scan the view until its scans read memory (its first scan starts loading it).
async fn wait_resident(c: &Client, view: &str) {
    // Not count(*): the scan's row count answers that without reading it.
    let sql = format!("SELECT * FROM {view} LIMIT 1");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        rows(c, &sql).await;
        if explain(c, &sql).await.contains("ResidentExec") {
            return;
        }
        assert!(Instant::now() < deadline, "{view} never became resident");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_same_as_base(c: &Client) {
    let mut empty = 0;
    for sql in QUERIES {
        let expected = rows(c, &on_base_table(sql)).await;
        empty += usize::from(expected.is_empty());
        assert_eq!(rows(c, sql).await, expected, "{sql}");
    }
    assert_eq!(empty, 1, "only the lookup of a missing key finds nothing");
    let lookup = "SELECT email, score FROM lookup WHERE id = $1";
    for id in ["p00042", "p00043", "p20000", "missing"] {
        let read = |sql: String| async move {
            c.query(&sql, &[&id])
                .await
                .expect("prepared lookup")
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i32>(1)))
                .collect::<Vec<_>>()
        };
        let expected = read(on_base_table(lookup)).await;
        assert_eq!(read(lookup.to_string()).await, expected, "{id}");
        assert_eq!(expected.len(), usize::from(id != "missing"), "{id}");
    }
    // The same statements again and again with other values: once the views are
    // resident they run a generic plan, whose join gets a fresh dynamic filter (the key
    // bounds of its build side) at each execution.
    let join = "SELECT l.email, k.score FROM by_kind k JOIN lookup l ON l.id = k.id \
                WHERE k.kind = $1 AND k.id = $2";
    let range = "SELECT id FROM lookup WHERE id >= $1 AND id < $2 ORDER BY id";
    let joined = [
        ("email", "p00300"),
        ("phone", "p00301"),
        ("email", "p00003"),
        ("email", "p00301"),
        ("phone", "missing"),
        ("email", "p00300"),
    ];
    let ranges = [
        ("p00010", "p00014"),
        ("p19998", "p2"),
        ("p00100", "p00100"),
        ("p00010", "p00012"),
    ];
    let mut found = 0;
    for (sql, pairs) in [(join, &joined[..]), (range, &ranges[..])] {
        for &(a, b) in pairs {
            let read = |sql: String| async move {
                c.query(&sql, &[&a, &b])
                    .await
                    .expect("prepared")
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
            };
            let expected = read(on_base_table(sql)).await;
            found += expected.len();
            assert_eq!(read(sql.to_string()).await, expected, "{sql} with {a}, {b}");
        }
    }
    assert_eq!(
        found,
        4 + 4 + 2 + 2,
        "four joins find a row; ranges find 4, 2, 0, 2"
    );
}

#[tokio::test]
async fn lookups_of_resident_views_answer_as_the_table_does() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(SETUP).await.expect("setup");
    wait_resident(&c, "lookup").await;
    wait_resident(&c, "by_kind").await;

    // A key lookup is narrowed by binary search at planning time (the rows it finds are
    // not shown: see the unit tests of `narrow`); other scans read all rows.
    let plan = explain(&c, "SELECT id FROM by_kind WHERE score = 7").await;
    assert!(plan.contains("ResidentExec: all rows"), "{plan}");
    let plan = explain(&c, "SELECT * FROM lookup WHERE id = 'p00042'").await;
    assert!(plan.contains("ResidentExec: narrowed by keys"), "{plan}");
    let plan = explain(
        &c,
        "SELECT id FROM by_kind WHERE kind = 'phone' AND id < 'p00003'",
    )
    .await;
    assert!(plan.contains("ResidentExec: narrowed by keys"), "{plan}");
    assert_same_as_base(&c).await;

    // A refresh is read at once (from disk until the new rows are loaded).
    c.batch_execute(
        "INSERT INTO people VALUES ('p99999', 'email', 'new@mail.test', 5);
         UPDATE people SET score = 99 WHERE id = 'p00042';
         REFRESH MATERIALIZED VIEW lookup;
         REFRESH MATERIALIZED VIEW by_kind;",
    )
    .await
    .expect("refresh");
    let after = "SELECT id, score FROM lookup WHERE id IN ('p00042', 'p99999') ORDER BY id";
    let expected = [["p00042", "99"], ["p99999", "5"]];
    assert_eq!(rows(&c, after).await, expected);
    wait_resident(&c, "lookup").await;
    wait_resident(&c, "by_kind").await;
    assert_eq!(rows(&c, after).await, expected);
    let plan = explain(&c, "SELECT * FROM lookup WHERE id = 'p99999'").await;
    assert!(plan.contains("ResidentExec: narrowed by keys"), "{plan}");
    assert_same_as_base(&c).await;

    // Masked for a role without the PII privilege, as from disk.
    let analyst = s
        .connect_as("analyst", "analyst-pw")
        .await
        .expect("analyst logs in");
    let masked = rows(&analyst, "SELECT email FROM lookup WHERE id = 'p00042'").await;
    assert_eq!(masked.len(), 1);
    assert_ne!(masked[0][0], "user42@mail.test", "{masked:?}");
    assert!(masked[0][0].contains("***"), "{masked:?}");
    let by_email = "SELECT count(*) FROM lookup WHERE email = 'user42@mail.test'";
    assert_eq!(rows(&analyst, by_email).await, [["0"]]);
    // Prepared, repeatedly (a generic plan keeps the mask), and by the raw email (a
    // parameter compared with a masked column is compared with the masked value).
    for id in ["p00042", "p00043", "p00042"] {
        let got = analyst
            .query("SELECT email FROM lookup WHERE id = $1", &[&id])
            .await
            .expect("prepared masked lookup");
        let email: String = got[0].get(0);
        assert!(email.contains("***"), "{email}");
    }
    for email in ["user42@mail.test", "user43@mail.test"] {
        let got = analyst
            .query("SELECT count(*) FROM lookup WHERE email = $1", &[&email])
            .await
            .expect("prepared masked filter");
        assert_eq!(got[0].get::<_, i64>(0), 0, "{email}");
    }
    // Each execution notes the personal data it read, generic plan or not.
    let audit = "SELECT coalesce(pii_columns, '-') FROM tessera.audit_log \
                 WHERE role = 'analyst' AND statement = 'SELECT email FROM lookup WHERE id = $1'";
    let mut logged = vec![];
    for _ in 0..50 {
        logged = rows(&c, audit).await;
        if logged.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        logged,
        [["lookup.email"], ["lookup.email"], ["lookup.email"]]
    );
}

#[tokio::test]
async fn a_view_larger_than_its_share_of_the_memory_pool_stays_on_disk() {
    // 64 MiB of pool: resident views may take 16 MiB, and this one holds about 24 MiB.
    let s = Server::start_with(&["--memory-limit", "64MiB"]);
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE notes (id TEXT, body TEXT);
         INSERT INTO notes SELECT 'n' || lpad(CAST(value AS TEXT), 5, '0'),
             repeat('x', 3000) || CAST(value AS TEXT) FROM generate_series(1, 8000);
         CREATE MATERIALIZED VIEW notes_by_id AS SELECT * FROM notes ORDER BY id;",
    )
    .await
    .expect("setup");
    let lookup = "SELECT right(body, 4) FROM notes_by_id WHERE id = 'n04321'";
    for _ in 0..20 {
        assert_eq!(rows(&c, lookup).await, [["4321"]]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let plan = explain(&c, lookup).await;
    assert!(!plan.contains("ResidentExec"), "{plan}");
    // A small view beside it fits.
    c.batch_execute("CREATE MATERIALIZED VIEW ids AS SELECT id FROM notes ORDER BY id")
        .await
        .expect("small view");
    wait_resident(&c, "ids").await;
    assert_eq!(
        rows(&c, "SELECT count(*) FROM ids WHERE id >= 'n07999'").await,
        [["2"]]
    );
}

#[tokio::test]
async fn an_incremental_refresh_keeps_a_view_resident_through_its_overlay() {
    let s = Server::start();
    let c = s.client().await;
    const SORTED: &str = "SELECT customer, count(*) AS n, sum(amount) AS total \
                          FROM orders GROUP BY customer ORDER BY customer";
    c.batch_execute(&format!(
        "CREATE TABLE orders (customer TEXT, amount BIGINT);
         INSERT INTO orders SELECT 'c' || lpad(CAST(value % 100 AS TEXT), 2, '0'), value
           FROM generate_series(1, 300);
         CREATE MATERIALIZED VIEW sorted AS {SORTED};"
    ))
    .await
    .expect("setup");
    wait_resident(&c, "sorted").await;
    c.batch_execute("INSERT INTO orders VALUES ('c01', 1000), ('zz', 5)")
        .await
        .expect("append");
    c.batch_execute("REFRESH MATERIALIZED VIEW sorted")
        .await
        .expect("refresh");
    assert_eq!(
        rows(
            &c,
            "SELECT incremental_keys FROM tessera.materialized_views WHERE name = 'sorted'"
        )
        .await,
        [["2"]],
        "the two keys went to the overlay"
    );
    // From the stored rows and the overlay, then from memory again, loaded with both.
    let lookup = "SELECT n, total FROM sorted WHERE customer = 'c01'";
    assert_eq!(rows(&c, lookup).await, [["4", "1303"]]);
    wait_resident(&c, "sorted").await;
    let plan = explain(&c, lookup).await;
    assert!(plan.contains("ResidentExec: narrowed by keys"), "{plan}");
    assert_eq!(rows(&c, lookup).await, [["4", "1303"]]);
    assert_eq!(
        rows(&c, "SELECT n, total FROM sorted WHERE customer = 'zz'").await,
        [["1", "5"]]
    );
    assert_eq!(
        rows(&c, "SELECT * FROM sorted ORDER BY customer").await,
        rows(&c, SORTED).await
    );
}
