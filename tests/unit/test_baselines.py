"""Next-item baselines on hand-built histories: history ranking, popularity fill, distance-decayed
popularity (Eq.-style hand computation), and SASRec learning a deterministic successor."""

import math

import numpy as np
import pytest
import torch

from lgsid.evaluate import baselines as bl


def test_history_ranking_counts_then_recency():
    # 5 twice, 2 twice (2 more recent), 7 once
    assert bl.history_ranking(np.array([5, 2, 7, 5, 2])).tolist() == [2, 5, 7]
    assert bl.history_ranking(np.array([3])).tolist() == [3]


def test_popularity_and_history_lists_fill_with_unvisited_popular_items():
    seqs = [np.array([0, 1, 1]), np.array([1, 2]), np.array([3, 1, 2])]
    counts = bl.item_counts(seqs, 5)
    assert counts.tolist() == [1, 4, 2, 1, 0]
    assert bl.popularity_lists(counts, 2, 3).tolist() == [[1, 2, 0], [1, 2, 0]]
    # user [4, 4, 0]: own items 4, 0 first, then popular 1, 2 (0 is not repeated)
    assert bl.history_lists([np.array([4, 4, 0])], counts, 4).tolist() == [[4, 0, 1, 2]]
    # fewer items than the list: -1 padding
    assert bl.popularity_lists(counts, 1, 7).tolist() == [[1, 2, 0, 3, 4, -1, -1]]


def test_nearby_popularity_score_hand_computed():
    s = bl.nearby_popularity_score(np.array([0, 1, 3]), np.array([0.0, 2.0, 10.0]), decay_km=5.0)
    assert s == pytest.approx([0.0, math.log(2) - 0.4, math.log(4) - 2.0])
    with pytest.raises(ValueError, match="decay_km must be > 0"):
        bl.nearby_popularity_score(np.array([1]), np.array([1.0]), 0.0)


def test_history_nearby_lists_rank_unvisited_items_by_decayed_popularity():
    km = 6371.0088 * math.radians(1.0)  # one degree of longitude on the equator
    lat = np.zeros(5)
    lon = np.array([0.0, 1 / km, 5 / km, 20 / km, 1.0])  # 0, 1, 5, 20, 111 km from item 0
    counts = np.array([1, 0, 10, 100, 1000])
    # scores from item 0 (decay 5 km): item1 log1 - 0.2 = -0.2; item2 log11 - 1 = 1.40; item3 log101 - 4 = 0.62; item4 log1001 - 22.2 < 0
    out = bl.history_nearby_lists([np.array([0])], counts, lat, lon, decay_km=5.0, k=5)
    assert out.tolist() == [[0, 2, 3, 1, 4]]


def test_sasrec_learns_a_deterministic_successor():
    torch.set_num_threads(1)
    n = 12
    hist = np.array([[-1, i] for i in range(n)] * 40)  # (480, 2): the next item is always (i + 1) mod n
    tgt = (hist[:, -1] + 1) % n
    model = bl.train_sasrec(n, hist, tgt, seed=0, epochs=30, d_model=16, nhead=2, layers=1, batch_size=64, lr=1e-2)
    top = bl.sasrec_lists(model, np.array([[-1, i] for i in range(n)]), 3)
    assert (top[:, 0] == (np.arange(n) + 1) % n).all()
    assert bl.sasrec_lists(model, np.array([[-1, 0]]), n + 2)[0, -2:].tolist() == [-1, -1]  # list longer than the catalogue


def test_sampled_softmax_loss_by_hand():
    """Eq.: -log(exp(h·w_t) / (exp(h·w_t) + sum over negatives j != t of exp(h·w_j))), the accidental hit left out."""
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # items 0, 1, 2
    target, negatives = torch.tensor([0, 1]), torch.tensor([1, 2])
    # row 0: target logit 1, negatives 0 (item 1) and 1 (item 2): -log(e / (e + 1 + e))
    # row 1: target logit 2, item 1 is its own target (left out), item 2 logit 2: -log(e^2 / (e^2 + e^2)) = log 2
    want = (-np.log(np.e / (np.e + 1 + np.e)) + np.log(2.0)) / 2
    assert bl.sampled_softmax_loss(h, w, target, negatives).item() == pytest.approx(want, rel=1e-6)
    from lgsid.config import load_config
    from lgsid.errors import ConfigError

    assert load_config().evaluate.sasrec_negatives == 8192
    with pytest.raises(ConfigError, match="evaluate.sasrec_negatives"):
        load_config(overrides=["evaluate.sasrec_negatives=-1"])


@pytest.mark.parametrize("negatives", [0, 5, 100])
def test_sasrec_with_sampled_negatives_learns_a_deterministic_successor(negatives):
    """``evaluate.sasrec_negatives``: 5 of 12 items per batch trains a sampled softmax; 0 or >= the catalogue the full one."""
    torch.set_num_threads(1)
    n = 12
    hist = np.array([[-1, i] for i in range(n)] * 40)
    tgt = (hist[:, -1] + 1) % n
    model = bl.train_sasrec(n, hist, tgt, seed=0, epochs=30, d_model=16, nhead=2, layers=1, batch_size=64, lr=1e-2, negatives=negatives)
    top = bl.sasrec_lists(model, np.array([[-1, i] for i in range(n)]), 3)
    assert (top[:, 0] == (np.arange(n) + 1) % n).all()
    if negatives >= n or negatives == 0:  # the full softmax: the same model as without the argument
        ref = bl.train_sasrec(n, hist, tgt, seed=0, epochs=30, d_model=16, nhead=2, layers=1, batch_size=64, lr=1e-2)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
