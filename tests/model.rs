//! The default CDP model of `sql/` on a small hand-made dataset whose profiles are
//! known: harmonisation, identity map, profiles (survivorship, orders, engagement,
//! consent), segments, the changes a new order makes to them, and events collected
//! over HTTP joining the model as a source.

use std::path::Path;

use tokio_postgres::Client;

use crate::common::{rows, Server};

const CRM: &str = "\
contact_id,first_name,last_name,email,phone,street,city,postcode,country,birth_date,created_at,updated_at
C100, Ann ,Lee,Ann.Lee+shop@Gmail.com,+44 7911 123456,1 High St,Leeds,LS1 1AA,GB,1990-04-01,2024-01-10T09:00:00Z,2026-05-01T10:00:00Z
C200,Bob,Martin,bob.martin@orange.fr,06 12 34 56 78,3 rue Haute,Lyon,69001,FR,,2025-02-01T09:00:00Z,2025-02-01T09:00:00Z
";

const SHOP: &str = "\
order_id,customer_email,customer_name,phone,ordered_at,total,currency,status,items
O1,ann.lee@gmail.com,Ann Lee,,2026-06-01T12:00:00Z,100.0,EUR,paid,2
O2,ANNLEE@gmail.com,Ann Lee,,2026-07-01T12:00:00Z,50.0,USD,paid,1
O3,ann.lee@gmail.com,ann lee,,2026-07-15T12:00:00Z,30.0,EUR,refunded,1
";

const POS: &str = "\
receipt_id,store_id,loyalty_id,phone,purchased_at,total,items
R1,S001,c100,,2026-08-01T15:00:00Z,20.0,1
R2,S002,C200,,2026-10-20T11:00:00Z,35.5,3
";

/// Ann browses on her phone (two sessions: a gap of more than 30 minutes) and logs in;
/// k9 never logs in and comes back three times.
const WEB: &str = r#"{"event_id":"E1","anonymous_id":"k1","user_id":null,"email":null,"event_type":"page_view","url":"/","device":"mobile","occurred_at":"2026-10-10T10:00:00Z"}
{"event_id":"E2","anonymous_id":"k1","user_id":"C100","email":"ann.lee@gmail.com","event_type":"login","url":"/login","device":"mobile","occurred_at":"2026-10-10T10:05:00Z"}
{"event_id":"E3","anonymous_id":"k1","user_id":"C100","email":null,"event_type":"add_to_cart","url":"/cart","device":"mobile","occurred_at":"2026-10-10T10:10:00Z"}
{"event_id":"E4","anonymous_id":"k1","user_id":"C100","email":null,"event_type":"product_view","url":"/p/1","device":"mobile","occurred_at":"2026-10-10T12:00:00Z"}
{"event_id":"E5","anonymous_id":"k9","user_id":null,"email":null,"event_type":"page_view","url":"/","device":"desktop","occurred_at":"2026-10-20T08:00:00Z"}
{"event_id":"E6","anonymous_id":"k9","user_id":null,"email":null,"event_type":"page_view","url":"/","device":"desktop","occurred_at":"2026-10-25T08:00:00Z"}
{"event_id":"E7","anonymous_id":"k9","user_id":null,"email":null,"event_type":"page_view","url":"/","device":"desktop","occurred_at":"2026-10-30T08:00:00Z"}
"#;

const EMAIL: &str = "\
send_id,email,campaign,event,occurred_at
M1-sent,ann.lee@gmail.com,autumn,sent,2026-09-05T09:00:00Z
M1-open,ann.lee@gmail.com,autumn,open,2026-09-05T11:00:00Z
M1-click,ann.lee@gmail.com,autumn,click,2026-09-05T11:01:00Z
M1-unsubscribe,ann.lee@gmail.com,autumn,unsubscribe,2026-09-05T12:00:00Z
M2-sent,bob.martin@orange.fr,autumn,sent,2026-09-05T09:00:00Z
";

const SUPPORT: &str = "\
ticket_id,name,phone,subject,opened_at,status
T1,Ann Lee,+447911123456,Where is my order,2026-07-20T08:00:00Z,solved
";

/// Ann withdraws email consent when she unsubscribes; her SMS consent is granted and
/// withdrawn at the same instant (the withdrawal wins).
const CONSENT: &str = "\
change_id,email,contact_id,purpose,granted,changed_at,source
CC1,ann.lee@gmail.com,C100,email_marketing,true,2026-01-01T00:00:00Z,web
CC2,ann.lee@gmail.com,,email_marketing,false,2026-09-05T12:00:02Z,web
CC3,,C100,sms_marketing,true,2026-02-01T00:00:00Z,crm
CC4,,C100,sms_marketing,false,2026-02-01T00:00:00Z,crm
CC5,,C100,analytics,true,2026-02-01T00:00:00Z,crm
CC6,bob.martin@orange.fr,C200,email_marketing,true,2026-03-01T00:00:00Z,web
";

const TRUTH: &str = "\
source,record_key,person_id
crm_contacts,C100,ann
crm_contacts,C200,bob
shop_orders,O1,ann
shop_orders,O2,ann
shop_orders,O3,ann
pos_orders,R1,ann
pos_orders,R2,bob
web_events,E1,ann
web_events,E2,ann
web_events,E3,ann
web_events,E4,ann
web_events,E5,k9
web_events,E6,k9
web_events,E7,k9
email_engagement,M1-sent,ann
email_engagement,M1-open,ann
email_engagement,M1-click,ann
email_engagement,M1-unsubscribe,ann
email_engagement,M2-sent,bob
support_tickets,T1,ann
consent_changes,CC1,ann
consent_changes,CC2,ann
consent_changes,CC3,ann
consent_changes,CC4,ann
consent_changes,CC5,ann
consent_changes,CC6,bob
";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write source");
    path.display().to_string()
}

/// Register the sources as `tessera demo` does (CSV columns as text, except the
/// amounts the demo keeps in Parquet).
async fn register(c: &Client, dir: &Path) {
    let csv = |name: &str, file: &str, text: &str| {
        let header = text.lines().next().expect("header");
        let columns: Vec<String> = header
            .split(',')
            .map(|h| match h {
                "total" => "total DOUBLE".to_string(),
                "items" => "items INT".to_string(),
                "ordered_at" | "purchased_at" => format!("{h} TIMESTAMP"),
                other => format!("{other} TEXT"),
            })
            .collect();
        format!(
            "CREATE EXTERNAL TABLE {name} ({}) STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true');",
            columns.join(", "),
            write(dir, file, text)
        )
    };
    let mut sql = String::new();
    for (name, text) in [
        ("crm_contacts", CRM),
        ("shop_orders", SHOP),
        ("pos_orders", POS),
        ("email_engagement", EMAIL),
        ("support_tickets", SUPPORT),
        ("consent_changes", CONSENT),
        ("ground_truth", TRUTH),
    ] {
        sql.push_str(&csv(name, &format!("{name}.csv"), text));
    }
    sql.push_str(&format!(
        "CREATE EXTERNAL TABLE web_events STORED AS JSON LOCATION '{}';",
        write(dir, "web_events.ndjson", WEB)
    ));
    c.batch_execute(&sql).await.expect("register sources");
}

/// Run every file of `sql/` in name order, as `tessera demo` does.
async fn apply_model(c: &Client) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("sql dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read model file");
        c.batch_execute(&text)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", f.display()));
    }
}

/// A person's profile: `columns` of the profile holding `customer_id` (or, for an
/// anonymous visitor, the given cookie among its anonymous ids).
async fn profile(c: &Client, columns: &str, filter: &str) -> Vec<String> {
    let mut r = rows(c, &format!("SELECT {columns} FROM profiles WHERE {filter}")).await;
    assert_eq!(r.len(), 1, "one profile where {filter}: {r:?}");
    r.remove(0)
}

async fn members(c: &Client, segment: &str) -> Vec<String> {
    rows(
        c,
        &format!(
            "SELECT coalesce(p.customer_id, p.anonymous_ids[1]) FROM {segment} s
               JOIN profiles p ON p.unified_id = s.unified_id ORDER BY 1"
        ),
    )
    .await
    .into_iter()
    .map(|r| r[0].clone())
    .collect()
}

#[tokio::test]
async fn default_model_builds_profiles_and_segments() {
    let s = Server::start();
    let c = s.client().await;
    let sources = tempfile::tempdir().expect("tempdir");
    register(&c, sources.path()).await;
    apply_model(&c).await;

    // One profile per person: Ann, Bob and the anonymous visitor.
    let people = "SELECT g.person_id, count(DISTINCT m.unified_id), string_agg(m.record_key, ' ')
                    FROM identity_map m JOIN ground_truth g USING (source, record_key)
                   GROUP BY g.person_id ORDER BY 1";
    assert_eq!(
        rows(&c, "SELECT count(*) FROM profiles").await,
        vec![vec!["3"]],
        "{:?}",
        rows(&c, people).await
    );
    assert_eq!(
        rows(
            &c,
            "SELECT count(DISTINCT m.unified_id) = count(DISTINCT g.person_id), count(*)
               FROM identity_map m JOIN ground_truth g USING (source, record_key)"
        )
        .await,
        vec![vec!["t", "26"]]
    );

    // Golden record: CRM first, values normalised; every identifier seen.
    assert_eq!(
        profile(
            &c,
            "full_name, first_name, email, phone, street, city, postcode, country, birth_date, \
             array_to_string(all_emails, ' '), array_to_string(all_phones, ' '), known",
            "customer_id = 'C100'"
        )
        .await,
        [
            "Ann Lee",
            "Ann",
            "annlee@gmail.com",
            "+447911123456",
            "1 High St",
            "Leeds",
            "LS1 1AA",
            "GB",
            "1990-04-01",
            "annlee@gmail.com",
            "+447911123456",
            "t"
        ]
    );
    // Orders: paid ones count (USD converted to EUR), the refund does not.
    assert_eq!(
        profile(
            &c,
            "orders, web_orders, store_orders, refunded_orders, revenue, avg_order_value, \
             first_order_at, last_order_at, first_seen, last_seen",
            "customer_id = 'C100'"
        )
        .await,
        [
            "3",
            "2",
            "1",
            "1",
            "166.00",
            "55.33",
            "2026-06-01 12:00:00",
            "2026-08-01 15:00:00",
            "2024-01-10 09:00:00",
            "2026-10-10 12:00:00"
        ]
    );
    // Engagement: email, support, web (two sessions: a gap over 30 minutes).
    assert_eq!(
        profile(
            &c,
            "emails_sent, email_opens, email_clicks, email_bounces, last_email_click_at, \
             unsubscribed_at, support_tickets, open_tickets, page_views, cart_adds, \
             last_cart_at, web_sessions, array_to_string(devices, ' ')",
            "customer_id = 'C100'"
        )
        .await,
        [
            "1",
            "1",
            "1",
            "0",
            "2026-09-05 11:01:00",
            "2026-09-05 12:00:00",
            "1",
            "0",
            "2",
            "1",
            "2026-10-10 10:10:00",
            "2",
            "mobile"
        ]
    );
    // Consent: the latest change per purpose; a tie goes to the withdrawal; a purpose
    // never asked about is NULL.
    assert_eq!(
        profile(
            &c,
            "consent_email_marketing, consent_sms_marketing, consent_analytics, consent_personalization",
            "customer_id = 'C100'"
        )
        .await,
        ["f", "f", "t", "NULL"]
    );
    // RFM over the two buyers, as of the latest event (k9's last visit).
    assert_eq!(
        profile(
            &c,
            "as_of, recency_days, r_score, f_score, m_score",
            "customer_id = 'C200'"
        )
        .await,
        ["2026-10-30 08:00:00", "9", "5", "1", "1"]
    );
    assert_eq!(
        profile(
            &c,
            "known, web_sessions, page_views, orders, revenue, email",
            "customer_id IS NULL"
        )
        .await,
        ["f", "3", "3", "0", "0.00", "NULL"]
    );

    // Any identifier finds the profile, written as any source wrote it.
    for (id_type, value) in [
        ("email", "normalize_email('ANN.LEE+news@googlemail.com')"),
        ("phone", "normalize_phone('+44 7911 123456')"),
        ("customer_id", "'C100'"),
        ("anonymous_id", "'k1'"),
    ] {
        assert_eq!(
            rows(
                &c,
                &format!(
                    "SELECT p.customer_id FROM identity_lookup i JOIN profiles p USING (unified_id)
                      WHERE i.id_type = '{id_type}' AND i.id_value = {value}"
                )
            )
            .await,
            vec![vec!["C100"]],
            "{id_type}"
        );
    }

    assert_eq!(members(&c, "segment_email_reachable").await, ["C200"]);
    assert_eq!(members(&c, "segment_cart_abandoners").await, ["C100"]);
    assert_eq!(members(&c, "segment_engaged_anonymous").await, ["k9"]);
    assert!(members(&c, "segment_at_risk").await.is_empty());

    // Ann orders in store two days after leaving her cart: once the model is applied
    // again, she leaves the cart abandoners, and the change is recorded.
    write(
        sources.path(),
        "pos_orders.csv",
        &format!("{POS}R3,S001,C100,,2026-10-12T10:00:00Z,12.5,1\n"),
    );
    apply_model(&c).await;
    assert!(members(&c, "segment_cart_abandoners").await.is_empty());
    assert_eq!(
        profile(&c, "orders, revenue", "customer_id = 'C100'").await,
        ["4", "178.50"]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT segment, change, count(*) FROM tessera.segment_changes
              GROUP BY segment, change ORDER BY segment, change"
        )
        .await,
        vec![
            vec!["segment_cart_abandoners", "entered", "1"],
            vec!["segment_cart_abandoners", "exited", "1"],
            vec!["segment_email_reachable", "entered", "1"],
            vec!["segment_engaged_anonymous", "entered", "1"],
        ]
    );

    // Events collected over HTTP are a source: the anonymous visitor k9 signs in on the
    // site as Bob (identify), then views a page. Applied again, the model merges k9 into
    // Bob's profile, and k9 leaves the engaged anonymous visitors.
    let key = rows(&c, "CREATE WRITE KEY site FOR SOURCE 'web'").await[0][2].clone();
    let http = reqwest::Client::new();
    for (path, body) in [
        (
            "identify",
            r#"{"messageId": "m1", "anonymousId": "k9", "userId": "c200", "traits": {"email": "Bob.Martin@orange.fr"}, "timestamp": "2026-10-31T09:00:00Z"}"#,
        ),
        (
            "page",
            r#"{"messageId": "m2", "anonymousId": "k9", "userId": "c200", "properties": {"url": "/sale"}, "timestamp": "2026-10-31T09:01:00Z"}"#,
        ),
    ] {
        let status = http
            .post(format!("http://127.0.0.1:{}/v1/{path}", s.http_port))
            .basic_auth(&key, Some(""))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post")
            .status();
        assert_eq!(status.as_u16(), 200, "{path}");
    }
    apply_model(&c).await;
    assert_eq!(
        rows(&c, "SELECT count(*) FROM profiles").await,
        vec![vec!["2"]]
    );
    assert_eq!(
        profile(
            &c,
            "web_sessions, page_views, array_to_string(anonymous_ids, ' '), as_of",
            "customer_id = 'C200'"
        )
        .await,
        ["4", "4", "k9", "2026-10-31 09:01:00"]
    );
    assert!(members(&c, "segment_engaged_anonymous").await.is_empty());
    assert_eq!(
        rows(
            &c,
            "SELECT change FROM tessera.segment_changes
              WHERE segment = 'segment_engaged_anonymous' ORDER BY version"
        )
        .await,
        vec![vec!["entered"], vec!["exited"]]
    );

    // Right of access: every row held about Bob, found by any of his identifiers.
    let held = rows(
        &c,
        "SELECT relation, row_json FROM subject_access('email', ' Bob.Martin@orange.fr ')",
    )
    .await;
    let relations: std::collections::BTreeSet<&str> = held.iter().map(|r| r[0].as_str()).collect();
    for expected in [
        "crm_contacts",
        "pos_orders",
        "profiles",
        "identity_lookup",
        "web_sessions",
        "tessera.events",
    ] {
        assert!(
            relations.contains(expected),
            "{expected} missing: {relations:?}"
        );
    }
    let crm: Vec<&Vec<String>> = held.iter().filter(|r| r[0] == "crm_contacts").collect();
    assert_eq!(crm.len(), 1);
    assert!(
        crm[0][1].contains("\"email\":\"bob.martin@orange.fr\""),
        "{}",
        crm[0][1]
    );
    assert!(held.iter().all(|r| !r[1].contains("Ann")), "{held:?}");
    assert!(rows(
        &c,
        "SELECT * FROM subject_access('email', 'nobody@example.com')"
    )
    .await
    .is_empty());
    // Only roles that may see personal data exercise it.
    c.batch_execute(
        "CREATE ROLE clerk LOGIN PASSWORD 'clerk-pw'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO clerk",
    )
    .await
    .expect("clerk");
    let clerk = s
        .connect_as("clerk", "clerk-pw")
        .await
        .expect("clerk logs in");
    let denied = clerk
        .simple_query("SELECT * FROM subject_access('email', 'bob.martin@orange.fr')")
        .await
        .expect_err("denied");
    assert_eq!(crate::common::sqlstate(&denied), "42501");
}
