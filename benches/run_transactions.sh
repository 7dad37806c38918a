#!/usr/bin/env bash
# Small transactions (autocommit INSERTs and BEGIN/INSERT/UPDATE/COMMIT blocks), tessera
# vs PostgreSQL 15, side by side:
#   benches/run_transactions.sh [BLOCKS]    (default 200; HISTORY=200 earlier commits)
# Installs what it needs and builds tessera in release (see setup.sh; TESSERA_BIN skips
# the build).
source "$(dirname "$0")/setup.sh"
exec "$venv/bin/python" benches/transactions_vs_postgres.py "$@"
