//! Probabilistic matching over the wire: `train_match_model` and `score_matches` on
//! pairs written in SQL, and their errors.

use crate::common::{rows, Server};

/// Candidate pairs: the first 40 are matches (names and phones mostly agree); the others
/// are non-matches whose levels follow the same distribution as the random pairs, as
/// Fellegi-Sunter assumes.
const SETUP: &str = "
CREATE TABLE pairs AS
SELECT 'a' AS left_source, CAST(n AS TEXT) AS left_key, 'b' AS right_source, CAST(n AS TEXT) AS right_key,
       CASE WHEN n < 40 THEN (CASE WHEN n % 7 = 0 THEN 1 ELSE 2 END) ELSE (CASE WHEN n % 50 = 0 THEN 2 WHEN n % 10 = 0 THEN 1 ELSE 0 END) END AS cmp_name,
       CASE WHEN n % 9 = 0 THEN NULL WHEN n < 40 THEN (CASE WHEN n % 6 = 0 THEN 0 ELSE 1 END) ELSE (CASE WHEN n % 40 = 0 THEN 1 ELSE 0 END) END AS cmp_phone
  FROM generate_series(0, 199) AS t(n);
CREATE TABLE random_pairs AS
SELECT 'a' AS left_source, CAST(n AS TEXT) AS left_key, 'b' AS right_source, CAST(n + 1 AS TEXT) AS right_key,
       CASE WHEN n % 50 = 0 THEN 2 WHEN n % 10 = 0 THEN 1 ELSE 0 END AS cmp_name,
       CASE WHEN n % 40 = 0 THEN 1 ELSE 0 END AS cmp_phone
  FROM generate_series(0, 999) AS t(n);
CREATE TABLE model AS SELECT * FROM train_match_model('pairs', 'random_pairs');";

#[tokio::test]
async fn train_and_score_separate_matches_from_non_matches() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(SETUP).await.expect("setup");
    let prior: f64 = rows(&c, "SELECT m FROM model WHERE comparison = '(prior)'").await[0][0]
        .parse()
        .expect("prior");
    assert!((0.1..0.35).contains(&prior), "prior {prior}");
    // u comes from the random pairs: name level 0 is by far the most common there.
    let u0: f64 = rows(
        &c,
        "SELECT u FROM model WHERE comparison = 'name' AND level = 0",
    )
    .await[0][0]
        .parse()
        .expect("u");
    assert!(u0 > 0.8, "u {u0}");
    let scored = rows(
        &c,
        "SELECT CAST(left_key AS INT) < 40 AS truth, match_probability >= 0.5 AS predicted, count(*)
           FROM score_matches('pairs', 'model') GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
    let count = |t: &str, p: &str| -> i64 {
        scored
            .iter()
            .find(|r| r[0] == t && r[1] == p)
            .map_or(0, |r| r[2].parse().expect("count"))
    };
    assert!(count("t", "t") >= 34, "{scored:?}");
    // The only false positives are the seven non-matches that agree on a name (n = 50,
    // 100, 150) or on a phone and half a name (n = 40, 80, 120, 160).
    assert!(count("f", "t") <= 7, "{scored:?}");
    // Scores become edges for resolve_identities.
    c.batch_execute(
        "CREATE VIEW fuzzy AS
           SELECT left_source AS source, left_key AS record_key, 'match_pair' AS id_type, concat(left_key, '~', right_key) AS id_value
             FROM score_matches('pairs', 'model') WHERE match_probability >= 0.5
           UNION ALL
           SELECT right_source, right_key, 'match_pair', concat(left_key, '~', right_key)
             FROM score_matches('pairs', 'model') WHERE match_probability >= 0.5",
    )
    .await
    .expect("edges view");
    let linked = rows(
        &c,
        "SELECT count(*) FROM resolve_identities('fuzzy') a JOIN resolve_identities('fuzzy') b
           ON a.source = 'a' AND b.source = 'b' AND a.record_key = '1' AND b.record_key = '1' AND a.unified_id = b.unified_id",
    )
    .await;
    assert_eq!(linked, vec![vec!["1"]]);
}

#[tokio::test]
async fn matching_errors_name_the_problem() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(SETUP).await.expect("setup");
    c.batch_execute(
        "CREATE TABLE no_cmp AS SELECT 'a' AS left_source, 'x' AS left_key, 'b' AS right_source, 'y' AS right_key;
         CREATE TABLE half_random AS SELECT left_source, left_key, right_source, right_key, cmp_name FROM random_pairs;
         CREATE TABLE odd AS SELECT left_source, left_key, right_source, right_key, 7 AS cmp_name, cmp_phone FROM pairs",
    )
    .await
    .expect("setup 2");
    for (sql, code, needle) in [
        (
            "SELECT * FROM train_match_model('pairs')",
            "42883",
            "two to four arguments",
        ),
        (
            "SELECT * FROM train_match_model('nope', 'random_pairs')",
            "42P01",
            "\"nope\"",
        ),
        (
            "SELECT * FROM train_match_model('no_cmp', 'random_pairs')",
            "42804",
            "cmp_<attribute>",
        ),
        (
            "SELECT * FROM train_match_model('pairs', 'half_random')",
            "42703",
            "cmp_phone",
        ),
        (
            "SELECT * FROM train_match_model('pairs', 'random_pairs', 'dob')",
            "42703",
            "cmp_dob",
        ),
        (
            "SELECT * FROM train_match_model('pairs', 'random_pairs', 'name: name')",
            "42703",
            "\"rule\"",
        ),
        (
            "SELECT * FROM train_match_model('pairs', 'random_pairs', 'a: name; phone')",
            "42804",
            "names no rule",
        ),
        (
            "SELECT * FROM train_match_model('pairs', 'random_pairs', '', 'nope')",
            "42P01",
            "\"nope\"",
        ),
        (
            "SELECT * FROM score_matches('pairs', 'pairs')",
            "42804",
            "comparison",
        ),
        (
            "SELECT * FROM score_matches('odd', 'model')",
            "22000",
            "level 7",
        ),
    ] {
        let e = c.simple_query(sql).await.expect_err(sql);
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e:?}"));
        assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
        assert!(db.message().contains(needle), "{sql}: {}", db.message());
    }
}

/// Two blocking rules trained in one call: the pairs' `rule` column splits them into
/// sessions, each leaving out the comparison its rule fixes, and the fourth argument
/// (the records, or the number of pairs) turns the share of matches among candidates
/// into the share among all pairs.
#[tokio::test]
async fn sessions_per_rule_and_the_prior_among_all_pairs() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(SETUP).await.expect("setup");
    // Rule 'phone' yields pairs agreeing on the phone, rule 'name' on the name; the
    // free comparison of each follows the SETUP pairs (40 matches out of 200).
    c.batch_execute(
        "CREATE TABLE records AS SELECT n FROM generate_series(1, 1000) AS t(n);
         CREATE VIEW ruled AS
           SELECT 'phone' AS rule, left_source, left_key, right_source, right_key, cmp_name, 1 AS cmp_phone FROM pairs
           UNION ALL
           SELECT 'name', left_source, left_key, right_source, right_key, 2 AS cmp_name, cmp_phone FROM pairs WHERE cmp_phone IS NOT NULL;
         CREATE TABLE by_records AS SELECT * FROM train_match_model('ruled', 'random_pairs', 'phone: phone; name: name', 'records');
         CREATE TABLE by_count AS SELECT * FROM train_match_model('ruled', 'random_pairs', 'phone: phone; name: name', 499500);
         CREATE TABLE by_u AS SELECT * FROM train_match_model('ruled', 'random_pairs', 'phone: phone; name: name');",
    )
    .await
    .expect("train");
    let prior = |t: &'static str| {
        let c = &c;
        async move {
            rows(
                c,
                &format!("SELECT m, pairs FROM {t} WHERE comparison = '(prior)'"),
            )
            .await[0]
                .clone()
        }
    };
    let (records, count, by_u) = (
        prior("by_records").await,
        prior("by_count").await,
        prior("by_u").await,
    );
    // 1,000 records: 499,500 pairs; both calls say the same.
    assert_eq!(records, count);
    // All pairs of both sessions are counted.
    let candidates: i64 = rows(&c, "SELECT count(*) FROM ruled").await[0][0]
        .parse()
        .expect("n");
    assert_eq!(records[1], candidates.to_string());
    // About 40 matches per rule among 499,500 pairs (m of the fixed level is below 1,
    // which raises it a little).
    let p: f64 = records[0].parse().expect("prior");
    assert!((5e-5..3e-4).contains(&p), "prior {p}");
    assert_ne!(records[0], by_u[0]);
    // Each fixed comparison's m is learnt in the other rule's session.
    let learnt = rows(
        &c,
        "SELECT comparison, count(m) FROM by_records WHERE level IS NOT NULL GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(learnt, vec![vec!["name", "3"], vec!["phone", "2"]]);
}
