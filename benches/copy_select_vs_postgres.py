#!/usr/bin/env python3
"""COPY ingest and SELECT streaming, tessera side by side with PostgreSQL, in one run.

    benches/run_copy_select.sh [ROWS]        # builds tessera (release), sets up .venv

Generates one CSV of ROWS customer-like rows (default 1,000,000), starts a throwaway
PostgreSQL (initdb on loopback, from the Debian postgresql package) and a throwaway
tessera server, and on each:
  1. CREATE TABLE, then `COPY t FROM STDIN (FORMAT csv)` streaming the file (rows/s);
  2. `SELECT * FROM t` read to the end by psycopg 3 in text format (rows/s).
Prints both rates and the ratio tessera / PostgreSQL (targets: COPY >= 1.0x,
streaming >= 0.8x). Each step runs REPEAT times (default 3) and the best run counts.
"""

import csv
import os
import random
import sys
import time

import psycopg

from servers import side_by_side

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
REPEAT = int(os.environ.get("REPEAT", "3"))

DDL = """CREATE TABLE bench (id BIGINT, email TEXT, first_name TEXT, last_name TEXT,
         phone TEXT, city TEXT, amount DOUBLE PRECISION, created_at TIMESTAMP)"""


def make_csv(path):
    rnd = random.Random(7)
    first = ["anna", "ben", "chloé", "dmitri", "eva", "farid", "greta", "hugo", "ines", "jon"]
    last = ["müller", "smith", "garcía", "rossi", "dubois", "jansen", "kowalski", "o'neil"]
    cities = ["Berlin", "Paris", "London", "New York", "Madrid", "Rome", "Amsterdam"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        for i in range(ROWS):
            fn, ln = rnd.choice(first), rnd.choice(last)
            w.writerow([
                i,
                f"{fn}.{ln}{i}@example.com",
                fn,
                ln,
                f"+49 30 {rnd.randrange(1000000, 9999999)}",
                rnd.choice(cities),
                f"{rnd.random() * 500:.2f}",
                f"2025-{rnd.randrange(1, 13):02d}-{rnd.randrange(1, 29):02d} {rnd.randrange(24):02d}:{rnd.randrange(60):02d}:00",
            ])


def bench(name, dsn, csv_path):
    copy_best = select_best = float("inf")
    for _ in range(REPEAT):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS bench")
            conn.execute(DDL)
            start = time.perf_counter()
            with conn.cursor() as cur, open(csv_path, "rb") as f:
                with cur.copy("COPY bench FROM STDIN (FORMAT csv)") as copy:
                    while chunk := f.read(1 << 20):
                        copy.write(chunk)
            copy_best = min(copy_best, time.perf_counter() - start)
            count = conn.execute("SELECT count(*) FROM bench").fetchone()[0]
            assert count == ROWS, f"{name}: {count} rows after COPY, expected {ROWS}"

            start = time.perf_counter()
            seen = 0
            with conn.cursor() as cur:
                cur.execute("SELECT * FROM bench")
                while batch := cur.fetchmany(10_000):
                    seen += len(batch)
            select_best = min(select_best, time.perf_counter() - start)
            assert seen == ROWS, f"{name}: streamed {seen} rows, expected {ROWS}"
    return ROWS / copy_best, ROWS / select_best


def main():
    with side_by_side() as (work, dsns):
        csv_path = os.path.join(work, "bench.csv")
        make_csv(csv_path)
        pg = bench("postgres", dsns["postgres"], csv_path)
        ts = bench("tessera", dsns["tessera"], csv_path)
        print(f"rows: {ROWS:,} (best of {REPEAT})")
        print(f"{'':24}{'tessera':>14}{'postgres 15':>14}{'ratio':>8}")
        print(f"{'COPY FROM STDIN rows/s':24}{ts[0]:>14,.0f}{pg[0]:>14,.0f}{ts[0] / pg[0]:>7.2f}x  (target >= 1.0x)")
        print(f"{'SELECT stream rows/s':24}{ts[1]:>14,.0f}{pg[1]:>14,.0f}{ts[1] / pg[1]:>7.2f}x  (target >= 0.8x)")

if __name__ == "__main__":
    main()
