#!/usr/bin/env bash
# COPY ingest and SELECT streaming, tessera vs PostgreSQL 15, side by side:
#   benches/run_copy_select.sh [ROWS]     (default 1,000,000 rows; REPEAT=3)
# Installs what it needs and builds tessera in release (see setup.sh; TESSERA_BIN skips
# the build).
source "$(dirname "$0")/setup.sh"
exec "$venv/bin/python" benches/copy_select_vs_postgres.py "$@"
