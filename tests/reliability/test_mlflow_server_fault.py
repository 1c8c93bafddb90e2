"""Reliability, faults: the MLflow tracking server goes away while ``tokenize`` registers the SID model.

A real ``mlflow server`` (SQLite store, ``--serve-artifacts``) runs on a free 127.0.0.1 port. The
registration path of the step (:func:`lgsid.registry.log_sid_model`, as ``tokenize`` calls it, after
the tokenizer's artifacts are saved) runs in a subprocess that pauses at a registration point
(:data:`lgsid.registry.PAUSE_ENV`); the test stops the server there and lets the child go on against
the dead server. Then the server restarts on the same store and the registry must hold nothing
half-registered: every version READY, with its artifacts (MLmodel + tokenizer) and its tags, and every
alias on such a version; the rerun registers a complete candidate.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from lgsid import registry
from reliability_data import wait_for_pause

pytestmark = pytest.mark.reliability_heavy

MODEL = "lgsid-sid-fault"
REQUIRED_TAGS = ("lgsid.embedding_model_version", "lgsid.embedding_dim", "lgsid.tokenizer_kind")

CHILD = textwrap.dedent('''
    import sys
    import mlflow
    from lgsid.config import load_config, replace
    from lgsid.registry import log_sid_model
    from lgsid.serving.sid_model import save_artifacts, signature
    from lgsid.tokenizer import build_tokenizer, codebook_health
    from lgsid.tokenizer.hgit import level1_paths
    from lgsid.tokenizer.job import model_tags
    from lgsid.tokenizer.toy import toy_catalogue
    from lgsid.tracking import stage_run

    uri, art_root, model, work = sys.argv[1:5]
    cfg = replace(load_config(None), mlflow={"tracking_uri": uri, "artifact_root": art_root, "sid_model_name": model},
                  tokenizer={"codebook_sizes": [4, 3, 2], "epochs": 1, "batch_size": 64})
    items, emb = toy_catalogue(120, 8, seed=5)
    tok = build_tokenizer(cfg.tokenizer).fit(emb, items, progress=False)
    codes = tok.encode(emb, items)
    with stage_run(cfg, "tokenize", log_config=False):
        mlflow.log_metrics(codebook_health(codes, tok.codebook_sizes, items["category_l1"].to_numpy()))
        sections = cfg.to_dict()
        art = save_artifacts(work, tok, level1_paths(items, codes[:, 0], tok.codebook_sizes[0]), "reference",
                             sections["encoder"], sections["prompts"])
        version = log_sid_model(cfg, art, signature(int(tok.dim)), model_tags(tok, "reference"))
    print("registered", version)
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One ``mlflow server`` process group on 127.0.0.1:``port`` over ``root`` (stopped by :meth:`stop`)."""

    def __init__(self, root, port: int):
        self.root, self.port, self.proc = root, port, None
        self.uri = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 180) -> "Server":
        mlflow_bin = os.path.join(os.path.dirname(sys.executable), "mlflow")
        cmd = [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
               "--serve-artifacts", "--artifacts-destination", str(self.root / "artifacts")]
        self.log = open(self.root / f"server-{time.time_ns()}.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, f"mlflow server exited: {open(self.log.name).read()[-2000:]}"
            try:
                if urllib.request.urlopen(f"{self.uri}/health", timeout=2).status == 200:
                    return self
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"mlflow server did not answer /health in {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the server and its workers
            self.proc.wait(timeout=30)
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()


@pytest.fixture
def servers():
    """Every Server a test starts is stopped at the end, even when the test fails."""
    started: list[Server] = []
    yield started
    for s in started:
        s.stop()


def _child(server: Server, work, env_extra: dict) -> subprocess.Popen:
    env = {**os.environ, **env_extra, "PYTHONPATH": os.pathsep.join(sys.path), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
           "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20", "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}
    art_root = str(work) + "-unused"  # the experiment exists already: its server-side artifact location is used
    return subprocess.Popen([sys.executable, "-c", CHILD, server.uri, art_root, MODEL, str(work)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _audit(uri: str) -> tuple[list[str], dict[str, str]]:
    """Problems with the registry's state (empty = nothing half-registered) and the aliases found."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    problems, aliases = [], {}
    try:
        registered = client.get_registered_model(MODEL)
    except mlflow.exceptions.MlflowException:
        return problems, aliases  # no registered model at all: nothing half-registered
    versions = client.search_model_versions(f"name = '{MODEL}'")
    by_version = {str(v.version): v for v in versions}
    for v in versions:
        if v.status != "READY":
            problems.append(f"version {v.version} is {v.status}")
        missing = [t for t in REQUIRED_TAGS if t not in (v.tags or {})]
        if missing:
            problems.append(f"version {v.version} lacks tags {missing}")
        try:
            top = {os.path.basename(a.path) for a in mlflow.artifacts.list_artifacts(f"models:/{MODEL}/{v.version}")}
            arts = {os.path.basename(a.path) for a in mlflow.artifacts.list_artifacts(f"models:/{MODEL}/{v.version}/artifacts")}
        except Exception as e:  # noqa: BLE001 - any failure to list is a version without artifacts
            problems.append(f"version {v.version}: artifacts unreadable ({type(e).__name__})")
            continue
        if "MLmodel" not in top or "tokenizer" not in arts:
            problems.append(f"version {v.version} lacks artifacts (has {sorted(top)}, artifacts/{sorted(arts)})")
    for alias, ver in (registered.aliases or {}).items():
        aliases[alias] = str(ver)
        if str(ver) not in by_version:
            problems.append(f"alias {alias} points at missing version {ver}")
    return problems, aliases


@pytest.mark.parametrize("point", ["register", "alias"])
def test_mlflow_server_dies_during_tokenize_registration(case, tmp_path, servers, point):
    where = {"register": "artifacts uploaded, version not yet created", "alias": "version created, candidate not yet moved"}[point]
    case.expect(f"tracking server killed at registration ({where}): clear error, nothing half-registered after restart; rerun registers a complete candidate")
    port = _free_port()
    server = Server(tmp_path, port).start()
    servers.append(server)
    from mlflow import MlflowClient

    from lgsid.config import load_config

    # the experiment as a server-managed one (artifacts proxied by the server: mlflow-artifacts:/...)
    MlflowClient(server.uri).create_experiment(load_config(None).mlflow.experiment)
    flag = tmp_path / "at-register"
    proc = _child(server, tmp_path / "art1", {registry.PAUSE_ENV: str(flag), registry.PAUSE_POINT_ENV: point})
    try:
        wait_for_pause(proc, flag, "the registration point", 300)
        server.stop()  # the tracking server goes away ...
        flag.unlink()  # ... and the step goes on against it
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = out.decode()
    assert proc.returncode != 0, out[-3000:]
    assert "alias 'candidate' was not moved; rerun `lgsid tokenize`" in out, out[-3000:]

    server = Server(tmp_path, port).start()  # same store, same port
    servers.append(server)
    problems, aliases = _audit(server.uri)
    assert problems == [], problems
    assert "candidate" not in aliases  # the only registration failed: no candidate yet
    case.corrupted_versions(len(problems))

    rerun = _child(server, tmp_path / "art2", {})
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out.decode()[-3000:]
    version = out.decode().strip().splitlines()[-1].split()[-1]
    problems, aliases = _audit(server.uri)
    assert problems == [], problems
    assert aliases.get("candidate") == version
    case.corrupted_versions(len(problems))
