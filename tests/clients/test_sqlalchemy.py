#!/usr/bin/env python3
"""SQLAlchemy 2 (with psycopg2 and with psycopg 3) and pandas against a running tessera
server (TESSERA_PORT).

SQLAlchemy runs its dialect initialisation queries on first connect, reflects through
pg_catalog (inspect(engine)), and pandas to_sql/read_sql go through it. Every check runs
once per driver. Tables: sa2_* (psycopg2) and sa3_* (psycopg).
"""
import datetime as dt
from urllib.parse import quote

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import types as sat

from clientcheck import HOST, PASSWORD, PORT, Checks, eq, fail, true

checks = Checks("sqlalchemy")

DRIVERS = [("psycopg2", "sa2"), ("psycopg", "sa3")]

for driver, P in DRIVERS:
    url = f"postgresql+{driver}://tessera:{quote(PASSWORD, safe='')}@{HOST}:{PORT}/tessera?sslmode=disable"
    state = {}

    @checks.check(f"[{driver}] create_engine, connect, SELECT")
    def _(url=url, state=state):
        engine = sa.create_engine(url, pool_pre_ping=True)
        state["engine"] = engine
        with engine.connect() as c:
            eq(c.execute(sa.text("SELECT 1 AS one")).scalar_one(), 1, "SELECT 1")
            v = c.execute(sa.text("SELECT version()")).scalar_one()
            true(v.startswith("PostgreSQL "), f"version() = {v!r}")
        true(engine.dialect.server_version_info >= (9,), f"server_version_info {engine.dialect.server_version_info}")

    @checks.check(f"[{driver}] create tables and a view with text() DDL")
    def _(P=P, state=state):
        with state["engine"].begin() as c:
            c.execute(sa.text(f"DROP VIEW IF EXISTS {P}_view"))
            c.execute(sa.text(f"DROP TABLE IF EXISTS {P}_pk"))
            c.execute(sa.text(f"DROP TABLE IF EXISTS {P}_df"))
            c.execute(sa.text(f"DROP TABLE IF EXISTS {P}_core"))
            c.execute(sa.text(
                f"CREATE TABLE {P}_pk (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score DOUBLE PRECISION, "
                f"active BOOLEAN, created TIMESTAMP, amount NUMERIC(10, 2), big BIGINT, label VARCHAR(20))"))
            c.execute(sa.text(f"INSERT INTO {P}_pk (id, name, score, active) VALUES (1, 'a', 1.5, true), (2, 'b', 2.5, false)"))
            c.execute(sa.text(f"CREATE VIEW {P}_view AS SELECT id, name FROM {P}_pk WHERE active"))

    @checks.check(f"[{driver}] text() query with bound parameters")
    def _(P=P, state=state):
        with state["engine"].connect() as c:
            got = c.execute(sa.text(f"SELECT id, name FROM {P}_pk WHERE score > :s ORDER BY id"), {"s": 2.0}).all()
            eq([tuple(r) for r in got], [(2, "b")], "rows")
            eq(c.execute(sa.text(f"SELECT name FROM {P}_view")).scalars().all(), ["a"], "view rows")

    @checks.check(f"[{driver}] inspect: get_schema_names")
    def _(state=state):
        names = sa.inspect(state["engine"]).get_schema_names()
        true("public" in names, f"'public' not in {names}")

    @checks.check(f"[{driver}] inspect: get_table_names / get_view_names / has_table")
    def _(P=P, state=state):
        insp = sa.inspect(state["engine"])
        tables = insp.get_table_names()
        true(f"{P}_pk" in tables, f"{P}_pk not in get_table_names() = {tables}")
        true(f"{P}_view" not in tables, f"view {P}_view listed as a table: {tables}")
        views = insp.get_view_names()
        true(f"{P}_view" in views, f"{P}_view not in get_view_names() = {views}")
        true(f"{P}_pk" not in views, f"table listed as a view: {views}")
        true(insp.has_table(f"{P}_pk"), "has_table(existing) is False")
        true(not insp.has_table(f"{P}_missing"), "has_table(missing) is True")

    @checks.check(f"[{driver}] inspect: get_view_definition")
    def _(P=P, state=state):
        d = sa.inspect(state["engine"]).get_view_definition(f"{P}_view")
        true(d is not None and "select" in d.lower() and f"{P}_pk" in d, f"get_view_definition = {d!r}")

    @checks.check(f"[{driver}] inspect: get_columns names, types, nullability")
    def _(P=P, state=state):
        cols = sa.inspect(state["engine"]).get_columns(f"{P}_pk")
        eq([c["name"] for c in cols], ["id", "name", "score", "active", "created", "amount", "big", "label"], "column names")
        want = [sat.INTEGER, sat.TEXT, sat.DOUBLE_PRECISION, sat.BOOLEAN, sat.TIMESTAMP, sat.NUMERIC, sat.BIGINT, sat.VARCHAR]
        bad = [f"{c['name']}: {c['type']!r} is not {w.__name__}" for c, w in zip(cols, want) if not isinstance(c["type"], w)]
        eq(bad, [], "column types")
        eq((cols[5]["type"].precision, cols[5]["type"].scale), (10, 2), "NUMERIC(10, 2) precision/scale")
        eq(cols[7]["type"].length, 20, "VARCHAR(20) length")
        eq([c["nullable"] for c in cols[:3]], [False, False, True], "nullable of id, name, score")
        vcols = sa.inspect(state["engine"]).get_columns(f"{P}_view")
        eq([c["name"] for c in vcols], ["id", "name"], "view column names")

    @checks.check(f"[{driver}] inspect: get_pk_constraint")
    def _(P=P, state=state):
        pk = sa.inspect(state["engine"]).get_pk_constraint(f"{P}_pk")
        eq(pk["constrained_columns"], ["id"], "primary key columns")

    @checks.check(f"[{driver}] Core Table: metadata.create_all, insert, select, reflect")
    def _(P=P, state=state):
        engine = state["engine"]
        md = sa.MetaData()
        t = sa.Table(f"{P}_core", md,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("name", sa.String(50)),
                     sa.Column("at", sa.DateTime))
        md.create_all(engine)
        with engine.begin() as c:
            c.execute(t.insert(), [{"id": 1, "name": "x", "at": dt.datetime(2024, 1, 1)}, {"id": 2, "name": "y", "at": None}])
        with engine.connect() as c:
            got = c.execute(sa.select(t.c.id, t.c.name, t.c.at).where(t.c.id >= 1).order_by(t.c.id)).all()
        eq([tuple(r) for r in got], [(1, "x", dt.datetime(2024, 1, 1)), (2, "y", None)], "rows")
        md2 = sa.MetaData()
        r = sa.Table(f"{P}_core", md2, autoload_with=engine)
        eq([c.name for c in r.columns], ["id", "name", "at"], "reflected columns")
        eq([c.name for c in r.primary_key.columns], ["id"], "reflected primary key")
        md.drop_all(engine)
        true(not sa.inspect(engine).has_table(f"{P}_core"), "table still there after drop_all")

    @checks.check(f"[{driver}] pandas to_sql(if_exists='replace', index=False) then read_sql")
    def _(P=P, state=state):
        engine = state["engine"]
        df = pd.DataFrame({
            "id": [1, 2, 3],
            "name": ["a", "b", None],
            "score": [1.5, -2.0, 3.25],
            "flag": [True, False, True],
            "at": pd.to_datetime(["2024-01-01 10:00:00", "2024-01-02 11:30:00", "2024-01-03 00:00:01"]),
        })
        n = df.to_sql(f"{P}_df", engine, if_exists="replace", index=False)
        # pandas returns the drivers' summed rowcount: 3 with psycopg2, -1 with psycopg's executemany.
        true(n in (3, -1, None), f"to_sql returned {n!r}")
        df.to_sql(f"{P}_df", engine, if_exists="replace", index=False)  # replacing an existing table
        got = pd.read_sql(f"SELECT * FROM {P}_df ORDER BY id", engine)
        eq(len(got), 3, "row count after replace")
        eq(list(got.columns), ["id", "name", "score", "flag", "at"], "columns")
        eq(got["id"].tolist(), [1, 2, 3], "id values")
        eq(got["name"].tolist(), ["a", "b", None], "name values")
        eq(got["score"].tolist(), [1.5, -2.0, 3.25], "score values")
        eq(got["flag"].tolist(), [True, False, True], "flag values")
        eq([str(x) for x in got["at"]], ["2024-01-01 10:00:00", "2024-01-02 11:30:00", "2024-01-03 00:00:01"], "timestamp values")

    @checks.check(f"[{driver}] pandas to_sql(if_exists='append') then read_sql / read_sql_table")
    def _(P=P, state=state):
        engine = state["engine"]
        more = pd.DataFrame({"id": [4, 5], "name": ["d", "e"], "score": [4.0, 5.0], "flag": [False, False],
                             "at": pd.to_datetime(["2024-02-01", "2024-02-02"])})
        more.to_sql(f"{P}_df", engine, if_exists="append", index=False)
        got = pd.read_sql(sa.text(f"SELECT id, name FROM {P}_df WHERE score > :s ORDER BY id"), engine, params={"s": 0})
        eq(got["id"].tolist(), [1, 3, 4, 5], "ids with score > 0")
        eq(int(pd.read_sql(f"SELECT count(*) AS n FROM {P}_df", engine)["n"][0]), 5, "row count after append")
        full = pd.read_sql_table(f"{P}_df", engine)
        eq(sorted(full["id"].tolist()), [1, 2, 3, 4, 5], "read_sql_table ids")
        eq(list(full.columns), ["id", "name", "score", "flag", "at"], "read_sql_table columns")

    @checks.check(f"[{driver}] errors: ProgrammingError for a missing table, engine still usable")
    def _(state=state):
        engine = state["engine"]
        try:
            with engine.connect() as c:
                c.execute(sa.text("SELECT * FROM sa_nope"))
        except sa.exc.ProgrammingError as e:
            code = getattr(e.orig, "pgcode", None) or getattr(e.orig, "sqlstate", None)
            eq(code, "42P01", "SQLSTATE")
        else:
            fail("no error for a missing table")
        with engine.connect() as c:
            eq(c.execute(sa.text("SELECT 2")).scalar_one(), 2, "next query")

    @checks.check(f"[{driver}] drop view and tables")
    def _(P=P, state=state):
        engine = state["engine"]
        with engine.begin() as c:
            c.execute(sa.text(f"DROP VIEW {P}_view"))
            c.execute(sa.text(f"DROP TABLE {P}_pk"))
            c.execute(sa.text(f"DROP TABLE {P}_df"))
            c.execute(sa.text(f"DROP TABLE IF EXISTS {P}_core"))  # left behind only if its check failed
        insp = sa.inspect(engine)
        left = [t for t in insp.get_table_names() + insp.get_view_names() if t.startswith(P + "_")]
        eq(left, [], "relations left")
        engine.dispose()

checks.finish()
