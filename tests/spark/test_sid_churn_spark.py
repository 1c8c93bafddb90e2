"""SID churn in Spark (lgsid.sid_churn.churn_between / churn_of_versions) equals the numpy definition on the same rows."""

from __future__ import annotations

import pytest

from tests.unit.test_sid_churn import NEW, OLD

pytestmark = pytest.mark.spark


def _rows(version, codes, suffix=0, levels=3):
    return [(version, "-".join(str(c) for c in row[:levels]) + f"-{suffix}", f"i{i}",
             *[int(c) for c in row[:levels]], *([None] * (3 - levels)), suffix) for i, row in enumerate(codes)]


def test_churn_between_matches_numpy_and_reads_sid_items(spark, tmp_path):
    from lgsid.config import load_config, replace
    from lgsid.sid_churn import churn_between, churn_of_versions, sid_churn
    from lgsid.storage import DeltaStore

    schema = "sid_model_version STRING, sid STRING, item_id STRING, sid_l1 INT, sid_l2 INT, sid_l3 INT, sid_suffix INT"
    # version 2 has one more item (i5, not compared) and item i4 differs only in its dedup suffix
    new_rows = _rows("2", NEW) + [("2", "7-7-7-0", "i5", 7, 7, 7, 0)]
    new_rows[4] = ("2", "9-0-0-1", "i4", 9, 0, 0, 1)
    df = spark.createDataFrame(_rows("1", OLD) + new_rows, schema)
    store = DeltaStore(spark, replace(load_config(None), storage={"root": str(tmp_path / "t"), "staging_dir": str(tmp_path / "s")}).storage)
    store.write(df, "sid_items")
    got = churn_of_versions(store, "1", "2")
    assert {k: got[k] for k in ("sid_churn_l1", "sid_churn_l1_l2", "sid_churn_full")} == sid_churn(OLD, NEW)
    assert got["sid_churn_sid"] == pytest.approx(4 / 5) and got["sid_churn_items"] == 5.0  # 3 code changes + 1 suffix
    assert churn_of_versions(store, "1", "3") is None  # no common items

    # two-level models: sid_l3 null on both sides counts as equal
    two = spark.createDataFrame(_rows("a", OLD, levels=2) + _rows("b", NEW, levels=2), schema)
    got2 = churn_between(two.where("sid_model_version = 'a'"), two.where("sid_model_version = 'b'"))
    assert (got2["sid_churn_l1"], got2["sid_churn_l1_l2"], got2["sid_churn_full"]) == (0.2, 0.4, 0.4)
