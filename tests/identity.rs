//! `resolve_identities` and `explain_identity` over the wire: stable ids across runs and
//! restarts, merges, merge protection, rules relations, and errors.

use std::collections::HashMap;

use crate::common::{explain, rows, sqlstate, Server};

const EDGES: &str =
    "CREATE TABLE edges (source TEXT, record_key TEXT, id_type TEXT, id_value TEXT);
    INSERT INTO edges VALUES
      ('crm', '1', 'customer_id', 'C1'), ('crm', '1', 'email', 'anna@x.com'),
      ('shop', 'o1', 'email', 'anna@x.com'), ('shop', 'o1', 'phone', '+4915100000001'),
      ('support', 't1', 'phone', '+4915100000001'),
      ('crm', '2', 'customer_id', 'C2'), ('crm', '2', 'email', 'family@x.com'),
      ('crm', '1', 'email', 'family@x.com'),
      ('crm', '3', 'email', 'bob@x.com'),
      ('web', 's1', 'anonymous_id', NULL),
      ('web', 's2', 'phone', '0000000000'), ('web', 's3', 'phone', '0000000000')";

async fn id_map(c: &tokio_postgres::Client, sql: &str) -> HashMap<String, String> {
    rows(c, sql)
        .await
        .into_iter()
        .map(|r| (format!("{}:{}", r[0], r[1]), r[2].clone()))
        .collect()
}

#[tokio::test]
async fn ids_are_stable_merges_are_logged_and_limits_hold() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Server::start_in(tmp.path());
    let c = s.client().await;
    c.batch_execute(EDGES).await.expect("edges");
    let first = id_map(&c, "SELECT * FROM resolve_identities('edges')").await;
    assert_eq!(first.len(), 8, "every record once: {first:?}");
    let anna = &first["crm:1"];
    assert_eq!(&first["shop:o1"], anna);
    assert_eq!(&first["support:t1"], anna);
    // The family email would give one profile two customer ids: refused.
    assert_ne!(&first["crm:2"], anna);
    // The all-zero phone is blocked; the record without identifiers is its own person.
    assert_ne!(first["web:s2"], first["web:s3"]);
    assert_eq!(first.values().filter(|v| *v == &first["web:s1"]).count(), 1);
    assert_eq!(
        rows(
            &c,
            "SELECT id_type, id_value, records FROM tessera.identity_refusals ORDER BY id_value"
        )
        .await,
        vec![
            vec!["phone", "0000000000", "2"],
            vec!["email", "family@x.com", "2"],
        ]
    );

    // Only the columns a query reads are built, in its order; a count reads none.
    let swapped = rows(
        &c,
        "SELECT unified_id, record_key FROM resolve_identities('edges') WHERE source = 'crm'",
    )
    .await;
    assert_eq!(swapped.len(), 3);
    for r in &swapped {
        assert_eq!(r[0], first[&format!("crm:{}", r[1])], "{swapped:?}");
    }
    let distinct: std::collections::HashSet<_> = first.values().collect();
    assert_eq!(
        rows(
            &c,
            "SELECT count(*), count(DISTINCT unified_id) FROM resolve_identities('edges')"
        )
        .await,
        vec![vec!["8".to_string(), distinct.len().to_string()]]
    );
    assert_eq!(
        rows(&c, "SELECT count(*) FROM resolve_identities('edges')").await,
        vec![vec!["8"]]
    );

    // New data joins Bob's and Anna's profiles: the older id survives, the merge is logged.
    c.batch_execute(
        "INSERT INTO edges VALUES ('shop', 'o2', 'email', 'bob@x.com'), ('shop', 'o2', 'phone', '+4915100000001')",
    )
    .await
    .expect("more edges");
    let bob = first["crm:3"].clone();
    let second = id_map(&c, "SELECT * FROM resolve_identities('edges')").await;
    let survivor = second["crm:1"].clone();
    assert!(survivor == *anna || survivor == bob);
    for k in ["crm:3", "shop:o1", "shop:o2", "support:t1"] {
        assert_eq!(second[k], survivor, "{k}");
    }
    let merged = if survivor == *anna { bob } else { anna.clone() };
    assert_eq!(
        rows(
            &c,
            "SELECT merged_id, surviving_id, id_type FROM tessera.identity_merges"
        )
        .await,
        vec![vec![merged, survivor.clone(), "phone".into()]]
    );

    // Ids and logs survive a restart; re-running changes nothing.
    let data = s.kill9();
    let s = Server::start_in(&data);
    let c = s.client().await;
    assert_eq!(
        rows(&c, "SELECT count(*) FROM tessera.identity_merges").await,
        vec![vec!["1"]]
    );
    let third = id_map(&c, "SELECT * FROM resolve_identities('edges')").await;
    assert_eq!(third, second);
    assert_eq!(
        rows(
            &c,
            "SELECT identity_space, records, profiles FROM tessera.identity_spaces"
        )
        .await,
        vec![vec!["edges", "9", "5"]]
    );

    // explain_identity lists the profile's records and what each identifier did.
    let explained = rows(
        &c,
        &format!("SELECT source, record_key, id_type, id_value, status FROM explain_identity('{survivor}') ORDER BY 1, 2, 3, 4"),
    )
    .await;
    assert!(
        explained.contains(&vec![
            "crm".into(),
            "1".into(),
            "email".into(),
            "family@x.com".into(),
            "refused".into()
        ]),
        "{explained:?}"
    );
    assert!(
        explained.contains(&vec![
            "shop".into(),
            "o2".into(),
            "phone".into(),
            "+4915100000001".into(),
            "linked".into()
        ]),
        "{explained:?}"
    );
    assert!(
        explained.contains(&vec![
            "crm".into(),
            "1".into(),
            "customer_id".into(),
            "C1".into(),
            "unique".into()
        ]),
        "{explained:?}"
    );
    assert_eq!(explained.len(), 9, "{explained:?}");
    assert!(rows(
        &c,
        "SELECT * FROM explain_identity('0000000000000000', 'edges')"
    )
    .await
    .is_empty());
}

#[tokio::test]
async fn a_rules_relation_overrides_the_defaults() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(EDGES).await.expect("edges");
    c.batch_execute(
        "CREATE TABLE rules (id_type TEXT, priority INT, max_per_profile INT, blocked_pattern TEXT);
         INSERT INTO rules VALUES ('customer_id', NULL, 0, NULL), ('*', NULL, NULL, '^anna@')",
    )
    .await
    .expect("rules");
    let ids = id_map(&c, "SELECT * FROM resolve_identities('edges', 'rules')").await;
    // No customer-id limit: the family email joins crm:1 and crm:2; anna@ is blocked, so
    // the shop order is only linked to crm:1 through nothing and stays apart.
    assert_eq!(ids["crm:1"], ids["crm:2"]);
    assert_ne!(ids["shop:o1"], ids["crm:1"]);
    assert_eq!(ids["shop:o1"], ids["support:t1"]);

    for (sql, code) in [
        ("SELECT * FROM resolve_identities('edges', 'nope')", "42P01"),
        (
            "SELECT * FROM resolve_identities('edges', 'tessera.identity_spaces')",
            "42703",
        ),
        (
            "SELECT * FROM resolve_identities('edges', 'edges')",
            "42804",
        ),
    ] {
        let e = c.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), code, "{sql}: {e:?}");
    }
    c.batch_execute("CREATE TABLE bad_rules (id_type TEXT, blocked_pattern TEXT); INSERT INTO bad_rules VALUES ('email', '(')")
        .await
        .expect("bad rules");
    let e = c
        .simple_query("SELECT * FROM resolve_identities('edges', 'bad_rules')")
        .await
        .expect_err("bad regex");
    assert!(
        e.to_string().contains("blocked_pattern") || format!("{e:?}").contains("blocked_pattern"),
        "{e:?}"
    );
}

#[tokio::test]
async fn bad_calls_name_what_is_wrong() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE half (source TEXT, record_key TEXT, id_type TEXT);
         CREATE TABLE edges (source TEXT, record_key TEXT, id_type TEXT, id_value TEXT);
         INSERT INTO edges VALUES ('crm', NULL, 'email', 'a@x.com')",
    )
    .await
    .expect("setup");
    for (sql, code, needle) in [
        (
            "SELECT * FROM resolve_identities('missing')",
            "42P01",
            "relation \"missing\" does not exist",
        ),
        (
            "SELECT * FROM resolve_identities('half')",
            "42703",
            "column \"id_value\" of relation \"half\"",
        ),
        (
            "SELECT * FROM resolve_identities(42)",
            "42804",
            "string literal",
        ),
        (
            "SELECT * FROM resolve_identities()",
            "42883",
            "takes one or two arguments",
        ),
        (
            "SELECT * FROM explain_identity('ffffffffffffffff')",
            "42804",
            "no identity space",
        ),
        (
            "SELECT * FROM resolve_identities('edges')",
            "22000",
            "NULL record_key",
        ),
    ] {
        let e = c.simple_query(sql).await.expect_err(sql);
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e:?}"));
        assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
        assert!(db.message().contains(needle), "{sql}: {}", db.message());
    }
    // The server is still up and nothing was recorded for the failed run.
    assert_eq!(
        rows(&c, "SELECT count(*) FROM tessera.identity_spaces").await,
        vec![vec!["0"]]
    );
}

/// The rows come clustered by `unified_id` (hash partitioned and ordered by it, and the
/// planner is told): counting, grouping and ordering by it neither repartition nor sort,
/// a partitioned join by it repartitions only the other side, and a prepared statement
/// executed twice runs twice.
#[tokio::test]
async fn rows_come_clustered_by_unified_id() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("SET datafusion.execution.target_partitions = 2")
        .await
        .expect("set");
    c.batch_execute(EDGES).await.expect("edges");
    let ids = id_map(&c, "SELECT * FROM resolve_identities('edges')").await;
    let mut sizes: HashMap<&String, usize> = HashMap::new();
    for id in ids.values() {
        *sizes.entry(id).or_default() += 1;
    }

    let count = "SELECT count(*), count(DISTINCT unified_id) FROM resolve_identities('edges')";
    let p = explain(&c, count).await;
    assert!(!p.contains("RepartitionExec"), "{p}");
    assert_eq!(
        rows(&c, count).await,
        [[ids.len().to_string(), sizes.len().to_string()]]
    );

    let grouped = "SELECT unified_id, count(*) FROM resolve_identities('edges') GROUP BY unified_id ORDER BY unified_id";
    let p = explain(&c, grouped).await;
    assert!(
        !p.contains("RepartitionExec") && !p.contains("SortExec"),
        "{p}"
    );
    let mut expected: Vec<Vec<String>> = sizes
        .iter()
        .map(|(id, n)| vec![id.to_string(), n.to_string()])
        .collect();
    expected.sort();
    assert_eq!(rows(&c, grouped).await, expected);

    // A partitioned join: only the table's side is repartitioned, by DataFusion's hash,
    // and meets the function's rows in the same partitions.
    c.batch_execute(
        "CREATE TABLE idmap AS SELECT * FROM resolve_identities('edges');
         SET datafusion.optimizer.hash_join_single_partition_threshold = 0;
         SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0",
    )
    .await
    .expect("idmap");
    // (A stored table's text reads as Utf8View: cast to the function's Utf8, so the
    // join's keys are the same type on both sides.)
    let join = "SELECT count(*) FROM resolve_identities('edges') r \
        JOIN (SELECT arrow_cast(unified_id, 'Utf8') AS unified_id FROM idmap) m \
        ON r.unified_id = m.unified_id";
    let p = explain(&c, join).await;
    assert!(p.contains("mode=Partitioned"), "{p}");
    assert_eq!(
        p.matches("RepartitionExec: partitioning=Hash").count(),
        1,
        "{p}"
    );
    let pairs: usize = sizes.values().map(|n| n * n).sum();
    assert_eq!(rows(&c, join).await, [[pairs.to_string()]]);

    let st = c
        .prepare("SELECT unified_id FROM resolve_identities('edges') ORDER BY unified_id")
        .await
        .expect("prepare");
    let first = c.query(&st, &[]).await.expect("first");
    let second = c.query(&st, &[]).await.expect("second");
    let texts = |rs: &[tokio_postgres::Row]| rs.iter().map(|r| r.get(0)).collect::<Vec<String>>();
    let mut expected: Vec<String> = ids.values().cloned().collect();
    expected.sort();
    assert_eq!(texts(&first), expected);
    assert_eq!(texts(&second), expected);
}
