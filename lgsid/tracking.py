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


def tracking_uri(cfg: LGSIDConfig) -> str:
    """``cfg.mlflow.tracking_uri`` as every process must use it (a relative SQLite path made absolute)."""
    return _abs_sqlite(cfg.mlflow.tracking_uri)


def use_tracking_uri(uri: str) -> None:
    """Point this process's MLflow client (tracking and registry) at ``uri`` (e.g. in a Spark worker)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def setup_mlflow(cfg: LGSIDConfig) -> str:
    """Point MLflow at ``cfg.mlflow.tracking_uri`` (registry too) and create/select the experiment.

    Returns the experiment id. The default SQLite store makes the model registry work offline.
    """
    import mlflow

    from lgsid.fs import to_uri

    use_tracking_uri(tracking_uri(cfg))
    exp = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is None:
        return mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=to_uri(cfg.mlflow.artifact_root))
    mlflow.set_experiment(cfg.mlflow.experiment)
    return exp.experiment_id


def find_run(cfg: LGSIDConfig, stage: str, fp: str):
    """The newest FINISHED run of ``stage`` in the experiment tagged with input fingerprint ``fp``, or None."""
    import mlflow

    from lgsid.fingerprint import TAG

    exp_id = setup_mlflow(cfg)
    runs = mlflow.search_runs(
        experiment_ids=[exp_id],
        filter_string=f"tags.`lgsid.stage` = '{stage}' and tags.`{TAG}` = '{fp}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1, output_format="list",
    )
    return runs[0] if runs else None


@contextmanager
def stage_run(cfg: LGSIDConfig, stage: str, log_config: bool = True, tags: dict | None = None) -> Iterator["object"]:
    """An MLflow run for one pipeline stage, tagged with the stage (and ``tags``) and logging the resolved config."""
    import mlflow

    exp_id = setup_mlflow(cfg)
    with mlflow.start_run(experiment_id=exp_id, run_name=stage, tags={"lgsid.stage": stage, **(tags or {})}) as run:
        if log_config:
            params = {k: str(v)[:500] for k, v in cfg.flat().items()}
            mlflow.log_params(params)
            mlflow.log_dict(cfg.to_dict(), "config/resolved_config.json")
        yield run
