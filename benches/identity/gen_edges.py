#!/usr/bin/env python3
"""Synthetic CDP identity edges for resolve_identities benchmarks (seeded, numpy + pyarrow).

    python benches/identity/gen_edges.py --records 10000000 --out /tmp/idbench/edges.parquet

Writes one Parquet file of identifier rows
    (source text, record_key text, id_type text, id_value text)
one row per identifier seen on a record, ~3 rows per record, rows of one record adjacent,
and (unless --no-truth) a truth file next to it, `<out stem>.truth.parquet`:
    (source, record_key, person_id int64, component int64)
where person_id is the simulated human behind the record and component is the connected
component of the record graph (records linked through shared (id_type, id_value), junk values
dropped, *no* per-type caps): the answer plain label propagation must give. A `<stem>.json`
summary holds the counts (records, rows, persons, components, largest component, ...).

The population (defaults for N records):
  * N/3 persons; every person has >= 1 record, the rest spread at random (1 + Poisson(2)).
  * sources crm 20 %, shop 30 %, web 25 %, support 10 %, email 15 % of records; keys unique
    within a source only (the same key text appears in several sources).
  * identifiers per person: customer_id (2 % of persons have a second, duplicate account),
    1-3 emails, a mobile phone, a household landline for persons whose household has one,
    1-3 anonymous_ids (devices); web and email records also get fresh one-off cookies.
  * shared values across persons: households of 1-4 persons, 30 % of households share a
    landline, 3 % of persons in multi-person households use the family email.
  * junk: ~0.3 % of emails '' , ~0.2 % 'unknown', ~0.3 % of phones '0000000000', ~0.1 %
    '9999999999', ~0.1 % of customer_ids 'unknown'. Junk rows stay in the edges file (a
    resolver must drop them); they are left out of the truth components.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SOURCES = ["crm", "shop", "web", "support", "email"]
SOURCE_P = [0.20, 0.30, 0.25, 0.10, 0.15]
KEY_PREFIX = ["CRM-", "ORD", "w-", "TCK-", "em_"]
TYPES = ["customer_id", "email", "phone", "anonymous_id"]
CID, EMAIL, PHONE, ANON = range(4)
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com",
           "gmx.de", "web.de", "proton.me", "aol.com", "fastmail.com"]

HUBS = 20
HUB_BASE = 1 << 42  # code space of the shared hub values

# Junk value codes (negative), rendered as literal strings.
J_EMPTY, J_UNKNOWN, J_ZEROS, J_NINES = -1, -2, -3, -4
JUNK_TEXT = {J_EMPTY: "", J_UNKNOWN: "unknown", J_ZEROS: "0000000000", J_NINES: "9999999999"}

# (source, id_type, probability, which slot of the person's values) -- one row each when drawn.
# slot: "pick" = a random one of the person's values, "pick2" = another one, "mobile",
# "home" = household landline if any (else mobile), "fresh" = one-off cookie.
SLOTS = [
    ("crm", CID, 1.00, "pick"), ("crm", EMAIL, 1.00, "pick"), ("crm", EMAIL, 0.30, "pick2"),
    ("crm", PHONE, 0.80, "mobile"), ("crm", PHONE, 0.35, "home"),
    ("shop", CID, 0.90, "pick"), ("shop", EMAIL, 1.00, "pick"), ("shop", ANON, 0.80, "pick"),
    ("shop", ANON, 0.30, "pick2"), ("shop", EMAIL, 0.15, "pick2"), ("web", PHONE, 0.10, "mobile"), ("shop", PHONE, 0.45, "mobile"),
    ("web", ANON, 0.70, "pick"), ("web", ANON, 0.30, "fresh"), ("web", ANON, 0.40, "pick2"),
    ("web", EMAIL, 0.70, "pick"), ("web", CID, 0.70, "pick"),
    ("support", EMAIL, 1.00, "pick"), ("support", EMAIL, 0.25, "pick2"), ("support", PHONE, 0.90, "mobile"),
    ("support", PHONE, 0.40, "home"), ("support", CID, 0.70, "pick"),
    ("email", EMAIL, 1.00, "pick"), ("email", ANON, 0.70, "pick"), ("email", ANON, 0.30, "fresh"),
    ("email", CID, 0.70, "pick"), ("email", EMAIL, 0.20, "pick2"),
]


def log(msg, t0=[time.perf_counter()]):
    print(f"[{time.perf_counter() - t0[0]:7.1f}s] {msg}", file=sys.stderr, flush=True)


def population(n, rng):
    """Persons, households and the per-person value tables (as integer codes)."""
    p = max(1, n // 3)
    person = np.concatenate([np.arange(p, dtype=np.int64), rng.integers(0, p, n - p)])
    person = person[rng.permutation(n)]
    source = rng.choice(len(SOURCES), size=n, p=SOURCE_P).astype(np.int8)

    # Households: consecutive person ids, sizes 1-4.
    sizes = rng.choice([1, 2, 3, 4], size=p, p=[0.60, 0.25, 0.10, 0.05])
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), p) + 1]
    hh_of_person = np.repeat(np.arange(len(sizes)), sizes)[:p]
    hh_first = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # first person of each household
    hh_size = sizes[hh_of_person]
    hh_landline = rng.random(len(sizes)) < 0.30

    pers = {
        "n_email": 1 + (rng.random(p) < 0.35) + (rng.random(p) < 0.10),
        "n_anon": 1 + (rng.random(p) < 0.45) + (rng.random(p) < 0.20),
        "n_cid": 1 + (rng.random(p) < 0.02),
        # landline code = household id (own code space); -1 = none
        "home": np.where(hh_landline[hh_of_person], hh_of_person, -1),
        # family email: email slot 0 replaced by the household head's slot 0
        "email0_owner": np.where((hh_size > 1) & (rng.random(p) < 0.03),
                                 hh_first[hh_of_person], np.arange(p)),
    }
    return p, person, source, pers


def codes_for(slot_kind, id_type, pid, pers, rng, fresh_base):
    """Integer code of the value each row carries; codes are unique per (id_type, value)."""
    m = len(pid)
    if id_type == CID:
        n_vals = pers["n_cid"][pid]
    elif id_type == EMAIL:
        n_vals = pers["n_email"][pid]
    elif id_type == ANON:
        n_vals = pers["n_anon"][pid]
    else:
        n_vals = None

    if id_type == PHONE:
        if slot_kind == "mobile":
            return pid * 2
        home = pers["home"][pid]
        return np.where(home >= 0, home * 2 + 1, pid * 2)
    if slot_kind == "fresh":
        return fresh_base + np.arange(m, dtype=np.int64)
    k = (rng.random(m) * n_vals).astype(np.int64)
    if slot_kind == "pick2":
        k = (k + 1) % n_vals
    if id_type == EMAIL:
        owner = np.where(k == 0, pers["email0_owner"][pid], pid)
        return owner * 4 + k
    return pid * 4 + k


def render(id_type, codes):
    """Value strings for one id_type from integer codes (vectorised with pyarrow)."""
    c = pa.array(np.maximum(codes, 0))
    if id_type == CID:
        s = pc.binary_join_element_wise("C", pc.utf8_lpad(pc.cast(c, pa.string()), 9, "0"), "")
    elif id_type == EMAIL:
        # spread the codes so addresses don't look sequential
        mixed = pa.array((np.maximum(codes, 0) * 2654435761) % 4294967311)
        dom = pa.array(np.array(DOMAINS, dtype=object)[np.maximum(codes, 0) % len(DOMAINS)])
        s = pc.binary_join_element_wise("user", pc.cast(mixed, pa.string()), "@", dom, "")
    elif id_type == PHONE:
        digits = 2_000_000_000 + (np.maximum(codes, 0) * 387_420_489) % 1_000_000_000
        s = pc.cast(pa.array(digits), pa.string())
    else:
        mixed = np.maximum(codes, 0).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # bijective
        s = pc.binary_join_element_wise("anon-", pc.cast(pa.array(mixed), pa.string()), "")
    hub = (codes >= HUB_BASE) & (codes < HUB_BASE + HUBS)
    if hub.any():
        k = np.where(hub, codes - HUB_BASE, 0)
        text = {CID: "C-HUB-", EMAIL: "info@store", PHONE: "800555", ANON: "anon-kiosk-"}[id_type]
        hub_text = pc.binary_join_element_wise(text, pc.utf8_lpad(pc.cast(pa.array(k), pa.string()), 4, "0"), "")
        if id_type == EMAIL:
            hub_text = pc.binary_join_element_wise(hub_text, ".com", "")
        s = pc.if_else(pa.array(hub), hub_text, s)
    if (codes < 0).any():
        junk = np.full(len(codes), None, dtype=object)
        for code, text in JUNK_TEXT.items():
            junk[codes == code] = text
        s = pc.if_else(pa.array(codes < 0), pa.array(junk, pa.string()), s)
    return s


def add_hubs(id_type, codes, rng):
    """A few real values shared by many unrelated people (store phone typed in by staff,
    shared info@ mailbox, a kiosk device): not junk by any list, so they glue persons into
    large components unless per-type caps split them. Zipf-like use of HUBS values."""
    if id_type not in (EMAIL, PHONE, ANON):
        return codes
    rate = {EMAIL: 0.0005, PHONE: 0.001, ANON: 0.0003}[id_type]
    hit = np.flatnonzero(rng.random(len(codes)) < rate)
    if len(hit):
        which = np.minimum(rng.zipf(1.5, len(hit)) - 1, HUBS - 1)
        codes = codes.copy()
        codes[hit] = HUB_BASE + which
    return codes


def fake_phone_codes(codes):
    """Which PHONE codes render to a number resolve_identities' default rules treat as fake
    (after skipping up to 3 leading digits: all one digit, or an ascending run); such values
    link nothing, so the truth must not link through them either."""
    ok = (codes >= 0) & (codes < HUB_BASE)
    num = 2_000_000_000 + (np.maximum(codes, 0) * 387_420_489) % 1_000_000_000
    d = np.stack([(num // 10 ** (9 - i)) % 10 for i in range(10)], axis=1)
    fake = np.zeros(len(codes), dtype=bool)
    for k in range(4):
        r = d[:, k:]
        fake |= (r == r[:, :1]).all(axis=1) | (np.diff(r, axis=1) == 1).all(axis=1)
    return ok & fake


def add_junk(id_type, codes, rng):
    u = rng.random(len(codes))
    codes = codes.copy()
    if id_type == EMAIL:
        codes[u < 0.003] = J_EMPTY
        codes[(u >= 0.003) & (u < 0.005)] = J_UNKNOWN
    elif id_type == PHONE:
        codes[fake_phone_codes(codes)] = J_ZEROS  # the odd generated number that looks fake
        codes[u < 0.003] = J_ZEROS
        codes[(u >= 0.003) & (u < 0.004)] = J_NINES
    elif id_type == CID:
        codes[u < 0.001] = J_UNKNOWN
    return codes


def truth_components(n, rec, typ, code):
    """Connected components of records linked by shared non-junk (id_type, value)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ok = code >= 0
    key = typ[ok].astype(np.int64) * (1 << 44) + code[ok]
    _, vid = np.unique(key, return_inverse=True)
    nv = int(vid.max()) + 1 if len(vid) else 0
    r = rec[ok]
    g = coo_matrix((np.ones(len(r), dtype=np.int8), (r, n + vid.ravel())), shape=(n + nv, n + nv))
    _, labels = connected_components(g, directed=False)
    lab = labels[:n]
    _, comp = np.unique(lab, return_inverse=True)  # dense 0..k-1
    return comp.astype(np.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="edges.parquet")
    ap.add_argument("--no-truth", action="store_true", help="skip the truth file (saves ~30 s at 10M)")
    ap.add_argument("--row-group", type=int, default=1_000_000)
    args = ap.parse_args()

    n = args.records
    rng = np.random.default_rng(args.seed)
    p, person, source, pers = population(n, rng)
    log(f"{n:,} records, {p:,} persons")

    recs, typs, codes = [], [], []
    fresh_base = 1 << 40
    for src_name, id_type, prob, kind in SLOTS:
        s = SOURCES.index(src_name)
        idx = np.flatnonzero((source == s) & (rng.random(n) < prob))
        if kind == "home":  # only persons whose household has a landline
            idx = idx[pers["home"][person[idx]] >= 0]
        c = codes_for(kind, id_type, person[idx], pers, rng, fresh_base)
        if kind == "fresh":
            fresh_base += len(idx)
        c = add_hubs(id_type, c, rng)
        c = add_junk(id_type, c, rng)
        recs.append(idx)
        typs.append(np.full(len(idx), id_type, dtype=np.int8))
        codes.append(c)
    rec = np.concatenate(recs)
    typ = np.concatenate(typs)
    code = np.concatenate(codes)
    del recs, typs, codes

    # Every record gets at least one row: records that drew nothing get a fresh cookie.
    has = np.zeros(n, dtype=bool)
    has[rec] = True
    lonely = np.flatnonzero(~has)
    if len(lonely):
        rec = np.concatenate([rec, lonely])
        typ = np.concatenate([typ, np.full(len(lonely), ANON, dtype=np.int8)])
        code = np.concatenate([code, fresh_base + np.arange(len(lonely), dtype=np.int64)])
    # Rows of one record adjacent; exact duplicate rows dropped.
    order = np.lexsort((code, typ, rec))
    rec, typ, code = rec[order], typ[order], code[order]
    del order
    keep = np.ones(len(rec), dtype=bool)
    keep[1:] = (rec[1:] != rec[:-1]) | (typ[1:] != typ[:-1]) | (code[1:] != code[:-1])
    rec, typ, code = rec[keep], typ[keep], code[keep]
    del keep
    log(f"{len(rec):,} identifier rows ({len(rec) / n:.2f} per record)")

    # Render strings per type, then put them back in row order.
    pieces, positions = [], []
    for t in range(len(TYPES)):
        pos = np.flatnonzero(typ == t)
        pieces.append(render(t, code[pos]))
        positions.append(pos)
    inv = np.empty(len(rec), dtype=np.int64)
    inv[np.concatenate(positions)] = np.arange(len(rec))
    value = pa.concat_arrays([a for piece in pieces for a in (piece.chunks if isinstance(piece, pa.ChunkedArray) else [piece])])
    value = value.take(pa.array(inv))
    del pieces, positions, inv

    src_of_row = source[rec]
    src_names = pa.array(SOURCES).take(pa.array(src_of_row))
    prefixes = pa.array(KEY_PREFIX).take(pa.array(src_of_row))
    keys = pc.binary_join_element_wise(prefixes, pc.cast(pa.array(rec), pa.string()), "")
    types = pa.array(TYPES).take(pa.array(typ))
    table = pa.table({"source": src_names, "record_key": keys, "id_type": types, "id_value": value})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    pq.write_table(table, args.out, row_group_size=args.row_group, compression="snappy")
    log(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.0f} MB)")
    del table, src_names, prefixes, types, value

    stem = args.out[:-8] if args.out.endswith(".parquet") else args.out
    summary = {
        "records": n, "rows": int(len(rec)), "seed": args.seed,
        "persons": int(len(np.unique(person))),
        "junk_rows": int((code < 0).sum()),
        "rows_per_type": {TYPES[t]: int((typ == t).sum()) for t in range(len(TYPES))},
        "records_per_source": {SOURCES[s]: int((source == s).sum()) for s in range(len(SOURCES))},
    }
    if not args.no_truth:
        comp = truth_components(n, rec, typ, code)
        sizes = np.bincount(comp)
        summary.update({
            "components": int(len(sizes)),
            "largest_component": int(sizes.max()),
            "singleton_components": int((sizes == 1).sum()),
            "components_histogram": {str(k): int(v) for k, v in
                                      zip(*np.unique(np.minimum(sizes, 20), return_counts=True))},
        })
        rid = np.arange(n)
        truth = pa.table({
            "source": pa.array(SOURCES).take(pa.array(source)),
            "record_key": pc.binary_join_element_wise(pa.array(KEY_PREFIX).take(pa.array(source)),
                                                      pc.cast(pa.array(rid), pa.string()), ""),
            "person_id": pa.array(person),
            "component": pa.array(comp),
        })
        pq.write_table(truth, stem + ".truth.parquet", row_group_size=args.row_group)
        log(f"truth: {summary['components']:,} components, largest {summary['largest_component']:,}")
    with open(stem + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
