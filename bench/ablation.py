"""Benchmark: the value ablation — which part of LGSID helps downstream, on tables the pipeline already wrote.

    python bench/ablation.py --conf conf/phoenix.yaml                 # every arm below
    python bench/ablation.py --conf conf/local.yaml --arms 2x2,w_geo_0
    python bench/ablation.py --conf conf/phoenix.yaml --seeds 0,1,2 --out lgsid-work/phoenix/ablation

Each arm is one ``lgsid evaluate`` run (sections ``generative`` + ``ranker``, no MLflow logging)
with a few ``--set`` overrides on the same tables, so every number is on the same test split and the
ranker is fit on the same validation queries:

* ``2x2``: {reference, aligned} embeddings x {RQ-KMeans, HGIT} (variants rqkmeans, rqkmeans-aligned,
  hgit-ref, lgsid; lgsid is the registered candidate's codes);
* ``aligned``: the aligned half of ``2x2`` only (after a G-DPO change: the reference rows do not move);
* ``reference``: the reference half of ``2x2`` only (tables written up to ``embed``, e.g. another
  prompt location vocabulary, ``prompts.location_level``);
* ``w_geo_<w>`` / ``w_cat_<w>`` / ``w_admin_<w>``: HGIT's level-1 feature weights (on the reference
  embeddings, variant hgit-ref) — geo 0, 0.5 and 8 against the default 2, category and admin 0;
* ``geo_sphere``: lat/lon as the raw unit vector (``tokenizer.geo_scale: sphere``) instead of scaled to the extent;
* ``l1_<k>``: level-1 size, ``tokenizer.codebook_sizes`` = [k, 64, 64] with ``items_per_prefix`` 0.

Prints one row per (arm, variant) with TIGER Hit@10 and the ranker's NDCG@10, Hit@10 and candidate
recall (mean ± std over seeds), and, last, one JSON line with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HGIT_REF = ['evaluate.variants=["hgit-ref"]']
ARMS: dict[str, list[str]] = {
    "2x2": ['evaluate.variants=["rqkmeans","rqkmeans-aligned","hgit-ref","lgsid"]'],
    "aligned": ['evaluate.variants=["rqkmeans-aligned","lgsid"]'],
    "reference": ['evaluate.variants=["rqkmeans","hgit-ref"]'],
    "hgit_default": HGIT_REF,
    "w_geo_0": HGIT_REF + ["tokenizer.w_geo=0.0"],
    "w_geo_0.5": HGIT_REF + ["tokenizer.w_geo=0.5"],
    "w_geo_8": HGIT_REF + ["tokenizer.w_geo=8.0"],
    "w_cat_0": HGIT_REF + ["tokenizer.w_cat=0.0"],
    "w_admin_0": HGIT_REF + ["tokenizer.w_admin=0.0"],
    "geo_sphere": HGIT_REF + ["tokenizer.geo_scale=sphere"],
    "l1_32": HGIT_REF + ["tokenizer.codebook_sizes=[32,64,64]", "tokenizer.items_per_prefix=0"],
    "l1_128": HGIT_REF + ["tokenizer.codebook_sizes=[128,64,64]", "tokenizer.items_per_prefix=0"],
}


def _pm(s: dict | None) -> str:
    return "n/a" if not s else f"{s['mean']:.4f} ± {s['std']:.4f}"


def run_arm(conf: str, sets: list[str], seeds: list[int], out: str) -> tuple[dict, float]:
    """One ``lgsid evaluate`` run; returns (metrics.json, wall seconds)."""
    base = ['evaluate.sections=["generative","ranker"]', "evaluate.log_mlflow=false", f"evaluate.seeds={json.dumps(seeds)}",
            'evaluate.tiger_decoding=["beam"]', 'evaluate.baselines=["history_nearby"]']
    cmd = [sys.executable, "-m", "lgsid.cli", "evaluate", "--conf", conf, "--out", out] + [a for o in base + sets for a in ("--set", o)]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f), time.perf_counter() - t0


def rows_of(arm: str, m: dict) -> list[dict]:
    """One row per SID variant of an arm's metrics, plus the ranker without SIDs and the heuristic for reference."""
    gen = m.get("generative", {}).get("variants", {})
    rk = m.get("ranker", {}).get("variants", {})
    rec = m.get("ranker", {}).get("recall", {}).get("per_variant", {})
    out = []
    for name in ("heuristic", "ranker"):
        if name in rk:
            out.append({"arm": arm, "variant": name, "tiger_hit10": None, "ranker_ndcg10": rk[name]["summary"]["NDCG@10"],
                        "ranker_hit10": rk[name]["summary"]["Hit@10"], "recall": None})
    for v, row in gen.items():
        if row.get("kind") != "sid":
            continue
        r = rk.get(f"ranker+{v}", {}).get("summary", {})
        out.append({"arm": arm, "variant": v, "tiger_hit10": row["summary"]["Hit@10"], "ranker_ndcg10": r.get("NDCG@10"),
                    "ranker_hit10": r.get("Hit@10"), "recall": rec.get(v, {}).get("union")})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conf", default="conf/phoenix.yaml", help="config whose tables the pipeline has written")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arms (default: all of {', '.join(ARMS)})")
    ap.add_argument("--seeds", default="0,1,2", help="model seeds")
    ap.add_argument("--out", default=None, help="keep each arm's report under this directory (default: a temporary one)")
    args = ap.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    bad = [a for a in arms if a not in ARMS]
    if bad:
        ap.error(f"unknown arm(s) {bad}; valid: {', '.join(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    root = args.out or tempfile.mkdtemp(prefix="ablation-")
    rows, seconds = [], {}
    for arm in arms:
        m, seconds[arm] = run_arm(args.conf, ARMS[arm], seeds, os.path.join(root, arm))
        rows += rows_of(arm, m)
        print(f"{arm}: {seconds[arm]:.0f} s", file=sys.stderr)
    print(f"{'arm':14s} {'variant':18s} {'TIGER Hit@10':>17s} {'ranker NDCG@10':>17s} {'ranker Hit@10':>17s} {'recall':>7s}")
    for r in rows:
        rec = "" if r["recall"] is None else f"{r['recall']:.3f}"
        print(f"{r['arm']:14s} {r['variant']:18s} {_pm(r['tiger_hit10']):>17s} {_pm(r['ranker_ndcg10']):>17s} {_pm(r['ranker_hit10']):>17s} {rec:>7s}")
    print(json.dumps({"conf": args.conf, "seeds": seeds, "seconds": seconds, "split": "test (ranker fit on validation)", "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
