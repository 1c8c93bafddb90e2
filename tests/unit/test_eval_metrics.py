"""Evaluation metrics on hand-computed cases: coverage@K, Similarity@K, NMI, Hit/NDCG (ties), AUC, reach share."""

import math

import numpy as np
import pytest

from lgsid.evaluate import _mean_std, newest_aligned
from lgsid.evaluate.geo import geo_awareness, nmi_kmeans, qualified_labels, similarity_at_k
from lgsid.evaluate.ranking import auc, hit_ndcg_from_ranked, hit_ndcg_from_scores
from lgsid.evaluate.tiger import reach_share
from lgsid.metrics import neighbour_share


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


def test_hit_ndcg_ties_are_expected_under_random_tie_breaking():
    # constant scorer over 4 items: rank uniform on 1..4
    hit, ndcg = hit_ndcg_from_scores(np.ones((1, 4)), np.array([0]), k=2)
    assert hit == pytest.approx(0.5)
    assert ndcg == pytest.approx((1 + 1 / math.log2(3)) / 4)
    # one item strictly better, one tie: rank uniform on {2, 3}
    s = np.array([[0.9, 0.5, 0.5, 0.1]])
    h2, n2 = hit_ndcg_from_scores(s, np.array([1]), k=2)
    assert (h2, n2) == (pytest.approx(0.5), pytest.approx(0.5 / math.log2(3)))
    h3, n3 = hit_ndcg_from_scores(s, np.array([1]), k=3)
    assert (h3, n3) == (pytest.approx(1.0), pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 2))
    # no ties: agrees with the ranked-list version
    s = np.array([[0.1, 0.7, 0.3], [0.2, 0.1, 0.9]])
    ranked = np.argsort(-s, axis=1)
    for k in (1, 2, 3):
        assert hit_ndcg_from_scores(s, np.array([2, 0]), k) == pytest.approx(hit_ndcg_from_ranked(ranked, np.array([2, 0]), k))


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


def test_mean_std_and_newest_aligned():
    s = _mean_std([0.2, 0.4])
    assert s["mean"] == pytest.approx(0.3) and s["std"] == pytest.approx(math.sqrt(0.02))
    assert _mean_std([0.5])["std"] == 0.0
    assert newest_aligned(["reference", "aligned-2", "aligned-10", "ablation-x"]) == "aligned-10"
    assert newest_aligned(["reference"]) is None


def test_downstream_for_matches_kind_and_embedding_version():
    from lgsid.evaluate import downstream_for

    s = lambda x: {"mean": x, "std": 0.0, "runs": [x]}  # noqa: E731
    metrics = {
        "generative": {"variants": {
            "hgit-ref": {"embedding_version": "reference", "summary": {"Hit@10": s(0.1)}},
            "lgsid": {"embedding_version": "aligned-3", "summary": {"Hit@10": s(0.3)}},
        }},
        "discriminative": {"variants": {"lgsid": {"summary": {"AUC": s(0.7)}}}},
    }
    assert downstream_for(metrics, "hgit", "aligned-3") == ("lgsid", {"downstream.hit_at_10": 0.3, "downstream.auc": 0.7})
    assert downstream_for(metrics, "hgit", "reference") == ("hgit-ref", {"downstream.hit_at_10": 0.1})
    assert downstream_for(metrics, "rqvae", "aligned-3") == (None, {})
