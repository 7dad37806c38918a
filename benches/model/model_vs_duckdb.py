#!/usr/bin/env python3
"""Full refresh of the default model (sql/*.sql) on the demo data, tessera vs the same SQL
model run by DuckDB on the same files, stage by stage, printed as ratios.

    benches/run_model.sh                                  # 1,000,000 customers (the issue's goal: 60 s)
    benches/run_model.sh --customers 10000                # smoke test
    TESSERA_BIN=target/debug/tessera benches/run_model.sh --customers 10000 --json out.json
Other flags: --seed, --work DIR (default /tmp/modelbench-<customers>-<seed>), --port,
--threads (DuckDB's; default nproc), --sql-dir, --clean.

Steps:
  1. demo data: `tessera demo --customers N --seed S --sql-dir <empty dir>` generates the
     sources once into WORK/tessera/demo (CSV, Parquet, NDJSON; kept and reused while its
     generated.json stamp matches; the generating process is stopped, so neither its time
     nor its memory counts);
  2. tessera: everything in WORK/tessera but demo/ is deleted (a fresh catalog: a full
     refresh, nothing reused), `tessera demo` started again with the empty SQL dir (only
     registers the sources), then every sql/*.sql is run over psycopg in name order,
     statement by statement (split at `;` outside quotes and comments), each timed (wall,
     and the server's CPU from /proc/PID/stat). Peak RSS = the server's VmHWM after the model.
     Untimed: the check figures (CHECKS) and COPY ... TO STDOUT of identifiers,
     fuzzy_edges and identity_map, converted to Parquet. The server is then stopped.
  3. DuckDB (threads = --threads), in subprocesses, each reporting its own peak RSS as
     VmHWM (not ru_maxrss, which on Linux carries over the forking parent's):
     a. identity: benches/identity/label_propagation_duckdb.py (plain variant) over
        identifiers + fuzzy_edges, i.e. tessera's 40_identity_map input;
     b. with tessera's identity_map and identifiers loaded as tables (untimed) and the
        sources as views over the same files (benches/model/duckdb/00_setup.sql), the
        model's own sql/50 and sql/60 into a fresh database file WORK/duckdb.db, as
        `for_duckdb` rewrites them (materialised views become tables; see below);
     c. segments: sql/70, rewritten the same way.
  4. prints seconds per stage, side by side (ratio = tessera / DuckDB: > 1 means tessera is
     slower), stage (b) per materialised view, peak RSS, the two identity maps compared, and
     the checks; exits 1 when a check differs.

Not like for like:
  - identity: tessera's files 10+20+30+40 normalise every source's identifiers, build the
    deterministic map, train and score the probabilistic matcher and resolve with merge
    protection (per-profile caps on customer ids, emails, phones, anonymous ids); DuckDB is
    handed the normalised edges and the probabilistic edges for free and only computes
    connected components, with no caps, so its components can be larger and fewer
    (reported: profiles vs components, records in components of different sizes). The
    later stages both use tessera's identity_map, so that they compare like with like.
  - normalize_email / normalize_phone in DuckDB are macros, simpler (less work) than
    tessera's: email = trimmed and lowercased, NULL for the malformed addresses the demo
    writes (a domain without a dot, doubled dots, ...) but no +tag or gmail-dot removal;
    phone = '+' and the digits (>= 5), no libphonenumber validation, region ignored. So
    the golden email and phone values (and all_emails, all_phones) differ and are not
    checked; whether an email is present does match, and the segments that test it are.
  - stg_web_events leaves out the branch over tessera.events (events collected over
    HTTP; empty in the demo).
  - segments: tessera records who entered and left each segment (tessera.segment_changes);
    DuckDB just writes the tables.
  - tessera's 05 (column comments) and 90 (a view) are timed in tessera's full refresh
    but have no DuckDB counterpart.
  - functions: latest, first_by_priority, collect_distinct, most_frequent are DuckDB
    macros over max/min of a struct key, list(DISTINCT ... ORDER BY ...) FILTER and
    mode(... ORDER BY ...), with tessera's NULL and tie rules (00_setup.sql);
    array_concat of three NULL lists is NULL in tessera, [] in DuckDB: the translation
    keeps tessera's NULL. avg_order_value can differ by 0.01 where a quotient rounds at
    ...5 (the engines round doubles differently); not checked.
"""

import argparse
import glob
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DUCK_SQL = os.path.join(HERE, "duckdb")
sys.path.insert(0, os.path.join(ROOT, "benches", "identity"))
from bench_resolve import proc_cpu_seconds, proc_status  # noqa: E402  (/proc readers)
LABEL_PROPAGATION = os.path.join(ROOT, "benches", "identity", "label_propagation_duckdb.py")
TESSERA = os.environ.get("TESSERA_BIN", os.path.join(ROOT, "target", "release", "tessera"))
PASSWORD = "tessera-bench"
STAGES = {"identity": ("10", "20", "30", "40"), "profiles": ("50", "60"), "segments": ("70",)}
STAGE_TITLES = {"identity": "(a) identity: sql 10-40 | label propagation",
                "profiles": "(b) harmonise + profiles: sql 50+60",
                "segments": "(c) segments: sql 70"}
SEGMENTS = ("segment_high_value", "segment_at_risk", "segment_cart_abandoners",
            "segment_email_reachable", "segment_engaged_anonymous")
# Figures computed by both engines with the same SQL once the model is applied (untimed).
# strict: must be equal (exit 1 otherwise); the others depend on the normalisers.
CHECKS = [
    ("profiles", "SELECT count(*) FROM profiles", True),
    ("sum(orders)", "SELECT sum(orders) FROM profiles", True),
    ("sum(revenue)", "SELECT sum(CAST(revenue AS DECIMAL(18, 2))) FROM profiles", True),
    ("web_sessions rows", "SELECT count(*) FROM web_sessions", True),
    ("consent_state rows", "SELECT count(*) FROM consent_state", True),
    ("identity_lookup rows", "SELECT count(*) FROM identity_lookup", True),
    ("sum(page_views)", "SELECT sum(page_views) FROM profiles", True),
    ("sum(emails_sent)", "SELECT sum(emails_sent) FROM profiles", True),
    ("sum(recency_days)", "SELECT sum(recency_days) FROM profiles", True),
    ("sum(r+f+m scores)", "SELECT sum(r_score + f_score + m_score) FROM profiles", True),
    ("known profiles", "SELECT count(*) FROM profiles WHERE known", True),
    ("profiles with an email", "SELECT count(email) FROM profiles", True),
] + [(s, f"SELECT count(*) FROM {s}", True) for s in SEGMENTS] + [
    ("profiles with a phone", "SELECT count(phone) FROM profiles", False),
    ("distinct golden emails", "SELECT count(DISTINCT email) FROM profiles", False),
]

# Relative tolerances, by check. None: order amounts are decimals (stg_orders.total_eur),
# so sums of them are exact in both engines, whatever the order of the additions.
TOLERANCE = {}


def matches(name, a, b):
    return a == b or (a is not None and b is not None and abs(a - b) <= TOLERANCE.get(name, 0) * abs(a))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def split_sql(text):
    """The statements of a SQL script: split at `;` outside quotes and comments (`--` to the
    end of the line, `/* */`), comments dropped."""
    out, cur, i, n = [], [], 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            j = i + 1
            while j < n and (text[j] != c or text[j + 1:j + 2] == c):
                j += 2 if text[j] == c else 1
            cur.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == ";":
            out.append("".join(cur).strip())
            cur, i = [], i + 1
        else:
            cur.append(c)
            i += 1
    out.append("".join(cur).strip())
    return [s for s in out if s]


HEAD = re.compile(r"\s*(CREATE\s+(?:OR\s+REPLACE\s+)?(MATERIALIZED\s+VIEW|TABLE|VIEW)(?:\s+IF\s+NOT\s+EXISTS)?"
                  r"|REFRESH\s+(MATERIALIZED)\s+VIEW|INSERT\s+INTO|TRUNCATE|COMMENT\s+ON\s+COLUMN)\s+([\w.]+)", re.I)


def describe(stmt):
    """(target relation, 'matview' | 'view' | 'other') of a model statement; a DuckDB
    CREATE TABLE ... AS stands for a materialised view."""
    m = HEAD.match(stmt)
    if not m:
        return " ".join(stmt.split())[:40], "other"
    kind = (m.group(2) or m.group(3) or "").upper()
    if "MATERIALIZED" in kind or (kind == "TABLE" and re.match(r"\s+AS\s", stmt[m.end():], re.I)):
        return m.group(4), "matview"
    return m.group(4), "view" if kind == "VIEW" else "other"


def peak_rss_mb(pid="self"):
    """VmHWM of a process in MB."""
    return round(proc_status(pid, "VmHWM"), 1)


def self_cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------- tessera

class Tessera:
    """`tessera demo` with an empty SQL dir: generates (once) and registers the sources."""

    def __init__(self, data_dir, customers, seed, port, empty_sql):
        self.port = port
        self.tail = deque(maxlen=40)
        cmd = [TESSERA, "demo", "--customers", str(customers), "--seed", str(seed), "--sql-dir", empty_sql,
               "--http", "off", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "TESSERA_ADMIN_PASSWORD": PASSWORD})
        for line in self.proc.stderr:
            self.tail.append(line.rstrip())
            if line.startswith("connect with:"):
                break
        else:
            self.proc.wait()
            raise SystemExit("tessera did not start:\n" + "\n".join(self.tail))
        # Keep reading its log so that a full pipe never blocks the server.
        threading.Thread(target=lambda: [self.tail.append(x.rstrip()) for x in self.proc.stderr],
                         daemon=True).start()

    def connect(self):
        import psycopg
        return psycopg.connect(f"host=127.0.0.1 port={self.port} user=tessera password={PASSWORD} dbname=tessera",
                               autocommit=True)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_tessera_model(t, sql_dir):
    """Every statement of every sql_dir/*.sql, timed; returns the statement records."""
    con, out = t.connect(), []
    for path in sorted(glob.glob(os.path.join(sql_dir, "*.sql"))):
        name = os.path.basename(path)
        for stmt in split_sql(open(path).read()):
            target, kind = describe(stmt)
            c0, t0 = proc_cpu_seconds(t.proc.pid), time.perf_counter()
            try:
                con.execute(stmt)
            except Exception as e:
                raise SystemExit(f"tessera: {name}: {e}\n  statement: {' '.join(stmt.split())[:200]}\n"
                                 "  server log:\n    " + "\n    ".join(list(t.tail)[-10:]))
            out.append({"file": name, "target": target, "kind": kind,
                        "seconds": round(time.perf_counter() - t0, 4),
                        "cpu": round(proc_cpu_seconds(t.proc.pid) - c0, 2)})
        log(f"  tessera {name}: {sum(s['seconds'] for s in out if s['file'] == name):.2f} s")
    con.close()
    return out


def export(t, rels, path):
    """COPY the first of rels that exists TO STDOUT as CSV over the wire, into a Parquet
    file (untimed)."""
    import duckdb
    import psycopg
    csv = path + ".csv"
    for i, rel in enumerate(rels):
        try:
            with t.connect() as con, con.cursor() as cur, open(csv, "wb") as f:
                with cur.copy(f"COPY (SELECT * FROM {rel}) TO STDOUT (FORMAT csv, HEADER)") as cp:
                    for block in cp:
                        f.write(block)
            break
        except psycopg.Error:
            if i == len(rels) - 1:
                raise
    # CSV from COPY: NULL is an unquoted empty field, '' a quoted one.
    duckdb.connect().execute(f"COPY (SELECT * FROM read_csv('{csv}', header = true, all_varchar = true, "
                             f"allow_quoted_nulls = false)) TO '{path}' (FORMAT parquet)")
    os.remove(csv)


def figures(run_query):
    return {name: (float(v) if v is not None and not isinstance(v, int) else v)
            for name, sql, _ in CHECKS for v in [run_query(sql)]}


# ---------------------------------------------------------------- DuckDB (worker process)

def for_duckdb(text):
    """A tessera model file as DuckDB runs it: a materialised view becomes a table
    (CREATE OR REPLACE TABLE, its refresh dropped); array_concat of lists that are all NULL
    stays NULL (DuckDB's list_concat gives []); the branch of a UNION ALL over
    tessera.events (events collected over HTTP, none in the demo) is left out."""
    text = re.sub(r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)(?: WITH \([^)]*\))? AS",
                  r"CREATE OR REPLACE TABLE \1 AS", text)
    text = re.sub(r"(?m)^REFRESH MATERIALIZED VIEW \w+;$", "", text)

    def concat(m):
        lists = [a.strip() for a in m.group(1).split(",")]
        return (f"CASE WHEN {' OR '.join(f'{a} IS NOT NULL' for a in lists)} "
                f"THEN list_sort(list_distinct(list_concat({', '.join(lists)}))) END")
    text = re.sub(r"array_sort\(array_distinct\(array_concat\(([^()]*)\)\)\)", concat, text)
    return re.sub(r"\nUNION ALL\n(?:--[^\n]*\n)*SELECT [^;]*?\btessera\.events\b[^;]*", "", text)


def duckdb_worker(work, demo_dir, threads, sql_dir):
    """Stages (b) and (c) in DuckDB; writes WORK/duckdb.json."""
    import duckdb
    db = os.path.join(work, "duckdb.db")
    for f in (db, db + ".wal"):
        if os.path.exists(f):
            os.remove(f)
    con = duckdb.connect(db)
    con.execute(f"SET threads = {threads}")
    con.execute(open(os.path.join(DUCK_SQL, "00_setup.sql")).read().replace("{demo}", demo_dir))
    t0 = time.perf_counter()
    for rel in ("identity_map", "identifiers"):
        con.execute(f"CREATE TABLE {rel} AS SELECT * FROM read_parquet('{work}/export/{rel}.parquet')")
    con.execute("CHECKPOINT")
    load = time.perf_counter() - t0
    stmts = []
    model = [p for p in sorted(glob.glob(os.path.join(sql_dir, "*.sql")))
             if os.path.basename(p)[:2] in STAGES["profiles"] + STAGES["segments"]]
    for path in model:
        for stmt in split_sql(for_duckdb(open(path).read())):
            target, kind = describe(stmt)
            c0, t0 = self_cpu(), time.perf_counter()
            con.execute(stmt)
            stmts.append({"file": os.path.basename(path), "target": target, "kind": kind,
                          "seconds": round(time.perf_counter() - t0, 4), "cpu": round(self_cpu() - c0, 2)})
    out = {"statements": stmts, "load_seconds": round(load, 3), "peak_rss_mb": peak_rss_mb(),
           "figures": figures(lambda sql: con.execute(sql).fetchone()[0])}
    with open(os.path.join(work, "duckdb.json"), "w") as f:
        json.dump(out, f)


def run_json(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if p.returncode:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def compare_maps(work):
    """tessera's identity_map vs DuckDB's components (untimed)."""
    import duckdb
    con = duckdb.connect()
    return dict(zip(("records", "records_only_in_one", "records_in_different_sized_components",
                     "tessera_profiles", "duckdb_components"), con.execute(f"""
        WITH t AS (SELECT source, record_key, count(*) OVER (PARTITION BY unified_id) AS n
                     FROM read_parquet('{work}/export/identity_map.parquet')),
             d AS (SELECT source, record_key, count(*) OVER (PARTITION BY component) AS n
                     FROM read_parquet('{work}/lp.parquet'))
        SELECT count(*), count(*) FILTER (WHERE t.n IS NULL OR d.n IS NULL),
               count(*) FILTER (WHERE t.n <> d.n),
               (SELECT count(DISTINCT unified_id) FROM read_parquet('{work}/export/identity_map.parquet')),
               (SELECT count(DISTINCT component) FROM read_parquet('{work}/lp.parquet'))
          FROM t FULL JOIN d USING (source, record_key)""").fetchone()))


# ---------------------------------------------------------------- report

def stage_of(file):
    return next((s for s, prefixes in STAGES.items() if file[:2] in prefixes), "other")


def sums(stmts, key=lambda s: stage_of(s["file"])):
    out = {}
    for s in stmts:
        k = key(s)
        w, c = out.get(k, (0.0, 0.0))
        out[k] = (w + s["seconds"], c + s["cpu"])
    return out


def ratio(a, b):
    return f"{a / b:8.2f}" if b else "       -"


def report(r):
    t_st, d_st = r["tessera"]["stages"], r["duckdb"]["stages"]
    print(f"\nfull refresh of the demo model, {r['customers']:,} customers (seed {r['seed']}); "
          f"tessera {r['tessera']['binary']} vs DuckDB {r['duckdb']['version']} ({r['duckdb']['threads']} threads); "
          f"load average at the end {r['loadavg']}")
    print(f"{'stage':44} {'tessera s':>10} {'(CPU)':>7} {'DuckDB s':>10} {'(CPU)':>7} {'ratio':>8}")
    for stage in STAGES:
        (tw, tc), (dw, dc) = t_st[stage], d_st[stage]
        print(f"{STAGE_TITLES[stage]:44} {tw:10.2f} {tc:7.1f} {dw:10.2f} {dc:7.1f} {ratio(tw, dw)}")
    tw, tc = (sum(t_st[s][i] for s in STAGES) for i in (0, 1))
    dw, dc = (sum(d_st[s][i] for s in STAGES) for i in (0, 1))
    print(f"{'total (a+b+c)':44} {tw:10.2f} {tc:7.1f} {dw:10.2f} {dc:7.1f} {ratio(tw, dw)}")
    bw, bdw = (sum(x[s][0] for s in ("profiles", "segments")) for x in (t_st, d_st))
    print(f"{'total (b+c), same identity map':44} {bw:10.2f} {'':7} {bdw:10.2f} {'':7} {ratio(bw, bdw)}")
    print("(a) tessera: " + ", ".join(f"{f} {w:.2f} s" for f, (w, _) in r["tessera"]["files"].items()
                                      if stage_of(f) == "identity"))
    print("    tessera's includes normalisation, probabilistic matching and merge protection; DuckDB is "
          "handed\n    the normalised and the probabilistic edges for free and only finds connected components")
    other = t_st.get("other", (0, 0))[0]
    print(f"tessera full refresh, every file (05 and 90 too: {other:.2f} s): {r['tessera']['full_refresh_seconds']:.2f} s"
          f"   (goal: 60 s at 1,000,000 customers)")
    print(f"\n(b) per materialised view{'':19} {'tessera s':>10} {'(CPU)':>7} {'DuckDB s':>10} {'(CPU)':>7} {'ratio':>8}")
    t_mv, d_mv = r["tessera"]["stage_b"], r["duckdb"]["stage_b"]
    for name in t_mv:
        (tw, tc), (dw, dc) = t_mv[name], d_mv.get(name, (0.0, 0.0))
        print(f"  {name:42} {tw:10.2f} {tc:7.1f} {dw:10.2f} {dc:7.1f} {ratio(tw, dw)}")
    print(f"  (tessera: CREATE MATERIALIZED VIEW + REFRESH; DuckDB: CREATE OR REPLACE TABLE; views: the rest of the stage)")
    d = r["duckdb"]
    print(f"\npeak RSS: tessera {r['tessera']['peak_rss_mb']:,.0f} MB (server VmHWM); DuckDB "
          f"{max(d['label_propagation']['peak_rss_mb'], d['model_peak_rss_mb']):,.0f} MB "
          f"(Python process VmHWM: label propagation {d['label_propagation']['peak_rss_mb']:,.0f}, "
          f"model {d['model_peak_rss_mb']:,.0f})")
    m = r["identity_maps"]
    print(f"identity maps: tessera {m['tessera_profiles']:,} profiles, DuckDB {m['duckdb_components']:,} components "
          f"({d['label_propagation']['iterations']} iterations); {m['records_in_different_sized_components']:,} of "
          f"{m['records']:,} records in components of different sizes, {m['records_only_in_one']:,} in one map only "
          "(tessera's merge protection splits what plain propagation joins)")
    print(f"\nchecks (both on tessera's identity_map){'':6} {'tessera':>14} {'DuckDB':>14}")
    for name, _, strict in CHECKS:
        a, b = r["tessera"]["figures"][name], d["figures"][name]
        status = ("ok" if a == b else f"ok (within {TOLERANCE[name]:g})" if matches(name, a, b)
                  else "MISMATCH" if strict else "differs (normalisers; not checked)")
        print(f"  {name:42} {a!s:>14} {b!s:>14}  {status}")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clear_catalog(data):
    """Delete everything in the tessera data dir `data` but the demo data (demo/)."""
    for e in os.listdir(data):
        if e != "demo":
            p = os.path.join(data, e)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", help="default /tmp/modelbench-<customers>-<seed>")
    ap.add_argument("--port", type=int, default=0, help="tessera's port (default: a free one)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="DuckDB's threads")
    ap.add_argument("--sql-dir", default=os.path.join(ROOT, "sql"))
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--clean", action="store_true", help="delete the work dir (demo data too) at the end")
    ap.add_argument("--duckdb-worker", nargs=2, metavar=("WORK", "DEMO"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.duckdb_worker:
        return duckdb_worker(*args.duckdb_worker, args.threads, args.sql_dir)

    import duckdb
    work = os.path.abspath(args.work or f"/tmp/modelbench-{args.customers}-{args.seed}")
    data, empty_sql, exp = (os.path.join(work, d) for d in ("tessera", "empty-sql", "export"))
    demo = os.path.join(data, "demo")
    for d in (data, empty_sql, exp):
        os.makedirs(d, exist_ok=True)
    port = args.port or free_port()

    def fresh_catalog():
        clear_catalog(data)

    stamp = os.path.join(demo, "generated.json")
    wanted = json.dumps({"customers": args.customers, "seed": args.seed}, separators=(",", ":"))
    if not (os.path.exists(stamp) and open(stamp).read() == wanted):
        log(f"generating the demo data into {demo} ...")
        fresh_catalog()
        t0 = time.perf_counter()
        Tessera(data, args.customers, args.seed, port, empty_sql).stop()
        log(f"  generated in {time.perf_counter() - t0:.1f} s")

    # tessera: a fresh catalog over the generated files, then the model.
    fresh_catalog()
    log(f"tessera ({TESSERA}) on port {port}: applying {args.sql_dir}/*.sql ...")
    t = Tessera(data, args.customers, args.seed, port, empty_sql)
    try:
        stmts = run_tessera_model(t, args.sql_dir)
        peak = peak_rss_mb(t.proc.pid)
        with t.connect() as con:
            t_figures = figures(lambda sql: con.execute(sql).fetchone()[0])
        log("exporting identifiers, fuzzy_edges, identity_map (untimed) ...")
        # identifiers (the stored edges) is identity_edges materialised; a model without it
        # has the view only.
        for rels in (("identifiers", "identity_edges"), ("fuzzy_edges",), ("identity_map",)):
            export(t, rels, os.path.join(exp, f"{rels[0]}.parquet"))
    finally:
        t.stop()
    duckdb.connect().execute(f"COPY (SELECT * FROM read_parquet(['{exp}/identifiers.parquet', "
                             f"'{exp}/fuzzy_edges.parquet'])) TO '{exp}/edges.parquet' (FORMAT parquet)")

    log("DuckDB: label propagation over identifiers + fuzzy_edges ...")
    lp = run_json([sys.executable, LABEL_PROPAGATION, f"{exp}/edges.parquet", "--out", f"{work}/lp.parquet",
                   "--quiet", "--threads", str(args.threads)])
    log("DuckDB: harmonise, profiles, segments ...")
    subprocess.run([sys.executable, os.path.abspath(__file__), "--duckdb-worker", work, demo,
                    "--threads", str(args.threads), "--sql-dir", args.sql_dir], check=True)
    dw = json.load(open(os.path.join(work, "duckdb.json")))

    d_stages = sums(dw["statements"])
    d_stages["identity"] = (lp["seconds"], lp["cpu_seconds"])
    stage_b = lambda ss: sums([s for s in ss if stage_of(s["file"]) == "profiles"],
                              key=lambda s: s["target"] if s["kind"] == "matview" else "views")
    t_b, d_b = stage_b(stmts), stage_b(dw["statements"])
    t_b = {k: t_b[k] for k in sorted(t_b, key=lambda k: k == "views")}  # matviews in model order, views last
    result = {
        "customers": args.customers, "seed": args.seed, "loadavg": [round(x, 2) for x in os.getloadavg()],
        "tessera": {"binary": TESSERA, "stages": sums(stmts), "files": sums(stmts, key=lambda s: s["file"]),
                    "full_refresh_seconds": round(sum(s["seconds"] for s in stmts), 3),
                    "stage_b": t_b, "peak_rss_mb": peak, "figures": t_figures, "statements": stmts},
        "duckdb": {"version": duckdb.__version__, "threads": args.threads, "stages": d_stages, "stage_b": d_b,
                   "label_propagation": lp, "model_peak_rss_mb": dw["peak_rss_mb"],
                   "identity_tables_load_seconds": dw["load_seconds"], "figures": dw["figures"],
                   "statements": dw["statements"]},
        "identity_maps": compare_maps(work),
    }
    report(result)
    bad = [n for n, _, strict in CHECKS if strict and not matches(n, result["tessera"]["figures"][n], dw["figures"][n])]
    result["mismatches"] = bad
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.clean:
        shutil.rmtree(work, ignore_errors=True)
    else:  # keep the demo data for the next run
        fresh_catalog()
        for p in [exp] + [os.path.join(work, f) for f in ("lp.parquet", "duckdb.db", "duckdb.json")]:
            shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.path.exists(p) and os.remove(p)
    if bad:
        print(f"\nFAILED: tessera and DuckDB differ on {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
