"""Time-ordered train / validation / test split of the interactions, and the check that nothing leaks.

Every user's interactions are ordered by ``(ts, item_id)``; the last one is the test target, the
one before it the validation target (users with >= 3 interactions), all earlier ones are training
history. Users with fewer than ``min_interactions`` interactions stay entirely in train (they
still shape the models but are never scored). Downstream models (TIGER, SASRec, DIN) train on
``train`` only; choices (early stopping, the ranker's fit) are made on the validation targets with
the train rows as history; at test time a user's history is their train rows plus their
validation row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from lgsid.errors import ValidationError


@dataclass(frozen=True)
class Split:
    """Train/validation/test interactions.

    Attributes:
        train: columns user_id, item_id, ts, pos (0-based position in the user's time order).
        test: one row per evaluated user: user_id, item_id, ts, pos.
        valid: at most one row per user, the interaction just before the user's test row (same
            columns); empty under :func:`leave_last_out`.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    valid: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=["user_id", "item_id", "ts", "pos"]))


def leave_last_out(interactions: pd.DataFrame, min_interactions: int = 2) -> Split:
    """Hold out every user's most recent interaction.

    Ties in ``ts`` are broken by ``item_id`` so the split is deterministic.

    Args:
        interactions: columns user_id, item_id, ts.
        min_interactions: a user needs at least this many interactions (>= 2) to get a test row.

    Returns:
        :class:`Split`; ``train ∪ test`` equals the input (exact duplicates removed).

    Raises:
        ValidationError: a required column is missing or holds nulls.
    """
    missing = [c for c in ("user_id", "item_id", "ts") if c not in interactions.columns]
    if missing:
        raise ValidationError(f"interactions: missing column(s) {missing}; got {list(interactions.columns)}")
    if min_interactions < 2:
        raise ValueError(f"min_interactions must be >= 2 (a test row needs history), got {min_interactions}")
    df = interactions[["user_id", "item_id", "ts"]].drop_duplicates()
    nulls = df[df.isna().any(axis=1)]
    if len(nulls):
        raise ValidationError(f"interactions: null user_id/item_id/ts in rows {nulls.head(3).to_dict('records')}")
    df = df.sort_values(["user_id", "ts", "item_id"], kind="mergesort").reset_index(drop=True)
    df["pos"] = df.groupby("user_id").cumcount()
    n = df.groupby("user_id")["pos"].transform("size")
    is_test = (df["pos"] == n - 1) & (n >= min_interactions)
    return Split(train=df[~is_test].reset_index(drop=True), test=df[is_test].reset_index(drop=True))


def leave_two_out(interactions: pd.DataFrame, min_interactions: int = 2) -> Split:
    """Hold out every user's most recent interaction for test and the one before it for validation.

    A user with exactly 2 interactions gets a test row and no validation row. Ties as in
    :func:`leave_last_out`, which this extends: ``train ∪ valid`` of the result is the ``train`` of
    :func:`leave_last_out` on the same input, and ``test`` is the same.

    Returns:
        :class:`Split` with ``valid`` filled.
    """
    s = leave_last_out(interactions, min_interactions)
    tr = s.train
    tested = tr["user_id"].isin(s.test["user_id"])
    n = tr.groupby("user_id")["pos"].transform("size")
    is_valid = tested & (tr["pos"] == n - 1) & (n >= 2)  # the user's last train row, when one stays behind it
    return Split(train=tr[~is_valid].reset_index(drop=True), test=s.test, valid=tr[is_valid].reset_index(drop=True))


def assert_no_leak(split: Split) -> None:
    """Check the split: no validation interaction is visible in training, no test one in training or validation.

    Checks, for validation against train and for test against train ∪ validation: at most one row
    per user; no held-out row (user, item, ts) appears in the earlier rows; every held-out row is at
    or after the same user's latest earlier timestamp; a row at exactly that timestamp sorts after
    it by item_id (the documented tie-break).

    Raises:
        ValidationError: names the first offending user.
    """
    if len(split.valid):
        _no_leak(split.train, split.valid, "validation")
    _no_leak(pd.concat([split.train, split.valid], ignore_index=True) if len(split.valid) else split.train, split.test, "test")


def _no_leak(tr: pd.DataFrame, te: pd.DataFrame, what: str) -> None:
    """``te`` (held out) against ``tr`` (earlier rows), see :func:`assert_no_leak`."""
    dup = te[te.duplicated("user_id", keep=False)]
    if len(dup):
        raise ValidationError(f"split leaks: user {dup['user_id'].iloc[0]!r} has {int((te['user_id'] == dup['user_id'].iloc[0]).sum())} {what} rows")
    both = te.merge(tr, on=["user_id", "item_id", "ts"], how="inner")
    if len(both):
        r = both.iloc[0]
        raise ValidationError(f"split leaks: {what} interaction (user {r['user_id']!r}, item {r['item_id']!r}, ts {r['ts']}) is also in train")
    last = tr.sort_values(["user_id", "ts", "item_id"]).groupby("user_id").tail(1)[["user_id", "ts", "item_id"]]
    j = te.merge(last, on="user_id", how="inner", suffixes=("", "_train"))
    bad = j[(j["ts"] < j["ts_train"]) | ((j["ts"] == j["ts_train"]) & (j["item_id"] < j["item_id_train"]))]
    if len(bad):
        r = bad.iloc[0]
        raise ValidationError(f"split leaks: user {r['user_id']!r} has a train interaction at {r['ts_train']} after the {what} interaction at {r['ts']}")
