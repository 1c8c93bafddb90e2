"""``sid_path``: a readable name of what a level-1 code covers, that does not claim more than its items.

A level-1 code is a cluster of items. Its path names the *smallest* admin area that holds at least
``coverage`` (80%) of the code's items, and the category that does, each with its share when not
every item is in it::

    Delaware County, Pennsylvania / Beauty          every item is in that county and category
    Delaware County, Pennsylvania (91%) / Beauty    91% in that county (the others elsewhere), all Beauty
    Pennsylvania (85%) / Food & Drink (97%)         no county holds 80%; 85% are in Pennsylvania
    Pennsylvania (62%) +2 states / Beauty           no state holds 80%: the largest state's share and how many other states
    Beauty (45%) +3 categories                      (category part) no category holds 80%

A path is the same for every item of the code; an item's own county or state can differ from it
(the share says how often). ``item_sid_features.sid_path`` and the SID model's ``sid_path`` output
carry it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

COVERAGE = 0.8
"""Share of a code's items an area (or category) must hold to name the code without qualification."""


def _pct(share: float) -> str:
    """``" (62%)"`` below 1 (rounded down, so 99.7% never reads 100%), ``""`` at 1."""
    return "" if share >= 1.0 else f" ({int(np.floor(share * 100))}%)"


def dominant(values: Sequence) -> tuple[str, float, int]:
    """(most frequent value, its share, number of distinct values); ties go to the first in sort order."""
    counts = pd.Series(list(values), dtype=object).value_counts()
    top = counts[counts == counts.iloc[0]].index.sort_values()[0]
    return str(top), float(counts.iloc[0] / counts.sum()), int(len(counts))


def covering_area(states: Sequence[str], counties: Sequence[str], coverage: float = COVERAGE) -> tuple[str, str | None, float, int]:
    """The smallest admin area (county, else state) holding >= ``coverage`` of the items.

    Args:
        states, counties: (n,) the items' state and county names (n >= 1).
        coverage: the share an area must hold.

    Returns:
        (state, county or None, share of the items in that area, number of distinct states). When
        no state holds ``coverage``: the largest state (county None) and its share, below ``coverage``.
    """
    pair, share_c, _ = dominant([f"{s}\x1f{c}" for s, c in zip(states, counties)])
    st, share_s, n_states = dominant(states)
    if share_c >= coverage:
        s, c = pair.split("\x1f")
        return s, c, share_c, n_states
    return st, None, share_s, n_states


def area_label(states: Sequence[str], counties: Sequence[str], coverage: float = COVERAGE) -> str:
    """:func:`covering_area` as text: ``"County, State"`` or ``"State"`` with ``" (s%)"`` when s < 100%;
    ``"State (s%) +m states"`` when no state holds ``coverage`` (the largest state and the m others)."""
    st, county, share, n_states = covering_area(states, counties, coverage)
    if county is not None:
        return f"{county}, {st}{_pct(share)}"
    if share >= coverage:
        return st + _pct(share)
    return f"{st}{_pct(share)} +{n_states - 1} state{'s' if n_states > 2 else ''}"


def category_label(categories: Sequence[str], coverage: float = COVERAGE) -> str:
    """The dominant category with its share when < 100%, and ``+m categories`` when it holds < ``coverage``."""
    cat, share, n = dominant(categories)
    if share >= coverage:
        return cat + _pct(share)
    return f"{cat}{_pct(share)} +{n - 1} categor{'ies' if n > 2 else 'y'}"


def code_paths(codes: np.ndarray, states: Sequence[str], counties: Sequence[str], categories: Sequence[str], k: int,
               coverage: float = COVERAGE) -> list[str]:
    """``sid_path`` of every level-1 code: ``"<area_label> / <category_label>"`` over the code's items.

    Args:
        codes: (N,) level-1 codes in [0, k). states, counties, categories: (N,) the items' attributes.
        k: K_1. coverage: see :data:`COVERAGE`.

    Returns:
        K_1 strings; ``"(empty)"`` for a code no item has.
    """
    df = pd.DataFrame({"c": np.asarray(codes), "state": np.asarray(states, dtype=object).astype(str),
                       "county": np.asarray(counties, dtype=object).astype(str), "cat": np.asarray(categories, dtype=object).astype(str)})
    out = ["(empty)"] * k
    for c, g in df.groupby("c"):
        out[int(c)] = f"{area_label(g['state'].tolist(), g['county'].tolist(), coverage)} / {category_label(g['cat'].tolist(), coverage)}"
    return out


def in_named_area(codes: np.ndarray, states: Sequence[str], counties: Sequence[str], coverage: float = COVERAGE) -> np.ndarray:
    """Whether each item lies in the area its level-1 code's path names (:func:`covering_area`).

    Args:
        codes: (N,) level-1 codes. states, counties: (N,) the items' own state and county.

    Returns:
        (N,) bool: the item's state is the named state and, when a county is named, its county too.
    """
    df = pd.DataFrame({"c": np.asarray(codes), "state": np.asarray(states, dtype=object).astype(str),
                       "county": np.asarray(counties, dtype=object).astype(str)})
    out = np.zeros(len(df), dtype=bool)
    for _, g in df.groupby("c"):
        st, county, _, _ = covering_area(g["state"].tolist(), g["county"].tolist(), coverage)
        ok = (g["state"] == st) & ((g["county"] == county) if county is not None else True)
        out[g.index.to_numpy()] = ok.to_numpy()
    return out
