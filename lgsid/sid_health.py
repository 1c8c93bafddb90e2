"""Codebook health over model versions: the ``sid_health`` table and its plot.

Every ``write-sids`` run writes one row per (SID model version, level) of the codes it applied:

=====================  ==========================================================================
column                 meaning
=====================  ==========================================================================
``usage``              share of the level's K codes used by at least one item
``perplexity``         ``exp(H)`` of the level's code distribution (K when uniform, 1 when collapsed)
``collision_rate``     share of items whose code *prefix* up to this level another item shares
                       (``1 − distinct prefixes / N``; at the last level, the items that need a suffix)
``churn``              share of the items both versions have whose prefix up to this level changed
                       against ``previous_sid_model_version`` (:mod:`lgsid.sid_churn`); null for the first
=====================  ==========================================================================

The previous version is the highest registry version below this one that has ``sid_items`` rows,
so a rerun recomputes the same rows: ``write-sids`` merges them on (version, level) and commits
nothing when they are unchanged. :func:`health_plot` draws the series, logged to the version's
MLflow run as ``sid_health/sid_health.png``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lgsid.tokenizer.health import level_stats_from_counts

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

VALUE_COLUMNS = ("codebook_size", "items", "usage", "perplexity", "collision_rate", "churn", "churn_items", "previous_sid_model_version")
CHURN_KEYS = ("sid_churn_l1", "sid_churn_l1_l2", "sid_churn_full")


def health_rows(model_name: str, version: str, codebook_sizes: list[int], counts: list[np.ndarray], distinct_prefixes: list[int],
                n_items: int, churn: dict[str, float] | None = None, previous_version: str | None = None) -> pd.DataFrame:
    """The ``sid_health`` rows of one version from its per-level statistics (pure).

    Args:
        model_name, version: the SID model and its registry version.
        codebook_sizes: K_l per level (L levels).
        counts: per level, (G_l,) items per used code.
        distinct_prefixes: per level, the number of distinct code prefixes (levels 1..l).
        n_items: N, the items coded.
        churn: :func:`lgsid.sid_churn.churn_between` against ``previous_version``, or None.
        previous_version: the version churn is measured against.

    Returns:
        L rows: sid_model_name, sid_model_version, level (1-based) and :data:`VALUE_COLUMNS`.
    """
    rows = []
    L = len(codebook_sizes)
    for l, k in enumerate(codebook_sizes):
        st = level_stats_from_counts(counts[l], int(k))
        key = CHURN_KEYS[min(l, 2)] if l < L - 1 else "sid_churn_full"
        rows.append({
            "sid_model_name": model_name, "sid_model_version": str(version), "level": l + 1, "codebook_size": int(k),
            "items": int(n_items), "usage": st["usage"], "perplexity": st["perplexity"],
            "collision_rate": float(1.0 - distinct_prefixes[l] / n_items) if n_items else 0.0,
            "churn": float(churn[key]) if churn else None,
            "churn_items": int(churn["sid_churn_items"]) if churn else None,
            "previous_sid_model_version": previous_version if churn else None,
        })
    return pd.DataFrame(rows)


def previous_version(versions: list[str], version: str) -> str | None:
    """The highest numeric version below ``version`` among ``versions`` (non-numeric ones ignored), or None.

    Example: ``previous_version(["1", "3", "4", "x"], "4") == "3"``.
    """
    if not str(version).isdigit():
        return None
    below = [int(v) for v in versions if str(v).isdigit() and int(v) < int(version)]
    return str(max(below)) if below else None


def level_statistics(codes: "DataFrame", levels: int) -> tuple[list[np.ndarray], list[int], int]:
    """Per-level code counts and distinct prefixes of ``codes`` (``sid_l1..sid_l<levels>``), computed in Spark.

    Returns:
        (counts per level, distinct prefixes per level, N).
    """
    n = codes.count()
    counts, prefixes = [], []
    for l in range(1, levels + 1):
        col = f"sid_l{l}"
        counts.append(np.array([r["count"] for r in codes.groupBy(col).count().collect()], dtype=np.int64))
        prefixes.append(codes.select(*[f"sid_l{j}" for j in range(1, l + 1)]).distinct().count())
    return counts, prefixes, n


def sid_health_frame(spark, store, model_name: str, version: str, codebook_sizes: list[int], codes: "DataFrame") -> pd.DataFrame:
    """The ``sid_health`` rows of ``version`` for the items in ``codes`` (item_id, sid, sid_l1..sid_l3).

    Churn is measured against :func:`previous_version` among the versions in ``sid_items``.
    """
    from pyspark.sql import functions as F

    from lgsid.sid_churn import churn_between

    L = len(codebook_sizes)
    counts, prefixes, n = level_statistics(codes, L)
    churn, prev = None, None
    if store.exists("sid_items"):
        t = store.read("sid_items")
        prev = previous_version([r[0] for r in t.select("sid_model_version").distinct().collect()], version)
        if prev is not None:
            churn = churn_between(t.where(F.col("sid_model_version") == prev), codes)
            if churn["sid_churn_items"] == 0:
                churn = None
    return health_rows(model_name, version, codebook_sizes, counts, prefixes, n, churn, prev)


def unchanged(new: pd.DataFrame, current: pd.DataFrame) -> bool:
    """Whether ``current`` (stored rows of the same version) already holds ``new``'s values (``updated_at`` aside)."""
    if len(current) != len(new):
        return False
    key = ["sid_model_name", "sid_model_version", "level"]
    a = new.sort_values("level").reset_index(drop=True)
    b = current.sort_values("level").reset_index(drop=True)
    for c in key + list(VALUE_COLUMNS):
        x, y = a[c], b[c]
        if x.dtype.kind == "f" or y.dtype.kind == "f":
            xv, yv = pd.to_numeric(x, errors="coerce").to_numpy(float), pd.to_numeric(y, errors="coerce").to_numpy(float)
            if not np.allclose(xv, yv, rtol=1e-9, atol=1e-12, equal_nan=True):
                return False
        elif [None if pd.isna(v) else str(v) for v in x] != [None if pd.isna(v) else str(v) for v in y]:
            return False
    return True


def health_plot(history: pd.DataFrame, path: str) -> str:
    """Usage, perplexity / K, collision rate and churn per level over model versions, as one PNG.

    Args:
        history: ``sid_health`` rows (any versions). path: the PNG to write.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = history.copy()
    h["v"] = pd.to_numeric(h["sid_model_version"], errors="coerce")
    h = h.sort_values(["v", "sid_model_version", "level"])
    order = list(dict.fromkeys(h["sid_model_version"]))
    x = {v: i for i, v in enumerate(order)}
    h["perplexity_share"] = h["perplexity"] / h["codebook_size"]
    panels = [("usage", "usage (share of codes used)"), ("perplexity_share", "perplexity / K"),
              ("collision_rate", "collision rate (prefix)"), ("churn", "churn vs previous version")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for ax, (col, title) in zip(axes, panels):
        for level, g in h.groupby("level"):
            ax.plot([x[v] for v in g["sid_model_version"]], g[col].astype(float), marker="o", label=f"level {level}")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(order)), order)
        ax.set_xlabel("SID model version")
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_sid_health(spark, store, model_name: str, mv, codes: "DataFrame") -> tuple[object | None, str]:
    """Compute this version's ``sid_health`` rows, MERGE them unless unchanged, and log the series plot to the version's run.

    Args:
        spark: the session. store: :class:`lgsid.storage.DeltaStore`. model_name: the SID model's name.
        mv: the MLflow ModelVersion applied (its ``lgsid.codebook_sizes`` tag gives K per level).
        codes: the items' final codes (item_id, sid, sid_l1..sid_l3).

    Returns:
        (the write result, or None when nothing was committed; a note for the step summary).
    """
    import json
    import os
    import tempfile

    from pyspark.sql import functions as F

    from lgsid.storage.delta import spark_schema
    from lgsid.tables import spec

    version = str(mv.version)
    sizes = json.loads((mv.tags or {}).get("lgsid.codebook_sizes", "null") or "null")
    if not sizes:
        return None, f"sid_health skipped: version {version} has no lgsid.codebook_sizes tag (re-run `lgsid tokenize`)"
    rows = sid_health_frame(spark, store, model_name, version, [int(k) for k in sizes], codes)
    if store.exists("sid_health"):
        current = store.read("sid_health").where(F.col("sid_model_version") == version).toPandas()
        if unchanged(rows, current):
            return None, f"sid_health already holds version {version}: nothing committed"
    sdf = spark.createDataFrame(rows.assign(updated_at=pd.Timestamp.now(tz="UTC")), schema=spark_schema(spec("sid_health")))
    result = store.merge(sdf, "sid_health")
    note = f"sid_health: {len(rows)} level rows of version {version}"
    if rows["churn"].notna().any():
        note += f", churn against version {rows['previous_sid_model_version'].iloc[0]}: " + ", ".join(
            f"L{r.level} {r.churn:.1%}" for r in rows.itertuples())
    if getattr(mv, "run_id", None):
        from mlflow import MlflowClient

        with tempfile.TemporaryDirectory() as tmp:
            png = health_plot(store.read("sid_health").toPandas(), os.path.join(tmp, "sid_health.png"))
            MlflowClient().log_artifact(mv.run_id, png, "sid_health")
    return result, note
