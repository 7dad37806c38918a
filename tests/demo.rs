//! `tessera demo` with the SQL model of `sql/`: every source record gets a unified id and
//! the deterministic identity map agrees with the generated ground truth.

use crate::common::{rows, Server};

#[tokio::test]
async fn demo_model_resolves_identities_against_the_ground_truth() {
    let sql_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
    let s = Server::demo(&["--customers", "300", "--seed", "7", "--sql-dir", sql_dir]);
    let c = s.client().await;
    // One unified id per ground-truth record, none invented.
    assert_eq!(
        rows(
            &c,
            "SELECT count(*), count(g.person_id) FROM identity_map m
               LEFT JOIN ground_truth g ON g.source = m.source AND g.record_key = m.record_key"
        )
        .await,
        rows(&c, "SELECT count(*), count(*) FROM ground_truth").await
    );
    let quality = rows(
        &c,
        "SELECT method, scope, precision, recall FROM identity_quality ORDER BY method, scope",
    )
    .await;
    assert_eq!(quality.len(), 4, "{quality:?}");
    let recall = |method: &str| -> f64 {
        quality
            .iter()
            .find(|q| q[0] == method && q[1] == "customer records")
            .map(|q| q[3].parse().expect("recall"))
            .expect("row")
    };
    for q in &quality {
        let precision: f64 = q[2].parse().expect("precision");
        let recall: f64 = q[3].parse().expect("recall");
        // Matching hardly ever glues strangers together on this data, and links most
        // records; a regression in the normalisers or the linking shows here.
        assert!(precision >= 0.97, "{q:?}");
        assert!(recall >= 0.8, "{q:?}");
    }
    // Probabilistic matches find people deterministic matching cannot (support
    // tickets with a name and a nationally written phone).
    assert!(
        recall("deterministic + probabilistic") > recall("deterministic"),
        "{quality:?}"
    );
    // Blocking: both rules pair records, junk typed into phone fields blocks nothing,
    // and only pairs deterministic matching left apart are scored.
    assert_eq!(
        rows(
            &c,
            "SELECT DISTINCT rule FROM person_pair_keys ORDER BY rule"
        )
        .await,
        vec![vec!["email"], vec!["phone"], vec!["random"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) > 0, count(r.phone9) FROM shop_orders o
               JOIN match_records r ON r.source = 'shop_orders' AND r.record_key = o.order_id
              WHERE o.phone IN ('000000', '0', '123456', '0000000000')"
        )
        .await,
        vec![vec!["t", "0"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) > 0, count(*) FILTER (WHERE l.unified_id = r.unified_id)
               FROM match_scores s
               JOIN identity_map_deterministic l ON l.source = s.left_source AND l.record_key = s.left_key
               JOIN identity_map_deterministic r ON r.source = s.right_source AND r.record_key = s.right_key"
        )
        .await,
        vec![vec!["t", "0"]]
    );
    // The model was trained: a prior and m/u for every comparison level.
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) > 5, count(*) FILTER (WHERE comparison = '(prior)') FROM match_model"
        )
        .await,
        vec![vec!["t", "1"]]
    );
    // A file dropped into a source's directory is read as appended rows: the staging
    // view of identifiers gains only theirs.
    let tickets = s.data_dir.join("demo/sources/support_tickets");
    let header = "ticket_id,name,phone,subject,opened_at,status";
    std::fs::write(
        tickets.join("day-2.csv"),
        format!(
            "{header}\nT-NEW-1,Ann Lee,+44 20 7946 0958,Refund,2024-05-01 10:00:00,open\n\
             T-NEW-2,Bo Chan,,Delivery,2024-05-01 11:00:00,closed\n"
        ),
    )
    .expect("drop a file");
    c.batch_execute("REFRESH MATERIALIZED VIEW identifiers")
        .await
        .expect("refresh");
    assert_eq!(
        rows(
            &c,
            "SELECT incremental_keys FROM tessera.materialized_views WHERE name = 'identifiers'"
        )
        .await,
        vec![vec!["2"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT record_key, id_type, id_value FROM identifiers
              WHERE record_key LIKE 'T-NEW-%' ORDER BY record_key"
        )
        .await,
        vec![
            vec!["T-NEW-1", "phone", "+442079460958"],
            vec!["T-NEW-2", "phone", "NULL"]
        ]
    );
    assert_eq!(
        rows(&c, "SELECT count(*) FROM identifiers").await,
        rows(&c, "SELECT count(*) FROM identity_edges").await
    );
    // Family emails shared by two customers were refused, not merged.
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) > 0 FROM tessera.identity_refusals WHERE reason LIKE '%customer_id values (limit 1)%'"
        )
        .await,
        vec![vec!["t"]]
    );
}
