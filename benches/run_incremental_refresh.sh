#!/usr/bin/env bash
# Refresh after a 1% append: tessera incremental vs tessera full vs PostgreSQL 15:
#   benches/run_incremental_refresh.sh [ORDERS]   (default 2,000,000; CUSTOMERS=ORDERS/4)
# Installs what it needs and builds tessera in release (see setup.sh; TESSERA_BIN skips
# the build).
source "$(dirname "$0")/setup.sh"
exec "$venv/bin/python" benches/incremental_refresh_vs_postgres.py "$@"
