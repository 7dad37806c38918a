#!/usr/bin/env bash
# Full refresh of the demo model (sql/*.sql), tessera vs the same model in DuckDB, stage by stage:
#   benches/run_model.sh                          # 1,000,000 customers (goal: tessera within 60 s)
#   benches/run_model.sh --customers 10000        # smoke test
#   TESSERA_BIN=target/debug/tessera benches/run_model.sh --customers 10000 --json out.json
# Sets up .venv (TESSERA_VENV) with benches/identity/requirements.txt. Builds tessera in release
# only when TESSERA_BIN is unset and BUILD is not 0 (a release build takes ~26 min on 2 cores).
# The demo data is generated once into /tmp/modelbench-<customers>-<seed>/tessera/demo (--work)
# and reused. Other flags: see `benches/model/model_vs_duckdb.py --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${TESSERA_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import duckdb, psycopg, pyarrow" 2>/dev/null ||
  "$venv/bin/pip" install -q -r benches/identity/requirements.txt
if [ -z "${TESSERA_BIN:-}" ] && [ "${BUILD:-1}" != 0 ]; then
  cargo build --release --locked --bin tessera
fi
exec "$venv/bin/python" benches/model/model_vs_duckdb.py "$@"
