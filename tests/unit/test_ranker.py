"""The LambdaMART ranker section: its SID features on hand-computed cases, features against a naive loop, the section end to end."""

import math
import os

import numpy as np
import pandas as pd
import pytest

from lgsid.evaluate import ranker as rk


def test_transition_logp_hand_computed():
    seqs = [np.array([0, 1, 2]), np.array([1, 2])]
    prefix = np.array([0, 0, 1])  # items 0, 1 in prefix 0; item 2 in prefix 1
    stats = rk.prefix_transitions(seqs, prefix)  # n_00 = 1, n_01 = 2, n_0 = 3, n_1 = 0; visits p0 3, p1 2
    np.testing.assert_array_equal(stats[0], [0 * 2 + 0, 0 * 2 + 1])
    np.testing.assert_array_equal(stats[1], [1, 2])
    np.testing.assert_allclose(stats[2], [[3, 0], [4 / 7, 3 / 7]])  # n_a; p_b = (visits + 1) / (5 + 2)
    lp = rk.transition_logp(stats, np.array([0, 1, 0]), np.array([1, 0, 0]), alpha=5.0)
    np.testing.assert_allclose(lp, [math.log((2 + 5 * 3 / 7) / (3 + 5)), math.log((0 + 5 * 4 / 7) / (0 + 5)), math.log((1 + 5 * 4 / 7) / 8)])


def test_prefix_local_popularity_weights_the_centroid_by_visits():
    lat, lon = np.zeros(3), np.array([0.0, 2.0, 10.0])
    prefix = np.array([0, 0, 1])
    visits, clat, clon = rk.prefix_local_popularity([np.array([0, 0, 0, 1])], prefix, lat, lon)
    np.testing.assert_allclose(visits, [4, 0])
    assert clat[0] == pytest.approx(0.0, abs=1e-9)
    assert clon[0] == pytest.approx(0.5, abs=2e-3)  # (3·0° + 1·2°) / 4 on a small arc
    assert clon[1] == pytest.approx(10.0)  # no visits: its items' plain centroid


def test_history_share_union_and_recall():
    hist = [np.array([0, 1, 1, 2]), np.array([3])]
    key_of_item = np.array([0, 1, 1, 0])
    share = rk.history_share(np.array([0, 0, 1, 1]), np.array([1, 0, 0, 1]), hist, key_of_item)
    np.testing.assert_allclose(share, [3 / 4, 1 / 4, 1.0, 0.0])  # keys of the history: 0, 1, 1, 1
    u = rk.union_candidates(np.array([[3, 1, -1]]), np.array([[1, 5]]), np.array([[7, 3]]))
    np.testing.assert_array_equal(u, [[3, 1, 5, 7, -1, -1, -1]])
    assert rk.candidate_recall(np.array([[1, 2], [3, -1]]), np.array([2, 4])) == 0.5
    # the beam adds its first 2 items not already candidates: row 0 skips 3 and 1, row 1 has one new item only
    f = rk.fill_candidates(np.array([[3, 1, -1], [4, -1, -1]]), np.array([[3, 9, 1, 8, 7], [4, 4, 6, -1, -1]]), 2)
    np.testing.assert_array_equal(f, [[3, 1, 9, 8, -1], [4, 6, -1, -1, -1]])


def _tiny_items(n):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"item_id": [f"i{i}" for i in range(n)], "lat": 33.4 + rng.normal(0, 0.05, n), "lon": -112 + rng.normal(0, 0.05, n),
                         "category_l1": [f"c{i % 3}" for i in range(n)], "category_l2": "x"})


def test_base_features_match_a_naive_loop():
    from lgsid.config import LGSIDConfig
    from lgsid.geo import haversine_km

    items = _tiny_items(8)
    hist = [np.array([0, 1, 0, 2]), np.array([5, 6])]
    qs = rk.Queries(hist=hist, target=np.array([1, 7]), seqs=hist + [np.array([3, 4, 3])])
    cands = np.array([[0, 2, 7, -1], [6, 3, 4, 1]])
    ec = LGSIDConfig().evaluate
    q, it, f = rk.base_features(qs, cands, items, np.full(cands.shape, np.nan), np.full(cands.shape, np.nan), ec)
    np.testing.assert_array_equal(q, [0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(it, [0, 2, 7, 6, 3, 4, 1])
    lat, lon = items["lat"].to_numpy(), items["lon"].to_numpy()
    counts = np.bincount(np.concatenate(qs.seqs), minlength=8)
    cat = items["category_l1"].to_numpy()
    for r, (qq, i) in enumerate(zip(q, it)):
        h = hist[qq]
        v = int((h == i).sum())
        assert f["visits"][r] == v and f["visit_share"][r] == v / len(h)
        ago = len(h) - max(np.flatnonzero(h == i)) if v else np.nan
        assert (np.isnan(ago) and np.isnan(f["visits_ago"][r])) or f["visits_ago"][r] == ago
        assert f["is_last"][r] == float(i == h[-1])
        assert f["km_last"][r] == pytest.approx(haversine_km(lat[h[-1]], lon[h[-1]], lat[i], lon[i]))
        assert f["km_recent_min"][r] == pytest.approx(min(haversine_km(lat[j], lon[j], lat[i], lon[i]) for j in h[-ec.reach_recent:]))
        assert f["log_pop"][r] == pytest.approx(math.log1p(counts[i]))
        assert f["cat_share"][r] == pytest.approx(np.mean(cat[h] == cat[i]))
        assert f["cat_match_last"][r] == float(cat[i] == cat[h[-1]])


def test_ranker_section_end_to_end(tmp_path):
    from lgsid.config import LGSIDConfig, replace
    from lgsid.evaluate.sections import evaluate_frames
    from test_evaluate_jobs import _inputs

    inp, sids = _inputs(n_items=120, n_users=60)
    cfg = replace(LGSIDConfig(), evaluate={"sections": ["generative", "ranker"], "seeds": [0], "ks": [5, 10], "tiger_epochs": 1, "tiger_d_model": 16,
                                           "tiger_heads": 2, "max_history": 4, "torch_threads": 1, "workers": 1, "baselines": ["history_nearby"],
                                           "tiger_decoding": ["beam"], "ranker_trees": 30})
    out = evaluate_frames(inp, cfg, sids=dict(sids), progress=False, plot_dir=str(tmp_path))
    r = out["ranker"]
    assert list(r["variants"]) == ["heuristic", "ranker", "ranker+rqkmeans", "ranker+lgsid"]
    heur = r["variants"]["heuristic"]["summary"]["Hit@10"]["mean"]
    assert heur == out["generative"]["variants"]["history_nearby"]["summary"]["Hit@10"]["mean"]  # same test events, same lists
    rec = r["recall"]
    for v in ("rqkmeans", "lgsid"):
        assert rec["history+nearby"] <= rec["per_variant"][v]["union"] <= 1.0  # adding the beam can only add recall
        assert 0.0 <= rec["per_variant"][v]["beam"] <= rec["per_variant"][v]["union"]
    assert r["n_train_queries"] == out["meta"]["n_valid_interactions"] > 0
    ranker_count = r["variants"]["ranker"]["summary"]["candidates"]["mean"]
    for v in ("rqkmeans", "lgsid"):  # each SID arm adds at most as many candidates as the arm without SIDs
        assert r["variants"][f"ranker+{v}"]["summary"]["candidates"]["mean"] <= ranker_count
        assert r["variants"][f"ranker+{v}"]["summary"]["sid_tokens"]["mean"] in (0.0, 1.0)
    assert set(r["importance"]["ranker+lgsid"]) >= {"tiger_logp", "trans_l1", "visits"}
    assert all(os.path.isfile(p) for p in r["plots"]) and len(r["plots"]) == 2


def test_ranker_section_without_positive_validation_queries_fits_nothing_and_says_so():
    from lgsid.config import LGSIDConfig, replace
    from lgsid.evaluate.report import render_markdown
    from lgsid.evaluate.sections import evaluate_frames
    from test_evaluate_jobs import _inputs

    inp, sids = _inputs(n_items=300, n_users=11, seed=3)  # 1 history + 1 nearby + 1 beam candidate: no validation target is among them
    cfg = replace(LGSIDConfig(), evaluate={"sections": ["generative", "ranker"], "seeds": [0], "ks": [5, 10], "tiger_epochs": 1, "tiger_d_model": 16,
                                           "tiger_heads": 2, "max_history": 4, "torch_threads": 1, "workers": 1, "baselines": ["history_nearby"],
                                           "tiger_decoding": ["beam"], "ranker_history_candidates": 1, "ranker_nearby_candidates": 1,
                                           "ranker_beam_size": 1, "ranker_trees": 5})
    out = evaluate_frames(inp, cfg, sids=dict(sids), progress=False)
    assert list(out["ranker"]["variants"]) == ["heuristic"]
    assert len(out["ranker"]["notes"]) == 3 and "not fitted" in out["ranker"]["notes"][0]
    assert "not fitted" in render_markdown(out, "/nonexistent")
