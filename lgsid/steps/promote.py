"""Step ``promote``: move the ``champion`` alias to the candidate SID model if it passes the gate (:mod:`lgsid.registry`)."""

from __future__ import annotations

from lgsid.config import LGSIDConfig
from lgsid.registry import CHAMPION, promote, version_by_alias
from lgsid.steps.summary import StepSummary


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``promote``: move ``champion`` if the gate passes (raises PromotionRefused otherwise)."""
    from lgsid.tracking import setup_mlflow

    setup_mlflow(cfg)
    prev = version_by_alias(cfg, CHAMPION)
    version, notes = promote(cfg)
    return StepSummary(
        "promote",
        metrics={"champion_version": version, "previous_champion": str(prev.version) if prev else "none"},
        notes=notes,
    )
