//! Real client libraries against a real server: the programs in `tests/clients/`.
//!
//! They need the Python environment and Debian packages that `scripts/test.sh` installs
//! (`.venv` with `tests/clients/requirements.txt`, or `TESSERA_VENV`); without it these
//! tests fail and say so, never skip.

use std::path::PathBuf;
use std::process::Command;

use crate::common::Server;

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
