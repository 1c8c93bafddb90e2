"""Random reward lists (``gdpo.use_density_negatives`` off) never read the catalogue to the driver."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.spark


def _prompts(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    town = rng.integers(0, 6, n)
    return pd.DataFrame({
        "item_id": [f"p{i:04d}" for i in range(n)], "content_text": [f"shop {i % 7}" for i in range(n)],
        "location_text": [f"block {i}, Town{t}" for i, t in enumerate(town)],  # one location per item
        "prompt": [f"shop {i % 7} in block {i}, Town{t}" for i, t in enumerate(town)],
        "state": "S", "county": "C", "town": [f"Town{t}" for t in town],
        "lat": 30 + town * 0.1 + rng.normal(0, 0.01, n), "lon": -100 + rng.normal(0, 0.01, n),
    })


def test_random_lists_come_from_a_hash_pool_with_the_same_anchors(spark, store, cfg, monkeypatch):
    """Above the pool, the anchors are the same max_anchors items the whole catalogue would give, and every
    candidate location comes from the pool (the max_anchors+pool smallest hashes); below it, the whole table."""
    from pyspark.sql import functions as F

    import lgsid.reward as reward
    from lgsid.config import replace

    n, anchors, pool = 300, 20, 60
    p = _prompts(n)
    store.write(spark.createDataFrame(p), "geo_prompts")
    cfg = replace(cfg, gdpo={"use_density_negatives": False}, reward={"max_anchors": anchors})
    h = (spark.createDataFrame(p[["item_id"]]).select("item_id", F.xxhash64(F.col("item_id"), F.lit(cfg.reward.seed)).alias("h"))
         .toPandas().sort_values(["h", "item_id"]))
    want_anchors = set(h["item_id"].head(anchors))

    full = reward.load_lists(spark, cfg).toPandas()  # pool (50,000) > n: the whole table
    assert set(full["item_id"]) == want_anchors

    monkeypatch.setattr(reward, "RANDOM_LIST_POOL", pool)
    got = reward.load_lists(spark, cfg).toPandas()
    assert set(got["item_id"]) == want_anchors
    pool_prompts = p.set_index("item_id").loc[list(h["item_id"].head(pool))]
    for _, row in got.iterrows():
        content = p.set_index("item_id").loc[row["item_id"], "content_text"]
        allowed = {reward.combine_prompt(content, loc, cfg.prompts) for loc in pool_prompts["location_text"]}
        assert len(row["prompts"]) == cfg.negatives.k + 1 and set(row["prompts"][1:]) <= allowed
