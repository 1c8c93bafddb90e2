"""Distance-ranked, density-aware negatives and the reward lists (step ``negatives``; Eq. 1, Eq. 3).

For every anchor item we want K *mismatched locations*: locations (towns) other than the anchor's
own, sorted near -> far, so the reward model learns that a wrong town next door is less wrong
than a wrong town across the country (Eq. 1), with soft labels from the rank (Eq. 3).

Definitions (the tests check the Spark job against a brute-force numpy version of exactly these):

* A **location** is a qualified town ``state|county|town`` (``prompts.location_level`` town, the
  paper) or, at district level (city-scale data), a district ``state|county|town|location_text``
  (:func:`lgsid.prompts.location_keys`); its text is the item's ``location_text``. Its **region**
  is the level above: the county (``state|county``) at town level, the town at district level.
  Below, "town" reads "location" and "county" reads "region" at district level. The anchor's own location is never a candidate, and each location appears at
  most once per list (the list is not K copies of the same town).
* A location's **representative** is its medoid item: the item nearest (haversine) to the mean
  position of the town's items (mean of 3-D unit vectors), ties broken by ``item_id``. The
  candidate's ``cand_item_id``/``distance_km`` are those of the representative. Using one point per
  town keeps the search proportional to the number of towns near the anchor instead of the number
  of shops there, and makes ``distance_km`` "how far is that town", not "how far is its nearest shop".
* **Near set**: the ``K - n_far`` nearest representatives by ``(distance_km, cand_item_id)``,
  excluding those closer than ``min_near_distance_km``.
* **Far set**: ``n_far`` representatives drawn at random among towns in *other counties*
  (``state|county`` differs) and not in the near set: the first valid draws of a counter-based
  hash of (seed, anchor, draw number), so independent of Spark partitioning (:func:`far_draws`).
  When fewer than ``K - n_far`` near locations exist within the whole search, the far set grows so
  the list still has K entries.
* The K candidates are ranked 1..K by ``(distance_km, cand_item_id)`` over near and far together.

Scaling (never a cross join): the representatives (one per town, so thousands to ~150k rows
whatever the number of items) are bucketed in H3 cells at every resolution of the search
(:class:`TownIndex`), indexed once on the driver and broadcast. Anchors stay in Spark: a
``mapInArrow`` searches each partition (:func:`search_near`). Anchors are grouped by their cell at
their current pass of :func:`lgsid.geo.search_schedule`, starting at a pass chosen from the local
town density (:func:`start_pass`); a group is searched against the representatives in its cell's
``grid_disk``; an anchor is served when :func:`lgsid.geo.ring_is_enough` certifies its near set
(enough locations, the last one within the disk's certified radius), else it moves on
(:func:`lgsid.geo.next_pass`). Dense anchors are served by small disks (hard negatives from the
immediate neighbourhood); sparse ones widen. ``search_ring`` records the disk that served the
anchor, in base-resolution rings.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from lgsid.errors import ValidationError
from lgsid.geo import (
    EARTH_RADIUS_KM,
    cell_parents,
    covered_radii,
    equivalent_ring,
    haversine_km,
    haversine_km_col,
    latlng_to_cells,
    next_pass,
    ring_is_enough,
    search_schedule,
    unit_xyz,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession

    from lgsid.config import LGSIDConfig, NegativesConfig, PromptsConfig
    from lgsid.steps import StepSummary


# ------------------------------------------------------------------------------ Eq. 3


def soft_labels(ranks, k: int) -> np.ndarray:
    """Soft relevance labels of a reward list from distance ranks.

    ``p(rank) = (K - rank + 1) / (K + 1)``  (Eq. 3, arXiv 2511.14221).

    The paper gives the un-normalised score ``K - rank + 1`` for the candidate at position ``rank``
    of the near->far list; we include the true location as rank 0 and divide by ``K + 1`` so the
    true location gets 1.0 and the farthest candidate ``1 / (K + 1)``; the list-wise loss only
    needs the ordering and relative sizes.

    Args:
        ranks: (L,) ints, 0 for the true location, 1..K for candidates near -> far.
        k: K, the number of candidates in a full list.

    Returns:
        (L,) float32 labels in (0, 1].

    Raises:
        ValidationError: a rank outside [0, K].
    """
    r = np.asarray(ranks, dtype=np.float64)
    if r.size and (r.min() < 0 or r.max() > k):
        raise ValidationError(f"soft labels: ranks must be in [0, K={k}], got [{r.min():g}, {r.max():g}]")
    return ((k - r + 1.0) / (k + 1.0)).astype(np.float32)


def soft_labels_col(ranks: "Column", k: int) -> "Column":
    """:func:`soft_labels` over an ``ARRAY<INT>`` Spark column (``ARRAY<FLOAT>``)."""
    from pyspark.sql import functions as F

    return F.transform(ranks, lambda r: ((F.lit(k) - r + 1) / F.lit(float(k + 1))).cast("float"))


# ------------------------------------------------------------------------------ locations


def _with_keys(prompts_df: "DataFrame", level: str = "town") -> "DataFrame":
    """``loc_key`` and ``county_key`` (the *region* of :func:`lgsid.prompts.location_keys`: the county at
    town level, the town at district level) of geo_prompts rows."""
    from lgsid.prompts import location_keys

    return location_keys(prompts_df, level).withColumnRenamed("region_key", "county_key")


def town_representatives(prompts_df: "DataFrame", level: str = "town") -> "DataFrame":
    """One representative item per location (town or district medoid, see module docstring).

    Args:
        prompts_df: geo_prompts rows (item_id, location_text, state, county, town, lat, lon).
        level: Location level (:func:`lgsid.prompts.location_level`).

    Returns:
        DataFrame ``loc_key, county_key, rep_id, rep_lat, rep_lon, location_text, state, county, town,
        n_items`` (items in the town).
    """
    from pyspark.sql import functions as F

    df = _with_keys(prompts_df, level)
    phi, lmb = F.radians("lat"), F.radians("lon")
    cen = df.groupBy("loc_key").agg(
        F.avg(F.cos(phi) * F.cos(lmb)).alias("x"), F.avg(F.cos(phi) * F.sin(lmb)).alias("y"), F.avg(F.sin(phi)).alias("z")
    )
    cen = cen.select(
        "loc_key",
        F.degrees(F.atan2("z", F.sqrt(F.col("x") ** 2 + F.col("y") ** 2))).alias("c_lat"),
        F.degrees(F.atan2("y", F.col("x"))).alias("c_lon"),
    )
    d = df.join(cen, "loc_key").withColumn("_d", haversine_km_col(F.col("lat"), F.col("lon"), F.col("c_lat"), F.col("c_lon")))
    # the smallest (distance, item_id) per town, distances rounded to 1 mm so float noise cannot flip
    # exact ties (two-item towns); a struct min is one hash aggregation, no sort
    best = F.min(F.struct(F.round("_d", 6).alias("d"), "item_id", "lat", "lon", "location_text", "state", "county", "town"))
    g = d.groupBy("loc_key", "county_key").agg(best.alias("m"), F.count(F.lit(1)).alias("n_items"))
    return g.select(
        "loc_key", "county_key", F.col("m.item_id").alias("rep_id"), F.col("m.lat").alias("rep_lat"), F.col("m.lon").alias("rep_lon"),
        "m.location_text", "m.state", "m.county", "m.town", "n_items",
    )


# ------------------------------------------------------------------------------ mining

NEGATIVES_SCHEMA = (
    "item_id string, rank int, cand_item_id string, distance_km double, cand_location_text string, "
    "cand_state string, cand_county string, cand_town string, neg_kind string, search_ring int"
)
"""Rows of :func:`mine_negatives` (the ``negatives`` table)."""

_BLOCK = 2_000_000
"""Largest (anchors x candidates) distance block computed at once (16 MB of float64)."""

_TIE_SLACK = 8
"""Candidates kept beyond ``need`` by the partial sort, so exact distance ties at the cut still break by id."""

_START_MARGIN = 1.5
"""Safety factor on :meth:`TownIndex.fill`: density varies inside a proxy cell, and a start one pass too small costs a round."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def proxy_resolution(area_km2: float, finest: int) -> int:
    """The H3 resolution (at most ``finest``) whose average hexagon area is nearest ``area_km2`` (log scale).

    The search counts towns in one cell of about the size of a pass's certified circle to estimate
    whether the pass will be enough (:func:`start_pass`). Example (average areas 5.16 km² at res 7,
    0.737 km² at res 8): ``proxy_resolution(4.0, 8) == 7``, ``proxy_resolution(1.0, 8) == 8``,
    ``proxy_resolution(0.01, 8) == 8``.
    """
    import h3

    areas = np.log([h3.average_hexagon_area(r, "km^2") for r in range(finest + 1)])
    return int(np.argmin(np.abs(areas - math.log(max(area_km2, 1e-12)))))


def start_pass(proxy_counts, need: int, fill=1.0):
    """Density-aware choice of the first search pass for an anchor (vectorised over leading axes).

    ``proxy_counts[..., p]`` is the number of town representatives in the anchor's own cell at
    the proxy resolution of pass ``p`` (:func:`proxy_resolution` of the pass's certified circle), a
    cheap local density estimate; ``fill[p]`` is the area of that circle over the proxy cell's area
    (``TownIndex.fill``), so
    ``proxy_counts * fill`` estimates the towns the pass can certify. The anchor starts at the
    first pass whose estimate reaches ``need + 1`` (the +1 is the anchor's own town, which is not a
    candidate); if none does, at the last pass. Dense anchors thus start at the smallest disk,
    sparse ones skip disks that cannot hold enough towns. The start is only a guess: a pass whose
    near set is not certified by :func:`lgsid.geo.ring_is_enough` moves the anchor on
    (:func:`lgsid.geo.next_pass`).

    Example: ``start_pass([3, 9, 40, 200], need=8) == 2``;
    ``start_pass([3, 9, 40, 200], need=8, fill=[1, 0.5, 0.2, 0.2]) == 3``.
    """
    ok = np.asarray(proxy_counts) * np.asarray(fill) >= need + 1
    return np.where(ok.any(axis=-1), ok.argmax(axis=-1), ok.shape[-1] - 1)


class TownIndex:
    """Town representatives bucketed in H3 cells at every resolution the search uses.

    Built once on the driver from :func:`town_representatives` (one row per town, so its size is
    the number of towns, not of items: ~20k for the US, ~150k for all of GeoNames cities1000) and
    broadcast to the executors, where the anchors are searched partition by partition. Positions
    follow ``rep_id`` order, so comparing positions breaks distance ties by ``cand_item_id``.

    Args:
        reps: :func:`town_representatives` rows as pandas.
        cfg: Negatives config (H3 base resolution, rings, coarsest resolution).
    """

    def __init__(self, reps: "pd.DataFrame", cfg: "NegativesConfig") -> None:
        import pandas as pd
        import pyarrow as pa

        reps = reps.sort_values("rep_id", kind="stable").reset_index(drop=True)
        self.rep_id = reps["rep_id"].to_numpy(dtype=object)
        self.lat = reps["rep_lat"].to_numpy(dtype=np.float64)
        self.lon = reps["rep_lon"].to_numpy(dtype=np.float64)
        self.xyz = unit_xyz(self.lat, self.lon)
        codes, counties = pd.factorize(reps["county_key"])
        self.county = codes.astype(np.int64)  # county code of each town
        self.arrow = {  # output columns by position, and the lookups of anchors' own town / county
            **{c: pa.array(reps[c].to_numpy(dtype=object), pa.string()) for c in ("rep_id", "location_text", "state", "county", "town", "loc_key")},
            "county_key": pa.array(np.asarray(counties, dtype=object), pa.string()),
        }
        self.base_res = cfg.h3_resolution
        self.schedule = search_schedule(cfg.h3_resolution, cfg.max_ring, cfg.min_resolution)
        self.search_ring = np.asarray([equivalent_ring(r, k, cfg.h3_resolution) for r, k in self.schedule], dtype=np.int32)
        base = latlng_to_cells(self.lat, self.lon, self.base_res)
        self.proxies, self.fill = self._proxies()
        self.cells: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for r in sorted({r for r, _ in self.schedule} | set(self.proxies)):
            c = cell_parents(base, r)
            order = np.argsort(c, kind="stable")
            self.cells[r] = (c[order], order)

    def __len__(self) -> int:
        return len(self.rep_id)

    def lookup(self, values, key: str) -> np.ndarray:
        """Positions of ``values`` in ``self.arrow[key]`` ("loc_key": town position, "county_key": county code); -1 when absent."""
        import pyarrow.compute as pc

        return pc.fill_null(pc.index_in(values, value_set=self.arrow[key]), -1).to_numpy(zero_copy_only=False).astype(np.int64)

    def _proxies(self) -> tuple[list[int], np.ndarray]:
        """Per pass: the proxy resolution of its certified circle and the circle's area over the proxy cell's.

        Taken at the towns' mean position (H3 cells vary in size by ~2x over the globe; this only
        steers :func:`start_pass`, never the result); the fill is divided by :data:`_START_MARGIN`.
        """
        import h3.api.basic_int as h3i

        m = self.xyz.mean(axis=0) if len(self) else np.array([1.0, 0.0, 0.0])
        lat, lon = math.degrees(math.atan2(m[2], math.hypot(m[0], m[1]))), math.degrees(math.atan2(m[1], m[0]))
        proxies, fill = [], []
        for r, k in self.schedule:
            cov = covered_radii([h3i.latlng_to_cell(lat, lon, r)], k)[0]
            area = math.pi * cov * cov
            pr = proxy_resolution(area, self.base_res)
            proxies.append(pr)
            fill.append(area / h3i.cell_area(h3i.latlng_to_cell(lat, lon, pr), "km^2") / _START_MARGIN)
        return proxies, np.asarray(fill)

    def counts(self, res: int, cells: np.ndarray) -> np.ndarray:
        """Representatives in each of ``cells`` (H3 cells at ``res``)."""
        sc, _ = self.cells[res]
        return np.searchsorted(sc, cells, "right") - np.searchsorted(sc, cells, "left")

    def members(self, res: int, cells: Sequence[int]) -> np.ndarray:
        """Positions (ascending) of the representatives in any of ``cells`` (H3 cells at ``res``)."""
        sc, order = self.cells[res]
        cells = np.asarray(cells, dtype=np.int64)
        lo, hi = np.searchsorted(sc, cells, "left"), np.searchsorted(sc, cells, "right")
        lens = hi - lo
        n = int(lens.sum())
        if n == 0:
            return np.empty(0, dtype=np.int64)
        start = np.repeat(lo - (np.cumsum(lens) - lens), lens) + np.arange(n)
        return np.sort(order[start])


def _nearest(dot: np.ndarray, need: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the ``need`` largest ``dot`` per row (nearest first, ties by column), and how many are eligible.

    ``dot`` holds cosines of the anchor-candidate angles with ineligible entries at ``-inf``;
    candidate columns are in ``rep_id`` order, so the column breaks exact ties. Returns
    ``(cols (A, min(need, C)), n_eligible (A,))``.
    """
    a, c = dot.shape
    n_ok = np.isfinite(dot).sum(axis=1)
    m = min(c, need + _TIE_SLACK)
    if m < c:
        part = np.argpartition(-dot, m - 1, axis=1)[:, :m]
    else:
        part = np.broadcast_to(np.arange(c), (a, c))
    key = np.take_along_axis(dot, part, axis=1)
    o = np.lexsort((part, -key), axis=-1)
    cols, key = np.take_along_axis(part, o, axis=1), np.take_along_axis(key, o, axis=1)
    t = min(need, c)
    if m < c:  # a tie run reaching the partial sort's edge may hide a lower column: sort those rows fully
        redo = np.flatnonzero(np.isfinite(key[:, t - 1]) & (key[:, t - 1] == key[:, m - 1]))
        for i in redo:
            cols[i] = np.lexsort((np.arange(c), -dot[i]))[:m]
    return cols[:, :t], n_ok


def search_near(index: TownIndex, lat: np.ndarray, lon: np.ndarray, own: np.ndarray, need: int, min_km: float = 0.0):
    """Exact ``need`` nearest other-town representatives of each anchor, by density-aware H3 ring search.

    Anchors are grouped by their cell at their current pass (:func:`start_pass` first); a group is
    searched against the representatives in that cell's ``grid_disk``; an anchor whose near set is
    certified (:func:`lgsid.geo.ring_is_enough` against :func:`lgsid.geo.covered_radii`) is served,
    the others move on (:func:`lgsid.geo.next_pass`). The last pass serves everyone with what it
    found. Candidates are ordered by great-circle distance (cosine of the angle, then
    ``rep_id`` for exact ties); ``distance_km`` is the haversine distance.

    Args:
        index: The broadcast :class:`TownIndex`.
        lat, lon: (N,) anchor coordinates, degrees.
        own: (N,) position of each anchor's own town in ``index`` (never a candidate).
        need: Near candidates wanted per anchor (``K - n_far``).
        min_km: Candidates closer than this are skipped.

    Returns:
        ``(pos (N, need) int64, -1 past what was found; dist (N, need) km, inf there; served (N,) pass)``.
    """
    import h3.api.basic_int as h3i

    n = len(lat)
    sched = index.schedule
    last = len(sched) - 1
    pos = np.full((n, need), -1, dtype=np.int64)
    dist = np.full((n, need), np.inf)
    served = np.full(n, last, dtype=np.int64)
    if n == 0 or len(index) == 0:
        return pos, dist, served
    axyz = unit_xyz(np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64))
    cos_min = math.cos(min_km / EARTH_RADIUS_KM) if min_km > 0 else None
    ub, inv = np.unique(latlng_to_cells(lat, lon, index.base_res), return_inverse=True)
    parents: dict[int, np.ndarray] = {}

    parents[index.base_res] = ub

    def cells_at(res: int) -> np.ndarray:  # parents of the anchors' base cells, from the nearest finer level
        if res not in parents:
            finer = min(r for r in parents if r > res)
            u, inv_f = np.unique(parents[finer], return_inverse=True)
            parents[res] = cell_parents(u, res)[inv_f]
        return parents[res]

    counts = np.stack([index.counts(r, cells_at(r)) for r in index.proxies], axis=1)  # (U, P)
    cur = start_pass(counts, need, index.fill)[inv]
    active = np.arange(n)
    while active.size:
        moved = []
        for p in np.unique(cur[active]):
            res, k = sched[p]
            A = active[cur[active] == p]
            c = cells_at(res)[inv[A]]
            o = np.argsort(c, kind="stable")
            A, c = A[o], c[o]
            ucell, first = np.unique(c, return_index=True)
            cov = covered_radii(ucell, k)
            ends = np.append(first[1:], len(A))
            for cell, s, e, cov_g in zip(ucell.tolist(), first, ends, cov):
                cand = index.members(res, h3i.grid_disk(cell, k))
                step = max(1, _BLOCK // max(1, len(cand)))
                for b0 in range(s, e, step):
                    Ab = A[b0 : min(e, b0 + step)]
                    dot = axyz[Ab] @ index.xyz[cand].T if len(cand) else np.empty((len(Ab), 0))
                    dot[cand[None, :] == own[Ab][:, None]] = -np.inf  # own town
                    if cos_min is not None:
                        dot[dot > cos_min] = -np.inf
                    cols, n_ok = _nearest(dot, need)
                    t = cols.shape[1]
                    sel = cand[cols]  # (B, t)
                    d = haversine_km(lat[Ab][:, None], lon[Ab][:, None], index.lat[sel], index.lon[sel])
                    ok = np.arange(t)[None, :] < n_ok[:, None]
                    kth = d[:, need - 1] if t == need else np.full(len(Ab), np.nan)
                    kth = np.where(n_ok >= need, kth, np.nan)
                    enough = ring_is_enough(n_ok, np.nan_to_num(kth, nan=np.inf), cov_g, need) | (p == last)
                    done = Ab[enough]
                    pos[done, :t] = np.where(ok[enough], sel[enough], -1)
                    dist[done, :t] = np.where(ok[enough], d[enough], np.inf)
                    served[done] = p
                    if (~enough).any():

                        def covered_at(q: int, cell=cell) -> float:
                            rq, kq = sched[q]
                            return float(covered_radii([h3i.cell_to_parent(cell, rq)], kq)[0])

                        cur[Ab[~enough]] = next_pass(covered_at, len(sched), int(p), kth[~enough], n_ok[~enough], need)
                        moved.append(Ab[~enough])
        active = np.concatenate(moved) if moved else np.empty(0, dtype=np.int64)
    return pos, dist, served


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 (a counter-based hash: same input, same draw, on any worker)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def far_draws(index: TownIndex, a_hash: np.ndarray, a_county: np.ndarray, exclude: np.ndarray, n_want: np.ndarray,
              seed: int, draws_per: int) -> np.ndarray:
    """Far negatives: random towns in other counties, drawn by a counter-based hash (no cross join).

    Draw ``j`` of an anchor is representative ``mix64(mix64(seed ^ anchor_hash) + j·φ) mod R``
    (``j = 0, 1, ...``; R = number of towns; φ the golden-ratio constant). The far set is the first
    ``n_want`` draws that are in another county (``state|county`` differs), not in ``exclude`` (the
    near set) and not drawn before. The draw depends only on (seed, anchor, j), so it does not depend
    on Spark partitioning. Draws run in blocks of ``draws_per · max(n_want)``; an anchor whose
    eligible towns are too few stops after ``max(4 blocks, 32 R)`` draws with what it has.

    Args:
        index: The :class:`TownIndex`.
        a_hash: (N,) int64 anchor hashes (``xxhash64(item_id)``).
        a_county: (N,) county code of each anchor (``index.lookup(county_keys, "county_key")``, -1 when none).
        exclude: (N, E) positions never to draw (the near set), -1 padded.
        n_want: (N,) far negatives wanted per anchor.
        seed: ``negatives.seed``.
        draws_per: ``negatives.far_draws`` (oversampling per wanted negative).

    Returns:
        (N, max(n_want)) positions, -1 past what was drawn.
    """
    n, R = len(a_hash), len(index)
    width = int(n_want.max()) if n else 0
    out = np.full((n, width), -1, dtype=np.int64)
    if width == 0 or R == 0:
        return out
    got = np.zeros(n, dtype=np.int64)
    block = draws_per * width
    limit = max(4 * block, 32 * R)
    base = _mix64(np.uint64(seed) ^ a_hash.astype(np.uint64))
    rows = np.flatnonzero(n_want > 0)
    j0 = 0
    while rows.size and j0 < limit:
        j = np.arange(j0, j0 + block, dtype=np.uint64)
        with np.errstate(over="ignore"):
            cand = (_mix64(base[rows][:, None] + j[None, :] * _GOLDEN) % np.uint64(R)).astype(np.int64)  # (r, block)
        valid = index.county[cand] != a_county[rows][:, None]
        taken = np.concatenate([exclude[rows], out[rows]], axis=1)
        valid &= ~(cand[:, :, None] == taken[:, None, :]).any(axis=2)
        o = np.argsort(cand, axis=1, kind="stable")  # first occurrence within the block
        sc = np.take_along_axis(cand, o, axis=1)
        dup = np.zeros_like(valid)
        np.put_along_axis(dup, o, np.concatenate([np.zeros((len(rows), 1), bool), sc[:, 1:] == sc[:, :-1]], axis=1), axis=1)
        valid &= ~dup
        csum = np.cumsum(valid, axis=1)
        take = valid & (csum <= (n_want[rows] - got[rows])[:, None])
        rr, cc = np.nonzero(take)
        out[rows[rr], got[rows][rr] + csum[rr, cc] - 1] = cand[rr, cc]
        got[rows] += take.sum(axis=1)
        rows = rows[got[rows] < n_want[rows]]
        j0 += block
    return out


def negatives_table(index: TownIndex, anchors: "pa.Table", cfg: "NegativesConfig") -> "pa.Table":
    """Anchors -> their K ranked candidates (Eq. 1): near set, far set, ranked 1..K by ``(distance_km, cand_item_id)``.

    Args:
        index: The :class:`TownIndex`.
        anchors: Arrow table ``item_id, lat, lon, loc_key, county_key, a_hash`` (one row per anchor).
        cfg: Negatives config.

    Returns:
        Arrow table with the columns of :data:`NEGATIVES_SCHEMA`.
    """
    import pyarrow as pa

    lat = anchors.column("lat").to_numpy().astype(np.float64)
    lon = anchors.column("lon").to_numpy().astype(np.float64)
    own = index.lookup(anchors.column("loc_key"), "loc_key")
    county = index.lookup(anchors.column("county_key"), "county_key")
    need = cfg.k - cfg.n_far
    near, near_d, served = search_near(index, lat, lon, own, need, cfg.min_near_distance_km)
    n_want = cfg.k - (near >= 0).sum(axis=1)
    far = far_draws(index, anchors.column("a_hash").to_numpy().astype(np.int64), county, near, n_want, cfg.seed, cfg.far_draws)
    safe = np.maximum(far, 0)
    far_d = np.where(far >= 0, haversine_km(lat[:, None], lon[:, None], index.lat[safe], index.lon[safe]), np.inf)
    allp = np.concatenate([near, far], axis=1)
    alld = np.concatenate([near_d, far_d], axis=1)
    kind = np.concatenate([np.zeros(near.shape, bool), np.ones(far.shape, bool)], axis=1)
    o = np.lexsort((np.where(allp >= 0, allp, len(index)), alld), axis=-1)  # distance, then cand_item_id
    allp, alld, kind = (np.take_along_axis(x, o, axis=1) for x in (allp, alld, kind))
    rr, cc = np.nonzero(allp >= 0)  # found candidates sort first (missing ones are at +inf)
    p = pa.array(allp[rr, cc])
    A = index.arrow
    return pa.table({
        "item_id": anchors.column("item_id").take(pa.array(rr)),
        "rank": pa.array((cc + 1).astype(np.int32)),
        "cand_item_id": A["rep_id"].take(p),
        "distance_km": pa.array(alld[rr, cc]),
        "cand_location_text": A["location_text"].take(p),
        "cand_state": A["state"].take(p),
        "cand_county": A["county"].take(p),
        "cand_town": A["town"].take(p),
        "neg_kind": pa.DictionaryArray.from_arrays(pa.array(kind[rr, cc].astype(np.int8)), pa.array(["near", "far"])).cast(pa.string()),
        "search_ring": pa.array(index.search_ring[served[rr]]),
    })


def mine_negatives(
    prompts_df: "DataFrame", cfg: "NegativesConfig", rows_per_partition: int = 100_000, level: str = "town"
) -> "DataFrame":
    """Geo prompts -> negatives (Eq. 1): K mismatched locations per anchor, ranked near -> far (lazy).

    The town representatives (one per town) are indexed on the driver (:class:`TownIndex`) and
    broadcast; anchors stay in Spark and are searched by ``mapInArrow``, partition by partition
    (:func:`negatives_table`): H3 ring search for the near set, hashed draws for the far set. No
    join of anchors with candidates, no cross join.

    Args:
        prompts_df: geo_prompts rows.
        cfg: Negatives config (K, n_far, H3 search, seed).
        rows_per_partition: Anchors per Spark task (more tasks, finer progress and less memory).
        level: Location level (:func:`lgsid.prompts.location_level`): ``"town"`` (far = another
            county) or ``"district"`` (a location is a district, far = another town).

    Returns:
        DataFrame with :data:`NEGATIVES_SCHEMA`.
    """
    from pyspark.sql import functions as F

    spark = prompts_df.sparkSession
    reps = town_representatives(prompts_df, level).toPandas()  # one row per location
    bc = spark.sparkContext.broadcast(TownIndex(reps, cfg))
    anchors = _with_keys(prompts_df, level).select(
        "item_id", "lat", "lon", "loc_key", "county_key", F.xxhash64(F.col("item_id")).alias("a_hash")
    )
    n = int(reps["n_items"].sum())
    parts = max(spark.sparkContext.defaultParallelism, math.ceil(n / rows_per_partition))
    anchors = anchors.repartition(parts, "county_key")  # a county's anchors together: bigger groups per H3 cell

    def mine(batches):
        import pyarrow as pa

        batches = [b for b in batches if b.num_rows]
        if batches:
            yield from negatives_table(bc.value, pa.Table.from_batches(batches), cfg).to_batches(max_chunksize=1 << 16)

    return anchors.mapInArrow(mine, NEGATIVES_SCHEMA)


def build_reward_lists(negatives_df: "DataFrame", prompts_df: "DataFrame", cfg: "NegativesConfig", pcfg: "PromptsConfig") -> "DataFrame":
    """Negatives + prompts -> list-wise reward examples (reward_lists schema; Eq. 3 labels).

    ``prompts = [true prompt] + [combine_prompt(anchor content, candidate location) for rank 1..K]``,
    ``ranks = [0, 1..K]``, ``distance_km = [0.0, d_1..d_K]``, ``soft_labels = soft_labels(ranks, K)``.
    Anchors with no negatives (a catalogue with a single town) get no list.
    """
    from pyspark.sql import functions as F

    from lgsid.prompts import combine_prompt_col

    g = negatives_df.groupBy("item_id").agg(
        F.array_sort(F.collect_list(F.struct("rank", "distance_km", "cand_location_text"))).alias("c")
    )
    j = g.join(prompts_df.select("item_id", "content_text", "prompt"), "item_id")
    mism = F.transform("c", lambda x: combine_prompt_col(F.col("content_text"), x["cand_location_text"], pcfg))
    ranks = F.concat(F.array(F.lit(0)), F.transform("c", lambda x: x["rank"]))
    return j.select(
        "item_id",
        "content_text",
        F.concat(F.array(F.col("prompt")), mism).alias("prompts"),
        ranks.cast("array<int>").alias("ranks"),
        F.concat(F.array(F.lit(0.0)), F.transform("c", lambda x: x["distance_km"])).alias("distance_km"),
        soft_labels_col(ranks, cfg.k).alias("soft_labels"),
    )


def run(spark: "SparkSession", cfg: "LGSIDConfig") -> "StepSummary":
    """Step ``negatives``: read ``geo_prompts``, write ``negatives`` and ``reward_lists`` (one commit each)."""
    from pyspark.sql import functions as F

    from lgsid.steps import StepSummary
    from lgsid.storage import DeltaStore

    from lgsid.spark.progress import spark_progress

    from lgsid.prompts import location_level

    store = DeltaStore(spark, cfg.storage)
    prompts = store.read("geo_prompts")
    level = location_level(prompts, cfg.prompts)
    with spark_progress(spark, "negatives: Spark tasks"):
        neg = mine_negatives(prompts, cfg.negatives, level=level).localCheckpoint(eager=True)
    r1 = store.write(neg, "negatives", mode="overwrite")
    r2 = store.write(build_reward_lists(neg, prompts, cfg.negatives, cfg.prompts), "reward_lists", mode="overwrite")
    st = neg.agg(
        F.avg(F.when(F.col("neg_kind") == "near", F.col("distance_km"))).alias("near_km"),
        F.avg(F.when(F.col("neg_kind") == "far", F.col("distance_km"))).alias("far_km"),
        F.avg(F.col("search_ring")).alias("ring"),
        F.sum((F.col("neg_kind") == "far").cast("long")).alias("n_far"),
    ).first()
    per = neg.groupBy("item_id").count()
    full = per.agg(F.avg((F.col("count") == cfg.negatives.k).cast("double")).alias("f"), F.avg("count").alias("m")).first()
    metrics = {
        "location_level": level,
        "anchors": r2.rows,
        "full_list_share": float(full["f"] or 0.0),
        "mean_candidates": float(full["m"] or 0.0),
        "far_negatives": int(st["n_far"] or 0),
        "mean_near_distance_km": float(st["near_km"] or 0.0),
        "mean_far_distance_km": float(st["far_km"] or 0.0),
        "mean_search_ring": float(st["ring"] or 0.0),
    }
    return StepSummary("negatives", tables=[r1, r2], metrics=metrics)
