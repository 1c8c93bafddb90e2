"""Step ``reward``: embed the reward lists, train the list-wise reward model (Eq. 2-4; :mod:`lgsid.reward`), log it to MLflow."""

from __future__ import annotations

import os

from lgsid.config import LGSIDConfig
from lgsid.reward import (
    REWARD_ARTIFACT,
    embed_lists,
    input_fingerprint,
    load_lists,
    plot_reward_history,
    save_reward_model,
    train_reward_model,
)
from lgsid.steps.summary import StepSummary


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``reward``: embed the lists (reference encoder), train the reward MLP, log to MLflow.

    The model is logged as the run's ``reward_model/`` artifact (``reward_model.pt`` +
    ``reward_model.json``; ``gdpo`` loads it from ``runs:/<run id>/reward_model``), with per-epoch
    losses and held-out NDCG / AUC. The run is tagged with the :func:`input_fingerprint`; a rerun
    with the same fingerprint reuses that run and trains nothing.
    """
    import tempfile

    import mlflow

    from lgsid.fingerprint import TAG
    from lgsid.tracking import find_run, stage_run

    fp = input_fingerprint(spark, cfg)
    done = find_run(cfg, "reward", fp)
    if done is not None:
        m = done.data.metrics
        return StepSummary(
            "reward",
            metrics={k: m[k] for k in ("reward_val_loss", "val_ndcg", "val_auc_true_vs_far", "val_auc_true_vs_near", "val_auc_near_vs_far", "n_train_lists") if k in m},
            notes=[f"inputs and config unchanged (fingerprint {fp}): reusing mlflow run {done.info.run_id}; nothing trained"],
        )
    lists = load_lists(spark, cfg)
    data = embed_lists(spark, lists, cfg)
    with stage_run(cfg, "reward", tags={TAG: fp}) as run_:
        history: list[dict] = []

        def log(rec: dict, ep: int) -> None:
            history.append(rec)
            mlflow.log_metrics(rec, step=ep)

        model, metrics = train_reward_model(data, cfg, log)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        meta = {"mode": cfg.reward.mode, "conditioning": cfg.reward.conditioning, "mlflow_run_id": run_.info.run_id, "encoder_checkpoint": cfg.encoder.checkpoint, **metrics}
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, REWARD_ARTIFACT)
            save_reward_model(model, out, meta)
            mlflow.log_artifacts(out, REWARD_ARTIFACT)
            png = os.path.join(tmp, "reward_loss.png")
            plot_reward_history(history, png)
            mlflow.log_artifact(png, "plots")
    return StepSummary(
        "reward",
        metrics={k: metrics[k] for k in ("reward_val_loss", "val_ndcg", "val_auc_true_vs_far", "val_auc_true_vs_near", "val_auc_near_vs_far", "best_epoch", "n_train_lists")},
        notes=[f"reward model: runs:/{run_.info.run_id}/{REWARD_ARTIFACT}", f"mlflow run: {run_.info.run_id}"],
    )
