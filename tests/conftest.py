"""Shared fixtures: one session-scoped local Spark, a config whose paths live in a temp dir, and bench/ scripts as modules."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Each test starts without an inherited MLflow experiment.

    MLflow 3's ``set_experiment`` exports ``MLFLOW_EXPERIMENT_ID`` into ``os.environ`` so that
    subprocesses inherit it; a later test's ``mlflow run`` or spark-submit against a fresh tracking
    store would then ask that store for an experiment it does not have ("No Experiment with id=1").
    """
    for k in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(k, None)


def pytest_collection_modifyitems(config, items):
    import torch

    skip_gpu = pytest.mark.skip(reason="needs CUDA; no GPU on this machine")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A local[1] SparkSession bound to 127.0.0.1, shared by every Spark test."""
    from lgsid.spark import require_java
    from pyspark.sql import SparkSession

    require_java()
    cache = tmp_path_factory.mktemp("petastorm")
    s = (
        SparkSession.builder.master("local[1]")
        .appName("lgsid-tests")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("petastorm.spark.converter.parentCacheDirUrl", f"file://{cache}")
        .getOrCreate()
    )
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture
def cfg(tmp_path):
    """The default config with every path under a fresh temp dir (tables, staging, MLflow, reports)."""
    from lgsid.config import load_config, replace

    w = tmp_path / "work"
    return replace(
        load_config(None),
        storage={"root": str(w / "tables"), "staging_dir": str(w / "staging")},
        spark={"petastorm_cache_dir": str(w / "petastorm"), "shuffle_partitions": 1},
        mlflow={"tracking_uri": f"sqlite:///{w}/mlflow.db", "artifact_root": str(w / "mlartifacts")},
        train={"checkpoint_dir": str(w / "checkpoints")},
        evaluate={"out_dir": str(w / "report")},
        pipeline={"work_dir": str(w)},
    )


@pytest.fixture
def store(spark, cfg):
    """A DeltaStore over the temp table root (delta-rs backend on this machine)."""
    from lgsid.storage import DeltaStore

    return DeltaStore(spark, cfg.storage)


@pytest.fixture(scope="session")
def bench_module():
    """``bench_module("quality")`` -> ``bench/quality.py`` as a module (``bench/`` is scripts, not a package); one load per name."""
    import importlib.util
    import sys

    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
    loaded: dict = {}

    def load(name: str):
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(f"_bench_{name}", os.path.join(bench, f"{name}.py"))
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod  # a bench's dataclasses resolve their annotations through sys.modules
            spec.loader.exec_module(mod)
            loaded[name] = mod
        return loaded[name]

    yield load
    for name in loaded:
        sys.modules.pop(f"_bench_{name}", None)
