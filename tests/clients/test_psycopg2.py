#!/usr/bin/env python3
"""psycopg2 against a running tessera server (TESSERA_PORT).

psycopg2 interpolates parameters on the client and sends everything as simple queries;
it opens a transaction (BEGIN) before the first statement unless autocommit is on,
implements named cursors with DECLARE ... CURSOR WITHOUT HOLD / FETCH FORWARD n / CLOSE,
and its copy_from/copy_to send the old `COPY t FROM stdin WITH DELIMITER AS ...` syntax.
Tables: pg2_*.
"""
import datetime as dt
import decimal
import io

import psycopg2
import psycopg2.errors
import psycopg2.extensions as ext
import psycopg2.extras

from clientcheck import HOST, PASSWORD, PORT, Checks, eq, raises, true

T = "pg2_items"
ROWS = [
    (1, "alice", 1.5, True, dt.datetime(2024, 1, 2, 3, 4, 5)),
    (2, "bob", -2.25, False, dt.datetime(2024, 2, 3, 4, 5, 6, 789000)),
    (3, "carol", 0.0, True, dt.datetime(1999, 12, 31, 23, 59, 59)),
    (4, None, None, None, None),
    (5, "dan's \"quoted\" \\ name", 1e10, False, dt.datetime(2030, 6, 7, 8, 9, 10)),
]

conn = None


def connect():
    return psycopg2.connect(host=HOST, port=PORT, user="tessera", password=PASSWORD, dbname="tessera", sslmode="disable", connect_timeout=10)


def reset():
    """Roll back what a failed check left open (only with TESSERA_KEEP_GOING=1)."""
    global conn
    if conn is not None and not conn.closed and conn.get_transaction_status() != ext.TRANSACTION_STATUS_IDLE:
        try:
            conn.rollback()
        except psycopg2.Error as e:
            print(f"note: rollback after the failed check raised {type(e).__name__}: {e}; reconnecting")
            conn.close()
            conn = connect()


checks = Checks("psycopg2", before_each=reset)


@checks.check("connect and read server version")
def _():
    global conn
    conn = connect()
    true(conn.server_version >= 90000, f"server_version too low or missing: {conn.server_version}")
    with conn.cursor() as cur:
        cur.execute("SELECT version()")
        v = cur.fetchone()[0]
        true(v.startswith("PostgreSQL "), f"version() = {v!r}")
    conn.commit()


@checks.check("SHOW the settings drivers read (SQLAlchemy, JDBC, ORMs)")
def _():
    import re
    bad = []
    with conn.cursor() as cur:
        for name, ok in [
            ("standard_conforming_strings", lambda v: v == "on"),
            ("client_encoding", lambda v: v == "UTF8"),
            ("transaction isolation level", lambda v: v == "read committed"),
            ("server_version", lambda v: re.match(r"^\d+\.\d+", v) and int(v.split(".")[0]) == conn.server_version // 10000),
            ("integer_datetimes", lambda v: v == "on"),
            ("DateStyle", lambda v: v.startswith("ISO")),
            ("TimeZone", lambda v: bool(v)),
        ]:
            cur.execute(f"SHOW {name}")
            value = cur.fetchone()[0]
            if not ok(value):
                bad.append(f"SHOW {name} = {value!r} (column {cur.description[0].name!r})")
    conn.commit()
    eq(bad, [], "unexpected SHOW answers")


@checks.check("create table")
def _():
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {T}")
        cur.execute(f"CREATE TABLE {T} (id INT, name TEXT, score DOUBLE PRECISION, active BOOLEAN, created TIMESTAMP)")
    conn.commit()


@checks.check("executemany INSERT with %s parameters")
def _():
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {T} (id, name, score, active, created) VALUES (%s, %s, %s, %s, %s)", ROWS[:3])
        eq(cur.rowcount, 3, "executemany rowcount")
        cur.execute(f"INSERT INTO {T} VALUES (%s, %s, %s, %s, %s)", ROWS[3])
        eq(cur.rowcount, 1, "single INSERT rowcount")
        eq(cur.statusmessage, "INSERT 0 1", "INSERT command tag")
    conn.commit()


@checks.check("extras.execute_values (multi-row VALUES)")
def _():
    with conn.cursor() as cur:
        psycopg2.extras.execute_values(cur, f"INSERT INTO {T} (id, name, score, active, created) VALUES %s", ROWS[4:])
        eq(cur.rowcount, 1, "rowcount")
    conn.commit()


@checks.check("SELECT with %s params returns int, text, float, bool, timestamp")
def _():
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, name, score, active, created FROM {T} WHERE id >= %s ORDER BY id", (1,))
        got = cur.fetchall()
        eq(got, ROWS, "rows")
        eq([d.type_code for d in cur.description], [23, 25, 701, 16, 1114], "type OIDs")
        for v, t in zip(got[0], (int, str, float, bool, dt.datetime)):
            true(type(v) is t, f"{v!r} is {type(v).__name__}, expected {t.__name__}")
        cur.execute(f"SELECT id FROM {T} WHERE name = %s AND active = %s AND created > %s", ("alice", True, dt.datetime(2000, 1, 1)))
        eq(cur.fetchall(), [(1,)], "text/bool/timestamp params")
        cur.execute(f"SELECT id FROM {T} WHERE id IN %s ORDER BY id", ((2, 3),))
        eq(cur.fetchall(), [(2,), (3,)], "tuple param (IN)")
        cur.execute("SELECT %s::numeric, %s::date, %s::bigint", (decimal.Decimal("12.34"), dt.date(2024, 5, 6), 2**40))
        eq(cur.fetchone(), (decimal.Decimal("12.34"), dt.date(2024, 5, 6), 2**40), "numeric, date, bigint")
    conn.commit()


@checks.check("text-format values are PostgreSQL's output format (what psql and text-mode clients see)")
def _():
    # A typecaster that keeps the server's text, so the check sees the wire format itself.
    raw = psycopg2.extensions.new_type((16, 20, 23, 700, 701, 1082, 1114, 1700), "RAW", lambda value, cur: value)
    with conn.cursor() as cur:
        psycopg2.extensions.register_type(raw, cur)
        cur.execute(
            "SELECT CAST(20 AS double precision) AS a, CAST(1e10 AS double precision) AS b, "
            "CAST(1e20 AS double precision) AS c, CAST(0.1 AS real) AS d, "
            "CAST('2024-01-02 03:04:05' AS timestamp) AS e, CAST('2024-01-02 03:04:05.5' AS timestamp) AS f, "
            "CAST(1.50 AS numeric(10, 2)) AS g, true AS h, CAST('2024-05-06' AS date) AS i")
        eq(cur.fetchone(), ("20", "10000000000", "1e+20", "0.1", "2024-01-02 03:04:05", "2024-01-02 03:04:05.5", "1.50", "t", "2024-05-06"),
           "text values")
        cur.execute(f"SELECT score, created FROM {T} WHERE id = 5")
        eq(cur.fetchone(), ("10000000000", "2030-06-07 08:09:10"), "text values read from a table")
    conn.commit()


@checks.check("RealDictCursor gives rows by column name")
def _():
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(f"SELECT id, name FROM {T} WHERE id = %s", (2,))
        eq(dict(cur.fetchone()), {"id": 2, "name": "bob"}, "dict row")
    conn.commit()


@checks.check("copy_expert COPY ... FROM STDIN (csv)")
def _():
    data = io.StringIO('10,copy-a,10.5,true,2020-01-01 00:00:00\n11,"copy, b",,false,\n')
    with conn.cursor() as cur:
        cur.copy_expert(f"COPY {T} (id, name, score, active, created) FROM STDIN WITH (FORMAT csv)", data)
        eq(cur.rowcount, 2, "COPY rowcount")
        cur.execute(f"SELECT id, name, score, active, created FROM {T} WHERE id >= 10 ORDER BY id")
        eq(cur.fetchall(), [(10, "copy-a", 10.5, True, dt.datetime(2020, 1, 1)), (11, "copy, b", None, False, None)], "copied rows")
        cur.execute(f"DELETE FROM {T} WHERE id >= 10")
    conn.commit()


@checks.check("copy_expert COPY (query) TO STDOUT (csv header)")
def _():
    out = io.StringIO()
    with conn.cursor() as cur:
        cur.copy_expert(f"COPY (SELECT id, name, active FROM {T} WHERE id IN (1, 4, 5) ORDER BY id) TO STDOUT WITH CSV HEADER", out)
    conn.commit()
    eq(out.getvalue(), 'id,name,active\n1,alice,t\n4,,\n5,"dan\'s ""quoted"" \\ name",f\n', "csv output")


@checks.check("copy_from / copy_to (COPY ... WITH DELIMITER AS ... NULL AS ... syntax)")
def _():
    with conn.cursor() as cur:
        cur.copy_from(io.StringIO("30\tcf-a\n31\t\\N\n"), T, columns=("id", "name"))
        eq(cur.rowcount, 2, "copy_from rowcount")
        out = io.StringIO()
        cur.copy_to(out, T, columns=("id", "name"))
        lines = sorted(out.getvalue().splitlines())
        true("30\tcf-a" in lines and "31\t\\N" in lines, f"copy_to output lacks the copied rows: {lines}")
        eq(len(lines), 7, "copy_to row count")
        cur.execute(f"DELETE FROM {T} WHERE id >= 30")
    conn.commit()


@checks.check("named cursor (DECLARE/FETCH) iterates a result")
def _():
    with conn.cursor(name="pg2_c") as cur:
        cur.itersize = 2
        cur.execute(f"SELECT id, name FROM {T} ORDER BY id")
        ids = [r[0] for r in cur]
        eq(ids, [1, 2, 3, 4, 5], "ids")
    conn.commit()
    with conn.cursor(name="pg2_c2") as cur:
        cur.execute(f"SELECT id FROM {T} WHERE id > %s ORDER BY id", (1,))
        eq(cur.fetchone(), (2,), "fetchone")
        eq(cur.fetchmany(2), [(3,), (4,)], "fetchmany(2)")
        eq(cur.fetchall(), [(5,)], "fetchall rest")
        eq([d.name for d in cur.description], ["id"], "description")
    conn.commit()


@checks.check("UPDATE and DELETE rowcount")
def _():
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {T} SET score = score * 2 WHERE active = %s", (True,))
        eq(cur.rowcount, 2, "UPDATE rowcount")
        cur.execute(f"DELETE FROM {T} WHERE id = %s", (5,))
        eq(cur.rowcount, 1, "DELETE rowcount")
        eq(cur.statusmessage, "DELETE 1", "DELETE command tag")
        cur.execute(f"DELETE FROM {T} WHERE id = 999")
        eq(cur.rowcount, 0, "DELETE rowcount, no match")
        cur.execute(f"SELECT id, score FROM {T} WHERE active ORDER BY id")
        eq(cur.fetchall(), [(1, 3.0), (3, 0.0)], "rows after UPDATE")
    conn.commit()


@checks.check("undefined table: errors.UndefinedTable, pgcode 42P01, usable after rollback")
def _():
    with conn.cursor() as cur:
        e = raises(psycopg2.errors.UndefinedTable, lambda: cur.execute("SELECT * FROM pg2_nope"), "SELECT from a missing table")
        eq(e.pgcode, "42P01", "pgcode")
        true("pg2_nope" in e.pgerror, f"message names the table: {e.pgerror!r}")
        eq(conn.get_transaction_status(), ext.TRANSACTION_STATUS_INERROR, "transaction status after the error")
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {T}")
        eq(cur.fetchone(), (4,), "query after rollback")
    conn.commit()


@checks.check("statement in a failed transaction raises InFailedSqlTransaction (25P02)")
def _():
    with conn.cursor() as cur:
        raises(psycopg2.errors.UndefinedTable, lambda: cur.execute("SELECT * FROM pg2_nope"), "missing table")
        e = raises(psycopg2.errors.InFailedSqlTransaction, lambda: cur.execute("SELECT 1"), "statement after the error")
        eq(e.pgcode, "25P02", "pgcode")
    conn.rollback()


@checks.check("autocommit: error then next statement works")
def _():
    c2 = connect()
    c2.autocommit = True
    with c2.cursor() as cur:
        raises(psycopg2.errors.UndefinedTable, lambda: cur.execute("SELECT * FROM pg2_nope"), "missing table")
        cur.execute("SELECT 1 + 1")
        eq(cur.fetchone(), (2,), "next statement")
    c2.close()


@checks.check("drop table")
def _():
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE {T}")
    conn.commit()
    conn.close()


checks.finish()
