"""Retrieval metrics shared by training-time checks (alignment) and the evaluation report."""

from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """(N, D) rows scaled to unit L2 norm, as float32 (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def qualified_labels(state, county, town) -> dict[str, np.ndarray]:
    """``{"state": s, "county": "s|c", "town": "s|c|t"}`` as (N,) string arrays (names repeat across states)."""
    st = np.asarray(state, dtype=str)
    co = np.char.add(np.char.add(st, "|"), np.asarray(county, dtype=str))
    tw = np.char.add(np.char.add(co, "|"), np.asarray(town, dtype=str))
    return {"state": st, "county": co, "town": tw}


TOPK_BLOCK = 1 << 22
"""Similarities per block of :func:`topk_neighbours`: 48 MB of transient memory with the block's
argpartition, whatever N. The driver-side geo checks (gdpo's before/after coverage, tokenize's C@10)
peaked at 4 × 2**24 bytes more when a block held 2**24 similarities and a negated copy."""


def topk_neighbours(emb: np.ndarray, k: int, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine neighbours of every row, excluding the row itself.

    Args:
        emb: (N, D) float embeddings (need not be normalised).
        k: neighbours per row; must be < N.
        chunk: rows per similarity block (memory is chunk × N float32 similarities plus their int64
            argpartition, 12 bytes each); default: as many rows as keep a block at
            :data:`TOPK_BLOCK` similarities. Each row's neighbours do not depend on the block (up to the matmul's float
            rounding between near-equal similarities).

    Returns:
        (idx, sim): both (N, k); ``idx[i]`` sorted by decreasing cosine similarity ``sim[i]``.
    """
    x = unit_rows(emb)
    n = x.shape[0]
    if not 0 < k < n:
        raise ValueError(f"k must be in [1, N-1] for N={n} rows, got k={k}")
    chunk = chunk or max(1, TOPK_BLOCK // n)
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, chunk):
        blk = x[s : s + chunk] @ x.T  # (b, N)
        rows = np.arange(blk.shape[0])
        blk[rows, s + rows] = -np.inf  # never retrieve yourself
        np.negative(blk, out=blk)  # in place: no second (b, N) block
        part = np.argpartition(blk, k - 1, axis=1)[:, :k]  # (b, k) unordered
        np.negative(blk, out=blk)
        psim = np.take_along_axis(blk, part, axis=1)
        order = np.argsort(-psim, axis=1, kind="stable")
        idx[s : s + chunk] = np.take_along_axis(part, order, axis=1)
        sim[s : s + chunk] = np.take_along_axis(psim, order, axis=1)
    return idx, sim


def neighbour_share(neighbours: np.ndarray, labels: np.ndarray) -> float:
    """Share of retrieved neighbours whose label equals the query's label (P@K / C@K / T@K).

    ``coverage@K = mean_i (1/K) Σ_{j ∈ topK(i)} 1[label_j = label_i]``.

    Args:
        neighbours: (N, K) int indices of each query's top-K neighbours.
        labels: (N,) labels (state, county or town) of every item.
    """
    labels = np.asarray(labels)
    return float((labels[neighbours] == labels[:, None]).mean())


def geo_coverage(emb: np.ndarray, state: np.ndarray, county: np.ndarray, town: np.ndarray, k: int = 10) -> dict[str, float]:
    """Top-``k`` retrieval geo check: share of neighbours in the same state / county / town.

    County and town names repeat across states (Springfield), so they are compared qualified by
    their parents. Returns ``{"P@k": .., "C@k": .., "T@k": ..}``.
    """
    idx, _ = topk_neighbours(emb, k)
    q = qualified_labels(state, county, town)
    return {f"P@{k}": neighbour_share(idx, q["state"]), f"C@{k}": neighbour_share(idx, q["county"]), f"T@{k}": neighbour_share(idx, q["town"])}


def nearest_by_distance(lat: np.ndarray, lon: np.ndarray, k: int) -> np.ndarray:
    """The geographic oracle's retrieval: each item's ``k`` nearest other items by haversine distance.

    Uses scikit-learn's ``BallTree(metric="haversine")``; ties are broken by the tree.

    Args:
        lat, lon: (N,) degrees.
        k: neighbours per item, < N.

    Returns:
        (N, k) item indices, nearest first (the item itself excluded).
    """
    from sklearn.neighbors import BallTree

    n = len(lat)
    if not 0 < k < n:
        raise ValueError(f"k must be in [1, N-1] for N={n} items, got k={k}")
    x = np.radians(np.column_stack([np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)]))
    _, idx = BallTree(x, metric="haversine").query(x, k=k + 1)  # (N, k+1), usually self first
    own = idx == np.arange(n)[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)  # the self column (or the farthest when duplicates hid it)
    keep = np.ones_like(idx, dtype=bool)
    keep[np.arange(n), drop] = False
    return idx[keep].reshape(n, k)


def neighbour_distances(lat: np.ndarray, lon: np.ndarray, neighbours: np.ndarray, radii_km=(1.0, 5.0)) -> dict[str, float]:
    """Distance of retrieved neighbours: median haversine km and the share within each radius.

    ``km_median = median_{i, j ∈ topK(i)} d(i, j)``, ``within_r = mean_{i, j ∈ topK(i)} 1[d(i, j) <= r]``.

    Args:
        lat, lon: (N,) degrees of every item.
        neighbours: (N, K) retrieved item indices per item.
        radii_km: radii r of the within-r shares.

    Returns:
        ``{"km_median": .., "within_<r>km": .. for each r}`` (r printed with ``:g``).
    """
    from lgsid.geo import haversine_km

    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    d = haversine_km(lat[:, None], lon[:, None], lat[neighbours], lon[neighbours])  # (N, K)
    out = {"km_median": float(np.median(d))}
    for r in radii_km:
        out[f"within_{float(r):g}km"] = float((d <= float(r)).mean())
    return out
