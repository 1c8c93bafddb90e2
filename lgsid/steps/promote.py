"""Step ``promote``: move the ``champion`` alias to the candidate SID model if it passes the gate (:mod:`lgsid.registry`).

Before the gate, the SID churn of the candidate against the champion (:mod:`lgsid.sid_churn`) is
measured on the items both have in ``sid_items``, logged as metrics of the candidate's MLflow run
and printed; the gate refuses a full-SID churn above ``promote.max_sid_churn`` unless forced.
"""

from __future__ import annotations

from lgsid.config import LGSIDConfig
from lgsid.registry import CHAMPION, promote, target_version, version_by_alias
from lgsid.steps.summary import StepSummary


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``promote``: measure and log the SID churn, then move ``champion`` if the gate passes (raises PromotionRefused otherwise)."""
    from lgsid.tracking import setup_mlflow

    setup_mlflow(cfg)
    prev = version_by_alias(cfg, CHAMPION)
    version = target_version(cfg)
    churn, notes = measure_churn(spark, cfg, str(prev.version) if prev else None, version)
    version, gate_notes = promote(cfg, version, churn=churn)
    metrics = {"champion_version": version, "previous_champion": str(prev.version) if prev else "none"}
    metrics.update({k: round(v, 4) for k, v in (churn or {}).items() if k != "sid_churn_items"})
    return StepSummary("promote", metrics=metrics, notes=notes + gate_notes)


def measure_churn(spark, cfg: LGSIDConfig, champion: str | None, candidate: str) -> tuple[dict[str, float] | None, list[str]]:
    """SID churn of ``candidate`` against ``champion`` from ``sid_items``, logged in the candidate's run.

    Returns:
        (churn metrics or None when there is nothing to compare, notes).
    """
    from mlflow import MlflowClient

    from lgsid.sid_churn import churn_line, churn_of_versions
    from lgsid.storage import DeltaStore

    if champion is None or champion == candidate:
        return None, []
    if spark is None:
        return None, ["sid churn not measured (no Spark session to read sid_items)"]
    churn = churn_of_versions(DeltaStore(spark, cfg.storage), champion, candidate)
    if churn is None:
        return None, [f"sid churn not measured: sid_items has no items common to versions {champion} and {candidate}"]
    client = MlflowClient()
    mv = client.get_model_version(cfg.mlflow.sid_model_name, candidate)
    if mv.run_id:
        for k, v in churn.items():
            client.log_metric(mv.run_id, k, float(v))
        client.set_tag(mv.run_id, "lgsid.sid_churn_against", champion)
    return churn, [f"sid churn against champion {champion}: {churn_line(churn)}"]
