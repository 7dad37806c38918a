#!/usr/bin/env python3
"""Splink 5 (DuckDB backend) on gen_persons.py's synthetic person set: timing of training
(u by random sampling + m by EM) and of predict + cluster, peak memory, cluster-level F1.

    .venv/bin/python benches/identity/gen_persons.py --records 1000000 --out /tmp/idbench/persons_1m.parquet
    .venv/bin/python benches/identity/splink_1m.py /tmp/idbench/persons_1m.parquet [--u-pairs 5e7]

Phases, each timed:
  prepare   read Parquet, standardise (trim + lower case names, email, address, city;
            first_name without dots; phone to digits with +44 -> 0; postcode upper case
            as 'OUTWARD INWARD'), register in DuckDB;
  train     probability_two_random_records_match from deterministic rules (recall 0.6),
            u by random sampling (--u-pairs, seed 1), m by EM on two passes blocked on dob
            and on email;
  predict   pairs from the blocking rules (see BLOCKING; --blocking five uses those of
            splink_1m_tessera.py), scored, kept at p >= 0.5;
  cluster   connected components at p >= --threshold (0.9).
Peak memory: ru_maxrss of this process (DuckDB runs in-process). F1 is pairwise over the
clusters: a predicted pair is two records in the same cluster, a true pair two records of
the same person (computed with group-by counts, no pair lists; persons_eval.py, shared with
splink_1m_tessera.py).
"""

import argparse
import json
import logging
import os
import resource
import time

import duckdb

import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from persons_eval import pairwise_f1, sql_str

BLOCKING = [
    block_on("surname", "dob"),
    block_on("first_name", "dob"),
    block_on("email"),
    block_on("phone"),
    block_on("postcode", "first_name"),
    block_on("postcode", "surname"),
    block_on("first_name", "surname", "city"),
]
# --blocking five: the five rules splink_1m_tessera.py uses (no (first_name, surname, city),
# which makes 12.9M of the pairs at 1M records; postcode alone instead of with a name).
BLOCKING_FIVE = [
    block_on("surname", "dob"),
    block_on("first_name", "dob"),
    block_on("email"),
    block_on("phone"),
    block_on("postcode"),
]

STANDARDISE = """
SELECT record_id,
       nullif(replace(lower(trim(first_name)), '.', ''), '') AS first_name,
       nullif(lower(trim(surname)), '') AS surname,
       nullif(trim(dob), '') AS dob,
       nullif(lower(trim(email)), '') AS email,
       nullif(CASE WHEN starts_with(d, '44') THEN '0' || d[3:] ELSE d END, '') AS phone,
       nullif(lower(trim(address)), '') AS address,
       nullif(lower(trim(city)), '') AS city,
       CASE WHEN length(pc) >= 5 THEN pc[:length(pc) - 3] || ' ' || pc[length(pc) - 2:] END AS postcode
FROM (SELECT *, regexp_replace(phone, '[^0-9]', '', 'g') AS d,
             upper(replace(postcode, ' ', '')) AS pc
      FROM read_parquet(?))
"""


def settings(blocking=BLOCKING):
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="record_id",
        comparisons=[
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True, datetime_format="%Y-%m-%d"),
            cl.EmailComparison("email"),
            cl.DamerauLevenshteinAtThresholds("phone", [1, 2]),
            cl.JaroWinklerAtThresholds("address", [0.95, 0.88, 0.7]),
            cl.ExactMatch("city").configure(term_frequency_adjustments=True),
            cl.PostcodeComparison("postcode"),
        ],
        blocking_rules_to_generate_predictions=blocking,
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("persons", help="gen_persons.py output (its .truth.parquet next to it)")
    ap.add_argument("--u-pairs", type=float, default=5e7, help="max_pairs for u random sampling")
    ap.add_argument("--em-max-pairs", type=float, default=None, help="max_pairs for each EM pass")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--blocking", choices=["splink", "five"], default="splink",
                    help="prediction blocking rules: this script's seven (default) or the five of splink_1m_tessera.py")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    stem = args.persons[:-8] if args.persons.endswith(".parquet") else args.persons
    truth = stem + ".truth.parquet"

    t = {}
    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    con.execute(f"CREATE TABLE persons AS {STANDARDISE}", [args.persons])
    db = DuckDBAPI(connection=con)
    df = db.register("persons", table_name="persons_in")
    linker = Linker(df, settings(BLOCKING_FIVE if args.blocking == "five" else BLOCKING), log_level=logging.WARNING)
    t["prepare"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "surname", "dob"), block_on("email", "dob")], recall=0.6)
    linker.training.estimate_u_using_random_sampling(max_pairs=args.u_pairs, seed=1)
    t["train_u"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"), max_pairs=args.em_max_pairs)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("email"), max_pairs=args.em_max_pairs)
    t["train_em"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    pred = linker.inference.predict(threshold_match_probability=0.5)
    t["predict"] = time.perf_counter() - t3
    t4 = time.perf_counter()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold_match_probability=args.threshold)
    t["cluster"] = time.perf_counter() - t4
    t["total"] = time.perf_counter() - t0

    n_pairs = con.execute(f"SELECT count(*) FROM {pred.physical_name}").fetchone()[0]
    n_rec, n_clusters = con.execute(
        f"SELECT count(*), count(DISTINCT cluster_id) FROM {clusters.physical_name}").fetchone()
    acc = pairwise_f1(con, clusters.physical_name, f"read_parquet({sql_str(truth)})")
    out = {
        "records": n_rec, "clusters": n_clusters, "scored_pairs_p_ge_0.5": n_pairs,
        "persons": con.execute("SELECT count(DISTINCT person_id) FROM read_parquet(?)", [truth]).fetchone()[0],
        "threshold": args.threshold, "u_pairs": args.u_pairs, "threads": args.threads, "blocking": args.blocking,
        **acc,
        "seconds": {k: round(v, 1) for k, v in t.items()},
        "cpu_seconds": round(resource.getrusage(resource.RUSAGE_SELF).ru_utime
                             + resource.getrusage(resource.RUSAGE_SELF).ru_stime, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    s = out["seconds"]
    print(f"records {n_rec:,}  persons {out['persons']:,}  clusters {n_clusters:,}  pairs scored (p>=0.5) {n_pairs:,}")
    print(f"train: u {s['train_u']}s + EM {s['train_em']}s   predict {s['predict']}s + cluster {s['cluster']}s"
          f"   (prepare {s['prepare']}s, total {s['total']}s wall, {out['cpu_seconds']}s CPU)")
    print(f"pairwise precision {acc['precision']:.4f}  recall {acc['recall']:.4f}  F1 {acc['f1']:.4f}   "
          f"peak RSS {out['peak_rss_mb']:,} MB")
    print(json.dumps(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
