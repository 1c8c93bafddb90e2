"""The pipeline's steps: one registry shared by the ``lgsid`` CLI, ``jobs/*.py`` and MLflow's MLproject.

Each step is a function ``run(spark, cfg) -> StepSummary`` in the library. The registry maps the
step name to ``"module:function"`` so importing the CLI stays cheap (torch, transformers and
mlflow load only for the steps that need them).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from lgsid.storage import WriteResult

STEPS: dict[str, tuple[str, str]] = {
    # name: ("module:function", one-line help)
    "ingest": ("lgsid.sources:run", "Load items/users/interactions (demo generator or check-in import) into Delta, validated."),
    "prompts": ("lgsid.prompts:run", "Build per-item geo prompts (content part, location part, combined)."),
    "negatives": ("lgsid.negatives:run", "Mine distance-ranked, density-aware negatives and the reward lists (Eq. 1, 3)."),
    "pairs": ("lgsid.pairs:run", "Build D_mix: co-click pairs (Eq. 5) + geo-constrained pairs."),
    "embed": ("lgsid.embed:run", "Embed item prompts with the reference (or aligned) encoder into item_embeddings."),
    "reward": ("lgsid.reward:run", "Train the list-wise geographic reward model (Eq. 2-4), log to MLflow."),
    "gdpo": ("lgsid.gdpo:run", "G-DPO post-training of the encoder with LoRA (Eq. 6-8), log + register to MLflow."),
    "tokenize": ("lgsid.lifecycle:tokenize", "Train the SID tokenizer (HGIT or a baseline), assign SIDs, register the SID model."),
    "write-sids": ("lgsid.sid_store:run", "Apply the registered SID model as a Spark UDF and MERGE into item_sid_features."),
    "promote": ("lgsid.registry:run", "Move the 'champion' alias to the candidate SID model if its metrics pass the gate."),
    "evaluate": ("lgsid.evaluate:run", "Reproduce the paper's tables; write report.md + metrics.json, log to MLflow."),
}


@dataclass
class StepSummary:
    """What a step did, printed as a one-screen summary at its end.

    Attributes:
        step: Step name.
        tables: Delta writes (table, version, rows).
        seconds: Wall time of the step.
        metrics: Headline numbers worth showing (losses, recall, counts).
        notes: Free-text lines (where the report is, what was skipped and why).
    """

    step: str
    tables: list[WriteResult] = field(default_factory=list)
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"== lgsid {self.step}: done in {self.seconds:.1f}s"]
        if self.tables:
            w = max(len(t.table) for t in self.tables)
            lines.append(f"   {'table'.ljust(w)}  {'rows':>10}  version")
            for t in self.tables:
                lines.append(f"   {t.table.ljust(w)}  {t.rows:>10,}  v{t.version}")
        for k, v in self.metrics.items():
            lines.append(f"   {k}: {v:.4g}" if isinstance(v, float) else f"   {k}: {v}")
        lines.extend(f"   {n}" for n in self.notes)
        return "\n".join(lines)


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
