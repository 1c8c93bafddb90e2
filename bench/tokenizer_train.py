"""Benchmark: training time of the three tokenizers (RQ-VAE, RQ-KMeans, HGIT) at 10k and 100k items.

    python bench/tokenizer_train.py [--sizes 10000 100000] [--dim 384] [--epochs 10] [--threads 1] [--quick]

Same toy catalogue (lgsid.tokenizer.toy), same codebook sizes (default 64-64-64) and epochs for the
two learned tokenizers. Reports fit seconds, encode throughput and codebook health (level-1 usage,
collision rate, level-1 category purity). Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--codebook-sizes", type=int, nargs="+", default=[64, 64, 64])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the shared 2-core box oversubscribes badly with 2)")
    ap.add_argument("--kinds", nargs="+", default=["rqvae", "rqkmeans", "hgit"])
    ap.add_argument("--quick", action="store_true", help="10k items only, 3 epochs (smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.epochs = [10_000], 3

    import torch

    torch.set_num_threads(args.threads)
    from lgsid.config import TokenizerConfig
    from lgsid.tokenizer import build_tokenizer, codebook_health
    from lgsid.tokenizer.toy import toy_catalogue

    cfg = TokenizerConfig(codebook_sizes=list(args.codebook_sizes), epochs=args.epochs)
    results = []
    print(f"{'kind':9s} {'items':>8s} {'fit s':>8s} {'encode items/s':>15s} {'usage_l1':>9s} {'collision':>10s} {'purity_l1':>10s}", flush=True)
    for n in args.sizes:
        items, emb = toy_catalogue(n, args.dim, seed=3, counties_per_state=12, towns_per_county=6)
        cats = items["category_l1"].to_numpy()
        for kind in args.kinds:
            tok = build_tokenizer(cfg, kind)
            t = time.perf_counter()
            tok.fit(emb, items)
            fit_s = time.perf_counter() - t
            t = time.perf_counter()
            codes = tok.encode(emb, items)
            enc_rate = n / (time.perf_counter() - t)
            h = codebook_health(codes, cfg.codebook_sizes, cats)
            row = {"kind": kind, "items": n, "fit_seconds": round(fit_s, 2), "encode_items_per_s": round(enc_rate),
                   "usage_l1": round(h["usage_l1"], 3), "collision_rate": round(h["collision_rate"], 4),
                   "category_purity_l1": round(h["category_purity_l1"], 3)}
            results.append(row)
            print(f"{kind:9s} {n:8,d} {fit_s:8.1f} {enc_rate:15,.0f} {h['usage_l1']:9.3f} {h['collision_rate']:10.4f} {h['category_purity_l1']:10.3f}", flush=True)
    print(f"dim {args.dim}, codebooks {args.codebook_sizes}, epochs {args.epochs}, torch threads {args.threads}, "
          f"cpu_count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print(json.dumps({"bench": "tokenizer_train", "dim": args.dim, "epochs": args.epochs, "codebook_sizes": args.codebook_sizes,
                      "load_average": round(os.getloadavg()[0], 1), "results": results}))


if __name__ == "__main__":
    main()
