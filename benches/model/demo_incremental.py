#!/usr/bin/env python3
"""Incremental refresh of the demo model's `profiles` after a 1% append, against the full
refresh of the same views (issue 4 §5: at most 10% of a full refresh at 1M customers).

    benches/run_demo_incremental.sh                       # 1,000,000 customers
    benches/run_demo_incremental.sh --customers 100000
Flags: --seed, --work DIR (default /tmp/modelbench-<customers>-<seed>, shared with
benches/run_model.sh: the generated demo data is reused), --percent (default 1), --json.

Steps:
  1. the demo data is generated once (as benches/run_model.sh does); a fresh catalog over
     it, and every sql/*.sql applied statement by statement, each timed: the full refresh
     of each materialised view is the time of its statements (its CREATE fills it, the
     REFRESH after finds it up to date);
  2. the append: for every source but ground_truth, every 100th record (for 1%) copied
     with a new key (`<key>-append`) into a new file in the source's directory
     (tessera-data/demo/sources/<source>/, read as appended rows); the same people, so
     the new records join existing profiles;
  3. the refresh of `profiles`: `REFRESH MATERIALIZED VIEW` of each view it reads
     (through views, down to `identifiers`) and then of itself, in the order a refresh
     of `profiles` takes them, each timed (each finds the views it reads refreshed).
     The full refresh it is compared with is the sum of the full refreshes of the same
     views.
  4. the appended files are deleted again, so the cached demo data stays as generated.
Prints each view's full refresh, its refresh after the append (and incremental_keys from
tessera.materialized_views: NULL = recomputed whole) and the ratio of the totals.
"""

import argparse
import csv
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_vs_duckdb import (ROOT, TESSERA, Tessera, clear_catalog, free_port, log,  # noqa: E402
                             run_tessera_model)

# The views `profiles` reads (through plain views), in the order the model fills them.
CHAIN = ["identifiers", "identity_map", "consent_state", "web_sessions", "web_activity",
         "email_activity", "profile_facts", "profiles"]
# Source, its file in demo/, its key column.
SOURCES = [
    ("crm_contacts", "crm_contacts.csv", "contact_id"),
    ("shop_orders", "shop_orders.parquet", "order_id"),
    ("pos_orders", "pos_orders.parquet", "receipt_id"),
    ("web_events", "web_events.ndjson", "event_id"),
    ("email_engagement", "email_engagement.csv", "send_id"),
    ("support_tickets", "support_tickets.csv", "ticket_id"),
    ("consent_changes", "consent_changes.csv", "change_id"),
]
APPENDED = "bench-append"


def append_files(demo, every):
    """Write each source's appended file; returns the rows written per source."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    written = {}
    for source, file, key in SOURCES:
        path = os.path.join(demo, file)
        target_dir = os.path.join(demo, "sources", source)
        if file.endswith(".parquet"):
            table = pq.read_table(path)
            table = table.take(pa.array(range(0, table.num_rows, every)))
            i = table.schema.get_field_index(key)
            table = table.set_column(i, key, pc.binary_join_element_wise(
                table.column(key), pa.scalar("append"), "-"))
            pq.write_table(table, os.path.join(target_dir, f"{APPENDED}.parquet"))
            written[source] = table.num_rows
        elif file.endswith(".ndjson"):
            n = 0
            with open(path) as src, open(os.path.join(target_dir, f"{APPENDED}.json"), "w") as out:
                for i, line in enumerate(src):
                    if i % every == 0:
                        record = json.loads(line)
                        record[key] = f"{record[key]}-append"
                        out.write(json.dumps(record) + "\n")
                        n += 1
            written[source] = n
        else:
            n = 0
            with open(path, newline="") as src, \
                    open(os.path.join(target_dir, f"{APPENDED}.csv"), "w", newline="") as out:
                reader, writer = csv.reader(src), csv.writer(out)
                header = next(reader)
                writer.writerow(header)
                k = header.index(key)
                for i, row in enumerate(reader):
                    if i % every == 0:
                        row[k] = f"{row[k]}-append"
                        writer.writerow(row)
                        n += 1
            written[source] = n
    return written


def remove_appended(demo):
    for f in glob.glob(os.path.join(demo, "sources", "*", f"{APPENDED}.*")):
        os.remove(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", help="default /tmp/modelbench-<customers>-<seed>")
    ap.add_argument("--percent", type=float, default=1.0, help="share of each source's records appended")
    ap.add_argument("--sql-dir", default=os.path.join(ROOT, "sql"))
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    work = os.path.abspath(args.work or f"/tmp/modelbench-{args.customers}-{args.seed}")
    data, empty_sql = os.path.join(work, "tessera"), os.path.join(work, "empty-sql")
    demo = os.path.join(data, "demo")
    os.makedirs(empty_sql, exist_ok=True)
    os.makedirs(data, exist_ok=True)
    port = free_port()
    if os.path.isdir(demo):
        remove_appended(demo)
    clear_catalog(data)
    log(f"tessera ({TESSERA}) on port {port}: the demo at {args.customers:,} customers, then {args.sql_dir}/*.sql ...")
    t = Tessera(data, args.customers, args.seed, port, empty_sql)
    try:
        stmts = run_tessera_model(t, args.sql_dir)
        # Each view's full refresh: its CREATE (which fills it) and the REFRESH after it
        # (up to date then, a few milliseconds).
        full = {}
        for s in stmts:
            if s["target"] in CHAIN and s["kind"] == "matview":
                full[s["target"]] = full.get(s["target"], 0) + s["seconds"]
        every = max(1, round(100 / args.percent))
        log(f"appending every {every}th record of each source ...")
        written = append_files(demo, every)
        log("  " + ", ".join(f"{k} {v:,}" for k, v in written.items()))
        con = t.connect()
        # The views in the order REFRESH ... profiles refreshes them, each timed (each
        # finds the views it reads refreshed already): together, that refresh.
        after = {}
        for view in CHAIN:
            t0 = time.perf_counter()
            con.execute(f"REFRESH MATERIALIZED VIEW {view}")
            after[view] = time.perf_counter() - t0
        incremental = sum(after.values())
        views = {}
        for name, status, ms, keys, rows in con.execute(
                "SELECT name, status, duration_ms, incremental_keys, rows FROM tessera.materialized_views"):
            views[name] = {"status": status, "ms": ms, "keys": keys, "rows": rows}
        con.close()
    finally:
        t.stop()
        remove_appended(demo)
    total = sum(full.get(v, 0) for v in CHAIN)
    print(f"\nrefresh of profiles after a {args.percent}% append, {args.customers:,} customers (seed {args.seed})")
    print(f"{'view':<16} {'full s':>8} {'after append s':>15} {'keys (NULL: whole)':>20} {'rows':>12}")
    for v in CHAIN:
        r = views.get(v, {})
        print(f"{v:<16} {full.get(v, 0):>8.2f} {after[v]:>15.2f} {str(r.get('keys')):>20} "
              f"{r.get('rows') or 0:>12,}")
    ratio = incremental / total if total else float("nan")
    print(f"{'total':<16} {total:>8.2f} {incremental:>15.2f}   ratio {ratio:.3f} (target <= 0.1)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"customers": args.customers, "percent": args.percent, "full": full,
                       "after": after, "incremental_seconds": incremental, "views": views,
                       "appended": written,
                       "ratio": ratio}, f, indent=1)


if __name__ == "__main__":
    main()
