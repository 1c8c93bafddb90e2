"""Step ``evaluate``: every section of :mod:`lgsid.evaluate` on the pipeline's tables; report, MLflow run, and the candidate's gate tags.

Reading the tables and the candidate's codes is :mod:`lgsid.evaluate.io`; the sections are
:func:`lgsid.evaluate.sections.evaluate_frames`. Tagging the candidate model version with its own
downstream metrics (read by the promotion gate, :mod:`lgsid.registry`) happens here, at step level.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from lgsid import fs
from lgsid.config import LGSIDConfig
from lgsid.evaluate.io import candidate_codes, downstream_metrics, load_inputs
from lgsid.registry import CANDIDATE, version_by_alias
from lgsid.steps.summary import StepSummary

#: The evaluate settings that bound what the driver holds (named in the step's summary).
CAPS = ("max_items", "max_interactions", "max_read_users", "max_users", "max_train_examples", "max_geo_items", "multi_seed_max_items")


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``evaluate``: compute every section with inputs, write report.md + metrics.json + plots to
    ``cfg.evaluate.out_dir``, log them to MLflow and tag the candidate version."""
    import torch

    from lgsid.evaluate.jobs import fits_on_executors
    from lgsid.evaluate.report import flat_metrics, headline_table, log_to_mlflow, write_report
    from lgsid.evaluate.sections import evaluate_frames
    from lgsid.storage import DeltaStore
    from lgsid.tracking import setup_mlflow

    ec = cfg.evaluate
    if ec.torch_threads:
        torch.set_num_threads(ec.torch_threads)
    store = DeltaStore(spark, cfg.storage)
    notes: list[str] = []
    notes.append("driver-side caps: " + ", ".join(f"evaluate.{k}={getattr(ec, k):,}" for k in CAPS) + " (0 = no cap)")
    inp = load_inputs(store, cfg, notes)
    fixed, mv, variant = {}, None, None
    if ec.score_candidate:  # the registered candidate's own codes replace its variant's refit
        setup_mlflow(cfg)
        mv = version_by_alias(cfg, CANDIDATE)
        if mv is None:
            notes.append(f"no '{cfg.mlflow.sid_model_name}@{CANDIDATE}' registered: every variant is a refit, no gate tags set")
        else:
            fixed, variant = candidate_codes(store, cfg, inp, mv, notes)
    # out_dir may be a URI: write locally (a file: URI's own path, else a temp dir copied there at the end)
    local = fs.local_path(ec.out_dir)
    out_dir = local or tempfile.mkdtemp(prefix="lgsid-report-")
    os.makedirs(out_dir, exist_ok=True)
    plot_dir = os.path.join(out_dir, "plots")
    on_executors = fits_on_executors(ec.fit_on, spark.sparkContext.master)
    notes.append(f"model fits: {'one-task Spark jobs on the executors' if on_executors else 'worker processes on the driver host'} "
                 f"(evaluate.fit_on={ec.fit_on}, master {spark.sparkContext.master})")
    metrics = evaluate_frames(inp, cfg, plot_dir=plot_dir, fixed=fixed, spark=spark if on_executors else None)
    notes.extend(metrics["meta"].get("notes", []))
    metrics["meta"]["notes"] = notes
    if mv is not None:
        metrics["meta"]["candidate"] = {"version": str(mv.version), "variant": variant}
    paths = write_report(metrics, out_dir)
    if local is None:
        fs.copy_dir(out_dir, ec.out_dir)
        paths = {k: fs.join(ec.out_dir, os.path.relpath(p, out_dir)) for k, p in paths.items()}
    if ec.log_mlflow:
        run_id = log_to_mlflow(cfg, metrics, out_dir)
        notes.append(tag_candidate(cfg, metrics, run_id, mv, variant))
        notes.append(f"MLflow run {run_id} in experiment '{cfg.mlflow.experiment}'; browse: mlflow ui --backend-store-uri {cfg.mlflow.tracking_uri}")
    if local is None:
        shutil.rmtree(out_dir, ignore_errors=True)
    notes.append(f"report: {paths['report']}  metrics: {paths['metrics']}")
    for sec, why in metrics["skipped"].items():
        notes.append(f"skipped {sec}: {why}")
    notes.append("")
    notes.extend(headline_table(metrics).splitlines())
    return StepSummary(step="evaluate", metrics=dict(flat_metrics(metrics, headline_only=True)), notes=notes)


def tag_candidate(cfg: LGSIDConfig, metrics: dict, run_id: str | None, mv, variant: str | None) -> str:
    """Set ``downstream.*`` tags on the candidate model version ``mv`` from the variant that scored its own codes.

    Returns a note saying what was done.
    """
    from mlflow import MlflowClient

    name = cfg.mlflow.sid_model_name
    if mv is None or variant is None:
        return "the candidate's own codes were not scored: downstream gate tags not set"
    vals = downstream_metrics(metrics, variant)
    if not vals:
        return f"'{name}' v{mv.version}: no downstream metric was measured (sections off?): gate tags not set"
    client = MlflowClient()
    for k, v in vals.items():
        client.set_model_version_tag(name, mv.version, k, f"{v:.6g}")
    client.set_model_version_tag(name, mv.version, "downstream.variant", variant)
    if run_id:
        client.set_model_version_tag(name, mv.version, "lgsid.evaluate_run_id", run_id)
    return f"tagged '{name}' v{mv.version} (candidate) with {', '.join(f'{k}={v:.4f}' for k, v in vals.items())} from its own codes"
