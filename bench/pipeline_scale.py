"""Every step of ``lgsid pipeline`` on demo data at growing sizes: time, peak memory, rows, scaling.

    python bench/pipeline_scale.py                    # 10k and 100k items (the issue-14 targets)
    python bench/pipeline_scale.py --sizes 10000,100000,1000000
    python bench/pipeline_scale.py --quick            # 10k only, smaller training budgets (printed)
    python bench/pipeline_scale.py --sizes 1500 --set gdpo.max_steps=2   # smoke run

Each size runs in a fresh temporary work directory (tables, staging, MLflow SQLite store, artifacts,
checkpoints, report), so the repository's ``lgsid-work`` is never touched. Users and interactions
scale with the items in the demo's default ratio (3000 items : 2000 users : 30000 clicks). Every step
is its own subprocess ``python -m lgsid.cli <step> --conf conf/local.yaml --set ...`` (so a step's
wall time includes its Spark session start; the step's own time, from its summary, is shown too).

Per step it prints: wall and in-step seconds; peak RSS of the driver (the ``lgsid.cli`` Python
process), of the JVM, of the Python workers (every other Python process in the tree: Spark's
``pyspark.daemon`` workers, TorchDistributor ranks) and of the whole tree at one instant (psutil,
polled every 0.2 s); rows in (the latest row counts of the tables the step reads) and rows out (from
the step's summary); the scaling exponent ``log(t2/t1) / log(n2/n1)`` between consecutive sizes,
against the exponent of n·log n over the same interval; and, for a step bounded by a sample size
(reward lists, G-DPO steps, evaluated users, ...), that cap next to its time.

Targets (issue 14, 2 cores): 100k items end to end <= 45 min, peak RSS <= 8 GB, no step growing
faster than n·log n (judged only between sizes where the step takes >= 10 s at the larger size,
so Spark start-up does not dominate). Targets that the chosen sizes cannot judge are shown as
"n/a" and left out of the JSON ``targets``. The JSON summary is the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF = os.path.join(REPO, "conf", "local.yaml")

# The tables each step reads (rows in = their latest row counts written earlier in the same run).
INPUTS = {
    "ingest": [],
    "prompts": ["items"],
    "negatives": ["geo_prompts"],
    "pairs": ["items", "interactions"],
    "embed": ["geo_prompts"],
    "reward": ["reward_lists"],
    "gdpo": ["gdpo_pairs", "geo_prompts"],
    "tokenize": ["items", "item_embeddings"],
    "evaluate": ["items", "interactions", "item_embeddings", "sid_items"],
    "promote": [],
    "write-sids": ["items", "item_embeddings"],
}
# Config keys that bound a step's work independently of the item count.
CAPS = {
    "reward": ["reward.max_anchors", "reward.epochs"],
    "gdpo": ["gdpo.max_steps", "gdpo.batch_size"],
    "pairs": ["pairs.history_cap"],
    "tokenize": ["tokenizer.fit_sample", "tokenizer.geo_coverage_sample"],
    "evaluate": ["evaluate.max_users", "evaluate.max_train_examples", "evaluate.max_geo_items", "evaluate.seeds", "evaluate.multi_seed_max_items"],
}
# --quick: smaller training budgets (sizes of the data are unchanged).
QUICK_SETS = ["gdpo.max_steps=20", "reward.epochs=5", "evaluate.seeds=[0]", "evaluate.tiger_epochs=1", "evaluate.din_epochs=1"]
TARGET_E2E_S = 45 * 60
TARGET_RSS_GB = 8.0
MIN_SECONDS_FOR_EXPONENT = 10.0
ROW = re.compile(r"^\s+(\S+)\s+([\d,]+)\s+v(\d+)\s*$")
DONE = re.compile(r"^== lgsid (\S+): done in ([\d.]+)s")


def demo_sizes(n_items: int) -> dict[str, int]:
    """Users and interactions in the demo's default ratio (3000 : 2000 : 30000)."""
    return {"demo.n_items": n_items, "demo.n_users": max(10, n_items * 2 // 3), "demo.n_interactions": n_items * 10}


def work_sets(work: str) -> list[str]:
    """``--set`` overrides putting every path of the run under ``work``."""
    return [
        f"storage.root={work}/tables", f"storage.staging_dir={work}/staging", f"spark.petastorm_cache_dir={work}/petastorm",
        f"mlflow.tracking_uri=sqlite:///{work}/mlflow.db", f"mlflow.artifact_root={work}/mlartifacts",
        f"train.checkpoint_dir={work}/checkpoints", f"evaluate.out_dir={work}/report", f"pipeline.work_dir={work}",
    ]


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "lgsid.cli", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # spark-submit from the venv
    return env


def resolved_config(sets: list[str]) -> dict:
    """The resolved config (``lgsid config``) under ``sets``."""
    out = subprocess.run(_cli(["config", "--conf", CONF, *[a for s in sets for a in ("--set", s)]]), capture_output=True, text=True,
                         cwd=REPO, env=_env(), check=True)
    return json.loads(out.stdout)


def _get(cfg: dict, key: str):
    v = cfg
    for part in key.split("."):
        v = v[part]
    return v


def run_monitored(cmd: list[str], timeout: float, log_path: str) -> dict:
    """Run ``cmd`` and poll its process tree; returns rc, wall seconds, stdout and peak RSS (bytes) per role."""
    peak = {"driver": 0, "jvm": 0, "py_workers": 0, "tree": 0}
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO, env=_env())
        root = psutil.Process(p.pid)
        import threading

        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(p.stdout), daemon=True)
        reader.start()
        while p.poll() is None:
            if time.perf_counter() - t0 > timeout:
                for c in root.children(recursive=True):
                    c.kill()
                p.kill()
                break
            role = {"driver": 0, "jvm": 0, "py_workers": 0}
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for q in procs:
                try:
                    rss, name = q.memory_info().rss, q.name().lower()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                if q.pid == root.pid:
                    role["driver"] += rss
                elif "java" in name:
                    role["jvm"] += rss
                elif "python" in name:
                    role["py_workers"] += rss
            for k, v in role.items():
                peak[k] = max(peak[k], v)
            peak["tree"] = max(peak["tree"], sum(role.values()))
            time.sleep(0.2)
        rc = p.wait()
        reader.join(timeout=5)
    return {"rc": rc, "seconds": time.perf_counter() - t0, "stdout": "".join(lines), "peak": peak}


def parse_summary(stdout: str) -> tuple[float | None, dict[str, int]]:
    """(in-step seconds, {table: rows written}) from a step's rendered StepSummary."""
    secs, rows = None, {}
    for line in stdout.splitlines():
        m = DONE.match(line)
        if m:
            secs = float(m.group(2))
            continue
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = int(m.group(2).replace(",", ""))
    return secs, rows


def nlogn_exponent(n1: int, n2: int) -> float:
    """The exponent n·log n shows between n1 and n2: ``log((n2 log n2)/(n1 log n1)) / log(n2/n1)``."""
    return math.log((n2 * math.log(n2)) / (n1 * math.log(n1))) / math.log(n2 / n1)


def run_size(n: int, steps: list[str], extra_sets: list[str], timeout: float, keep: bool) -> dict:
    work = tempfile.mkdtemp(prefix=f"lgsid-scale-{n}-")
    sets = work_sets(work) + [f"{k}={v}" for k, v in demo_sizes(n).items()] + extra_sets
    cfg = resolved_config(sets)
    latest: dict[str, int] = {}
    out = {"n_items": n, "work_dir": work, "demo": {k.split(".")[1]: v for k, v in demo_sizes(n).items()}, "steps": {}}
    try:
        for step in steps:
            print(f"[pipeline_scale] n={n:,} {step} ...", file=sys.stderr, flush=True)
            r = run_monitored(_cli([step, "--conf", CONF, *[a for s in sets for a in ("--set", s)]]), timeout, os.path.join(work, f"{step}.stderr"))
            in_step, rows_out = parse_summary(r["stdout"])
            rec = {
                "rc": r["rc"], "seconds": round(r["seconds"], 1), "step_seconds": in_step,
                "peak_rss_mb": {k: round(v / 2**20) for k, v in r["peak"].items()},
                "rows_in": {t: latest[t] for t in INPUTS.get(step, []) if t in latest},
                "rows_out": rows_out,
            }
            if step in CAPS:
                rec["caps"] = {k: _get(cfg, k) for k in CAPS[step]}
            out["steps"][step] = rec
            latest.update(rows_out)
            if r["rc"] != 0:
                with open(os.path.join(work, f"{step}.stderr")) as fh:
                    tail = [ln for ln in fh.read().strip().splitlines() if ln.strip()][-3:]
                rec["error"] = " | ".join(tail)[-400:]
                print(f"[pipeline_scale] {step} failed (rc {r['rc']}); later steps skipped. stderr: {work}/{step}.stderr", file=sys.stderr)
                break
    finally:
        if not keep and all(s["rc"] == 0 for s in out["steps"].values()):
            shutil.rmtree(work, ignore_errors=True)
            out["work_dir"] = None
    ok = [s for s in out["steps"].values()]
    out["completed"] = len(ok) == len(steps) and all(s["rc"] == 0 for s in ok)
    out["end_to_end_s"] = round(sum(s["seconds"] for s in ok), 1)
    out["peak_rss_gb"] = round(max((s["peak_rss_mb"]["tree"] for s in ok), default=0) / 1024, 2)
    return out


def exponents(results: list[dict], steps: list[str]) -> dict[str, list[dict]]:
    """Per step, the scaling exponent between each pair of consecutive sizes, and whether it beats n·log n."""
    out: dict[str, list[dict]] = {}
    for a, b in zip(results, results[1:]):
        n1, n2 = a["n_items"], b["n_items"]
        for step in steps:
            s1, s2 = a["steps"].get(step), b["steps"].get(step)
            if not s1 or not s2 or s1["rc"] or s2["rc"]:
                continue
            t1, t2 = s1["step_seconds"] or s1["seconds"], s2["step_seconds"] or s2["seconds"]
            e = math.log(max(t2, 1e-3) / max(t1, 1e-3)) / math.log(n2 / n1)
            lim = nlogn_exponent(n1, n2)
            judged = t2 >= MIN_SECONDS_FOR_EXPONENT
            out.setdefault(step, []).append({"from": n1, "to": n2, "exponent": round(e, 2), "nlogn_exponent": round(lim, 2),
                                             "judged": judged, "super_nlogn": bool(judged and e > lim + 0.1)})
    return out


def _fmt_rows(d: dict) -> str:
    return ", ".join(f"{k}={v:,}" for k, v in d.items()) or "-"


def print_table(results: list[dict], exps: dict, steps: list[str]) -> None:
    for r in results:
        print(f"\n== {r['n_items']:,} items ({r['demo']['n_users']:,} users, {r['demo']['n_interactions']:,} interactions)")
        hdr = f"{'step':<11} {'wall s':>8} {'step s':>8} {'driver MB':>9} {'jvm MB':>7} {'workers MB':>10} {'tree MB':>8}  rows in -> rows out  [caps]"
        print(hdr)
        print("-" * len(hdr))
        for step in steps:
            s = r["steps"].get(step)
            if s is None:
                print(f"{step:<11} (not run)")
                continue
            m = s["peak_rss_mb"]
            caps = ("  [" + ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in s["caps"].items()) + "]") if s.get("caps") else ""
            st = f"{s['step_seconds']:.1f}" if s["step_seconds"] is not None else "-"
            err = f"  FAILED rc={s['rc']}: {s.get('error', '')}" if s["rc"] else ""
            print(f"{step:<11} {s['seconds']:>8.1f} {st:>8} {m['driver']:>9} {m['jvm']:>7} {m['py_workers']:>10} {m['tree']:>8}  "
                  f"{_fmt_rows(s['rows_in'])} -> {_fmt_rows(s['rows_out'])}{caps}{err}")
        print(f"end to end: {r['end_to_end_s']:.1f} s, peak RSS (tree) {r['peak_rss_gb']:.2f} GB, completed: {r['completed']}")
    if exps:
        print("\n== scaling exponents of the in-step time (n·log n shown for the same interval; judged when >= "
              f"{MIN_SECONDS_FOR_EXPONENT:.0f} s at the larger size)")
        for step, rows in exps.items():
            for e in rows:
                verdict = ("SUPER-n·log n" if e["super_nlogn"] else "ok") if e["judged"] else "too short to judge"
                print(f"{step:<11} {e['from']:>9,} -> {e['to']:<9,} exponent {e['exponent']:>5.2f}  (n·log n {e['nlogn_exponent']:.2f})  {verdict}")


def targets(results: list[dict], exps: dict) -> tuple[dict, list[str]]:
    """Judgeable targets as {name: {"target", "value", "pass"}}, plus the names that cannot be judged."""
    t: dict[str, dict] = {}
    na: list[str] = []
    at100k = [r for r in results if r["n_items"] == 100_000]
    if at100k and at100k[0]["completed"]:
        v = at100k[0]["end_to_end_s"]
        t["end_to_end_100k_s"] = {"target": f"<= {TARGET_E2E_S}", "value": v, "pass": v <= TARGET_E2E_S}
    else:
        na.append("end_to_end_100k_s (100k not run or not completed)")
    done = [r for r in results if r["steps"]]
    if done:
        big = max(done, key=lambda r: r["n_items"])
        v = big["peak_rss_gb"]
        t[f"peak_rss_gb_at_{big['n_items']}"] = {"target": f"<= {TARGET_RSS_GB}", "value": v, "pass": v <= TARGET_RSS_GB}
    judged = [e for rows in exps.values() for e in rows if e["judged"]]
    if judged:
        bad = sorted({s for s, rows in exps.items() for e in rows if e["super_nlogn"]})
        t["no_step_super_nlogn"] = {"target": "none", "value": ",".join(bad) or "none", "pass": not bad}
    else:
        na.append("no_step_super_nlogn (needs two sizes with steps >= 10 s)")
    t["all_steps_completed"] = {"target": "true", "value": all(r["completed"] for r in results), "pass": all(r["completed"] for r in results)}
    return t, na


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated item counts (default: %(default)s; add 1000000 for 1M)")
    ap.add_argument("--quick", action="store_true", help="10k items only, smaller training budgets: " + " ".join(QUICK_SETS))
    ap.add_argument("--steps", default=None, help="comma-separated steps (default: pipeline.steps of the config)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="extra config override for every step")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per step (default: %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directories")
    args = ap.parse_args(argv)
    sizes = [10_000] if args.quick else [int(float(s)) for s in args.sizes.split(",") if s]
    extra = (QUICK_SETS if args.quick else []) + list(args.sets)
    steps = args.steps.split(",") if args.steps else list(resolved_config(extra)["pipeline"]["steps"])
    print(f"pipeline_scale: sizes {sizes}, steps {', '.join(steps)}; cpu count {os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}")
    if extra:
        print(f"budget overrides (not the default config): {' '.join(extra)}")
    results = [run_size(n, steps, extra, args.timeout, args.keep) for n in sizes]
    exps = exponents(results, steps)
    print_table(results, exps, steps)
    tg, na = targets(results, exps)
    print("\n== targets")
    for k, v in tg.items():
        print(f"{k:<28} {str(v['value']):>10}  target {v['target']:<10} {'PASS' if v['pass'] else 'FAIL'}")
    for k in na:
        print(f"{k:<28} n/a")
    summary = {
        "sizes": sizes, "quick": args.quick, "overrides": extra, "load_avg_1m": round(os.getloadavg()[0], 1),
        "results": [{k: v for k, v in r.items() if k != "work_dir"} for r in results],
        "exponents": exps, "targets": tg, "not_judged": na,
    }
    print(json.dumps(summary))
    return 0 if all(v["pass"] for v in tg.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
