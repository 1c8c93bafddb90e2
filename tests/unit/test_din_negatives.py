"""DIN test negatives: uniform ones never equal the positive; exposure-like ones are nearby and unvisited."""

import numpy as np

from lgsid.evaluate.din import ctr_examples, exposure_negatives


def test_exposure_negatives_are_near_unvisited_and_topped_up():
    near = np.zeros((2, 10), dtype=bool)
    near[0, [1, 2, 3, 4, 5]] = True  # user 0 visited 1, positive 2 -> candidates 3, 4, 5
    near[1, [6]] = True  # user 1: only one nearby candidate -> two uniform top-ups
    neg, topped = exposure_negatives(np.array([2, 0]), near, [np.array([1]), np.array([9])], 3, np.random.default_rng(0))
    assert sorted(neg[0].tolist()) == [3, 4, 5]
    assert neg[1, 0] == 6 and len(set(neg[1].tolist())) == 3 and 0 not in neg[1]
    assert topped == 2 / 6


def test_uniform_ctr_examples_shape_and_labels():
    H, T, Y = ctr_examples(np.array([[0, 1], [2, 3]]), np.array([4, 5]), 6, 2, np.random.default_rng(0))
    assert H.shape == (6, 2) and Y.tolist() == [1, 0, 0, 1, 0, 0]
    assert T[0] == 4 and T[3] == 5 and 4 not in T[1:3] and 5 not in T[4:6]
