"""Collision suffixes: fresh numbering and SID strings (write-sids' never-renumber rule: tests/spark/test_sid_store.py)."""

from __future__ import annotations

import numpy as np

from lgsid.tokenizer import dedup_suffix, format_sid


def test_dedup_suffix_numbers_collisions_in_row_order():
    codes = np.array([[1, 2], [3, 4], [1, 2], [1, 2], [3, 4], [0, 0]])
    assert dedup_suffix(codes).tolist() == [0, 0, 1, 2, 1, 0]
    full = np.column_stack([codes, dedup_suffix(codes)])
    assert len(np.unique(full, axis=0)) == len(codes)


def test_format_sid():
    assert format_sid(np.array([[12, 5, 33], [0, 1, 2]]), np.array([0, 7])).tolist() == ["12-5-33-0", "0-1-2-7"]
    assert format_sid(np.array([[12, 5]])).tolist() == ["12-5"]
