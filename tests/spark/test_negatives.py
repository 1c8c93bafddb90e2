"""Negatives + reward lists on a tiny catalogue, against a brute-force numpy computation."""

import numpy as np
import pytest

from lgsid.config import replace
from lgsid.geo import haversine_km, haversine_km_col
from lgsid.negatives import soft_labels
from lgsid.steps.negatives import run
from lgsid.prompts import combine_prompt

from geodata import ITEM_COLS, brute_force_near, tiny_items

pytestmark = pytest.mark.spark
ITEMS_DDL = (
    "item_id string, name string, brand string, category_l1 string, category_l2 string, price double, "
    "lat double, lon double, state string, county string, town string, address string, source string"
)


def _prompts_and_negatives(spark, w, items, **sections):
    """Write ``items`` under ``w``, run the prompts and negatives steps; returns (cfg, store, prompts summary, negatives summary)."""
    from lgsid.config import load_config
    from lgsid.steps.prompts import run as run_prompts
    from lgsid.storage import DeltaStore

    cfg = replace(load_config(None), storage={"root": str(w / "tables"), "staging_dir": str(w / "staging")}, **sections)
    store = DeltaStore(spark, cfg.storage)
    store.write(spark.createDataFrame(items[ITEM_COLS], ITEMS_DDL), "items")
    return cfg, store, run_prompts(spark, cfg), run(spark, cfg)


def _assert_near_sets(neg, bf):
    """Each anchor's near candidates are the brute-force ones (``bf``: anchor -> [(cand_item_id, km)]), nearest first."""
    for a, g in neg[neg.neg_kind == "near"].groupby("item_id"):
        g = g.sort_values("distance_km", kind="stable")
        assert list(g.cand_item_id) == [c for c, _ in bf[a]], a
        np.testing.assert_allclose(g.distance_km, [d for _, d in bf[a]], rtol=1e-9)


@pytest.fixture(scope="module")
def mined(spark, tmp_path_factory):
    """Run prompts + negatives twice on the same tiny catalogue; keep both results."""
    items = tiny_items(seed=3)
    cfg, store, _, s1 = _prompts_and_negatives(
        spark, tmp_path_factory.mktemp("neg"), items,
        negatives={"k": 6, "n_far": 2},
        prompts={"location_level": "town"},  # the paper's semantics (auto picks district for 14 towns)
    )
    neg1 = store.to_pandas("negatives").sort_values(["item_id", "rank"]).reset_index(drop=True)
    rl1 = store.to_pandas("reward_lists").sort_values("item_id").reset_index(drop=True)
    s2 = run(spark, cfg)
    neg2 = store.to_pandas("negatives").sort_values(["item_id", "rank"]).reset_index(drop=True)
    return dict(cfg=cfg, items=items, neg=neg1, neg2=neg2, rl=rl1, s1=s1, s2=s2, store=store)


def test_near_set_equals_brute_force(mined):
    cfg, neg = mined["cfg"], mined["neg"]
    need = cfg.negatives.k - cfg.negatives.n_far
    bf = brute_force_near(mined["items"], need)
    assert set(neg[neg.neg_kind == "near"].item_id) == set(mined["items"].item_id)
    _assert_near_sets(neg, bf)


def test_lists_sorted_ranked_distinct_and_mismatched(mined):
    cfg, neg, items = mined["cfg"], mined["neg"], mined["items"]
    K = cfg.negatives.k
    loc = items.set_index("item_id")
    for a, g in neg.groupby("item_id"):
        assert list(g["rank"]) == list(range(1, K + 1))
        assert (np.diff(g.distance_km) >= 0).all()
        keys = g.cand_state + "|" + g.cand_county + "|" + g.cand_town
        assert keys.is_unique  # at most one candidate per location
        own = f"{loc.at[a, 'state']}|{loc.at[a, 'county']}|{loc.at[a, 'town']}"
        assert own not in set(keys)
        far = g[g.neg_kind == "far"]
        assert len(far) == cfg.negatives.n_far
        assert ((far.cand_state + "|" + far.cand_county) != f"{loc.at[a, 'state']}|{loc.at[a, 'county']}").all()
        # distance_km is the haversine distance to the candidate item
        c = loc.loc[g.cand_item_id]
        np.testing.assert_allclose(g.distance_km, haversine_km(loc.at[a, "lat"], loc.at[a, "lon"], c.lat.to_numpy(), c.lon.to_numpy()), rtol=1e-9)
    # density-aware: the dense cluster's near negatives come from its neighbourhood, the sparse outliers' from far away
    near_km = neg[neg.neg_kind == "near"].groupby("item_id").distance_km.max()
    dense = near_km[[i for i in near_km.index if int(i[1:3]) < 11]]
    sparse = near_km[[i for i in near_km.index if int(i[1:3]) >= 11]]
    assert dense.median() < sparse.median()


def test_reward_lists(mined):
    cfg, neg, rl = mined["cfg"], mined["neg"], mined["rl"]
    K = cfg.negatives.k
    prompts = mined["store"].to_pandas("geo_prompts").set_index("item_id")
    assert len(rl) == len(prompts)
    for r in rl.itertuples():
        g = neg[neg.item_id == r.item_id]
        assert list(r.ranks) == list(range(K + 1))
        assert r.prompts[0] == prompts.at[r.item_id, "prompt"]
        assert list(r.prompts[1:]) == [combine_prompt(r.content_text, t, cfg.prompts) for t in g.cand_location_text]
        np.testing.assert_allclose(r.distance_km, [0.0, *g.distance_km])
        np.testing.assert_allclose(r.soft_labels, soft_labels(r.ranks, K))


def test_rerun_is_idempotent(mined):
    import pandas as pd

    pd.testing.assert_frame_equal(mined["neg"], mined["neg2"])
    assert mined["s2"].tables[0].version == mined["s1"].tables[0].version + 1
    assert mined["s2"].tables[0].rows == mined["s1"].tables[0].rows == len(mined["neg"])


def test_haversine_column_matches_numpy(spark):
    from pyspark.sql import functions as F

    pts = [(40.7128, -74.0060, 34.0522, -118.2437), (0.0, 0.0, 0.0, 180.0), (51.5, -0.12, 51.5, -0.12)]
    df = spark.createDataFrame(pts, "a double, b double, c double, d double")
    got = [r[0] for r in df.select(haversine_km_col(F.col("a"), F.col("b"), F.col("c"), F.col("d"))).collect()]
    np.testing.assert_allclose(got, [float(haversine_km(*p)) for p in pts], rtol=1e-12, atol=1e-9)


@pytest.fixture(scope="module")
def city(spark, tmp_path_factory):
    """prompts + negatives on a one-county, two-town city with the automatic location level."""
    from geodata import city_items

    items = city_items(seed=5)
    cfg, store, sp, s = _prompts_and_negatives(
        spark, tmp_path_factory.mktemp("city"), items, negatives={"k": 6, "n_far": 2}
    )
    prompts = store.to_pandas("geo_prompts").set_index("item_id")
    neg = store.to_pandas("negatives").sort_values(["item_id", "rank"]).reset_index(drop=True)
    return dict(cfg=cfg, items=items, prompts=prompts, neg=neg, s=s, sp=sp)


def test_city_uses_districts_and_fills_every_list(city):
    """One county, 2 towns: at town level each list could hold 1 candidate and no far one."""
    cfg, neg, prompts = city["cfg"], city["neg"], city["prompts"]
    K = cfg.negatives.k
    assert city["sp"].metrics["location_level"] == city["s"].metrics["location_level"] == "district"
    assert city["sp"].metrics["locations"] > 2 * (K + 1)
    assert city["s"].metrics["full_list_share"] == 1.0 and city["s"].metrics["far_negatives"] == len(city["items"]) * cfg.negatives.n_far
    for a, g in neg.groupby("item_id"):
        assert list(g["rank"]) == list(range(1, K + 1))
        assert g.cand_location_text.is_unique and prompts.at[a, "location_text"] not in set(g.cand_location_text)
        far = g[g.neg_kind == "far"]
        assert len(far) == cfg.negatives.n_far and (far.cand_town != prompts.at[a, "town"]).all()  # far = another town


def test_city_near_set_equals_brute_force_over_districts(city):
    cfg, neg, prompts = city["cfg"], city["neg"], city["prompts"]
    need = cfg.negatives.k - cfg.negatives.n_far
    p = prompts.reset_index()
    p = p.assign(loc_key=p.state + "|" + p.county + "|" + p.town + "|" + p.location_text)
    bf = brute_force_near(p, need)
    _assert_near_sets(neg, bf)


def test_city_district_text_is_the_pure_formatter_with_the_centroid_origin(city):
    """Towns that are not GeoNames names are measured from the mean position of their items."""
    from lgsid.prompts import district_names, format_location

    items, prompts, cfg = city["items"], city["prompts"], city["cfg"]
    cen = items.groupby("town")[["lat", "lon"]].transform("mean")
    names = district_names(items.town, items.lat, items.lon, cen.lat, cen.lon, cfg.prompts.district_resolution)
    want = [format_location({**r, "district": d}, cfg.prompts, "district") for r, d in zip(items.to_dict("records"), names)]
    assert list(prompts.loc[items.item_id, "location_text"]) == want
    assert want[0].startswith("located in Alphaville district ") and want[0].endswith(", Testcounty, Arizona")
