import numpy as np
import pytest

from lgsid.metrics import geo_coverage, neighbour_share, topk_neighbours


def test_topk_neighbours_hand_case():
    # Four unit vectors at 0°, 10°, 90°, 100°: each one's nearest is its 10° twin.
    ang = np.deg2rad([0.0, 10.0, 90.0, 100.0])
    emb = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    idx, sim = topk_neighbours(emb, k=2, chunk=3)  # chunk < N exercises the blocked path
    assert idx[:, 0].tolist() == [1, 0, 3, 2]
    assert idx[0, 1] == 2 and idx[3, 1] == 1  # 90° from 0° beats 100°; 10° from 100° is 90° away
    assert sim[0, 0] == pytest.approx(np.cos(np.deg2rad(10.0)), abs=1e-6)
    assert (np.diff(sim, axis=1) <= 0).all()


def test_topk_neighbours_do_not_depend_on_the_block():
    # the block only bounds memory: any block size gives the same neighbours in the same order
    emb = np.random.default_rng(3).normal(size=(57, 5))
    whole = topk_neighbours(emb, 7, chunk=57)
    for chunk in (1, 4, 20, None):
        idx, sim = topk_neighbours(emb, 7, chunk=chunk)
        assert (idx == whole[0]).all()
        np.testing.assert_allclose(sim, whole[1], atol=1e-6)


def test_topk_never_returns_self_and_checks_k():
    emb = np.random.default_rng(0).normal(size=(10, 4))
    idx, _ = topk_neighbours(emb, 9)
    assert not (idx == np.arange(10)[:, None]).any()
    with pytest.raises(ValueError, match="k must be in"):
        topk_neighbours(emb, 10)


def test_neighbour_share_hand_case():
    labels = np.array(["a", "a", "b", "b"])
    nbrs = np.array([[1, 2], [0, 3], [3, 0], [2, 1]])
    # hits: row0 1/2, row1 1/2, row2 1/2, row3 1/2 -> 0.5
    assert neighbour_share(nbrs, labels) == 0.5
    assert neighbour_share(nbrs[:, :1], labels) == 1.0


def test_geo_coverage_qualifies_ambiguous_names():
    # Two "Springfield" towns in different states must not count as the same town or county.
    emb = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    state = np.array(["Illinois", "Missouri", "Illinois", "Illinois"])
    county = np.array(["Sangamon", "Greene", "Cook", "Cook"])
    town = np.array(["Springfield", "Springfield", "Chicago", "Chicago"])
    cov = geo_coverage(emb, state, county, town, k=1)
    # nearest: 0<->1 (different states), 2<->3 (same town)
    assert cov == {"P@1": 0.5, "C@1": 0.5, "T@1": 0.5}
