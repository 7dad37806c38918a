//! Masking through every relational path, in process: the same queries as the engine's
//! own account and as a principal without the PII privilege.

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::{as_system, run_as, Principal};
use crate::engine::Engine;

const MODEL: &str = "
CREATE TABLE people (id INT NOT NULL, email TEXT, phone TEXT, name TEXT, born DATE, score INT NOT NULL);
INSERT INTO people VALUES
  (1, 'anna.berg@example.com', '+44 7700 900123', 'Anna Berg', DATE '1990-04-01', 7),
  (2, 'bob@shop.test', NULL, 'Bob Lind', NULL, 3);
COMMENT ON COLUMN people.email IS 'pii:email';
COMMENT ON COLUMN people.phone IS 'pii:phone';
COMMENT ON COLUMN people.name IS 'pii:name';
COMMENT ON COLUMN people.born IS 'pii';
COMMENT ON COLUMN people.score IS 'pii:score';
CREATE VIEW people_v AS SELECT id, lower(email) AS email, name FROM people;
CREATE MATERIALIZED VIEW people_mv AS
  SELECT id, upper(email) AS email, count(phone) AS phones, email IS NOT NULL AS has_email,
         concat(name, phone) AS mixed
    FROM people GROUP BY id, email, name, phone;
";

fn analyst() -> Principal {
    Principal {
        name: "analyst".into(),
        superuser: false,
        pii: false,
        purpose: None,
        grants: crate::auth::Grants {
            all_tables: true,
            ..Default::default()
        },
    }
}

async fn rows(engine: &Engine, sql: &str) -> Vec<Vec<String>> {
    let batches = match engine.session_context().sql(sql).await {
        Ok(df) => df.collect().await,
        Err(e) => Err(e),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in &batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for r in 0..b.num_rows() {
            out.push(formatters.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    out
}

async fn setup() -> (tempfile::TempDir, std::sync::Arc<Engine>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(dir.path()).await.expect("open");
    engine.run_script(MODEL).await.expect("model");
    (dir, engine)
}

#[tokio::test]
async fn analyst_sees_masked_values_on_every_path() {
    let (_dir, engine) = setup().await;
    let e = &engine;
    let raw = as_system(rows(e, "SELECT email, phone, name FROM people ORDER BY id")).await;
    assert_eq!(
        raw[0],
        ["anna.berg@example.com", "+44 7700 900123", "Anna Berg"]
    );

    run_as(analyst(), async {
        assert_eq!(
            rows(e, "SELECT id, email, phone, name, born, score FROM people ORDER BY id").await,
            [
                ["1", "a***@example.com", "+**********23", "[redacted]", "NULL", "0"],
                ["2", "b***@shop.test", "NULL", "[redacted]", "NULL", "0"],
            ]
        );
        // Filters, joins, aggregates and subqueries only ever see masked values.
        let probes = [
            "SELECT count(*) FROM people WHERE email = 'anna.berg@example.com'",
            "SELECT count(*) FROM people WHERE email LIKE 'anna%'",
            "SELECT count(*) FROM people WHERE phone LIKE '%7700%'",
            "SELECT count(*) FROM people p JOIN (SELECT 'Anna Berg' AS n) q ON p.name = q.n",
            "SELECT count(*) FROM (SELECT * FROM people) s WHERE s.name = 'Anna Berg'",
            "SELECT count(*) FROM people WHERE id IN (SELECT id FROM people WHERE name = 'Anna Berg')",
            "SELECT count(*) FROM people_v WHERE email = 'anna.berg@example.com'",
            "SELECT count(*) FROM people_mv WHERE email = 'ANNA.BERG@EXAMPLE.COM'",
            "SELECT count(*) FROM people_mv WHERE mixed LIKE '%Anna%'",
        ];
        for probe in probes {
            assert_eq!(rows(e, probe).await, [["0"]], "{probe}");
        }
        assert_eq!(
            rows(e, "SELECT max(email), min(name) FROM people").await,
            [["b***@shop.test", "[redacted]"]]
        );
        assert_eq!(
            rows(e, "SELECT email, name FROM people_v ORDER BY id").await,
            [["a***@example.com", "[redacted]"], ["b***@shop.test", "[redacted]"]]
        );
        // The materialised view stores raw values; its columns inherit the classes of
        // what they were computed from, except counts and booleans.
        assert_eq!(
            rows(e, "SELECT email, phones, has_email, mixed FROM people_mv ORDER BY id").await,
            [
                ["A***@EXAMPLE.COM", "1", "true", "[redacted]"],
                ["B***@SHOP.TEST", "0", "true", "[redacted]"],
            ]
        );
        // Masked values still group and count (pseudonymised and masked forms are stable).
        assert_eq!(
            rows(e, "SELECT count(DISTINCT email) FROM people").await,
            [["2"]]
        );
    })
    .await;

    // Outside any scope nothing is privileged: not even reading.
    let err = match e.session_context().sql("SELECT email FROM people").await {
        Ok(df) => df.collect().await.err(),
        Err(err) => Some(err),
    };
    let err = err.expect("denied outside any scope").to_string();
    assert!(err.contains("permission denied for table people"), "{err}");
}

#[tokio::test]
async fn classes_follow_comments_and_survive_restart() {
    let (dir, engine) = setup().await;
    engine
        .run_script("COMMENT ON COLUMN people.name IS NULL")
        .await
        .expect("uncomment");
    let analyst_name = || {
        run_as(
            analyst(),
            rows(&engine, "SELECT name FROM people WHERE id = 1"),
        )
    };
    assert_eq!(analyst_name().await, [["Anna Berg"]]);
    let err = engine
        .run_script("COMMENT ON COLUMN people.nope IS 'pii'")
        .await
        .expect_err("unknown column");
    assert!(err.to_string().contains("nope"), "{err}");
    let err = engine
        .run_script("COMMENT ON COLUMN people_v.name IS 'pii'")
        .await
        .expect_err("view");
    assert!(err.to_string().contains("people_v"), "{err}");
    drop(engine);

    let engine = Engine::open(dir.path()).await.expect("reopen");
    let masked = run_as(
        analyst(),
        rows(&engine, "SELECT email, mixed FROM people_mv WHERE id = 1"),
    )
    .await;
    // `mixed` is now computed from the phone alone, so it is masked as a phone.
    assert_eq!(masked, [["A***@EXAMPLE.COM", "**********23"]]);
    let key = std::fs::read(dir.path().join("pseudonym.key")).expect("key");
    assert_eq!(key.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("pseudonym.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
