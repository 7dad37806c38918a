#!/usr/bin/env python3
"""psycopg 3 against a running tessera server (TESSERA_PORT), as a real application uses it.

psycopg 3 binds parameters on the server (extended protocol: Parse/Bind/Execute), sends
queries without parameters as simple queries, pipelines executemany, auto-prepares a
statement run more than 5 times, and implements named cursors with DECLARE/FETCH.
Tables: pg3_*.
"""
import datetime as dt

import psycopg
import psycopg.errors
from psycopg import pq

from clientcheck import HOST, PASSWORD, PORT, Checks, eq, fail, raises, true



def reset():
    """Roll back what a failed check left open (only happens with TESSERA_KEEP_GOING=1,
    after a failure was already reported); if even that fails, start a new connection, so
    one failure does not show up again as the next check's."""
    global conn
    if conn is not None and not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
        try:
            conn.rollback()
        except psycopg.Error as e:
            print(f"note: rollback after the failed check raised {type(e).__name__}: {e}; reconnecting")
            conn.close()
            conn = connect()


checks = Checks("psycopg3", before_each=reset)
T = "pg3_items"
ROWS = [
    (1, "alice", 1.5, True, dt.datetime(2024, 1, 2, 3, 4, 5)),
    (2, "bob", -2.25, False, dt.datetime(2024, 2, 3, 4, 5, 6, 789000)),
    (3, "carol", 0.0, True, dt.datetime(1999, 12, 31, 23, 59, 59)),
    (4, None, None, None, None),
    (5, "dan's \"quoted\" \\ name", 1e10, False, dt.datetime(2030, 6, 7, 8, 9, 10)),
]
# PostgreSQL's OIDs for int4, text, float8, bool, timestamp.
OIDS = [23, 25, 701, 16, 1114]

conn = None


def connect(**kw):
    return psycopg.connect(host=HOST, port=PORT, user="tessera", password=PASSWORD, dbname="tessera", sslmode="disable", connect_timeout=10, **kw)


@checks.check("connect and read server version")
def _():
    global conn
    conn = connect()
    true(conn.info.server_version >= 90000, f"server_version parameter too low or missing: {conn.info.server_version}")
    with conn.cursor() as cur:
        cur.execute("SELECT version()")
        v = cur.fetchone()[0]
        true(v.startswith("PostgreSQL "), f"version() = {v!r}")
    conn.commit()


@checks.check("create table (in a transaction, then commit)")
def _():
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {T}")
        cur.execute(f"CREATE TABLE {T} (id INT, name TEXT, score DOUBLE PRECISION, active BOOLEAN, created TIMESTAMP)")
    conn.commit()
    eq(conn.info.transaction_status, pq.TransactionStatus.IDLE, "transaction status after commit")


@checks.check("executemany INSERT with server-side bound parameters")
def _():
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {T} (id, name, score, active, created) VALUES (%s, %s, %s, %s, %s)", ROWS)
        eq(cur.rowcount, len(ROWS), "executemany rowcount")
    conn.commit()


@checks.check("SELECT returns int, text, float, bool, timestamp as Python types")
def _():
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, name, score, active, created FROM {T} ORDER BY id")
        got = cur.fetchall()
    conn.commit()
    eq(got, ROWS, "rows")
    for row in got[:3]:
        for v, t in zip(row, (int, str, float, bool, dt.datetime)):
            true(type(v) is t, f"{v!r} is {type(v).__name__}, expected {t.__name__}")


@checks.check("result column type OIDs are PostgreSQL's (int4, text, float8, bool, timestamp)")
def _():
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, name, score, active, created FROM {T} LIMIT 1")
        eq([d.type_code for d in cur.description], OIDS, "type OIDs")
        eq([d.name for d in cur.description], ["id", "name", "score", "active", "created"], "column names")
    conn.commit()


@checks.check("parameters of each type in WHERE (server-side binding)")
def _():
    with conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {T} WHERE id = %s", (2,))
        eq(cur.fetchall(), [(2,)], "int param")
        cur.execute(f"SELECT id FROM {T} WHERE name = %s", ("carol",))
        eq(cur.fetchall(), [(3,)], "text param")
        cur.execute(f"SELECT id FROM {T} WHERE score > %s ORDER BY id", (1.0,))
        eq(cur.fetchall(), [(1,), (5,)], "float param")
        cur.execute(f"SELECT id FROM {T} WHERE active = %s ORDER BY id", (False,))
        eq(cur.fetchall(), [(2,), (5,)], "bool param")
        cur.execute(f"SELECT id FROM {T} WHERE created < %s ORDER BY id", (dt.datetime(2024, 1, 31),))
        eq(cur.fetchall(), [(1,), (3,)], "timestamp param")
        cur.execute(f"SELECT id FROM {T} WHERE name IS NULL")
        eq(cur.fetchall(), [(4,)], "IS NULL")
        cur.execute("SELECT %s::text, %s::int", ("x", 7))
        eq(cur.fetchone(), ("x", 7), "params in the select list")
    conn.commit()


@checks.check("unnamed result columns are named as PostgreSQL names them")
def _():
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*), max(id), 1, id + 1, lower(name) FROM {T} GROUP BY id, name ORDER BY id LIMIT 1")
        eq([d.name for d in cur.description], ["count", "max", "?column?", "?column?", "lower"], "column names")
    conn.commit()


@checks.check("duplicate unnamed result columns (SELECT 1, 1)")
def _():
    with conn.cursor() as cur:
        cur.execute("SELECT 1, 1")
        eq(cur.fetchall(), [(1, 1)], "rows")
        eq([d.name for d in cur.description], ["?column?", "?column?"], "column names")
    conn.commit()


@checks.check("binary result format (cursor.execute(binary=True))")
def _():
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, name, score, active, created FROM {T} WHERE id <= %s ORDER BY id", (3,), binary=True)
        eq(cur.fetchall(), ROWS[:3], "rows read in binary")
    conn.commit()


@checks.check("a statement run 10 times is auto-prepared (named server-side statement)")
def _():
    with conn.cursor() as cur:
        for i in range(10):
            cur.execute(f"SELECT name FROM {T} WHERE id = %s", (1 + i % 3,))
            eq(cur.fetchone(), (ROWS[i % 3][1],), f"execution {i + 1}")
    conn.commit()
    with conn.cursor() as cur:
        for i in range(3):
            cur.execute(f"SELECT count(*) FROM {T} WHERE id > %s", (i,), prepare=True)
            eq(cur.fetchone(), (len(ROWS) - i,), f"prepare=True execution {i + 1}")
    conn.commit()


@checks.check("rollback() after prepared statements (psycopg sends DEALLOCATE ALL)")
def _():
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {T} WHERE id > %s", (0,), prepare=True)
        eq(cur.fetchone(), (len(ROWS),), "prepared query")
    conn.rollback()
    eq(conn.execute("SELECT 'still usable'").fetchone(), ("still usable",), "query after rollback")
    conn.commit()


@checks.check("COPY ... FROM STDIN with copy.write_row")
def _():
    extra = [(10, "copy-a", 10.5, True, dt.datetime(2020, 1, 1, 0, 0, 0)), (11, "copy\tb", None, False, None)]
    with conn.cursor() as cur:
        with cur.copy(f"COPY {T} (id, name, score, active, created) FROM STDIN") as copy:
            for r in extra:
                copy.write_row(r)
        eq(cur.rowcount, 2, "COPY rowcount")
        cur.execute(f"SELECT id, name, score, active, created FROM {T} WHERE id >= 10 ORDER BY id")
        eq(cur.fetchall(), extra, "copied rows")
        cur.execute(f"DELETE FROM {T} WHERE id >= 10")
    conn.commit()


@checks.check("COPY ... TO STDOUT read with copy.rows()")
def _():
    with conn.cursor() as cur:
        with cur.copy(f"COPY (SELECT id, name, active FROM {T} WHERE id IN (1, 4) ORDER BY id) TO STDOUT") as copy:
            got = list(copy.rows())
        eq(got, [("1", "alice", "t"), ("4", None, None)], "COPY (query) TO STDOUT rows")
        with cur.copy(f"COPY {T} TO STDOUT") as copy:
            copy.set_types(["int4", "text", "float8", "bool", "timestamp"])
            got = sorted(copy.rows(), key=lambda r: r[0])
        eq(got, ROWS, "COPY table TO STDOUT rows (typed)")
    conn.commit()


@checks.check("named (server-side) cursor iterates a result in batches")
def _():
    with conn.cursor(name="pg3_c") as cur:
        cur.itersize = 2
        cur.execute(f"SELECT id, name FROM {T} ORDER BY id")
        eq([d.name for d in cur.description], ["id", "name"], "named cursor description")
        ids = [r[0] for r in cur]
        eq(ids, [1, 2, 3, 4, 5], "ids read through the named cursor")
    conn.commit()
    with conn.cursor(name="pg3_c2") as cur:
        cur.execute(f"SELECT id FROM {T} WHERE id > %s ORDER BY id", (1,))
        eq(cur.fetchone(), (2,), "fetchone")
        eq(cur.fetchmany(2), [(3,), (4,)], "fetchmany(2)")
        eq(cur.fetchall(), [(5,)], "fetchall rest")
    conn.commit()


@checks.check("UPDATE and DELETE report rowcount (with and without parameters)")
def _():
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {T} SET score = score + 1 WHERE id <= 2")
        eq(cur.rowcount, 2, "UPDATE rowcount (simple query)")
        cur.execute(f"UPDATE {T} SET name = %s WHERE id = %s", ("bobby", 2))
        eq(cur.rowcount, 1, "UPDATE rowcount (bound parameters)")
        cur.execute(f"DELETE FROM {T} WHERE id = %s", (5,))
        eq(cur.rowcount, 1, "DELETE rowcount (bound parameters)")
        cur.execute(f"DELETE FROM {T} WHERE id > 100")
        eq(cur.rowcount, 0, "DELETE rowcount, no match")
        cur.execute(f"SELECT id, name, score FROM {T} WHERE id <= 2 ORDER BY id")
        eq(cur.fetchall(), [(1, "alice", 2.5), (2, "bobby", -1.25)], "rows after UPDATE")
    conn.commit()


@checks.check("undefined table raises errors.UndefinedTable; usable after rollback")
def _():
    with conn.cursor() as cur:
        e = raises(psycopg.errors.UndefinedTable, lambda: cur.execute("SELECT * FROM pg3_nope"), "SELECT from a missing table")
        eq(e.sqlstate, "42P01", "sqlstate")
    conn.rollback()
    with conn.cursor() as cur:
        e = raises(psycopg.errors.UndefinedTable, lambda: cur.execute("SELECT * FROM pg3_nope WHERE x = %s", (1,)), "missing table, bound params")
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {T}")
        eq(cur.fetchone(), (4,), "query after rollback")
    conn.commit()


@checks.check("error inside a transaction puts it in the failed state until ROLLBACK")
def _():
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        raises(psycopg.errors.UndefinedTable, lambda: cur.execute("SELECT * FROM pg3_nope"), "missing table")
        eq(conn.info.transaction_status, pq.TransactionStatus.INERROR, "transaction status after the error")
        raises(psycopg.errors.InFailedSqlTransaction, lambda: cur.execute("SELECT 1"), "statement in a failed transaction")
    conn.rollback()
    eq(conn.info.transaction_status, pq.TransactionStatus.IDLE, "transaction status after rollback")


@checks.check("autocommit connection: error then next statement works")
def _():
    with connect(autocommit=True) as c2:
        raises(psycopg.errors.UndefinedTable, lambda: c2.execute("SELECT * FROM pg3_nope"), "missing table")
        eq(c2.execute("SELECT 41 + 1").fetchone(), (42,), "next statement")
        eq(c2.info.transaction_status, pq.TransactionStatus.IDLE, "autocommit status")


@checks.check("with conn.transaction(): commit is visible from another connection")
def _():
    with conn.transaction():
        conn.execute(f"INSERT INTO {T} (id, name) VALUES (%s, %s)", (20, "tx"))
    with connect(autocommit=True) as c2:
        eq(c2.execute(f"SELECT name FROM {T} WHERE id = 20").fetchall(), [("tx",)], "row seen by another connection")


@checks.check("nested conn.transaction() (SAVEPOINT / RELEASE SAVEPOINT)")
def _():
    with conn.transaction():
        conn.execute(f"INSERT INTO {T} (id, name) VALUES (%s, %s)", (21, "outer"))
        with conn.transaction():
            conn.execute(f"INSERT INTO {T} (id, name) VALUES (%s, %s)", (22, "inner"))
    eq(conn.execute(f"SELECT id FROM {T} WHERE id > 20 ORDER BY id").fetchall(), [(21,), (22,)], "rows of both blocks")
    conn.commit()


@checks.check("drop table")
def _():
    conn.execute(f"DROP TABLE {T}")
    conn.commit()
    raises(psycopg.errors.UndefinedTable, lambda: conn.execute(f"SELECT 1 FROM {T}"), "dropped table is gone")
    conn.rollback()
    conn.close()


checks.finish()
