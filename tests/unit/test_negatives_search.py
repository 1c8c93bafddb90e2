"""The executor-side negative search (no Spark): exact near sets, far draws, ranking, against brute force."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lgsid.config import NegativesConfig
from lgsid.geo import haversine_km
from lgsid.negatives import TownIndex, far_draws, negatives_table, search_near


def _towns(n_towns: int, seed: int) -> pd.DataFrame:
    """Town representatives: a dense metro, a ring of suburbs and a sparse background (4 counties per state)."""
    rng = np.random.default_rng(seed)
    lat = np.concatenate([40 + rng.normal(0, 0.05, n_towns // 2), 40 + rng.uniform(-3, 3, n_towns - n_towns // 2)])
    lon = np.concatenate([-100 + rng.normal(0, 0.06, n_towns // 2), -100 + rng.uniform(-4, 4, n_towns - n_towns // 2)])
    ids = [f"r{i:04d}" for i in rng.permutation(n_towns)]  # ids not in position order
    state = [f"S{i % 3}" for i in range(n_towns)]
    county = [f"C{i % 4}" for i in range(n_towns)]
    town = [f"T{i}" for i in range(n_towns)]
    df = pd.DataFrame({"rep_id": ids, "rep_lat": lat, "rep_lon": lon, "state": state, "county": county, "town": town})
    df["loc_key"] = df.state + "|" + df.county + "|" + df.town
    df["county_key"] = df.state + "|" + df.county
    df["location_text"] = "in " + df.town
    return df


def _brute(reps: pd.DataFrame, lat, lon, own_key, need, min_km=0.0):
    out = []
    for a, b, key in zip(lat, lon, own_key):
        d = haversine_km(a, b, reps.rep_lat.to_numpy(), reps.rep_lon.to_numpy())
        keep = (reps.loc_key.to_numpy() != key) & (d >= min_km)
        out.append(sorted(zip(d[keep], reps.rep_id[keep]), key=lambda t: (t[0], t[1]))[:need])
    return out


@pytest.mark.parametrize("n_towns,min_km", [(300, 0.0), (300, 2.0), (8, 0.0), (40, 25.0)])
def test_search_near_equals_brute_force(n_towns, min_km):
    reps = _towns(n_towns, seed=n_towns)
    cfg = NegativesConfig(k=9, n_far=2, min_near_distance_km=min_km)
    idx = TownIndex(reps)
    rng = np.random.default_rng(1)
    # anchors: at towns (own town excluded) and in between
    pick = rng.integers(0, len(reps), 250)
    lat = reps.rep_lat.to_numpy()[pick] + rng.normal(0, 0.01, 250)
    lon = reps.rep_lon.to_numpy()[pick] + rng.normal(0, 0.01, 250)
    own_key = reps.loc_key.to_numpy()[pick]
    own = idx.lookup(own_key, "loc_key")
    need = cfg.k - cfg.n_far
    pos, dist = search_near(idx, lat, lon, own, need, min_km)
    bf = _brute(reps, lat, lon, own_key, need, min_km)
    for i in range(250):
        got = [(float(d), idx.rep_id[p]) for p, d in zip(pos[i], dist[i]) if p >= 0]
        assert [c for _, c in got] == [c for _, c in bf[i]], i
        np.testing.assert_allclose([d for d, _ in got], [d for d, _ in bf[i]], rtol=1e-12)
    # fewer towns than need: every other town, then -1 / inf
    if n_towns - 1 < need:
        assert ((pos >= 0).sum(axis=1) <= n_towns - 1).all() and np.isinf(dist[pos < 0]).all()


def test_exact_ties_break_by_id():
    # 12 towns at exactly the same point: the nearest 3 must be the 3 smallest ids
    reps = _towns(12, seed=0).assign(rep_lat=41.0, rep_lon=-90.0)
    idx = TownIndex(reps)
    own = idx.lookup([reps.loc_key[0]], "loc_key")
    pos, dist = search_near(idx, np.array([41.01]), np.array([-90.0]), own, 3)
    expect = sorted(set(reps.rep_id) - {reps.rep_id[0]})[:3]
    assert [idx.rep_id[p] for p in pos[0]] == expect
    assert np.ptp(dist[0]) == 0.0


def test_far_draws_rules_and_determinism():
    reps = _towns(40, seed=2)
    idx = TownIndex(reps)
    n = 200
    rng = np.random.default_rng(0)
    a_hash = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64)
    a_county = rng.integers(0, idx.county.max() + 1, n)
    exclude = rng.integers(0, len(idx), (n, 5))
    want = np.full(n, 3)
    want[:10] = 0
    got = far_draws(idx, a_hash, a_county, exclude, want, seed=11, draws_per=4)
    assert got.shape == (n, 3)
    assert (got[:10] == -1).all()
    for i in range(10, n):
        g = got[i]
        assert (g >= 0).all() and len(set(g)) == 3
        assert (idx.county[g] != a_county[i]).all()
        assert not set(g) & set(exclude[i])
    # same anchors in another order and batch: same draws (independent of Spark partitioning)
    perm = rng.permutation(n)
    again = far_draws(idx, a_hash[perm], a_county[perm], exclude[perm], want[perm], seed=11, draws_per=4)
    np.testing.assert_array_equal(again, got[perm])
    assert not np.array_equal(far_draws(idx, a_hash, a_county, exclude, want, seed=12, draws_per=4)[10:], got[10:])
    # too few eligible towns: an anchor keeps what exists (every other-county town), no repeats
    small = TownIndex(_towns(6, seed=3))
    county0 = small.county[0]
    eligible = set(np.flatnonzero(small.county != county0))
    g = far_draws(small, a_hash[:1], np.array([county0]), np.full((1, 1), -1), np.array([len(eligible) + 2]), seed=1, draws_per=2)[0]
    assert set(g[g >= 0]) == eligible and (g == -1).sum() == 2


def test_negatives_table_ranks_near_and_far_together():
    reps = _towns(120, seed=4)
    cfg = NegativesConfig(k=6, n_far=2)
    idx = TownIndex(reps)
    anchors = reps.iloc[:30].rename(columns={"rep_id": "item_id", "rep_lat": "lat", "rep_lon": "lon"})
    anchors = anchors.assign(a_hash=np.arange(30, dtype=np.int64) * 7919)
    out = negatives_table(idx, pa.Table.from_pandas(anchors, preserve_index=False), cfg).to_pandas()
    assert len(out) == 30 * cfg.k
    for a, g in out.groupby("item_id"):
        assert g["rank"].tolist() == list(range(1, cfg.k + 1))
        assert (np.diff(g.distance_km.to_numpy()) >= 0).all()
        assert (g.neg_kind == "far").sum() == 2 and g.cand_item_id.is_unique
        assert a not in set(g.cand_item_id)  # the anchor's own town (it is its representative here)
