"""sid_path (lgsid.tokenizer.paths): names the area and category that cover a code's items, with shares; hand-computed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lgsid.tokenizer.hgit import level1_paths
from lgsid.tokenizer.paths import area_label, category_label, code_paths, covering_area, in_named_area

PA, NY = "Pennsylvania", "New York"


def test_area_is_the_smallest_covering_80_percent():
    # 10 items all in one county -> the county, no share
    assert area_label([PA] * 10, ["Delaware County"] * 10) == "Delaware County, Pennsylvania"
    # 9 of 10 in one county (90% >= 80%) -> the county with its share
    assert area_label([PA] * 10, ["Delaware County"] * 9 + ["Chester County"]) == "Delaware County, Pennsylvania (90%)"
    # counties 5/3/2 of 10 (no county >= 80%), state 10/10 -> the state
    assert area_label([PA] * 10, ["A"] * 5 + ["B"] * 3 + ["C"] * 2) == PA
    # state 17/20 = 85% -> the state with its share
    assert area_label([PA] * 17 + [NY] * 3, ["A"] * 8 + ["B"] * 9 + ["N"] * 3) == "Pennsylvania (85%)"
    # PA 5, NY 2, Ohio 1 of 8: 62.5% -> floor 62%, +2 other states
    assert area_label([PA] * 5 + [NY] * 2 + ["Ohio"], list("AAAAANNO")) == "Pennsylvania (62%) +2 states"
    assert area_label([PA] * 3 + [NY] * 2, list("AAANN")) == "Pennsylvania (60%) +1 state"
    assert covering_area([PA] * 3 + [NY] * 2, list("AAANN")) == (PA, None, 0.6, 2)


def test_category_label_and_full_paths():
    assert category_label(["Beauty"] * 4) == "Beauty"
    assert category_label(["Beauty"] * 9 + ["Food"]) == "Beauty (90%)"
    assert category_label(["Beauty"] * 2 + ["Food", "Shops"]) == "Beauty (50%) +2 categories"
    codes = np.array([0, 0, 0, 0, 0, 2, 2])
    states = [PA, PA, PA, NY, PA, NY, NY]
    counties = ["Delaware County"] * 3 + ["Nassau County", "Chester County", "Nassau County", "Nassau County"]
    cats = ["Beauty"] * 5 + ["Food", "Food"]
    # code 0: counties 3/1/1 of 5 = 60%; PA 4/5 = 80% -> "Pennsylvania (80%)"; code 1 has no items
    assert code_paths(codes, states, counties, cats, 3) == ["Pennsylvania (80%) / Beauty", "(empty)", "Nassau County, New York / Food"]
    assert in_named_area(codes, states, counties).tolist() == [True, True, True, False, True, True, True]
    feats = pd.DataFrame({"state": states, "county": counties, "category_l1": [None] * 5 + ["Food"] * 2, "category_l2": cats})
    assert level1_paths(feats, codes, 3) == code_paths(codes, states, counties, cats, 3)
