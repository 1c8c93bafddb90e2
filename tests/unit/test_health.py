"""Codebook health metrics on hand-computed cases, and the plots."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lgsid.tokenizer.health import category_purity, codebook_health, collision_rate, health_plots, items_per_code, level_stats


def test_level_stats_hand_computed():
    s = level_stats(np.array([0, 0, 1, 1]), 4)
    assert s["usage"] == 0.5
    assert s["entropy"] == pytest.approx(math.log(2))
    assert s["perplexity"] == pytest.approx(2.0)
    assert level_stats(np.array([3, 3, 3]), 4) == {"usage": 0.25, "entropy": 0.0, "perplexity": 1.0}


def test_collisions_and_items_per_code():
    codes = np.array([[1, 1], [1, 1], [1, 1], [2, 0], [2, 1]])
    assert sorted(items_per_code(codes).tolist()) == [1, 1, 3]
    assert collision_rate(codes) == pytest.approx(1 - 3 / 5)


def test_category_purity_hand_computed():
    # code 0: A, A, B (purity 2/3); code 1: C (purity 1) -> item-weighted (2 + 1) / 4
    mean, per = category_purity(np.array([0, 0, 0, 1]), np.array(["A", "A", "B", "C"]))
    assert mean == pytest.approx(0.75)
    assert sorted(per.tolist()) == pytest.approx([2 / 3, 1.0])


def test_codebook_health_keys_and_quantiles(tmp_path):
    codes = np.array([[0, 0], [0, 0], [0, 1], [1, 1], [1, 1], [1, 1]])
    m = codebook_health(codes, [2, 4], np.array(["A", "A", "A", "B", "B", "A"]))
    assert m["usage_l1"] == 1.0 and m["usage_l2"] == 0.5
    assert m["collision_rate"] == pytest.approx(0.5)
    assert m["items_per_code_p50"] == pytest.approx(2.0)  # group sizes 2, 1, 3
    assert m["items_per_code_max"] == 3.0
    assert m["category_purity_l1"] == pytest.approx((3 + 2) / 6)
    paths = health_plots(codes, [2, 4], str(tmp_path), np.array(["A", "A", "A", "B", "B", "A"]))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["code_usage.png", "items_per_code.png", "category_purity_l1.png"]
    assert all(open(p, "rb").read(4) == b"\x89PNG" for p in paths)
