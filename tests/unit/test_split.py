"""The leave-last-out split: right rows held out, ties deterministic, nothing leaks."""

import pandas as pd
import pytest

from lgsid.errors import ValidationError
from lgsid.evaluate.split import Split, assert_no_leak, leave_last_out


def _ts(m):
    return pd.Timestamp("2024-01-01") + pd.Timedelta(minutes=m)


@pytest.fixture
def interactions():
    rows = [
        ("u1", "a", 1), ("u1", "b", 5), ("u1", "c", 3),  # last = b
        ("u2", "z", 7), ("u2", "y", 7),  # tie at ts 7 -> item_id order: y then z -> test = z
        ("u3", "a", 2),  # single interaction: train only
        ("u1", "b", 5),  # exact duplicate
    ]
    return pd.DataFrame([(u, i, _ts(m)) for u, i, m in rows], columns=["user_id", "item_id", "ts"])


def test_leave_last_out_holds_out_latest(interactions):
    s = leave_last_out(interactions)
    test = dict(zip(s.test["user_id"], s.test["item_id"]))
    assert test == {"u1": "b", "u2": "z"}
    assert sorted(map(tuple, s.train[["user_id", "item_id"]].to_numpy())) == [("u1", "a"), ("u1", "c"), ("u2", "y"), ("u3", "a")]
    assert len(s.train) + len(s.test) == 6  # the duplicate row was dropped
    assert_no_leak(s)


def test_split_leaks_nothing_on_random_data():
    import numpy as np

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user_id": rng.integers(0, 30, 500).astype(str), "item_id": rng.integers(0, 50, 500).astype(str),
                       "ts": [_ts(int(m)) for m in rng.integers(0, 40, 500)]})
    s = leave_last_out(df)
    assert_no_leak(s)
    last = s.train.groupby("user_id")["ts"].max()
    assert (s.test.set_index("user_id")["ts"] >= last.reindex(s.test["user_id"]).to_numpy()).all()


def test_assert_no_leak_catches_leaks(interactions):
    s = leave_last_out(interactions)
    late = pd.DataFrame([{"user_id": "u1", "item_id": "q", "ts": _ts(99), "pos": 9}])
    with pytest.raises(ValidationError, match="user 'u1' has a train interaction at .* after the test"):
        assert_no_leak(Split(train=pd.concat([s.train, late]), test=s.test))
    with pytest.raises(ValidationError, match="also in train"):
        assert_no_leak(Split(train=pd.concat([s.train, s.test.iloc[:1]]), test=s.test))
    with pytest.raises(ValidationError, match="2 test rows"):
        assert_no_leak(Split(train=s.train, test=pd.concat([s.test, s.test.iloc[:1].assign(item_id="w")])))


def test_bad_input_is_named():
    with pytest.raises(ValidationError, match=r"missing column\(s\) \['ts'\]"):
        leave_last_out(pd.DataFrame({"user_id": ["u"], "item_id": ["i"]}))
    with pytest.raises(ValidationError, match="null user_id/item_id/ts"):
        leave_last_out(pd.DataFrame({"user_id": ["u", None], "item_id": ["i", "j"], "ts": [_ts(1), _ts(2)]}))


def test_leave_two_out_holds_out_validation_before_test(interactions):
    from lgsid.evaluate.split import leave_two_out

    s = leave_two_out(interactions)
    assert dict(zip(s.test["user_id"], s.test["item_id"])) == {"u1": "b", "u2": "z"}
    assert dict(zip(s.valid["user_id"], s.valid["item_id"])) == {"u1": "c"}  # u2 has 2 interactions: no validation row
    assert sorted(map(tuple, s.train[["user_id", "item_id"]].to_numpy())) == [("u1", "a"), ("u2", "y"), ("u3", "a")]
    assert_no_leak(s)
    late = pd.DataFrame([{"user_id": "u1", "item_id": "q", "ts": _ts(4), "pos": 9}])  # after u1's validation row (ts 3)
    with pytest.raises(ValidationError, match="user 'u1' has a train interaction at .* after the validation"):
        assert_no_leak(Split(train=pd.concat([s.train, late]), test=s.test, valid=s.valid))
    with pytest.raises(ValidationError, match="test interaction .* is also in train"):
        assert_no_leak(Split(train=s.train, test=s.test, valid=pd.concat([s.valid, s.test.iloc[1:]])))
