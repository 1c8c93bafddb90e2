"""Distance-ranked, density-aware negatives and the reward lists (step ``negatives``; Eq. 1, Eq. 3).

For every anchor item we want K *mismatched locations*: locations (towns) other than the anchor's
own, sorted near -> far, so the reward model learns that a wrong town next door is less wrong
than a wrong town across the country (Eq. 1), with soft labels from the rank (Eq. 3).

Definitions (the tests check the Spark job against a brute-force numpy version of exactly these):

* A **location** is a qualified town ``state|county|town``; its text is the item's
  ``location_text``. The anchor's own location is never a candidate, and each location appears at
  most once per list (the list is not K copies of the same town).
* A location's **representative** is its medoid item: the item nearest (haversine) to the mean
  position of the town's items (mean of 3-D unit vectors), ties broken by ``item_id``. The
  candidate's ``cand_item_id``/``distance_km`` are those of the representative. Using one point per
  town keeps the search proportional to the number of towns near the anchor instead of the number
  of shops there, and makes ``distance_km`` "how far is that town", not "how far is its nearest shop".
* **Near set**: the ``K - n_far`` nearest representatives by ``(distance_km, cand_item_id)``,
  excluding those closer than ``min_near_distance_km``.
* **Far set**: ``n_far`` representatives drawn at random (hash of seed, anchor, draw: independent of
  Spark partitioning) among towns in *other counties* (``state|county`` differs) and not in the
  near set. When fewer than ``K - n_far`` near locations exist within the whole search, the far
  set grows so the list still has K entries.
* The K candidates are ranked 1..K by ``(distance_km, cand_item_id)`` over near and far together.

Scaling (never a cross join): representatives are bucketed in H3 cells. Each anchor starts at a
pass of :func:`lgsid.geo.search_schedule` chosen from representative counts (:func:`start_pass`);
a round joins all unserved anchors with the representatives in the ``grid_disk`` of their cell (one
equi-join on resolution and cell); an anchor is served when :func:`lgsid.geo.ring_is_enough`
certifies its near set (enough locations, the last one within the disk's certified radius), else it
moves to the next pass. Dense anchors are served by small disks (hard negatives from the immediate
neighbourhood); sparse ones widen. ``search_ring`` records the disk that served the anchor, in
base-resolution rings.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from lgsid.errors import ValidationError
from lgsid.geo import disk_table, equivalent_ring, haversine_km_col, latlng_to_cells, next_pass, search_schedule

if TYPE_CHECKING:  # pragma: no cover
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


def _cells_udf(resolutions: list[int]):
    import pandas as pd
    from pyspark.sql import functions as F

    @F.pandas_udf("array<bigint>")
    def cells(lat, lon):  # pd.Series each -> pd.Series of [cell at each resolution]
        cols = [latlng_to_cells(lat.to_numpy(), lon.to_numpy(), r) for r in resolutions]
        return pd.Series(list(np.stack(cols, axis=1)) if len(lat) else [], dtype=object)

    return cells


def _with_cells(df: "DataFrame", lat: str, lon: str, resolutions: list[int]) -> "DataFrame":
    """Add ``cell_<res>`` (H3, BIGINT) for every resolution, from one pandas UDF call per batch."""
    from pyspark.sql import functions as F

    df = df.withColumn("_cells", _cells_udf(resolutions)(F.col(lat), F.col(lon)))
    for i, r in enumerate(resolutions):
        df = df.withColumn(f"cell_{r}", F.col("_cells")[i])
    return df.drop("_cells")


def _disk_udf():
    import pandas as pd
    from pyspark.sql import functions as F

    @F.pandas_udf("cells array<bigint>, covered_km double")
    def disk(cells, ks):  # pd.Series of cell ids, pd.Series of ring distances
        out_cells, cov = [], []
        for c, k in zip(cells.tolist(), ks.tolist()):
            d, cv = disk_table([c], int(k))
            out_cells.append(d[0])
            cov.append(cv[0])
        return pd.DataFrame({"cells": out_cells, "covered_km": cov})

    return disk


def _next_pass_udf(schedule: list[tuple[int, int]], cell_pos: list[int], need: int):
    import pandas as pd
    from pyspark.sql import functions as F

    @F.pandas_udf("int")
    def nxt(cells, p, kth, found):  # pd.Series: arrays, ints, doubles (NaN when too few), ints
        out = [
            next_pass([c[i] for i in cell_pos], schedule, int(pp), None if pd.isna(d) else float(d), int(n), need)
            for c, pp, d, n in zip(cells, p, kth, found)
        ]
        return pd.Series(out, dtype="int32")

    return nxt


def _with_keys(prompts_df: "DataFrame") -> "DataFrame":
    from pyspark.sql import functions as F

    return prompts_df.withColumn("loc_key", F.concat_ws("|", "state", "county", "town")).withColumn(
        "county_key", F.concat_ws("|", "state", "county")
    )


def town_representatives(prompts_df: "DataFrame") -> "DataFrame":
    """One representative item per location (town medoid, see module docstring).

    Args:
        prompts_df: geo_prompts rows (item_id, location_text, state, county, town, lat, lon).

    Returns:
        DataFrame ``loc_key, county_key, rep_id, rep_lat, rep_lon, location_text, state, county, town``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = _with_keys(prompts_df)
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
    # distances rounded to 1 mm so float noise cannot flip exact ties (two-item towns); then item_id
    w = Window.partitionBy("loc_key").orderBy(F.round("_d", 6), "item_id")
    return (
        d.withColumn("_r", F.row_number().over(w))
        .filter("_r = 1")
        .select(
            "loc_key", "county_key", F.col("item_id").alias("rep_id"), F.col("lat").alias("rep_lat"),
            F.col("lon").alias("rep_lon"), "location_text", "state", "county", "town",
        )
    )


# ------------------------------------------------------------------------------ mining

_FINISH_PAIRS = 2_000_000
"""After two regular rounds, when (unserved anchors x representatives) is at most this, the rest go straight to the last
pass (res 0, ring max_ring: a disk certified to several thousand km), which serves them in one more round."""

_CAND = ("distance_km", "cand_item_id", "cand_loc_key", "cand_location_text", "cand_state", "cand_county", "cand_town")


def proxy_resolution(res: int, k: int) -> int:
    """Resolution whose single cell has about the area of ``grid_disk(cell_res, k)``.

    A disk of ring k holds ``3k²+3k+1`` cells and each coarser resolution is 7x larger, so the
    proxy is ``res - round(log7(3k²+3k+1))`` (k=1 -> res-1, k=2 or 4 -> res-2), clipped at 0.
    """
    return max(0, res - int(round(math.log(3 * k * k + 3 * k + 1, 7))))


def start_pass(proxy_counts: Sequence[int], need: int) -> int:
    """Density-aware choice of the first search pass for an anchor.

    ``proxy_counts[p]`` is the number of town representatives in the anchor's own cell at
    :func:`proxy_resolution` of pass ``p`` (a cheap estimate of what the pass's disk holds). The
    anchor starts at the first pass whose estimate reaches ``need + 1`` (the +1 is the anchor's own
    town, which is not a candidate); if none does, at the last pass. Dense anchors thus start at
    the smallest disk, sparse ones skip disks that cannot hold enough towns. The start is only a
    guess: a pass whose near set is not certified by :func:`lgsid.geo.ring_is_enough` moves the
    anchor to the next pass.

    Example: ``start_pass([3, 9, 40, 200], need=8) == 2``.
    """
    for p, c in enumerate(proxy_counts):
        if c >= need + 1:
            return p
    return len(proxy_counts) - 1


def _round(work: "DataFrame", reps_by_res: "DataFrame", sched: "DataFrame", need: int, min_km: float) -> "DataFrame":
    """One round: every anchor in ``work`` searched at its own pass ``p``.

    ``work``: a_id, a_lat, a_lon, a_loc, p, a_cell (cell at the pass's resolution).
    Returns ``a_id, p, near (sorted first ``need`` candidate structs), enough, kth_km``.
    """
    from pyspark.sql import functions as F

    acells = work.select("p", "a_cell").distinct().join(sched.select("p", "res", "k"), "p")
    disk = acells.select("p", "res", "a_cell", _disk_udf()(F.col("a_cell"), F.col("k")).alias("d")).select(
        "p", "res", "a_cell", F.col("d.covered_km").alias("covered_km"), F.explode("d.cells").alias("cell")
    )
    cell_cands = disk.join(reps_by_res, ["res", "cell"]).drop("cell", "res")  # (p, a_cell, covered_km, rep...)
    pairs = (
        work.join(cell_cands, ["p", "a_cell"])
        .filter(F.col("cand_loc_key") != F.col("a_loc"))
        .withColumn("distance_km", haversine_km_col(F.col("a_lat"), F.col("a_lon"), F.col("rep_lat"), F.col("rep_lon")))
    )
    if min_km > 0:
        pairs = pairs.filter(F.col("distance_km") >= F.lit(min_km))
    g = pairs.groupBy("a_id", "p").agg(
        F.array_sort(F.collect_list(F.struct(*_CAND))).alias("all"), F.max("covered_km").alias("covered_km")
    )
    kth = F.try_element_at("all", F.lit(need))["distance_km"]  # null when fewer than need
    enough = (F.size("all") >= need) & F.coalesce(kth <= F.col("covered_km"), F.lit(False))  # geo.ring_is_enough
    return g.select("a_id", "p", F.slice("all", 1, need).alias("near"), enough.alias("enough"), kth.alias("kth_km"))


def mine_negatives(prompts_df: "DataFrame", cfg: "NegativesConfig", progress: bool = False) -> "DataFrame":
    """Geo prompts -> negatives (Eq. 1): K mismatched locations per anchor, ranked near -> far.

    Search: every anchor starts at :func:`start_pass` of :func:`lgsid.geo.search_schedule` (from
    representative counts per H3 cell); a round searches all unserved anchors at their current pass
    in one Spark job; anchors whose near set is not certified move to the next pass. The last pass
    serves everyone (with what it found).

    Args:
        prompts_df: geo_prompts rows.
        cfg: Negatives config (K, n_far, H3 search, seed).
        progress: Show a tqdm bar over anchors served.

    Returns:
        DataFrame with the negatives schema: ``item_id, rank, cand_item_id, distance_km,
        cand_location_text, cand_state, cand_county, cand_town, neg_kind, search_ring``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spark = prompts_df.sparkSession
    need = cfg.k - cfg.n_far
    schedule = search_schedule(cfg.h3_resolution, cfg.max_ring, cfg.min_resolution)
    last = len(schedule) - 1
    proxies = [proxy_resolution(r, k) for r, k in schedule]
    resolutions = sorted({r for r, _ in schedule} | set(proxies), reverse=True)
    ridx = {r: i + 1 for i, r in enumerate(resolutions)}  # 1-based for element_at
    sched = spark.createDataFrame(
        [(p, r, ridx[r], k, ridx[proxies[p]], equivalent_ring(r, k, cfg.h3_resolution)) for p, (r, k) in enumerate(schedule)],
        "p int, res int, res_idx int, k int, proxy_idx int, search_ring int",
    )

    items = _with_keys(prompts_df)
    reps = _with_cells(town_representatives(prompts_df), "rep_lat", "rep_lon", resolutions).select(
        "rep_lat", "rep_lon", *[f"cell_{r}" for r in resolutions],
        F.col("rep_id").alias("cand_item_id"), F.col("loc_key").alias("cand_loc_key"), F.col("county_key").alias("cand_county_key"),
        F.col("location_text").alias("cand_location_text"), F.col("state").alias("cand_state"),
        F.col("county").alias("cand_county"), F.col("town").alias("cand_town"),
    ).localCheckpoint(eager=True)
    rep_cols = ["rep_lat", "rep_lon", *_CAND[1:]]
    reps_by_res = reps.select(
        F.explode(F.array(*[F.struct(F.lit(r).alias("res"), F.col(f"cell_{r}").alias("cell")) for r in resolutions])).alias("rc"), *rep_cols
    ).select("rc.res", "rc.cell", *rep_cols)
    counts = reps_by_res.groupBy("res", "cell").agg(F.count(F.lit(1)).alias("n")).localCheckpoint(eager=True)

    anchors = _with_cells(
        items.select(
            F.col("item_id").alias("a_id"), F.col("lat").alias("a_lat"), F.col("lon").alias("a_lon"),
            F.col("loc_key").alias("a_loc"), F.col("county_key").alias("a_county"),
        ),
        "a_lat", "a_lon", resolutions,
    ).withColumn("a_cells", F.array(*[F.col(f"cell_{r}") for r in resolutions]))
    anchors = anchors.select("a_id", "a_lat", "a_lon", "a_loc", "a_county", "a_cells").localCheckpoint(eager=True)
    n_anchors = anchors.count()

    # Density-aware start: representatives in the anchor's proxy cell for every pass (start_pass).
    # (computed per distinct base cell: every proxy cell is a parent of it, so anchors there agree)
    base_pos = ridx[cfg.h3_resolution]
    passes = F.array(*[F.struct(F.lit(p).alias("p"), F.lit(ridx[proxies[p]]).alias("proxy_idx")) for p in range(len(schedule))])
    bcells = anchors.select(F.element_at("a_cells", base_pos).alias("bcell"), "a_cells").dropDuplicates(["bcell"])
    prox = bcells.select("bcell", "a_cells", F.explode(passes).alias("pp")).select(
        "bcell", F.col("pp.p").alias("p"), F.col("pp.proxy_idx").alias("proxy_idx"),
        F.element_at("a_cells", F.col("pp.proxy_idx")).alias("cell"),
    )
    cnt = counts.select(F.col("cell"), F.col("res").alias("pres"), "n")
    proxy_res = spark.createDataFrame([(ridx[r], r) for r in resolutions], "proxy_idx int, pres int")
    prox = prox.join(F.broadcast(proxy_res), "proxy_idx").join(cnt, ["cell", "pres"], "left").fillna(0, ["n"])
    start = prox.groupBy("bcell").agg(
        F.coalesce(F.min(F.when(F.col("n") >= need + 1, F.col("p"))), F.lit(last)).alias("p")  # = start_pass
    )
    start = anchors.select("a_id", F.element_at("a_cells", base_pos).alias("bcell")).join(start, "bcell").drop("bcell")
    work = anchors.join(start, "a_id")

    n_reps = reps.count()
    nxt = _next_pass_udf(schedule, [ridx[r] - 1 for r, _ in schedule], need)
    served = []
    rounds = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_anchors, desc="negatives: anchors served", unit="anchor")
    while True:
        w = work.join(F.broadcast(sched.select("p", "res_idx")), "p").select(
            "a_id", "a_lat", "a_lon", "a_loc", "p", F.element_at("a_cells", F.col("res_idx")).alias("a_cell")
        )
        r = _round(w, reps_by_res, sched, need, cfg.min_near_distance_km)
        # every anchor of the round gets a row (an empty disk gives near=[] and enough=false)
        r = w.select("a_id", "p").join(r.drop("p"), "a_id", "left").select(
            "a_id", "p", "near", "kth_km", (F.coalesce("enough", F.lit(False)) | (F.col("p") == last)).alias("enough"),
        ).localCheckpoint(eager=True)
        served.append(r.filter("enough").select("a_id", "p", "near"))
        moved = (
            r.filter(~F.col("enough"))
            .join(anchors.select("a_id", "a_cells"), "a_id")
            .select("a_id", nxt(F.col("a_cells"), F.col("p"), F.col("kth_km"), F.coalesce(F.size("near"), F.lit(0))).alias("p"))
            .localCheckpoint(eager=True)
        )
        n_moved = moved.count()
        if bar is not None:
            bar.update(bar.total - bar.n - n_moved)
        if n_moved == 0:
            break
        rounds += 1
        if rounds >= 2 and n_moved * n_reps <= _FINISH_PAIRS:  # few stragglers: finish them in one last round
            moved = moved.select("a_id", F.lit(last).alias("p"))
        work = anchors.join(moved, "a_id")
    if bar is not None:
        bar.close()
    near_all = served[0]
    for d in served[1:]:
        near_all = near_all.unionByName(d)
    near_all = near_all.join(F.broadcast(sched.select("p", "search_ring")), "p").drop("p")
    last_ring = equivalent_ring(*schedule[-1], cfg.h3_resolution)
    cand_type = near_all.schema["near"].dataType
    a = anchors.select("a_id", "a_loc", "a_county").join(near_all, "a_id", "left").select(
        "a_id", "a_loc", "a_county",
        F.coalesce("near", F.array().cast(cand_type)).alias("near"),
        F.coalesce("search_ring", F.lit(last_ring)).alias("search_ring"),
    ).withColumn("n_far", F.lit(cfg.k) - F.size("near"))

    near_rows = a.select("a_id", "search_ring", F.explode("near").alias("c")).select(
        "a_id", "search_ring", *[F.col(f"c.{c}").alias(c) for c in _CAND], F.lit("near").alias("neg_kind")
    )

    # Far negatives: random towns in other counties, by a hash-keyed bucket join (no cross join).
    n_buckets = max(1, n_reps // 2)
    seed = F.lit(cfg.seed)
    rb = reps.withColumn("bucket", F.pmod(F.xxhash64(seed, F.col("cand_item_id")), F.lit(n_buckets)))
    draws = a.filter("n_far > 0").select(
        "a_id", "a_loc", "a_county", "search_ring", "n_far",
        F.explode(F.sequence(F.lit(1), F.col("n_far") * cfg.far_draws)).alias("draw"),
    ).withColumn("bucket", F.pmod(F.xxhash64(seed, F.col("a_id"), F.col("draw")), F.lit(n_buckets)))
    near_locs = near_rows.select("a_id", "cand_loc_key")
    anchor_xyz = anchors.select("a_id", "a_lat", "a_lon")
    far = (
        draws.join(rb, "bucket")
        .filter(F.col("cand_county_key") != F.col("a_county"))
        .join(near_locs, ["a_id", "cand_loc_key"], "left_anti")
        .dropDuplicates(["a_id", "cand_loc_key"])  # one rep per location: the row is unique per (a, loc)
        .withColumn("_o", F.xxhash64(seed, F.col("a_id"), F.col("cand_loc_key")))
    )
    wf = Window.partitionBy("a_id").orderBy("_o", "cand_item_id")
    far_rows = (
        far.withColumn("_r", F.row_number().over(wf))
        .filter(F.col("_r") <= F.col("n_far"))
        .join(anchor_xyz, "a_id")
        .withColumn("distance_km", haversine_km_col(F.col("a_lat"), F.col("a_lon"), F.col("rep_lat"), F.col("rep_lon")))
        .select("a_id", "search_ring", *_CAND, F.lit("far").alias("neg_kind"))
    )

    allc = near_rows.unionByName(far_rows)
    w = Window.partitionBy("a_id").orderBy("distance_km", "cand_item_id")
    return allc.withColumn("rank", F.row_number().over(w)).select(
        F.col("a_id").alias("item_id"), "rank", "cand_item_id", "distance_km", "cand_location_text",
        "cand_state", "cand_county", "cand_town", "neg_kind", F.col("search_ring").cast("int").alias("search_ring"),
    )


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

    store = DeltaStore(spark, cfg.storage)
    prompts = store.read("geo_prompts")
    neg = mine_negatives(prompts, cfg.negatives, progress=True).localCheckpoint(eager=True)
    r1 = store.write(neg, "negatives", mode="overwrite")
    r2 = store.write(build_reward_lists(neg, prompts, cfg.negatives, cfg.prompts), "reward_lists", mode="overwrite")
    st = neg.agg(
        F.avg(F.when(F.col("neg_kind") == "near", F.col("distance_km"))).alias("near_km"),
        F.avg(F.when(F.col("neg_kind") == "far", F.col("distance_km"))).alias("far_km"),
        F.avg(F.col("search_ring")).alias("ring"),
    ).first()
    metrics = {
        "anchors": r2.rows,
        "mean_near_distance_km": float(st["near_km"] or 0.0),
        "mean_far_distance_km": float(st["far_km"] or 0.0),
        "mean_search_ring": float(st["ring"] or 0.0),
    }
    return StepSummary("negatives", tables=[r1, r2], metrics=metrics)
