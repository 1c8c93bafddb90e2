"""SID churn between two SID model versions on the same items: how many codes a refit reshuffled.

A ranking model that joins ``sid_l1..sid_l3`` learned one embedding per code; an item whose code
changed between the champion and a candidate is, to that model, another item. The churn of a
prefix is the share of the items both versions coded whose prefix differs:

==================  ============================================================
metric              items counted as changed
==================  ============================================================
``sid_churn_l1``    ``sid_l1`` differs
``sid_churn_l1_l2`` ``sid_l1`` or ``sid_l2`` differs
``sid_churn_full``  any code level differs (the dedup suffix aside)
``sid_churn_sid``   the ``sid`` string differs (codes and dedup suffix)
==================  ============================================================

``promote`` logs them in the candidate's MLflow run and gates on ``sid_churn_full``
(``promote.max_sid_churn``); ``write-sids`` keeps them per version in ``sid_health``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

KEYS = ("sid_churn_l1", "sid_churn_l1_l2", "sid_churn_full")


def prefix_churn(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Share of items whose code prefix of each length changed.

    ``churn_l = (1/N) Σ_i [ (c_i1, …, c_il) ≠ (c'_i1, …, c'_il) ]`` for ``l = 1..L``.

    Args:
        old: (N, L) codes of the items under one version. new: (N, L) codes of the same items, same
            row order, under the other.

    Returns:
        (L,) float64, non-decreasing; zeros when N = 0.

    Raises:
        ValueError: the shapes differ.
    """
    old, new = np.asarray(old), np.asarray(new)
    if old.shape != new.shape or old.ndim != 2:
        raise ValueError(f"churn needs two (N, L) code arrays of one shape, got {old.shape} and {new.shape}")
    if len(old) == 0:
        return np.zeros(old.shape[1])
    changed = np.logical_or.accumulate(old != new, axis=1)  # (N, L): prefix up to level l changed
    return changed.mean(axis=0)


def sid_churn(old: np.ndarray, new: np.ndarray) -> dict[str, float]:
    """:func:`prefix_churn` as the metrics of the module docstring (L1, L1-L2, full).

    Args:
        old, new: (N, L) codes of the same items (L >= 1; with L = 1, L1-L2 and full equal L1).
    """
    c = prefix_churn(old, new)
    return {"sid_churn_l1": float(c[0]), "sid_churn_l1_l2": float(c[min(1, len(c) - 1)]), "sid_churn_full": float(c[-1])}


def churn_between(old: "DataFrame", new: "DataFrame", levels: int = 3) -> dict[str, float]:
    """The churn metrics of two versions' ``sid_items`` rows, joined on ``item_id`` (computed in Spark).

    The same definitions as :func:`sid_churn` (a null level, past a model's depth, equals null),
    plus ``sid_churn_sid`` and ``sid_churn_items`` (the items both versions have).

    Args:
        old, new: rows with ``item_id, sid, sid_l1..sid_l<levels>`` of one version each.
        levels: code levels compared.
    """
    from pyspark.sql import functions as F

    cols = [f"sid_l{l + 1}" for l in range(levels)]
    j = old.select("item_id", F.col("sid").alias("o_sid"), *[F.col(c).alias(f"o_{c}") for c in cols]).join(
        new.select("item_id", F.col("sid").alias("n_sid"), *[F.col(c).alias(f"n_{c}") for c in cols]), "item_id")
    changed, aggs = F.lit(False), []
    for c in cols:
        changed = changed | ~F.col(f"o_{c}").eqNullSafe(F.col(f"n_{c}"))
        aggs.append(F.avg(changed.cast("double")).alias(c))
    row = j.agg(F.count(F.lit(1)).alias("n"), F.avg((F.col("o_sid") != F.col("n_sid")).cast("double")).alias("sid"), *aggs).collect()[0]
    n = int(row["n"])
    got = [float(row[c] or 0.0) for c in cols]
    return {"sid_churn_l1": got[0], "sid_churn_l1_l2": got[min(1, levels - 1)], "sid_churn_full": got[-1],
            "sid_churn_sid": float(row["sid"] or 0.0), "sid_churn_items": float(n)}


def churn_of_versions(store, old_version: str, new_version: str, levels: int = 3) -> dict[str, float] | None:
    """:func:`churn_between` of two versions' rows in the ``sid_items`` table, or None when either has none.

    Args:
        store: :class:`lgsid.storage.DeltaStore`. old_version, new_version: ``sid_model_version`` values.
    """
    from pyspark.sql import functions as F

    if not store.exists("sid_items"):
        return None
    t = store.read("sid_items")
    old, new = t.where(F.col("sid_model_version") == old_version), t.where(F.col("sid_model_version") == new_version)
    got = churn_between(old, new, levels)
    return got if got["sid_churn_items"] > 0 else None


def churn_line(churn: dict[str, float]) -> str:
    """``"3.1% of 3,000 items changed their full SID (L1-L2 2.0%, L1 0.4%)"``."""
    n = int(churn.get("sid_churn_items", 0))
    return (f"{churn['sid_churn_full']:.1%}" + (f" of {n:,} items" if n else " of the items") + " changed their full SID "
            f"(L1-L2 {churn['sid_churn_l1_l2']:.1%}, L1 {churn['sid_churn_l1']:.1%})")
