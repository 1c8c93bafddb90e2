"""Benchmark: the quality targets of issue 13, PASS/FAIL with their numbers, on the demo and (when present) Phoenix.

    python bench/quality.py                                  # run `lgsid evaluate` on the demo tables, then check
    python bench/quality.py --quick                          # check the metrics.json evaluate last wrote (no run)
    python bench/quality.py --metrics lgsid-work/report/metrics.json
    python bench/quality.py --phoenix-conf conf/phoenix.yaml # also the Phoenix set, when its tables exist

Targets (each a row; "?" when the number is not in the report):

* ``tiger_hit10_vs_best_baseline`` / ``tiger_ndcg10_vs_best_baseline``: the best LGSID TIGER row
  (any decoding lever) >= 1.10 x the best baseline, means over >= 3 seeds;
* ``lgsid_tiger_hit10_beats_tokenizers``: plain LGSID TIGER Hit@10 above every other tokenizer's by
  more than one standard deviation (the larger of the two);
* ``lgsid_din_auc_beats_tokenizers``: the same on DIN AUC (uniform negatives);
* ``aligned_within_1km_gain``: the aligned embeddings' share of top-10 neighbours within 1 km above the reference's;
* ``seeds_ge_3``: the downstream means are over >= 3 seeds.

Prints a table and, last, one JSON line (``targets`` as bench/run_all reads them).
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
TOKENIZERS = ("rqvae", "rqkmeans", "hgit-ref")


def _mean(v: dict | None, key: str) -> float | None:
    s = (v or {}).get("summary", {}).get(key)
    return None if not s or s.get("mean") is None else float(s["mean"])


def _std(v: dict | None, key: str) -> float:
    s = (v or {}).get("summary", {}).get(key) or {}
    return float(s.get("std") or 0.0)


def _target(name: str, value, bound, ok, note: str = "") -> dict:
    return {"name": name, "value": value, "target": bound, "pass": ok, "note": note}


def check(metrics: dict, label: str) -> list[dict]:
    """Issue-13 target rows of one ``metrics.json``."""
    rows: list[dict] = []
    gen = metrics.get("generative", {}).get("variants", {})
    base = {n: v for n, v in gen.items() if v.get("kind") == "baseline"}
    lg = {n: v for n, v in gen.items() if v.get("kind") == "sid" and v.get("variant", n.split("+")[0]) == "lgsid"}
    for key, tname in (("Hit@10", "tiger_hit10_vs_best_baseline"), ("NDCG@10", "tiger_ndcg10_vs_best_baseline")):
        b = max(base, key=lambda n: _mean(base[n], key) or -1, default=None)
        best = max(lg, key=lambda n: _mean(lg[n], key) or -1, default=None)
        if b is None or best is None:
            rows.append(_target(f"{label}.{tname}", None, ">= 1.10x", None, "no baseline or no LGSID row"))
            continue
        bv, lv = _mean(base[b], key), _mean(lg[best], key)
        ratio = lv / bv if bv else None
        rows.append(_target(f"{label}.{tname}", ratio, ">= 1.10x", None if ratio is None else ratio >= 1.10,
                            f"{best} {lv:.4f} vs {b} {bv:.4f}"))
    for sec, key, tname in (("generative", "Hit@10", "lgsid_tiger_hit10_beats_tokenizers"), ("discriminative", "AUC", "lgsid_din_auc_beats_tokenizers")):
        vs = metrics.get(sec, {}).get("variants", {})
        me = vs.get("lgsid")
        others = [n for n in TOKENIZERS if n in vs]
        if me is None or not others:
            rows.append(_target(f"{label}.{tname}", None, "> other + 1 std", None, "lgsid or the other tokenizers missing"))
            continue
        margins = {n: _mean(me, key) - _mean(vs[n], key) - max(_std(me, key), _std(vs[n], key)) for n in others}
        worst = min(margins, key=margins.get)
        rows.append(_target(f"{label}.{tname}", margins[worst], "> 0", margins[worst] > 0,
                            f"lgsid {_mean(me, key):.4f}±{_std(me, key):.4f}; closest {worst} {_mean(vs[worst], key):.4f}±{_std(vs[worst], key):.4f}"))
    geo = metrics.get("geo", {}).get("rows", {})
    aligned = sorted((v for v in geo if v.startswith("aligned-")), key=lambda v: int(v.split("-")[1]))
    if "reference" in geo and aligned and "within_1km@10" in geo["reference"]:
        r, a = geo["reference"]["within_1km@10"], geo[aligned[-1]]["within_1km@10"]
        o = geo.get("geo-oracle", {}).get("within_1km@10")
        rows.append(_target(f"{label}.aligned_within_1km_gain", a - r, "> 0", a > r, f"reference {r:.4f} -> {aligned[-1]} {a:.4f} (oracle {o})"))
    else:
        rows.append(_target(f"{label}.aligned_within_1km_gain", None, "> 0", None, "no reference/aligned rows with distances"))
    seeds = metrics.get("meta", {}).get("seeds", [])
    rows.append(_target(f"{label}.seeds_ge_3", len(seeds), ">= 3", len(seeds) >= 3))
    return rows


def run_evaluate(conf: str, out: str, overrides: list[str]) -> float:
    """``lgsid evaluate --conf conf --out out`` in a subprocess; returns its wall seconds."""
    cmd = [sys.executable, "-m", "lgsid.cli", "evaluate", "--conf", conf, "--out", out] + [a for o in overrides for a in ("--set", o)]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conf", default="conf/local.yaml", help="demo config (its tables must exist)")
    ap.add_argument("--phoenix-conf", default="conf/phoenix.yaml", help="Phoenix config; checked when the file and its tables exist")
    ap.add_argument("--metrics", default=None, help="check this metrics.json instead of running evaluate on the demo")
    ap.add_argument("--quick", action="store_true", help="check the metrics.json each config's evaluate.out_dir already holds (no run)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override passed to evaluate")
    args = ap.parse_args(argv)

    from lgsid.config import load_config

    sets: list[tuple[str, str | None]] = [("demo", args.conf)]
    if os.path.exists(os.path.join(ROOT, args.phoenix_conf)):
        sets.append(("phoenix", args.phoenix_conf))
    rows: list[dict] = []
    seconds: dict[str, float | None] = {}
    skipped: dict[str, str] = {}
    for label, conf in sets:
        cfg = load_config(os.path.join(ROOT, conf))
        if label == "demo" and args.metrics:
            path, seconds[label] = args.metrics, None
        elif args.quick:
            path, seconds[label] = os.path.join(ROOT, cfg.evaluate.out_dir, "metrics.json"), None
        else:
            if not os.path.isdir(os.path.join(ROOT, cfg.storage.root, "items")):
                skipped[label] = f"no tables under {cfg.storage.root} (run the pipeline with {conf})"
                continue
            out = tempfile.mkdtemp(prefix=f"quality-{label}-")
            seconds[label] = run_evaluate(conf, out, args.overrides)
            path = os.path.join(out, "metrics.json")
        if not os.path.exists(path):
            skipped[label] = f"no {path}"
            continue
        with open(path) as f:
            metrics = json.load(f)
        rows += check(metrics, label)
        seconds.setdefault(label, None)
        if seconds[label] is None:
            seconds[label] = metrics.get("meta", {}).get("seconds")
    w = max([len(r["name"]) for r in rows] + [6])
    print(f"{'target':{w}s}  {'value':>9s}  {'bound':>16s}  verdict  numbers")
    for r in rows:
        v = "n/a" if r["value"] is None else (f"{r['value']:.4f}" if isinstance(r["value"], float) else str(r["value"]))
        verdict = {True: "PASS", False: "FAIL", None: "?"}[r["pass"]]
        print(f"{r['name']:{w}s}  {v:>9s}  {r['target']:>16s}  {verdict:7s}  {r['note']}")
    for k, why in skipped.items():
        print(f"{k}: skipped ({why})")
    print(json.dumps({"evaluate_seconds": seconds, "skipped": skipped, "targets": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
