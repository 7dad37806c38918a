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
