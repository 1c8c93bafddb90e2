"""The Spark job of the negatives step: mine the ranked candidates (Eq. 1) and build the reward lists (Eq. 3)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from lgsid.geo import haversine_km
from lgsid.negatives.far import far_draws
from lgsid.negatives.labels import soft_labels_col
from lgsid.negatives.search import TownIndex, search_near
from lgsid.negatives.towns import town_representatives, with_keys

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from lgsid.config import NegativesConfig, PromptsConfig


NEGATIVES_SCHEMA = (
    "item_id string, rank int, cand_item_id string, distance_km double, cand_location_text string, "
    "cand_state string, cand_county string, cand_town string, neg_kind string"
)
"""Rows of :func:`mine_negatives` (the ``negatives`` table)."""


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
    near, near_d = search_near(index, lat, lon, own, need, cfg.min_near_distance_km)
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
    })


def mine_negatives(
    prompts_df: "DataFrame", cfg: "NegativesConfig", rows_per_partition: int = 100_000, level: str = "town"
) -> "DataFrame":
    """Geo prompts -> negatives (Eq. 1): K mismatched locations per anchor, ranked near -> far (lazy).

    The town representatives (one per town) are indexed on the driver (:class:`TownIndex`) and
    broadcast; anchors stay in Spark and are searched by ``mapInArrow``, partition by partition
    (:func:`negatives_table`): a k-d tree search for the near set, hashed draws for the far set. No
    join of anchors with candidates, no cross join.

    Args:
        prompts_df: geo_prompts rows.
        cfg: Negatives config (K, n_far, min_near_distance_km, seed).
        rows_per_partition: Anchors per Spark task (more tasks, finer progress and less memory).
        level: Location level (:func:`lgsid.prompts.location_level`): ``"town"`` (far = another
            county) or ``"district"`` (a location is a district, far = another town).

    Returns:
        DataFrame with :data:`NEGATIVES_SCHEMA`.
    """
    from pyspark.sql import functions as F

    spark = prompts_df.sparkSession
    reps = town_representatives(prompts_df, level).toPandas()  # one row per location
    bc = spark.sparkContext.broadcast(TownIndex(reps))
    anchors = with_keys(prompts_df, level).select(
        "item_id", "lat", "lon", "loc_key", "county_key", F.xxhash64(F.col("item_id")).alias("a_hash")
    )
    n = int(reps["n_items"].sum())
    parts = max(spark.sparkContext.defaultParallelism, math.ceil(n / rows_per_partition))
    anchors = anchors.repartition(parts)

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
