#!/usr/bin/env python3
"""Small transactions, tessera side by side with PostgreSQL, in one run.

    benches/run_transactions.sh [BLOCKS]     # builds tessera (release), sets up .venv

On a throwaway PostgreSQL (initdb on loopback) and a throwaway tessera server, a table
`orders` gets HISTORY commits of 100 rows each first (default 200: a table with a
history, as a shop's order table has). Then psycopg 3 runs BLOCKS (default 200) of each:
  1. autocommit: one `INSERT` of 10 rows;
  2. block: `BEGIN; INSERT 10 rows; UPDATE ... WHERE id = <one earlier row>; COMMIT`
     (tessera forks the table on the block's first write and lands both writes in one
     commit: see README "Transactions");
and prints each rate (statements or blocks per second), its median latency, the ratio
tessera / PostgreSQL, and tessera's cost of a block over the same rows written in
autocommit. The final row counts are checked on both servers.
"""

import os
import statistics
import sys
import time

import psycopg

from servers import side_by_side

BLOCKS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
HISTORY = int(os.environ.get("HISTORY", "200"))

DDL = "CREATE TABLE orders (id BIGINT, customer TEXT, amount DOUBLE PRECISION, status TEXT)"


def values(first, n):
    rows = ", ".join(f"({i}, 'c{i % 997}', {i % 500}.5, 'new')" for i in range(first, first + n))
    return f"INSERT INTO orders VALUES {rows}"


def timed(run, n):
    latencies = []
    for i in range(n):
        start = time.perf_counter()
        run(i)
        latencies.append(time.perf_counter() - start)
    return n / sum(latencies), statistics.median(latencies) * 1000


def bench(name, dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS orders")
        conn.execute(DDL)
        for h in range(HISTORY):
            conn.execute(values(h * 100, 100))
        base = HISTORY * 100
        auto = timed(lambda i: conn.execute(values(base + i * 10, 10)), BLOCKS)
    base += BLOCKS * 10
    with psycopg.connect(dsn) as conn:
        def block(i):
            conn.execute(values(base + i * 10, 10))
            conn.execute(f"UPDATE orders SET status = 'paid' WHERE id = {i * 100}")
            conn.commit()
        blocks = timed(block, BLOCKS)
        count, paid = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'paid') FROM orders").fetchone()
        conn.commit()
    expected = HISTORY * 100 + 2 * BLOCKS * 10
    assert count == expected, f"{name}: {count} rows, expected {expected}"
    assert paid == min(BLOCKS, HISTORY), f"{name}: {paid} paid rows"
    return auto, blocks


def main():
    with side_by_side() as (_, dsns):
        pg = bench("postgres", dsns["postgres"])
        ts = bench("tessera", dsns["tessera"])
        print(f"table history: {HISTORY} commits of 100 rows; {BLOCKS} statements or blocks each")
        print(f"{'':34}{'tessera':>16}{'postgres 15':>16}{'ratio':>8}")
        for label, t, p in [("autocommit INSERT (10 rows) /s", ts[0], pg[0]),
                            ("block INSERT+UPDATE+COMMIT /s", ts[1], pg[1])]:
            print(f"{label:34}{t[0]:>10,.1f} ({t[1]:.1f} ms){p[0]:>9,.1f} ({p[1]:.1f} ms){t[0] / p[0]:>7.2f}x")
        print(f"tessera: a block costs {ts[1][1] / ts[0][1]:.1f}x an autocommit INSERT (median latency)")

if __name__ == "__main__":
    main()
