#!/usr/bin/env python3
"""tessera's probabilistic matching on gen_persons.py's synthetic person set: the same task,
phases and F1 as splink_1m.py (Splink 5, DuckDB backend), all in SQL over the wire against a
fresh `tessera serve`.

    TESSERA_BIN=target/release/tessera .venv/bin/python benches/identity/splink_1m_tessera.py \
        /tmp/idbench/persons_1m.parquet [--json OUT] [--compare SPLINK.json] [--show-model]
    benches/identity/run_splink_1m.sh          # both, then the side-by-side table

Phases, each one or more SQL statements, timed separately (wall, and the server's CPU):
  prepare   `p`: the records standardised as splink_1m.py does (trim, lower case, first name
            without dots, phone digits with 44 -> 0, postcode 'OUTWARD INWARD'), plus the
            nickname root of the first name (name_root), street types shortened (Street ->
            st, Road -> rd, ...), and term frequencies of first name and surname.
  pairs     `cand`: the candidate pairs of the blocking rules with their comparison levels,
            built once (CREATE TABLE AS for the first rule, INSERT for the others).
  train_u   `rnd`: --u-pairs random pairs with the same comparison levels (u).
  train_em  one train_match_model call, a session per blocking rule over that rule's
            candidates with the rule's own comparisons fixed; it averages the sessions'
            m and computes the prior as described below.
  predict   score_matches over all candidates; pairs at p >= 0.5 kept in `scores` (as
            Splink's predict keeps them).
  cluster   pairs at p >= --threshold (0.9) as match_pair edges into resolve_identities,
            materialised as `clusters`.
The side-by-side table counts pairs in training (pairs + train_u + train_em), because
training reads the candidates first; predict then scores the same table without building
pairs again. Splink's predict builds and compares its pairs itself, so persons_eval.compare
also prints predict + cluster with tessera's pairs phase added: judge the gate both ways.

Peak memory: VmHWM of the server from /proc/<pid>/status, read right after the cluster phase
(before the untimed diagnostics and F1); the client holds no data. F1: persons_eval.pairwise_f1,
the query splink_1m.py runs in DuckDB, run here by tessera against the truth file
registered as an external table.

Design, and why (the aim: Splink's quality with as little work as possible):
- Blocking: (surname, dob) | (first_name, dob) | email | phone | postcode. Splink's
  (first_name, surname, city) rule is left out: at 1M records it alone makes 12.9M pairs,
  of which 310k are true and nearly all found by another rule; postcode alone (0.56M pairs,
  0.41M true) replaces (postcode, first_name) and (postcode, surname). On the 1M set the
  five rules hold 99.5 % of the true pairs, Splink's seven 99.2 %. Each rule's join drops
  the pairs an earlier rule produced (as Splink does), so comparisons are computed once per
  pair; in_<rule> booleans record every rule a pair satisfies.
- Comparisons (higher level is closer, NULL when a side is missing):
    first_name  exact (TF) / same nickname root (name_root) / JW >= 0.92 / JW >= 0.8 or an
                initial / other
    surname     exact (TF) / JW >= 0.92 / JW >= 0.8 or equal to the other's first name / other
    dob         exact / one edit or day and month swapped / same year / other
    email       exact / one edit / same local part / other
    phone       exact / one edit / other
    location    one comparison for address, city and postcode, since a move changes all
                three and three comparisons would count it three times: same postcode and
                address JW >= 0.88 / same postcode or address JW >= 0.95 / address JW >=
                0.88 or postcode one edit / same outward code / same city / other.
                (--separate-location compares them apart, as Splink does: lower recall.)
  They are CASE chains, cheap tests first: CASE evaluates a branch only on the rows still
  undecided. Each Jaro-Winkler is computed once per pair in an inner projection (only where
  the values differ), and damerau_levenshtein runs only behind a guard every pair one edit
  apart passes (the first or last k characters equal; same length +-1 and same domain or
  local part for emails): random pairs almost never reach it.
- u from --u-pairs random pairs (default 1e6; F1 at 200k: 0.9970 with 2e5, 0.9972 with 1e6),
  record i against record (i + k) mod N for a few random offsets k: integer hash joins, no
  sort. gen_persons.py shuffles the records, so ids say nothing about persons. Splink
  samples 5e7 pairs.
- m by EM on the candidates themselves: one session per blocking rule, the rule's columns
  fixed (train_match_model's third argument), so training needs no pairs beyond the ones
  prediction scores anyway. (Splink runs EM over every pair sharing a dob, 20M at 1M
  records, and every pair sharing an email.) The postcode rule trains no session: it forces
  location to one of two levels, which `fixed` cannot say.
- The prior: train_match_model with the number of pairs, n(n-1)/2, computes per session
      P(match) = lambda * P(pass) / P(pass | match)
  (lambda: the match share among the rule's pairs; P(pass): the rule's pairs over all
  pairs; P(pass | match): the fixed comparisons' m, learnt in the other sessions, times
  the share of random pairs with both values present) and averages the sessions.
- Pair tables hold integer ids and SMALLINT levels; the training views select only the cmp_*
  columns (train_match_model reads its inputs whole).
- Edges: every record with its own id ('r' || record_id; a bare '0' would be a blocked
  placeholder), and per pair at p >= threshold the right record with the left one's id:
  N + pairs rows, every record in the output.
"""

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time

import psycopg

from bench_resolve import Tessera, log
from persons_eval import compare, pairwise_f1, sql_str

SEPARATE_LOCATION = False  # --separate-location: address, city and postcode compared apart

# Blocking rules: name, the p columns that must be equal, the comparisons that then agree
# at their top level (train_match_model's `fixed`; postcode's only with --separate-location).
RULES = [
    ("surname_dob", ["surname", "dob"], "surname,dob"),
    ("first_dob", ["first_name", "dob"], "first_name,dob"),
    ("email", ["email"], "email"),
    ("phone", ["phone"], "phone"),
    ("postcode", ["postcode"], "postcode"),
]

# Street types as gen_persons.py writes them, long form -> the short one.
STREET_TYPES = {"street": "st", "road": "rd", "avenue": "ave", "lane": "ln", "drive": "dr",
                "close": "cl", "court": "ct", "crescent": "cres", "place": "pl", "gardens": "gdns",
                "terrace": "ter", "grove": "gr", "square": "sq"}

# Standardised as splink_1m.py's STANDARDISE does, plus the nickname root of the first name
# and street types shortened. Term frequencies by GROUP BY, each name expression repeated on
# `persons` (cheap, where a CTE would be inlined into every join); name_root runs once per
# distinct first name.
FIRST = "nullif(replace(lower(trim(first_name)), '.', ''), '')"
SURNAME = "nullif(lower(trim(surname)), '')"
CITY = "nullif(lower(trim(city)), '')"
PREPARE = f"""
CREATE TABLE p AS
WITH s AS (
  SELECT record_id,
         {FIRST} AS first_name,
         {SURNAME} AS surname,
         nullif(trim(dob), '') AS dob,
         nullif(lower(trim(email)), '') AS email,
         regexp_replace(phone, '[^0-9]', '', 'g') AS d,
         nullif(lower(trim(address)), '') AS address,
         split_part(lower(trim(address)), ' ', -1) AS street_type,
         {CITY} AS city,
         upper(replace(postcode, ' ', '')) AS pc
    FROM persons)
SELECT y.record_id,
       y.first_name,
       y.fn_root,
       y.surname,
       y.dob,
       y.email,
       nullif(CASE WHEN d LIKE '44%' THEN concat('0', substr(d, 3)) ELSE d END, '') AS phone,
       CASE {{street_case}} ELSE address END AS address,
       y.city,
       CASE WHEN length(pc) >= 5 THEN concat(substr(pc, 1, length(pc) - 3), ' ', right(pc, 3)) END AS postcode,
       y.n_first / {{n}} AS tf_first_name,
       y.n_surname / {{n}} AS tf_surname,
       c.n / {{n}} AS tf_city
  -- The small term-frequency relations on the left of RIGHT JOINs: a hash join builds its
  -- left side, and with LEFT JOINs from `s` it would hold all the records in memory.
  FROM (SELECT {CITY} AS v, CAST(count(*) AS DOUBLE) AS n FROM persons GROUP BY 1) c
  RIGHT JOIN (
    SELECT x.*, g.n AS n_surname
      FROM (SELECT {SURNAME} AS v, CAST(count(*) AS DOUBLE) AS n FROM persons GROUP BY 1) g
      RIGHT JOIN (
        SELECT s.*, f.root AS fn_root, f.n AS n_first
          FROM (SELECT v, name_root(v) AS root, n
                  FROM (SELECT {FIRST} AS v, CAST(count(*) AS DOUBLE) AS n FROM persons GROUP BY 1)) f
          RIGHT JOIN s ON f.v = s.first_name) x
      ON g.v = x.surname) y
  ON c.v = y.city
"""


def street_case():
    return " ".join(
        f"WHEN street_type = '{k}' THEN concat(left(address, length(address) - {len(k)}), '{v}')"
        for k, v in STREET_TYPES.items())


FIELDS = ["first_name", "fn_root", "surname", "dob", "email", "phone", "address", "city", "postcode"]
# Similarities compared against several thresholds: computed once per pair, in an inner
# projection, and only where the two values differ (equal values score 1).
SIMILARITIES = {"first_name": "jaro_winkler", "surname": "jaro_winkler", "address": "jaro_winkler"}


def pair_columns():
    """The inner projection over a join of p as `l` and `r`: both sides' fields as l_*, r_*,
    the term frequencies, and sim_* (see SIMILARITIES)."""
    cols = [f"{side}.{f} AS {side}_{f}" for f in FIELDS for side in ("l", "r")]
    cols += [f"l.tf_{f} AS tf_{f}" for f in ("first_name", "surname", "city")]
    cols += [f"CASE WHEN l.{f} = r.{f} THEN 1.0 ELSE {fn}(l.{f}, r.{f}) END AS sim_{f}"
             for f, fn in SIMILARITIES.items()]
    return cols


def comparisons():
    """cmp_* level expressions over pair_columns() (NULL: a side is missing). CASE evaluates
    each branch only on the rows still undecided, so damerau_levenshtein runs only on the
    pairs that are neither missing nor equal."""
    def c(col, *branches):
        body = " ".join(f"WHEN {cond} THEN {lvl}" for cond, lvl in branches)
        return (f"CAST(CASE WHEN l_{col} IS NULL OR r_{col} IS NULL THEN NULL {body} ELSE 0 END AS SMALLINT) "
                f"AS cmp_{col}")
    eq = lambda col: f"l_{col} = r_{col}"  # noqa: E731

    def dl1(col, guard):
        """damerau_levenshtein <= 1, run only where `guard` holds: a cheap test that every
        pair one edit apart passes (a lazy inner CASE: AND would evaluate both sides)."""
        return f"CASE WHEN {guard} THEN damerau_levenshtein(l_{col}, r_{col}) <= 1 ELSE false END"

    def ends(col, k):
        """One edit (insertion, deletion, substitution, adjacent transposition) leaves the
        first k or the last k characters of a string of more than 2k unchanged."""
        return (f"(length(l_{col}) <= {2 * k} OR left(l_{col}, {k}) = left(r_{col}, {k}) "
                f"OR right(l_{col}, {k}) = right(r_{col}, {k}))")
    out = [
        c("first_name", (eq("first_name"), 4), ("l_fn_root = r_fn_root", 3), ("sim_first_name >= 0.92", 2),
          ("sim_first_name >= 0.8 OR ((length(l_first_name) = 1 OR length(r_first_name) = 1) "
           "AND left(l_first_name, 1) = left(r_first_name, 1))", 1)),
        c("surname", (eq("surname"), 3), ("sim_surname >= 0.92", 2),
          ("sim_surname >= 0.8 OR l_surname = r_first_name", 1)),
        c("dob", (eq("dob"), 3),
          (f"l_dob = concat(substr(r_dob, 1, 5), substr(r_dob, 9, 2), '-', substr(r_dob, 6, 2)) "
           f"OR {dl1('dob', ends('dob', 4))}", 2),
          ("left(l_dob, 4) = left(r_dob, 4)", 1)),
        # One edit changes the length by at most one, and leaves the domain or the local part
        # (an edit of the '@' itself is not looked for).
        c("email", (eq("email"), 3),
          (dl1("email", "abs(length(l_email) - length(r_email)) <= 1 AND (split_part(l_email, '@', 2) = "
                        "split_part(r_email, '@', 2) OR split_part(l_email, '@', 1) = split_part(r_email, '@', 1))"), 2),
          ("split_part(l_email, '@', 1) = split_part(r_email, '@', 1)", 1)),
        c("phone", (eq("phone"), 2), (dl1("phone", ends("phone", 4)), 1)),
    ]
    if not SEPARATE_LOCATION:
        # One comparison for where the person lives: a move changes address, city and
        # postcode together, and three separate comparisons would count it three times.
        out.append("CAST(CASE WHEN (l_address IS NULL OR r_address IS NULL) AND (l_postcode IS NULL OR r_postcode IS NULL) "
                   "AND (l_city IS NULL OR r_city IS NULL) THEN NULL "
                   "WHEN l_postcode = r_postcode AND sim_address >= 0.88 THEN 5 "
                   "WHEN l_postcode = r_postcode OR sim_address >= 0.95 THEN 4 "
                   # Postcodes are 'OUTWARD INWARD': one edit leaves one of the two parts.
                   "WHEN sim_address >= 0.88 OR " + dl1("postcode", "right(l_postcode, 3) = right(r_postcode, 3) OR "
                                                                 "split_part(l_postcode, ' ', 1) = split_part(r_postcode, ' ', 1)")
                   + " THEN 3 "
                   "WHEN split_part(l_postcode, ' ', 1) = split_part(r_postcode, ' ', 1) THEN 2 "
                   "WHEN l_city = r_city OR jaro_winkler(l_city, r_city) >= 0.9 THEN 1 "
                   "ELSE 0 END AS SMALLINT) AS cmp_location")
        return out
    return out + [
        c("address", (eq("address"), 4), ("sim_address >= 0.95", 3), ("sim_address >= 0.88", 2),
          ("sim_address >= 0.7", 1)),
        c("city", (eq("city"), 2), ("jaro_winkler(l_city, r_city) >= 0.9", 1)),
        c("postcode", (eq("postcode"), 3), (dl1("postcode", "right(l_postcode, 3) = right(r_postcode, 3) OR "
                                                       "split_part(l_postcode, ' ', 1) = split_part(r_postcode, ' ', 1)"), 2),
          ("split_part(l_postcode, ' ', 1) = split_part(r_postcode, ' ', 1)", 1)),
    ]


def cmp_cols():
    return (["cmp_first_name", "cmp_surname", "cmp_dob", "cmp_email", "cmp_phone"]
            + (["cmp_address", "cmp_city", "cmp_postcode"] if SEPARATE_LOCATION else ["cmp_location"]))


def tf_cols():
    return ["tf_first_name", "tf_surname"] + (["tf_city"] if SEPARATE_LOCATION else [])


def training_rules():
    """The rules that train a session: all but postcode when location is one comparison (a
    postcode block forces it to one of two top levels, which `fixed` cannot express)."""
    return [r for r in RULES if SEPARATE_LOCATION or r[0] != "postcode"]


def rule_cond(cols, l="l.", r="r."):
    return " AND ".join(f"{l}{c} = {r}{c}" for c in cols)


def pairs_sql():
    """One statement per blocking rule: CREATE TABLE cand for the first, INSERT for the rest.
    Rule k keeps only the pairs no earlier rule produced; in_<rule> says which rules a pair
    satisfies (the training sessions select on them)."""
    stmts = []
    flags = [f"coalesce({rule_cond(cols, 'l_', 'r_')}, false) AS in_{name}" for name, cols, _ in RULES]
    outer = ", ".join(["l_id", "r_id"] + flags + comparisons() + tf_cols())
    inner = ", ".join(["l.record_id AS l_id", "r.record_id AS r_id"] + pair_columns())
    for k, (name, cols, _) in enumerate(RULES):
        earlier = "".join(f" AND NOT coalesce({rule_cond(c)}, false)" for _, c, _ in RULES[:k])
        q = (f"SELECT {outer} FROM (SELECT {inner} FROM p l JOIN p r ON {rule_cond(cols)} "
             f"AND l.record_id < r.record_id{earlier})")
        stmts.append((name, f"CREATE TABLE cand AS {q}" if k == 0 else f"INSERT INTO cand {q}"))
    return stmts


def random_pairs_sql(n, u_pairs, seed):
    """Random pairs for u: record i against record (i + k) mod n for enough random offsets k
    (record ids are 0..n-1 in shuffled order), the last offset cut short."""
    rng = random.Random(seed)
    offsets, left = [], int(u_pairs)
    used = set()
    while left > 0 and len(used) < (n - 1) // 2:
        k = rng.randrange(1, n)
        if k in used or (n - k) in used:
            continue
        used.add(k)
        offsets.append((k, min(left, n)))
        left -= n
    joins = " UNION ALL ".join(
        f"SELECT {', '.join(pair_columns())} FROM p l JOIN p r ON r.record_id = (l.record_id + {k}) % {n}"
        + (f" WHERE l.record_id < {lim}" if lim < n else "") for k, lim in offsets)
    return f"CREATE TABLE rnd AS SELECT {', '.join(comparisons())} FROM ({joins})"


def train_sql(n):
    """One train_match_model call: a session per training rule (the `rule` column of
    `train`, every candidate pair the rule yields), each with the rule's own comparisons
    fixed, and n(n-1)/2 pairs to choose from for the prior."""
    cmp = ", ".join(cmp_cols())
    train = "\nUNION ALL\n".join(f"SELECT '{name}' AS rule, {cmp} FROM cand WHERE in_{name}"
                                  for name, _, _ in training_rules())
    fixed = "; ".join(f"{name}: {cols}" for name, _, cols in training_rules())
    return [
        f"CREATE VIEW rnd_cmp AS SELECT {cmp} FROM rnd",
        f"CREATE VIEW train AS {train}",
        f"CREATE TABLE model AS SELECT * FROM train_match_model('train', 'rnd_cmp', '{fixed}', {n * (n - 1) // 2})",
    ]


def predict_sql():
    cols = ", ".join(cmp_cols() + tf_cols())
    return [
        f"""CREATE VIEW cand_pairs AS
            SELECT 'p' AS left_source, l_id AS left_key, 'p' AS right_source, r_id AS right_key, {cols}
              FROM cand""",
        "CREATE TABLE scores AS SELECT * FROM score_matches('cand_pairs', 'model') WHERE match_probability >= 0.5",
    ]


def cluster_sql(threshold):
    """Edges for resolve_identities, id_type match_pair (priority 10, no cap): every record
    with its own id ('r' || record_id: a bare '0' would be a blocked placeholder), and for
    each pair at p >= threshold, the right record with the left one's id. That puts every
    record in the output (singletons too) with N + pairs rows, not N + 2 pairs."""
    return [
        f"""CREATE VIEW edges AS
            SELECT 'p' AS source, CAST(record_id AS TEXT) AS record_key, 'match_pair' AS id_type,
                   concat('r', CAST(record_id AS TEXT)) AS id_value FROM p
            UNION ALL
            SELECT 'p', right_key, 'match_pair', concat('r', left_key)
              FROM scores WHERE match_probability >= {threshold}""",
        """CREATE TABLE clusters AS
            SELECT CAST(record_key AS BIGINT) AS record_id, unified_id AS cluster_id
              FROM resolve_identities('edges')""",
    ]


def target(sql):
    """The relation a CREATE / INSERT statement writes."""
    return re.search(r"(?:TABLE|VIEW|INTO)\s+(\w+)", sql).group(1)


class Phases:
    """Wall and server-CPU seconds per phase, one or more statements each."""

    def __init__(self, conn, srv, verbose):
        self.conn, self.srv, self.verbose = conn, srv, verbose
        self.wall, self.cpu, self.steps = {}, {}, []

    def run(self, phase, label, sql):
        c0, t0 = self.srv.cpu(), time.perf_counter()
        self.conn.execute(sql)
        dt, dc = time.perf_counter() - t0, self.srv.cpu() - c0
        self.wall[phase] = self.wall.get(phase, 0.0) + dt
        self.cpu[phase] = self.cpu.get(phase, 0.0) + dc
        self.steps.append({"phase": phase, "step": label, "s": round(dt, 2), "cpu_s": round(dc, 2)})
        if self.verbose:
            log(f"  {phase:9s} {label:22s} {dt:7.2f} s  (server CPU {dc:.2f} s, RSS {self.srv.rss_mb():,.0f} MB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("persons", help="gen_persons.py output (its .truth.parquet next to it)")
    ap.add_argument("--u-pairs", type=float, default=1e6, help="random pairs for u (default 1e6)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the random-pair offsets")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--work", default=os.environ.get("IDBENCH_WORK", "/tmp/tessera-idbench"),
                    help="where the server's data dir and log go")
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--compare", metavar="SPLINK_JSON", help="print the side-by-side table against this splink_1m.py result")
    ap.add_argument("--show-model", action="store_true", help="print the trained model and the sessions' priors")
    ap.add_argument("--separate-location", action="store_true",
                    help="compare address, city and postcode separately (as Splink does) instead of one location comparison")
    ap.add_argument("--keep", action="store_true", help="keep the server's data dir and log (under --work)")
    ap.add_argument("--quiet", action="store_true", help="no per-statement timings on stderr")
    args = ap.parse_args()
    global SEPARATE_LOCATION
    SEPARATE_LOCATION = args.separate_location
    binary = os.environ.get("TESSERA_BIN", "target/release/tessera")
    persons = os.path.abspath(args.persons)
    stem = persons[:-8] if persons.endswith(".parquet") else persons
    truth = stem + ".truth.parquet"
    os.makedirs(args.work, exist_ok=True)
    work = tempfile.mkdtemp(prefix="persons-", dir=args.work)

    srv = Tessera(binary, work, allow=[persons, truth])
    try:
        with psycopg.connect(srv.dsn, autocommit=True) as conn:
            ph = Phases(conn, srv, not args.quiet)
            c_client0 = time.process_time()
            t0 = time.perf_counter()
            ph.run("prepare", "register persons",
                   f"CREATE EXTERNAL TABLE persons STORED AS PARQUET LOCATION {sql_str(persons)}")
            t_n = time.perf_counter()
            n, lo, hi = conn.execute("SELECT count(*), min(record_id), max(record_id) FROM persons").fetchone()
            ph.wall["prepare"] += time.perf_counter() - t_n
            if (lo, hi) != (0, n - 1):
                raise SystemExit(f"record ids are not 0..{n - 1} ({lo}..{hi}): random pairs need them dense")
            ph.run("prepare", "p", PREPARE.format(street_case=street_case(), n=n))
            for name, sql in pairs_sql():
                ph.run("pairs", name, sql)
            ph.run("train_u", "random pairs", random_pairs_sql(n, args.u_pairs, args.seed))
            for sql in train_sql(n):
                ph.run("train_em", target(sql), sql)
            for sql in predict_sql():
                ph.run("predict", target(sql), sql)
            for sql in cluster_sql(args.threshold):
                ph.run("cluster", target(sql), sql)
            total = time.perf_counter() - t0
            client_cpu = time.process_time() - c_client0
            peak = srv.hwm_mb()
            server_cpu = srv.cpu()

            # Untimed: counts, blocking recall, F1.
            conn.execute(f"CREATE EXTERNAL TABLE truth STORED AS PARQUET LOCATION {sql_str(truth)}")
            n_cand, n_rnd = (conn.execute("SELECT count(*) FROM cand").fetchone()[0],
                             conn.execute("SELECT count(*) FROM rnd").fetchone()[0])
            by_rule = conn.execute("SELECT " + ", ".join(f"sum(CASE WHEN in_{r} THEN 1 ELSE 0 END)" for r, _, _ in RULES)
                                   + " FROM cand").fetchone()
            n_true_cand = conn.execute("""SELECT count(*) FROM cand c JOIN truth a ON a.record_id = c.l_id
                                          JOIN truth b ON b.record_id = c.r_id WHERE a.person_id = b.person_id""").fetchone()[0]
            n_scored = conn.execute("SELECT count(*) FROM scores").fetchone()[0]
            n_rec, n_clusters = conn.execute("SELECT count(*), count(DISTINCT cluster_id) FROM clusters").fetchone()
            acc = pairwise_f1(conn, "clusters", "truth")
            persons_n = conn.execute("SELECT count(DISTINCT person_id) FROM truth").fetchone()[0]
            model = conn.execute("SELECT comparison, level, m, u, match_weight FROM model ORDER BY 1, 2").fetchall()
    finally:
        srv.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    out = {
        "engine": "tessera", "binary": binary, "records": n_rec, "clusters": n_clusters, "persons": persons_n,
        "candidate_pairs": n_cand, "candidate_pairs_by_rule": dict(zip([r for r, _, _ in RULES], by_rule)),
        "true_pairs_in_candidates": n_true_cand, "random_pairs": n_rnd, "scored_pairs_p_ge_0.5": n_scored,
        "threshold": args.threshold, "u_pairs": args.u_pairs,
        **acc,
        "seconds": {**{k: round(v, 2) for k, v in ph.wall.items()}, "total": round(total, 2)},
        "server_cpu_seconds": {k: round(v, 2) for k, v in ph.cpu.items()},
        "cpu_seconds": round(server_cpu + client_cpu, 1),
        "peak_rss_mb": round(peak),
        "steps": ph.steps,
        "prior": model[0][2] if model and model[0][0] == "(prior)" else None,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    s = out["seconds"]
    print(f"records {n_rec:,}  persons {persons_n:,}  clusters {n_clusters:,}  candidates {n_cand:,} "
          f"({n_true_cand:,} of {acc['true_pairs']:,} true pairs)  random pairs {n_rnd:,}  scored (p>=0.5) {n_scored:,}")
    print(f"train: pairs {s['pairs']}s + u {s['train_u']}s + EM {s['train_em']}s   predict {s['predict']}s + "
          f"cluster {s['cluster']}s   (prepare {s['prepare']}s, total {s['total']}s wall, {out['cpu_seconds']}s CPU)")
    print(f"pairwise precision {acc['precision']:.4f}  recall {acc['recall']:.4f}  F1 {acc['f1']:.4f}   "
          f"peak RSS (server VmHWM) {out['peak_rss_mb']:,} MB")
    if args.show_model:
        print(f"  prior: true {acc['true_pairs'] / (n * (n - 1) / 2):.3g}, model {out['prior']:.3g}")
        for row in model:
            print("  " + "  ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in row))
    print(json.dumps({k: v for k, v in out.items() if k != "steps"}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.compare:
        with open(args.compare) as f:
            print(compare(json.load(f), out))


if __name__ == "__main__":
    sys.exit(main())
