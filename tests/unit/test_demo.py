"""Demo generator: determinism, real ambiguous geography, and the behavioural model's distance decay."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lgsid.config import load_config, replace
from lgsid.errors import ConfigError
from lgsid.geo import haversine_km
from lgsid.sources.demo import TAXONOMY, behaviour_weights, generate
from lgsid.tables import INTERACTIONS, ITEMS, USERS

def _columns(schema: str) -> list[str]:
    """Column names of a Spark DDL string (no JVM needed): split on top-level commas."""
    out, depth, cur = [], 0, ""
    for ch in schema:
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "," and depth == 0:
            out.append(cur.split()[0])
            cur = ""
        else:
            cur += ch
    return out + [cur.split()[0]]


SMALL = {"n_items": 600, "n_users": 200, "n_interactions": 4000, "n_towns": 80}


@pytest.fixture(scope="module")
def demo_cfg():
    return replace(load_config(None), demo=SMALL).demo


@pytest.fixture(scope="module")
def data(demo_cfg):
    return generate(demo_cfg)


def test_same_seed_same_output_different_seed_differs(demo_cfg, data):
    again = generate(demo_cfg)
    for a, b in ((data.items, again.items), (data.users, again.users), (data.interactions, again.interactions)):
        pd.testing.assert_frame_equal(a, b)
    other = generate(replace(load_config(None), demo={**SMALL, "seed": demo_cfg.seed + 1}).demo)
    assert not other.items[["lat", "lon"]].equals(data.items[["lat", "lon"]])
    assert not other.interactions.equals(data.interactions)


def test_columns_match_the_catalogue_and_keys_are_unique(data):
    for df, ts in ((data.items, ITEMS), (data.users, USERS), (data.interactions, INTERACTIONS)):
        assert list(df.columns) == _columns(ts.schema)
        assert not df.duplicated(list(ts.primary_key)).any()
        assert df[[c for c in ts.not_null]].notna().all().all()
    assert len(data.items) == SMALL["n_items"] and len(data.users) == SMALL["n_users"]
    assert len(data.interactions) == SMALL["n_interactions"]  # (user, item, second) collisions are negligible here
    assert data.items["lat"].between(-90, 90).all() and data.items["lon"].between(-180, 180).all()
    assert (data.items["price"] > 0).all()
    assert set(data.interactions["item_id"]) <= set(data.items["item_id"])
    assert set(data.interactions["user_id"]) <= set(data.users["user_id"])
    assert str(data.interactions["ts"].dtype) == "datetime64[ns, UTC]"


def test_ambiguous_town_names_span_states(data):
    towns = data.items[["state", "county", "town"]].drop_duplicates()
    per_name = towns.groupby("town")["state"].nunique()
    assert per_name.get("Springfield", 0) >= 2 and per_name.get("Portland", 0) >= 2
    # Springfield, Illinois sits in Sangamon County (GeoNames admin2)
    sp = towns[(towns.town == "Springfield") & (towns.state == "Illinois")]
    if len(sp):
        assert sp["county"].iloc[0] == "Sangamon County"
    assert data.items["state"].nunique() >= 40  # national scale: every state gets a town first


def test_taxonomy_chains_and_prices(data):
    assert len({t[1] for t in TAXONOMY}) >= 40 and {"BBQ", "Hot Pot", "Nail Salon", "Cinema"} <= {t[1] for t in TAXONOMY}
    chains = data.items.groupby("brand")["state"].nunique()
    assert chains.max() >= 5  # a chain spans many states
    assert (data.items.groupby("brand").size() == 1).sum() > 0  # independents
    # category-dependent prices: hotels cost more than coffee
    med = data.items.groupby("category_l2")["price"].median()
    assert med.get("Hotel", 1e9) > med.get("Coffee Shop", 0)
    # each chain sells one leaf category
    assert (data.items[data.items.brand.isin(chains[chains >= 5].index)].groupby("brand")["category_l2"].nunique() == 1).all()


def test_interactions_are_much_closer_than_random(data):
    m = data.interactions.merge(data.users, on="user_id").merge(data.items, on="item_id")
    d_click = haversine_km(m.home_lat.to_numpy(), m.home_lon.to_numpy(), m.lat.to_numpy(), m.lon.to_numpy())
    rng = np.random.default_rng(0)
    u = rng.integers(0, len(data.users), 5000)
    i = rng.integers(0, len(data.items), 5000)
    d_rand = haversine_km(data.users.home_lat.to_numpy()[u], data.users.home_lon.to_numpy()[u], data.items.lat.to_numpy()[i], data.items.lon.to_numpy()[i])
    assert np.median(d_click) < 0.1 * np.median(d_rand)
    # the travel share shows up as a tail of long trips (default travel_share=0.05)
    assert 0.01 < np.mean(d_click > 300) < 0.15


def test_travel_share_zero_keeps_users_local(demo_cfg):
    d = generate(replace(load_config(None), demo={**SMALL, "n_interactions": 1500, "travel_share": 0.0}).demo)
    m = d.interactions.merge(d.users, on="user_id").merge(d.items, on="item_id")
    dist = haversine_km(m.home_lat.to_numpy(), m.home_lon.to_numpy(), m.lat.to_numpy(), m.lon.to_numpy())
    assert np.quantile(dist, 0.95) < 400


def test_states_filter_and_unknown_state():
    d = generate(replace(load_config(None), demo={"n_items": 120, "n_users": 30, "n_interactions": 200, "n_towns": 25, "states": ["Oregon", "Maine"]}).demo)
    assert set(d.items["state"]) == {"Oregon", "Maine"}
    with pytest.raises(ConfigError, match="demo.states.*Oregonn"):
        generate(replace(load_config(None), demo={"states": ["Oregonn"]}).demo)


def test_bad_demo_config_names_the_key():
    with pytest.raises(ConfigError, match="demo.start_date"):
        replace(load_config(None), demo={"start_date": "Jan 1"})


def test_behaviour_weights_by_hand():
    """w_i = exp(-d/d0) · theta[cat] · pop on the support, 0 off it (two items on the equator, 1° = 111.195 km)."""
    theta = np.array([0.25, 0.75])
    w = behaviour_weights(0.0, 0.0, theta, np.array([True, True, False]), np.zeros(3), np.array([0.0, 1.0, 0.0]),
                          np.array([1, 0, 1]), np.array([2.0, 4.0, 9.0]), 111.195)
    np.testing.assert_allclose(w, [0.75 * 2.0, np.exp(-1.0) * 0.25 * 4.0, 0.0], rtol=1e-4)


def test_latents_explain_the_interactions():
    """Without travel, every interaction lies on its user's support, and the latents line up with the tables' rows."""
    d = generate(replace(load_config(None), demo={**SMALL, "travel_share": 0.0}).demo)
    lt = d.latents
    assert len(lt.popularity) == len(lt.category) == len(lt.item_town) == len(d.items)
    assert lt.theta.shape == (len(d.users), len(TAXONOMY)) and np.allclose(lt.theta.sum(axis=1), 1.0)
    np.testing.assert_array_equal(d.towns["town"].to_numpy()[lt.item_town], d.items["town"].to_numpy())
    np.testing.assert_array_equal(d.towns["town"].to_numpy()[lt.home_town], d.users["town"].to_numpy())
    u = d.interactions["user_id"].map({x: j for j, x in enumerate(d.users["user_id"])}).to_numpy()
    i = d.interactions["item_id"].map({x: j for j, x in enumerate(d.items["item_id"])}).to_numpy()
    assert (lt.neighbours[lt.home_town[u]] == lt.item_town[i][:, None]).any(axis=1).all()
