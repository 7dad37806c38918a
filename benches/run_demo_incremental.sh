#!/usr/bin/env bash
# Incremental refresh of the demo model's profiles after a 1% append vs its full refresh:
#   benches/run_demo_incremental.sh                        # 1,000,000 customers (goal: ratio <= 0.1)
#   benches/run_demo_incremental.sh --customers 100000
#   TESSERA_BIN=target/debug/tessera benches/run_demo_incremental.sh --customers 10000
# Sets up .venv (TESSERA_VENV) with benches/identity/requirements.txt. Builds tessera in release
# only when TESSERA_BIN is unset and BUILD is not 0 (a release build takes ~26 min on 2 cores).
# Shares /tmp/modelbench-<customers>-<seed> (its generated demo data) with benches/run_model.sh.
# Other flags: see `benches/model/demo_incremental.py --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${TESSERA_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import psycopg, pyarrow" 2>/dev/null ||
  "$venv/bin/pip" install -q -r benches/identity/requirements.txt
if [ -z "${TESSERA_BIN:-}" ] && [ "${BUILD:-1}" != 0 ]; then
  cargo build --release --locked --bin tessera
fi
exec "$venv/bin/python" benches/model/demo_incremental.py "$@"
