#!/usr/bin/env bash
# Splink 5 (DuckDB backend) and tessera on the same synthetic person set, one after the
# other, then the side-by-side table with ratios and the gate:
#   benches/identity/run_splink_1m.sh                      # 1M records, release tessera
#   RECORDS=50000 TESSERA_BIN=target/debug/tessera benches/identity/run_splink_1m.sh   # smoke test
# Environment:
#   RECORDS       records to generate (default 1000000); PERSONS overrides the file, which is
#                 generated with gen_persons.py --seed 7 only when missing
#                 (default /tmp/idbench/persons_1m.parquet, or persons_<RECORDS>.parquet)
#   OUT           where the JSONs and logs go (default: next to the persons file)
#   SPLINK_JSON   reuse this earlier splink_1m.py --json result instead of running Splink
#   SPLINK_ARGS   extra flags for splink_1m.py (e.g. "--u-pairs 1e7")
#   TESSERA_ARGS  extra flags for splink_1m_tessera.py (e.g. "--u-pairs 5e5 --keep")
#   TESSERA_BIN   the tessera binary; when unset (and BUILD is not 0) a release build is made
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${TESSERA_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import duckdb, psycopg, pyarrow, splink" 2>/dev/null ||
  "$venv/bin/pip" install -q -r benches/identity/requirements.txt
if [ -z "${TESSERA_BIN:-}" ]; then
  if [ "${BUILD:-1}" != 0 ]; then cargo build --release --locked --bin tessera; fi
  export TESSERA_BIN=target/release/tessera
fi

records=${RECORDS:-1000000}
if [ "$records" = 1000000 ]; then default=/tmp/idbench/persons_1m.parquet; else default=/tmp/idbench/persons_${records}.parquet; fi
persons=${PERSONS:-$default}
if [ ! -f "$persons" ] || [ ! -f "${persons%.parquet}.truth.parquet" ]; then
  echo "generating $persons ($records records)" >&2
  "$venv/bin/python" benches/identity/gen_persons.py --records "$records" --seed 7 --out "$persons"
fi
out=${OUT:-$(dirname "$persons")}
stem=$(basename "${persons%.parquet}")
mkdir -p "$out"

splink_json=${SPLINK_JSON:-$out/splink_$stem.json}
if [ -z "${SPLINK_JSON:-}" ]; then
  echo "== Splink 5 ($persons) -> $splink_json" >&2
  # shellcheck disable=SC2086
  "$venv/bin/python" benches/identity/splink_1m.py "$persons" --json "$splink_json" ${SPLINK_ARGS:-} \
    2> "$out/splink_$stem.log" | grep -v '^{'
fi
echo "== tessera ($TESSERA_BIN) -> $out/tessera_$stem.json" >&2
# shellcheck disable=SC2086
"$venv/bin/python" benches/identity/splink_1m_tessera.py "$persons" --json "$out/tessera_$stem.json" \
  --compare "$splink_json" ${TESSERA_ARGS:-} | grep -v '^{'
