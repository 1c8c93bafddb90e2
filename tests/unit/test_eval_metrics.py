"""Evaluation metrics on hand-computed cases: coverage@K, Similarity@K, NMI, neighbour distances, the
geographic oracle, Hit/NDCG (overall / revisit / new), AUC, reach share; the registered candidate's codes."""

import math

import numpy as np
import pytest

from lgsid.evaluate.geo import geo_awareness, nmi_kmeans, similarity_at_k
from lgsid.metrics import qualified_labels
from lgsid.evaluate.ranking import auc, hit_ndcg_from_ranked, ranked_metrics
from lgsid.evaluate.ranking import mean_std
from lgsid.evaluate.sections import parse_decoding
from lgsid.evaluate.tiger import reach_share, reachable_mask
from lgsid.evaluate.variants import newest_aligned, registered_codes, variant_for
from lgsid.metrics import nearest_by_distance, neighbour_distances, neighbour_share


def test_coverage_at_k_qualifies_repeated_county_names():
    # items 0,1 in (A, Orange); item 2 in (B, Orange): same county name, different state
    labels = qualified_labels(["A", "A", "B"], ["Orange", "Orange", "Orange"], ["x", "y", "x"])
    nb = np.array([[1, 2], [0, 2], [0, 1]])  # (N, K=2)
    assert neighbour_share(nb, labels["state"]) == pytest.approx(2 / 6)
    assert neighbour_share(nb, labels["county"]) == pytest.approx(2 / 6)  # unqualified names would give 1.0
    assert neighbour_share(nb, labels["town"]) == pytest.approx(0.0)


def test_similarity_at_k_uses_reference_space():
    ref = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # norms differ: cosine must normalise
    nb = np.array([[1], [2], [0]])
    # cos(0,1)=0, cos(1,2)=1/sqrt2, cos(2,0)=1/sqrt2 -> mean = sqrt2/3
    assert similarity_at_k(nb, ref) == pytest.approx(math.sqrt(2) / 3, rel=1e-6)
    nb2 = np.array([[2, 1], [2, 0], [0, 1]])
    # row means: (1/sqrt2 + 0)/2, (1/sqrt2 + 0)/2, (1/sqrt2 + 1/sqrt2)/2
    assert similarity_at_k(nb2, ref) == pytest.approx((1 / math.sqrt(2)) * (0.5 + 0.5 + 1) / 3, rel=1e-6)
    assert similarity_at_k(nb2, ref, max_elements=1) == pytest.approx((1 / math.sqrt(2)) * (0.5 + 0.5 + 1) / 3, rel=1e-6)  # one row per block


def test_nmi_wrapper_hand_computed():
    # two tight, far-apart directions -> K-Means clusters {0,1} and {2,3}
    emb = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    # labels determine the cluster: H(L)=1.5 ln2, H(C)=ln2, MI=ln2 -> NMI = 2 ln2 / 2.5 ln2 = 0.8
    assert nmi_kmeans(emb, np.array(["a", "a", "b", "c"]), n_clusters=2) == pytest.approx(0.8, abs=1e-9)
    # labels independent of the clusters -> 0
    assert nmi_kmeans(emb, np.array(["a", "b", "a", "b"]), n_clusters=2) == pytest.approx(0.0, abs=1e-9)
    # default number of clusters = distinct labels; identical partition -> 1
    assert nmi_kmeans(emb, np.array(["x", "x", "y", "y"])) == pytest.approx(1.0)


def test_geo_awareness_row_has_every_column_and_clamps_k():
    emb = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    labels = qualified_labels(["A", "A", "B", "B"], ["c", "c", "d", "d"], ["t", "t", "u", "u"])
    row = geo_awareness(emb, emb, labels, ks=[1, 100])  # 100 -> clamped to N-1 = 3
    assert row["P@1"] == 1.0 and row["C@1"] == 1.0 and row["T@1"] == 1.0
    assert row["P@3"] == pytest.approx(1 / 3)
    assert set(row) >= {"Similarity@1", "Similarity@3", "NMI_state", "NMI_county", "NMI_town"}
    assert "Similarity@1" not in geo_awareness(emb, None, labels, ks=[1])


def test_hit_ndcg_from_ranked_lists():
    ranked = np.array([[3, 1, 2], [5, 6, 7], [9, -1, -1]])
    target = np.array([1, 4, 9])
    hit, ndcg = hit_ndcg_from_ranked(ranked, target, k=2)
    assert hit == pytest.approx(2 / 3)
    assert ndcg == pytest.approx((1 / math.log2(3) + 0 + 1.0) / 3)
    hit1, _ = hit_ndcg_from_ranked(ranked, target, k=1)
    assert hit1 == pytest.approx(1 / 3)


def test_ranked_metrics_split_into_revisit_and_new_targets():
    ranked = np.array([[3, 1, 2], [5, 6, 7], [9, -1, -1], [4, 0, 8]])
    target = np.array([1, 4, 9, 8])
    revisit = np.array([True, False, True, False])
    m = ranked_metrics(ranked, target, revisit, ks=(1, 3))
    assert m["revisit_share"] == 0.5
    assert m["Hit@3"] == pytest.approx(3 / 4) and m["Hit@1"] == pytest.approx(1 / 4)
    assert m["revisit.Hit@3"] == 1.0 and m["new.Hit@3"] == 0.5  # users 0, 2 hit; user 3 hits, user 1 misses
    assert m["revisit.NDCG@3"] == pytest.approx((1 / math.log2(3) + 1.0) / 2)
    assert m["new.NDCG@3"] == pytest.approx((0 + 1 / math.log2(4)) / 2)
    assert m["new.Hit@1"] == 0.0 and m["revisit.Hit@1"] == 0.5


def test_neighbour_distances_hand_computed():
    # on the equator 0.01 deg lon = 1.1119 km (R = 6371.0088 km)
    lat = np.zeros(4)
    lon = np.array([0.0, 0.01, 0.05, 1.0])
    km = 6371.0088 * np.radians(1.0)
    nb = np.array([[1, 2], [0, 2], [1, 0], [2, 1]])
    d = np.array([[0.01, 0.05], [0.01, 0.04], [0.04, 0.05], [0.95, 0.99]]) * km
    out = neighbour_distances(lat, lon, nb, radii_km=(1.0, 5.0))
    assert out["km_median"] == pytest.approx(np.median(d), rel=1e-9)
    assert out["within_1km"] == 0.0  # 1.11 km is just outside 1 km
    assert out["within_5km"] == pytest.approx(4 / 8)  # 1.11, 5.56 (out), 1.11, 4.45, 4.45, 5.56 (out), 105.6, 110.1


def test_geographic_oracle_matches_brute_force():
    from lgsid.geo import haversine_km

    rng = np.random.default_rng(3)
    lat, lon = rng.uniform(30, 40, 60), rng.uniform(-110, -90, 60)
    idx = nearest_by_distance(lat, lon, 5)
    d = haversine_km(lat[:, None], lon[:, None], lat[None], lon[None])
    np.fill_diagonal(d, np.inf)
    brute = np.argsort(d, axis=1)[:, :5]
    assert (idx == brute).all()
    with pytest.raises(ValueError, match="k must be in"):
        nearest_by_distance(lat[:3], lon[:3], 3)


def test_registered_codes_follow_item_order_and_refuse_gaps():
    import pandas as pd

    si = pd.DataFrame({"sid_model_version": ["3", "3", "3", "2"], "item_id": ["b", "a", "c", "a"],
                       "sid_l1": [1, 0, 1, 9], "sid_l2": [2, 2, 0, 9], "sid_l3": [None, None, None, None], "sid_suffix": [0, 0, 1, 0]})
    c = registered_codes(si, ["a", "b", "c"], "3", "aligned-1", "registered m v3")
    assert c.codes.tolist() == [[0, 2], [1, 2], [1, 0]] and c.suffix.tolist() == [0, 0, 1]  # the null third level is dropped
    assert c.source == "registered m v3" and c.embedding_version == "aligned-1"
    with pytest.raises(ValueError, match="lacks 1 of 4 evaluated items"):
        registered_codes(si, ["a", "b", "c", "d"], "3", "aligned-1", "x")
    with pytest.raises(ValueError, match="no rows for sid_model_version '7'"):
        registered_codes(si, ["a"], "7", "aligned-1", "x")
    assert variant_for("hgit", "aligned-2", ["reference", "aligned-1", "aligned-2"]) == "lgsid"
    assert variant_for("hgit", "aligned-1", ["reference", "aligned-1", "aligned-2"]) is None  # not the newest aligned
    assert variant_for("rqkmeans", "reference", ["reference"]) == "rqkmeans"


def test_parse_decoding_names_the_key():
    from lgsid.errors import ConfigError

    assert parse_decoding("beam") == frozenset() and parse_decoding("repeat+reach") == {"repeat", "reach"}
    with pytest.raises(ConfigError, match="evaluate.tiger_decoding: unknown lever"):
        parse_decoding("beam+teleport")


def test_auc_hand_computed_with_ties():
    # pos/neg pairs: (.9,.8)=1, (.9,.3)=1, (.3,.8)=0, (.3,.3)=.5 -> 2.5/4
    assert auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.3, 0.3])) == pytest.approx(0.625)
    assert math.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_reach_share_hand_computed():
    lat = np.array([0.0, 0.0, 0.0, 10.0])
    lon = np.array([0.0, 0.1, 1.0, 0.0])  # 0.1 deg lon at the equator ~ 11.1 km, 1 deg ~ 111 km
    rec = np.array([[1, 2, 3], [3, -1, -1]])
    recent = np.array([[0, -1], [3, 0]])
    # user 0: item1 (11 km) in, item2 (111 km) out, item3 (1112 km) out; user 1: item3 is a recent location -> in
    assert reach_share(rec, recent, lat, lon, radius_km=25.0) == pytest.approx(2 / 4)


@pytest.mark.parametrize("max_elements", [1 << 22, 4, 1])  # one block; 1 user per block; fewer elements than one row
def test_reachable_mask_hand_computed_in_any_block_size(max_elements):
    lat = np.array([0.0, 0.0, 0.0, 10.0])
    lon = np.array([0.0, 0.1, 1.0, 0.0])  # 0.1 deg lon at the equator ~ 11.1 km, 1 deg ~ 111 km
    recent = np.array([[0, -1], [3, 2], [-1, -1]])
    expected = np.array([[True, True, False, False],   # near item 0: itself and item 1 (11 km)
                         [False, False, True, True],   # item 3 and item 2 themselves; 0 is 111 km from 2
                         [False, False, False, False]])  # no recent location
    assert (reachable_mask(recent, lat, lon, 25.0, max_elements=max_elements) == expected).all()


def test_mean_std_and_newest_aligned():
    s = mean_std([0.2, 0.4])
    assert s["mean"] == pytest.approx(0.3) and s["std"] == pytest.approx(math.sqrt(0.02))
    assert mean_std([0.5])["std"] == 0.0
    assert newest_aligned(["reference", "aligned-2", "aligned-10", "ablation-x"]) == "aligned-10"
    assert newest_aligned(["reference"]) is None


def test_downstream_metrics_of_the_candidate_variant():
    from lgsid.evaluate.io import downstream_metrics

    s = lambda x: {"mean": x, "std": 0.0, "runs": [x]}  # noqa: E731
    metrics = {
        "generative": {"variants": {
            "hgit-ref": {"summary": {"Hit@10": s(0.1), "NDCG@10": s(0.05)}},
            "lgsid": {"summary": {"Hit@10": s(0.3), "NDCG@10": s(0.2)}},
        }},
        "discriminative": {"variants": {"lgsid": {"summary": {"AUC": s(0.7), "AUC_exposure": s(float("nan"))}}}},
    }
    assert downstream_metrics(metrics, "lgsid") == {"downstream.hit_at_10": 0.3, "downstream.ndcg_at_10": 0.2, "downstream.auc": 0.7}
    assert downstream_metrics(metrics, "hgit-ref") == {"downstream.hit_at_10": 0.1, "downstream.ndcg_at_10": 0.05}
    assert downstream_metrics(metrics, "rqvae") == {}
