"""Geography helpers: haversine distance (numpy and Spark), H3 cells, density-aware ring search.

The negative miner (:mod:`lgsid.negatives`) buckets items into H3 cells and, per anchor, searches
a disk of cells (``h3.grid_disk``) that grows until it holds *enough* candidates. "Enough" is made
exact by a certificate: a disk of cells is only trusted up to the distance its outside cells can
come to the anchor (:func:`covered_radii`); a near set whose K-th distance lies inside that
radius cannot be beaten by any item outside the disk (:func:`ring_is_enough`).

All distances are great-circle distances on a sphere of radius :data:`EARTH_RADIUS_KM`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence

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


def unit_xyz(lat, lon) -> np.ndarray:
    """Latitude/longitude (degrees) as points on the unit sphere: ``[cos φ cos λ, cos φ sin λ, sin φ]``.

    Euclidean distance between two points is the chord length, monotone in great-circle distance
    (no wrap-around at ±180°), so k-d trees and dot products over these vectors rank by distance.

    Args:
        lat, lon: (N,) degrees.

    Returns:
        (N, 3) float64 unit vectors.
    """
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)


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


def cell_parents(cells: np.ndarray, res: int) -> np.ndarray:
    """H3 parents (int64) at resolution ``res`` of cells at ``res`` or finer (one h3 call per distinct cell)."""
    cells = np.asarray(cells, dtype=np.int64)
    if cells.size == 0:
        return cells
    u, inv = np.unique(cells, return_inverse=True)
    f = h3i.cell_to_parent
    par = np.fromiter((f(int(c), res) for c in u), dtype=np.int64, count=len(u))
    return par[inv]


_CACHE_MAX = 1 << 21
"""Entries each cache below may hold before it is cleared (a few hundred MB at most)."""

_GEOM: dict[int, tuple[float, float, float]] = {}
"""Per-cell cache: (centre lat, centre lon, circumradius km)."""

_COVERED: dict[tuple[int, int], float] = {}
"""Per-(cell, ring) cache of :func:`covered_radii`."""


def _cell_geometry(cells: Sequence[int]) -> np.ndarray:
    """(N, 3) centre lat, centre lon and circumradius (km) of cells, cached per cell."""
    if len(_GEOM) + len(cells) > _CACHE_MAX:
        _GEOM.clear()
    missing = [c for c in dict.fromkeys(cells) if c not in _GEOM]
    if missing:
        cen = np.asarray([h3i.cell_to_latlng(c) for c in missing])  # (M, 2)
        bnd = [h3i.cell_to_boundary(c) for c in missing]  # M tuples of 5..10 vertices
        lens = np.fromiter((len(b) for b in bnd), dtype=np.int64, count=len(bnd))
        v = np.asarray([p for b in bnd for p in b])  # (sum lens, 2)
        owner = np.repeat(np.arange(len(missing)), lens)
        d = haversine_km(cen[owner, 0], cen[owner, 1], v[:, 0], v[:, 1])
        circ = np.maximum.reduceat(d, np.concatenate([[0], np.cumsum(lens)[:-1]]))
        for c, (la, lo), r in zip(missing, cen, circ):
            _GEOM[c] = (float(la), float(lo), float(r))
    return np.asarray([_GEOM[c] for c in cells]).reshape(len(cells), 3)


def covered_radii(cells: Sequence[int], k: int) -> np.ndarray:
    """Certified search radius of ``grid_disk(cell, k)`` for any anchor inside ``cell`` (km), per cell.

    Every point outside the disk lies in a cell at grid distance >= k+1, and the nearest such
    points are in the ring at distance exactly k+1. By the triangle inequality, for an anchor ``a``
    inside ``cell`` and a point ``p`` in ring cell ``r``:
    ``d(a, p) >= d(centre(cell), centre(r)) - circ(r) - circ(cell)``. The minimum over the ring is
    therefore a radius within which the disk holds *every* item (used by :func:`ring_is_enough`).
    Vectorised over cells and cached per (cell, k): neighbouring cells share most ring cells.

    Args:
        cells: H3 cell ids (all at one resolution or mixed).
        k: Ring distance of the disks.

    Returns:
        (N,) radii in km (0.0 where the bound is vacuous).
    """
    cells = [int(c) for c in cells]
    if len(_COVERED) + len(cells) > _CACHE_MAX:
        _COVERED.clear()
    todo = [c for c in dict.fromkeys(cells) if (c, k) not in _COVERED]
    if todo:
        rings = [sorted(set(h3i.grid_disk(c, k + 1)) - set(h3i.grid_disk(c, k))) for c in todo]
        lens = np.fromiter((len(r) for r in rings), dtype=np.int64, count=len(rings))
        flat = [c for r in rings for c in r]
        ring_geo = _cell_geometry(flat)  # (R, 3)
        own = _cell_geometry(todo)  # (T, 3)
        owner = np.repeat(np.arange(len(todo)), lens)
        lower = haversine_km(own[owner, 0], own[owner, 1], ring_geo[:, 0], ring_geo[:, 1]) - ring_geo[:, 2] - own[owner, 2]
        lo = np.minimum.reduceat(lower, np.concatenate([[0], np.cumsum(lens)[:-1]]))
        for c, v in zip(todo, lo):
            _COVERED[(c, k)] = float(max(0.0, v))
    return np.fromiter((_COVERED[(c, k)] for c in cells), dtype=np.float64, count=len(cells))


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
    covered_at: Callable[[int], float],
    n_passes: int,
    p: int,
    kth_distance_km: np.ndarray,
    n_found: np.ndarray,
    need: int,
) -> np.ndarray:
    """The pass each uncertified anchor moves to after pass ``p`` (anchors sharing pass ``p``'s cell).

    If pass ``p`` found ``need`` candidates with the ``need``-th at ``kth_distance_km``, the true
    ``need`` nearest all lie within that distance, so the first later pass whose certified radius
    (``covered_at(q)``, :func:`covered_radii` of the anchor's cell at pass q) reaches it is
    guaranteed to be enough: the anchor jumps straight there. With only ``n_found < need``
    candidates, the local density suggests a radius ``r_p * sqrt((need + 1) / max(n_found, 0.5))``
    (``r_p = covered_at(p)``); the anchor jumps to the first pass reaching it (a guess, checked by
    the next round). Later passes use coarser or equal resolutions, so anchors that share pass p's
    cell share every later cell and ``covered_at`` is one function for all of them; it is called
    lazily, for as few passes as needed.

    Args:
        covered_at: Pass index -> certified radius (km) of the anchors' disk at that pass.
        n_passes: Number of passes P.
        p: The pass just searched.
        kth_distance_km: (N,) distance of each anchor's ``need``-th candidate, NaN when too few.
        n_found: (N,) candidates found at pass ``p`` (used where ``kth_distance_km`` is NaN).
        need: Near candidates wanted.

    Returns:
        (N,) index of the next pass (``p < result <= P - 1``, or ``P - 1``).
    """
    kth = np.asarray(kth_distance_km, dtype=np.float64)
    last = n_passes - 1
    out = np.full(kth.shape, last, dtype=np.int64)
    if p >= last or kth.size == 0:
        return out
    few = np.isnan(kth)
    target = kth.copy()
    if few.any():
        found = np.maximum(np.asarray(n_found, dtype=np.float64)[few], 0.5)
        target[few] = covered_at(p) * np.sqrt((need + 1) / found)
    todo = np.ones(kth.shape, dtype=bool)
    for q in range(p + 1, last):
        hit = todo & (covered_at(q) >= target)
        out[hit] = q
        todo &= ~hit
        if not todo.any():
            break
    return out


def equivalent_ring(res: int, k: int, base_res: int) -> int:
    """Ring ``k`` at ``res`` expressed in cells of ``base_res``: ``round(k * sqrt(7)^(base_res - res))``.

    This is the ``search_ring`` recorded per anchor, so the column is comparable across levels.
    Example: ``equivalent_ring(7, 4, 8) == 11``.
    """
    return int(round(k * SQRT7 ** (base_res - res)))


def ring_is_enough(n_found, kth_distance_km, covered_km, need: int):
    """Whether a search disk is enough for an anchor: the density rule of the negative miner (vectorised).

    A disk is enough when it holds at least ``need`` eligible candidate locations *and* the
    ``need``-th nearest of them lies within the disk's certified radius (:func:`covered_radii`),
    so no item outside the disk could be nearer. Dense anchors pass on the first, smallest disk
    (hard negatives from the immediate neighbourhood); sparse anchors fail and widen.

    Example: need=3, found 5 with 3rd distance 1.2 km in a disk certified to 1.5 km -> True;
    the same with a disk certified to 1.0 km -> False (a closer item may lie just outside).
    """
    return (np.asarray(n_found) >= need) & (np.asarray(kth_distance_km) <= covered_km)


# ------------------------------------------------------------------------------- locations

LOCATION_LEVELS = ("town", "district")
"""What a "location" is: a GeoNames town (the paper's town), or a district (an H3 cell inside a town)."""


def choose_location_level(n_towns: int, n_counties: int, min_towns: int) -> str:
    """The automatic location level of a catalogue from its geographic extent.

    ``"town"`` (the paper's province/city/town semantics: a location is a town, "far" means another
    county) when the catalogue spans at least 2 counties and ``min_towns`` towns; otherwise
    ``"district"`` (a location is an H3 cell inside a town, "far" means another town). A
    one-county city (e.g. Phoenix: 1 county, ~10 GeoNames towns) has too few towns to fill a
    reward list of K candidates and no other county to draw far negatives or geo-constrained
    pairs from, and town names cannot carry the 1-5 km distances that matter there.

    Example: ``choose_location_level(300, 250, 64) == "town"``; ``(10, 1, 64)`` and ``(40, 3, 64)``
    give ``"district"``.
    """
    return "town" if n_counties >= 2 and n_towns >= min_towns else "district"


def local_offsets_km(lat, lon, lat0, lon0) -> tuple[np.ndarray, np.ndarray]:
    """(north, east) offsets in km of points from an origin on the local tangent plane (equirectangular).

    ``north = R·(φ − φ0)``, ``east = R·(λ − λ0)·cos φ0`` (radians, R = :data:`EARTH_RADIUS_KM`);
    within a town (tens of km) this differs from the great-circle distance by well under 1%.

    Args:
        lat, lon: Degrees, (N,).
        lat0, lon0: Origin degrees, scalars or (N,).

    Returns:
        Two (N,) float64 arrays, km.
    """
    lat, lon, lat0, lon0 = (np.asarray(x, dtype=np.float64) for x in (lat, lon, lat0, lon0))
    north = EARTH_RADIUS_KM * np.radians(lat - lat0)
    dlon = (lon - lon0 + 180.0) % 360.0 - 180.0
    east = EARTH_RADIUS_KM * np.radians(dlon) * np.cos(np.radians(lat0))
    return north, east


def cell_centres(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) degrees of the centres of H3 cells (one h3 call per distinct cell)."""
    cells = np.asarray(cells, dtype=np.int64)
    if cells.size == 0:
        return np.empty(0), np.empty(0)
    u, inv = np.unique(cells, return_inverse=True)
    c = np.asarray([h3i.cell_to_latlng(int(x)) for x in u]).reshape(len(u), 2)
    return c[inv, 0], c[inv, 1]
