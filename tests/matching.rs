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
            "two or three arguments",
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
