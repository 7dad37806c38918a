#!/usr/bin/env bash
# Run every test of the project. First installs what the tests need, idempotently:
# - Debian packages: psql (postgresql-client), a JDK and pgjdbc for the client programs;
# - .venv: the Python client libraries of tests/clients/requirements.txt (psycopg,
#   psycopg2, asyncpg, SQLAlchemy, pandas, dbt-postgres).
# Used by .ci/run and the README.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
[ -f /usr/share/java/postgresql.jar ] || need_apt+=(libpostgresql-jdbc-java)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

venv=${TESSERA_VENV:-.venv}
stamp="$venv/.requirements"
if ! cmp -s tests/clients/requirements.txt "$stamp" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/clients/requirements.txt
  cp tests/clients/requirements.txt "$stamp"
fi
export TESSERA_VENV=$(cd "$venv" && pwd)

# One test binary for all integration tests (see Cargo.toml), unit tests per crate.
cargo test --workspace --locked -- --test-threads=2
