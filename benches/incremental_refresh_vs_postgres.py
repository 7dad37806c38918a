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
        out["append"] = timed(conn, rows_sql(SERIES[name], ORDERS, APPENDED, new_customers=1000))
        out["refresh"] = timed(conn, "REFRESH MATERIALIZED VIEW customer_spend")
        if name == "tessera":
            out["keys"] = conn.execute(
                "SELECT incremental_keys FROM tessera.materialized_views WHERE name = 'customer_spend'"
            ).fetchone()[0]
            out["full"] = timed(conn, f"CREATE MATERIALIZED VIEW customer_spend_full AS {VIEW}")
            for a, b in (("customer_spend", "customer_spend_full"), ("customer_spend_full", "customer_spend")):
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


if __name__ == "__main__":
    main()
