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

/// Refresh `name`: it recomputes `keys` keys (`whole`: all), ends up as its query run
/// now, and records as many rows as it holds.
async fn refreshes_to(c: &Client, name: &str, query: &str, keys: &str) {
    let state = refreshed(c, name).await;
    assert_eq!(state[1..], ["refreshed", keys], "{name}");
    matches_query(c, name, query).await;
    let count = rows(c, &format!("SELECT count(*) FROM {name}")).await;
    assert_eq!(
        count,
        [[state[0].clone()]],
        "{name}: the recorded row count"
    );
}

/// Fill `table` (a text key and a number) in ten files (inserts), each with two keys'
/// five rows: `c0a` and `c0b` in the first, and so on.
async fn in_ten_files(c: &Client, table: &str) {
    for file in 0..10 {
        let rows: Vec<String> = (0..10)
            .map(|r| format!("('c{file}{}', {r})", if r % 2 == 0 { 'a' } else { 'b' }))
            .collect();
        c.batch_execute(&format!("INSERT INTO {table} VALUES {}", rows.join(", ")))
            .await
            .expect("insert");
    }
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
    // A top-n (no key), a window over everyone, an outer join whose appended side may
    // only add matches, an aggregate over an aggregate grouped otherwise, and a keyed
    // view laid out by ORDER BY
    // whose changed keys are too many for its overlay (its stored rows stay in order).
    let views = [
        ("top", "SELECT customer, amount, id FROM orders ORDER BY amount DESC LIMIT 2"),
        (
            "sorted",
            "SELECT customer, count(*) AS n, sum(amount) AS total FROM orders GROUP BY customer ORDER BY customer",
        ),
        (
            "ranked",
            "SELECT customer, amount, rank() OVER (ORDER BY amount, customer) AS r FROM orders",
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

/// `orders` for 100 customers, c0..c99, with 3 orders each (ids 1..300).
const HUNDRED_CUSTOMERS: &str = "CREATE TABLE orders (id INT, customer TEXT, amount BIGINT);
     INSERT INTO orders SELECT CAST(value AS INT), 'c' || CAST(value % 100 AS TEXT), value % 9
       FROM generate_series(1, 300);";

/// The view's overlay file (the keys recomputed since its stored result was written).
fn overlay_files(data: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(data.join("matviews")).expect("matviews") {
        let dir = dir.expect("entry").path();
        if dir.join("_tessera_overlay.arrow").exists() {
            out.push(
                dir.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_few_keys_go_to_the_overlay_until_it_grows() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data);
    let c = s.client().await;
    // 100 customers c0..c99 with 3 orders each; spend keeps those above 3.
    c.batch_execute(&format!(
        "{HUNDRED_CUSTOMERS}
         CREATE MATERIALIZED VIEW spend AS {SPEND};
         CREATE MATERIALIZED VIEW big_spenders AS
           SELECT customer, total, orders FROM spend WHERE total > 10;"
    ))
    .await
    .expect("setup");
    let full = refreshed(&c, "spend").await;
    assert_eq!(full[1..], ["up to date", "whole"]);
    assert!(overlay_files(&data).is_empty());

    // c1 grows, c2 drops out (HAVING), NULL and new are new keys.
    c.batch_execute(
        "INSERT INTO orders VALUES (1001, 'c1', 50), (1002, 'c2', -100), (1003, NULL, 9),
                                   (1004, 'new', 4)",
    )
    .await
    .expect("append");
    refreshes_to(&c, "spend", SPEND, "4").await;
    assert_eq!(
        overlay_files(&data).len(),
        1,
        "the keys went to the overlay"
    );
    // Filters, projections without the key, and joins read the overlay too.
    let picked = "SELECT total FROM {} WHERE customer IN ('c1', 'c2', 'new') ORDER BY 1";
    assert_eq!(
        rows(&c, &picked.replace("{}", "spend")).await,
        rows(&c, &picked.replace("{}", &format!("({SPEND}) q"))).await,
    );
    assert_eq!(
        rows(&c, "SELECT total FROM spend WHERE customer = 'c1'").await,
        [["56"]],
        "c1: orders 1, 101 and 201 (amounts 1, 2, 3) and 50"
    );
    assert_eq!(
        rows(&c, "SELECT count(*) FROM spend WHERE customer = 'c2'").await,
        [["0"]],
        "c2's stored row is hidden"
    );
    assert_eq!(
        rows(&c, "SELECT total FROM spend WHERE customer IS NULL").await,
        [["9"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT o.id FROM orders o JOIN spend s ON s.customer = o.customer \
                  WHERE s.total > 60 ORDER BY 1"
        )
        .await,
        rows(
            &c,
            &format!(
                "SELECT o.id FROM orders o JOIN ({SPEND}) s ON s.customer = o.customer \
                  WHERE s.total > 60 ORDER BY 1"
            )
        )
        .await,
    );
    // A view reading it sees a changed input, not an append: it is recomputed whole.
    let state = refreshed(&c, "big_spenders").await;
    assert_eq!(state[1..], ["refreshed", "whole"]);
    matches_query(
        &c,
        "big_spenders",
        &format!("SELECT customer, total, orders FROM ({SPEND}) s WHERE total > 10"),
    )
    .await;
    assert_eq!(refreshed(&c, "big_spenders").await[1], "up to date");

    // A second append: the overlay keeps the earlier keys and replaces c1's row.
    c.batch_execute("INSERT INTO orders VALUES (1005, 'c1', 1), (1006, 'c3', 2)")
        .await
        .expect("second append");
    refreshes_to(&c, "spend", SPEND, "2").await;
    assert_eq!(
        refreshed(&c, "big_spenders").await[1..],
        ["refreshed", "whole"]
    );

    // The overlay survives a restart.
    let before = rows(&c, "SELECT * FROM spend ORDER BY 1").await;
    drop(c);
    assert!(s.stop().success());
    let s = Server::start_in(&data);
    let c = s.client().await;
    assert_eq!(rows(&c, "SELECT * FROM spend ORDER BY 1").await, before);
    assert_eq!(refreshed(&c, "spend").await[1], "up to date");

    // An append reaching more keys than an eighth of the rows folds the overlay into
    // the stored result.
    c.batch_execute(
        "INSERT INTO orders SELECT CAST(value AS INT) + 2000, 'c' || CAST(value AS TEXT), 1
           FROM generate_series(10, 40)",
    )
    .await
    .expect("big append");
    refreshes_to(&c, "spend", SPEND, "31").await;
    assert!(overlay_files(&data).is_empty(), "folded");

    // A full refresh lets the overlay go as well.
    c.batch_execute("INSERT INTO orders VALUES (3001, 'c5', 3)")
        .await
        .expect("append");
    assert_eq!(refreshed(&c, "spend").await[1..], ["refreshed", "1"]);
    assert_eq!(overlay_files(&data).len(), 1);
    c.batch_execute("UPDATE orders SET amount = amount + 1")
        .await
        .expect("update every row");
    assert_eq!(refreshed(&c, "spend").await[1..], ["refreshed", "whole"]);
    assert!(overlay_files(&data).is_empty());
    matches_query(&c, "spend", SPEND).await;
}

/// Counts, sums, minima and maxima merged with the aggregate of the appended rows.
const TOTALS: &str =
    "SELECT customer, count(*) AS n, count(amount) FILTER (WHERE amount > 5) AS big, \
                      sum(amount) AS total, min(amount) AS low, max(id) AS last, \
                      collect_distinct(amount % 4) AS rests, bool_or(amount > 7) AS any_big, \
                      bool_and(amount > -10) AS no_refund \
                      FROM orders GROUP BY customer";
/// The same through an inner join with a table that is not appended to.
const BY_REGION_TOTALS: &str = "SELECT c.region, count(*) AS n, sum(o.amount) AS total, \
                                min(o.id) AS first FROM orders o JOIN customers c ON o.customer = c.id \
                                GROUP BY c.region";

#[tokio::test]
async fn appended_rows_merge_into_stored_aggregates() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(&format!(
        "{HUNDRED_CUSTOMERS}
         CREATE TABLE customers (id TEXT, region TEXT);
         INSERT INTO orders VALUES (301, 'c1', NULL), (302, NULL, 3), (303, 'nulls', NULL);
         INSERT INTO customers SELECT 'c' || CAST(value AS TEXT), 'r' || CAST(value % 10 AS TEXT)
           FROM generate_series(0, 99);
         CREATE MATERIALIZED VIEW totals AS {TOTALS};
         CREATE MATERIALIZED VIEW by_region_totals AS {BY_REGION_TOTALS};"
    ))
    .await
    .expect("setup");
    // c1 gets a new minimum and maximum, c2 a NULL amount (the sum stays), `nulls`
    // its first amount (its sum and minimum were NULL), NULL is a key, new is new.
    c.batch_execute(
        "INSERT INTO orders VALUES (1001, 'c1', -4), (1002, 'c2', NULL), (1003, 'nulls', 8),
                                   (1004, NULL, 20), (1005, 'new', 6), (1006, 'c1', 30)",
    )
    .await
    .expect("append");
    refreshes_to(&c, "totals", TOTALS, "5").await;
    assert_eq!(
        rows(
            &c,
            "SELECT n, big, total, low, last FROM totals WHERE customer = 'nulls'"
        )
        .await,
        [["2", "1", "8", "8", "1003"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT rests, any_big, no_refund FROM totals WHERE customer IN ('c1', 'nulls') \
             ORDER BY customer"
        )
        .await,
        [["{0,1,2,3}", "t", "t"], ["{0}", "t", "t"]]
    );
    // c1's orders reach r1, c2's r2; the others' customers are not in `customers`.
    let state = refreshed(&c, "by_region_totals").await;
    assert_eq!(state[1..], ["refreshed", "2"]);
    matches_query(&c, "by_region_totals", BY_REGION_TOTALS).await;

    // A second append on top of the overlay.
    c.batch_execute("INSERT INTO orders VALUES (1007, 'c1', 1), (1008, 'c15', -50)")
        .await
        .expect("append");
    refreshes_to(&c, "totals", TOTALS, "2").await;
    refreshes_to(&c, "by_region_totals", BY_REGION_TOTALS, "2").await;

    // Both inputs appended to: the regions' rows are recomputed from all their rows.
    c.batch_execute(
        "INSERT INTO customers VALUES ('new', 'r1');
         INSERT INTO orders VALUES (1009, 'c3', 2)",
    )
    .await
    .expect("append both");
    refreshes_to(&c, "by_region_totals", BY_REGION_TOTALS, "2").await;
    refreshes_to(&c, "totals", TOTALS, "1").await;
}

#[tokio::test]
async fn an_overlay_whose_refresh_was_not_recorded_is_not_merged_twice() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute(&format!(
        "{HUNDRED_CUSTOMERS}
         CREATE MATERIALIZED VIEW totals AS {TOTALS};
         INSERT INTO orders VALUES (1001, 'c1', 5), (1002, 'c2', 7);"
    ))
    .await
    .expect("setup");
    // The catalog as it is before the refresh...
    let catalog = data.join("catalog.json");
    let before = std::fs::read(&catalog).expect("catalog");
    refreshes_to(&c, "totals", TOTALS, "2").await;
    assert_eq!(overlay_files(&data).len(), 1);
    drop(c);
    assert!(s.stop().success());
    // ...as if the server had stopped after writing the overlay but before recording
    // the refresh: the appended rows are already in the overlay.
    std::fs::write(&catalog, before).expect("restore the catalog");
    let s = Server::start_in(&data);
    let c = s.client().await;
    matches_query(&c, "totals", TOTALS).await;
    refreshes_to(&c, "totals", TOTALS, "whole").await;
    assert!(overlay_files(&data).is_empty());
}

const DROP_SPEND: &str =
    "SELECT customer, sum(amount) AS total, count(*) AS orders FROM drops GROUP BY customer";
/// Not merged (a HAVING): the keys reached are recomputed from all their rows.
const DROP_LAST: &str = "SELECT customer, max(amount) AS most, min(amount) AS least_amount \
                         FROM drops GROUP BY customer HAVING count(*) > 0";

/// A directory source gets a file a day: the files added since the last refresh are
/// its appended rows; a file changed or removed recomputes the whole view.
#[tokio::test]
async fn files_added_to_a_source_directory_are_appends() {
    let s = Server::start();
    let c = s.client().await;
    let dir = tempfile::tempdir().expect("dir");
    let drop = |name: &str, rows: &str| {
        std::fs::write(
            dir.path().join(name),
            format!("customer,amount,day\n{rows}"),
        )
        .expect("write");
    };
    drop("day1.csv", "ann,10,1\nbob,5,1\ncy,2,1\n");
    c.batch_execute(&format!(
        "CREATE EXTERNAL TABLE drops (customer TEXT, amount BIGINT, day INT) STORED AS CSV \
         LOCATION '{}/' OPTIONS ('format.has_header' 'true');
         CREATE MATERIALIZED VIEW drop_spend AS {DROP_SPEND};
         CREATE MATERIALIZED VIEW drop_last AS {DROP_LAST};",
        dir.path().display()
    ))
    .await
    .expect("setup");
    matches_query(&c, "drop_spend", DROP_SPEND).await;

    // Day 2: ann and dee, merged (drop_spend) or recomputed (drop_last).
    drop("day2.csv", "ann,1,2\ndee,4,2\n");
    refreshes_to(&c, "drop_spend", DROP_SPEND, "2").await;
    refreshes_to(&c, "drop_last", DROP_LAST, "2").await;
    assert_eq!(
        rows(
            &c,
            "SELECT total, orders FROM drop_spend WHERE customer = 'ann'"
        )
        .await,
        [["11", "2"]]
    );
    // Nothing new: nothing runs.
    assert_eq!(refreshed(&c, "drop_spend").await[1], "up to date");

    // Two days at once.
    drop("day3.csv", "bob,3,3\n");
    drop("day4.csv", "bob,7,4\neve,1,4\n");
    refreshes_to(&c, "drop_spend", DROP_SPEND, "2").await;
    refreshes_to(&c, "drop_last", DROP_LAST, "2").await;
    assert_eq!(
        rows(
            &c,
            "SELECT most, least_amount FROM drop_last WHERE customer = 'bob'"
        )
        .await,
        [["7", "3"]]
    );

    // A file corrected in place, or one taken away, is not an append.
    drop("day1.csv", "ann,10,1\nbob,50,1\ncy,2,1\n");
    refreshes_to(&c, "drop_spend", DROP_SPEND, "whole").await;
    std::fs::remove_file(dir.path().join("day3.csv")).expect("remove");
    refreshes_to(&c, "drop_spend", DROP_SPEND, "whole").await;
    assert_eq!(
        rows(
            &c,
            "SELECT total, orders FROM drop_spend WHERE customer = 'bob'"
        )
        .await,
        [["57", "2"]]
    );
    // And appends work again after.
    drop("day5.csv", "fay,6,5\n");
    refreshes_to(&c, "drop_spend", DROP_SPEND, "1").await;
}

/// Each visitor's sessions (events less than 30 minutes apart), as the demo model's
/// `web_sessions`: windows partitioned by the visitor under an aggregate grouped by it.
const VISITS: &str = "SELECT visitor, session, min(at) AS started, count(*) AS events \
     FROM (SELECT visitor, at, sum(CASE WHEN gap IS NULL OR gap > 30 THEN 1 ELSE 0 END) \
             OVER (PARTITION BY visitor ORDER BY at ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session \
           FROM (SELECT visitor, at, at - lag(at) OVER (PARTITION BY visitor ORDER BY at) AS gap \
                 FROM clicks) g) s \
     GROUP BY visitor, session";
/// The latest click of each visitor.
const LAST_CLICK: &str = "SELECT visitor, at, page FROM (SELECT visitor, at, page, \
     row_number() OVER (PARTITION BY visitor ORDER BY at DESC, page) AS rn FROM clicks) l \
     WHERE rn = 1";

#[tokio::test]
async fn windows_partitioned_by_the_key_recompute_only_its_partitions() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE clicks (visitor TEXT, at BIGINT, page TEXT);
         INSERT INTO clicks VALUES ('a', 0, 'home'), ('a', 10, 'shoes'), ('a', 100, 'home'),
                                   ('b', 5, 'home'), ('c', 7, 'cart'), (NULL, 1, 'home');
         CREATE MATERIALIZED VIEW visits AS {VISITS};
         CREATE MATERIALIZED VIEW last_click AS {LAST_CLICK};"
    ))
    .await
    .expect("setup");
    matches_query(&c, "visits", VISITS).await;
    // a's click at 80 starts its second session earlier; b starts a second session; d
    // is new. c is not touched.
    c.batch_execute(
        "INSERT INTO clicks VALUES ('a', 80, 'cart'), ('b', 90, 'shoes'), ('d', 3, 'home')",
    )
    .await
    .expect("append");
    refreshes_to(&c, "visits", VISITS, "3").await;
    assert_eq!(
        rows(
            &c,
            "SELECT session, started, events FROM visits WHERE visitor = 'a' ORDER BY session"
        )
        .await,
        [["1", "0", "2"], ["2", "80", "2"]]
    );
    refreshes_to(&c, "last_click", LAST_CLICK, "3").await;
    assert_eq!(
        rows(&c, "SELECT at, page FROM last_click WHERE visitor = 'a'").await,
        [["100", "home"]]
    );
    // NULL is a visitor like any other.
    c.batch_execute("INSERT INTO clicks VALUES (NULL, 50, 'cart')")
        .await
        .expect("append");
    refreshes_to(&c, "last_click", LAST_CLICK, "1").await;
    refreshes_to(&c, "visits", VISITS, "1").await;
}

/// Survivorship: the most recent, the first and the most trusted value of each key.
const GOLDEN: &str =
    "SELECT customer, latest(email, at) AS email, earliest(email, at) AS first_email, \
     first_by_priority(phone, 1, at) AS phone, first_by_priority(phone, 2) AS any_phone, \
     count(*) AS n FROM contacts GROUP BY customer";

#[tokio::test]
async fn picked_values_merge_with_their_stored_ranking() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE contacts (customer TEXT, email TEXT, phone TEXT, at BIGINT);
         INSERT INTO contacts VALUES ('ann', 'a1', '+1', 10), ('ann', 'a2', NULL, 20),
                                     ('bob', 'b1', '+2', NULL), ('bob', NULL, '+3', 5),
                                     ('cy', 'c1', '+4', 7), (NULL, 'n1', '+5', 1);
         CREATE MATERIALIZED VIEW golden AS {GOLDEN};"
    ))
    .await
    .expect("setup");
    // What the view holds is its own columns; the ranking it stores is not read.
    let columns = rows(
        &c,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'golden'",
    )
    .await;
    assert_eq!(columns, [["6"]]);
    // It is stored, after them, in the Delta table's files (and in the overlay later).
    let stored = std::fs::read_dir(data.join("matviews"))
        .expect("matviews")
        .flat_map(|d| std::fs::read_dir(d.expect("entry").path()).expect("view dir"))
        .map(|f| f.expect("file").path())
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .map(|f| std::fs::read(f).expect("read"))
        .any(|bytes| {
            let name = b"__tessera_state_email";
            bytes.windows(name.len()).any(|w| w == name)
        });
    assert!(stored, "the ranking of golden.email is stored");
    let e = c
        .batch_execute("CREATE MATERIALIZED VIEW bad AS SELECT 1 AS __tessera_state_x")
        .await
        .expect_err("a reserved name");
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{e}");
    assert_eq!(
        rows(&c, "SELECT * FROM golden WHERE customer = 'ann'").await,
        [["ann", "a2", "a1", "+1", "+1", "2"]]
    );
    let rounds = [
        // Newer and older values, a tie on time settled by the value, a time where there
        // was none, NULL values that change nothing, a NULL key and a new key.
        (
            "('ann', 'a0', '+0', 30), ('ann', 'a9', NULL, 1), ('bob', 'b0', '+1', 5), \
             ('cy', NULL, NULL, 99), (NULL, 'n2', NULL, 1), ('dee', NULL, '+9', NULL)",
            "5",
        ),
        // Ties with the stored value, on both sides of it.
        (
            "('ann', 'a1', '+0', 30), ('ann', 'zz', '+00', 30), ('bob', 'b9', '+0', 5), \
             ('dee', 'd1', '+8', NULL)",
            "3",
        ),
    ];
    for (values, keys) in rounds {
        c.batch_execute(&format!("INSERT INTO contacts VALUES {values}"))
            .await
            .expect("append");
        refreshes_to(&c, "golden", GOLDEN, keys).await;
    }
    assert_eq!(
        rows(
            &c,
            "SELECT * FROM golden WHERE customer IN ('ann', 'bob') ORDER BY 1"
        )
        .await,
        [
            ["ann", "zz", "a9", "+0", "+0", "6"],
            ["bob", "b9", "b0", "+0", "+0", "4"]
        ]
    );
    // The stored ranking survives a restart, and merges again after it.
    drop(c);
    assert!(s.stop().success());
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute("INSERT INTO contacts VALUES ('cy', 'c0', '+7', 8)")
        .await
        .expect("append");
    refreshes_to(&c, "golden", GOLDEN, "1").await;
    assert_eq!(
        rows(
            &c,
            "SELECT email, first_email, phone FROM golden WHERE customer = 'cy'"
        )
        .await,
        [["c0", "c1", "+7"]]
    );
}

const EVENT_TOTALS: &str =
    "SELECT customer, sum(amount) AS total, count(*) AS n FROM events GROUP BY customer";
const EVENT_PAIRS: &str = "SELECT a.customer, count(*) AS pairs, sum(b.amount) AS total \
     FROM events a JOIN events b ON a.customer = b.customer GROUP BY a.customer";

/// Rows deleted or updated in a few of an input's files: the keys of the rewritten
/// files' rows, before and after, are recomputed; a change to much of the input
/// recomputes the whole view.
#[tokio::test]
async fn deletes_and_updates_in_a_few_files_recompute_their_keys() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE events (customer TEXT, amount BIGINT)")
        .await
        .expect("table");
    in_ten_files(&c, "events").await;
    c.batch_execute(&format!(
        "CREATE MATERIALIZED VIEW event_totals AS {EVENT_TOTALS};
         CREATE MATERIALIZED VIEW event_pairs AS {EVENT_PAIRS};"
    ))
    .await
    .expect("views");
    // c3a's file is rewritten without it: c3a goes, c3b is recomputed as it was.
    c.batch_execute("DELETE FROM events WHERE customer = 'c3a'")
        .await
        .expect("delete");
    refreshes_to(&c, "event_totals", EVENT_TOTALS, "2").await;
    // Read twice, a removed row's partners are gone from the other reading too: the
    // whole view is recomputed.
    refreshes_to(&c, "event_pairs", EVENT_PAIRS, "whole").await;
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) FROM event_totals WHERE customer LIKE 'c3%'"
        )
        .await,
        [["1"]]
    );
    c.batch_execute("UPDATE events SET amount = amount + 100 WHERE customer = 'c7b'")
        .await
        .expect("update");
    refreshes_to(&c, "event_totals", EVENT_TOTALS, "2").await;
    // An update and an append together.
    c.batch_execute(
        "UPDATE events SET customer = 'c1z' WHERE customer = 'c1a';
         INSERT INTO events VALUES ('c9a', 1), ('new', 5)",
    )
    .await
    .expect("update and append");
    refreshes_to(&c, "event_totals", EVENT_TOTALS, "5").await;
    // Most of the rows rewritten: the whole view.
    c.batch_execute("UPDATE events SET amount = 0 WHERE amount > 2")
        .await
        .expect("update all");
    refreshes_to(&c, "event_totals", EVENT_TOTALS, "whole").await;
    c.batch_execute("TRUNCATE events; INSERT INTO events VALUES ('x', 1)")
        .await
        .expect("refill");
    refreshes_to(&c, "event_totals", EVENT_TOTALS, "whole").await;
}

/// Per customer, those with a positive balance only (a customer can leave the view).
const BALANCES: &str = "SELECT customer, sum(amount) AS balance, count(*) AS n FROM ledger \
                        GROUP BY customer HAVING sum(amount) > 0";
/// Read from `balances`: per region, and its customers with a balance over 10.
const REGION_BALANCES: &str = "SELECT r.region, count(*) AS customers, sum(b.balance) AS total \
     FROM balances b JOIN regions r ON r.customer = b.customer GROUP BY r.region";
const RICH: &str = "SELECT customer, max(balance) AS balance, max(n) AS entries FROM balances \
                    WHERE balance > 10 GROUP BY customer";

/// A view reading another that was refreshed through its overlay recomputes only the
/// keys the other's changed rows reach, before and after the change.
#[tokio::test]
async fn views_reading_an_incrementally_refreshed_view_follow_its_changes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE ledger (customer TEXT, amount BIGINT);
         CREATE TABLE regions (customer TEXT, region TEXT);
         INSERT INTO ledger SELECT 'c' || CAST(value % 100 AS TEXT), value % 7 + 1
           FROM generate_series(1, 1000);
         INSERT INTO regions SELECT 'c' || CAST(value AS TEXT), 'r' || CAST(value % 20 AS TEXT)
           FROM generate_series(0, 99);
         CREATE MATERIALIZED VIEW balances AS {BALANCES};
         CREATE MATERIALIZED VIEW region_balances AS {REGION_BALANCES};
         CREATE MATERIALIZED VIEW rich AS {RICH};"
    ))
    .await
    .expect("setup");
    // c1 falls to zero (it leaves balances: its row in rich must go too), c2 drops
    // under 10, c3 grows, new arrives without a region.
    c.batch_execute(
        "INSERT INTO ledger SELECT 'c1', -1000; INSERT INTO ledger VALUES ('c2', -35), ('c3', 5), ('new', 50)",
    )
    .await
    .expect("append");
    // Refreshing rich refreshes balances first (4 keys, through its overlay).
    refreshes_to(&c, "rich", RICH, "4").await;
    assert_eq!(
        rows(
            &c,
            "SELECT rows, incremental_keys FROM tessera.materialized_views WHERE name = 'balances'"
        )
        .await,
        [["100", "4"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) FROM rich WHERE customer IN ('c1', 'c2')"
        )
        .await,
        [["0"]]
    );
    // c1, c2 and c3 are in regions r1, r2, r3; new in none.
    refreshes_to(&c, "region_balances", REGION_BALANCES, "3").await;
    // Another round, the views one overlay behind, then two.
    c.batch_execute("INSERT INTO ledger VALUES ('c4', 1)")
        .await
        .expect("append");
    refreshes_to(&c, "rich", RICH, "1").await;
    c.batch_execute("INSERT INTO ledger VALUES ('c5', -500)")
        .await
        .expect("append");
    refreshes_to(&c, "rich", RICH, "1").await;
    refreshes_to(&c, "region_balances", REGION_BALANCES, "2").await;
    // After a restart the change files are read back.
    drop(c);
    assert!(s.stop().success());
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute("INSERT INTO ledger VALUES ('c6', 3)")
        .await
        .expect("append");
    refreshes_to(&c, "region_balances", REGION_BALANCES, "1").await;
    refreshes_to(&c, "rich", RICH, "1").await;
}

/// Orders staged row by row: cleaned, joined with their customer's region, and returns
/// as negative orders.
const STAGED: &str = "SELECT o.id, upper(o.customer) AS customer, o.amount, c.region \
     FROM orders o LEFT JOIN customers c ON c.id = o.customer WHERE o.amount > 1 \
     UNION ALL SELECT id, upper(customer), -amount, CAST(NULL AS TEXT) FROM returns";
/// Read from `staged`: per customer.
const STAGED_SPEND: &str = "SELECT customer, sum(amount) AS total, count(*) AS n \
                            FROM staged GROUP BY customer";

/// `version` of a view in `tessera.materialized_views`.
async fn version_of(c: &Client, name: &str) -> String {
    let r = rows(
        c,
        &format!("SELECT version FROM tessera.materialized_views WHERE name = '{name}'"),
    )
    .await;
    r[0][0].clone()
}

/// A view with no key whose inputs were only appended to gains the rows their new rows
/// give (incremental_keys: how many), in one commit; views reading it follow.
#[tokio::test]
async fn views_of_rows_one_by_one_append_what_appended_rows_give() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE orders (id INT, customer TEXT, amount BIGINT);
         CREATE TABLE customers (id TEXT, region TEXT);
         CREATE TABLE returns (id INT, customer TEXT, amount BIGINT);
         INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 5), (3, 'ann', 1);
         INSERT INTO customers VALUES ('ann', 'north'), ('bob', 'south');
         INSERT INTO returns VALUES (100, 'bob', 2);
         CREATE MATERIALIZED VIEW staged AS {STAGED};
         CREATE MATERIALIZED VIEW staged_spend AS {STAGED_SPEND};"
    ))
    .await
    .expect("setup");
    let before = version_of(&c, "staged").await;
    // Two of the three new orders pass the filter (one of a customer with no region),
    // and one return: 3 rows, appended in one commit.
    c.batch_execute(
        "INSERT INTO orders VALUES (4, 'ann', 3), (5, 'cy', 8), (6, 'bob', 0);
         INSERT INTO returns VALUES (101, 'ann', 4)",
    )
    .await
    .expect("append");
    refreshes_to(&c, "staged", STAGED, "3").await;
    let after = version_of(&c, "staged").await;
    assert_eq!(
        after.parse::<u64>().expect("version"),
        before.parse::<u64>().expect("version") + 1,
        "one commit"
    );
    // The view reading it finds the append and merges it (ANN and CY).
    refreshes_to(&c, "staged_spend", STAGED_SPEND, "2").await;
    // Nothing new: nothing runs.
    assert_eq!(refreshed(&c, "staged").await[1], "up to date");

    // After a restart, again; refreshing the reader refreshes `staged` first.
    drop(c);
    assert!(s.stop().success());
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute("INSERT INTO orders VALUES (7, 'dee', 6)")
        .await
        .expect("append");
    refreshes_to(&c, "staged_spend", STAGED_SPEND, "1").await;
    matches_query(&c, "staged", STAGED).await;
    assert_eq!(
        rows(
            &c,
            "SELECT rows, incremental_keys FROM tessera.materialized_views WHERE name = 'staged'"
        )
        .await,
        [["7", "1"]]
    );

    // A new customer could change rows already stored (the LEFT JOIN's other side):
    // recomputed whole; so is a delete.
    c.batch_execute("INSERT INTO customers VALUES ('cy', 'east')")
        .await
        .expect("append");
    refreshes_to(&c, "staged", STAGED, "whole").await;
    c.batch_execute("DELETE FROM orders WHERE id = 1")
        .await
        .expect("delete");
    refreshes_to(&c, "staged", STAGED, "whole").await;
    refreshes_to(&c, "staged_spend", STAGED_SPEND, "whole").await;
}

/// Two appended relations joined would count their new rows' pairs twice: recomputed
/// whole, and right.
#[tokio::test]
async fn a_join_of_two_appended_relations_is_recomputed_whole() {
    let s = Server::start();
    let c = s.client().await;
    const JOINED: &str =
        "SELECT o.id, o.customer, c.region FROM orders o JOIN customers c ON c.id = o.customer";
    c.batch_execute(&format!(
        "CREATE TABLE orders (id INT, customer TEXT);
         CREATE TABLE customers (id TEXT, region TEXT);
         INSERT INTO orders VALUES (1, 'ann');
         INSERT INTO customers VALUES ('ann', 'north');
         CREATE MATERIALIZED VIEW joined AS {JOINED};
         INSERT INTO orders VALUES (2, 'bob'), (3, 'ann');
         INSERT INTO customers VALUES ('bob', 'south');"
    ))
    .await
    .expect("setup");
    refreshes_to(&c, "joined", JOINED, "whole").await;
    // One of them only: appended.
    c.batch_execute("INSERT INTO orders VALUES (4, 'bob')")
        .await
        .expect("append");
    refreshes_to(&c, "joined", JOINED, "1").await;
}

/// The identity map over `edges`: a view whose input has no version, declared with a key.
const IDMAP: &str = "SELECT record_key, source, unified_id FROM resolve_identities('edges')";
const SIZES: &str = "SELECT unified_id, count(*) AS records, min(record_key) AS first \
                     FROM idmap GROUP BY unified_id";

/// A view declared with a key that is recomputed whole (resolve_identities, whose edges
/// changed) writes only the keys whose rows changed; views reading it follow them.
#[tokio::test]
async fn a_view_with_a_declared_key_writes_only_the_keys_whose_rows_changed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE edges (source TEXT, record_key TEXT, id_type TEXT, id_value TEXT);
         INSERT INTO edges VALUES
           ('crm', 'c1', 'email', 'a@x.com'), ('shop', 'o1', 'email', 'a@x.com'),
           ('crm', 'c2', 'email', 'b@x.com'), ('shop', 'o2', 'email', 'b@x.com'),
           ('crm', 'c3', 'email', 'c@x.com'), ('shop', 'o3', 'phone', '+4915112345678');
         INSERT INTO edges SELECT 'web', 'w' || CAST(value AS TEXT), 'anonymous_id',
                                  'anon-' || CAST(value AS TEXT) FROM generate_series(1, 100);
         CREATE MATERIALIZED VIEW idmap WITH (key = 'record_key') AS {IDMAP};
         CREATE MATERIALIZED VIEW sizes AS {SIZES};"
    ))
    .await
    .expect("setup");
    let version = version_of(&c, "idmap").await;
    // resolve_identities is versioned by its edges: unchanged, nothing runs.
    assert_eq!(refreshed(&c, "idmap").await[1], "up to date");
    // A row it already had: recomputed, nothing written.
    c.batch_execute("INSERT INTO edges VALUES ('crm', 'c1', 'email', 'a@x.com')")
        .await
        .expect("same again");
    assert_eq!(refreshed(&c, "idmap").await, ["106", "refreshed", "0"]);
    assert_eq!(version_of(&c, "idmap").await, version);
    assert_eq!(refreshed(&c, "sizes").await[1], "up to date");

    // o3 joins c3's profile (one of the two records changes id), a new record arrives.
    c.batch_execute(
        "INSERT INTO edges VALUES ('shop', 'o3', 'email', 'c@x.com'),
                                  ('web', 'w101', 'anonymous_id', 'anon-101')",
    )
    .await
    .expect("append");
    refreshes_to(&c, "idmap", IDMAP, "2").await;
    assert_eq!(
        version_of(&c, "idmap").await,
        version,
        "written to the overlay"
    );
    // The profile o3 or c3 left, the one it joined, and w101's.
    refreshes_to(&c, "sizes", SIZES, "3").await;
    assert_eq!(
        rows(
            &c,
            "SELECT records, first FROM sizes s JOIN idmap m USING (unified_id) WHERE m.record_key = 'o3'"
        )
        .await,
        [["2", "c3"]]
    );

    // After a restart, more changes than the overlay holds (an eighth of the rows): the
    // whole result is written, and the reader recomputes whole.
    drop(c);
    assert!(s.stop().success());
    let s = Server::start_in(&data);
    let c = s.client().await;
    c.batch_execute(
        "INSERT INTO edges SELECT 'web', 'x' || CAST(value AS TEXT), 'anonymous_id',
                                  'anon-' || CAST(value AS TEXT) FROM generate_series(1, 20)",
    )
    .await
    .expect("link 20");
    refreshes_to(&c, "idmap", IDMAP, "20").await;
    assert_ne!(
        version_of(&c, "idmap").await,
        version,
        "the Delta table rewritten"
    );
    refreshes_to(&c, "sizes", SIZES, "whole").await;

    // The key must be one of the view's columns; a segment takes none.
    for (sql, code) in [
        (format!("CREATE MATERIALIZED VIEW bad WITH (key = 'nope') AS {IDMAP}"), "42703"),
        (
            "CREATE MATERIALIZED VIEW bad WITH (segment = true, key = 'unified_id') AS SELECT 'x' AS unified_id".to_string(),
            "22023",
        ),
    ] {
        let e = c.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(crate::common::sqlstate(&e), code, "{sql}: {e:?}");
    }
}

/// A view over resolve_identities('<a materialised view>') refreshes that view first,
/// and is up to date while it is.
#[tokio::test]
async fn a_view_over_resolve_identities_follows_the_edges_it_reads() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE raw (source TEXT, record_key TEXT, id_type TEXT, id_value TEXT);
         INSERT INTO raw VALUES ('crm', 'c1', 'email', 'a@x.com'), ('shop', 'o1', 'email', 'a@x.com');
         CREATE MATERIALIZED VIEW staged_edges AS SELECT * FROM raw WHERE id_value <> '';
         CREATE MATERIALIZED VIEW people AS
           SELECT count(DISTINCT unified_id) AS people, count(*) AS records
             FROM resolve_identities('staged_edges');",
    )
    .await
    .expect("setup");
    assert_eq!(refreshed(&c, "people").await, ["1", "up to date", "whole"]);
    c.batch_execute("INSERT INTO raw VALUES ('web', 'w1', 'anonymous_id', 'anon-1')")
        .await
        .expect("append");
    assert_eq!(refreshed(&c, "people").await, ["1", "refreshed", "whole"]);
    assert_eq!(
        rows(&c, "SELECT people, records FROM people").await,
        [["2", "3"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT incremental_keys FROM tessera.materialized_views WHERE name = 'staged_edges'"
        )
        .await,
        [["1"]]
    );
}

/// Read in two branches of a union: each branch finds the rows removed through it.
const UNIONED: &str = "SELECT k, sum(v) AS total, count(*) AS n FROM \
     (SELECT k, v FROM ta UNION ALL SELECT k, -v FROM ta WHERE v > 2 UNION ALL SELECT k, v FROM tb) u \
     GROUP BY k";
/// Two inputs in two groups, joined above them.
const JOINED: &str = "SELECT a.k, a.total, b.total AS b_total \
     FROM (SELECT k, sum(v) AS total FROM ta GROUP BY k) a \
     JOIN (SELECT k, sum(v) AS total FROM tb GROUP BY k) b ON a.k = b.k";

/// Rows deleted from two inputs, or from one read in two branches of a union, still
/// recompute only their keys: no join below a group reads them on both sides.
#[tokio::test]
async fn deletes_in_several_inputs_recompute_their_keys_unless_joined_below_a_group() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE ta (k TEXT, v BIGINT); CREATE TABLE tb (k TEXT, v BIGINT)")
        .await
        .expect("tables");
    in_ten_files(&c, "ta").await;
    in_ten_files(&c, "tb").await;
    c.batch_execute(&format!(
        "CREATE MATERIALIZED VIEW unioned AS {UNIONED};
         CREATE MATERIALIZED VIEW joined AS {JOINED};"
    ))
    .await
    .expect("views");
    // Each delete rewrites one file: c3a goes from ta (c3b kept), c5b from tb (c5a kept).
    c.batch_execute("DELETE FROM ta WHERE k = 'c3a'; DELETE FROM tb WHERE k = 'c5b'")
        .await
        .expect("delete");
    refreshes_to(&c, "unioned", UNIONED, "4").await;
    refreshes_to(&c, "joined", JOINED, "4").await;
    // A delete and an append together.
    c.batch_execute("DELETE FROM ta WHERE k = 'c7b'; INSERT INTO tb VALUES ('c7b', 1), ('new', 2)")
        .await
        .expect("delete and append");
    refreshes_to(&c, "unioned", UNIONED, "3").await;
    refreshes_to(&c, "joined", JOINED, "3").await;
}

/// `balances` read as it is, beside an aggregate on the same key.
const REPORT: &str = "SELECT o.customer, o.entries, b.balance \
     FROM balances b RIGHT JOIN (SELECT customer, count(*) AS entries FROM ledger GROUP BY customer) o \
     ON o.customer = b.customer";

/// A view joining another view's rows as they are with an aggregate on their key
/// follows both: the other's overlay changes and its own input's appends.
#[tokio::test]
async fn a_view_read_as_it_is_beside_an_aggregate_is_followed_by_key() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE ledger (customer TEXT, amount BIGINT);
         INSERT INTO ledger SELECT 'c' || CAST(value % 100 AS TEXT), value % 7 + 1
           FROM generate_series(1, 1000);
         CREATE MATERIALIZED VIEW balances AS {BALANCES};
         CREATE MATERIALIZED VIEW report AS {REPORT};"
    ))
    .await
    .expect("setup");
    // c1 leaves balances, c2 changes, new arrives: refreshing report refreshes balances
    // through its overlay first.
    c.batch_execute("INSERT INTO ledger VALUES ('c1', -1000), ('c2', 3), ('new', 4)")
        .await
        .expect("append");
    refreshes_to(&c, "report", REPORT, "3").await;
    assert_eq!(
        rows(
            &c,
            "SELECT entries, balance FROM report WHERE customer = 'c1'"
        )
        .await,
        [["11", "NULL"]]
    );
}

/// A relation read both directly and inside resolve_identities (through its edges view):
/// a change to it can move older records to another person, which the changed rows alone
/// do not show, so the view is recomputed whole (found in review).
#[tokio::test]
async fn a_relation_read_by_resolve_identities_too_is_recomputed_whole() {
    let s = Server::start();
    let c = s.client().await;
    const CUST: &str = "SELECT c.id, m.unified_id, c.email FROM customers c \
                        JOIN resolve_identities('edges') m ON m.record_key = c.id";
    const PEOPLE: &str = "SELECT m.unified_id, count(*) AS customers, min(c.id) AS first FROM customers c \
                          JOIN resolve_identities('edges') m ON m.record_key = c.id GROUP BY m.unified_id";
    c.batch_execute(&format!(
        "CREATE TABLE customers (id TEXT, email TEXT, phone TEXT);
         INSERT INTO customers VALUES ('1', 'a@x.com', '+4915112345678'), ('2', 'b@x.com', '+4915187654321');
         CREATE VIEW edges AS
           SELECT 'crm' AS source, id AS record_key, 'email' AS id_type, email AS id_value FROM customers
           UNION ALL SELECT 'crm', id, 'phone', phone FROM customers;
         CREATE MATERIALIZED VIEW cust AS {CUST};
         CREATE MATERIALIZED VIEW people AS {PEOPLE};"
    ))
    .await
    .expect("setup");
    // 3 shares 1's email and 2's phone: 1, 2 and 3 become one person.
    c.batch_execute("INSERT INTO customers VALUES ('3', 'a@x.com', '+4915187654321')")
        .await
        .expect("append");
    refreshes_to(&c, "cust", CUST, "whole").await;
    refreshes_to(&c, "people", PEOPLE, "whole").await;
    assert_eq!(
        rows(&c, "SELECT customers, first FROM people").await,
        [["3", "1"]]
    );
}
