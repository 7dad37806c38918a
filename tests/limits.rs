//! Limits and abuse: where external tables may read, the memory limit of queries, many
//! connections at once, and garbage on the wire.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{rows, sqlstate, Server};

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

async fn create_external(
    c: &tokio_postgres::Client,
    name: &str,
    location: &str,
) -> Result<(), tokio_postgres::Error> {
    c.batch_execute(&format!(
        "CREATE EXTERNAL TABLE {name} STORED AS CSV LOCATION '{location}' OPTIONS ('format.has_header' 'true')"
    ))
    .await
}

#[tokio::test]
async fn external_tables_read_only_under_allowed_roots() {
    let s = Server::start();
    let c = s.client().await;

    let e = create_external(&c, "passwd", "/etc/passwd")
        .await
        .expect_err("outside every root");
    assert_eq!(sqlstate(&e), "42501");
    let m = message(&e);
    assert!(
        m.contains("/etc/passwd") && m.contains("--allow-location"),
        "names the location and how to allow it: {m}"
    );

    // `..` out of the data directory.
    let dotdot = format!(
        "{}/../../../../../../../../etc/passwd",
        s.data_dir.display()
    );
    let e = create_external(&c, "passwd", &dotdot)
        .await
        .expect_err("dot-dot out of the data dir");
    assert_eq!(sqlstate(&e), "42501", "{}", message(&e));

    // A symbolic link inside an allowed root (the test's temporary directory) to /etc.
    let tmp = tempfile::tempdir().expect("tmp");
    std::os::unix::fs::symlink("/etc", tmp.path().join("etc")).expect("symlink");
    let e = create_external(
        &c,
        "passwd",
        &format!("{}/etc/passwd", tmp.path().display()),
    )
    .await
    .expect_err("through a link");
    assert_eq!(sqlstate(&e), "42501", "{}", message(&e));

    // Remote locations need a listed prefix.
    let e = create_external(&c, "remote", "http://127.0.0.1:9/crm.csv")
        .await
        .expect_err("remote, not listed");
    assert_eq!(sqlstate(&e), "42501", "{}", message(&e));

    // Nothing of the refused statements was created.
    assert_eq!(
        sqlstate(
            &c.batch_execute("SELECT * FROM passwd")
                .await
                .expect_err("none")
        ),
        "42P01"
    );

    // Under the data directory, and under the listed temporary directory: allowed.
    let imports = s.data_dir.join("imports");
    std::fs::create_dir_all(&imports).expect("mkdir");
    std::fs::write(imports.join("crm.csv"), "id,email\n1,a@x.com\n").expect("csv");
    create_external(&c, "crm", &format!("{}/crm.csv", imports.display()))
        .await
        .expect("under the data dir");
    std::fs::write(tmp.path().join("shop.csv"), "id,total\n1,9.5\n").expect("csv");
    create_external(&c, "shop", &format!("{}/shop.csv", tmp.path().display()))
        .await
        .expect("under --allow-location");
    assert_eq!(
        rows(
            &c,
            "SELECT (SELECT count(*) FROM crm) + (SELECT count(*) FROM shop)"
        )
        .await,
        vec![vec!["2"]]
    );
}

#[tokio::test]
async fn sources_outside_the_roots_are_kept_on_restart() {
    // Outside the system's temporary directory, which every test server allows.
    let outside = tempfile::Builder::new()
        .prefix("limits-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("dir");
    std::fs::write(
        outside.path().join("crm.csv"),
        "id,email\n1,a@x.com\n2,b@y.com\n",
    )
    .expect("csv");
    let location = format!("{}/crm.csv", outside.path().display());
    let data = tempfile::tempdir().expect("data");

    let root = outside.path().display().to_string();
    let s = Server::spawn_with(&["serve", "--allow-location", &root], data.path(), &[]);
    create_external(&s.client().await, "crm", &location)
        .await
        .expect("allowed by --allow-location");
    assert!(s.stop().success());

    // Started without that root: the source defined earlier is still served...
    let s = Server::start_in(data.path());
    let c = s.client().await;
    assert_eq!(rows(&c, "SELECT count(*) FROM crm").await, vec![vec!["2"]]);
    // ... but no new one over the same location can be defined.
    let e = create_external(&c, "crm2", &location)
        .await
        .expect_err("root no longer listed");
    assert_eq!(sqlstate(&e), "42501");
    drop(c);
    drop(s);

    // TESSERA_ALLOW_LOCATIONS lists roots too.
    let s = Server::spawn_with(
        &["serve"],
        data.path(),
        &[("TESSERA_ALLOW_LOCATIONS", &format!("/nonexistent:{root}"))],
    );
    create_external(&s.client().await, "crm2", &location)
        .await
        .expect("allowed by the environment");
}

#[tokio::test]
async fn a_query_over_the_memory_limit_fails_with_53200_and_the_server_goes_on() {
    let s = Server::start_with(&["--memory-limit", "20MiB"]);
    let c = s.client().await;
    // array_agg over everything keeps every value and cannot spill: ~80 MB of BIGINTs.
    let e = c
        .simple_query("SELECT cardinality(array_agg(value)) FROM range(10000000)")
        .await
        .expect_err("over 20MiB");
    assert_eq!(sqlstate(&e), "53200", "{}", message(&e));
    let m = message(&e);
    assert!(
        m.starts_with("out of memory") && m.contains("20.0 MiB") && m.contains("--memory-limit"),
        "says which limit and how to raise it: {m}"
    );
    // The same connection, and a new one, go on.
    assert_eq!(rows(&c, "SELECT 1").await, vec![vec!["1"]]);
    assert_eq!(rows(&s.client().await, "SELECT 1").await, vec![vec!["1"]]);
    // A query within the limit still runs.
    assert_eq!(
        rows(&c, "SELECT count(*) FROM range(1000000)").await,
        vec![vec!["1000000"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_connections_at_once() {
    const N: usize = 200;
    let s = Server::start();
    let conn_str = s.conn_str();
    let connecting: Vec<_> = (0..N)
        .map(|_| {
            let conn_str = conn_str.clone();
            tokio::spawn(async move {
                let (client, conn) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok::<_, String>(client)
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(N);
    for (i, task) in connecting.into_iter().enumerate() {
        match task.await.expect("join") {
            Ok(c) => clients.push(c),
            Err(e) => panic!("connection {i} of {N} failed: {e}"),
        }
    }
    // Every connection is open; each runs a statement.
    let queries = clients.iter().enumerate().map(|(i, c)| async move {
        let n = i as i64;
        let row = c.query_one("SELECT $1::BIGINT + 1", &[&n]).await?;
        Ok::<_, tokio_postgres::Error>(row.get::<_, i64>(0) == n + 1)
    });
    let results = futures::future::join_all(queries).await;
    let ok = results.iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(
        ok,
        N,
        "{:?}",
        results.iter().find(|r| !matches!(r, Ok(true)))
    );
}

/// Send `bytes` on a raw connection; true when the server closed it within `wait`.
async fn send_raw(port: u16, bytes: &[u8], wait: Duration) -> bool {
    let mut socket = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // The server may close while we still write: that is fine.
    let _ = socket.write_all(bytes).await;
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(wait, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue, // an error response, an SSL refusal: read on
            }
        }
    })
    .await;
    closed.is_ok()
}

async fn still_serves(s: &Server, what: &str) {
    let c = tokio::time::timeout(Duration::from_secs(30), s.client())
        .await
        .unwrap_or_else(|_| panic!("no login after {what}"));
    assert_eq!(rows(&c, "SELECT 1").await, vec![vec!["1"]], "after {what}");
}

#[tokio::test]
async fn garbage_on_the_wire_closes_only_that_connection() {
    let s = Server::start();
    let wait = Duration::from_secs(10);

    // A connection that never says anything does not hold up the others.
    let _silent = TcpStream::connect(("127.0.0.1", s.port))
        .await
        .expect("connect");
    still_serves(&s, "a silent connection").await;

    // (a) Random bytes (a fixed pseudo-random sequence, so a failure replays).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    send_raw(s.port, &random, Duration::from_millis(500)).await;
    still_serves(&s, "random bytes").await;

    // (b) A startup packet claiming 2 GiB: refused at once, nothing allocated.
    let mut absurd = 0x7fff_ffffu32.to_be_bytes().to_vec();
    absurd.extend_from_slice(&196_608u32.to_be_bytes());
    absurd.extend_from_slice(b"user\0tessera\0\0");
    assert!(
        send_raw(s.port, &absurd, wait).await,
        "absurd length closes the connection"
    );
    still_serves(&s, "an absurd length").await;

    // (c) A startup packet cut short, then the client goes away.
    {
        let mut socket = TcpStream::connect(("127.0.0.1", s.port))
            .await
            .expect("connect");
        let mut truncated = 100u32.to_be_bytes().to_vec();
        truncated.extend_from_slice(&196_608u32.to_be_bytes());
        truncated.extend_from_slice(b"user\0tes");
        socket.write_all(&truncated).await.expect("write");
    }
    still_serves(&s, "a truncated startup packet").await;

    // (d) A valid SSLRequest (refused: no TLS configured), then junk.
    let mut ssl = 8u32.to_be_bytes().to_vec();
    ssl.extend_from_slice(&80_877_103u32.to_be_bytes());
    ssl.extend_from_slice(&[0xff; 64]);
    assert!(
        send_raw(s.port, &ssl, wait).await,
        "junk after SSLRequest closes the connection"
    );
    still_serves(&s, "an SSLRequest then junk").await;

    // (e) A startup message, then a Parse too short for its fields while the server
    //     waits for the password (pgwire 0.41 panics decoding it; only this connection
    //     may end).
    let mut socket = TcpStream::connect(("127.0.0.1", s.port))
        .await
        .expect("connect");
    let params = b"user\0tessera\0database\0tessera\0\0";
    let mut startup = ((8 + params.len()) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&196_608u32.to_be_bytes());
    startup.extend_from_slice(params);
    socket.write_all(&startup).await.expect("startup");
    let mut buf = [0u8; 256];
    let n = socket.read(&mut buf).await.expect("authentication request");
    assert_eq!(buf.first(), Some(&b'R'), "{:?}", &buf[..n]);
    let _ = socket.write_all(b"P\0\0\0\x04").await;
    let closed = tokio::time::timeout(wait, async {
        while let Ok(n) = socket.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a malformed Parse closes the connection");
    still_serves(&s, "a malformed Parse").await;

    // (f) A cancel request for a session that does not exist.
    let mut socket = TcpStream::connect(("127.0.0.1", s.port))
        .await
        .expect("connect");
    let mut cancel_garbage = 16u32.to_be_bytes().to_vec();
    cancel_garbage.extend_from_slice(&80_877_102u32.to_be_bytes());
    cancel_garbage.extend_from_slice(&[0u8; 8]);
    let _ = socket.write_all(&cancel_garbage).await;
    drop(socket);
    still_serves(&s, "a bogus cancel request").await;
}
