#!/usr/bin/env python3
"""Identity stitching as iterative SQL label propagation in DuckDB (the baseline for
resolve_identities).

    python benches/identity/label_propagation_duckdb.py EDGES.parquet [--truth T.parquet] [--out OUT.parquet]

Input: Parquet rows (source, record_key, id_type, id_value). Output: one row per distinct
(source, record_key) with `component` = the smallest record number reachable through shared
(id_type, id_value): connected components over records and identifiers, with no per-type caps.
Junk values are dropped first, with the rule resolve_identities applies by default
(src/identity/rules.rs: placeholders such as '', 'unknown', 'n/a' for any type; phones
with < 5 digits or all one digit / an ascending run; test, example and no-reply emails).

The SQL, as a reasonable engineer would write it (all of it timed, Parquet in, table out):
  1. number records: rec(rid, source, record_key) from DISTINCT (source, record_key);
  2. edges ev(rid, vid) for non-junk values, keeping only values seen on >= 2 records
     (a value on one record links nothing; this prunes ~1/3 of the rows);
  3. lbl(rid, l) = rid for records in ev; repeat: every value takes the min label of its
     records, every record the min label of its values; stop when no label changed;
     (--frontier: a round only propagates the labels that changed in the round before);
  4. result(source, record_key, component) = rec LEFT JOIN lbl (records without shared
     values are their own component).
Prints one JSON line: seconds (wall, total and per phase; and CPU seconds, user + system,
which other load on the machine inflates less), iterations, records, components, peak
RSS of this process (VmHWM). --truth checks the partition against gen_edges' truth
(untimed). DuckDB uses all cores (threads = nproc) and its default memory limit.
"""

import argparse
import json
import os
import resource
import sys
import time

import duckdb

# The default blocked values of resolve_identities (src/identity/rules.rs, Rules::is_blocked
# without custom patterns), in SQL: placeholders for any type, fake phones (fewer than 5
# digits, or after skipping up to 3 leading digits all one digit or an ascending run), and
# fake emails (no '@', empty local part, test / example / no-reply mailboxes).
PLACEHOLDERS = ("null", "none", "nil", "unknown", "anonymous", "undefined", "n/a", "na", "-", "--",
                "-1", "0", "?", "test", "guest")
FAKE_EMAIL_DOMAINS = ("test.com", "example.com", "example.org", "example.net", "test.test",
                      "email.com", "none.com", "noemail.com")
FAKE_EMAIL_LOCALS = ("test", "noreply", "no-reply", "donotreply", "none", "null", "nobody", "asdf",
                     "unknown", "noemail")


def sql_list(xs):
    return ", ".join("'" + x.replace("'", "''") + "'" for x in xs)


def junk_predicate():
    """SQL over p(t = lower(trim(id_type)), id_value, lv = lower(trim(id_value)), d = phone digits)."""
    fake_phone = " OR ".join(
        f"(length(d) - {k} >= 5 AND (replace(d[{k + 1}:], d[{k + 1}], '') = '' "
        f"OR contains('0123456789', d[{k + 1}:])))" for k in range(4))
    domain = "reverse(split_part(reverse(lv), '@', 1))"
    local = f"left(lv, length(lv) - length({domain}) - 1)"
    return f"""(id_value IS NULL OR lv = ''
        OR (length(lv) <= 12 AND lv IN ({sql_list(PLACEHOLDERS)}))
        OR CASE t
            WHEN 'phone' THEN length(d) < 5 OR {fake_phone}
            WHEN 'email' THEN NOT contains(lv, '@') OR {domain} IN ({sql_list(FAKE_EMAIL_DOMAINS)})
                              OR {local} IN ({sql_list(FAKE_EMAIL_LOCALS)}, '')
            ELSE false END)"""


def peak_rss_mb():
    """VmHWM of this process (not ru_maxrss: Linux carries that over from a forking parent)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run(con, sql):
    return con.execute(sql)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("edges")
    ap.add_argument("--truth", help="gen_edges truth Parquet: check the partition (untimed)")
    ap.add_argument("--out", help="write (source, record_key, component) here (untimed)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--max-iterations", type=int, default=1000)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--frontier", action="store_true",
                    help="semi-naive variant: each round propagates only the labels that changed in "
                         "the previous one (same result, cheaper late rounds)")
    args = ap.parse_args()

    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {args.threads}")
    con.execute("SET preserve_insertion_order = false")
    src = args.edges.replace("'", "''")
    phases = {}

    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    run(con, f"""CREATE TABLE rec AS
        SELECT (row_number() OVER ())::BIGINT - 1 AS rid, source, record_key
        FROM (SELECT DISTINCT source, record_key FROM read_parquet('{src}'))""")
    run(con, f"""CREATE TABLE ev AS
        WITH p AS (
            SELECT source, record_key, t, id_value, lower(trim(id_value)) AS lv,
                   CASE WHEN t = 'phone' THEN regexp_replace(id_value, '[^0-9]', '', 'g') END AS d
            FROM (SELECT *, lower(trim(id_type)) AS t FROM read_parquet('{src}'))),
        e AS (
            SELECT DISTINCT r.rid, p.t AS id_type, p.id_value
            FROM p JOIN rec r USING (source, record_key)
            WHERE NOT {junk_predicate()}),
        v AS (
            SELECT id_type, id_value, (row_number() OVER ())::BIGINT AS vid
            FROM e GROUP BY id_type, id_value HAVING count(*) > 1)
        SELECT e.rid, v.vid FROM e JOIN v USING (id_type, id_value)""")
    run(con, "CREATE TABLE lbl AS SELECT DISTINCT rid, rid AS l FROM ev")
    t1 = time.perf_counter()
    phases["prepare"] = t1 - t0

    iterations, per_iter = 0, []
    if args.frontier:
        run(con, "CREATE TABLE delta AS SELECT * FROM lbl")
    while iterations < args.max_iterations and args.frontier:
        ti, ci = time.perf_counter(), cpu_seconds()
        run(con, """CREATE OR REPLACE TABLE nd AS
            WITH vl AS (SELECT ev.vid, min(d.l) AS l FROM ev JOIN delta d USING (rid) GROUP BY ev.vid),
                 rl AS (SELECT ev.rid, min(vl.l) AS l FROM ev JOIN vl USING (vid) GROUP BY ev.rid)
            SELECT rl.rid, rl.l FROM rl JOIN lbl USING (rid) WHERE rl.l < lbl.l""")
        changed = con.execute("SELECT count(*) FROM nd").fetchone()[0]
        if changed:
            run(con, "UPDATE lbl SET l = nd.l FROM nd WHERE lbl.rid = nd.rid")
        run(con, "DROP TABLE delta")
        run(con, "ALTER TABLE nd RENAME TO delta")
        iterations += 1
        per_iter.append((round(time.perf_counter() - ti, 3), round(cpu_seconds() - ci, 2), changed))
        if not args.quiet:
            print(f"  iteration {iterations}: {changed:,} labels changed "
                  f"({per_iter[-1][0]:.2f}s, CPU {per_iter[-1][1]:.2f}s)", file=sys.stderr, flush=True)
        if changed == 0:
            break
    while iterations < args.max_iterations and not args.frontier:
        ti, ci = time.perf_counter(), cpu_seconds()
        run(con, """CREATE OR REPLACE TABLE nl AS
            WITH vl AS (SELECT ev.vid, min(lbl.l) AS l FROM ev JOIN lbl USING (rid) GROUP BY ev.vid),
                 rl AS (SELECT ev.rid, min(vl.l) AS l FROM ev JOIN vl USING (vid) GROUP BY ev.rid)
            SELECT rl.rid, least(rl.l, lbl.l) AS l, rl.l < lbl.l AS changed
            FROM rl JOIN lbl USING (rid)""")
        changed = con.execute("SELECT count(*) FILTER (WHERE changed) FROM nl").fetchone()[0]
        run(con, "DROP TABLE lbl")
        run(con, "ALTER TABLE nl RENAME TO lbl")
        iterations += 1
        per_iter.append((round(time.perf_counter() - ti, 3), round(cpu_seconds() - ci, 2), changed))
        if not args.quiet:
            print(f"  iteration {iterations}: {changed:,} labels changed "
                  f"({per_iter[-1][0]:.2f}s, CPU {per_iter[-1][1]:.2f}s)", file=sys.stderr, flush=True)
        if changed == 0:
            break
    t2 = time.perf_counter()
    phases["iterate"] = t2 - t1

    run(con, """CREATE TABLE result AS
        SELECT rec.source, rec.record_key, coalesce(lbl.l, rec.rid) AS component
        FROM rec LEFT JOIN lbl USING (rid)""")
    records, components = con.execute(
        "SELECT count(*), count(DISTINCT component) FROM result").fetchone()
    t3 = time.perf_counter()
    cpu = cpu_seconds() - cpu0
    phases["finish"] = t3 - t2

    out = {
        "engine": f"duckdb {duckdb.__version__}",
        "variant": "frontier" if args.frontier else "plain",
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "threads": args.threads,
        "seconds": round(t3 - t0, 3),
        "cpu_seconds": round(cpu, 2),
        "phases": {k: round(v, 3) for k, v in phases.items()},
        "iterations": iterations,
        "per_iteration": per_iter,
        "edge_rows_after_pruning": con.execute("SELECT count(*) FROM ev").fetchone()[0],
        "records": records,
        "components": components,
        "largest_component": con.execute(
            "SELECT max(c) FROM (SELECT count(*) c FROM result GROUP BY component)").fetchone()[0],
        "peak_rss_mb": peak_rss_mb(),
    }
    if args.truth:
        t = args.truth.replace("'", "''")
        a, b, ab = con.execute(f"""
            SELECT count(DISTINCT r.component), count(DISTINCT t.component),
                   count(DISTINCT (r.component, t.component))
            FROM result r JOIN read_parquet('{t}') t USING (source, record_key)""").fetchone()
        out["truth_match"] = a == b == ab
    if args.out:
        con.execute(f"COPY result TO '{args.out}' (FORMAT parquet)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
