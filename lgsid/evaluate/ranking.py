"""Ranking metrics for the downstream models: Hit@K, NDCG@K (one relevant item per user), split
into revisit and new targets, and AUC. Ranked lists hold distinct items, so they have no ties.
"""

from __future__ import annotations

import numpy as np


def hit_ndcg_from_ranked(ranked: np.ndarray, target: np.ndarray, k: int) -> tuple[float, float]:
    """Hit@K and NDCG@K of ranked recommendation lists.

    Args:
        ranked: (U, R) item indices, best first; -1 pads lists shorter than R. Items in a row are distinct.
        target: (U,) the held-out item index of each user.
        k: cut-off (<= R is not required; a shorter list simply cannot hit beyond its end).

    Returns:
        (mean Hit@K, mean NDCG@K) over users.
    """
    ranked = np.asarray(ranked)[:, :k]  # (U, k)
    target = np.asarray(target)
    if ranked.shape[0] == 0:
        return float("nan"), float("nan")
    match = ranked == target[:, None]  # (U, k), at most one True per row
    hit = match.any(axis=1)
    pos = match.argmax(axis=1)  # 0-based rank where hit
    ndcg = np.where(hit, 1.0 / np.log2(pos + 2.0), 0.0)
    return float(hit.mean()), float(ndcg.mean())


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (scikit-learn; tied scores count one half). NaN when only one class is present.

    Args:
        labels: (M,) 0/1.
        scores: (M,) higher = more likely positive.
    """
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if labels.size == 0 or np.unique(labels).size < 2:
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores)))


def ranked_metrics(ranked: np.ndarray, target: np.ndarray, revisit: np.ndarray, ks=(5, 10)) -> dict[str, float]:
    """Hit@K / NDCG@K over all users and split into revisit and new targets.

    A target is a *revisit* when the user visited that item in training. Keys: ``Hit@K``,
    ``NDCG@K``, ``revisit.Hit@K``, ``revisit.NDCG@K``, ``new.Hit@K``, ``new.NDCG@K`` for each K,
    plus ``revisit_share`` (NaN metrics for an empty half).

    Args:
        ranked: (U, R) item indices, best first (-1 = padding).
        target: (U,) held-out item per user.
        revisit: (U,) bool, target in the user's training history.
    """
    revisit = np.asarray(revisit, dtype=bool)
    out: dict[str, float] = {"revisit_share": float(revisit.mean()) if revisit.size else float("nan")}
    for k in ks:
        out[f"Hit@{k}"], out[f"NDCG@{k}"] = hit_ndcg_from_ranked(ranked, target, k)
        for name, m in (("revisit", revisit), ("new", ~revisit)):
            out[f"{name}.Hit@{k}"], out[f"{name}.NDCG@{k}"] = hit_ndcg_from_ranked(np.asarray(ranked)[m], np.asarray(target)[m], k)
    return out


GEN_KS = (5, 10)
"""K of the next-item tables' Hit@K / NDCG@K."""


def mean_std(xs: list[float]) -> dict:
    """``{"mean", "std" (ddof 1; 0 for one value), "runs"}`` over the finite values of ``xs``."""
    a = np.asarray(xs, dtype=float)
    fin = a[np.isfinite(a)]
    return {"mean": float(fin.mean()) if fin.size else float("nan"), "std": float(fin.std(ddof=1)) if fin.size > 1 else 0.0, "runs": [float(x) for x in a]}


def summarise_runs(rows: dict[str, dict]) -> None:
    """Add ``summary`` = :func:`mean_std` over the runs of every metric (all keys but seed and seconds) to each row, in place."""
    for v in rows.values():
        keys = [k for k in v["runs"][0] if k not in ("seed", "seconds")]
        v["summary"] = {k: mean_std([r[k] for r in v["runs"]]) for k in keys}
