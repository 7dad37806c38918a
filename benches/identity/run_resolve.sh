#!/usr/bin/env bash
# resolve_identities (tessera over the Postgres wire) vs DuckDB SQL label propagation:
#   benches/identity/run_resolve.sh                      # 10M records / ~30M identifier rows
#   benches/identity/run_resolve.sh --records 100000     # smoke test
#   TESSERA_BIN=target/debug/tessera benches/identity/run_resolve.sh --records 100000 --verify
# Sets up .venv with benches/identity/requirements.txt. Builds tessera in release only when
# TESSERA_BIN is unset and BUILD is not 0 (a release build takes ~26 min on 2 cores).
# Generated edges are cached in IDBENCH_WORK (default /tmp/tessera-idbench).
# Other flags: see `bench_resolve.py --help` (--repeat, --skip-duckdb, --skip-tessera, --json F).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${TESSERA_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import duckdb, psycopg, pyarrow, scipy" 2>/dev/null ||
  "$venv/bin/pip" install -q -r benches/identity/requirements.txt
if [ -z "${TESSERA_BIN:-}" ] && [ "${BUILD:-1}" != 0 ]; then
  cargo build --release --locked --bin tessera
fi
exec "$venv/bin/python" benches/identity/bench_resolve.py "$@"
