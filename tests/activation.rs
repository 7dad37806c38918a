//! Webhook destinations of segments against a real server and real HTTP receivers on
//! loopback: signed batches, consent, retries with backoff, a receiver that is down
//! and comes back, positions kept across a restart, and the SQL around them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio_postgres::Client;

use crate::common::{rows, sqlstate, Server};

/// A request a receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
    answered: u16,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The changes of the body as "change unified_id".
    fn changes(&self) -> Vec<String> {
        self.json()["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c["change"].as_str().unwrap_or("?"),
                    c["unified_id"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }
}

#[derive(Default)]
struct Log {
    requests: Vec<Received>,
    /// How many requests to answer 500 before answering 200.
    failures_left: usize,
}

/// A webhook receiver on loopback.
#[derive(Clone)]
struct Receiver {
    url: String,
    log: Arc<Mutex<Log>>,
}

impl Receiver {
    /// Listen on `listener`, answering `failures` requests with 500 first.
    fn serve(listener: TcpListener, failures: usize) -> Receiver {
        let port = listener.local_addr().expect("addr").port();
        let log = Arc::new(Mutex::new(Log {
            requests: vec![],
            failures_left: failures,
        }));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(log.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            log,
        }
    }

    async fn start(failures: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Receiver::serve(listener, failures)
    }

    fn requests(&self) -> Vec<Received> {
        self.log.lock().expect("log").requests.clone()
    }

    /// The changes of the requests answered 200, in order.
    fn delivered(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.answered == 200)
            .flat_map(Received::changes)
            .collect()
    }

    /// Wait until the delivered changes number `n`.
    async fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.delivered();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} got {got:?}, waiting for {n} changes",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn receive(
    State(log): State<Arc<Mutex<Log>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut log = log.lock().expect("log");
    let status = if log.failures_left > 0 {
        log.failures_left -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    log.requests.push(Received {
        headers,
        body,
        answered: status.as_u16(),
    });
    status
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The one-row answer of `CREATE DESTINATION`: its signing secret.
async fn create_destination(c: &Client, name: &str, url: &str) -> String {
    let sql =
        format!("CREATE DESTINATION {name} FOR SEGMENT vip URL '{url}' PURPOSE 'email_marketing'");
    let r = rows(c, &sql).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0][..4], [name, "vip", url, "email_marketing"]);
    r[0][4].clone()
}

fn signature_ok(r: &Received, secret: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(&r.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    r.header("x-tessera-signature") == format!("sha256={expected}")
}

async fn setup(c: &Client) {
    c.batch_execute(
        "CREATE TABLE people (unified_id text, score int);
         INSERT INTO people VALUES ('u1', 50), ('u2', 5), ('u3', 80), ('u4', 90);
         CREATE TABLE consents (unified_id text, purpose text, granted boolean);
         INSERT INTO consents VALUES ('u1', 'email_marketing', true),
           ('u3', 'email_marketing', true), ('u4', 'email_marketing', false),
           ('u4', 'ads', true);
         CREATE MATERIALIZED VIEW consent_state AS
           SELECT unified_id, purpose, granted FROM consents;
         CREATE MATERIALIZED VIEW vip WITH (segment = true) AS
           SELECT unified_id, score FROM people WHERE score > 10;",
    )
    .await
    .expect("model");
}

#[tokio::test]
async fn segment_changes_reach_webhooks_signed_consented_and_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path());
    let c = s.client().await;
    setup(&c).await;

    let steady = Receiver::start(0).await;
    let flaky = Receiver::start(2).await;
    // A receiver that is down: nothing listens on its port until later.
    let down_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let down_addr = down_listener.local_addr().expect("addr");
    drop(down_listener);
    let down_url = format!("http://{down_addr}/hook");

    let secret = create_destination(&c, "crm", &steady.url).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let flaky_secret = create_destination(&c, "ads", &flaky.url).await;
    assert_ne!(secret, flaky_secret);
    create_destination(&c, "later", &down_url).await;

    // The segment's members are u1, u3 and u4; u4 has not consented to email marketing.
    let got = steady.wait_for(2).await;
    assert_eq!(sorted(got), ["entered u1", "entered u3"]);
    let first = &steady.requests()[0];
    assert!(
        signature_ok(first, &secret),
        "signed with the destination's secret"
    );
    assert!(!signature_ok(first, &flaky_secret));
    assert_eq!(first.header("content-type"), "application/json");
    assert_eq!(first.header("x-tessera-destination"), "crm");
    let body = first.json();
    assert_eq!(body["segment"], "vip");
    assert_eq!(
        body["batch_key"].as_str(),
        Some(first.header("idempotency-key"))
    );
    for change in body["changes"].as_array().expect("changes") {
        assert_eq!(change["key"].as_str().map(str::len), Some(32), "{change}");
        assert!(
            change["at"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{change}"
        );
        assert!(change["version"].as_i64().is_some(), "{change}");
    }

    // The flaky receiver answered 500 twice: the same batch came three times, with the
    // same keys, the last one taken.
    flaky.wait_for(2).await;
    let tries = flaky.requests();
    assert_eq!(
        tries.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    let keys = |r: &Received| {
        let b = r.json();
        (b["batch_key"].clone(), b["changes"].clone())
    };
    assert!(
        tries.iter().all(|r| keys(r) == keys(&tries[0])),
        "retries are the same batch"
    );
    assert!(tries.iter().all(|r| signature_ok(r, &flaky_secret)));
    assert_eq!(
        tries
            .iter()
            .map(|r| r.header("x-tessera-attempt").to_string())
            .collect::<Vec<_>>(),
        ["1", "2", "3"]
    );

    // Membership changes: u1 leaves, u5 (consenting) and u6 (not) join; u3 withdraws
    // consent while the third receiver is still down.
    c.batch_execute(
        "UPDATE people SET score = 1 WHERE unified_id = 'u1';
         INSERT INTO people VALUES ('u5', 70), ('u6', 75);
         INSERT INTO consents VALUES ('u5', 'email_marketing', true);
         DELETE FROM consents WHERE unified_id = 'u3';
         REFRESH MATERIALIZED VIEW consent_state;
         REFRESH MATERIALIZED VIEW vip;",
    )
    .await
    .expect("changes");
    let got = steady.wait_for(4).await;
    assert_eq!(sorted(got[2..].to_vec()), ["entered u5", "exited u1"]);
    assert!(steady.requests().iter().all(|r| signature_ok(r, &secret)));

    // The receiver that was down comes up: it gets everything, in segment order, but
    // nothing about u3, who withdrew consent meanwhile (checked on every attempt).
    let listener = TcpListener::bind(down_addr).await.expect("rebind");
    let later = Receiver::serve(listener, 0);
    let got = later.wait_for(3).await;
    assert_eq!(got[0], "entered u1");
    assert_eq!(sorted(got[1..].to_vec()), ["entered u5", "exited u1"]);

    // Every attempt is a row of tessera.deliveries.
    let r = rows(
        &c,
        "SELECT destination, status, coalesce(CAST(http_status AS TEXT), '-'), changes, withheld,
                next_attempt_at IS NOT NULL
           FROM tessera.deliveries WHERE destination IN ('crm', 'ads')
          ORDER BY destination, attempted_at",
    )
    .await;
    let r: Vec<String> = r.iter().map(|row| row.join(" ")).collect();
    assert_eq!(
        r,
        [
            "ads failed 500 2 1 t",
            "ads failed 500 2 1 t",
            "ads delivered 200 2 1 f",
            "ads delivered 200 2 1 f",
            "crm delivered 200 2 1 f",
            "crm delivered 200 2 1 f",
        ]
    );
    let failed = rows(
        &c,
        "SELECT count(*) FROM tessera.deliveries WHERE destination = 'later' AND status = 'failed'
            AND error LIKE '%connect%'",
    )
    .await;
    assert_ne!(
        failed[0][0], "0",
        "the down receiver's attempts are recorded"
    );
    // The incremental feed the README gives reverse-ETL tools.
    let feed = rows(
        &c,
        "SELECT change || ' ' || unified_id FROM tessera.segment_changes
          WHERE segment = 'vip' AND version > -1
            AND version <= (SELECT version FROM tessera.materialized_views WHERE name = 'vip')
          ORDER BY version, unified_id",
    )
    .await;
    let feed: Vec<String> = feed.into_iter().flatten().collect();
    assert_eq!(
        feed,
        [
            "entered u1",
            "entered u3",
            "entered u4",
            "exited u1",
            "entered u5",
            "entered u6"
        ]
    );
    let listed = rows(
        &c,
        "SELECT name, segment, purpose FROM tessera.destinations ORDER BY name",
    )
    .await;
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0], ["ads", "vip", "email_marketing"]);

    // After a restart, nothing delivered is sent again; new changes are.
    let before = steady.requests().len();
    s.stop();
    let s = Server::start_in(dir.path());
    let c = s.client().await;
    c.batch_execute(
        "INSERT INTO people VALUES ('u7', 99);
         INSERT INTO consents VALUES ('u7', 'email_marketing', true);
         REFRESH MATERIALIZED VIEW consent_state;
         REFRESH MATERIALIZED VIEW vip;",
    )
    .await
    .expect("after restart");
    let got = steady.wait_for(5).await;
    assert_eq!(got[4], "entered u7");
    assert_eq!(
        steady.requests().len(),
        before + 1,
        "{:?}",
        steady.delivered()
    );
}

#[tokio::test]
async fn destinations_are_checked_and_depend_on_their_segment() {
    let s = Server::start();
    let c = s.client().await;
    setup(&c).await;
    c.batch_execute("CREATE MATERIALIZED VIEW plain AS SELECT unified_id FROM people;")
        .await
        .expect("plain view");
    let cases = [
        (
            "CREATE DESTINATION d FOR SEGMENT nope URL 'http://127.0.0.1:9/' PURPOSE 'p'",
            "42P01",
        ),
        (
            "CREATE DESTINATION d FOR SEGMENT plain URL 'http://127.0.0.1:9/' PURPOSE 'p'",
            "42809",
        ),
        (
            "CREATE DESTINATION d FOR SEGMENT vip URL 'ftp://127.0.0.1/' PURPOSE 'p'",
            "22023",
        ),
        (
            "CREATE DESTINATION d FOR SEGMENT vip URL 'http://127.0.0.1:9/' PURPOSE ' '",
            "22023",
        ),
        (
            "CREATE DESTINATION d FOR SEGMENT vip URL 'http://127.0.0.1:9/'",
            "42601",
        ),
        ("DROP DESTINATION nope", "42704"),
    ];
    for (sql, state) in cases {
        let e = c.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), state, "{sql}: {e:?}");
    }
    c.simple_query(
        "CREATE DESTINATION d FOR SEGMENT vip URL 'http://u:pw@127.0.0.1:9/' PURPOSE 'p'",
    )
    .await
    .expect("create");
    let e = c
        .simple_query("CREATE DESTINATION d FOR SEGMENT vip URL 'http://127.0.0.1:9/' PURPOSE 'p'")
        .await
        .expect_err("duplicate");
    assert_eq!(sqlstate(&e), "42710");
    assert_eq!(
        rows(&c, "SELECT url FROM tessera.destinations").await,
        [["http://u:***@127.0.0.1:9/"]],
        "passwords in URLs are not shown"
    );

    c.batch_execute("CREATE ROLE analyst LOGIN PASSWORD 'analyst-pw'")
        .await
        .expect("role");
    let analyst = s
        .connect_as("analyst", "analyst-pw")
        .await
        .expect("analyst");
    let e = analyst
        .simple_query("CREATE DESTINATION e FOR SEGMENT vip URL 'http://127.0.0.1:9/' PURPOSE 'p'")
        .await
        .expect_err("superusers only");
    assert_eq!(sqlstate(&e), "42501");

    let e = c
        .simple_query("DROP MATERIALIZED VIEW vip")
        .await
        .expect_err("a destination depends on it");
    assert_eq!(sqlstate(&e), "2BP01");
    assert!(format!("{e:?}").contains("destination d"), "{e:?}");
    c.simple_query("DROP MATERIALIZED VIEW vip CASCADE")
        .await
        .expect("cascade");
    assert!(rows(&c, "SELECT name FROM tessera.destinations")
        .await
        .is_empty());
    c.simple_query("DROP DESTINATION IF EXISTS d")
        .await
        .expect("if exists");
}
