"""Eq. 3 soft labels and Eq. 5 co-click counts, hand-computed."""

from datetime import datetime

import numpy as np
import pytest

from lgsid.negatives import soft_labels
from lgsid.pairs import capped_history, coclick_scores


def test_soft_labels_hand_computed():
    # K = 4: (4 - r + 1) / 5 for r = 0..4
    np.testing.assert_allclose(soft_labels([0, 1, 2, 3, 4], 4), [1.0, 0.8, 0.6, 0.4, 0.2], rtol=1e-6)
    assert soft_labels([0, 1], 16).dtype == np.float32
    assert soft_labels([16], 16)[0] == pytest.approx(1 / 17)
    # strictly decreasing with the rank
    assert np.all(np.diff(soft_labels(np.arange(17), 16)) < 0)


def t(n):
    return datetime(2024, 1, 1, 0, n)


# Five users. cap = 3 most recent distinct items; an item's recency is its latest click.
TOY = {
    "u1": [("a", t(1)), ("b", t(2)), ("c", t(3))],  # {a, b, c}
    "u2": [("a", t(1)), ("b", t(2)), ("d", t(3)), ("a", t(4))],  # {a, b, d}; a counted once
    "u3": [("e", t(1)), ("a", t(2)), ("b", t(3)), ("c", t(4))],  # cap drops e (oldest)
    "u4": [("z", t(1)), ("y", t(1)), ("x", t(1)), ("w", t(1))],  # tie: keep w, x, y by item_id
    "u5": [("c", t(1)), ("d", t(2)), ("c", t(3))],  # {c, d}
}
TOY_S = {("a", "b"): 3, ("a", "c"): 2, ("b", "c"): 2, ("a", "d"): 1, ("b", "d"): 1, ("c", "d"): 1,
         ("w", "x"): 1, ("w", "y"): 1, ("x", "y"): 1}


def test_capped_history():
    assert capped_history(TOY["u3"], 3) == ["c", "b", "a"]
    assert capped_history(TOY["u2"], 3) == ["a", "d", "b"]
    assert capped_history(TOY["u4"], 3) == ["w", "x", "y"]


def test_coclick_scores_toy_history():
    assert coclick_scores(TOY, cap=3) == TOY_S
    # without the cap u3 also pairs e with a, b, c and u4 pairs z
    s = coclick_scores(TOY, cap=10)
    assert s[("a", "e")] == 1 and s[("w", "z")] == 1 and s[("a", "b")] == 3


def test_coclick_scores_threshold_eq5():
    # Eq. 5 keeps s > s_th: by hand from TOY_S, s_th=1 keeps s(a,b)=3, s(a,c)=s(b,c)=2; s_th=2 keeps (a,b)
    assert coclick_scores(TOY, cap=3, s_th=1) == {("a", "b"): 3, ("a", "c"): 2, ("b", "c"): 2}
    assert coclick_scores(TOY, cap=3, s_th=2) == {("a", "b"): 3}
    assert coclick_scores(TOY, cap=3, s_th=3) == {}
    # the docstring's example
    h = {"u1": [("a", t(1)), ("b", t(2)), ("c", t(3))], "u2": [("a", t(1)), ("b", t(2)), ("d", t(3))], "u3": [("c", t(1)), ("a", t(2)), ("b", t(3))]}
    assert coclick_scores(h, cap=3) == {("a", "b"): 3, ("a", "c"): 2, ("b", "c"): 2, ("a", "d"): 1, ("b", "d"): 1}
    assert coclick_scores(h, cap=3, s_th=1) == {("a", "b"): 3, ("a", "c"): 2, ("b", "c"): 2}
