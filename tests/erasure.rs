//! `CALL forget_subject(id_type, id_value)` on the demo: afterwards no query returns the
//! person, nothing in the data directory holds their email, phone or name (the external
//! sources' files aside: they belong to the source systems, and are read without the
//! person from then on), events about them are dropped as they arrive, and all of it
//! holds across a restart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use tokio_postgres::Client;

use crate::common::{rows, sqlstate, Server};

/// The demo's generated source files (external sources), under the data directory.
const SOURCES: &str = "demo";

/// Every file under `dir` but the external sources, with its content as searched: the
/// bytes as they are, and for Parquet files (whose pages are compressed) every value
/// decoded as text too.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = e.path();
            if path == dir.join(SOURCES) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let mut content = std::fs::read(&path).expect("read");
            if path.extension().is_some_and(|x| x == "parquet") {
                content.extend(decoded(&path).into_bytes());
            }
            out.push((path, content));
        }
    }
    out
}

/// Every value of a Parquet file, as text.
fn decoded(path: &Path) -> String {
    let file = std::fs::File::open(path).expect("open");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    for batch in reader {
        let batch = batch.expect("batch");
        for column in batch.columns() {
            let f = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
                .expect("formatter");
            for i in 0..column.len() {
                text.push_str(&f.value(i).to_string());
                text.push('\n');
            }
        }
    }
    text
}

/// The needles found in the data directory, with where.
fn found(dir: &Path, needles: &[String]) -> Vec<String> {
    let mut hits = Vec::new();
    for (path, content) in files(dir) {
        for n in needles {
            if content.windows(n.len()).any(|w| w == n.as_bytes()) {
                hits.push(format!("{n} in {}", path.display()));
            }
        }
    }
    hits
}

/// The person to erase: a CRM contact with a valid email and phone that no one else
/// shares, and a last name that appears in no one else's rows.
struct Person {
    contact_id: String,
    email: String,
    phone: String,
    phone_e164: String,
    first_name: String,
    last_name: String,
    unified_id: String,
}

async fn pick(c: &Client) -> Person {
    let candidates = rows(
        c,
        "SELECT c.contact_id, c.email, c.phone, normalize_phone(c.phone, trim(c.country)),
                c.first_name, c.last_name, l.unified_id
           FROM crm_contacts c
           JOIN identity_lookup l ON l.id_type = 'email' AND l.id_value = normalize_email(c.email)
          WHERE normalize_phone(c.phone, trim(c.country)) IS NOT NULL
            AND length(c.last_name) >= 5
          ORDER BY c.contact_id",
    )
    .await;
    // Everyone's names and identifiers but the candidate's own, to rule out sharing.
    let names = rows(
        c,
        "SELECT m.unified_id, x.name FROM (
             SELECT 'crm_contacts' AS source, contact_id AS key, first_name || ' ' || last_name AS name FROM crm_contacts
             UNION ALL SELECT 'shop_orders', order_id, customer_name FROM shop_orders
             UNION ALL SELECT 'support_tickets', ticket_id, name FROM support_tickets) x
           JOIN identity_map m ON m.source = x.source AND m.record_key = x.key",
    )
    .await;
    let ids = rows(c, "SELECT unified_id, id_value FROM identity_lookup").await;
    let refused: BTreeSet<String> = rows(c, "SELECT id_value FROM tessera.identity_refusals")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    for r in candidates {
        let (uid, last) = (&r[6], &r[5]);
        let email = rows(c, &format!("SELECT normalize_email('{}')", r[1])).await[0][0].clone();
        let shared_name = names
            .iter()
            .any(|n| &n[0] != uid && n[1].contains(last.as_str()));
        let shared_id = ids
            .iter()
            .any(|i| &i[0] != uid && (i[1] == email || i[1] == r[3]));
        if !shared_name && !shared_id && !refused.contains(&email) && !refused.contains(&r[3]) {
            return Person {
                contact_id: r[0].clone(),
                email: r[1].clone(),
                phone: r[2].clone(),
                phone_e164: r[3].clone(),
                first_name: r[4].clone(),
                last_name: r[5].clone(),
                unified_id: uid.clone(),
            };
        }
    }
    panic!("no one to erase in the demo data");
}

async fn count(c: &Client, sql: &str) -> i64 {
    rows(c, sql).await[0][0].parse().expect("count")
}

async fn post(server: &Server, key: &str, body: serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/batch", server.http_port))
        .basic_auth(key, Some(""))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

fn identify(message_id: &str, user_id: &str, email: &str) -> serde_json::Value {
    json!({"batch": [{
        "type": "identify", "messageId": message_id, "userId": user_id,
        "anonymousId": format!("anon-{message_id}"),
        "traits": {"email": email}, "timestamp": "2026-11-30T10:00:00Z"
    }]})
}

#[tokio::test]
async fn forget_subject_erases_a_person_from_everything_the_engine_stores() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sql_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
    let s = Server::spawn_with(
        &[
            "demo",
            "--customers",
            "120",
            "--seed",
            "3",
            "--sql-dir",
            sql_dir,
        ],
        tmp.path(),
        &[],
    );
    let c = s.client().await;
    let p = pick(&c).await;
    let needles = vec![
        p.email.trim().to_string(),
        p.email.trim().to_lowercase(),
        p.phone.trim().to_string(),
        p.phone_e164.clone(),
        p.last_name.clone(),
        format!("{} {}", p.first_name, p.last_name),
    ];

    // Data of theirs the engine owns: a table of ours (changed once by a statement
    // whose predicate names them, which Delta writes into its log), and events.
    c.batch_execute(&format!(
        "CREATE TABLE notes (email text, note text);
         COMMENT ON COLUMN notes.email IS 'pii:email';
         INSERT INTO notes VALUES ('{0}', 'called about an order'), ('someone@else.test', 'kept');
         UPDATE notes SET note = 'called twice' WHERE email = '{0}';",
        p.email
    ))
    .await
    .expect("notes");
    let key = rows(&c, "CREATE WRITE KEY app FOR SOURCE 'app'").await[0][2].clone();
    assert_eq!(
        post(&s, &key, identify("m1", &p.contact_id, &p.email)).await,
        200
    );
    assert_eq!(
        post(&s, &key, identify("m2", "OTHER-1", "other@else.test")).await,
        200
    );
    c.batch_execute("REFRESH MATERIALIZED VIEW identity_lookup")
        .await
        .expect("refresh");
    let held = rows(
        &c,
        &format!(
            "SELECT DISTINCT relation FROM subject_access('email', '{}') ORDER BY 1",
            p.email
        ),
    )
    .await;
    let held: Vec<&str> = held.iter().map(|r| r[0].as_str()).collect();
    for r in [
        "crm_contacts",
        "identity_lookup",
        "notes",
        "profiles",
        "tessera.events",
    ] {
        assert!(held.contains(&r), "{r} not in {held:?}");
    }
    let crm_before = count(&c, "SELECT count(*) FROM crm_contacts").await;
    let events_before = count(&c, "SELECT count(*) FROM tessera.events").await;
    // The search finds what it looks for: before the erasure, in the engine's files.
    let before = found(tmp.path(), &needles);
    for n in [&p.email.trim().to_lowercase(), &p.phone_e164, &p.last_name] {
        assert!(
            before.iter().any(|h| h.starts_with(&format!("{n} in "))),
            "{n} is nowhere in the data directory before the erasure: {before:?}"
        );
    }

    // A role without superuser rights may not erase.
    c.batch_execute("CREATE ROLE dpo LOGIN PASSWORD 'dpo-pw'; GRANT tessera_pii TO dpo")
        .await
        .expect("role");
    let dpo = s.connect_as("dpo", "dpo-pw").await.expect("dpo");
    let e = dpo
        .simple_query(&format!("CALL forget_subject('email', '{}')", p.email))
        .await
        .expect_err("not a superuser");
    assert_eq!(sqlstate(&e), "42501");

    let receipt = rows(&c, &format!("CALL forget_subject('email', '{}')", p.email)).await;
    assert_eq!(receipt.len(), 1, "{receipt:?}");
    let (receipt_id, identifiers, erased, relations, sources) = (
        &receipt[0][0],
        &receipt[0][1],
        &receipt[0][2],
        &receipt[0][3],
        &receipt[0][4],
    );
    assert!(
        identifiers.parse::<u32>().expect("identifiers") >= 3,
        "{receipt:?}"
    );
    assert!(erased.parse::<u32>().expect("rows") >= 4, "{receipt:?}");
    for r in ["notes 1", "profiles 1", "tessera.events 1"] {
        assert!(relations.contains(r), "{r} not in {relations}");
    }
    assert!(sources.contains("crm_contacts 1"), "{sources}");

    // No query returns them, by any of their identifiers or through any relation.
    for (t, v) in [
        ("email", &p.email),
        ("phone", &p.phone_e164),
        ("customer_id", &p.contact_id),
    ] {
        assert_eq!(
            count(
                &c,
                &format!("SELECT count(*) FROM subject_access('{t}', '{v}')")
            )
            .await,
            0,
            "{t}"
        );
    }
    for sql in [
        format!("SELECT count(*) FROM crm_contacts WHERE contact_id = '{}'", p.contact_id),
        format!("SELECT count(*) FROM shop_orders WHERE normalize_email(customer_email) = normalize_email('{}')", p.email),
        format!("SELECT count(*) FROM profiles WHERE unified_id = '{}'", p.unified_id),
        format!("SELECT count(*) FROM identity_lookup WHERE id_value IN (normalize_email('{}'), '{}')", p.email, p.phone_e164),
        format!("SELECT count(*) FROM identifiers WHERE id_value IN (normalize_email('{}'), '{}')", p.email, p.phone_e164),
        format!("SELECT count(*) FROM match_records WHERE email = normalize_email('{}')", p.email),
        format!("SELECT count(*) FROM notes WHERE email = '{}'", p.email),
        format!("SELECT count(*) FROM tessera.segment_changes WHERE unified_id = '{}'", p.unified_id),
        format!("SELECT count(*) FROM tessera.identity_merges WHERE merged_id = '{0}' OR surviving_id = '{0}'", p.unified_id),
    ] {
        assert_eq!(count(&c, &sql).await, 0, "{sql}");
    }
    // Names are no identifiers (others may share them): asked as parameters, which the
    // audit log does not keep.
    for sql in [
        "SELECT count(*) FROM profiles WHERE last_name = $1",
        "SELECT count(*) FROM stg_contacts WHERE last_name = $1",
        "SELECT count(*) FROM support_tickets WHERE strpos(name, $1) > 0",
    ] {
        let n: i64 = c.query_one(sql, &[&p.last_name]).await.expect(sql).get(0);
        assert_eq!(n, 0, "{sql}");
    }
    // Everyone else stays.
    assert_eq!(
        count(&c, "SELECT count(*) FROM crm_contacts").await,
        crm_before - 1
    );
    assert_eq!(count(&c, "SELECT count(*) FROM notes").await, 1);
    assert_eq!(
        count(&c, "SELECT count(*) FROM tessera.events").await,
        events_before - 1
    );

    // Events about them are dropped as they arrive (and answered as stored).
    assert_eq!(
        post(&s, &key, identify("m3", "NEW-1", &p.email.to_uppercase())).await,
        200
    );
    assert_eq!(
        post(&s, &key, identify("m4", "NEW-2", "new@else.test")).await,
        200
    );
    assert_eq!(
        rows(
            &c,
            "SELECT message_id FROM tessera.events WHERE source = 'app' ORDER BY 1"
        )
        .await,
        vec![vec!["m2"], vec!["m4"]]
    );

    // The receipt and the audit log say what happened, not to whom.
    assert_eq!(
        rows(
            &c,
            &format!(
                "SELECT requested_by, id_type, found, subject = pseudonymize(normalize_email('{}'))
                   FROM tessera.erasure_receipts WHERE receipt_id = '{receipt_id}'",
                p.email
            )
        )
        .await,
        vec![vec!["tessera", "email", "t", "t"]]
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // Statements naming their identifiers after the erasure are logged without them.
    assert!(
        count(
            &c,
            "SELECT count(*) FROM tessera.audit_log
              WHERE statement LIKE '%subject_access(''email'', ''[erased]'')%'"
        )
        .await
            >= 1
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM tessera.audit_log
              WHERE statement = 'CALL forget_subject(''email'', ''[erased]'')'
                AND role = 'tessera' AND error IS NULL"
        )
        .await,
        1
    );
    let e = dpo
        .simple_query("SELECT * FROM tessera.erasure_receipts")
        .await
        .expect_err("superusers only");
    assert_eq!(sqlstate(&e), "42501");

    // Nothing in the data directory holds them any more.
    let after = found(tmp.path(), &needles);
    assert!(after.is_empty(), "{after:#?}");
    // ...but their source files still do: those belong to the source systems.
    let sources_dir = tmp.path().join(SOURCES);
    let in_sources = std::fs::read_dir(&sources_dir)
        .expect("sources")
        .flatten()
        .any(|f| {
            let bytes = std::fs::read(f.path()).unwrap_or_default();
            bytes
                .windows(p.email.len())
                .any(|w| w == p.email.as_bytes())
        });
    assert!(
        in_sources,
        "the demo's CRM file should still hold the email"
    );

    // All of it holds after a restart and a refresh of everything.
    drop((c, dpo));
    s.stop();
    let s = Server::start_in(tmp.path());
    let c = s.client().await;
    c.batch_execute(
        "REFRESH MATERIALIZED VIEW profiles; REFRESH MATERIALIZED VIEW identity_lookup;",
    )
    .await
    .expect("refresh");
    for sql in [
        format!(
            "SELECT count(*) FROM crm_contacts WHERE contact_id = '{}'",
            p.contact_id
        ),
        format!(
            "SELECT count(*) FROM subject_access('email', '{}')",
            p.email
        ),
    ] {
        assert_eq!(count(&c, &sql).await, 0, "{sql}");
    }
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM profiles WHERE last_name = $1",
            &[&p.last_name],
        )
        .await
        .expect("profiles")
        .get(0);
    assert_eq!(n, 0);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let after = found(tmp.path(), &needles);
    assert!(after.is_empty(), "{after:#?}");
}

#[tokio::test]
async fn forget_subject_checks_its_arguments() {
    let s = Server::start();
    let c = s.client().await;
    let e = c
        .simple_query("CALL forget_subject('email')")
        .await
        .expect_err("one argument");
    let message = e.as_db_error().map(|d| d.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("two text arguments")),
        "{e:?}"
    );
    let e = c
        .simple_query("CALL forget_subject('email', 'not an address')")
        .await
        .expect_err("bad email");
    assert_eq!(sqlstate(&e), "22023");
    // Without an identity model, the identifier given is still suppressed (and its rows
    // deleted, whatever the table's spelling), and a receipt given.
    c.batch_execute(
        r#"CREATE TABLE "Contact Notes" (email text, note text);
           COMMENT ON COLUMN "Contact Notes".email IS 'pii:email';
           INSERT INTO "Contact Notes" VALUES ('nobody@example.com', 'a'), ('x@example.com', 'b');"#,
    )
    .await
    .expect("table");
    let r = rows(&c, "CALL forget_subject('email', 'Nobody@Example.com')").await;
    assert_eq!(r[0][1], "1", "{r:?}");
    assert_eq!(r[0][2], "1", "{r:?}");
    assert_eq!(r[0][3], "Contact Notes 1", "{r:?}");
    assert_eq!(
        rows(&c, r#"SELECT email FROM "Contact Notes""#).await,
        vec![vec!["x@example.com"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT found, identifiers FROM tessera.erasure_receipts"
        )
        .await,
        vec![vec!["f", "1"]]
    );
}

/// A view declared with a key is written whole after an erasure: its overlay would only
/// hide the erased person's rows, which must leave its stored files.
#[tokio::test]
async fn a_view_with_a_declared_key_is_written_whole_after_an_erasure() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE contacts (email text, note text);
         COMMENT ON COLUMN contacts.email IS 'pii:email';
         INSERT INTO contacts SELECT 'p' || CAST(value AS TEXT) || '@example.com', 'n'
           FROM generate_series(1, 100);
         CREATE MATERIALIZED VIEW notes_by_email WITH (key = 'email') AS
           SELECT email, note FROM contacts;",
    )
    .await
    .expect("setup");
    let r = rows(&c, "CALL forget_subject('email', 'p7@example.com')").await;
    assert_eq!(r[0][3], "contacts 1", "{r:?}");
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) FROM notes_by_email WHERE email LIKE 'p7@%'"
        )
        .await,
        [["0"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT rows, coalesce(CAST(incremental_keys AS TEXT), 'whole')
               FROM tessera.materialized_views WHERE name = 'notes_by_email'"
        )
        .await,
        [["99", "whole"]]
    );
}
