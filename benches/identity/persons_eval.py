#!/usr/bin/env python3
"""Shared by splink_1m.py (Splink 5 / DuckDB) and splink_1m_tessera.py (tessera over the
wire) so their figures compare directly:

  pairwise_f1(con, clusters, truth)   cluster-level pairwise precision / recall / F1, one
                                      SQL query that runs unchanged on DuckDB and on tessera
  compare(splink, tessera)            the side-by-side table of two result JSONs, with
                                      ratios and the issue's gate

    python benches/identity/persons_eval.py SPLINK.json TESSERA.json   # print the table again
"""

import json
import sys

# The gate, Splink 5 (DuckDB backend) vs tessera on the same 1M-record person set.
GATE = {"predict_cluster_speedup": 5.0, "train_speedup": 4.0, "peak_mb": 2048}


def sql_str(s):
    return "'" + str(s).replace("'", "''") + "'"


def pairwise_f1(con, clusters, truth):
    """Pairwise precision/recall/F1 of the clustering in relation `clusters`
    (record_id, cluster_id) against `truth` (record_id, person_id), from group counts: the sum
    of C(n,2) over (cluster, person) groups (true positives), over clusters (predicted pairs)
    and over persons (true pairs). No pair lists. `con` is anything with
    `.execute(sql).fetchone()`: a DuckDB connection (truth: read_parquet('…')) or a psycopg
    connection to tessera (truth: a registered relation)."""
    tp, pred, true = con.execute(f"""
        WITH j AS (SELECT c.cluster_id, t.person_id FROM {clusters} c
                   JOIN {truth} t ON c.record_id = t.record_id),
             a AS (SELECT count(*) AS n FROM j GROUP BY cluster_id, person_id),
             b AS (SELECT count(*) AS n FROM j GROUP BY cluster_id),
             c AS (SELECT count(*) AS n FROM j GROUP BY person_id)
        SELECT (SELECT sum(n * (n - 1) / 2) FROM a), (SELECT sum(n * (n - 1) / 2) FROM b),
               (SELECT sum(n * (n - 1) / 2) FROM c)""").fetchone()
    tp, pred, true = int(tp or 0), int(pred or 0), int(true or 0)
    p, r = tp / pred if pred else 0.0, tp / true if true else 0.0
    return {"tp": tp, "predicted_pairs": pred, "true_pairs": true,
            "precision": round(p, 4), "recall": round(r, 4),
            "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}


def _ratio(a, b):
    return f"{a / b:.1f}x" if a and b else "–"


def compare(s, t):
    """Side-by-side lines for Splink result `s` and tessera result `t` (the JSONs the two
    scripts write). tessera builds its candidate pairs once and both training and prediction
    read them; the gate counts them in training (where they are first needed), and the
    "pairs in predict" row shows the other way of counting."""
    ss, ts = s["seconds"], t["seconds"]
    s_train = ss["train_u"] + ss["train_em"]
    t_train = ts["pairs"] + ts["train_u"] + ts["train_em"]
    s_pc = ss["predict"] + ss["cluster"]
    t_pc = ts["predict"] + ts["cluster"]
    rows = [
        ("records", f"{s['records']:,}", f"{t['records']:,}", ""),
        ("clusters", f"{s['clusters']:,}", f"{t['clusters']:,}", ""),
        ("precision", f"{s['precision']:.4f}", f"{t['precision']:.4f}", ""),
        ("recall", f"{s['recall']:.4f}", f"{t['recall']:.4f}", ""),
        ("F1", f"{s['f1']:.4f}", f"{t['f1']:.4f}", f"{t['f1'] - s['f1']:+.4f}"),
        ("prepare s", f"{ss['prepare']:.1f}", f"{ts['prepare']:.1f}", _ratio(ss["prepare"], ts["prepare"])),
        ("train s (tessera: pairs + u + EM)", f"{s_train:.1f}",
         f"{t_train:.1f} ({ts['pairs']:.1f} + {ts['train_u']:.1f} + {ts['train_em']:.1f})", _ratio(s_train, t_train)),
        ("predict + cluster s", f"{s_pc:.1f}", f"{t_pc:.1f} ({ts['predict']:.1f} + {ts['cluster']:.1f})",
         _ratio(s_pc, t_pc)),
        ("  same, tessera pairs in predict", f"{s_pc:.1f}", f"{ts['pairs'] + t_pc:.1f}", _ratio(s_pc, ts["pairs"] + t_pc)),
        ("total s", f"{ss['total']:.1f}", f"{ts['total']:.1f}", _ratio(ss["total"], ts["total"])),
        ("CPU s", f"{s['cpu_seconds']:.1f}", f"{t['cpu_seconds']:.1f}", _ratio(s["cpu_seconds"], t["cpu_seconds"])),
        ("peak MB", f"{s['peak_rss_mb']:,}", f"{t['peak_rss_mb']:,}", _ratio(s["peak_rss_mb"], t["peak_rss_mb"])),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows + [("", "Splink 5", "", "")])
    w2 = max(len(r[2]) for r in rows + [("", "", "tessera", "")])
    out = [f"{'':{w0}}  {'Splink 5':>{w1}}  {'tessera':>{w2}}  Splink/tessera"]
    out += [f"{a:{w0}}  {b:>{w1}}  {c:>{w2}}  {d}" for a, b, c, d in rows]
    checks = [
        ("quality (F1 at least Splink's)", t["f1"] >= s["f1"]),
        (f"predict + cluster >= {GATE['predict_cluster_speedup']:.0f}x faster",
         t_pc > 0 and s_pc / t_pc >= GATE["predict_cluster_speedup"]),
        (f"training >= {GATE['train_speedup']:.0f}x faster", t_train > 0 and s_train / t_train >= GATE["train_speedup"]),
        (f"peak memory <= {GATE['peak_mb']:,} MB", t["peak_rss_mb"] <= GATE["peak_mb"]),
    ]
    out.append("gate" + ("" if s["records"] >= 1_000_000 else " (informational: the gate is defined at 1M records)") + ":")
    out += [f"  {'PASS' if ok else 'FAIL'}  {name}" for name, ok in checks]
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    with open(sys.argv[1]) as f1, open(sys.argv[2]) as f2:
        print(compare(json.load(f1), json.load(f2)))
