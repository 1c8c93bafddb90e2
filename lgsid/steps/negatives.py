"""Step ``negatives``: ``geo_prompts`` -> ``negatives`` and ``reward_lists`` (Eq. 1, 3; :mod:`lgsid.negatives`)."""

from __future__ import annotations

from lgsid.config import LGSIDConfig
from lgsid.negatives import build_reward_lists, mine_negatives
from lgsid.prompts import location_level
from lgsid.steps.summary import StepSummary


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``negatives``: read ``geo_prompts``, write ``negatives`` and ``reward_lists`` (one commit each)."""
    from pyspark.sql import functions as F

    from lgsid.storage import DeltaStore

    from lgsid.spark.progress import spark_progress


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
    }
    return StepSummary("negatives", tables=[r1, r2], metrics=metrics)
