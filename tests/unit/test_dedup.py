"""Collision suffixes: fresh numbering, incremental numbering that never renumbers, SID strings."""

from __future__ import annotations

import numpy as np

from lgsid.tokenizer import dedup_suffix, format_sid, incremental_suffix


def test_dedup_suffix_numbers_collisions_in_row_order():
    codes = np.array([[1, 2], [3, 4], [1, 2], [1, 2], [3, 4], [0, 0]])
    assert dedup_suffix(codes).tolist() == [0, 0, 1, 2, 1, 0]
    full = np.column_stack([codes, dedup_suffix(codes)])
    assert len(np.unique(full, axis=0)) == len(codes)


def test_incremental_suffix_continues_after_existing_maximum():
    existing = np.array([[1, 2], [1, 2], [5, 5]])
    existing_suffix = np.array([0, 3, 0])  # the gap (1, 2) is kept: never renumber
    new = np.array([[1, 2], [9, 9], [1, 2], [5, 5]])
    assert incremental_suffix(existing, existing_suffix, new).tolist() == [4, 0, 5, 1]


def test_incremental_suffix_with_no_existing_items_equals_fresh_numbering():
    new = np.array([[1, 1], [1, 1], [2, 2]])
    assert incremental_suffix(np.zeros((0, 2), int), np.zeros(0, int), new).tolist() == dedup_suffix(new).tolist()


def test_adding_items_never_changes_existing_sids():
    rng = np.random.default_rng(0)
    old = rng.integers(0, 3, (200, 2))
    old_suffix = dedup_suffix(old)
    old_sids = format_sid(old, old_suffix)
    new = rng.integers(0, 3, (50, 2))
    new_suffix = incremental_suffix(old, old_suffix, new)
    all_sids = np.concatenate([old_sids, format_sid(new, new_suffix)])
    assert len(set(all_sids)) == 250  # still unique
    assert (all_sids[:200] == old_sids).all()


def test_format_sid():
    assert format_sid(np.array([[12, 5, 33], [0, 1, 2]]), np.array([0, 7])).tolist() == ["12-5-33-0", "0-1-2-7"]
    assert format_sid(np.array([[12, 5]])).tolist() == ["12-5"]
