"""Step-level wiring of the SID model's lifecycle: ``tokenize`` registers a candidate, the gate may make it champion.

The domain step (:func:`lgsid.tokenizer.job.run_tokenize`) fits and registers; the registry
(:mod:`lgsid.registry`) owns aliases and the gate. Only this module joins them, so neither imports
the other's job:

    lgsid.lifecycle -> lgsid.tokenizer.job -> lgsid.registry, lgsid.serving
    lgsid.lifecycle -> lgsid.registry
"""

from __future__ import annotations

from lgsid.config import LGSIDConfig
from lgsid.steps import StepSummary


def tokenize(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``tokenize``: :func:`lgsid.tokenizer.job.run_tokenize`, then the bootstrap promotion.

    With ``tokenizer.bootstrap_champion`` and no version holding ``champion`` yet, the new (or
    reused) version goes through the promotion gate at once; a refusal is a note, not an error.
    """
    from lgsid.registry import bootstrap_champion
    from lgsid.tokenizer.job import run_tokenize

    summary = run_tokenize(spark, cfg)
    version = str(summary.metrics.get("sid_model_version", "unregistered"))
    if cfg.tokenizer.log_model and cfg.tokenizer.bootstrap_champion and version != "unregistered":
        note = bootstrap_champion(cfg, version)
        if note:
            summary.notes.append(note)
    return summary
