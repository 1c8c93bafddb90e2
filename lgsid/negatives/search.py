"""The near set of Eq. 1: the exact ``need`` nearest other-town representatives of each anchor.

The index holds one point per town, its representative (:func:`lgsid.negatives.town_representatives`):
thousands to ~150k points whatever the number of items. It is built on the driver, broadcast, and
queried on the executors partition by partition with an exact k-nearest search of a
``scipy.spatial.cKDTree`` over unit vectors (:func:`lgsid.geo.unit_xyz`). Chord length is
monotone in great-circle distance, so the k nearest by chord are the k nearest on the sphere, with
no wrap-around at ±180°. ``docs/method.md`` gives the benchmark that chose this over an H3 ring search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lgsid.geo import EARTH_RADIUS_KM, haversine_km, unit_xyz

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

_TIE_SLACK = 8
"""Neighbours asked for beyond ``need``, so exact distance ties at the cut can still break by ``cand_item_id``."""


def _chord(km) -> np.ndarray:
    """Chord length on the unit sphere of a great-circle distance in km: ``2 sin(d / 2R)``."""
    return 2.0 * np.sin(np.asarray(km, dtype=np.float64) / (2.0 * EARTH_RADIUS_KM))


class TownIndex:
    """Town representatives and a k-d tree over their unit vectors.

    Built once on the driver from :func:`lgsid.negatives.town_representatives` (one row per town,
    so its size is the number of towns, not of items: ~20k for the US, ~150k for all of GeoNames
    cities1000) and broadcast to the executors. Positions follow ``rep_id`` order, so comparing
    positions breaks distance ties by ``cand_item_id``.

    Args:
        reps: :func:`lgsid.negatives.town_representatives` rows as pandas.
    """

    def __init__(self, reps: "pd.DataFrame") -> None:
        import pandas as pd
        import pyarrow as pa
        from scipy.spatial import cKDTree

        reps = reps.sort_values("rep_id", kind="stable").reset_index(drop=True)
        self.rep_id = reps["rep_id"].to_numpy(dtype=object)
        self.lat = reps["rep_lat"].to_numpy(dtype=np.float64)
        self.lon = reps["rep_lon"].to_numpy(dtype=np.float64)
        self.xyz = unit_xyz(self.lat, self.lon)  # (R, 3)
        self.tree = cKDTree(self.xyz)
        codes, counties = pd.factorize(reps["county_key"])
        self.county = codes.astype(np.int64)  # county code of each town
        self.arrow = {  # output columns by position, and the lookups of anchors' own town / county
            **{c: pa.array(reps[c].to_numpy(dtype=object), pa.string()) for c in ("rep_id", "location_text", "state", "county", "town", "loc_key")},
            "county_key": pa.array(np.asarray(counties, dtype=object), pa.string()),
        }

    def __len__(self) -> int:
        return len(self.rep_id)

    def lookup(self, values, key: str) -> np.ndarray:
        """Positions of ``values`` in ``self.arrow[key]`` ("loc_key": town position, "county_key": county code); -1 when absent."""
        import pyarrow.compute as pc

        return pc.fill_null(pc.index_in(values, value_set=self.arrow[key]), -1).to_numpy(zero_copy_only=False).astype(np.int64)


def search_near(index: TownIndex, lat: np.ndarray, lon: np.ndarray, own: np.ndarray, need: int, min_km: float = 0.0):
    """Exact ``need`` nearest other-town representatives of each anchor, ordered by ``(distance_km, cand_item_id)``.

    Each anchor asks the tree for ``need + 1`` neighbours (its own town is one of them at most),
    plus the towns closer than ``min_km`` (counted by a ball query), plus :data:`_TIE_SLACK`. The
    answers are ranked by haversine distance, then position (``rep_id``); its own town and towns
    closer than ``min_km`` are dropped. An anchor whose ``need``-th distance ties the farthest
    answer may have an equally near town the tree did not return: it is redone over every town
    within that distance.

    Args:
        index: The broadcast :class:`TownIndex`.
        lat, lon: (N,) anchor coordinates, degrees.
        own: (N,) position of each anchor's own town in ``index`` (never a candidate; -1 when none).
        need: Near candidates wanted per anchor (``K - n_far``).
        min_km: Candidates closer than this are skipped.

    Returns:
        ``(pos (N, need) int64, -1 past what was found; dist (N, need) km, inf there)``.
    """
    n, R = len(lat), len(index)
    pos = np.full((n, need), -1, dtype=np.int64)
    dist = np.full((n, need), np.inf)
    if n == 0 or R == 0 or need == 0:
        return pos, dist
    lat, lon, own = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64), np.asarray(own)
    axyz = unit_xyz(lat, lon)  # (N, 3)
    ask = np.full(n, need + 1 + _TIE_SLACK, dtype=np.int64)
    if min_km > 0:
        ask += index.tree.query_ball_point(axyz, float(_chord(min_km)), return_length=True)
    ask = np.minimum(ask, R)

    def rank(a, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # (B, C) positions -> sorted eligible (pos, km)
        d = haversine_km(lat[a][:, None], lon[a][:, None], index.lat[cand], index.lon[cand])
        d = np.where((cand == own[a][:, None]) | (d < min_km), np.inf, d)
        o = np.lexsort((cand, d), axis=-1)
        return np.take_along_axis(cand, o, axis=1), np.take_along_axis(d, o, axis=1)

    t = min(need, R)
    for k in np.unique(ask):
        a = np.flatnonzero(ask == k)
        _, cand = index.tree.query(axyz[a], k=int(k))
        cand = np.asarray(cand, dtype=np.int64).reshape(len(a), int(k))  # (B, k) nearest first
        far_end = haversine_km(lat[a], lon[a], index.lat[cand[:, -1]], index.lon[cand[:, -1]])
        cp, cd = rank(a, cand)
        ok = np.isfinite(cd[:, :t])
        pos[a, :t] = np.where(ok, cp[:, :t], -1)
        dist[a, :t] = cd[:, :t]
        if k < R:  # a tie run reaching the farthest answer may hide a smaller rep_id: redo over the whole ball
            for i in np.flatnonzero(np.isfinite(cd[:, t - 1]) & (cd[:, t - 1] >= far_end)):
                r = float(_chord(cd[i, t - 1])) * (1 + 1e-9) + 1e-15
                ball = np.asarray(index.tree.query_ball_point(axyz[a[i]], r), dtype=np.int64)[None, :]
                bp, bd = rank(a[i : i + 1], ball)
                pos[a[i], :t] = np.where(np.isfinite(bd[0, :t]), bp[0, :t], -1)
                dist[a[i], :t] = bd[0, :t]
    return pos, dist
