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

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

CODE_COLUMNS = ("sid_l1", "sid_l2", "sid_l3")


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


def dedup_suffix_df(codes: "DataFrame", keys: Sequence[str] = CODE_COLUMNS) -> "DataFrame":
    """:func:`dedup_suffix` in Spark: ``codes`` plus ``sid_suffix`` and ``sid`` (pure, lazy).

    ``sid_suffix`` = ``row_number() - 1`` over a window partitioned by the code columns and ordered
    by ``item_id``: the rank of the item among the items of its code tuple, the numbering
    :func:`dedup_suffix` gives rows sorted by ``item_id``. Null codes (levels past the model's) are
    one group, as equal codes are. ``sid`` is :func:`format_sid`'s string (null levels skipped).

    Args:
        codes: item_id plus the ``keys`` columns (INT codes; other columns are kept).
        keys: The code columns, level 1 first.

    Returns:
        ``codes`` with ``sid_suffix`` (INT) and ``sid`` (STRING) appended.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy(*keys).orderBy("item_id")
    out = codes.withColumn("sid_suffix", (F.row_number().over(w) - 1).cast("int"))
    return out.withColumn("sid", F.concat_ws("-", *[F.col(k).cast("string") for k in keys], F.col("sid_suffix").cast("string")))


def format_sid(codes: np.ndarray, suffix: np.ndarray | None = None) -> np.ndarray:
    """SID strings: (N, L) codes [+ (N,) suffix] -> (N,) like ``"12-5-33-0"``."""
    cols = [np.asarray(codes)[:, l].astype(str) for l in range(np.asarray(codes).shape[1])]
    if suffix is not None:
        cols.append(np.asarray(suffix).astype(str))
    out = cols[0].astype(object)
    for c in cols[1:]:
        out = out + "-" + c.astype(object)
    return out
