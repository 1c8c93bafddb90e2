"""Geography helpers: haversine distance (numpy and Spark), H3 cells, density-aware ring search.

The negative miner (:mod:`lgsid.negatives`) buckets items into H3 cells and, per anchor, searches
a disk of cells (``h3.grid_disk``) that grows until it holds *enough* candidates. "Enough" is made
exact by a certificate: a disk of cells is only trusted up to the distance its outside cells can
come to the anchor (:func:`covered_radius_km`); a near set whose K-th distance lies inside that
radius cannot be beaten by any item outside the disk (:func:`ring_is_enough`).

All distances are great-circle distances on a sphere of radius :data:`EARTH_RADIUS_KM`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import h3.api.basic_int as h3i
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG), km."""

SQRT7 = math.sqrt(7.0)
"""Ratio of H3 edge lengths between consecutive resolutions (aperture 7)."""


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance by the haversine formula, vectorised over numpy broadcasting.

    ``d = 2 R asin(sqrt(sin²(Δφ/2) + cos φ1 cos φ2 sin²(Δλ/2)))``

    Args:
        lat1, lon1, lat2, lon2: Degrees; scalars or arrays that broadcast together.

    Returns:
        Distance in km, shape of the broadcast inputs (a 0-d array for scalars).
    """
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def haversine_km_col(lat1: "Column", lon1: "Column", lat2: "Column", lon2: "Column") -> "Column":
    """The same formula as :func:`haversine_km`, as a Spark Column built from SQL functions (no UDF)."""
    from pyspark.sql import functions as F

    p1, p2 = F.radians(lat1), F.radians(lat2)
    a = F.pow(F.sin((p2 - p1) / 2.0), 2) + F.cos(p1) * F.cos(p2) * F.pow(F.sin(F.radians(lon2 - lon1) / 2.0), 2)
    a = F.least(F.greatest(a, F.lit(0.0)), F.lit(1.0))
    return F.lit(2.0 * EARTH_RADIUS_KM) * F.asin(F.sqrt(a))


# ------------------------------------------------------------------------------------------ H3


def latlng_to_cells(lat: Sequence[float], lon: Sequence[float], res: int) -> np.ndarray:
    """H3 cell ids (int64) of points at resolution ``res``.

    Args:
        lat, lon: Degrees, shape (N,).
        res: H3 resolution 0..15.

    Returns:
        (N,) int64 cell ids.
    """
    f = h3i.latlng_to_cell
    return np.fromiter((f(float(a), float(b), res) for a, b in zip(lat, lon)), dtype=np.int64, count=len(lat))


@lru_cache(maxsize=1 << 20)
def circumradius_km(cell: int) -> float:
    """Largest distance from a cell's centre to its boundary vertices (km)."""
    clat, clon = h3i.cell_to_latlng(cell)
    b = np.asarray(h3i.cell_to_boundary(cell))  # (V, 2) lat, lon
    return float(haversine_km(clat, clon, b[:, 0], b[:, 1]).max())


def disk_cells(cell: int, k: int) -> list[int]:
    """Cells within grid distance ``k`` of ``cell`` (``h3.grid_disk``), sorted."""
    return sorted(h3i.grid_disk(int(cell), int(k)))


@lru_cache(maxsize=1 << 20)
def covered_radius_km(cell: int, k: int) -> float:
    """Certified search radius of ``grid_disk(cell, k)`` for any anchor inside ``cell`` (km).

    Every point outside the disk lies in a cell at grid distance >= k+1, and the nearest such
    points are in the ring at distance exactly k+1. By the triangle inequality, for an anchor ``a``
    inside ``cell`` and a point ``p`` in ring cell ``r``:
    ``d(a, p) >= d(centre(cell), centre(r)) - circ(r) - circ(cell)``. The minimum over the ring is
    therefore a radius within which the disk holds *every* item (used by :func:`ring_is_enough`).

    Args:
        cell: H3 cell id of the anchor.
        k: Ring distance of the disk.

    Returns:
        Radius in km (0.0 when the bound is vacuous).
    """
    cell = int(cell)
    inner = set(h3i.grid_disk(cell, k))
    ring = [c for c in h3i.grid_disk(cell, k + 1) if c not in inner]
    clat, clon = h3i.cell_to_latlng(cell)
    cen = np.asarray([h3i.cell_to_latlng(c) for c in ring])  # (R, 2)
    circ = np.asarray([circumradius_km(c) for c in ring])
    lower = haversine_km(clat, clon, cen[:, 0], cen[:, 1]) - circ - circumradius_km(cell)
    return float(max(0.0, lower.min()))


def search_schedule(base_res: int, max_ring: int, min_res: int) -> list[tuple[int, int]]:
    """The (resolution, ring) passes of the density-aware search, innermost first.

    At ``base_res`` the ring grows 1, 2, ..., ``max_ring`` (dense areas stop early: hard negatives
    from the immediate neighbourhood). Sparse anchors widen at coarser resolutions
    ``base_res-1 ... min_res`` with rings ``ceil(max_ring/2) ... max_ring`` (ring ``ceil(max_ring/2)``
    one level up already reaches past ring ``max_ring`` below, since edges grow by sqrt(7)). The
    certified radius grows by a factor ~1.2-1.5 per pass while a disk never exceeds
    ``3k²+3k+1`` cells, so an anchor's disk is never much larger than it needs.

    Example: ``search_schedule(8, 4, 7) == [(8, 1), (8, 2), (8, 3), (8, 4), (7, 2), (7, 3), (7, 4)]``.
    """
    if not (0 <= min_res <= base_res <= 15) or max_ring < 1:
        raise ValueError(f"bad schedule: base_res={base_res}, min_res={min_res}, max_ring={max_ring}")
    out: list[tuple[int, int]] = [(base_res, k) for k in range(1, max_ring + 1)]
    lo = max(1, (max_ring + 1) // 2)
    for r in range(base_res - 1, min_res - 1, -1):
        out.extend((r, k) for k in range(lo, max_ring + 1))
    return out


def next_pass(
    cells_by_pass: Sequence[int],
    schedule: Sequence[tuple[int, int]],
    p: int,
    kth_distance_km: float | None,
    n_found: int = 0,
    need: int = 1,
) -> int:
    """The pass an uncertified anchor moves to after pass ``p``.

    If pass ``p`` found ``need`` candidates with the ``need``-th at ``kth_distance_km``, the true
    ``need`` nearest all lie within that distance, so the first later pass whose certified radius
    (:func:`covered_radius_km` of the anchor's cell) reaches it is guaranteed to be enough: the
    anchor jumps straight there. With only ``n_found < need`` candidates, the local density
    suggests a radius ``r_p * sqrt((need + 1) / max(n_found, 0.5))`` (``r_p`` = pass p's certified
    radius); the anchor jumps to the first pass reaching it (a guess, checked by the next round).

    Args:
        cells_by_pass: The anchor's cell at each pass's resolution, (P,).
        schedule: The passes, (P,) of (resolution, ring).
        p: The pass just searched.
        kth_distance_km: Distance of the ``need``-th candidate found, or None (too few found).
        n_found: Candidates found at pass ``p`` (used when ``kth_distance_km`` is None).
        need: Near candidates wanted.

    Returns:
        Index of the next pass (``p < result <= P - 1``, or ``P - 1``).
    """
    last = len(schedule) - 1
    if p >= last:
        return last
    if kth_distance_km is None or (isinstance(kth_distance_km, float) and math.isnan(kth_distance_km)):
        r_p = covered_radius_km(int(cells_by_pass[p]), schedule[p][1])
        target = r_p * math.sqrt((need + 1) / max(float(n_found), 0.5))
    else:
        target = kth_distance_km
    for q in range(p + 1, last + 1):
        if covered_radius_km(int(cells_by_pass[q]), schedule[q][1]) >= target:
            return q
    return last


def equivalent_ring(res: int, k: int, base_res: int) -> int:
    """Ring ``k`` at ``res`` expressed in cells of ``base_res``: ``round(k * sqrt(7)^(base_res - res))``.

    This is the ``search_ring`` recorded per anchor, so the column is comparable across levels.
    Example: ``equivalent_ring(7, 4, 8) == 11``.
    """
    return int(round(k * SQRT7 ** (base_res - res)))


def ring_is_enough(n_found: int, kth_distance_km: float, covered_km: float, need: int) -> bool:
    """Whether a search disk is enough for an anchor: the density rule of the negative miner.

    A disk is enough when it holds at least ``need`` eligible candidate locations *and* the
    ``need``-th nearest of them lies within the disk's certified radius (:func:`covered_radius_km`),
    so no item outside the disk could be nearer. Dense anchors pass on the first, smallest disk
    (hard negatives from the immediate neighbourhood); sparse anchors fail and widen.

    Example: need=3, found 5 with 3rd distance 1.2 km in a disk certified to 1.5 km -> True;
    the same with a disk certified to 1.0 km -> False (a closer item may lie just outside).
    """
    return n_found >= need and kth_distance_km <= covered_km


def disk_table(cells: Sequence[int], k: int) -> tuple[list[list[int]], list[float]]:
    """For each cell: its disk at ring ``k`` (sorted cell list) and the disk's certified radius (km)."""
    disks = [disk_cells(c, k) for c in cells]
    cov = [covered_radius_km(c, k) for c in cells]
    return disks, cov
