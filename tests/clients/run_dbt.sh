#!/usr/bin/env bash
# dbt-postgres against a running tessera server: TESSERA_PORT=<port> tests/clients/run_dbt.sh
#
# Creates the source table with psql, runs `dbt debug`, then `dbt run` twice (the second
# run replaces existing relations: CREATE ... __dbt_tmp, ALTER ... RENAME TO __dbt_backup,
# ALTER ... RENAME, DROP ... CASCADE, inside BEGIN/COMMIT), and checks the models' contents
# with psql after each run. Prints one line per passed check; stops at the first failure
# (TESSERA_KEEP_GOING=1 runs on) and ends with "dbt: N passed, N failed".
# dbt comes from $TESSERA_VENV (default: .venv at the repository root).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
: "${TESSERA_PORT:?TESSERA_PORT is not set: export TESSERA_PORT=<port of a running tessera server>}"
VENV=${TESSERA_VENV:-$ROOT/.venv}
DBT="$VENV/bin/dbt"
[ -x "$DBT" ] || { echo "FAIL dbt: no dbt at $DBT (pip install -r tests/clients/requirements.txt into \$TESSERA_VENV)"; exit 1; }
command -v psql >/dev/null || { echo "FAIL dbt: psql is not installed"; exit 1; }

PASSED=0
FAILED=()
finish() {
    echo "dbt: $PASSED passed, ${#FAILED[@]} failed"
    if [ ${#FAILED[@]} -gt 0 ]; then
        (IFS=,; echo "dbt: FAILED: ${FAILED[*]}")
        exit 1
    fi
    exit 0
}
ok() { PASSED=$((PASSED + 1)); echo "ok   dbt: $1"; }
fail() {
    FAILED+=("$1")
    echo "FAIL dbt: $1: $2"
    [ "${TESSERA_KEEP_GOING:-}" = 1 ] || finish
}

export PGPASSWORD=${TESSERA_PASSWORD:-}
psql_t() { psql -h 127.0.0.1 -p "$TESSERA_PORT" -U tessera -d tessera -X -q -v ON_ERROR_STOP=1 -At -F '|' "$@"; }

# Compare a query's output with the expected text (rows as a|b|c, one a line). Money is
# compared as integer cents so the checks are about dbt, not float8 text formatting.
expect_query() {
    local name=$1 sql=$2 want=$3 got
    if ! got=$(psql_t -c "$sql" 2>&1); then
        fail "$name" "psql error: $(echo "$got" | tr '\n' ' ')"
        return
    fi
    if [ "$got" = "$want" ]; then ok "$name"; else
        fail "$name" "query <$sql> expected <$(echo "$want" | tr '\n' ';')> got <$(echo "$got" | tr '\n' ';')>"
    fi
}

# dbt writes target/, logs/ and .user.yml next to the project: run a copy in a temp dir.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r "$HERE/dbt_project" "$WORK/project"
export DBT_SEND_ANONYMOUS_USAGE_STATS=false DBT_USE_COLORS=false DBT_PARTIAL_PARSE=false
export DBT_TARGET_PATH="$WORK/target" DBT_LOG_PATH="$WORK/logs"
DBT_ARGS=(--project-dir "$WORK/project" --profiles-dir "$WORK/project")

# Show why dbt failed: its error summary, and the statement the server rejected.
dbt_failure() {
    local out=$1
    sed -n '/Completed with\|Encountered an error\|Runtime Error\|Database Error/,/^.*Done\./p' "$out" | head -20 | sed 's/^/    | /'
    if [ -f "$WORK/logs/dbt.log" ]; then
        echo "    | statement before the error (from dbt.log):"
        grep -B12 -m1 "Postgres adapter: Postgres error" "$WORK/logs/dbt.log" | grep -v "^\s*$" | tail -8 | cut -c1-300 | sed 's/^/    | /'
    fi
}

run_dbt() { # name, dbt args...
    local name=$1; shift
    local out="$WORK/dbt-$(echo "$name" | tr -c 'a-z0-9' '_').out"
    if "$DBT" "$@" "${DBT_ARGS[@]}" >"$out" 2>&1; then
        ok "$name"
        return 0
    fi
    fail "$name" "dbt exited non-zero:
$(dbt_failure "$out")"
    return 1
}

# --- source table -------------------------------------------------------------------
if out=$(psql_t 2>&1 <<'SQL'
DROP VIEW IF EXISTS dbt_active_customers CASCADE;
DROP VIEW IF EXISTS dbt_stg_customers CASCADE;
DROP TABLE IF EXISTS dbt_customer_summary CASCADE;
DROP TABLE IF EXISTS dbt_src_customers CASCADE;
CREATE TABLE dbt_src_customers (id INT, name TEXT, country TEXT, active BOOLEAN, spend DOUBLE PRECISION);
INSERT INTO dbt_src_customers VALUES
  (1, 'Alice', 'fr', true, 10.5),
  (2, 'BOB', 'de', true, 20.0),
  (3, 'Carol', 'fr', false, 99.0),
  (4, 'Dan', 'fr', true, 4.5);
SQL
); then ok "create source table dbt_src_customers with psql"; else fail "create source table dbt_src_customers with psql" "$(echo "$out" | tr '\n' ' ')"; fi

# --- dbt ------------------------------------------------------------------------------
run_dbt "dbt debug (connection test)" debug

check_models() { # suffix for the check names, expected summary rows
    local run=$1 summary=$2
    expect_query "$run: dbt_stg_customers (view) rows" \
        "SELECT id, name, country, active, CAST(spend * 100 AS BIGINT) FROM dbt_stg_customers ORDER BY id" \
        "$3"
    expect_query "$run: dbt_active_customers (view on a view) rows" \
        "SELECT id, name, country, CAST(spend * 100 AS BIGINT) FROM dbt_active_customers ORDER BY id" \
        "$4"
    expect_query "$run: dbt_customer_summary (table) rows" \
        "SELECT country, customers, CAST(total_spend * 100 AS BIGINT) FROM dbt_customer_summary ORDER BY country" \
        "$summary"
    expect_query "$run: relation kinds in information_schema.tables" \
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE 'dbt%' ORDER BY table_name" \
        "dbt_active_customers|VIEW
dbt_customer_summary|BASE TABLE
dbt_src_customers|BASE TABLE
dbt_stg_customers|VIEW"
}

run_dbt "dbt run #1 (creates 2 views and 1 table)" run
check_models "after run #1" "DE|1|2000
FR|2|1500" \
"1|alice|FR|t|1050
2|bob|DE|t|2000
3|carol|FR|f|9900
4|dan|FR|t|450" \
"1|alice|FR|1050
2|bob|DE|2000
4|dan|FR|450"

if out=$(psql_t -c "INSERT INTO dbt_src_customers VALUES (5, 'Eve', 'es', true, 7.25)" 2>&1); then
    ok "insert one more source row"
else
    fail "insert one more source row" "$(echo "$out" | tr '\n' ' ')"
fi

run_dbt "dbt run #2 (replaces existing relations: rename to backup, rename tmp, drop cascade)" run
check_models "after run #2" "DE|1|2000
ES|1|725
FR|2|1500" \
"1|alice|FR|t|1050
2|bob|DE|t|2000
3|carol|FR|f|9900
4|dan|FR|t|450
5|eve|ES|t|725" \
"1|alice|FR|1050
2|bob|DE|2000
4|dan|FR|450
5|eve|ES|725"
expect_query "after run #2: no __dbt_tmp / __dbt_backup relations left" \
    "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE '%dbt_tmp' OR table_name LIKE '%dbt_backup'" "0"

finish
