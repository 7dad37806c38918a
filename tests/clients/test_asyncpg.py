#!/usr/bin/env python3
"""asyncpg against a running tessera server (TESSERA_PORT).

asyncpg speaks only the extended protocol: every query is a named prepared statement
(Parse with no parameter types, then Describe statement, so the server must infer the
$n types and report them in ParameterDescription), results are read in binary format,
executemany pipelines Bind/Execute, copy_records_to_table sends COPY ... (FORMAT binary),
copy_to_table / copy_from_query use text formats. Tables: apg_*.
"""
import asyncio
import datetime as dt
import decimal
import io

import asyncpg

from clientcheck import HOST, PASSWORD, PORT, Checks, araises, eq, true

T = "apg_items"
ROWS = [
    (1, "alice", 1.5, True, dt.datetime(2024, 1, 2, 3, 4, 5)),
    (2, "bob", -2.25, False, dt.datetime(2024, 2, 3, 4, 5, 6, 789000)),
    (3, "carol", 0.0, True, dt.datetime(1999, 12, 31, 23, 59, 59)),
    (4, None, None, None, None),
]

loop = asyncio.new_event_loop()
conn = None


async def connect():
    return await asyncpg.connect(host=HOST, port=PORT, user="tessera", password=PASSWORD, database="tessera", ssl=False, timeout=10)


async def reset():
    """Leave no transaction open after a failed check (only with TESSERA_KEEP_GOING=1)."""
    global conn
    if conn is not None and not conn.is_closed() and conn.is_in_transaction():
        try:
            await conn.execute("ROLLBACK")
        except asyncpg.PostgresError as e:
            print(f"note: rollback after the failed check raised {type(e).__name__}: {e}; reconnecting")
            await conn.close()
            conn = await connect()


checks = Checks("asyncpg", before_each=reset)


def rows(records):
    return [tuple(r) for r in records]


@checks.acheck(loop, "connect and read server version")
async def _():
    global conn
    conn = await connect()
    v = conn.get_server_version()
    true(v.major >= 9, f"server version {v}")
    s = await conn.fetchval("SELECT version()")
    true(s.startswith("PostgreSQL "), f"version() = {s!r}")


@checks.acheck(loop, "create table (execute, simple protocol)")
async def _():
    await conn.execute(f"DROP TABLE IF EXISTS {T}")
    status = await conn.execute(f"CREATE TABLE {T} (id INT, name TEXT, score DOUBLE PRECISION, active BOOLEAN, created TIMESTAMP)")
    eq(status, "CREATE TABLE", "command status")


@checks.acheck(loop, "execute INSERT with $n parameters")
async def _():
    status = await conn.execute(f"INSERT INTO {T} (id, name, score, active, created) VALUES ($1, $2, $3, $4, $5)", *ROWS[0])
    eq(status, "INSERT 0 1", "command status")


@checks.acheck(loop, "executemany INSERT")
async def _():
    await conn.executemany(f"INSERT INTO {T} (id, name, score, active, created) VALUES ($1, $2, $3, $4, $5)", ROWS[1:])
    eq(await conn.fetchval(f"SELECT count(*) FROM {T}"), len(ROWS), "row count")


@checks.acheck(loop, "fetch with $1 params: int, text, float, bool, timestamp values")
async def _():
    got = await conn.fetch(f"SELECT id, name, score, active, created FROM {T} WHERE id >= $1 ORDER BY id", 1)
    eq(rows(got), ROWS, "rows")
    eq(list(got[0].keys()), ["id", "name", "score", "active", "created"], "record keys")
    eq(got[1]["name"], "bob", "access by name")
    eq(rows(await conn.fetch(f"SELECT id FROM {T} WHERE name = $1", "carol")), [(3,)], "text param")
    eq(rows(await conn.fetch(f"SELECT id FROM {T} WHERE active = $1 ORDER BY id", True)), [(1,), (3,)], "bool param")
    eq(rows(await conn.fetch(f"SELECT id FROM {T} WHERE score < $1", 0.0)), [(2,)], "float param")
    eq(rows(await conn.fetch(f"SELECT id FROM {T} WHERE created > $1 ORDER BY id", dt.datetime(2024, 1, 31))), [(2,)], "timestamp param")
    eq(tuple(await conn.fetchrow(f"SELECT name, score FROM {T} WHERE id = $1 AND name = $2", 1, "alice")), ("alice", 1.5), "two params")


@checks.acheck(loop, "prepared statement reused 10 times")
async def _():
    stmt = await conn.prepare(f"SELECT name FROM {T} WHERE id = $1")
    eq([str(t) for t in stmt.get_parameters()], ["Type(oid=23, name='int4', kind='scalar', schema='pg_catalog')"], "parameter types")
    eq([a.name for a in stmt.get_attributes()], ["name"], "attributes")
    for i in range(10):
        eq(await stmt.fetchval(1 + i % 3), ROWS[i % 3][1], f"execution {i + 1}")
    eq(rows(await stmt.fetch(4)), [(None,)], "NULL result")


@checks.acheck(loop, "scalar type round trips through $n parameters (binary)")
async def _():
    cases = [
        ("int2", 12), ("int4", -2_000_000_000), ("int8", 2**62), ("float4", 1.5), ("float8", 3.141592653589793),
        ("text", "héllo ☃"), ("varchar", "v"), ("bool", False), ("numeric", decimal.Decimal("1234.5678")),
        ("date", dt.date(2024, 2, 29)), ("timestamp", dt.datetime(2024, 2, 29, 12, 30, 45, 123456)),
        ("timestamptz", dt.datetime(2024, 2, 29, 12, 30, 45, tzinfo=dt.timezone.utc)),
        ("bytea", b"\x00\x01\xff"), ("int4", None), ("text", None),
    ]
    bad = []
    for typ, value in cases:
        try:
            got = await conn.fetchval(f"SELECT $1::{typ}", value)
        except Exception as e:
            bad.append(f"{typ} {value!r}: {type(e).__name__}: {e}")
            continue
        if got != value or type(got) is not type(value):
            bad.append(f"{typ}: sent {value!r}, got {got!r}")
    eq(bad, [], "type round trips that failed")


@checks.acheck(loop, "array result and parameter (asyncpg introspects array types via pg_type)")
async def _():
    eq(await conn.fetchval("SELECT ARRAY[1, 2, 3]::int4[]"), [1, 2, 3], "int4[]")
    eq(await conn.fetchval("SELECT $1::text[]", ["a", None, "c"]), ["a", None, "c"], "text[] param")
    eq(await conn.fetchval("SELECT $1::int8[]", [1, None, 3]), [1, None, 3], "int8[] param")
    eq(await conn.fetchval("SELECT ARRAY[1.5, 2]::float8[]"), [1.5, 2.0], "float8[]")
    eq(await conn.fetchval("SELECT ARRAY[true, false, NULL]"), [True, False, None], "bool[] with a NULL")
    eq(await conn.fetchval("SELECT ARRAY[DATE '2024-01-02']"), [dt.date(2024, 1, 2)], "date[]")
    # The catalog answers oid[] and type names as PostgreSQL does.
    eq(await conn.fetchval("SELECT ARRAY[23, 25]::oid[]"), [23, 25], "oid[]")
    eq(await conn.fetchval("SELECT typelem::regtype::text FROM pg_type WHERE typname = '_int4'"), "integer", "regtype as text")


@checks.acheck(loop, "jsonb result")
async def _():
    eq(await conn.fetchval("SELECT '{\"a\": 1}'::jsonb"), '{"a": 1}', "jsonb")


@checks.acheck(loop, "copy_to_table from a csv stream (COPY ... FROM STDIN (FORMAT csv))")
async def _():
    data = io.BytesIO(b"10,copy-a,10.5,true,2020-01-01 00:00:00\n11,\"copy, b\",,false,\n")
    status = await conn.copy_to_table(T, source=data, columns=["id", "name", "score", "active", "created"], format="csv")
    eq(status, "COPY 2", "command status")
    got = await conn.fetch(f"SELECT id, name, score, active, created FROM {T} WHERE id >= 10 ORDER BY id")
    eq(rows(got), [(10, "copy-a", 10.5, True, dt.datetime(2020, 1, 1)), (11, "copy, b", None, False, None)], "copied rows")
    await conn.execute(f"DELETE FROM {T} WHERE id >= 10")


@checks.acheck(loop, "copy_records_to_table (COPY ... FROM STDIN (FORMAT binary))")
async def _():
    recs = [(20, "rec-a", 2.5, True, dt.datetime(2021, 3, 4, 5, 6, 7)), (21, None, None, None, None)]
    status = await conn.copy_records_to_table(T, records=recs, columns=["id", "name", "score", "active", "created"])
    eq(status, "COPY 2", "command status")
    got = await conn.fetch(f"SELECT id, name, score, active, created FROM {T} WHERE id >= 20 ORDER BY id")
    eq(rows(got), recs, "copied rows")
    await conn.execute(f"DELETE FROM {T} WHERE id >= 20")


@checks.acheck(loop, "copy_from_query to csv (COPY (query) TO STDOUT (FORMAT csv, HEADER))")
async def _():
    out = io.BytesIO()
    status = await conn.copy_from_query(f"SELECT id, name, active FROM {T} WHERE id <= 2 ORDER BY id", output=out, format="csv", header=True)
    eq(status, "COPY 2", "command status")
    eq(out.getvalue(), b"id,name,active\n1,alice,t\n2,bob,f\n", "csv output")


@checks.acheck(loop, "copy_from_query with $1 arguments (asyncpg inlines them with quote_literal)")
async def _():
    out = io.BytesIO()
    status = await conn.copy_from_query(f"SELECT id, name FROM {T} WHERE id <= $1 AND name <> $2 ORDER BY id", 3, "bob", output=out)
    eq(status, "COPY 2", "command status")
    eq(out.getvalue(), b"1\talice\n3\tcarol\n", "text output")


@checks.acheck(loop, "copy_from_table (COPY table TO STDOUT, text)")
async def _():
    out = io.BytesIO()
    status = await conn.copy_from_table(T, columns=["id", "name"], output=out)
    eq(status, f"COPY {len(ROWS)}", "command status")
    eq(sorted(out.getvalue().decode().splitlines()), ["1\talice", "2\tbob", "3\tcarol", "4\t\\N"], "text output")


@checks.acheck(loop, "UPDATE/DELETE status with params")
async def _():
    eq(await conn.execute(f"UPDATE {T} SET score = score + $1 WHERE id <= $2", 1.0, 2), "UPDATE 2", "UPDATE status")
    eq(await conn.execute(f"DELETE FROM {T} WHERE id = $1", 3), "DELETE 1", "DELETE status")
    eq(rows(await conn.fetch(f"SELECT id, score FROM {T} WHERE score IS NOT NULL ORDER BY id")), [(1, 2.5), (2, -1.25)], "rows after")


@checks.acheck(loop, "cursor in a transaction (conn.cursor with prefetch)")
async def _():
    async with conn.transaction():
        got = [r["id"] async for r in conn.cursor(f"SELECT id FROM {T} WHERE id >= $1 ORDER BY id", 1, prefetch=1)]
    eq(got, [1, 2, 4], "ids")


@checks.acheck(loop, "undefined table raises UndefinedTableError; connection usable after")
async def _():
    e = await araises(asyncpg.exceptions.UndefinedTableError, conn.fetch("SELECT * FROM apg_nope"), "missing table")
    eq(e.sqlstate, "42P01", "sqlstate")
    await araises(asyncpg.exceptions.UndefinedTableError, conn.fetch("SELECT * FROM apg_nope WHERE x = $1", 1), "missing table, with params")
    eq(await conn.fetchval("SELECT 1 + 1"), 2, "next query")
    tr = conn.transaction()
    await tr.start()
    await araises(asyncpg.exceptions.UndefinedTableError, conn.fetch("SELECT * FROM apg_nope"), "missing table in a transaction")
    await tr.rollback()
    eq(await conn.fetchval(f"SELECT count(*) FROM {T}"), 3, "query after rollback")


@checks.acheck(loop, "drop table")
async def _():
    eq(await conn.execute(f"DROP TABLE {T}"), "DROP TABLE", "command status")
    await conn.close()


checks.finish()
