#!/usr/bin/env python3
"""Profile lookup latency, tessera side by side with PostgreSQL, in one run.

    benches/run_profile_lookup.sh [PROFILES]   # builds tessera (release), sets up .venv

Generates PROFILES profile rows (default 1,000,000; about 30 columns, as the default
model's `profiles`) and their identifiers (email, phone, customer id and one or two
cookie ids each), loads both with COPY into a throwaway PostgreSQL (primary key on
unified_id, B-tree index on (id_type, id_value)) and a throwaway tessera (materialised
views `profiles` sorted by unified_id and `identity_lookup` sorted by id_type, id_value,
as sql/60_profiles.sql builds them), then runs CLIENTS concurrent psycopg connections
(default 8), each doing LOOKUPS lookups (default 500) of random keys:
  by id:          SELECT * FROM profiles WHERE unified_id = %s
  by identifier:  SELECT p.* FROM identity_lookup i JOIN profiles p USING (unified_id)
                  WHERE i.id_type = %s AND i.id_value = %s
Prints p50/p99 latency per engine and the ratio (target: tessera p99 <= 10 ms).
"""

import csv
import os
import random
import sys
import threading
import time

import psycopg

from servers import side_by_side

PROFILES = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
CLIENTS = int(os.environ.get("CLIENTS", "8"))
LOOKUPS = int(os.environ.get("LOOKUPS", "500"))

COLUMNS = [
    ("unified_id", "TEXT"), ("customer_id", "TEXT"), ("full_name", "TEXT"), ("first_name", "TEXT"),
    ("last_name", "TEXT"), ("email", "TEXT"), ("phone", "TEXT"), ("street", "TEXT"), ("city", "TEXT"),
    ("postcode", "TEXT"), ("country", "TEXT"), ("birth_date", "DATE"), ("first_seen", "TIMESTAMP"),
    ("last_seen", "TIMESTAMP"), ("orders", "BIGINT"), ("web_orders", "BIGINT"), ("store_orders", "BIGINT"),
    ("revenue", "DOUBLE PRECISION"), ("avg_order_value", "DOUBLE PRECISION"),
    ("last_order_at", "TIMESTAMP"), ("emails_sent", "BIGINT"), ("email_opens", "BIGINT"),
    ("email_clicks", "BIGINT"), ("support_tickets", "BIGINT"), ("page_views", "BIGINT"),
    ("web_sessions", "BIGINT"), ("consent_email_marketing", "BOOLEAN"), ("recency_days", "BIGINT"),
    ("r_score", "INT"), ("f_score", "INT"), ("m_score", "INT"), ("known", "BOOLEAN"),
]


def uid(i):
    return f"{(i * 2654435761) % (1 << 64):016x}"


def make_files(work):
    rnd = random.Random(11)
    first = ["anna", "ben", "chloe", "dmitri", "eva", "farid", "greta", "hugo", "ines", "jon"]
    last = ["mueller", "smith", "garcia", "rossi", "dubois", "jansen", "kowalski", "oneil"]
    cities = ["Berlin", "Paris", "London", "New York", "Madrid", "Rome", "Amsterdam"]
    profiles = os.path.join(work, "profiles.csv")
    idents = os.path.join(work, "identifiers.csv")
    keys = []
    with open(profiles, "w", newline="") as pf, open(idents, "w", newline="") as idf:
        pw, iw = csv.writer(pf), csv.writer(idf)
        for i in range(PROFILES):
            u = uid(i)
            fn, ln = rnd.choice(first), rnd.choice(last)
            email = f"{fn}.{ln}{i}@mail.com"
            phone = f"+4930{1000000 + i}"
            cust = f"C{i:07d}"
            orders = rnd.randrange(0, 12)
            revenue = round(orders * rnd.uniform(20, 120), 2)
            pw.writerow([
                u, cust, f"{fn} {ln}", fn, ln, email, phone, f"{rnd.randrange(1, 200)} High St",
                rnd.choice(cities), f"{rnd.randrange(10000, 99999)}", "DE",
                f"19{rnd.randrange(50, 99)}-0{rnd.randrange(1, 9)}-1{rnd.randrange(0, 9)}",
                "2024-01-01 10:00:00", "2026-10-01 10:00:00", orders, orders // 2, orders - orders // 2,
                revenue, round(revenue / orders, 2) if orders else "", "2026-09-01 10:00:00" if orders else "",
                rnd.randrange(0, 50), rnd.randrange(0, 20), rnd.randrange(0, 5), rnd.randrange(0, 3),
                rnd.randrange(0, 100), rnd.randrange(0, 20), rnd.choice(["t", "f", ""]),
                rnd.randrange(0, 900), rnd.randrange(1, 6), rnd.randrange(1, 6), rnd.randrange(1, 6), "t",
            ])
            ids = [("email", email), ("phone", phone), ("customer_id", cust)]
            ids += [("anonymous_id", f"{u}-k{k}") for k in range(rnd.randrange(1, 3))]
            for t, v in ids:
                iw.writerow([t, v, u])
            if i % 97 == 0:
                keys.append((u, rnd.choice(ids)))
    return profiles, idents, keys


def load(conn, engine, profiles, idents):
    cols = ", ".join(f"{n} {t}" for n, t in COLUMNS)
    raw = "profiles_raw" if engine == "tessera" else "profiles"
    lookup = "identity_raw" if engine == "tessera" else "identity_lookup"
    conn.execute(f"CREATE TABLE {raw} ({cols})")
    conn.execute(f"CREATE TABLE {lookup} (id_type TEXT, id_value TEXT, unified_id TEXT)")
    with conn.cursor() as cur:
        for table, path in ((raw, profiles), (lookup, idents)):
            with open(path, "rb") as f, cur.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy:
                while chunk := f.read(1 << 20):
                    copy.write(chunk)
    if engine == "tessera":
        conn.execute("CREATE MATERIALIZED VIEW profiles AS SELECT * FROM profiles_raw ORDER BY unified_id")
        conn.execute("CREATE MATERIALIZED VIEW identity_lookup AS "
                     "SELECT * FROM identity_raw ORDER BY id_type, id_value")
    else:
        conn.execute("ALTER TABLE profiles ADD PRIMARY KEY (unified_id)")
        conn.execute("CREATE INDEX ON identity_lookup (id_type, id_value)")
        conn.execute("ANALYZE")


BY_ID = "SELECT * FROM profiles WHERE unified_id = %s"
BY_IDENTIFIER = ("SELECT p.* FROM identity_lookup i JOIN profiles p ON p.unified_id = i.unified_id "
                 "WHERE i.id_type = %s AND i.id_value = %s")


def run_clients(dsn, keys, by_identifier):
    latencies = []
    lock = threading.Lock()
    errors = []

    def client(n):
        rnd = random.Random(n)
        mine = []
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for _ in range(LOOKUPS):
                    u, (t, v) = rnd.choice(keys)
                    start = time.perf_counter()
                    if by_identifier:
                        rows = conn.execute(BY_IDENTIFIER, (t, v)).fetchall()
                    else:
                        rows = conn.execute(BY_ID, (u,)).fetchall()
                    mine.append(time.perf_counter() - start)
                    assert len(rows) == 1 and rows[0][0] == u, f"lookup of {u}: {rows!r}"
        except Exception as e:  # reported after the run
            errors.append(e)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
    return pct(0.5), pct(0.99), len(latencies) / elapsed


def main():
    with side_by_side("tessera-lookup-") as (work, dsns):
        profiles, idents, keys = make_files(work)
        results = {}
        for engine, dsn in dsns.items():
            with psycopg.connect(dsn, autocommit=True) as conn:
                t0 = time.perf_counter()
                load(conn, engine, profiles, idents)
                print(f"{engine}: loaded in {time.perf_counter() - t0:.1f} s", flush=True)
            for by_identifier in (False, True):
                run_clients(dsn, keys, by_identifier)  # warm-up (prepared statements, caches)
                results[engine, by_identifier] = run_clients(dsn, keys, by_identifier)
        print(f"profiles: {PROFILES:,}; {CLIENTS} clients x {LOOKUPS} lookups")
        print(f"{'':16}{'tessera p50/p99 ms':>22}{'postgres p50/p99 ms':>22}{'p99 ratio':>11}{'tessera q/s':>13}")
        for by_identifier, label in ((False, "by unified_id"), (True, "by identifier")):
            t, p = results["tessera", by_identifier], results["postgres", by_identifier]
            print(f"{label:16}{t[0]:>11.2f} /{t[1]:>8.2f}{p[0]:>11.2f} /{p[1]:>8.2f}"
                  f"{t[1] / p[1]:>10.1f}x{t[2]:>13,.0f}   (target: tessera p99 <= 10 ms)")


if __name__ == "__main__":
    main()
