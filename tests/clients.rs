//! Real client libraries against a real server: the programs in `tests/clients/`.
//!
//! They need the Python environment and Debian packages that `scripts/test.sh` installs
//! (`.venv` with `tests/clients/requirements.txt`, or `TESSERA_VENV`); without it these
//! tests fail and say so, never skip.

use std::path::PathBuf;
use std::process::Command;

use crate::common::{rows, Server};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv() -> PathBuf {
    std::env::var_os("TESSERA_VENV").map_or_else(|| root().join(".venv"), PathBuf::from)
}

/// Run one client program against a fresh server; panics with its output if it fails.
fn run_client(program: &mut Command) {
    let venv = venv();
    assert!(
        venv.join("bin/python").exists(),
        "no Python environment at {}: run scripts/test.sh (it creates .venv from tests/clients/requirements.txt)",
        venv.display()
    );
    let s = Server::start();
    let out = program
        .env("TESSERA_PORT", s.port.to_string())
        .env("TESSERA_PASSWORD", crate::common::PASSWORD)
        .env("PGPASSWORD", crate::common::PASSWORD)
        .env("TESSERA_VENV", &venv)
        .env("TESSERA_KEEP_GOING", "1")
        .current_dir(root())
        .output()
        .expect("start client program");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "client program failed:\n{text}");
}

#[test]
fn dbt_builds_views_and_a_table_twice() {
    run_client(&mut Command::new(root().join("tests/clients/run_dbt.sh")));
}

#[tokio::test]
async fn other_engines_read_managed_tables_as_delta() {
    let python = venv().join("bin/python");
    assert!(
        python.exists(),
        "no Python environment at {}: run scripts/test.sh",
        venv().display()
    );
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE shared (id INT, name TEXT, at TIMESTAMP);
         INSERT INTO shared VALUES (1, 'a', '2024-01-01 10:00:00'), (2, 'b', NULL), (3, 'c', NULL);
         DELETE FROM shared WHERE id = 2;
         UPDATE shared SET name = 'z' WHERE id = 3;",
    )
    .await
    .expect("writes");
    assert_eq!(
        rows(&c, "SELECT count(*) FROM shared").await,
        vec![vec!["2"]]
    );
    let dir = std::fs::read_dir(s.data_dir.join("tables"))
        .expect("tables")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("shared-"))
        .expect("table directory")
        .path();
    let out = Command::new(&python)
        .arg(root().join("tests/clients/read_delta.py"))
        .arg(&dir)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"version\": 3"),
        "create, insert, delete, update are commits 0-3: {text}"
    );
    assert!(
        text.contains("{\"id\": 1, \"name\": \"a\", \"at\": \"2024-01-01 10:00:00\"}")
            && text.contains("{\"id\": 3, \"name\": \"z\", \"at\": null}")
            && !text.contains("\"id\": 2"),
        "{text}"
    );
}

#[test]
fn psycopg3_program_passes() {
    run_client(
        Command::new(venv().join("bin/python")).arg(root().join("tests/clients/test_psycopg3.py")),
    );
}

#[test]
fn psycopg2_program_passes() {
    run_client(
        Command::new(venv().join("bin/python")).arg(root().join("tests/clients/test_psycopg2.py")),
    );
}

#[test]
fn asyncpg_program_passes() {
    run_client(
        Command::new(venv().join("bin/python")).arg(root().join("tests/clients/test_asyncpg.py")),
    );
}

#[test]
fn sqlalchemy_program_passes() {
    run_client(
        Command::new(venv().join("bin/python"))
            .arg(root().join("tests/clients/test_sqlalchemy.py")),
    );
}

#[test]
fn pgjdbc_program_passes() {
    run_client(
        Command::new("java")
            .arg("-cp")
            .arg("/usr/share/java/postgresql.jar")
            .arg(root().join("tests/clients/Jdbc.java")),
    );
}
