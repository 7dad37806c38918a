//! The real `psql` client: meta-commands and `\copy` in both directions.

use std::process::Command;

use crate::common::Server;

fn psql(s: &Server, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &s.port.to_string(),
            "-U",
            "tessera",
            "-d",
            "tessera",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(args)
        .env("PGPASSWORD", crate::common::PASSWORD)
        .output()
        .expect("psql is installed (.ci/run installs postgresql-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(s: &Server, args: &[&str]) -> String {
    let (success, out, err) = psql(s, args);
    assert!(success, "psql {args:?} failed: {err}\n{out}");
    out
}

#[test]
fn meta_commands_list_relations() {
    let s = Server::start();
    ok(
        &s,
        &[
            "-c",
            "CREATE TABLE customers (id INT, email TEXT)",
            "-c",
            "CREATE VIEW vip AS SELECT * FROM customers",
        ],
    );
    let dt = ok(&s, &["-c", "\\dt"]);
    assert!(dt.contains("customers") && !dt.contains("vip"), "{dt}");
    let dv = ok(&s, &["-c", "\\dv"]);
    assert!(dv.contains("vip"), "{dv}");
    let d = ok(&s, &["-c", "\\d customers"]);
    assert!(d.contains("email") && d.contains("id"), "{d}");
    let dn = ok(&s, &["-c", "\\dn"]);
    assert!(dn.contains("public"), "{dn}");
    let l = ok(&s, &["-c", "\\l"]);
    assert!(l.contains("tessera"), "{l}");
    // `\du` asks for `ARRAY(SELECT ...)` of each role's memberships; `current_role` is a keyword.
    ok(&s, &["-c", "CREATE ROLE analyst"]);
    let du = ok(&s, &["-c", "\\du"]);
    let lines: Vec<&str> = du.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("analyst ") && l.trim_end().ends_with("{}"))
            && lines
                .iter()
                .any(|l| l.trim_start().starts_with("tessera ") && l.contains("Superuser")),
        "{du}"
    );
    let role = ok(&s, &["-At", "-c", "SELECT current_role"]);
    assert_eq!(role.trim(), "tessera");
}

#[test]
fn backslash_copy_in_and_out() {
    let s = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let input = dir.path().join("in.csv");
    let output = dir.path().join("out.csv");
    std::fs::write(&input, "id,email\n1,a@x.com\n2,\"b,c@y.com\"\n").expect("write");
    ok(&s, &["-c", "CREATE TABLE t (id INT, email TEXT)"]);
    let out = ok(
        &s,
        &[
            "-c",
            &format!(
                "\\copy t FROM '{}' WITH (FORMAT csv, HEADER)",
                input.display()
            ),
        ],
    );
    assert!(out.contains("COPY 2"), "{out}");
    ok(
        &s,
        &[
            "-c",
            &format!(
                "\\copy (SELECT * FROM t ORDER BY id) TO '{}' WITH (FORMAT csv, HEADER)",
                output.display()
            ),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&output).expect("read"),
        "id,email\n1,a@x.com\n2,\"b,c@y.com\"\n"
    );
    let (success, _, err) = psql(&s, &["-c", "SELECT * FROM nope"]);
    assert!(!success && err.contains("does not exist"), "{err}");
}

/// psql's blocks: ROLLBACK undoes the block's writes and COMMIT lands them, in the simple
/// and the extended protocol. A catalog change commits on its own, so a ROLLBACK of a
/// block that made one says so (a WARNING notice); other blocks get no warning.
#[test]
fn rollback_undoes_writes_and_warns_about_catalog_changes() {
    let s = Server::start();
    ok(&s, &["-c", "CREATE TABLE kept (x INT)"]);
    let (success, out, err) = psql(
        &s,
        &[
            "-c",
            "BEGIN; INSERT INTO kept VALUES (1); UPDATE kept SET x = 2; ROLLBACK;",
            "-c",
            "BEGIN; SELECT count(*) FROM kept; ROLLBACK;",
            "-c",
            "BEGIN; INSERT INTO kept VALUES (3); COMMIT;",
            "-c",
            "BEGIN; CREATE TABLE made_in_block (y INT); INSERT INTO kept VALUES (5); ROLLBACK;",
            "-c",
            "SELECT string_agg(x::text, ',') FROM kept",
        ],
    );
    assert!(success, "{err}\n{out}");
    assert_eq!(
        err.matches(
            "WARNING:  ROLLBACK did not undo 1 statement(s) of this transaction that changed \
             the catalog"
        )
        .count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("WARNING").count(), 1, "{err}");
    // Only the committed block's row is there.
    assert!(out.trim_end().ends_with("3\n(1 row)"), "{out}");
    let (_, out, _) = psql(&s, &["-c", "SELECT count(*) FROM made_in_block"]);
    assert!(out.contains('0'), "{out}");

    // The extended protocol: tokio-postgres binds the INSERT's parameter.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (notices, counts) = rt.block_on(async {
        let (client, mut conn) = tokio_postgres::connect(&s.conn_str(), tokio_postgres::NoTls)
            .await
            .expect("connect");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(m) = futures::future::poll_fn(|cx| conn.poll_message(cx)).await {
                if let Ok(tokio_postgres::AsyncMessage::Notice(n)) = m {
                    let _ = tx.send(format!("{}: {}", n.severity(), n.message()));
                }
            }
        });
        let mut counts = Vec::new();
        client.batch_execute("BEGIN").await.expect("begin");
        client
            .execute("INSERT INTO kept VALUES ($1)", &[&4i32])
            .await
            .expect("insert");
        let seen: i64 = client
            .query_one("SELECT count(*) FROM kept WHERE x = $1", &[&4i32])
            .await
            .expect("read in block")
            .get(0);
        counts.push(seen);
        client.batch_execute("ROLLBACK").await.expect("rollback");
        let after: i64 = client
            .query_one("SELECT count(*) FROM kept WHERE x = $1", &[&4i32])
            .await
            .expect("read after")
            .get(0);
        counts.push(after);
        // Catalog changes on both sides of a ROLLBACK TO that ends a failure: the
        // ROLLBACK of the block counts both.
        client
            .batch_execute("BEGIN; CREATE TABLE in_block1 (a INT); SAVEPOINT s")
            .await
            .expect("block");
        assert!(client.batch_execute("SELECT 1/0").await.is_err());
        client
            .batch_execute("ROLLBACK TO SAVEPOINT s; CREATE TABLE in_block2 (a INT)")
            .await
            .expect("rollback to");
        client.batch_execute("ROLLBACK").await.expect("rollback");
        drop(client);
        let mut notices = Vec::new();
        while let Some(n) = rx.recv().await {
            notices.push(n);
        }
        (notices, counts)
    });
    assert_eq!(
        notices,
        [
            "WARNING: ROLLBACK did not undo 2 statement(s) of this transaction that changed the \
          catalog or refreshed a materialized view: tessera commits those on their own"
        ]
    );
    // The block read its own insert; the rollback undid it.
    assert_eq!(counts, [1, 0]);
}
