"""Runs left RUNNING by a process that lost its tracking server are closed by the stage's next start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

# A stage run whose process dies without closing it (as when the tracking server goes away: end_run never lands).
CUT_OFF = textwrap.dedent('''
    import os, sys
    import mlflow
    from lgsid.config import load_config, replace
    from lgsid.tracking import stage_run
    cfg = replace(load_config(None), mlflow={"tracking_uri": sys.argv[1], "artifact_root": sys.argv[2]})
    with stage_run(cfg, "tokenize", log_config=False) as run:
        print(run.info.run_id, flush=True)
        os._exit(3)
''')


@pytest.fixture
def cfg(tmp_path):
    from lgsid.config import load_config, replace

    return replace(load_config(None), mlflow={"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "artifact_root": str(tmp_path / "art")})


def test_next_start_marks_leftover_runs_failed(cfg, capfd):
    import mlflow
    from mlflow import MlflowClient

    from lgsid.tracking import CLOSED_REASON_TAG, setup_mlflow, stage_run

    exp = setup_mlflow(cfg)
    p = subprocess.run([sys.executable, "-c", CUT_OFF, cfg.mlflow.tracking_uri, cfg.mlflow.artifact_root], capture_output=True, text=True, timeout=300)
    assert p.returncode == 3, p.stderr
    lost = p.stdout.split()[0]
    client = MlflowClient()
    assert client.get_run(lost).info.status == "RUNNING"  # what a lost server leaves behind
    other = client.create_run(exp, tags={"lgsid.stage": "reward"}).info.run_id  # another stage's run: not ours to close
    with stage_run(cfg, "tokenize", log_config=False):
        pass
    got = client.get_run(lost)
    assert got.info.status == "FAILED"
    assert got.data.tags[CLOSED_REASON_TAG] == (
        "left RUNNING (its process ended without closing it, e.g. the tracking server was lost); "
        "marked FAILED by the next start of stage 'tokenize'")
    assert client.get_run(other).info.status == "RUNNING"
    assert f"marked 1 leftover RUNNING run(s) of stage 'tokenize' FAILED (tag {CLOSED_REASON_TAG}): {lost}" in capfd.readouterr().err
    finished = client.search_runs([exp], "tags.`lgsid.stage` = 'tokenize'")
    assert sorted(r.info.status for r in finished) == ["FAILED", "FINISHED"]
    assert mlflow.active_run() is None


def test_the_active_run_is_never_closed(cfg):
    import mlflow
    from mlflow import MlflowClient

    from lgsid.tracking import close_leftover_runs, setup_mlflow

    exp = setup_mlflow(cfg)
    with mlflow.start_run(experiment_id=exp, tags={"lgsid.stage": "evaluate"}) as outer:
        assert close_leftover_runs(exp, "evaluate") == []
        assert MlflowClient().get_run(outer.info.run_id).info.status == "RUNNING"


def test_quiet_console_drops_only_the_env_manager_advice(monkeypatch):
    import logging

    from lgsid.tracking import quiet_console

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    quiet_console()
    quiet_console()  # idempotent: one filter
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    log = logging.getLogger("mlflow.pyfunc")
    assert sum(type(f).__name__ == "_DropMessages" for f in log.filters) == 1
    seen = []
    h = logging.Handler()
    h.emit = lambda r: seen.append(r.getMessage())
    log.addHandler(h)
    try:
        log.warning('Calling `spark_udf()` with `env_manager="local"` does not recreate the same environment ...')
        log.warning("The version of Python that the model was saved in differs")
    finally:
        log.removeHandler(h)
    assert seen == ["The version of Python that the model was saved in differs"]
    import warnings

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("default")
        quiet_console()
        warnings.warn("\x1b[1;33mAn input example was not provided when logging the model. To ensure ...", UserWarning)
        warnings.warn("another MLflow warning", UserWarning)
    assert [str(x.message) for x in w] == ["another MLflow warning"]
    import transformers.utils.logging as tlog  # imported before: its "Loading weights" bar is turned off directly

    tlog.enable_progress_bar()
    quiet_console()
    assert not tlog.is_progress_bar_enabled()
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    quiet_console()
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "true"  # a user's own setting wins
