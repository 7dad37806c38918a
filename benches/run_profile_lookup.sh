#!/usr/bin/env bash
# Profile lookup latency with 8 concurrent clients, tessera vs PostgreSQL 15:
#   benches/run_profile_lookup.sh [PROFILES]   (default 1,000,000; CLIENTS=8 LOOKUPS=500)
# Installs what it needs and builds tessera in release (see setup.sh; TESSERA_BIN skips
# the build).
source "$(dirname "$0")/setup.sh"
exec "$venv/bin/python" benches/profile_lookup_vs_postgres.py "$@"
