#!/usr/bin/env python3
"""Load on the HTTP collection API: events/s and latency of `POST /v1/batch`.

    benches/run_collect_load.sh [CLIENTS] [SECONDS] [BATCH]   # release build, .venv

Starts a throwaway tessera server (TESSERA_BIN, default target/release/tessera) on a
temporary data directory, creates a write key in SQL, then runs CLIENTS processes
(default 96) that each send batches of BATCH track events (default 100, each with a
unique messageId and ~200 bytes of properties) over one keep-alive connection, one
request at a time, for SECONDS (default 20). Prints events/s, requests/s and the p50,
p99 and max latency of a request (a 200 means committed), then checks that
`tessera.events` holds exactly the acknowledged events. Target: 50,000 events/s with
batches of 100 on the 2-core development machine.

A request is answered once its group commit lands, so each client has one batch in
flight and throughput is about CLIENTS x BATCH per commit cycle: it takes many
concurrent connections (as a gateway behind a load balancer has) to fill the groups.
"""

import base64
import http.client
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESSERA = os.environ.get("TESSERA_BIN", os.path.join(ROOT, "target/release/tessera"))
# The password of tessera's superuser on the fresh data directory (TESSERA_ADMIN_PASSWORD).
PASSWORD = "tessera-bench"
CLIENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 96
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
BATCH = int(sys.argv[3]) if len(sys.argv) > 3 else 100


def start_tessera(data_dir):
    """Start a server on free ports; returns (process, pg port, http port)."""
    proc = subprocess.Popen([TESSERA, "serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0",
                             "--http", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TESSERA_ADMIN_PASSWORD": PASSWORD})
    pg_port = http_port = None
    for line in proc.stderr:
        if line.startswith("connect with:"):
            pg_port = int(line.split(" -p ")[1].split()[0])
        elif line.startswith("http listening on "):
            http_port = int(line.strip().rsplit(":", 1)[1])
        if pg_port and http_port:
            break
    else:
        raise SystemExit("tessera did not start")
    # Keep reading its log so that a full pipe never blocks the server (TESSERA_LOG=file
    # keeps it, e.g. with RUST_LOG=info,tessera::collect=debug for each commit's size and time).
    log = open(os.environ["TESSERA_LOG"], "w") if os.environ.get("TESSERA_LOG") else None
    threading.Thread(target=lambda: [log and log.write(line) for line in proc.stderr], daemon=True).start()
    return proc, pg_port, http_port


def client(n, port, key, deadline, results):
    """Send batches until `deadline`; put (acknowledged events, latencies, errors)."""
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    props = json.dumps({"sku": "SKU-12345", "price": 19.99, "currency": "EUR",
                        "category": "shoes", "campaign": "spring-sale", "pad": "x" * 60})
    acked, latencies, errors, round_ = 0, [], 0, 0
    while time.time() < deadline:
        events = ",".join(
            f'{{"type":"track","messageId":"c{n}-{round_}-{i}","userId":"user-{(round_ * BATCH + i) % 5000}",'
            f'"event":"Product Viewed","properties":{props},"timestamp":"2026-01-31T12:00:00Z"}}'
            for i in range(BATCH))
        body = f'{{"batch":[{events}]}}'.encode()
        round_ += 1
        start = time.perf_counter()
        try:
            conn.request("POST", "/v1/batch", body, headers)
            resp = conn.getresponse()
            resp.read()
            ok = resp.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies.append(time.perf_counter() - start)
        if ok:
            acked += BATCH
        else:
            errors += 1
    results.put((acked, latencies, errors))


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def main():
    with tempfile.TemporaryDirectory() as work:
        proc, pg_port, http_port = start_tessera(os.path.join(work, "data"))
        try:
            dsn = f"host=127.0.0.1 port={pg_port} user=tessera password={PASSWORD} dbname=tessera"
            with psycopg.connect(dsn, autocommit=True) as conn:
                key = conn.execute("CREATE WRITE KEY bench FOR SOURCE 'bench'").fetchone()[2]
            results = multiprocessing.Queue()
            deadline = time.time() + SECONDS
            started = time.time()
            workers = [multiprocessing.Process(target=client, args=(n, http_port, key, deadline, results))
                       for n in range(CLIENTS)]
            for w in workers:
                w.start()
            gathered = [results.get() for _ in workers]
            elapsed = time.time() - started
            for w in workers:
                w.join()
            acked = sum(g[0] for g in gathered)
            latencies = [x for g in gathered for x in g[1]]
            errors = sum(g[2] for g in gathered)
            with psycopg.connect(dsn, autocommit=True) as conn:
                stored = conn.execute("SELECT count(*) FROM tessera.events").fetchone()[0]
            print(f"clients {CLIENTS}, batch {BATCH}, {elapsed:.1f} s")
            print(f"events/s   {acked / elapsed:,.0f}  ({acked:,} acknowledged, {errors} failed requests)")
            print(f"requests/s {len(latencies) / elapsed:,.0f}")
            print(f"latency    p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
                  f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
            print(f"stored     {stored:,} events in tessera.events"
                  + ("" if stored == acked else f"  (MISMATCH: {acked:,} acknowledged)"))
            if stored != acked:
                sys.exit(1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
