"""Codebook health: per-level usage, entropy and perplexity, collisions, items per code (the
paper's Fig. 4), category purity of level-1 codes (Fig. 5), and their plots."""

from __future__ import annotations

import os

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

QUANTILES = (50, 75, 90, 95, 99)


def level_stats(codes: np.ndarray, k: int) -> dict[str, float]:
    """Usage, entropy and perplexity of one level.

    ``usage = |{k : n_k > 0}| / K``, ``H = −Σ_k p_k ln p_k`` with ``p_k = n_k / N``,
    ``perplexity = exp(H)`` (= K when uniform, 1 when collapsed).

    Args:
        codes: (N,) codes of the level. k: codebook size K.
    """
    return level_stats_from_counts(np.bincount(np.asarray(codes, dtype=np.int64), minlength=k), k)


def level_stats_from_counts(counts: np.ndarray, k: int) -> dict[str, float]:
    """:func:`level_stats` from the items per code, ``counts`` = (K,) ``n_k`` (codes never used may be left out)."""
    counts = np.asarray(counts, dtype=np.int64)
    p = counts[counts > 0] / max(counts.sum(), 1)
    h = float(-(p * np.log(p)).sum())
    return {"usage": float((counts > 0).sum() / k), "entropy": h, "perplexity": float(np.exp(h))}


def items_per_code(codes: np.ndarray) -> np.ndarray:
    """Group sizes of the distinct full code tuples, (N, L) -> (G,)."""
    _, counts = np.unique(np.asarray(codes), axis=0, return_counts=True)
    return counts


def collision_rate(codes: np.ndarray) -> float:
    """Share of items whose full code tuple another item also has: ``1 − #distinct / N``.

    (This is the share of items that need a dedup suffix > 0.)
    """
    n = len(codes)
    return float(1.0 - len(items_per_code(codes)) / n) if n else 0.0


def category_purity(l1_codes: np.ndarray, categories: np.ndarray) -> tuple[float, np.ndarray]:
    """Category purity of level-1 codes (Fig. 5): share of each code's items in its majority category.

    Args:
        l1_codes: (N,) level-1 codes. categories: (N,) category labels.

    Returns:
        (item-weighted mean purity, (G,) purity per used code).
    """
    df = pd.DataFrame({"c": np.asarray(l1_codes), "cat": np.asarray(categories, dtype=object)})
    g = df.groupby("c")["cat"]
    per = (g.agg(lambda s: s.value_counts().iloc[0]) / g.size()).to_numpy()
    sizes = g.size().to_numpy()
    return float((per * sizes).sum() / sizes.sum()), per


def codebook_health(codes: np.ndarray, codebook_sizes: list[int], categories: np.ndarray | None = None) -> dict[str, float]:
    """All health metrics as a flat dict (MLflow metric names).

    Keys: ``usage_l{l}``, ``entropy_l{l}``, ``perplexity_l{l}`` per level (1-based),
    ``collision_rate``, ``n_sids`` (distinct tuples), ``items_per_code_p{q}`` for q in 50/75/90/95/99,
    ``items_per_code_max`` and, with ``categories``, ``category_purity_l1``.

    Args:
        codes: (N, L) codes without suffix. codebook_sizes: K_l per level. categories: (N,) or None.
    """
    codes = np.asarray(codes)
    out: dict[str, float] = {}
    for l, k in enumerate(codebook_sizes):
        for name, v in level_stats(codes[:, l], int(k)).items():
            out[f"{name}_l{l + 1}"] = v
    sizes = items_per_code(codes)
    out["collision_rate"] = collision_rate(codes)
    out["n_sids"] = float(len(sizes))
    for q in QUANTILES:
        out[f"items_per_code_p{q}"] = float(np.percentile(sizes, q))
    out["items_per_code_max"] = float(sizes.max())
    if categories is not None:
        out["category_purity_l1"] = category_purity(codes[:, 0], categories)[0]
    return out


def codebook_health_df(codes: "DataFrame", codebook_sizes: list[int], category: str | None = "category") -> dict[str, float]:
    """:func:`codebook_health` from Spark aggregates over every item (no item-scale rows reach the driver).

    The driver receives one count per used code and level (at most ``Σ K_l`` rows), one row of
    group-size statistics and one purity sum. ``items_per_code_p{q}`` is Spark's exact
    ``percentile`` (linear interpolation, as ``np.percentile``).

    Args:
        codes: item_id, ``sid_l1``.. (one column per level, INT) and, when ``category`` is set, that column.
        codebook_sizes: K_l per level. category: The category column, or None to skip purity.

    Returns:
        The keys of :func:`codebook_health`.
    """
    from pyspark.sql import functions as F

    keys = [f"sid_l{l + 1}" for l in range(len(codebook_sizes))]
    out: dict[str, float] = {}
    for l, (key, k) in enumerate(zip(keys, codebook_sizes)):
        counts = [r[1] for r in codes.groupBy(key).count().collect()]  # <= K_l rows
        for name, v in level_stats_from_counts(np.asarray(counts), int(k)).items():
            out[f"{name}_l{l + 1}"] = v
    groups = codes.groupBy(*keys).count()
    qs = [q / 100 for q in QUANTILES]
    row = groups.agg(F.count(F.lit(1)).alias("g"), F.sum("count").alias("n"), F.max("count").alias("mx"),
                     F.percentile("count", F.array(*[F.lit(q) for q in qs])).alias("p")).first()
    out["collision_rate"] = float(1.0 - row["g"] / row["n"]) if row["n"] else 0.0
    out["n_sids"] = float(row["g"])
    for q, v in zip(QUANTILES, row["p"]):
        out[f"items_per_code_p{q}"] = float(v)
    out["items_per_code_max"] = float(row["mx"])
    if category is not None:
        per = codes.groupBy("sid_l1", category).count().groupBy("sid_l1").agg(F.max("count").alias("top"), F.sum("count").alias("n"))
        r = per.agg(F.sum("top").alias("top"), F.sum("n").alias("n")).first()
        out["category_purity_l1"] = float(r["top"] / r["n"])
    return out


def health_plots(codes: np.ndarray, codebook_sizes: list[int], out_dir: str, categories: np.ndarray | None = None) -> list[str]:
    """PNG plots: code usage per level, items per code (Fig. 4), level-1 category purity (Fig. 5).

    Returns:
        Paths of the written files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    codes = np.asarray(codes)
    paths = []
    L = len(codebook_sizes)
    fig, axes = plt.subplots(1, L, figsize=(4 * L, 3), squeeze=False)
    for l, k in enumerate(codebook_sizes):
        counts = np.sort(np.bincount(codes[:, l], minlength=int(k)))[::-1]
        axes[0, l].bar(np.arange(len(counts)), counts, width=1.0)
        axes[0, l].set_title(f"level {l + 1}: items per code (sorted)")
        axes[0, l].set_xlabel("code rank")
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "code_usage.png"))
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)

    sizes = items_per_code(codes)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(sizes, bins=np.arange(1, sizes.max() + 2) - 0.5, log=True)
    qs = np.percentile(sizes, QUANTILES)
    for q, v in zip(QUANTILES, qs):
        ax.axvline(v, ls="--", lw=0.8, color="k")
        ax.text(v, ax.get_ylim()[1] * 0.5, f"p{q}", rotation=90, fontsize=7)
    ax.set_xlabel("items per SID (before dedup suffix)")
    ax.set_ylabel("SIDs")
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "items_per_code.png"))
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)

    if categories is not None:
        _, per = category_purity(codes[:, 0], categories)
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(per, bins=20, range=(0, 1))
        ax.set_xlabel("share of the majority category within a level-1 code")
        ax.set_ylabel("level-1 codes")
        fig.tight_layout()
        paths.append(os.path.join(out_dir, "category_purity_l1.png"))
        fig.savefig(paths[-1], dpi=80)
        plt.close(fig)
    return paths
