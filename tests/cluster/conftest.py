"""A Spark standalone cluster (1 master, 2 workers) and an MLflow tracking server on 127.0.0.1.

Every process is started from pyspark's / the venv's own binaries (nothing downloaded), in its own
process group, and stopped in the fixture's teardown even when the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env() -> dict[str, str]:
    """Environment of every cluster process and spark-submit: venv first on PATH, this checkout importable."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "SPARK_HOME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(k, None)
    return env


class Procs:
    """Started processes (own process groups) and their logs; ``stop()`` ends every group."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, p))
        return p

    def tail(self, name: str, n: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM every process group (newest first), SIGKILL what is left after 30 s; a group counts
        as gone only when no member is left (mlflow's server workers, a JVM's children)."""
        for _, p in reversed(self.procs):
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.time() + 30
        for _, p in reversed(self.procs):
            try:
                p.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
            while _group_alive(p.pid) and time.time() < deadline:
                time.sleep(0.5)
            if _group_alive(p.pid):
                _signal_group(p.pid, signal.SIGKILL)
                p.wait(timeout=10)

    def alive(self) -> list[str]:
        """Names of started processes whose group still has a member."""
        return [name for name, p in self.procs if _group_alive(p.pid)]


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a reused id owned by someone else: not ours
        return False
    return True


def _wait(what: str, ok, timeout: float, procs: Procs, name: str) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if ok():
                return
        except OSError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"{what} not up after {timeout:.0f}s; log tail:\n{procs.tail(name)}")


def _json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """Master + 2 workers (1 core, 1 GiB each) and ``mlflow server``; yields their URLs and the base dir."""
    import pyspark

    base = tmp_path_factory.mktemp("cluster")
    (base / "logs").mkdir()
    spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
    env = cluster_env()
    env["SPARK_LOG_DIR"] = str(base / "logs")
    procs = Procs(base / "logs")
    port, ui = free_port(), free_port()
    try:
        procs.start("master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(ui)], env, base)
        master_json = f"http://127.0.0.1:{ui}/json/"
        _wait("spark master", lambda: _json(master_json)["status"] == "ALIVE", 180, procs, "master")
        for i in range(2):
            wdir = base / f"worker{i}"
            wdir.mkdir()
            procs.start(f"worker{i}", [spark_class, "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
                                       "--host", "127.0.0.1", "--cores", "1", "--memory", "1536m",
                                       "--webui-port", str(free_port()), "--work-dir", str(wdir)], env, base)
        _wait("2 spark workers", lambda: sum(w["state"] == "ALIVE" for w in _json(master_json)["workers"]) == 2,
              180, procs, "worker1")
        mport = free_port()
        procs.start("mlflow", [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mport),
                               "--backend-store-uri", f"sqlite:///{base}/mlflow.db", "--serve-artifacts",
                               "--artifacts-destination", f"file://{base}/mlartifacts", "--workers", "1"], env, base)
        tracking = f"http://127.0.0.1:{mport}"
        _wait("mlflow server", lambda: urllib.request.urlopen(f"{tracking}/health", timeout=5).status == 200, 240, procs, "mlflow")
        yield {"master": f"spark://127.0.0.1:{port}", "master_json": master_json, "tracking_uri": tracking,
               "base": base, "env": env, "procs": procs}
    finally:
        procs.stop()
        left = procs.alive()
        assert not left, f"still running after teardown: {left}"
