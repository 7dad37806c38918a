#!/usr/bin/env bash
# COPY ingest and SELECT streaming, tessera vs PostgreSQL 15, side by side:
#   benches/run_copy_select.sh [ROWS]     (default 1,000,000 rows; REPEAT=3)
# Installs what it needs (Debian postgresql, .venv with psycopg), builds tessera in release.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
venv=${TESSERA_VENV:-.venv}
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install -q -r tests/clients/requirements.txt; }
cargo build --release --locked --bin tessera
exec "$venv/bin/python" benches/copy_select_vs_postgres.py "$@"
