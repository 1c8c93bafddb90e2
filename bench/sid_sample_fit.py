"""Benchmark: SID collisions of a tokenizer fitted on a sample of the catalogue, against a fit on every item.

    python bench/sid_sample_fit.py [--items 400000] [--fit-sample 50000] [--dim 64] [--epochs 5] [--kinds rqkmeans hgit]

``lgsid tokenize`` fits on ``tokenizer.fit_sample`` items and assigns every catalogue item with the
fitted model. This fits each tokenizer (conf/model.yaml's sizes: 64-64-64 grown with
``items_per_prefix`` 1.0) four ways and encodes the whole catalogue with each:

* ``whole``: fitted on every item (what the step does when the catalogue fits in the sample);
* ``sample, sizes of n``: fitted on the sample, codebooks sized for the sample (before);
* ``sample, sizes of N``: the same sample, codebooks sized for the catalogue (``n_catalogue``),
  and for HGIT its local deepest level filled (:func:`lgsid.tokenizer.hgit.fill_centres`), as the
  step does now;
* HGIT only, ``sizes of N, no fill``: sized for the catalogue, local level from the sampled rows only.

Collision rate = 1 − distinct full codes / items (:mod:`lgsid.sid_health`'s last level). The
catalogue is synthetic with real structure: places from ``bench/_synth.py`` (Zipf cities, towns,
counties, states), a Zipf category mix, chain brands, and embeddings = town + category + brand
direction + item noise (unit norm), so items of one town and category are near but distinct. The
sample is a seeded uniform draw (as ``tokenizer.fit_sample``'s hash order). torch runs on one thread.
Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/_synth.py (not part of the package)


def catalogue(n: int, dim: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` items (the HGIT feature columns) and (n, dim) float32 unit embeddings with town / category / brand structure."""
    from _synth import synth_items

    rng = np.random.default_rng(seed)
    items = synth_items(n, seed=seed)[["item_id", "lat", "lon", "state", "county", "town"]].copy()
    n_l1, per_l1 = 8, 6
    w = 1.0 / np.arange(1, n_l1 * per_l1 + 1)
    cat = rng.choice(n_l1 * per_l1, size=n, p=w / w.sum())  # Zipf over 48 category_l2
    brand = np.where(rng.random(n) < 0.3, rng.integers(0, 200, n), -1)  # 30% belong to one of 200 chains
    items["category_l1"] = [f"L1_{c // per_l1}" for c in cat]
    items["category_l2"] = [f"L2_{c}" for c in cat]
    items["brand"] = np.where(brand >= 0, np.char.add("B", brand.astype(str)), None)
    towns, t_idx = np.unique(items["town"].to_numpy(), return_inverse=True)
    town_vec = rng.standard_normal((len(towns), dim))
    l1_vec = rng.standard_normal((n_l1, dim))
    cat_vec = l1_vec[np.arange(n_l1 * per_l1) // per_l1] + 0.6 * rng.standard_normal((n_l1 * per_l1, dim))
    brand_vec = rng.standard_normal((200, dim))
    emb = town_vec[t_idx] + 0.8 * cat_vec[cat] + 0.35 * rng.standard_normal((n, dim))
    emb[brand >= 0] += 0.5 * brand_vec[brand[brand >= 0]]
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return items.reset_index(drop=True), emb.astype(np.float32)


def collision_rate(codes: np.ndarray) -> float:
    """1 − distinct full codes / items."""
    return 1.0 - len(np.unique(codes, axis=0)) / len(codes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=400_000, help="N, the catalogue")
    ap.add_argument("--fit-sample", type=int, default=50_000, help="n, the items fitted (tokenizer.fit_sample)")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5, help="HGIT's training epochs (conf: 30; fewer keeps the run short, the same for every row)")
    ap.add_argument("--kinds", nargs="+", default=["rqkmeans", "hgit"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    import lgsid.tokenizer.hgit as hgit
    from lgsid.config import TokenizerConfig
    from lgsid.tokenizer import build_tokenizer

    t0 = time.time()
    items, emb = catalogue(args.items, args.dim, args.seed)
    idx = np.sort(np.random.default_rng(args.seed + 1).choice(args.items, args.fit_sample, replace=False))
    s_items, s_emb = items.iloc[idx].reset_index(drop=True), emb[idx]
    print(f"catalogue {args.items:,} items (dim {args.dim}), sample {args.fit_sample:,}: {time.time() - t0:.1f} s", flush=True)
    fill_fn = hgit.fit_local_level

    rows = []
    print(f"{'kind':9s} {'fit':26s} {'codebook sizes':>18s} {'collision':>10s} {'fit s':>7s} {'encode s':>9s}", flush=True)
    for kind in args.kinds:
        cfg = TokenizerConfig(kind=kind, codebook_sizes=[64, 64, 64], items_per_prefix=1.0, epochs=args.epochs)
        fits = [("whole", items, emb, None), ("sample, sizes of n", s_items, s_emb, None), ("sample, sizes of N", s_items, s_emb, args.items)]
        if kind == "hgit":
            fits.append(("sample, sizes of N, no fill", s_items, s_emb, args.items))
        for name, f_items, f_emb, n_cat in fits:
            tok = build_tokenizer(cfg)
            tok.n_catalogue = n_cat
            hgit.fit_local_level = fill_fn if "no fill" not in name else (lambda *a, fill=False, **k: fill_fn(*a, **k))
            t1 = time.time()
            tok.fit(f_emb, f_items)
            t2 = time.time()
            codes = tok.encode(emb, items)
            t3 = time.time()
            hgit.fit_local_level = fill_fn
            row = {"kind": kind, "fit": name, "fit_items": len(f_emb), "items": args.items, "codebook_sizes": tok.codebook_sizes,
                   "collision_rate": round(collision_rate(codes), 4), "fit_s": round(t2 - t1, 1), "encode_s": round(t3 - t2, 1)}
            rows.append(row)
            print(f"{kind:9s} {name:26s} {'-'.join(map(str, tok.codebook_sizes)):>18s} {row['collision_rate']:>10.4f} "
                  f"{row['fit_s']:>7.1f} {row['encode_s']:>9.1f}", flush=True)
    print(json.dumps({"bench": "sid_sample_fit", "items": args.items, "fit_sample": args.fit_sample, "dim": args.dim,
                      "epochs": args.epochs, "seed": args.seed, "results": rows}))


if __name__ == "__main__":
    main()
