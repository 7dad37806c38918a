#!/usr/bin/env bash
# Load on the HTTP collection API (POST /v1/batch from concurrent clients): events/s and
# p99 latency, then a check that every acknowledged event is stored:
#   benches/run_collect_load.sh [CLIENTS] [SECONDS] [BATCH]   (default 96 clients, 20 s, 100)
# Installs what it needs and builds tessera in release (see setup.sh; TESSERA_BIN skips
# the build, e.g. TESSERA_BIN=target/debug/tessera for a quick check).
source "$(dirname "$0")/setup.sh"
exec "$venv/bin/python" benches/collect_load.py "$@"
