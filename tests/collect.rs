//! The HTTP collection API (Segment's tracking API) against a real server, with a real
//! HTTP client: write keys made in SQL, events read back from `tessera.events`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::common::{rows, sqlstate, Server};

/// An HTTP client of one server's collection API.
#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api::at(server.http_port)
    }

    fn at(port: u16) -> Api {
        Api {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    /// POST `body` to `path` with `key` as basic-auth user; the status and JSON answer.
    async fn post(&self, path: &str, key: Option<&str>, body: impl Into<String>) -> (u16, Value) {
        self.try_post(path, key, body.into())
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    async fn try_post(
        &self,
        path: &str,
        key: Option<&str>,
        body: String,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            req = req.basic_auth(key, Some(""));
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }
}

async fn create_key(c: &Client, name: &str, source: &str) -> String {
    let got = rows(c, &format!("CREATE WRITE KEY {name} FOR SOURCE '{source}'")).await;
    assert_eq!(got.len(), 1, "one row: {got:?}");
    assert_eq!(got[0][..2], [name, source]);
    assert!(got[0][2].starts_with("tsk_"), "{got:?}");
    got[0][2].clone()
}

async fn count(c: &Client) -> String {
    rows(c, "SELECT count(*) FROM tessera.events").await[0][0].clone()
}

/// A fresh server, a SQL client, an HTTP client and a write key `name` for `source`.
async fn start(name: &str, source: &str) -> (Server, Client, Api, String) {
    let s = Server::start();
    let c = s.client().await;
    let api = Api::new(&s);
    let key = create_key(&c, name, source).await;
    (s, c, api, key)
}

fn ok() -> (u16, Value) {
    (200, json!({"success": true}))
}

#[tokio::test]
async fn each_call_lands_with_its_columns() {
    let (_s, c, api, key) = start("web_prod", "web").await;
    // The extended protocol describes the row too (tokio-postgres prepares it).
    let app = c
        .query("CREATE WRITE KEY app FOR SOURCE 'ios'", &[])
        .await
        .expect("create in the extended protocol");
    assert_eq!(app[0].get::<_, &str>("source"), "ios");
    assert_eq!(
        rows(&c, "SELECT * FROM tessera.write_keys ORDER BY name").await[..]
            .iter()
            .map(|r| r[..2].to_vec())
            .collect::<Vec<_>>(),
        [["app", "ios"], ["web_prod", "web"]],
        "names and sources only, never the key"
    );
    let calls = [
        (
            "/v1/track",
            json!({"messageId": "t1", "userId": "u1", "event": "Order Completed",
            "properties": {"total": 9.5}, "context": {"ip": "10.0.0.1"},
            "timestamp": "2026-01-31T12:00:00.500Z", "sentAt": "2026-01-31T12:00:01Z"}),
        ),
        (
            "/v1/identify",
            json!({"messageId": "i1", "anonymousId": "a1",
            "traits": {"email": "ann@shop.test"}}),
        ),
        (
            "/v1/page",
            json!({"messageId": "p1", "anonymousId": "a1", "name": "Home",
            "properties": {"path": "/"}}),
        ),
        (
            "/v1/screen",
            json!({"messageId": "s1", "userId": 42, "name": "Cart"}),
        ),
        (
            "/v1/group",
            json!({"messageId": "g1", "userId": "u1", "groupId": "acme",
            "traits": {"plan": "pro"}}),
        ),
        (
            "/v1/alias",
            json!({"messageId": "al1", "userId": "u1", "previousId": "a1"}),
        ),
    ];
    for (n, (path, body)) in calls.iter().enumerate() {
        assert_eq!(
            api.post(path, Some(&key), body.to_string()).await,
            ok(),
            "{path}"
        );
        // Visible to SQL as soon as the 200 is sent.
        assert_eq!(count(&c).await, (n + 1).to_string(), "{path}");
    }
    let got = rows(
        &c,
        "SELECT message_id, type, source, user_id, anonymous_id, event, name, group_id, \
         previous_id, properties, traits, context, \
         CAST(\"timestamp\" AS BIGINT), CAST(sent_at AS BIGINT), \
         received_at IS NOT NULL AND received_at > TIMESTAMP '2020-01-01T00:00:00Z' \
         FROM tessera.events ORDER BY message_id",
    )
    .await;
    let n = "NULL";
    assert_eq!(
        got,
        [
            ["al1", "alias", "web", "u1", n, n, n, n, "a1", n, n, n],
            [
                "g1",
                "group",
                "web",
                "u1",
                n,
                n,
                n,
                "acme",
                n,
                n,
                r#"{"plan":"pro"}"#,
                n
            ],
            [
                "i1",
                "identify",
                "web",
                n,
                "a1",
                n,
                n,
                n,
                n,
                n,
                r#"{"email":"ann@shop.test"}"#,
                n
            ],
            [
                "p1",
                "page",
                "web",
                n,
                "a1",
                n,
                "Home",
                n,
                n,
                r#"{"path":"/"}"#,
                n,
                n
            ],
            ["s1", "screen", "web", "42", n, n, "Cart", n, n, n, n, n],
            [
                "t1",
                "track",
                "web",
                "u1",
                n,
                "Order Completed",
                n,
                n,
                n,
                r#"{"total":9.5}"#,
                n,
                r#"{"ip":"10.0.0.1"}"#
            ],
        ]
        .iter()
        .zip(&got)
        .map(|(want, row)| {
            let mut w: Vec<String> = want.iter().map(|v| v.to_string()).collect();
            w.extend_from_slice(&row[12..]);
            w
        })
        .collect::<Vec<_>>()
    );
    let track = &got[5];
    assert_eq!(track[12..], ["1769860800500000", "1769860801000000", "t"]);
    assert_eq!(got[0][13], "NULL", "no sentAt");
    // Without a timestamp, an event is dated when it was received.
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) FROM tessera.events WHERE \"timestamp\" = received_at"
        )
        .await,
        [["5"]]
    );
    let health = reqwest::get(format!("{}/health", api.base))
        .await
        .expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let err = c
        .batch_execute("DELETE FROM tessera.events")
        .await
        .expect_err("read-only");
    assert_eq!(sqlstate(&err), "42809");
}

#[tokio::test]
async fn a_batch_is_stored_whole_or_not_at_all() {
    let (_s, c, api, key) = start("k", "server").await;
    let batch = json!({"sentAt": "2026-02-01T00:00:00Z", "context": {"library": "curl"},
    "batch": [
        {"type": "track", "messageId": "b1", "userId": "u", "event": "Signed Up"},
        {"type": "identify", "messageId": "b2", "userId": "u", "traits": {"vip": true}},
        {"type": "page", "messageId": "b3", "anonymousId": "a", "context": {"page": "/x"}},
    ]});
    assert_eq!(
        api.post("/v1/batch", Some(&key), batch.to_string()).await,
        ok()
    );
    assert_eq!(
        rows(
            &c,
            "SELECT message_id, type, context, CAST(to_unixtime(sent_at) AS BIGINT) \
                  FROM tessera.events ORDER BY 1"
        )
        .await,
        [
            ["b1", "track", r#"{"library":"curl"}"#, "1769904000"],
            ["b2", "identify", r#"{"library":"curl"}"#, "1769904000"],
            [
                "b3",
                "page",
                r#"{"library":"curl","page":"/x"}"#,
                "1769904000"
            ],
        ]
    );
    // One bad event refuses the whole batch, naming it.
    let bad = json!({"batch": [
        {"type": "track", "messageId": "b4", "userId": "u", "event": "Fine"},
        {"type": "alias", "messageId": "b5", "userId": "u"},
    ]});
    let (status, answer) = api.post("/v1/batch", Some(&key), bad.to_string()).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer,
        json!({"success": false, "error": "batch[1]: alias needs \"previousId\""})
    );
    let unknown = json!({"batch": [{"type": "click", "userId": "u"}]});
    assert_eq!(
        api.post("/v1/batch", Some(&key), unknown.to_string())
            .await
            .0,
        400
    );
    // Over 500 KB in all, or one event over 32 KB: 413.
    let event = |i: usize, pad: usize| {
        json!({"type": "track", "messageId": format!("big{i}"), "userId": "u", "event": "e",
               "properties": {"pad": "x".repeat(pad)}})
    };
    let big: Vec<Value> = (0..20).map(|i| event(i, 30_000)).collect();
    let (status, answer) = api
        .post("/v1/batch", Some(&key), json!({ "batch": big }).to_string())
        .await;
    assert_eq!(
        (status, &answer["success"]),
        (413, &json!(false)),
        "{answer}"
    );
    let one_big = json!({"batch": [event(0, 10), event(1, 40_000)]});
    let (status, answer) = api.post("/v1/batch", Some(&key), one_big.to_string()).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("batch[1]")),
        "{answer}"
    );
    assert_eq!(
        count(&c).await,
        "3",
        "nothing of a refused batch was written"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_and_write_nothing() {
    let (_s, c, api, key) = start("k", "web").await;
    let track = json!({"userId": "u", "event": "e"}).to_string();
    let refused = |status: u16| {
        move |(got, answer): (u16, Value)| {
            assert_eq!(got, status, "{answer}");
            assert_eq!(answer["success"], json!(false), "{answer}");
            answer["error"].as_str().unwrap_or_default().to_string()
        }
    };
    // 401: no key, an unknown key, a revoked key.
    let e = refused(401)(api.post("/v1/track", None, track.clone()).await);
    assert!(e.contains("write key"), "{e}");
    refused(401)(
        api.post("/v1/track", Some("tsk_wrong"), track.clone())
            .await,
    );
    let revoked = create_key(&c, "old", "web").await;
    assert_eq!(
        api.post("/v1/track", Some(&revoked), track.clone()).await,
        ok()
    );
    c.batch_execute("DROP WRITE KEY old").await.expect("drop");
    refused(401)(api.post("/v1/track", Some(&revoked), track.clone()).await);
    let err = c
        .batch_execute("DROP WRITE KEY old")
        .await
        .expect_err("gone");
    assert_eq!(sqlstate(&err), "42704");
    c.batch_execute("DROP WRITE KEY IF EXISTS old")
        .await
        .expect("if exists");
    let err = c
        .batch_execute("CREATE WRITE KEY k FOR SOURCE 'other'")
        .await
        .expect_err("duplicate");
    assert_eq!(sqlstate(&err), "42710");
    // 400: bad JSON, and each call's required fields.
    for (path, body, reason) in [
        ("/v1/track", "{\"userId\": ", "malformed JSON"),
        ("/v1/track", "[1]", "JSON object"),
        (
            "/v1/track",
            r#"{"event": "e"}"#,
            "\"userId\" or \"anonymousId\"",
        ),
        ("/v1/track", r#"{"userId": "u"}"#, "track needs \"event\""),
        (
            "/v1/alias",
            r#"{"userId": "u"}"#,
            "alias needs \"previousId\"",
        ),
        ("/v1/group", r#"{"userId": "u"}"#, "group needs \"groupId\""),
        (
            "/v1/identify",
            r#"{"userId": "u", "timestamp": "yesterday"}"#,
            "ISO-8601",
        ),
        ("/v1/batch", r#"{"events": []}"#, "\"batch\""),
    ] {
        let e = refused(400)(api.post(path, Some(&key), body).await);
        assert!(e.contains(reason), "{path} {body}: {e}");
    }
    // 413: one event over 32 KB.
    let big = json!({"userId": "u", "event": "e", "properties": {"pad": "x".repeat(33_000)}});
    refused(413)(api.post("/v1/track", Some(&key), big.to_string()).await);
    assert_eq!(
        count(&c).await,
        "1",
        "only the event sent with the key before it was revoked"
    );
}

#[tokio::test]
async fn a_retried_message_id_is_stored_once_even_after_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data);
    let c = s.client().await;
    let web = create_key(&c, "web", "web").await;
    let app = create_key(&c, "app", "app").await;
    let api = Api::new(&s);
    let event = |id: &str| json!({"messageId": id, "userId": "u", "event": "e"}).to_string();
    for _ in 0..3 {
        assert_eq!(api.post("/v1/track", Some(&web), event("m1")).await, ok());
    }
    // The same id from another source is another event; twice in one batch, once.
    assert_eq!(api.post("/v1/track", Some(&app), event("m1")).await, ok());
    let twice = json!({"batch": [
        {"type": "track", "messageId": "m2", "userId": "u", "event": "e"},
        {"type": "track", "messageId": "m2", "userId": "u", "event": "e"}]});
    assert_eq!(
        api.post("/v1/batch", Some(&web), twice.to_string()).await,
        ok()
    );
    let stored =
        "SELECT source, message_id, count(*) FROM tessera.events GROUP BY 1, 2 ORDER BY 1, 2";
    let want = [["app", "m1", "1"], ["web", "m1", "1"], ["web", "m2", "1"]];
    assert_eq!(rows(&c, stored).await, want);
    drop(c);
    assert!(s.stop().success());

    let s = Server::start_in(&data);
    let api = Api::new(&s);
    assert_eq!(
        api.post("/v1/track", Some(&web), event("m1")).await,
        ok(),
        "key kept"
    );
    assert_eq!(api.post("/v1/track", Some(&app), event("m3")).await, ok());
    let c = s.client().await;
    let mut want = want.map(|r| r.map(String::from)).to_vec();
    want.insert(1, ["app", "m3", "1"].map(String::from));
    assert_eq!(rows(&c, stored).await, want);
}

#[tokio::test]
async fn every_acknowledged_event_survives_kill_9_under_load() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data);
    let key = create_key(&s.client().await, "load", "web").await;
    let api = Api::new(&s);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (api, key, acked, sent, stop) = (
            api.clone(),
            key.clone(),
            acked.clone(),
            sent.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            for round in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let ids: Vec<String> = (0..25)
                    .map(|i| format!("c{client}-r{round}-e{i}"))
                    .collect();
                let batch: Vec<Value> = ids
                    .iter()
                    .map(
                        |id| json!({"type": "track", "messageId": id, "userId": "u", "event": "e"}),
                    )
                    .collect();
                let body = json!({ "batch": batch }).to_string();
                match api.try_post("/v1/batch", Some(&key), body).await {
                    Ok((200, _)) => {
                        sent.fetch_add(ids.len(), Ordering::Relaxed);
                        acked.lock().expect("lock").extend(ids);
                    }
                    _ => break, // the server is gone
                }
            }
        }));
    }
    let started = std::time::Instant::now();
    while sent.load(Ordering::Relaxed) < 1_000 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let data = s.kill9();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 1_000,
        "load ran: {} acknowledged",
        acked.len()
    );

    let s = Server::start_in(&data);
    let c = s.client().await;
    let stored: HashSet<String> = rows(&c, "SELECT message_id FROM tessera.events")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // The restarted server still knows the ids: a retry of all of them adds nothing.
    let before = count(&c).await;
    let retry: Vec<Value> = acked[..100]
        .iter()
        .map(|id| json!({"type": "track", "messageId": id, "userId": "u", "event": "e"}))
        .collect();
    let api = Api::new(&s);
    assert_eq!(
        api.post(
            "/v1/batch",
            Some(&key),
            json!({ "batch": retry }).to_string()
        )
        .await,
        ok()
    );
    assert_eq!(count(&c).await, before);
}

#[tokio::test]
async fn browser_and_sdk_styles_are_accepted() {
    let (_s, c, api, key) = start("browser", "web").await;
    let url = |path: &str| format!("{}{path}", api.base);
    // analytics.js: text/plain (no CORS preflight) and the key in the body.
    let body = json!({"writeKey": key, "messageId": "js1", "anonymousId": "a", "event": "Click"});
    let resp = api
        .http
        .post(url("/v1/track"))
        .header("content-type", "text/plain")
        .header("origin", "https://shop.test")
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let wrong = json!({"writeKey": "tsk_nope", "anonymousId": "a", "event": "Click"});
    assert_eq!(api.post("/v1/track", None, wrong.to_string()).await.0, 401);
    // The browser's preflight for a request with an Authorization header.
    let preflight = api
        .http
        .request(reqwest::Method::OPTIONS, url("/v1/batch"))
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status().as_u16(), 204);
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .expect("text");
    assert!(allowed.contains("Authorization"), "{allowed}");
    // Server SDKs may gzip their batches.
    let batch = json!({"batch": [{"type": "identify", "messageId": "gz1", "userId": "u"}]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, batch.to_string().as_bytes()).expect("gzip");
    let resp = api
        .http
        .post(url("/v1/batch"))
        .basic_auth(&key, Some(""))
        .header("content-encoding", "gzip")
        .body(gz.finish().expect("gzip"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let resp = api
        .http
        .post(url("/v1/batch"))
        .basic_auth(&key, Some(""))
        .header("content-encoding", "br")
        .body(batch.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 415);
    let missing = reqwest::get(url("/v2/track")).await.expect("404");
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(
        rows(
            &c,
            "SELECT message_id, source FROM tessera.events ORDER BY 1"
        )
        .await,
        [["gz1", "web"], ["js1", "web"]]
    );
}

#[tokio::test]
async fn a_view_over_events_is_recomputed_only_when_events_arrive() {
    let (_s, c, api, key) = start("web_prod", "web").await;
    let track = |id: &str| json!({"messageId": id, "userId": "u1", "event": "Viewed"}).to_string();
    assert_eq!(api.post("/v1/track", Some(&key), track("v1")).await, ok());
    c.batch_execute(
        "CREATE MATERIALIZED VIEW per_event AS
           SELECT event, count(*) AS n FROM tessera.events GROUP BY event",
    )
    .await
    .expect("create");
    let status = || async {
        rows(
            &c,
            "SELECT status, inputs FROM tessera.materialized_views WHERE name = 'per_event'",
        )
        .await[0]
            .clone()
    };
    c.batch_execute("REFRESH MATERIALIZED VIEW per_event")
        .await
        .expect("refresh");
    // tessera.events is a Delta table with versions: no new event, nothing to recompute.
    let unchanged = status().await;
    assert_eq!(unchanged[0], "up to date", "{unchanged:?}");
    assert!(
        unchanged[1].starts_with("tessera.events v"),
        "{unchanged:?}"
    );
    assert_eq!(api.post("/v1/track", Some(&key), track("v2")).await, ok());
    c.batch_execute("REFRESH MATERIALIZED VIEW per_event")
        .await
        .expect("refresh");
    assert_eq!(status().await[0], "refreshed");
    assert_eq!(rows(&c, "SELECT n FROM per_event").await, vec![vec!["2"]]);
}
