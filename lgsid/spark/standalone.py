"""A Spark standalone cluster on this machine: one master and N workers from pyspark's own ``spark-class``.

Used by the cluster end-to-end test (``tests/cluster``) and ``bench/pipeline_scale.py --data-plane``.
Nothing is downloaded: the master and workers are the JVM classes that ship inside the pyspark wheel.
Every process runs in its own process group, so :meth:`ProcessGroups.stop` ends it with everything it
started (a worker's executors and their Python workers included)::

    procs = ProcessGroups(logs_dir)
    try:
        master = start_standalone(procs, base, cluster_env(python), workers=2, cores=1, memory="1536m")
        ...  # spark-submit --master master.url, or spark.master=master.url
    finally:
        procs.stop()
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lgsid.serving.process import free_port

# Variables a caller's environment may carry that would point the cluster's processes elsewhere.
_CLEARED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "SPARK_HOME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


def cluster_env(python: str, repo: str | os.PathLike) -> dict[str, str]:
    """Environment of every cluster process and driver: ``python``'s bin first on PATH, ``repo`` importable,
    ``python`` as the driver's and the executors' Python, everything bound to 127.0.0.1."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH", "")) if p)
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env["PYSPARK_PYTHON"] = python
    env["PYSPARK_DRIVER_PYTHON"] = python
    for k in _CLEARED_ENV:
        env.pop(k, None)
    return env


class ProcessGroups:
    """Started processes, each in its own process group, with their logs under ``logs``; :meth:`stop` ends every group."""

    def __init__(self, logs: str | os.PathLike):
        self.logs = Path(logs)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str], cwd: str | os.PathLike) -> subprocess.Popen:
        """Start ``cmd`` in a new process group, output to ``<logs>/<name>.log``."""
        with open(self.logs / f"{name}.log", "wb") as log:
            p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, p))
        return p

    def tail(self, name: str, n: int = 3000) -> str:
        """The last ``n`` characters of ``name``'s log ('' if it has none)."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM every process group (newest first), SIGKILL what is left after ``grace_s``; a group counts
        as gone only when no member is left (a JVM's children, a server's workers)."""
        for _, p in reversed(self.procs):
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.time() + grace_s
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


def wait_until(what: str, ok, timeout: float, procs: ProcessGroups, name: str) -> None:
    """Poll ``ok()`` every second until it is true; raise ``RuntimeError`` with ``name``'s log tail after ``timeout`` s."""
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


@dataclass(frozen=True)
class Standalone:
    """A running standalone cluster: ``url`` (``spark://…``) for drivers, ``json`` the master's status endpoint,
    ``worker_names`` the :class:`ProcessGroups` names of its workers."""

    url: str
    json: str
    worker_names: tuple[str, ...]


def start_standalone(procs: ProcessGroups, base: str | os.PathLike, env: dict[str, str], workers: int = 2, cores: int = 1,
                     memory: str = "1536m", timeout: float = 180.0) -> Standalone:
    """Start a master and ``workers`` workers (``cores`` cores and ``memory`` each) on 127.0.0.1 under ``procs``;
    return once the master is ALIVE and every worker has registered. Work directories go under ``base``."""
    import pyspark

    base = Path(base)
    spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
    env = dict(env, SPARK_LOG_DIR=str(procs.logs))
    port, ui = free_port(), free_port()
    procs.start("master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                           "--port", str(port), "--webui-port", str(ui)], env, base)
    master_json = f"http://127.0.0.1:{ui}/json/"
    wait_until("spark master", lambda: _json(master_json)["status"] == "ALIVE", timeout, procs, "master")
    names = []
    for i in range(workers):
        wdir = base / f"worker{i}"
        wdir.mkdir(parents=True, exist_ok=True)
        names.append(f"worker{i}")
        procs.start(names[-1], [spark_class, "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
                                "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
                                "--webui-port", str(free_port()), "--work-dir", str(wdir)], env, base)
    wait_until(f"{workers} spark workers", lambda: sum(w["state"] == "ALIVE" for w in _json(master_json)["workers"]) == workers,
               timeout, procs, names[-1])
    return Standalone(url=f"spark://127.0.0.1:{port}", json=master_json, worker_names=tuple(names))
