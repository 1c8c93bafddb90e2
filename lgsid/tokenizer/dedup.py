"""Collision suffixes: items sharing all L codes get a distinguishing last level.

Two rules keep IDs stable:

* a fresh assignment numbers the items of one code tuple 0, 1, 2, ... in the order given (the
  caller sorts by ``item_id`` so reruns agree);
* write-sids never renumbers (:func:`lgsid.sid_store.assign_suffixes`): a new item colliding with
  existing ones gets the next free suffix after the largest existing one of its tuple.

SID strings are ``"<l1>-<l2>-<l3>-<suffix>"`` (every level plus the suffix, always present, so
``"12-5-33-0"`` is the first item of tuple (12, 5, 33)).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _tuple_ids(codes: np.ndarray) -> np.ndarray:
    """(N, L) codes -> (N,) id of each distinct row."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be (N, L), got shape {codes.shape}")
    _, inv = np.unique(codes, axis=0, return_inverse=True)
    return inv.reshape(-1)


def dedup_suffix(codes: np.ndarray) -> np.ndarray:
    """Suffix of each row: its rank (0, 1, ...) among earlier rows with the same code tuple.

    Args:
        codes: (N, L) int codes, rows in a stable order (e.g. sorted by item_id).

    Returns:
        (N,) int64; (codes, suffix) is unique per row.
    """
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    return pd.Series(_tuple_ids(codes)).groupby(_tuple_ids(codes)).cumcount().to_numpy(dtype=np.int64)


def format_sid(codes: np.ndarray, suffix: np.ndarray | None = None) -> np.ndarray:
    """SID strings: (N, L) codes [+ (N,) suffix] -> (N,) like ``"12-5-33-0"``."""
    cols = [np.asarray(codes)[:, l].astype(str) for l in range(np.asarray(codes).shape[1])]
    if suffix is not None:
        cols.append(np.asarray(suffix).astype(str))
    out = cols[0].astype(object)
    for c in cols[1:]:
        out = out + "-" + c.astype(object)
    return out
