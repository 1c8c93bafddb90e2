"""Pairs for G-DPO: D_mix = co-click pairs (Eq. 5) U geo-constrained pairs (step ``pairs``).

* **Co-click (domain-collaborative) pairs.** ``s(a, b)`` = number of users whose history holds
  both ``a`` and ``b`` (Eq. 5). A user's history is the set of their *most recent*
  ``pairs.history_cap`` distinct items (latest click per item, ties by ``item_id``), so one heavy
  user contributes at most ``cap·(cap-1)/2`` pairs instead of a quadratic blow-up. Pairs with
  ``s > pairs.s_th`` are kept. The table is anchor-centric: both directions ``(a, b)`` and
  ``(b, a)`` are written, and each anchor keeps its ``pairs.max_pairs_per_anchor`` partners with the
  highest ``s`` (ties: smaller ``other_item_id`` first), so the cap is applied per direction.
* **Geo-constrained pairs.** Each item is paired with ``pairs.geo_pairs_per_anchor`` random items
  outside its region: its county (qualified ``state|county``) at the paper's town level, its town
  (``state|county|town``) at district level (:func:`lgsid.prompts.location_level`), drawn by a hash-keyed bucket join (seeded,
  independent of Spark partitioning, no cross join). ``cooccur_users`` is null for them.

``distance_km`` (haversine between the two items) is recorded for both kinds.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import TYPE_CHECKING, Iterable, Mapping

from lgsid.geo import haversine_km_col
from lgsid.spark.joins import item_side

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

    from lgsid.config import PairsConfig


def capped_history(clicks: Iterable[tuple[str, object]], cap: int) -> list[str]:
    """A user's most recent ``cap`` distinct items from ``(item_id, ts)`` clicks.

    An item's recency is its latest click; ties are broken by ``item_id`` (ascending), the same
    order the Spark job uses.
    """
    latest: dict[str, object] = {}
    for item, ts in clicks:
        if item not in latest or ts > latest[item]:  # type: ignore[operator]
            latest[item] = ts
    order = sorted(latest.items(), key=lambda kv: kv[0])
    order.sort(key=lambda kv: kv[1], reverse=True)  # stable: ties keep item_id order
    return [i for i, _ in order[:cap]]


def coclick_scores(histories: Mapping[str, Iterable[tuple[str, object]]], cap: int, s_th: int = 0) -> dict[tuple[str, str], int]:
    """Co-click pairs and their scores (Eq. 5, arXiv 2511.14221): the pairs with ``s(a, b) > s_th``.

    ``s(a, b) = |{u : a in H_u and b in H_u}|`` where ``H_u`` is user u's capped history
    (:func:`capped_history`); a pair enters D_gc when ``s(a, b) > s_th`` (``pairs.s_th``). The paper
    does not cap histories; we cap them so the pair count per user is at most ``cap·(cap-1)/2``.
    The Spark job computes the same (:func:`coclick_scores_df`).

    Example (cap 3): users with histories {a, b, c}, {a, b, d}, {a, b, c} give s(a,b)=3,
    s(a,c)=s(b,c)=2, s(a,d)=s(b,d)=1; ``s_th=1`` keeps (a,b), (a,c), (b,c).

    Args:
        histories: user_id -> iterable of (item_id, ts) clicks.
        cap: Most recent distinct items per user that form pairs.
        s_th: Score threshold; a pair is kept when its score is strictly greater.

    Returns:
        {(a, b): s} with ``a < b``, for the pairs with ``s > s_th``.
    """
    s: Counter = Counter()
    for clicks in histories.values():
        s.update(combinations(sorted(capped_history(clicks, cap)), 2))
    return {pair: n for pair, n in s.items() if n > s_th}


def capped_histories_df(interactions_df: "DataFrame", cap: int) -> "DataFrame":
    """Interactions -> ``user_id, item_id``: each user's ``cap`` most recent distinct items (:func:`capped_history` in Spark)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    latest = interactions_df.groupBy("user_id", "item_id").agg(F.max("ts").alias("ts"))
    wu = Window.partitionBy("user_id").orderBy(F.col("ts").desc(), F.col("item_id"))
    return latest.withColumn("_r", F.row_number().over(wu)).filter(F.col("_r") <= cap).select("user_id", "item_id")


def history_cap_cuts(interactions_df: "DataFrame", cap: int) -> "DataFrame":
    """What the per-user history cap cuts (pure, lazy): one row of counts for the ``pairs`` summary.

    With ``n_u`` = user u's distinct items and ``m_u = min(n_u, cap)``:

    * ``users_over_history_cap`` = ``|{u : n_u > cap}|``;
    * ``history_items_cut`` = ``Σ_u (n_u − m_u)``, the (user, item) rows left out of the histories;
    * ``user_pairs_cut`` = ``Σ_u [n_u(n_u−1)/2 − m_u(m_u−1)/2]``, the per-user item pairs the
      co-click self-join (Eq. 5) does not form: without the cap a user with ``n_u`` items adds
      ``n_u(n_u−1)/2`` rows to it.

    Example (cap 3): a user with 5 distinct items and one with 2 give 1 user over the cap, 2 items
    and 10 − 3 = 7 pairs cut.

    Returns:
        One row: users_over_history_cap, history_items_cut, user_pairs_cut (LONG; 0 when nothing is cut).
    """
    from pyspark.sql import functions as F

    n = interactions_df.groupBy("user_id").agg(F.countDistinct("item_id").cast("long").alias("n"))
    m = F.least(F.col("n"), F.lit(cap).cast("long"))
    return n.agg(
        F.count_if(F.col("n") > cap).cast("long").alias("users_over_history_cap"),
        F.coalesce(F.sum(F.col("n") - m), F.lit(0)).cast("long").alias("history_items_cut"),
        F.coalesce(F.sum(F.col("n") * (F.col("n") - 1) / 2 - m * (m - 1) / 2), F.lit(0)).cast("long").alias("user_pairs_cut"),
    )


def coclick_scores_df(histories_df: "DataFrame", s_th: int) -> "DataFrame":
    """Eq. 5 in Spark: capped histories ``user_id, item_id`` -> ``x, y, cooccur_users`` with ``x < y`` and ``s > s_th``.

    The same pairs and scores as :func:`coclick_scores`: a self-join of the histories on
    ``user_id`` (each unordered pair once), counted per pair, then the threshold.
    """
    from pyspark.sql import functions as F

    a, b = histories_df.alias("a"), histories_df.alias("b")
    return (
        a.join(b, (F.col("a.user_id") == F.col("b.user_id")) & (F.col("a.item_id") < F.col("b.item_id")))
        .groupBy(F.col("a.item_id").alias("x"), F.col("b.item_id").alias("y"))
        .agg(F.count(F.lit(1)).cast("int").alias("cooccur_users"))
        .filter(F.col("cooccur_users") > s_th)
    )


def coclick_pairs(interactions_df: "DataFrame", cfg: "PairsConfig") -> "DataFrame":
    """Interactions -> co-click pairs ``anchor_item_id, other_item_id, cooccur_users`` (both directions).

    Eq. 5 (:func:`coclick_scores_df` over :func:`capped_histories_df`), written in both directions,
    then each anchor's ``max_pairs_per_anchor`` partners with the highest ``s`` (ties: smaller
    ``other_item_id``).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pairs = coclick_scores_df(capped_histories_df(interactions_df, cfg.history_cap), cfg.s_th)
    both = pairs.select(F.col("x").alias("anchor_item_id"), F.col("y").alias("other_item_id"), "cooccur_users").unionByName(
        pairs.select(F.col("y").alias("anchor_item_id"), F.col("x").alias("other_item_id"), "cooccur_users")
    )
    wa = Window.partitionBy("anchor_item_id").orderBy(F.col("cooccur_users").desc(), F.col("other_item_id"))
    return both.withColumn("_r", F.row_number().over(wa)).filter(F.col("_r") <= cfg.max_pairs_per_anchor).drop("_r")


#: Bytes of one row of an item-side join here (an item id, two numbers or a region key) on the driver, for :func:`lgsid.spark.joins.item_side`.
ITEM_ROW_BYTES = 120


def geo_constrained_pairs(items_df: "DataFrame", cfg: "PairsConfig", level: str = "town") -> "DataFrame":
    """Items -> ``anchor_item_id, other_item_id`` with the other item outside the anchor's region.

    The region is the county at ``level="town"`` and the town at ``level="district"``
    (:func:`lgsid.prompts.location_keys`); below, "county" reads "region".

    Sampling: items are hashed into ``max(1, N // 2)`` buckets by ``xxhash64(seed, item_id)``; each
    anchor draws ``4 · geo_pairs_per_anchor`` buckets by ``xxhash64(seed, anchor, draw)``, joins the
    items there, drops those in its own county and keeps the first ``geo_pairs_per_anchor`` distinct
    items in ``xxhash64(seed, anchor, other)`` order. An anchor can get fewer when its county holds
    most of the catalogue.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from lgsid.prompts import location_keys

    n = cfg.geo_pairs_per_anchor
    keyed = location_keys(items_df.withColumn("location_text", F.lit("")), level)
    it = keyed.select("item_id", F.col("region_key").alias("county_key"))
    n_items = it.count()
    n_buckets = max(1, n_items // 2)
    seed = F.lit(cfg.seed)
    pool = it.select(
        F.col("item_id").alias("other_item_id"), F.col("county_key").alias("o_county"),
        F.pmod(F.xxhash64(seed, F.col("item_id")), F.lit(n_buckets)).alias("bucket"),
    )
    draws = it.select(
        F.col("item_id").alias("anchor_item_id"), "county_key", F.explode(F.sequence(F.lit(1), F.lit(4 * n))).alias("draw")
    ).withColumn("bucket", F.pmod(F.xxhash64(seed, F.col("anchor_item_id"), F.col("draw")), F.lit(n_buckets)))
    cand = (
        draws.join(item_side(items_df.sparkSession, pool, n_items, ITEM_ROW_BYTES), "bucket")
        .filter(F.col("o_county") != F.col("county_key"))
        .select("anchor_item_id", "other_item_id")
        .distinct()
        .withColumn("_o", F.xxhash64(seed, F.col("anchor_item_id"), F.col("other_item_id")))
    )
    w = Window.partitionBy("anchor_item_id").orderBy("_o", "other_item_id")
    return cand.withColumn("_r", F.row_number().over(w)).filter(F.col("_r") <= n).select("anchor_item_id", "other_item_id")


def build_pairs(items_df: "DataFrame", interactions_df: "DataFrame", cfg: "PairsConfig", level: str = "town") -> "DataFrame":
    """Items + interactions -> D_mix in the gdpo_pairs schema (pure transform; ``level`` as in :func:`geo_constrained_pairs`)."""
    from pyspark.sql import functions as F

    cc = coclick_pairs(interactions_df, cfg).withColumn("pair_type", F.lit("co_click"))
    parts = cc
    if cfg.geo_pairs_per_anchor > 0:
        geo = geo_constrained_pairs(items_df, cfg, level).withColumn("pair_type", F.lit("geo_constrained")).withColumn(
            "cooccur_users", F.lit(None).cast("int")
        )
        parts = cc.unionByName(geo)
    loc = item_side(items_df.sparkSession, items_df.select("item_id", "lat", "lon"), items_df.count(), ITEM_ROW_BYTES)
    la = loc.select(F.col("item_id").alias("anchor_item_id"), F.col("lat").alias("a_lat"), F.col("lon").alias("a_lon"))
    lb = loc.select(F.col("item_id").alias("other_item_id"), F.col("lat").alias("b_lat"), F.col("lon").alias("b_lon"))
    return (
        parts.join(la, "anchor_item_id", "left")
        .join(lb, "other_item_id", "left")
        .select(
            "anchor_item_id", "other_item_id", "pair_type", "cooccur_users",
            haversine_km_col(F.col("a_lat"), F.col("a_lon"), F.col("b_lat"), F.col("b_lon")).alias("distance_km"),
        )
    )
