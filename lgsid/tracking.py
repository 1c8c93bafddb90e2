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


QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
"""Settings of a quiet console (a user's own value wins): no per-file "Downloading artifacts" bars from
MLflow, no sub-second "Loading weights" bar each time transformers loads the encoder."""

QUIET_MESSAGES = ('Calling `spark_udf()` with `env_manager="local"`',)
"""Starts of MLflow log messages dropped by :func:`quiet_console`: ``write-sids`` runs the SID model's
UDF in the pipeline's own environment on purpose (the model ships the ``lgsid`` code and pinned
requirements, see :mod:`lgsid.serving.sid_model`), so the advice to recreate it with conda is noise."""


QUIET_WARNINGS = (r".*An input example was not provided when logging the model",)
"""Python warnings (regexes) of MLflow dropped by :func:`quiet_console`: the pyfuncs are logged with an
explicit signature (:func:`lgsid.serving.sid_model.signature`), so an input example would add nothing."""


class _DropMessages:
    """A ``logging`` filter dropping records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]):
        self.prefixes = prefixes

    def filter(self, record) -> bool:
        return not str(record.getMessage()).startswith(self.prefixes)


def quiet_console() -> None:
    """Keep the console to what a user acts on (idempotent; called by :func:`use_tracking_uri`, so by every step).

    Sets :data:`QUIET_ENV` unless already set (and, when ``transformers`` or ``huggingface_hub`` was
    imported before, turns their bars off directly), drops exactly the log messages of
    :data:`QUIET_MESSAGES` from the ``mlflow.pyfunc`` logger and the warnings of :data:`QUIET_WARNINGS`.
    The type-hint warning of the SID pyfunc is fixed at its cause instead (``predict`` carries
    ``pd.DataFrame`` hints). The long steps keep their own progress bar.
    """
    import logging
    import sys
    import warnings

    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
        elif "huggingface_hub" in sys.modules:
            sys.modules["huggingface_hub"].utils.disable_progress_bars()
    log = logging.getLogger("mlflow.pyfunc")
    if not any(isinstance(f, _DropMessages) for f in log.filters):
        log.addFilter(_DropMessages(QUIET_MESSAGES))
    for rx in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=rx, category=UserWarning)


def use_tracking_uri(uri: str) -> None:
    """Point this process's MLflow client (tracking and registry) at ``uri`` (e.g. in a Spark worker); quiet its console."""
    import mlflow

    quiet_console()
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


CLOSED_REASON_TAG = "lgsid.closed_reason"
"""Tag set on a run that :func:`close_leftover_runs` marked FAILED, saying why."""


def close_leftover_runs(exp_id: str, stage: str, closed_by: str = "") -> list[str]:
    """Mark FAILED the runs of ``stage`` that an earlier start left RUNNING; returns their run ids.

    A run whose process lost its tracking server (or was killed) never reaches ``end_run`` and stays
    RUNNING for ever. One stage of one experiment runs once at a time, so when the stage starts again
    its RUNNING runs are leftovers: each gets the tag ``lgsid.closed_reason`` and the status FAILED,
    with its original start time kept. The process's active run (a stage nested in another) is never
    touched.

    Args:
        exp_id: The experiment id. stage: The ``lgsid.stage`` tag of the runs to close.
        closed_by: What closes them (e.g. ``"the next start of stage 'tokenize'"``), for the tag.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    active = mlflow.active_run()
    keep = {active.info.run_id} if active else set()
    runs = client.search_runs(
        [exp_id], filter_string=f"tags.`lgsid.stage` = '{stage}' and attributes.status = 'RUNNING'", max_results=1000,
    )
    closed = []
    for r in runs:
        if r.info.run_id in keep:
            continue
        reason = (f"left RUNNING (its process ended without closing it, e.g. the tracking server was lost); "
                  f"marked FAILED by {closed_by or f'the next start of stage {stage!r}'}")
        client.set_tag(r.info.run_id, CLOSED_REASON_TAG, reason)
        client.set_terminated(r.info.run_id, status="FAILED")
        closed.append(r.info.run_id)
    return closed


@contextmanager
def stage_run(cfg: LGSIDConfig, stage: str, log_config: bool = True, tags: dict | None = None) -> Iterator["object"]:
    """An MLflow run for one pipeline stage, tagged with the stage (and ``tags``) and logging the resolved config.

    Runs of the same stage that an earlier start left RUNNING are first marked FAILED
    (:func:`close_leftover_runs`), and a one-line note names them on stderr.
    """
    import sys

    import mlflow

    exp_id = setup_mlflow(cfg)
    closed = close_leftover_runs(exp_id, stage)
    if closed:
        print(f"lgsid: marked {len(closed)} leftover RUNNING run(s) of stage {stage!r} FAILED "
              f"(tag {CLOSED_REASON_TAG}): {', '.join(closed)}", file=sys.stderr)
    with mlflow.start_run(experiment_id=exp_id, run_name=stage, tags={"lgsid.stage": stage, **(tags or {})}) as run:
        if log_config:
            params = {k: str(v)[:500] for k, v in cfg.flat().items()}
            mlflow.log_params(params)
            mlflow.log_dict(cfg.to_dict(), "config/resolved_config.json")
        yield run
