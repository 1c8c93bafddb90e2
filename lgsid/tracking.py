"""MLflow plumbing shared by every stage: tracking URI, experiment, params from the resolved config."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from lgsid.config import LGSIDConfig


def _abs_sqlite(uri: str) -> str:
    """``sqlite:///relative/path.db`` → absolute, creating the parent directory."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = uri[len(prefix):]
        if not os.path.isabs(path):
            path = os.path.abspath(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return prefix + path
    return uri


def setup_mlflow(cfg: LGSIDConfig) -> str:
    """Point MLflow at ``cfg.mlflow.tracking_uri`` (registry too) and create/select the experiment.

    Returns the experiment id. The default SQLite store makes the model registry work offline.
    """
    import mlflow

    uri = _abs_sqlite(cfg.mlflow.tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is None:
        root = cfg.mlflow.artifact_root
        loc = root if "://" in root else "file://" + os.path.abspath(root)
        return mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=loc)
    mlflow.set_experiment(cfg.mlflow.experiment)
    return exp.experiment_id


@contextmanager
def stage_run(cfg: LGSIDConfig, stage: str, log_config: bool = True) -> Iterator["object"]:
    """An MLflow run for one pipeline stage, tagged with the stage and logging the resolved config."""
    import mlflow

    exp_id = setup_mlflow(cfg)
    with mlflow.start_run(experiment_id=exp_id, run_name=stage, tags={"lgsid.stage": stage}) as run:
        if log_config:
            params = {k: str(v)[:500] for k, v in cfg.flat().items()}
            mlflow.log_params(params)
            mlflow.log_dict(cfg.to_dict(), "config/resolved_config.json")
        yield run
