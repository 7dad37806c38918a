#!/usr/bin/env python3
"""Refreshing a materialised view after a 1% append: tessera's incremental refresh
against its own full refresh and PostgreSQL's REFRESH MATERIALIZED VIEW, in one run.

    benches/run_incremental_refresh.sh [ORDERS]   # default 2,000,000; CUSTOMERS=ORDERS/4

On a throwaway PostgreSQL 15 and a throwaway tessera server, each:
  1. `orders` gets ORDERS rows for CUSTOMERS customers (one INSERT ... SELECT from a
     series);
  2. `customer_spend` (orders, revenue, first and last order, paid orders per customer:
     one aggregate grouped by customer) is created and filled (timed: tessera's first
     fill is a full refresh);
  3. 1% more orders are appended (one INSERT), for customers spread over all of them
     and 1,000 new ones;
  4. REFRESH MATERIALIZED VIEW customer_spend (timed: incremental on tessera, full on
     PostgreSQL, which has no other kind);
  5. tessera only: the same query created again as `customer_spend_full` over the
     appended table (timed: a full refresh over the same rows as step 4), and both
     results compared row for row (EXCEPT both ways: must be empty), and
     `incremental_keys` read back.
Prints the seconds of each step and the ratios incremental / full (target: at most 0.1)
and PostgreSQL / tessera incremental.

Two more views are refreshed on tessera alone, each after the same append and checked the
same way (their functions or their refresh have no PostgreSQL counterpart to compare):
`customer_golden`, picked values (latest, earliest, first_by_priority: merged with the
ranking stored beside them), and `customer_gaps`, the longest gap between a customer's
orders (a window partitioned by customer under an aggregate: the changed customers'
orders are read again).
"""

import os
import sys
import time

import psycopg

from servers import side_by_side

ORDERS = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
CUSTOMERS = int(os.environ.get("CUSTOMERS", ORDERS // 4))
APPENDED = ORDERS // 100

VIEW = """SELECT customer,
       count(*) AS orders,
       count(*) FILTER (WHERE status = 'paid') AS paid_orders,
       sum(amount) AS revenue,
       min(ordered_at) AS first_order_at,
       max(ordered_at) AS last_order_at
  FROM orders GROUP BY customer"""

# tessera only: (name, query) refreshed after the append like customer_spend.
MORE_VIEWS = [
    ("customer_golden", """SELECT customer,
       latest(status, ordered_at) AS last_status,
       earliest(amount, ordered_at) AS first_amount,
       first_by_priority(amount, 1, ordered_at) AS last_amount,
       collect_distinct(status) AS statuses,
       count(*) AS orders
  FROM orders GROUP BY customer"""),
    ("customer_gaps", """SELECT customer, count(*) AS orders, max(gap) AS longest_gap
  FROM (SELECT customer, date_part('epoch', ordered_at)
                         - lag(date_part('epoch', ordered_at)) OVER (PARTITION BY customer ORDER BY ordered_at) AS gap
          FROM orders) g
 GROUP BY customer"""),
]

DDL = "CREATE TABLE orders (id BIGINT, customer TEXT, amount DOUBLE PRECISION, status TEXT, ordered_at TIMESTAMP)"


def rows_sql(series, first, n, new_customers=0):
    """INSERT ... SELECT of orders first..first+n-1 (`series`: the engine's entry of
    SERIES). The last `new_customers` rows go to new customers."""
    customer = (f"CASE WHEN g >= {first + n - new_customers} THEN 'n' || CAST(g AS TEXT) "
                f"ELSE 'c' || CAST((g * 7919) % {CUSTOMERS} AS TEXT) END")
    return (f"INSERT INTO orders SELECT g, {customer}, CAST(g % 500 AS DOUBLE PRECISION) + 0.5, "
            f"CASE WHEN g % 10 = 0 THEN 'refunded' ELSE 'paid' END, "
            f"{series['ts']} FROM {series['from'].format(first=first, last=first + n - 1)}")


# Per engine: the series of numbers as a FROM clause (column g), and a timestamp of g.
SERIES = {
    "tessera": {"from": "(SELECT value AS g FROM generate_series({first}, {last})) s",
                "ts": "to_timestamp_seconds(1704067200 + g)"},
    "postgres": {"from": "generate_series(CAST({first} AS BIGINT), {last}) AS s(g)",
                 "ts": "TIMESTAMP '2024-01-01 00:00:00' + g * INTERVAL '1 second'"},
}


def timed(conn, sql):
    start = time.perf_counter()
    conn.execute(sql)
    return time.perf_counter() - start


def bench(name, dsn):
    out = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)
        out["load"] = timed(conn, rows_sql(SERIES[name], 0, ORDERS))
        out["create"] = timed(conn, f"CREATE MATERIALIZED VIEW customer_spend AS {VIEW}")
        views = [("customer_spend", VIEW)] + (MORE_VIEWS if name == "tessera" else [])
        for view, query in views[1:]:
            out[f"{view} create"] = timed(conn, f"CREATE MATERIALIZED VIEW {view} AS {query}")
        out["append"] = timed(conn, rows_sql(SERIES[name], ORDERS, APPENDED, new_customers=1000))
        out["refresh"] = timed(conn, "REFRESH MATERIALIZED VIEW customer_spend")
        if name == "tessera":
            for view, query in views:
                prefix = "" if view == "customer_spend" else f"{view} "
                if prefix:
                    out[f"{prefix}refresh"] = timed(conn, f"REFRESH MATERIALIZED VIEW {view}")
                out[f"{prefix}keys"] = conn.execute(
                    f"SELECT incremental_keys FROM tessera.materialized_views WHERE name = '{view}'"
                ).fetchone()[0]
                out[f"{prefix}full"] = timed(conn, f"CREATE MATERIALIZED VIEW {view}_full AS {query}")
                for a, b in ((view, f"{view}_full"), (f"{view}_full", view)):
                    extra = conn.execute(f"SELECT count(*) FROM (SELECT * FROM {a} EXCEPT SELECT * FROM {b}) d").fetchone()[0]
                    if extra:
                        raise SystemExit(f"tessera: {extra} rows of {a} are not in {b}")
        out["rows"] = conn.execute("SELECT count(*) FROM customer_spend").fetchone()[0]
    return out


def main():
    print(f"{ORDERS:,} orders for {CUSTOMERS:,} customers; append {APPENDED:,} (1%)", flush=True)
    with side_by_side("tessera-incremental-") as (_, dsns):
        pg = bench("postgres", dsns["postgres"])
        ts = bench("tessera", dsns["tessera"])
    if pg["rows"] != ts["rows"]:
        raise SystemExit(f"row counts differ: PostgreSQL {pg['rows']}, tessera {ts['rows']}")
    print(f"{'step':44} {'tessera s':>10} {'PostgreSQL s':>13}")
    for label, key in (("load orders", "load"), ("CREATE MATERIALIZED VIEW (fill)", "create"),
                       ("append 1%", "append"), ("REFRESH after the append", "refresh")):
        print(f"{label:44} {ts[key]:10.2f} {pg[key]:13.2f}")
    print(f"{'full refresh over the same rows (tessera)':44} {ts['full']:10.2f}")
    print(f"keys recomputed: {ts['keys']:,} of {ts['rows']:,} rows")
    print(f"tessera incremental / tessera full: {ts['refresh'] / ts['full']:.3f} (target <= 0.1)")
    print(f"PostgreSQL refresh / tessera incremental: {pg['refresh'] / ts['refresh']:.2f}x")
    for view, _ in MORE_VIEWS:
        keys = ts[f"{view} keys"]
        keys = "whole" if keys is None else f"{keys:,} keys"
        print(f"{view}: fill {ts[f'{view} create']:.2f} s, incremental {ts[f'{view} refresh']:.2f} s "
              f"({keys}), full {ts[f'{view} full']:.2f} s: "
              f"{ts[f'{view} refresh'] / ts[f'{view} full']:.3f}")


if __name__ == "__main__":
    main()
