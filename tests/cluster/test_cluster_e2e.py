"""Every step through spark-submit on a standalone cluster, MLflow on a tracking server, URI locations.

The config is what a platform engineer writes for a new environment: a file that ``include:``s
conf/cluster.example.yaml unchanged and sets only environment keys (the ones
tests/unit/test_config.py allows environments to differ in): every location a ``file://`` URI under
a temp dir outside the working directory, ``mlflow.tracking_uri`` the test's ``http://`` server,
``mlflow.artifact_root`` the server's proxied ``mlflow-artifacts:/`` store, and
``storage.backend: deltars`` (this machine has no delta-spark jars). The model choices stay
conf/model.yaml's; only training budgets are made tiny, as ``--set`` run-time choices on every
spark-submit line (:data:`BUDGET`), so CI stays short. Each step runs as
``spark-submit --master spark://127.0.0.1:<port> <repo>/jobs/<step>.py --conf <cluster.yaml> --set ...``
from an empty working directory, which must still be empty afterwards.

    .venv/bin/python -m pytest -q -s -m cluster tests/cluster
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml


pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

JOBS = {"tokenize": "tokenize_sids.py", "write-sids": "write_sids.py"}  # the others: jobs/<step>.py
# Wall-clock cap of the whole test (all spark-submits): a hung step fails CI instead of stalling it.
TOTAL_TIMEOUT_S = float(os.environ.get("LGSID_CLUSTER_TIMEOUT_S", 45 * 60))
TABLES = ["items", "users", "interactions", "geo_prompts", "negatives", "reward_lists", "gdpo_pairs",
          "item_embeddings", "sid_items", "item_sid_features"]

# Tiny budgets for a 120-item catalogue (run-time choices, the same on every step and on the rerun,
# so input fingerprints match). Model choices (encoder, pooling, tokenizer kind, losses) are untouched.
BUDGET = [
    "encoder.max_length=32", "encoder.batch_size=32",
    "negatives.k=4", "negatives.n_far=1",
    "reward.epochs=1", "reward.max_anchors=40", "reward.hidden_sizes=[32]",
    "gdpo.max_steps=2", "gdpo.batch_size=4",
    "train.checkpoint_every=1", "train.shuffle_buffer=16",  # checkpoints are written to the file:// URI
    "tokenizer.codebook_sizes=[6, 3, 2]", "tokenizer.epochs=2", "tokenizer.batch_size=64", "tokenizer.geo_coverage_sample=100",
    "promote.max_collision_rate=1.0", "promote.min_usage_l1=0.1",  # 120 items in 36 codes: gate on health, not size
    # evaluate: one seed, the registered candidate's variant only (lgsid), 1-epoch downstream models
    "evaluate.seeds=[0]", "evaluate.variants=[lgsid]", "evaluate.ks=[5, 10]", "evaluate.tiger_epochs=1",
    "evaluate.din_epochs=1", "evaluate.tiger_d_model=16", "evaluate.tiger_heads=2", "evaluate.max_history=4",
    "evaluate.torch_threads=1",
    "sid_store.batch_size=64",
]


def _environment_keys() -> set[str]:
    """tests/unit/test_config.py's ENVIRONMENT_KEYS: the keys in which environments may differ."""
    spec = importlib.util.spec_from_file_location("_lgsid_test_config", REPO / "tests" / "unit" / "test_config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return set(mod.ENVIRONMENT_KEYS)


def _cluster_conf(base: Path, tracking_uri: str) -> dict:
    """The environment file: conf/cluster.example.yaml included as is, locations -> file:// URIs under ``base``."""
    uri = lambda *p: "file://" + str(base.joinpath(*p))  # noqa: E731
    return {
        "include": str(REPO / "conf" / "cluster.example.yaml"),
        "storage": {"root": uri("lake", "tables"), "staging_dir": uri("lake", "staging"),
                    "backend": "deltars"},  # no delta-spark jars on this machine
        "spark": {"petastorm_cache_dir": uri("lake", "petastorm"), "shuffle_partitions": 2, "app_name": "lgsid-cluster-test"},
        "ingest": {"items_path": uri("raw", "items.parquet"), "interactions_path": uri("raw", "interactions.parquet")},
        "train": {"checkpoint_dir": uri("lake", "checkpoints")},
        "mlflow": {"tracking_uri": tracking_uri, "experiment": "lgsid-cluster-test",
                   "artifact_root": "mlflow-artifacts:/lgsid"},  # the server's --serve-artifacts store
        "evaluate": {"out_dir": uri("lake", "report")},
        "pipeline": {"work_dir": uri("lake", "work")},
    }


def _write_inputs(base: Path) -> int:
    """A tiny demo catalogue as the two input files ``ingest.source=files`` reads. Returns the item count."""
    from lgsid.config import load_config, replace
    from lgsid.sources.demo import generate, write_input_files

    demo = generate(replace(load_config(None), demo={"n_items": 120, "n_users": 60, "n_interactions": 900, "n_towns": 12}).demo)
    write_input_files(demo, str(base / "raw"))
    return len(demo.items)


def _submit(platform, step: str, conf_path: Path, cwd: Path, timeout: float) -> tuple[float, int, str]:
    """``spark-submit --master spark://… jobs/<step>.py --conf <conf> --set <BUDGET>…`` from ``cwd``.

    Returns (seconds, exit code, output). The submit runs in its own process group, killed whole
    (driver JVM and its Python) when it overruns ``timeout``.
    """
    job = REPO / "jobs" / JOBS.get(step, f"{step}.py")
    cmd = [str(VENV_BIN / "spark-submit"), "--master", platform["master"], "--driver-memory", "1g",
           "--executor-memory", "1g", "--total-executor-cores", "2",
           "--conf", f"spark.executorEnv.PYTHONPATH={platform['env']['PYTHONPATH']}",
           "--conf", "spark.ui.enabled=false", "--conf", "spark.ui.showConsoleProgress=false",
           str(job), "--conf", str(conf_path)]
    for kv in BUDGET:
        cmd += ["--set", kv]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=platform["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        out += f"\n[test] spark-submit {step} killed after {timeout:.0f}s"
    return time.perf_counter() - t0, p.returncode, out


def test_every_step_on_a_standalone_cluster(platform, request):
    from mlflow import MlflowClient

    from lgsid.config import load_config

    base: Path = platform["base"]
    t_all = time.perf_counter()
    n_items = _write_inputs(base)
    conf = _cluster_conf(base, platform["tracking_uri"])
    conf_path = base / "cluster.yaml"
    conf_path.write_text(yaml.safe_dump(conf, sort_keys=False))
    cwd = base / "driver-cwd"
    cwd.mkdir()

    # the environment file sets environment keys only; the run differs from cluster.example.yaml
    # in those and the BUDGET keys, nothing else
    env_keys = _environment_keys()
    set_here = {f"{sec}.{k}" for sec, vals in conf.items() if isinstance(vals, dict) for k in vals}
    assert set_here <= env_keys, set_here - env_keys
    resolved = load_config(str(conf_path), BUDGET)
    example = load_config(str(REPO / "conf" / "cluster.example.yaml")).flat()
    differ = {k for k, v in resolved.flat().items() if v != example[k]}
    assert differ <= env_keys | {kv.split("=", 1)[0] for kv in BUDGET}, differ

    timings: dict[str, float] = {}

    def submit(step: str, label: str) -> str:
        left = TOTAL_TIMEOUT_S - (time.perf_counter() - t_all)
        assert left > 0, f"cluster test over its {TOTAL_TIMEOUT_S:.0f}s budget before {label}; timings so far: {timings}"
        timings[label], rc, out = _submit(platform, step, conf_path, cwd, timeout=left)
        (base / "logs" / f"{label.replace(' ', '-')}.log").write_text(out)
        print(f"[cluster] {label}: rc {rc}, {timings[label]:.0f}s", flush=True)
        assert rc == 0, f"{label} failed (rc {rc}):\n{out[-4000:]}"
        assert f"== lgsid {step}: done" in out, out[-2000:]
        return out

    steps = list(resolved.pipeline.steps)
    outs = {step: submit(step, step) for step in steps}
    # evaluate.fit_on=auto on a cluster master: the model fits ran as Spark jobs on the executors, not beside the driver
    assert "model fits: one-task Spark jobs on the executors (evaluate.fit_on=auto" in outs["evaluate"], outs["evaluate"][-3000:]

    # the steps ran as applications of the standalone master, not in a local driver
    master_log = platform["procs"].tail("master", 10**7)
    assert master_log.count("Registered app lgsid-cluster-test") >= len(steps), master_log[-2000:]

    # Delta tables under the file:// root (read through the store: pyarrow 14 cannot read delta-rs MERGE files)
    from lgsid.storage import DeltaStore

    spark = request.getfixturevalue("spark")  # the test's own local session, started only now
    store = DeltaStore(spark, resolved.storage)
    for name in TABLES:
        assert store.count(name) > 0, name
    assert (base / "lake" / "tables" / "items" / "_delta_log").is_dir()

    # registry on the tracking server: both models registered, candidate/champion aliases on the SID model
    client = MlflowClient(tracking_uri=platform["tracking_uri"], registry_uri=platform["tracking_uri"])
    assert client.search_model_versions(f"name='{resolved.mlflow.encoder_model_name}'")
    sid_name = resolved.mlflow.sid_model_name
    sid_versions = client.search_model_versions(f"name='{sid_name}'")
    champion = client.get_model_version_by_alias(sid_name, "champion")
    candidate = client.get_model_version_by_alias(sid_name, "candidate")
    assert champion.version == candidate.version
    # artifacts went to the server's proxied store, the checkpoints and report to their file:// URIs
    assert client.get_experiment_by_name("lgsid-cluster-test").artifact_location == "mlflow-artifacts:/lgsid"
    assert any((base / "mlartifacts").rglob("MLmodel"))
    assert any((base / "lake" / "checkpoints").rglob("*.pt"))
    assert (base / "lake" / "report" / "report.md").is_file() and (base / "lake" / "report" / "metrics.json").is_file()

    # item_sid_features: one row per item, all from the champion
    feats = store.read("item_sid_features").select("item_id", "sid", "sid_model_version").toPandas()
    items = store.read("items").select("item_id").toPandas()
    assert set(feats["item_id"]) == set(items["item_id"]) and len(feats) == len(items) <= n_items
    assert set(feats["sid_model_version"]) == {str(champion.version)}
    assert feats["sid"].is_unique

    # rerun with unchanged inputs and config: write-sids commits nothing; tokenize registers no new version
    v_feats, v_sid_items = store.version("item_sid_features"), store.version("sid_items")
    for step in ("write-sids", "tokenize"):
        submit(step, f"rerun {step}")
    assert store.version("item_sid_features") == v_feats
    assert store.version("sid_items") == v_sid_items
    assert len(client.search_model_versions(f"name='{sid_name}'")) == len(sid_versions)

    timings["total"] = time.perf_counter() - t_all
    (base / "timings.json").write_text(json.dumps(timings, indent=1))
    print("cluster e2e timings (s):", json.dumps({k: round(v, 1) for k, v in timings.items()}), flush=True)

    # nothing was written to the driver's working directory (URI locations are not local folders)
    assert sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*")) == []
