//! Incremental refresh of materialised views: after appends, a view grouped by a key
//! recomputes only the keys the new rows reach, and ends up exactly as a full
//! recomputation; anything else recomputes the whole view.

use tokio_postgres::Client;

use crate::common::{rows, Server};

/// `[rows, status, incremental_keys]` of a view (`NULL` keys: recomputed whole).
async fn refreshed(c: &Client, name: &str) -> Vec<String> {
    c.batch_execute(&format!("REFRESH MATERIALIZED VIEW {name}"))
        .await
        .unwrap_or_else(|e| panic!("refresh {name}: {e}"));
    let mut r = rows(
        c,
        &format!(
            "SELECT rows, status, coalesce(CAST(incremental_keys AS TEXT), 'whole') \
             FROM tessera.materialized_views WHERE name = '{name}'"
        ),
    )
    .await;
    assert_eq!(r.len(), 1, "{name}: {r:?}");
    r.remove(0)
}

/// The view's rows equal those of its query run now.
async fn matches_query(c: &Client, name: &str, query: &str) {
    let stored = rows(c, &format!("SELECT * FROM {name} ORDER BY 1, 2, 3")).await;
    let fresh = rows(c, &format!("SELECT * FROM ({query}) q ORDER BY 1, 2, 3")).await;
    assert_eq!(stored, fresh, "{name} against its query");
}

const SPEND: &str = "SELECT customer, sum(amount) AS total, count(*) AS orders \
                     FROM orders GROUP BY customer HAVING sum(amount) > 3";
/// Two aggregates joined on their key: one reading each table.
const SUMMARY: &str = "SELECT s.customer, s.total, c.region \
                       FROM (SELECT customer, sum(amount) AS total FROM orders GROUP BY customer) s \
                       LEFT JOIN (SELECT id, max(region) AS region FROM customers GROUP BY id) c \
                       ON c.id = s.customer";
const BY_REGION: &str = "SELECT c.region, count(*) AS orders, sum(o.amount) AS total \
                         FROM orders o JOIN customers c ON o.customer = c.id GROUP BY c.region";

#[tokio::test]
async fn appends_recompute_only_the_keys_they_reach() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE orders (id INT, customer TEXT, amount BIGINT);
         CREATE TABLE customers (id TEXT, region TEXT);
         INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 5), (3, 'ann', 7), (4, 'cy', 2),
                                   (5, NULL, 4), (6, 'dee', 9), (7, 'eve', 1);
         INSERT INTO customers VALUES ('ann', 'north'), ('bob', 'south'), ('cy', 'south');
         CREATE MATERIALIZED VIEW spend AS {SPEND};
         CREATE MATERIALIZED VIEW by_region AS {BY_REGION};
         CREATE MATERIALIZED VIEW summary AS {SUMMARY};"
    ))
    .await
    .expect("setup");
    matches_query(&c, "spend", SPEND).await;

    // ann grows, cy crosses the HAVING bound, NULL is a key like any other, fay is new;
    // bob, dee and eve are not touched.
    c.batch_execute(
        "INSERT INTO orders VALUES (8, 'ann', 1), (9, 'cy', 5), (10, NULL, 1), (11, 'fay', 8)",
    )
    .await
    .expect("append");
    assert_eq!(refreshed(&c, "spend").await, ["6", "refreshed", "4"]);
    matches_query(&c, "spend", SPEND).await;
    assert_eq!(
        rows(&c, "SELECT total FROM spend WHERE customer IS NULL").await,
        [["5"]]
    );

    // A join: new orders reach the regions of their customers, a new customer the
    // region of its (earlier) orders.
    assert_eq!(refreshed(&c, "by_region").await, ["2", "refreshed", "2"]);
    matches_query(&c, "by_region", BY_REGION).await;
    c.batch_execute("INSERT INTO customers VALUES ('dee', 'east'), ('gus', 'west')")
        .await
        .expect("new customers");
    assert_eq!(
        refreshed(&c, "by_region").await,
        ["3", "refreshed", "1"],
        "gus has no orders: only east is reached"
    );
    matches_query(&c, "by_region", BY_REGION).await;
    // Orders and customers appended since summary's last refresh: ann, cy, NULL and fay
    // from orders, dee and gus from customers (gus has no orders: no row).
    assert_eq!(refreshed(&c, "summary").await, ["7", "refreshed", "6"]);
    matches_query(&c, "summary", SUMMARY).await;
    assert_eq!(
        rows(&c, "SELECT region FROM summary WHERE customer = 'dee'").await,
        [["east"]]
    );

    // Two appends and nothing else between refreshes: both are found.
    c.batch_execute(
        "INSERT INTO orders VALUES (12, 'bob', 1); INSERT INTO orders VALUES (13, 'gus', 4)",
    )
    .await
    .expect("two appends");
    assert_eq!(refreshed(&c, "spend").await, ["7", "refreshed", "2"]);
    matches_query(&c, "spend", SPEND).await;

    // Rows deleted or updated are not appends: the whole view is recomputed.
    c.batch_execute("DELETE FROM orders WHERE customer = 'ann'")
        .await
        .expect("delete");
    assert_eq!(refreshed(&c, "spend").await, ["6", "refreshed", "whole"]);
    matches_query(&c, "spend", SPEND).await;
    c.batch_execute("UPDATE orders SET amount = 100 WHERE customer = 'eve'")
        .await
        .expect("update");
    assert_eq!(refreshed(&c, "spend").await, ["7", "refreshed", "whole"]);
    matches_query(&c, "spend", SPEND).await;

    // And an unchanged input still does no work.
    assert_eq!(refreshed(&c, "spend").await, ["7", "up to date", "whole"]);

    // The stored result after incremental refreshes survives a restart as it was.
    c.batch_execute("INSERT INTO orders VALUES (14, 'hal', 6)")
        .await
        .expect("append");
    assert_eq!(refreshed(&c, "spend").await, ["8", "refreshed", "1"]);
    let before = rows(&c, "SELECT * FROM spend ORDER BY 1").await;
    drop(c);
    assert!(s.stop().success());
    let s = Server::start_in(&data);
    let c = s.client().await;
    assert_eq!(rows(&c, "SELECT * FROM spend ORDER BY 1").await, before);
    matches_query(&c, "spend", SPEND).await;
    assert_eq!(refreshed(&c, "spend").await, ["8", "up to date", "1"]);
}

#[tokio::test]
async fn views_of_other_shapes_are_recomputed_whole_and_right() {
    let s = Server::start();
    let c = s.client().await;
    // A top-n (no key), a window, an outer join whose appended side may only add
    // matches, an aggregate over an aggregate, and a keyed view laid out by ORDER BY.
    let views = [
        ("top", "SELECT customer, amount, id FROM orders ORDER BY amount DESC LIMIT 2"),
        (
            "sorted",
            "SELECT customer, count(*) AS n, sum(amount) AS total FROM orders GROUP BY customer ORDER BY customer",
        ),
        (
            "ranked",
            "SELECT customer, amount, rank() OVER (PARTITION BY customer ORDER BY amount) AS r FROM orders",
        ),
        (
            "with_region",
            "SELECT c.region, count(o.id) AS orders, count(*) AS n FROM customers c LEFT JOIN orders o ON o.customer = c.id GROUP BY c.region",
        ),
        (
            "spenders",
            "SELECT n, count(*) AS customers, min(customer) AS first FROM \
             (SELECT customer, count(*) AS n FROM orders GROUP BY customer) t GROUP BY n",
        ),
    ];
    c.batch_execute(
        "CREATE TABLE orders (id INT, customer TEXT, amount BIGINT);
         CREATE TABLE customers (id TEXT, region TEXT);
         INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 5), (3, 'ann', 7);
         INSERT INTO customers VALUES ('ann', 'north'), ('bob', 'south'), ('cy', 'south');",
    )
    .await
    .expect("setup");
    for (name, query) in views {
        c.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .expect(name);
    }
    c.batch_execute("INSERT INTO orders VALUES (4, 'cy', 20), (5, 'ann', 1)")
        .await
        .expect("append");
    for (name, query) in views {
        let state = refreshed(&c, name).await;
        assert_eq!(state[1..], ["refreshed", "whole"], "{name}");
        matches_query(&c, name, query).await;
    }
}

#[tokio::test]
async fn a_redefined_plain_view_or_a_coarser_stored_key_recomputes_whole() {
    let s = Server::start();
    let c = s.client().await;
    const MV: &str =
        "SELECT customer, count(*) AS n, sum(amount) AS total FROM big GROUP BY customer";
    c.batch_execute(&format!(
        "CREATE TABLE orders (customer TEXT, amount BIGINT);
         INSERT INTO orders VALUES ('ann', 50), ('bob', 500);
         CREATE VIEW big AS SELECT * FROM orders WHERE amount > 100;
         CREATE MATERIALIZED VIEW mv AS {MV};"
    ))
    .await
    .expect("setup");
    // No input changed, but what the view reads did.
    c.batch_execute("CREATE OR REPLACE VIEW big AS SELECT * FROM orders WHERE amount > 10")
        .await
        .expect("redefine");
    assert_eq!(refreshed(&c, "mv").await, ["2", "refreshed", "whole"]);
    matches_query(&c, "mv", MV).await;
    // An append as well: still everything, not only the appended keys.
    c.batch_execute(
        "CREATE OR REPLACE VIEW big AS SELECT * FROM orders WHERE amount > 60;
         INSERT INTO orders VALUES ('cy', 70)",
    )
    .await
    .expect("redefine and append");
    assert_eq!(refreshed(&c, "mv").await, ["2", "refreshed", "whole"]);
    matches_query(&c, "mv", MV).await;

    // A nanosecond key is stored in microseconds: its stored rows cannot be matched
    // with the recomputed ones, so the view is recomputed whole (one row, not two).
    c.batch_execute(
        "CREATE TABLE t (raw TEXT);
         INSERT INTO t VALUES ('2024-01-01T00:00:00.123456789');
         CREATE MATERIALIZED VIEW by_ts AS
           SELECT k, count(*) AS n FROM (SELECT CAST(raw AS TIMESTAMP) AS k FROM t) s GROUP BY k;
         INSERT INTO t VALUES ('2024-01-01T00:00:00.123456789');",
    )
    .await
    .expect("timestamps");
    assert_eq!(refreshed(&c, "by_ts").await, ["1", "refreshed", "whole"]);
    assert_eq!(rows(&c, "SELECT n FROM by_ts").await, [["2"]]);
}
