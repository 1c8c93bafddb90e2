"""sid_health rows from per-level statistics (lgsid.sid_health), hand-computed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lgsid.sid_health import health_plot, health_rows, previous_version, unchanged


def test_health_rows_by_hand():
    # 4 items, K = (2, 4): level 1 counts 3/1, level 2 counts 2/1/1 (3 codes of 4 used);
    # prefixes: 2 distinct at level 1 -> collision 1 - 2/4 = 0.5; 3 distinct at level 2 -> 0.25
    churn = {"sid_churn_l1": 0.25, "sid_churn_l1_l2": 0.5, "sid_churn_full": 0.5, "sid_churn_items": 4.0}
    rows = health_rows("m", "3", [2, 4], [np.array([3, 1]), np.array([2, 1, 1])], [2, 3], 4, churn, "2")
    assert rows["level"].tolist() == [1, 2] and rows["usage"].tolist() == [1.0, 0.75]
    h1 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    h2 = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert rows["perplexity"].tolist() == pytest.approx([math.exp(h1), math.exp(h2)])
    assert rows["collision_rate"].tolist() == [0.5, 0.25]
    assert rows["churn"].tolist() == [0.25, 0.5] and rows["churn_items"].tolist() == [4, 4]
    assert rows["previous_sid_model_version"].tolist() == ["2", "2"]
    first = health_rows("m", "1", [2, 4], [np.array([3, 1]), np.array([2, 1, 1])], [2, 3], 4)
    assert first["churn"].isna().all() and first["previous_sid_model_version"].isna().all()


def test_previous_version_and_unchanged(tmp_path):
    assert previous_version(["1", "3", "4", "x"], "4") == "3"
    assert previous_version(["4", "5"], "4") is None and previous_version(["1"], "x") is None
    a = health_rows("m", "3", [2], [np.array([3, 1])], [2], 4)
    assert unchanged(a, a.copy())
    assert not unchanged(a, a.assign(usage=0.5)) and not unchanged(a, a.iloc[:0])
    both = pd.concat([health_rows("m", "1", [2], [np.array([2, 2])], [2], 4), a])
    assert health_plot(both, str(tmp_path / "h.png")).endswith("h.png") and (tmp_path / "h.png").stat().st_size > 0
