//! Privacy through a real server: masking for roles without the PII privilege on every
//! path (simple and extended queries, views, joins, materialised views, COPY, cursors),
//! SELECT privileges per relation (views by their own name), read-only non-superusers,
//! and purpose-bound sessions that only see people who consented.

use bytes::Bytes;
use futures::TryStreamExt;
use tokio_postgres::Client;

use crate::common::{rows, sqlstate, Server};

const SETUP: &str = "
CREATE TABLE people (id INT NOT NULL, unified_id TEXT, email TEXT, phone TEXT, name TEXT);
INSERT INTO people VALUES
  (1, 'u1', 'anna.berg@example.com', '+44 7700 900123', 'Anna Berg'),
  (2, 'u2', 'bob@shop.test', NULL, 'Bob Lind'),
  (3, 'u3', 'cy@corp.test', '+1 555 0100', 'Cy Young');
COMMENT ON COLUMN people.email IS 'pii:email';
COMMENT ON COLUMN people.phone IS 'pii:phone';
COMMENT ON COLUMN people.name IS 'pii:name';
CREATE TABLE crm (email TEXT, note TEXT);
INSERT INTO crm VALUES ('anna.berg@example.com', 'vip');
COMMENT ON COLUMN crm.email IS 'pii:email';
CREATE TABLE secret (id INT, email TEXT);
INSERT INTO secret VALUES (1, 'anna.berg@example.com');
COMMENT ON COLUMN secret.email IS 'pii:email';
CREATE VIEW people_v AS SELECT p.id, p.unified_id, lower(p.email) AS email, p.name, s.id AS secret_id
  FROM people p LEFT JOIN secret s ON s.email = p.email;
CREATE MATERIALIZED VIEW profiles AS SELECT unified_id, email, name, phone FROM people;
CREATE TABLE consents (unified_id TEXT, purpose TEXT, granted BOOLEAN);
INSERT INTO consents VALUES ('u1', 'email_marketing', true), ('u2', 'email_marketing', false),
  ('u3', 'sms', true);
CREATE MATERIALIZED VIEW consent_state AS SELECT unified_id, purpose, granted FROM consents;
CREATE ROLE analyst LOGIN PASSWORD 'analyst-pw';
GRANT SELECT ON people, crm, people_v, profiles TO analyst;
CREATE ROLE service LOGIN PASSWORD 'service-pw';
GRANT tessera_pii TO service;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO service;
CREATE ROLE marketer LOGIN PASSWORD 'marketer-pw';
GRANT SELECT ON profiles, people TO marketer;
ALTER ROLE marketer SET tessera.purpose = 'email_marketing';
";

const RAW: [&str; 4] = [
    "anna.berg@example.com",
    "Anna Berg",
    "7700",
    "bob@shop.test",
];

async fn setup() -> (Server, Client) {
    let s = Server::start();
    let admin = s.client().await;
    admin.batch_execute(SETUP).await.expect("setup");
    (s, admin)
}

async fn login(s: &Server, role: &str) -> Client {
    s.connect_as(role, &format!("{role}-pw"))
        .await
        .unwrap_or_else(|e| panic!("{role} logs in: {e}"))
}

async fn copy_text(c: &Client, sql: &str) -> String {
    let out = c.copy_out(sql).await.expect("copy out");
    let chunks: Vec<Bytes> = out.try_collect().await.expect("collect");
    chunks
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

async fn error_code(c: &Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(_) => panic!("{sql} succeeded"),
        Err(e) => sqlstate(&e),
    }
}

fn assert_no_raw(text: &str, path: &str) {
    for raw in RAW {
        assert!(!text.contains(raw), "{path} shows {raw:?}: {text}");
    }
}

#[tokio::test]
async fn analyst_reads_personal_data_masked_on_every_path() {
    let (s, _admin) = setup().await;
    let analyst = login(&s, "analyst").await;
    assert_eq!(
        rows(
            &analyst,
            "SELECT id, email, phone, name FROM people ORDER BY id"
        )
        .await,
        [
            ["1", "a***@example.com", "+**********23", "[redacted]"],
            ["2", "b***@shop.test", "NULL", "[redacted]"],
            ["3", "c***@corp.test", "+******00", "[redacted]"],
        ]
    );
    // Raw values cannot be probed: not by filters, joins, subqueries, views or the
    // materialised view, in the simple or the extended protocol.
    for probe in [
        "SELECT count(*) FROM people WHERE email = 'anna.berg@example.com'",
        "SELECT count(*) FROM people WHERE name LIKE 'Anna%'",
        "SELECT count(*) FROM people WHERE phone LIKE '%7700%'",
        "SELECT count(*) FROM people p JOIN (SELECT 'anna.berg@example.com' AS e) q ON q.e = p.email",
        "SELECT count(*) FROM people WHERE id IN (SELECT id FROM people WHERE name = 'Anna Berg')",
        "SELECT count(*) FROM (SELECT email FROM people) x WHERE x.email LIKE 'anna%'",
        "SELECT count(*) FROM people_v WHERE email = 'anna.berg@example.com'",
        "SELECT count(*) FROM profiles WHERE email = 'anna.berg@example.com'",
        "WITH x AS (SELECT * FROM profiles) SELECT count(*) FROM x WHERE name = 'Anna Berg'",
    ] {
        assert_eq!(rows(&analyst, probe).await, [["0"]], "{probe}");
    }
    let prepared = analyst
        .query_one(
            "SELECT count(*) FROM people WHERE email = $1",
            &[&"anna.berg@example.com"],
        )
        .await
        .expect("prepared");
    assert_eq!(prepared.get::<_, i64>(0), 0);
    let row = analyst
        .query_one(
            "SELECT email, name FROM profiles WHERE unified_id = $1",
            &[&"u1"],
        )
        .await
        .expect("prepared profile");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("a***@example.com".into(), "[redacted]".into())
    );

    // COPY out, of a table and of a query.
    assert_no_raw(
        &copy_text(&analyst, "COPY people TO STDOUT").await,
        "COPY people",
    );
    let copied = copy_text(
        &analyst,
        "COPY (SELECT email FROM profiles ORDER BY 1) TO STDOUT",
    )
    .await;
    assert_eq!(copied, "a***@example.com\nb***@shop.test\nc***@corp.test\n");

    // A cursor.
    analyst
        .batch_execute("BEGIN; DECLARE c CURSOR FOR SELECT email, name FROM people_v")
        .await
        .expect("declare");
    let fetched = rows(&analyst, "FETCH ALL FROM c").await;
    assert_eq!(fetched.len(), 3);
    assert_no_raw(&format!("{fetched:?}"), "FETCH");
    analyst.batch_execute("COMMIT").await.expect("commit");

    // The catalogs describe the columns, never their values.
    let described = rows(
        &analyst,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'people' ORDER BY ordinal_position",
    )
    .await;
    assert_eq!(described.len(), 5);
    let catalog = rows(&analyst, "SELECT relname FROM pg_catalog.pg_class").await;
    assert_no_raw(&format!("{catalog:?}"), "pg_class");

    // A role with the PII privilege reads the same relations raw.
    let service = login(&s, "service").await;
    assert_eq!(
        rows(
            &service,
            "SELECT email, name FROM profiles WHERE unified_id = 'u1'"
        )
        .await,
        [["anna.berg@example.com", "Anna Berg"]]
    );
}

#[tokio::test]
async fn non_superusers_read_only_what_they_were_granted() {
    let (s, admin) = setup().await;
    let analyst = login(&s, "analyst").await;
    // Not granted: the table itself, through a subquery, through COPY, prepared.
    for sql in [
        "SELECT * FROM secret",
        "SELECT count(*) FROM people WHERE id IN (SELECT id FROM secret)",
        "SELECT * FROM consents",
        "SELECT * FROM tessera.events",
        "SELECT * FROM tessera.roles",
    ] {
        assert_eq!(error_code(&analyst, sql).await, "42501", "{sql}");
    }
    let e = analyst.prepare("SELECT * FROM secret").await;
    let e = match e {
        Ok(stmt) => analyst
            .query(&stmt, &[])
            .await
            .expect_err("denied on execute"),
        Err(e) => e,
    };
    assert_eq!(sqlstate(&e), "42501");
    let e = analyst
        .copy_out("COPY secret TO STDOUT")
        .await
        .err()
        .expect("copy denied");
    assert_eq!(sqlstate(&e), "42501");
    // A granted view reads what its definer chose (secret), without a grant on it.
    assert_eq!(
        rows(&analyst, "SELECT count(*) FROM people_v").await,
        [["3"]]
    );

    // Writes, definitions and shared settings are for superusers.
    for sql in [
        "INSERT INTO people VALUES (9, 'u9', 'x@y.z', NULL, NULL)",
        "DELETE FROM people WHERE email = 'anna.berg@example.com'",
        "UPDATE people SET name = 'x'",
        "CREATE TABLE mine (a INT)",
        "CREATE VIEW mine AS SELECT 1",
        "COMMENT ON COLUMN people.email IS NULL",
        "REFRESH MATERIALIZED VIEW profiles",
        "DROP TABLE crm",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * INTO stolen FROM people",
        "CREATE ROLE sneaky SUPERUSER",
        "GRANT tessera_pii TO analyst",
    ] {
        assert_eq!(error_code(&analyst, sql).await, "42501", "{sql}");
    }
    let e = analyst
        .execute("DELETE FROM people WHERE id = $1", &[&1i32])
        .await
        .expect_err("prepared delete denied");
    assert_eq!(sqlstate(&e), "42501");
    // Nothing changed, and the session and server go on.
    assert_eq!(rows(&admin, "SELECT count(*) FROM people").await, [["3"]]);
    assert_eq!(rows(&analyst, "SELECT count(*) FROM crm").await, [["1"]]);
    // A grant and a revoke take effect on the next statement.
    admin
        .batch_execute("GRANT SELECT ON secret TO analyst")
        .await
        .expect("grant");
    assert_eq!(
        rows(&analyst, "SELECT email FROM secret").await,
        [["a***@example.com"]]
    );
    admin
        .batch_execute("REVOKE SELECT ON secret FROM analyst")
        .await
        .expect("revoke");
    assert_eq!(error_code(&analyst, "SELECT * FROM secret").await, "42501");
    admin
        .batch_execute("GRANT tessera_pii TO analyst")
        .await
        .expect("pii");
    assert_eq!(
        rows(&analyst, "SELECT email FROM crm").await,
        [["anna.berg@example.com"]]
    );
}

#[tokio::test]
async fn purpose_bound_sessions_see_only_people_who_consented() {
    let (s, admin) = setup().await;
    assert_eq!(
        rows(
            &admin,
            "SELECT unified_id, consent_allows(unified_id, 'email_marketing'), consent_allows(unified_id, 'sms') FROM people ORDER BY 1"
        )
        .await,
        [["u1", "t", "f"], ["u2", "f", "f"], ["u3", "f", "t"]]
    );

    // The marketer's role is bound to email marketing.
    let marketer = login(&s, "marketer").await;
    assert_eq!(
        rows(&marketer, "SHOW tessera.purpose").await,
        [["email_marketing"]]
    );
    assert_eq!(
        rows(&marketer, "SELECT unified_id FROM profiles ORDER BY 1").await,
        [["u1"]]
    );
    assert_eq!(
        rows(&marketer, "SELECT count(*) FROM people").await,
        [["1"]]
    );
    assert_eq!(
        error_code(&marketer, "SET tessera.purpose = 'sms'").await,
        "42501"
    );
    marketer
        .batch_execute("RESET tessera.purpose")
        .await
        .expect("reset");
    assert_eq!(
        rows(&marketer, "SELECT count(*) FROM profiles").await,
        [["1"]],
        "RESET goes back to the role's purpose"
    );

    // Any session can bind itself to a purpose.
    let analyst = login(&s, "analyst").await;
    analyst
        .batch_execute("SET tessera.purpose = 'sms'")
        .await
        .expect("set");
    assert_eq!(
        rows(&analyst, "SELECT unified_id FROM profiles").await,
        [["u3"]]
    );
    // Personal data not keyed by person cannot be read for a purpose.
    assert_eq!(error_code(&analyst, "SELECT * FROM crm").await, "42501");
    analyst
        .batch_execute("RESET tessera.purpose")
        .await
        .expect("reset");
    assert_eq!(
        rows(&analyst, "SELECT count(*) FROM profiles").await,
        [["3"]]
    );

    // A new grant counts once consent_state is refreshed.
    admin
        .batch_execute(
            "UPDATE consents SET granted = true WHERE unified_id = 'u2'; REFRESH MATERIALIZED VIEW consent_state",
        )
        .await
        .expect("consent");
    assert_eq!(
        rows(&marketer, "SELECT unified_id FROM profiles ORDER BY 1").await,
        [["u1"], ["u2"]]
    );
}

#[tokio::test]
async fn audit_log_records_every_statement_for_superusers_only() {
    let (s, admin) = setup().await;
    let analyst = login(&s, "analyst").await;
    assert_eq!(rows(&analyst, "SELECT email FROM people").await.len(), 3);
    assert_eq!(error_code(&analyst, "SELECT * FROM secret").await, "42501");
    let n = analyst
        .execute(
            "SELECT unified_id FROM profiles WHERE unified_id <> $1",
            &[&"u1"],
        )
        .await
        .expect("prepared");
    assert_eq!(n, 2);
    let marketer = login(&s, "marketer").await;
    assert_eq!(rows(&marketer, "SELECT name FROM profiles").await.len(), 1);

    // Only superusers read the log, whatever was granted.
    admin
        .batch_execute("GRANT SELECT ON tessera.audit_log TO analyst")
        .await
        .expect("grant");
    assert_eq!(
        error_code(&analyst, "SELECT * FROM tessera.audit_log").await,
        "42501"
    );

    let query =
        "SELECT role, coalesce(purpose, '-'), statement, coalesce(CAST(rows AS TEXT), '-'), \
                 coalesce(pii_columns, '-'), coalesce(error, '-') FROM tessera.audit_log \
                 WHERE role <> 'tessera' ORDER BY at";
    let mut logged = Vec::new();
    for _ in 0..50 {
        logged = rows(&admin, query).await;
        if logged.len() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        logged,
        [
            [
                "analyst",
                "-",
                "SELECT email FROM people",
                "3",
                "people.email",
                "-"
            ],
            ["analyst", "-", "SELECT * FROM secret", "-", "-", "42501"],
            [
                "analyst",
                "-",
                "SELECT unified_id FROM profiles WHERE unified_id <> $1",
                "2",
                "-",
                "-"
            ],
            [
                "marketer",
                "email_marketing",
                "SELECT name FROM profiles",
                "1",
                "profiles.name",
                "-"
            ],
            [
                "analyst",
                "-",
                "SELECT * FROM tessera.audit_log",
                "-",
                "-",
                "42501"
            ],
        ]
    );
}

/// The first column of each row of prepared `stmt` run with `params`, as text.
async fn prepared_texts(
    c: &Client,
    stmt: &tokio_postgres::Statement,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Option<String>>, tokio_postgres::Error> {
    let rows = c.query(stmt, params).await?;
    Ok(rows.iter().map(|r| r.get::<_, Option<String>>(0)).collect())
}

#[tokio::test]
async fn prepared_statements_follow_privacy_changes_made_after_they_were_planned() {
    // A prepared query's optimised plan is kept across executions and sessions; every
    // change to what it may see must still reach it.
    let (s, admin) = setup().await;
    let analyst = login(&s, "analyst").await;
    let by_id = analyst
        .prepare("SELECT name FROM people WHERE unified_id = $1")
        .await
        .expect("prepare");
    let masked = |v: &Vec<Option<String>>| {
        v.len() == 1
            && v[0]
                .as_deref()
                .is_some_and(|n| !RAW.iter().any(|r| n.contains(r)))
    };
    // Each execution binds its own value into the kept plan: each id's own row, as the
    // simple protocol masks it.
    for _ in 0..3 {
        for (id, raw) in [("u1", "Anna Berg"), ("u2", "Bob Lind")] {
            let names = prepared_texts(&analyst, &by_id, &[&id]).await.expect("run");
            let simple = rows(
                &analyst,
                &format!("SELECT name FROM people WHERE unified_id = '{id}'"),
            )
            .await;
            assert!(masked(&names), "{id}: {names:?}");
            assert_ne!(names[0].as_deref(), Some(raw), "{id}");
            assert_eq!(names[0].as_deref(), Some(simple[0][0].as_str()), "{id}");
        }
        let none = prepared_texts(&analyst, &by_id, &[&"u9"])
            .await
            .expect("run");
        assert!(none.is_empty(), "{none:?}");
    }
    // Declassified: the same statement now reads the name.
    admin
        .batch_execute("COMMENT ON COLUMN people.name IS 'display name'")
        .await
        .expect("comment");
    assert_eq!(
        prepared_texts(&analyst, &by_id, &[&"u1"])
            .await
            .expect("run"),
        [Some("Anna Berg".to_string())]
    );
    // Classified again: masked again.
    admin
        .batch_execute("COMMENT ON COLUMN people.name IS 'pii:name'")
        .await
        .expect("comment");
    let names = prepared_texts(&analyst, &by_id, &[&"u1"])
        .await
        .expect("run");
    assert!(masked(&names), "{names:?}");
    // Revoked: refused.
    admin
        .batch_execute("REVOKE SELECT ON people FROM analyst")
        .await
        .expect("revoke");
    let e = prepared_texts(&analyst, &by_id, &[&"u1"])
        .await
        .expect_err("revoked");
    assert_eq!(sqlstate(&e), "42501");

    // Erased after the plan was kept (with an empty suppression list): gone.
    let by_number = admin
        .prepare("SELECT unified_id FROM people WHERE id = $1")
        .await
        .expect("prepare");
    for _ in 0..2 {
        assert_eq!(
            prepared_texts(&admin, &by_number, &[&2i32])
                .await
                .expect("run"),
            [Some("u2".to_string())]
        );
    }
    admin
        .batch_execute("CALL forget_subject('email', 'bob@shop.test')")
        .await
        .expect("forget");
    assert!(prepared_texts(&admin, &by_number, &[&2i32])
        .await
        .expect("run")
        .is_empty());

    // The clock is read at each execution, not when the plan was made.
    let clock = admin
        .prepare("SELECT CAST(now() AS TEXT) WHERE $1 = 1")
        .await
        .expect("prepare");
    let first = prepared_texts(&admin, &clock, &[&1i64]).await.expect("run");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = prepared_texts(&admin, &clock, &[&1i64]).await.expect("run");
    assert_eq!(first.len(), 1);
    assert_ne!(first, second);
}
