"""SID churn between two versions (lgsid.sid_churn) and the promote.max_sid_churn gate, on hand-built codes."""

from __future__ import annotations

import numpy as np
import pytest

from lgsid.config import load_config, replace
from lgsid.errors import PromotionRefused
from lgsid.registry import churn_gate, gate
from lgsid.sid_churn import prefix_churn, sid_churn

OLD = np.array([[1, 2, 3], [1, 2, 4], [5, 6, 7], [5, 6, 8], [9, 0, 0]])
NEW = np.array([
    [1, 2, 3],  # unchanged
    [1, 2, 5],  # level 3 only
    [5, 1, 7],  # level 2 (level 3 equal, yet the full SID changed)
    [4, 6, 8],  # level 1 (levels 2-3 equal)
    [9, 0, 0],  # unchanged
])


def test_prefix_churn_by_hand():
    # changed prefixes: L1 {item 3} = 1/5; L1-L2 {2, 3} = 2/5; full {1, 2, 3} = 3/5
    assert prefix_churn(OLD, NEW).tolist() == [0.2, 0.4, 0.6]
    assert sid_churn(OLD, NEW) == {"sid_churn_l1": 0.2, "sid_churn_l1_l2": 0.4, "sid_churn_full": 0.6}
    assert sid_churn(OLD, OLD) == {"sid_churn_l1": 0.0, "sid_churn_l1_l2": 0.0, "sid_churn_full": 0.0}
    assert sid_churn(OLD[:, :1], NEW[:, :1]) == {"sid_churn_l1": 0.2, "sid_churn_l1_l2": 0.2, "sid_churn_full": 0.2}
    with pytest.raises(ValueError, match=r"\(5, 3\) and \(4, 3\)"):
        prefix_churn(OLD, NEW[:4])


OK = {"usage_l1": 0.9, "usage_l2": 1.0, "collision_rate": 0.1, "geo_C_at_10": 0.4}
CHURN = {"sid_churn_l1": 0.2, "sid_churn_l1_l2": 0.4, "sid_churn_full": 0.6, "sid_churn_items": 5.0}


def test_gate_refuses_churn_over_the_limit_and_force_passes():
    cfg = load_config(None)
    assert cfg.promote.max_sid_churn == 0.2 and cfg.promote.force is False
    with pytest.raises(PromotionRefused, match=r"'sid_churn_full' = 0.6 fails the gate promote.max_sid_churn \(<= 0.2\).*"
                                               r"against the champion, 60.0% of 5 items changed their full SID \(L1-L2 40.0%, L1 20.0%\).*--force"):
        gate(cfg, OK, churn=CHURN)
    notes = gate(replace(cfg, promote={"force": True}), OK, churn=CHURN)
    assert notes[-1].startswith("sid_churn_full = 0.6 > 0.2: promoted anyway (promote.force)")
    assert gate(replace(cfg, promote={"max_sid_churn": 0.6}), OK, churn=CHURN)[-1].startswith("sid_churn_full = 0.6 <= 0.6: ok")
    assert gate(cfg, OK)[-1] == "sid_churn: no champion sid_items to compare with, skipped"
    with pytest.raises(PromotionRefused, match="max_sid_churn"):
        churn_gate(0.0, False, {**CHURN, "sid_churn_full": 0.01})


def test_max_sid_churn_is_validated():
    from lgsid.errors import ConfigError

    with pytest.raises(ConfigError, match="promote.max_sid_churn"):
        replace(load_config(None), promote={"max_sid_churn": 1.5})
