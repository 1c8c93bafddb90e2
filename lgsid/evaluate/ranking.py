"""Ranking metrics for the downstream models: Hit@K, NDCG@K (one relevant item per user), AUC.

Ties. A score-based ranking can tie the target with other items (a constant model ties
everything). We report the *expected* metric under uniformly random tie-breaking: if ``g`` other
items score strictly higher than the target and ``e`` score equal, the target's rank is uniform on
``{g+1, …, g+e+1}``, so

    Hit@K  = |{r in that range : r <= K}| / (e + 1)
    NDCG@K = Σ_{r in that range, r <= K} 1/log2(r + 1) / (e + 1)

A constant scorer over N items therefore gets Hit@K = K/N, not 1 (optimistic) or 0 (pessimistic).
Generated lists (beam search) hold distinct items, so they have no ties.
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


def hit_ndcg_from_scores(scores: np.ndarray, target: np.ndarray, k: int) -> tuple[float, float]:
    """Hit@K and NDCG@K from full score matrices, ties broken uniformly at random in expectation.

    Args:
        scores: (U, N) score of every candidate item per user (higher = better).
        target: (U,) column index of each user's relevant item.
        k: cut-off.

    Returns:
        (mean expected Hit@K, mean expected NDCG@K), see the module docstring.
    """
    scores = np.asarray(scores, dtype=np.float64)
    target = np.asarray(target)
    u = np.arange(scores.shape[0])
    s_t = scores[u, target][:, None]  # (U, 1)
    g = (scores > s_t).sum(axis=1)  # (U,) strictly better
    e = (scores == s_t).sum(axis=1) - 1  # (U,) ties besides the target
    hit = np.zeros(len(u))
    ndcg = np.zeros(len(u))
    for r in range(1, k + 1):
        inside = (r >= g + 1) & (r <= g + e + 1)
        hit += inside
        ndcg += inside / np.log2(r + 1.0)
    return float((hit / (e + 1)).mean()), float((ndcg / (e + 1)).mean())


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
