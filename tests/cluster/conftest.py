"""A Spark standalone cluster (1 master, 2 workers) and an MLflow tracking server on 127.0.0.1.

Every process is started from pyspark's / the venv's own binaries (nothing downloaded), in its own
process group (:mod:`lgsid.spark.standalone`), and stopped in the fixture's teardown even when the test fails.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest

from lgsid.serving.process import free_port
from lgsid.spark.standalone import ProcessGroups, cluster_env, start_standalone, wait_until

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def pytest_collection_modifyitems(config, items):
    """Cluster tests run only when selected (``-m cluster``): the default suite stays short."""
    if "cluster" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="cluster end-to-end test: run with -m cluster (.ci/run does)")
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """Master + 2 workers (1 core, 1 GiB each) and ``mlflow server``; yields their URLs and the base dir."""
    base = tmp_path_factory.mktemp("cluster")
    env = cluster_env(sys.executable, REPO)
    procs = ProcessGroups(base / "logs")
    try:
        master = start_standalone(procs, base, env, workers=2, cores=1, memory="1536m")
        mport = free_port()
        procs.start("mlflow", [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mport),
                               "--backend-store-uri", f"sqlite:///{base}/mlflow.db", "--serve-artifacts",
                               "--artifacts-destination", f"file://{base}/mlartifacts", "--workers", "1"], env, base)
        tracking = f"http://127.0.0.1:{mport}"
        wait_until("mlflow server", lambda: urllib.request.urlopen(f"{tracking}/health", timeout=5).status == 200, 240, procs, "mlflow")
        yield {"master": master.url, "master_json": master.json, "tracking_uri": tracking,
               "base": base, "env": env, "procs": procs}
    finally:
        procs.stop()
        left = procs.alive()
        assert not left, f"still running after teardown: {left}"
