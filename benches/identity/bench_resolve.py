#!/usr/bin/env python3
"""resolve_identities (tessera, over the Postgres wire) vs iterative SQL label propagation
(DuckDB), on the same Parquet edges, in one run.

    benches/identity/run_resolve.sh [--records N] [...]     # sets up .venv, then runs this

Steps:
  1. edges: `gen_edges.py --records N --seed S` into WORK (reused when already there, with
     its truth file), or --edges FILE;
  2. tessera: a fresh `tessera serve` (binary from $TESSERA_BIN, default
     target/release/tessera) on an empty data dir; over psycopg:
        CREATE EXTERNAL TABLE edges STORED AS PARQUET LOCATION '<file>'
        SELECT count(*), count(DISTINCT unified_id) FROM resolve_identities('edges')
            (timed, REPEAT times; run 1 is cold, later runs find the ids the earlier ones
             persisted under the data dir and keep them: warm)
        CREATE TABLE idmap AS SELECT * FROM resolve_identities('edges')     (timed, warm)
        and the count again with a rules relation lifting every per-type cap:
        no_limits(id_type, priority, max_per_profile) = one row (type, NULL, 0) for each of
        customer_id, email, phone, anonymous_id (an empty rules table keeps the defaults);
     peak RSS = VmHWM of the server process from /proc/<pid>/status after all queries;
  3. DuckDB: label_propagation_duckdb.py in a subprocess (its own ru_maxrss);
  4. prints rows, seconds, peak MB, component counts and the ratio DuckDB / tessera, with the
     gate (tessera <= 10 s and <= 4096 MB at 10M records, >= 20x faster than DuckDB).
Component counts are reported side by side, never asserted: tessera's default merge
protection (per-type caps) splits components that plain label propagation keeps whole.
With no_limits the counts should be equal. --verify additionally reads idmap (and the
no_limits result) back, untimed, and checks them against the truth: every profile must lie
inside one truth component (caps only split), how many extra pieces the caps make, and with
no_limits whether the partition is identical.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PY = sys.executable
# The password of tessera's superuser on the fresh data directory (TESSERA_ADMIN_PASSWORD).
PASSWORD = "tessera-bench"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def proc_status(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB -> MB
    except FileNotFoundError:
        return None
    return None


def proc_cpu_seconds(pid):
    """utime + stime of a process (all its threads) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Tessera:
    def __init__(self, binary, work, allow=()):
        """`allow`: the directories the benchmark's sources are read from (external
        tables may read only under the data dir and --allow-location)."""
        self.data = os.path.join(work, "tessera-data")
        shutil.rmtree(self.data, ignore_errors=True)
        self.logpath = os.path.join(work, "tessera.log")
        self.logf = open(self.logpath, "w")
        allowed = [a for d in allow for a in ("--allow-location", os.path.dirname(os.path.abspath(d)))]
        self.proc = subprocess.Popen([binary, "serve", "--http", "off", "--data-dir", self.data, "--listen", "127.0.0.1:0",
                                      *allowed],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     env={**os.environ, "TESSERA_ADMIN_PASSWORD": PASSWORD})
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"tessera exited with {self.proc.returncode}: see {self.logpath}")
            with open(self.logpath) as f:
                m = re.search(r"connect with: psql -h (\S+) -p (\d+)", f.read())
            if m:
                self.dsn = f"host={m.group(1)} port={m.group(2)} user=tessera password={PASSWORD} dbname=tessera"
                return
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"tessera did not start in 120 s: see {self.logpath}")

    def hwm_mb(self):
        return proc_status(self.proc.pid, "VmHWM")

    def rss_mb(self):
        return proc_status(self.proc.pid, "VmRSS")

    def cpu(self):
        return proc_cpu_seconds(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def timed(conn, sql, srv=None):
    """Wall seconds of one statement over the wire (and the server's CPU seconds if srv)."""
    c0 = srv.cpu() if srv else None
    t = time.perf_counter()
    rows = conn.execute(sql).fetchall() if sql.lstrip().upper().startswith("SELECT") else conn.execute(sql)
    wall = time.perf_counter() - t
    if srv:
        timed.last_cpu = srv.cpu() - c0
    return wall, rows


NO_LIMITS = ("customer_id", "email", "phone", "anonymous_id")


def run_tessera(args, edges, truth):
    """Timings over the wire on a fresh server. Each run persists the identity state (ids
    stay stable across runs), so run 1 is cold (no earlier state, like DuckDB) and later
    runs are warm (they load the previous ids)."""
    res = {"binary": args.tessera_bin}
    srv = Tessera(args.tessera_bin, args.work, allow=[edges] + ([args.fake_resolver] if args.fake_resolver else []))
    res["server_log"] = srv.logpath
    try:
        with psycopg.connect(srv.dsn, autocommit=True) as conn:
            loc = edges.replace("'", "''")
            conn.execute(f"CREATE EXTERNAL TABLE edges STORED AS PARQUET LOCATION '{loc}'")
            res["rss_after_register_mb"] = srv.rss_mb()
            resolve = "resolve_identities('edges')"
            if args.fake_resolver:  # plumbing test: a precomputed idmap stands in for the function
                fake = os.path.abspath(args.fake_resolver).replace("'", "''")
                conn.execute(f"CREATE EXTERNAL TABLE fake_idmap STORED AS PARQUET LOCATION '{fake}'")
                resolve = "fake_idmap"
            runs = []
            try:
                for i in range(args.repeat):
                    secs, rows = timed(conn, f"SELECT count(*), count(DISTINCT unified_id) FROM {resolve}", srv)
                    runs.append({"seconds": round(secs, 3), "cpu_seconds": round(timed.last_cpu, 2)})
                    log(f"tessera count run {i + 1}: {secs:.2f}s (server CPU {timed.last_cpu:.1f}s) -> {rows[0]}")
            except psycopg.Error as e:
                res["error"] = str(e).strip().splitlines()[0]
                log(f"tessera: resolve_identities failed: {res['error']}")
                return res
            res["count_runs"] = runs
            res["count_seconds"], res["count_cpu_seconds"] = runs[0]["seconds"], runs[0]["cpu_seconds"]
            res["records"], res["components"] = rows[0]

            secs, _ = timed(conn, f"CREATE TABLE idmap AS SELECT * FROM {resolve}", srv)
            res["create_table_seconds"] = secs
            res["create_table_cpu_seconds"] = timed.last_cpu
            res["idmap"] = conn.execute("SELECT count(*), count(DISTINCT unified_id) FROM idmap").fetchone()
            log(f"tessera CREATE TABLE idmap (warm): {secs:.2f}s -> {res['idmap']}")

            if not args.no_rules and not args.fake_resolver:
                # An empty rules relation keeps the defaults (a NULL keeps the default too);
                # max_per_profile 0 lifts a type's limit. Blocked values stay blocked.
                try:
                    conn.execute("CREATE TABLE no_limits(id_type text, priority bigint, max_per_profile bigint)")
                    conn.execute("INSERT INTO no_limits VALUES " + ", ".join(f"('{t}', NULL, 0)" for t in NO_LIMITS))
                    secs, rows = timed(conn, "SELECT count(*), count(DISTINCT unified_id) "
                                             "FROM resolve_identities('edges', 'no_limits')", srv)
                    res["no_limits_seconds"] = secs
                    res["no_limits_cpu_seconds"] = timed.last_cpu
                    res["no_limits_records"], res["no_limits_components"] = rows[0]
                    log(f"tessera with rules 'no_limits' (warm): {secs:.2f}s -> {rows[0]}")
                except psycopg.Error as e:
                    res["no_limits_error"] = str(e).strip().splitlines()[0]
                    log(f"tessera with rules relation failed: {res['no_limits_error']}")
            res["peak_rss_mb"] = srv.hwm_mb()
            try:  # the server's own account of its runs, if it has one
                cur = conn.execute("SELECT * FROM tessera.identity_spaces")
                names = [d.name for d in cur.description]
                res["identity_spaces"] = [dict(zip(names, map(str, r))) for r in cur.fetchall()]
            except psycopg.Error:
                pass

            if args.verify and truth:
                res["verify"] = verify(conn, truth, args.work, "idmap", "defaults")
                if "no_limits_components" in res:
                    conn.execute("CREATE TABLE idmap_no_limits AS SELECT * FROM resolve_identities('edges', 'no_limits')")
                    res["verify_no_limits"] = verify(conn, truth, args.work, "idmap_no_limits", "no_limits")
    finally:
        srv.stop()
    return res


def verify(conn, truth, work, table, label):
    """Read a result table back (untimed) and compare its partition with the truth (plain
    connected components) in DuckDB."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = time.perf_counter()
    cols = {"source": [], "record_key": [], "unified_id": []}
    with conn.cursor() as cur:
        cur.execute(f"SELECT source, record_key, CAST(unified_id AS TEXT) FROM {table}")
        while batch := cur.fetchmany(200_000):
            for name, col in zip(cols, zip(*batch)):
                cols[name].extend(col)
    path = os.path.join(work, f"tessera_{table}.parquet")
    pq.write_table(pa.table(cols), path)
    del cols
    con = duckdb.connect()
    tq = truth.replace("'", "''")
    pq_ = path.replace("'", "''")
    n_t, n_truth, n_pairs, missing, extra = con.execute(f"""
        WITH j AS (SELECT i.unified_id, t.component FROM read_parquet('{pq_}') i
                   JOIN read_parquet('{tq}') t USING (source, record_key))
        SELECT (SELECT count(DISTINCT unified_id) FROM j), (SELECT count(DISTINCT component) FROM j),
               (SELECT count(*) FROM (SELECT DISTINCT unified_id, component FROM j)),
               (SELECT count(*) FROM read_parquet('{tq}') t ANTI JOIN read_parquet('{pq_}') i USING (source, record_key)),
               (SELECT count(*) - count(DISTINCT (source, record_key)) FROM read_parquet('{pq_}'))""").fetchone()
    out = {
        "rules": label,
        "tessera_profiles": n_t, "truth_components": n_truth,
        "profiles_within_one_truth_component": n_pairs == n_t,   # never merges what CC keeps apart
        "truth_components_split": n_pairs - n_truth,             # extra pieces from caps
        "identical_partition": n_t == n_truth == n_pairs,
        "records_missing": missing, "duplicate_records": extra,
        "seconds": round(time.perf_counter() - t, 1),
    }
    log(f"verify ({label}): {out}")
    return out


def run_duckdb(args, edges, truth, variant):
    cmd = [PY, os.path.join(HERE, "label_propagation_duckdb.py"), edges]
    if variant == "frontier":
        cmd.append("--frontier")
    if truth and args.verify:
        cmd += ["--truth", truth]
    if args.duckdb_threads:
        cmd += ["--threads", str(args.duckdb_threads)]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--edges", help="use this Parquet file instead of generating one")
    ap.add_argument("--work", default=os.environ.get("IDBENCH_WORK", "/tmp/tessera-idbench"))
    ap.add_argument("--tessera-bin", default=os.environ.get("TESSERA_BIN", os.path.join(ROOT, "target/release/tessera")))
    ap.add_argument("--repeat", type=int, default=int(os.environ.get("REPEAT", "2")),
                    help="run the timed count query this many times on the same server (run 1 is cold: "
                         "it counts for the gate; later runs load the state the earlier ones persisted)")
    ap.add_argument("--skip-tessera", action="store_true")
    ap.add_argument("--skip-duckdb", action="store_true")
    ap.add_argument("--duckdb-threads", type=int)
    ap.add_argument("--duckdb-variants", default="plain",
                    help="comma list of plain (every round joins all labels; the gate's baseline) "
                         "and frontier (semi-naive: only changed labels propagate)")
    ap.add_argument("--no-rules", action="store_true", help="skip the empty-rules-relation variant")
    ap.add_argument("--verify", action="store_true", help="check both results against the truth (untimed)")
    ap.add_argument("--json", help="also write all numbers here")
    ap.add_argument("--fake-resolver", metavar="PARQUET",
                    help="test the plumbing without the function: read (source, record_key, unified_id) "
                         "from this Parquet file in place of resolve_identities('edges')")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)

    truth = None
    if args.edges:
        edges = os.path.abspath(args.edges)
        cand = edges[:-8] + ".truth.parquet" if edges.endswith(".parquet") else None
        truth = cand if cand and os.path.exists(cand) else None
    else:
        edges = os.path.join(args.work, f"edges_{args.records}_s{args.seed}.parquet")
        truth = edges[:-8] + ".truth.parquet"
        if not (os.path.exists(edges) and os.path.exists(truth)):
            log(f"generating {edges}")
            subprocess.run([PY, os.path.join(HERE, "gen_edges.py"), "--records", str(args.records),
                            "--seed", str(args.seed), "--out", edges], check=True, stdout=subprocess.DEVNULL)
    summary_path = edges[:-8] + ".json"
    gen = json.load(open(summary_path)) if os.path.exists(summary_path) else {}

    ts = None if args.skip_tessera else run_tessera(args, edges, truth)
    variants = [] if args.skip_duckdb else [v.strip() for v in args.duckdb_variants.split(",") if v.strip()]
    dks = [run_duckdb(args, edges, truth, v) for v in variants]

    recs = gen.get("records", args.records)
    print()
    print(f"edges: {edges}")
    print(f"records: {recs:,}   identifier rows: {gen.get('rows', 0):,}   persons: {gen.get('persons', 0):,}   "
          f"truth components (no caps): {gen.get('components', 0):,}")
    print(f"{'':44}{'seconds':>9}{'CPU s':>8}{'peak MB':>10}{'records':>12}{'components':>12}")

    def row(name, secs, cpu, mb, r, c):
        f = lambda v, fmt: (format(v, fmt) if isinstance(v, (int, float)) else "-")
        print(f"{name:44}{f(secs, '9.2f'):>9}{f(cpu, '8.1f'):>8}{f(mb, ',.0f'):>10}{f(r, ','):>12}{f(c, ','):>12}")

    if ts:
        if "error" in ts:
            print(f"{'tessera resolve_identities':44}  FAILED: {ts['error']}")
        else:
            row("tessera count(DISTINCT unified_id), cold", ts["count_seconds"], ts["count_cpu_seconds"],
                ts["peak_rss_mb"], ts["records"], ts["components"])
            for i, r in enumerate(ts["count_runs"][1:], 2):
                row(f"tessera count, run {i} (warm)", r["seconds"], r["cpu_seconds"], None, None, None)
            row("tessera CREATE TABLE idmap AS (warm)", ts["create_table_seconds"], ts["create_table_cpu_seconds"], None,
                *ts["idmap"])
            if "no_limits_seconds" in ts:
                row("tessera rules 'no_limits' (warm)", ts["no_limits_seconds"], ts["no_limits_cpu_seconds"], None,
                    ts["no_limits_records"], ts["no_limits_components"])
            elif "no_limits_error" in ts:
                print(f"{'tessera rules no_limits':44}  FAILED: {ts['no_limits_error']}")
            for key in ("verify", "verify_no_limits"):
                if key in ts:
                    v = ts[key]
                    print(f"  check ({v['rules']}): {v['tessera_profiles']:,} profiles vs {v['truth_components']:,} truth "
                          f"components; identical {v['identical_partition']}; never over-merges "
                          f"{v['profiles_within_one_truth_component']}; extra pieces {v['truth_components_split']:,}; "
                          f"missing records {v['records_missing']}, duplicated {v['duplicate_records']}")
    for v, dk in zip(variants, dks):
        if "error" in dk:
            print(f"{'duckdb label propagation ' + v:44}  FAILED: {dk['error']}")
        else:
            row(f"duckdb label propagation {v} ({dk['iterations']} it.)", dk["seconds"], dk.get("cpu_seconds"),
                dk["peak_rss_mb"],
                dk["records"], dk["components"])
    for v, dk in zip(variants, dks):
        if ts and "error" not in ts and "error" not in dk:
            ratio = dk["seconds"] / ts["count_seconds"]
            cpu_ratio = (dk["cpu_seconds"] / ts["count_cpu_seconds"]
                         if dk.get("cpu_seconds") and ts.get("count_cpu_seconds") else float("nan"))
            print(f"ratio duckdb ({v}) / tessera: {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU")
            if recs >= 10_000_000 and v == "plain":
                ok = ts["count_seconds"] <= 10 and ts["peak_rss_mb"] <= 4096 and ratio >= 20
                print(f"gate (<= 10 s, <= 4096 MB, >= 20x plain): {'PASS' if ok else 'FAIL'}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores; > ~0.5 means "
          f"something else was running)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"generator": gen, "tessera": ts, "duckdb": dict(zip(variants, dks))}, f, indent=1)


if __name__ == "__main__":
    main()
