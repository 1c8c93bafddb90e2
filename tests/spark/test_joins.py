"""Item-scale join sides are broadcast only when the driver holds them (lgsid.spark.joins)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.spark


def test_can_broadcast_hand_computed():
    from lgsid.spark.joins import can_broadcast

    # 1,000 rows x 100 B x 4 copies = 400,000 B against 10 % of the driver
    assert can_broadcast(1000, 100, 4_000_000)
    assert not can_broadcast(1000, 100, 3_999_999)
    assert can_broadcast(100_000, 120, 2 << 30) and not can_broadcast(1_000_000, 120, 2 << 30)  # the data-plane bench's 2 GB driver


def test_item_side_keeps_a_side_the_driver_cannot_hold_out_of_broadcast(spark):
    from lgsid.spark.joins import item_side

    left = spark.range(50).withColumnRenamed("id", "k")
    right = spark.range(10).withColumnRenamed("id", "k")

    def plan(side):
        joined = left.join(side, "k")
        joined.collect()  # the adaptive plan is final once it ran
        return joined._jdf.queryExecution().executedPlan().toString()

    assert "BroadcastHashJoin" in plan(item_side(spark, right, 10, 100))  # tiny: Spark broadcasts it
    hinted = plan(item_side(spark, right, 10**9, 100))  # "a billion rows": never broadcast
    assert "BroadcastHashJoin" not in hinted and "SortMergeJoin" in hinted


def test_auto_broadcast_threshold_hand_computed():
    from lgsid.spark.joins import auto_broadcast_threshold

    assert auto_broadcast_threshold(2 << 30) == int(0.1 * (2 << 30) / 40)  # 5,368,709 B on the data-plane bench's 2 GB driver
    assert auto_broadcast_threshold(4 << 30) == 10 << 20  # Spark's default from 4 GiB up (the embedded default)
    assert auto_broadcast_threshold(1 << 30) == int(0.1 * (1 << 30) / 40)  # Spark's own 1g default: 2.7 MB
