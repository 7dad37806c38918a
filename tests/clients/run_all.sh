#!/usr/bin/env bash
# Run every client-compatibility program against a running tessera server:
#
#   TESSERA_PASSWORD=<password of role tessera> tests/clients/run_all.sh PORT
#
# Python comes from $TESSERA_VENV (default: .venv at the repository root), which needs
# `pip install -r tests/clients/requirements.txt`; the JDBC program needs java and
# /usr/share/java/postgresql.jar (Debian: libpostgresql-jdbc-java); run_dbt.sh needs psql.
# Each program stops at its first failed check unless TESSERA_KEEP_GOING=1. All programs
# run; the exit code is non-zero if any of them failed. The last line is the total of
# programs: "clients: N passed, N failed".
set -uo pipefail

if [ $# -ne 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 PORT   (the port of a running tessera server on 127.0.0.1)" >&2
    exit 2
fi
export TESSERA_PORT=$1
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export TESSERA_VENV=${TESSERA_VENV:-$ROOT/.venv}
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the work tree
PY="$TESSERA_VENV/bin/python"
JDBC_JAR=${TESSERA_JDBC_JAR:-/usr/share/java/postgresql.jar}

PASSED=()
FAILED=()
run() { # name, command...
    local name=$1; shift
    echo "=== $name"
    local start=$SECONDS
    # A hung client must not hang the whole run.
    if timeout 600 "$@"; then
        PASSED+=("$name")
        echo "=== $name: passed ($((SECONDS - start))s)"
    else
        FAILED+=("$name")
        echo "=== $name: FAILED ($((SECONDS - start))s)"
    fi
}

missing=0
[ -x "$PY" ] || { echo "no python at $PY: create the venv (python3 -m venv $TESSERA_VENV && $TESSERA_VENV/bin/pip install -r tests/clients/requirements.txt) or set TESSERA_VENV" >&2; missing=1; }
[ -f "$JDBC_JAR" ] || { echo "no JDBC driver at $JDBC_JAR (apt-get install libpostgresql-jdbc-java, or set TESSERA_JDBC_JAR)" >&2; missing=1; }
command -v java >/dev/null || { echo "java is not installed" >&2; missing=1; }
command -v psql >/dev/null || { echo "psql is not installed" >&2; missing=1; }
[ $missing = 0 ] || exit 2

cd "$HERE"
run psycopg3   "$PY" test_psycopg3.py
run psycopg2   "$PY" test_psycopg2.py
run asyncpg    "$PY" test_asyncpg.py
run sqlalchemy "$PY" test_sqlalchemy.py
run jdbc       java -cp "$JDBC_JAR" Jdbc.java
run dbt        bash run_dbt.sh

echo
echo "passed: ${PASSED[*]:-none}"
echo "failed: ${FAILED[*]:-none}"
echo "clients: ${#PASSED[@]} passed, ${#FAILED[@]} failed"
[ ${#FAILED[@]} -eq 0 ]
