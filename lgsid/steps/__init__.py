"""The pipeline's steps: one registry shared by the ``lgsid`` CLI, ``jobs/*.py`` and MLflow's MLproject.

Each step is a module ``lgsid/steps/<step>.py`` whose ``run(spark, cfg) -> StepSummary`` reads the
config, calls the domain modules (``lgsid.prompts``, ``lgsid.negatives``, ``lgsid.gdpo``, ...) and
writes its tables, MLflow runs and registry aliases. The domain modules know nothing of steps, the
registry or each other's steps (``tests/unit/test_layering.py``). The registry below maps the step
name to ``"module:function"`` so importing the CLI stays cheap (torch, transformers and mlflow load
only for the steps that need them).
"""

from __future__ import annotations

import importlib
import time
from typing import Callable

from lgsid.steps.summary import StepSummary

STEPS: dict[str, tuple[str, str]] = {
    # name: ("module:function", one-line help)
    "ingest": ("lgsid.steps.ingest:run", "Load items/users/interactions (demo generator or check-in import) into Delta, validated."),
    "prompts": ("lgsid.steps.prompts:run", "Build per-item geo prompts (content part, location part, combined)."),
    "negatives": ("lgsid.steps.negatives:run", "Mine distance-ranked, density-aware negatives and the reward lists (Eq. 1, 3)."),
    "pairs": ("lgsid.steps.pairs:run", "Build D_mix: co-click pairs (Eq. 5) + geo-constrained pairs."),
    "embed": ("lgsid.steps.embed:run", "Embed item prompts with the reference (or aligned) encoder into item_embeddings."),
    "reward": ("lgsid.steps.reward:run", "Train the list-wise geographic reward model (Eq. 2-4), log to MLflow."),
    "gdpo": ("lgsid.steps.gdpo:run", "G-DPO post-training of the encoder with LoRA (Eq. 6-8), log + register to MLflow."),
    "tokenize": ("lgsid.steps.tokenize_sids:run", "Train the SID tokenizer (HGIT or a baseline), assign SIDs, register the SID model."),
    "write-sids": ("lgsid.steps.write_sids:run", "Apply the registered SID model as a Spark UDF and MERGE into item_sid_features."),
    "promote": ("lgsid.steps.promote:run", "Move the 'champion' alias to the candidate SID model if its metrics pass the gate."),
    "evaluate": ("lgsid.steps.evaluate:run", "Reproduce the paper's tables; write report.md + metrics.json, log to MLflow."),
}


def resolve(name: str) -> Callable[..., StepSummary]:
    """The ``run`` function of step ``name``.

    Raises:
        ValueError: unknown step; the message lists the valid ones.
    """
    if name not in STEPS:
        raise ValueError(f"unknown step {name!r}; valid steps: {', '.join(STEPS)}")
    target = STEPS[name][0]
    mod, fn = target.split(":")
    return getattr(importlib.import_module(mod), fn)


def run_step(name: str, spark, cfg) -> StepSummary:
    """Run one step, time it and fill ``StepSummary.seconds``."""
    t0 = time.perf_counter()
    summary = resolve(name)(spark, cfg)
    summary.seconds = time.perf_counter() - t0
    return summary
