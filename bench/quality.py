"""Benchmark: the quality targets of the value issue, PASS/FAIL with their numbers, on the demo and (when present) Phoenix.

    python bench/quality.py                                  # run `lgsid evaluate` on the demo tables, then check
    python bench/quality.py --quick                          # check the metrics.json evaluate last wrote (no run)
    python bench/quality.py --metrics lgsid-work/report/metrics.json
    python bench/quality.py --phoenix-conf conf/phoenix.yaml # also the Phoenix set, when its tables exist

Every number is on the test split (the ranker is fit and early-stopped on validation). Targets
(each a row; "?" when the number is not in the report; "beats" = mean above the other's mean by
more than the larger of the two standard deviations over seeds):

* ``ranker_no_sids_ge_heuristic``: LambdaMART without SIDs >= the history + nearby heuristic on NDCG@10;
* ``ranker_lgsid_beats_rqkmeans`` / ``ranker_lgsid_beats_no_sids``: LambdaMART + LGSID beats
  LambdaMART + RQ-KMeans, and beats LambdaMART without SIDs, on NDCG@10;
* ``tiger_lgsid_beats_rqkmeans``: TIGER Hit@10 with LGSID SIDs beats RQ-KMeans SIDs;
* ``recall_lgsid_beam_gain``: candidate recall with the LGSID beam >= recall without any beam + 0.10;
* ``recall_lgsid_beam_vs_rqkmeans``: ... and above the RQ-KMeans beam's at the same candidate count;
* ``new_place_hit10_vs_best_list``: new-place Hit@10 of LGSID + near >= 1.2x the best non-learned
  list's (popularity, history + nearby popularity);
* ``aligned_within_1km_ratio``: within-1 km@10 of the newest aligned embeddings >= 1.5x the reference's;
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


def _mean(v: dict | None, key: str) -> float | None:
    s = (v or {}).get("summary", {}).get(key)
    return None if not s or s.get("mean") is None else float(s["mean"])


def _std(v: dict | None, key: str) -> float:
    s = (v or {}).get("summary", {}).get(key) or {}
    return float(s.get("std") or 0.0)


def _target(name: str, value, bound, ok, note: str = "") -> dict:
    return {"name": name, "value": value, "target": bound, "pass": ok, "note": note}


def _beats(name: str, rows: dict, a: str, b: str, key: str) -> dict:
    """Margin of row ``a`` over row ``b`` on ``key`` beyond the larger std; PASS when > 0."""
    if a not in rows or b not in rows or _mean(rows[a], key) is None or _mean(rows[b], key) is None:
        return _target(name, None, "> other + 1 std", None, f"{a} or {b} missing")
    ma, mb = _mean(rows[a], key), _mean(rows[b], key)
    sa, sb = _std(rows[a], key), _std(rows[b], key)
    m = ma - mb - max(sa, sb)
    return _target(name, m, "> other + 1 std", m > 0, f"{a} {ma:.4f}±{sa:.4f} vs {b} {mb:.4f}±{sb:.4f} ({key})")


def check(metrics: dict, label: str) -> list[dict]:
    """The value issue's target rows of one ``metrics.json``."""
    rows: list[dict] = []
    rk = metrics.get("ranker", {}).get("variants", {})
    if "ranker" in rk and "heuristic" in rk:
        r, h = _mean(rk["ranker"], "NDCG@10"), _mean(rk["heuristic"], "NDCG@10")
        rows.append(_target(f"{label}.ranker_no_sids_ge_heuristic", r - h, ">= 0", r >= h, f"ranker {r:.4f} vs heuristic {h:.4f} (NDCG@10)"))
    else:
        rows.append(_target(f"{label}.ranker_no_sids_ge_heuristic", None, ">= 0", None, "no ranker section"))
    rows.append(_beats(f"{label}.ranker_lgsid_beats_rqkmeans", rk, "ranker+lgsid", "ranker+rqkmeans", "NDCG@10"))
    rows.append(_beats(f"{label}.ranker_lgsid_beats_no_sids", rk, "ranker+lgsid", "ranker", "NDCG@10"))
    gen = metrics.get("generative", {}).get("variants", {})
    rows.append(_beats(f"{label}.tiger_lgsid_beats_rqkmeans", gen, "lgsid", "rqkmeans", "Hit@10"))
    rec = metrics.get("ranker", {}).get("recall", {})
    pv = rec.get("per_variant", {})
    if "lgsid" in pv and "history+nearby" in rec:
        g = pv["lgsid"]["union"] - rec["history+nearby"]
        rows.append(_target(f"{label}.recall_lgsid_beam_gain", g, ">= 0.10", g >= 0.10,
                            f"with LGSID beam {pv['lgsid']['union']:.4f} vs without any beam {rec['history+nearby']:.4f}"))
    else:
        rows.append(_target(f"{label}.recall_lgsid_beam_gain", None, ">= 0.10", None, "no candidate recall in the report"))
    if "lgsid" in pv and "rqkmeans" in pv:
        d = pv["lgsid"]["union"] - pv["rqkmeans"]["union"]
        rows.append(_target(f"{label}.recall_lgsid_beam_vs_rqkmeans", d, "> 0", d > 0,
                            f"LGSID {pv['lgsid']['union']:.4f} vs RQ-KMeans {pv['rqkmeans']['union']:.4f} at equal candidate counts"))
    else:
        rows.append(_target(f"{label}.recall_lgsid_beam_vs_rqkmeans", None, "> 0", None, "lgsid or rqkmeans beam missing"))
    near = gen.get("lgsid+near")
    lists = {n: _mean(gen[n], "new.Hit@10") for n in ("popularity", "history_nearby") if n in gen}
    lists = {n: v for n, v in lists.items() if v is not None}
    if near is not None and lists and _mean(near, "new.Hit@10") is not None:
        best = max(lists, key=lists.get)
        ratio = _mean(near, "new.Hit@10") / lists[best] if lists[best] else None
        rows.append(_target(f"{label}.new_place_hit10_vs_best_list", ratio, ">= 1.2x", None if ratio is None else ratio >= 1.2,
                            f"lgsid+near {_mean(near, 'new.Hit@10'):.4f} vs {best} {lists[best]:.4f} (new-place Hit@10)"))
    else:
        rows.append(_target(f"{label}.new_place_hit10_vs_best_list", None, ">= 1.2x", None, "no lgsid+near row or no list baseline"))
    geo = metrics.get("geo", {}).get("rows", {})
    aligned = sorted((v for v in geo if v.startswith("aligned-")), key=lambda v: int(v.split("-")[1]))
    if "reference" in geo and aligned and geo["reference"].get("within_1km@10"):
        r, a = geo["reference"]["within_1km@10"], geo[aligned[-1]]["within_1km@10"]
        rows.append(_target(f"{label}.aligned_within_1km_ratio", a / r, ">= 1.5x", a / r >= 1.5,
                            f"reference {r:.4f} -> {aligned[-1]} {a:.4f} (oracle {geo.get('geo-oracle', {}).get('within_1km@10')})"))
    else:
        rows.append(_target(f"{label}.aligned_within_1km_ratio", None, ">= 1.5x", None, "no reference/aligned rows with distances"))
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
