"""Throwaway servers on loopback for the side-by-side benchmarks: a PostgreSQL 15
cluster (initdb from the Debian postgresql package) and a tessera server (release build,
or TESSERA_BIN), each in its own directory under `work`. Each start returns
(port, stop)."""

import contextlib
import os
import shutil
import tempfile
import signal
import socket
import subprocess
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESSERA = os.environ.get("TESSERA_BIN", os.path.join(ROOT, "target/release/tessera"))
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
# The password of tessera's superuser on a fresh data directory (TESSERA_ADMIN_PASSWORD).
TESSERA_PASSWORD = "tessera-bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres_user(cmd):
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


def start_postgres(work):
    data = os.path.join(work, "pg")
    os.makedirs(data)
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run(as_postgres_user([f"{PG_BIN}/initdb", "-D", data, "-U", "postgres", "-A", "trust"]),
                   check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    subprocess.run(as_postgres_user([f"{PG_BIN}/pg_ctl", "-D", data, "-w", "-l", os.path.join(data, "log"),
                                     "-o", f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=on",
                                     "start"]), check=True, stdout=subprocess.DEVNULL)
    return port, lambda: subprocess.run(as_postgres_user([f"{PG_BIN}/pg_ctl", "-D", data, "-m", "fast", "stop"]),
                                        stdout=subprocess.DEVNULL)


def start_tessera(work):
    port = free_port()
    proc = subprocess.Popen([TESSERA, "serve", "--http", "off", "--data-dir", os.path.join(work, "tessera"),
                             "--listen", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TESSERA_ADMIN_PASSWORD": TESSERA_PASSWORD})
    for line in proc.stderr:
        if line.startswith("connect with:"):
            break
    else:
        raise SystemExit("tessera did not start")
    # Keep reading its log so that a full pipe never blocks the server.
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()

    def stop():
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return port, stop


@contextlib.contextmanager
def side_by_side(prefix="tessera-bench-"):
    """A fresh work directory with both servers started in it: yields
    (work, {"tessera": dsn, "postgres": dsn}); on exit stops both and deletes it."""
    work = tempfile.mkdtemp(prefix=prefix)
    os.chmod(work, 0o777)
    stops = []
    try:
        pg_port, stop = start_postgres(work)
        stops.append(stop)
        t_port, stop = start_tessera(work)
        stops.append(stop)
        yield work, {
            "tessera": f"host=127.0.0.1 port={t_port} user=tessera password={TESSERA_PASSWORD} dbname=tessera",
            "postgres": f"host=127.0.0.1 port={pg_port} user=postgres dbname=postgres",
        }
    finally:
        for stop in reversed(stops):
            stop()
        shutil.rmtree(work, ignore_errors=True)
