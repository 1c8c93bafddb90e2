"""The entry points a user types: the README's spark-submit line, ``mlflow run`` and one-line errors.

The spark-submit and ``mlflow run`` tests run real subprocesses from the repository root with the
venv's ``bin`` first on PATH (what the README tells a user to do after command 1), on a tiny demo
config whose locations live in a temp dir.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TINY_DEMO = {"n_items": 60, "n_users": 40, "n_interactions": 400, "n_towns": 10}


def _env() -> dict[str, str]:
    """The user's shell after command 1: venv bin on PATH; this checkout importable; Spark on 127.0.0.1."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    for k in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(k, None)
    return env


def _tiny_settings(work: Path) -> dict[str, dict]:
    """Every location under ``work``, a tiny demo: {section: {key: value}}."""
    return {
        "storage": {"root": str(work / "tables"), "staging_dir": str(work / "staging")},
        "spark": {"petastorm_cache_dir": str(work / "petastorm"), "shuffle_partitions": 1},
        "mlflow": {"tracking_uri": f"sqlite:///{work}/mlflow.db", "artifact_root": str(work / "mlartifacts")},
        "train": {"checkpoint_dir": str(work / "checkpoints")},
        "evaluate": {"out_dir": str(work / "report")},
        "pipeline": {"work_dir": str(work)},
        "demo": dict(TINY_DEMO),
    }


def _tiny_overrides(work: Path) -> list[str]:
    """:func:`_tiny_settings` as ``--set section.key=value`` arguments."""
    return [a for sec, kv in _tiny_settings(work).items() for k, v in kv.items() for a in ("--set", f"{sec}.{k}={v}")]


def _tiny_conf(work: Path) -> Path:
    """:func:`_tiny_settings` as a YAML file (``mlflow run`` takes one --set)."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "tiny.yaml"
    path.write_text(yaml.safe_dump(_tiny_settings(work)))
    return path


def _readme_spark_submit_line() -> str:
    """The command under the README's ``spark-submit-line`` marker."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- spark-submit-line.*?-->\s*```bash\n(.+?)\n```", text, re.S)
    assert m, "README.md lost its spark-submit-line block"
    return m.group(1).strip()


def _error_lines(output: str) -> list[str]:
    """Lines that report an error or belong to a Python/JVM stack trace."""
    pat = re.compile(r"error:|Error\b|Exception\b|Traceback|^\s+at |^\s+File ")
    return [ln for ln in output.splitlines() if pat.search(ln)]


def test_no_job_shadows_a_stdlib_module():
    # spark-submit puts jobs/ first on sys.path: jobs/tokenize.py broke every job at `import linecache`.
    stems = sorted(p.stem for p in (REPO / "jobs").glob("*.py"))
    assert stems, "no jobs found"
    assert not [s for s in stems if s in sys.stdlib_module_names]


def test_every_step_has_a_job_calling_it():
    from lgsid.steps import STEPS

    called = {}
    for path in (REPO / "jobs").glob("*.py"):
        calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "job_main"]
        assert len(calls) == 1, path
        called[calls[0].args[0].value] = path.name
    assert set(STEPS) | {"pipeline"} == set(called), called


def test_one_line_error_and_verbose_trace(spark, cfg, monkeypatch, capsys):
    # A Spark analysis error (a path that does not exist) in a step: one line, exit 2; --verbose: the trace.
    from lgsid import cli

    def missing_path(name, spark_, cfg_):
        spark_.read.parquet("/nonexistent/lgsid-input.parquet").count()

    monkeypatch.setattr(cli, "run_step", missing_path)
    monkeypatch.setattr(cli, "load_config", lambda *a, **k: cfg, raising=False)
    monkeypatch.setattr("lgsid.config.load_config", lambda *a, **k: cfg)
    assert cli.main(["prompts"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lgsid: error: [PATH_NOT_FOUND]"), err
    assert "/nonexistent/lgsid-input.parquet" in err[0]

    assert cli.main(["prompts", "--verbose"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("lgsid: error: [PATH_NOT_FOUND]")


def test_bug_is_not_swallowed(monkeypatch):
    from lgsid import cli

    monkeypatch.setattr("lgsid.config.load_config", lambda *a, **k: (_ for _ in ()).throw(ZeroDivisionError("bug")))
    with pytest.raises(ZeroDivisionError):
        cli.main(["config"])


@pytest.mark.spark
def test_spark_submit_bad_input_prints_one_line(tmp_path):
    cmd = [
        "spark-submit", "--master", "local[1]", "jobs/ingest.py", "--conf", "conf/local.yaml", *_tiny_overrides(tmp_path),
        "--set", "ingest.source=files", "--set", f"ingest.items_path={tmp_path}/missing.parquet",
        "--set", f"ingest.interactions_path={tmp_path}/missing2.parquet",
    ]
    r = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    # spark-submit's PythonRunner merges the Python process's stderr into its stdout.
    out = r.stdout + r.stderr
    assert r.returncode == 2, out[-3000:]
    assert _error_lines(out) == [f"lgsid: error: ingest.items_path: file not found: {tmp_path}/missing.parquet"], out[-3000:]
    assert not (tmp_path / "tables").exists()


@pytest.fixture(scope="module")
def submitted(tmp_path_factory):
    """The README's spark-submit line, run from the repository root with tiny-demo overrides appended."""
    work = tmp_path_factory.mktemp("submit")
    line = _readme_spark_submit_line()
    assert line.startswith('PATH="$PWD/.venv/bin:$PATH" spark-submit '), line
    # "$PWD/.venv/bin" is the venv this test runs in (the same folder on a fresh clone after command 1).
    line = line.replace('"$PWD/.venv/bin:$PATH"', shlex.quote(f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"))
    cmd = line + " " + " ".join(shlex.quote(a) for a in _tiny_overrides(work))
    r = subprocess.run(["bash", "-c", cmd], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    return work, r


@pytest.mark.spark
def test_readme_spark_submit_line_runs(submitted):
    from deltalake import DeltaTable

    work, r = submitted
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    assert "== lgsid ingest: done" in r.stdout
    assert DeltaTable(str(work / "tables" / "items")).to_pyarrow_table().num_rows == TINY_DEMO["n_items"]


@pytest.mark.spark
def test_mlflow_run_entry_point(submitted):
    # The MLproject's `prompts` entry point on the tables the spark-submit line wrote.
    from deltalake import DeltaTable

    work, r = submitted
    assert r.returncode == 0, "spark-submit ingest failed; see test_readme_spark_submit_line_runs"
    conf = _tiny_conf(work)
    env = _env()
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow-projects.db"
    cmd = ["mlflow", "run", "mlflow", "-e", "prompts", "--env-manager", "local", "-P", f"conf={conf}"]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-3000:])
    prompts = DeltaTable(str(work / "tables" / "geo_prompts")).to_pyarrow_table()
    assert prompts.num_rows == TINY_DEMO["n_items"]
    assert set(prompts.column("item_id").to_pylist()) == set(DeltaTable(str(work / "tables" / "items")).to_pyarrow_table().column("item_id").to_pylist())
