"""Co-click pairs against a brute-force count, geo-constrained pairs, rerun idempotence."""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from lgsid.config import load_config, replace
from lgsid.geo import haversine_km
from lgsid.pairs import capped_histories_df, coclick_pairs, coclick_scores, coclick_scores_df, geo_constrained_pairs, history_cap_cuts
from lgsid.steps.pairs import run

pytestmark = pytest.mark.spark

ITEMS_DDL = (
    "item_id string, name string, brand string, category_l1 string, category_l2 string, price double, "
    "lat double, lon double, state string, county string, town string, address string, source string"
)



def toy_rows():
    base = datetime(2024, 1, 1)
    toy = {
        "u1": [("a", 1), ("b", 2), ("c", 3)],
        "u2": [("a", 1), ("b", 2), ("d", 3), ("a", 4)],
        "u3": [("e", 1), ("a", 2), ("b", 3), ("c", 4)],
        "u4": [("z", 1), ("y", 1), ("x", 1), ("w", 1)],
        "u5": [("c", 1), ("d", 2), ("c", 3)],
    }
    hist = {u: [(i, base + timedelta(minutes=m)) for i, m in cl] for u, cl in toy.items()}
    rows = [(u, i, ts) for u, cl in hist.items() for i, ts in cl]
    return hist, rows


def _items(ids, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        dict(
            item_id=ids, name=ids, brand=None, category_l1="Food", category_l2="BBQ", price=10.0,
            lat=40 + rng.uniform(-3, 3, len(ids)), lon=-100 + rng.uniform(-3, 3, len(ids)),
            state=[["A", "B"][i % 2] for i in range(len(ids))], county=[f"C{i % 3}" for i in range(len(ids))],
            town=[f"T{i}" for i in range(len(ids))], address=None, source="test",
        )
    )


def _directed(s: dict) -> dict:
    """{(a, b): s} with a < b -> both directions."""
    return {**s, **{(b, a): v for (a, b), v in s.items()}}


def test_coclick_toy_equals_brute_force(spark):
    hist, rows = toy_rows()
    df = spark.createDataFrame(rows, "user_id string, item_id string, ts timestamp")
    for s_th in (0, 1):
        cfg = replace(load_config(None), pairs={"s_th": s_th, "history_cap": 3, "max_pairs_per_anchor": 100}).pairs
        got = {(r.anchor_item_id, r.other_item_id): r.cooccur_users for r in coclick_pairs(df, cfg).collect()}
        assert got == _directed(coclick_scores(hist, 3, s_th))
    # hand-computed: s(a,b)=3, s(a,c)=s(b,c)=2 survive s_th=1
    assert set(_directed(coclick_scores(hist, 3, 1))) == {("a", "b"), ("b", "a"), ("a", "c"), ("c", "a"), ("b", "c"), ("c", "b")}
    # the Spark Eq. 5 alone (one direction, x < y) equals coclick_scores
    hist_df = capped_histories_df(df, 3)
    assert {(r.x, r.y): r.cooccur_users for r in coclick_scores_df(hist_df, 1).collect()} == coclick_scores(hist, 3, 1)
    # top-1 partner per anchor: highest s, ties by other_item_id
    cfg = replace(load_config(None), pairs={"s_th": 0, "history_cap": 3, "max_pairs_per_anchor": 1}).pairs
    top = {r.anchor_item_id: r.other_item_id for r in coclick_pairs(df, cfg).collect()}
    assert top["a"] == "b" and top["c"] == "a" and top["d"] == "a" and top["w"] == "x"


def test_coclick_random_histories_equal_brute_force(spark):
    rng = np.random.default_rng(5)
    base = datetime(2024, 1, 1)
    hist = {
        f"u{u}": [(f"i{int(rng.integers(0, 25)):02d}", base + timedelta(minutes=int(rng.integers(0, 50)))) for _ in range(int(rng.integers(1, 12)))]
        for u in range(40)
    }
    rows = [(u, i, ts) for u, cl in hist.items() for i, ts in cl]
    df = spark.createDataFrame(rows, "user_id string, item_id string, ts timestamp").dropDuplicates()
    cfg = replace(load_config(None), pairs={"s_th": 1, "history_cap": 4, "max_pairs_per_anchor": 1000}).pairs
    got = {(r.anchor_item_id, r.other_item_id): r.cooccur_users for r in coclick_pairs(df, cfg).collect()}
    assert got and got == _directed(coclick_scores(hist, 4, 1))


def test_build_pairs_geo_and_run_idempotent(spark, cfg, store):
    hist, rows = toy_rows()
    ids = sorted({i for _, i, _ in rows} | {f"x{j}" for j in range(12)})
    items = _items(ids)
    cfg = replace(cfg, pairs={"s_th": 0, "history_cap": 3, "geo_pairs_per_anchor": 2}, prompts={"location_level": "town"})
    store.write(spark.createDataFrame(items, ITEMS_DDL), "items")
    store.write(spark.createDataFrame(rows, "user_id string, item_id string, ts timestamp"), "interactions")
    s1 = run(spark, cfg)
    t1 = store.to_pandas("gdpo_pairs").sort_values(["anchor_item_id", "other_item_id", "pair_type"]).reset_index(drop=True)
    s2 = run(spark, cfg)
    t2 = store.to_pandas("gdpo_pairs").sort_values(["anchor_item_id", "other_item_id", "pair_type"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(t1, t2)
    assert s2.tables[0].version == s1.tables[0].version + 1

    pos = items.set_index("item_id")
    np.testing.assert_allclose(
        t1.distance_km,
        haversine_km(pos.loc[t1.anchor_item_id].lat.to_numpy(), pos.loc[t1.anchor_item_id].lon.to_numpy(),
                     pos.loc[t1.other_item_id].lat.to_numpy(), pos.loc[t1.other_item_id].lon.to_numpy()),
    )
    geo = t1[t1.pair_type == "geo_constrained"]
    assert geo.cooccur_users.isna().all()
    county = (pos.state + "|" + pos.county).to_dict()
    assert all(county[a] != county[b] for a, b in zip(geo.anchor_item_id, geo.other_item_id))
    per = geo.groupby("anchor_item_id").size()
    assert set(per.index) == set(ids) and (per == 2).all()
    cc = t1[t1.pair_type == "co_click"]
    assert {(a, b): int(s) for a, b, s in zip(cc.anchor_item_id, cc.other_item_id, cc.cooccur_users)} == _directed(coclick_scores(hist, 3, 0))
    assert s1.metrics["co_click_pairs"] == len(cc)
    # cap 3: u3 {e, a, b, c} and u4 {z, y, x, w} each lose one item and 6 - 3 = 3 pairs
    assert {k: s1.metrics[k] for k in ("users_over_history_cap", "history_items_cut", "user_pairs_cut")} == {
        "users_over_history_cap": 2, "history_items_cut": 2, "user_pairs_cut": 6}


def test_geo_pairs_in_a_one_county_city_lie_in_another_town(spark):
    from geodata import ITEM_COLS, city_items

    items = city_items(seed=1, per_town=8)
    df = spark.createDataFrame(items[ITEM_COLS], ITEMS_DDL)
    cfg = load_config(None).pairs
    assert geo_constrained_pairs(df, cfg, "town").count() == 0  # the paper's rule: no other county
    got = geo_constrained_pairs(df, cfg, "district").toPandas()
    town = items.set_index("item_id").town
    assert set(got.anchor_item_id) == set(items.item_id)
    assert (got.groupby("anchor_item_id").size() == cfg.geo_pairs_per_anchor).all()
    assert (town.loc[got.anchor_item_id].to_numpy() != town.loc[got.other_item_id].to_numpy()).all()


def test_one_heavy_user_is_bounded_by_the_history_cap_and_the_cut_is_counted(spark):
    """A user with 40 distinct items (and repeat clicks) adds cap(cap-1)/2 = 3 pairs to the join, not 780; the cut is counted."""
    base = datetime(2024, 1, 1)
    heavy = [("heavy", f"h{j:02d}", base + timedelta(minutes=j)) for j in range(40)]
    heavy += [("heavy", "h00", base + timedelta(minutes=100))]  # h00 clicked again last: most recent
    light = [("u1", "h39", base), ("u1", "h38", base + timedelta(minutes=1)), ("u2", "h01", base)]
    df = spark.createDataFrame(heavy + light, "user_id string, item_id string, ts timestamp")
    hist = {r["item_id"] for r in capped_histories_df(df, 3).where("user_id = 'heavy'").collect()}
    assert hist == {"h00", "h39", "h38"}
    joined = coclick_scores_df(capped_histories_df(df, 3), s_th=0)
    got = {(r.x, r.y): r.cooccur_users for r in joined.collect()}
    assert got == {("h00", "h38"): 1, ("h00", "h39"): 1, ("h38", "h39"): 2}
    cuts = history_cap_cuts(df, 3).first().asDict()
    assert cuts == {"users_over_history_cap": 1, "history_items_cut": 37, "user_pairs_cut": 40 * 39 // 2 - 3}
    assert history_cap_cuts(df, 50).first().asDict() == {"users_over_history_cap": 0, "history_items_cut": 0, "user_pairs_cut": 0}
