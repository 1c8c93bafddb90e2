"""Broadcasts the driver can hold.

A broadcast join is built on the driver: Spark collects the build side, builds its hashed relation
and cuts it into broadcast blocks, so the driver holds several copies of the rows at once. Spark
decides on an estimate from the Parquet files' compressed size, which for a pruned item table is
several times too small: a 1M-item `(item_id, lat, lon)` side was estimated under the 10 MB
``spark.sql.autoBroadcastJoinThreshold`` and failed a 2 GB driver with "Not enough memory to build
and broadcast the table" (``bench/pipeline_scale.py --data-plane``, docs/scale.md). Item-scale
sides therefore go through :func:`item_side`, which lets Spark broadcast them only when
:func:`can_broadcast` says the driver holds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

#: Copies of a broadcast's rows the driver holds while building it (collected rows, hashed relation, blocks).
BROADCAST_COPIES = 4
#: Share of ``spark.driver.memory`` one broadcast may take.
BROADCAST_SHARE = 0.1


def driver_memory_bytes(spark: "SparkSession", default: str = "1g") -> int:
    """``spark.driver.memory`` of the running application in bytes, parsed by Spark's own JavaUtils (unset: Spark's default, 1g)."""
    value = spark.sparkContext.getConf().get("spark.driver.memory", default)
    return int(spark.sparkContext._jvm.org.apache.spark.network.util.JavaUtils.byteStringAsBytes(value))


#: How many times larger a pruned Parquet side is in memory than Spark's size estimate: 1M items' (item_id, lat, lon)
#: rows (~60 MB as rows) were estimated at ~6 MB from the files' compressed size and column widths.
ESTIMATE_FACTOR = 10
#: Spark's own default ``spark.sql.autoBroadcastJoinThreshold``.
SPARK_DEFAULT_THRESHOLD = 10 << 20


def auto_broadcast_threshold(driver_bytes: int) -> int:
    """``spark.sql.autoBroadcastJoinThreshold`` for a driver of ``driver_bytes``: Spark's 10 MB, lowered so that a side
    estimated at the threshold fits :func:`can_broadcast` (``BROADCAST_SHARE · driver / (BROADCAST_COPIES · ESTIMATE_FACTOR)``).

    2 GiB driver: 5.4 MB; 4 GiB and more: Spark's 10 MB. :func:`lgsid.spark.session.get_spark` sets it
    unless the submit or ``spark.conf`` sets the key.
    """
    return int(min(SPARK_DEFAULT_THRESHOLD, BROADCAST_SHARE * driver_bytes / (BROADCAST_COPIES * ESTIMATE_FACTOR)))


def can_broadcast(n_rows: int, row_bytes: int, driver_bytes: int) -> bool:
    """Whether ``n_rows`` rows of about ``row_bytes`` bytes fit a broadcast on a driver of ``driver_bytes``:
    ``n_rows · row_bytes · BROADCAST_COPIES <= BROADCAST_SHARE · driver_bytes``."""
    return n_rows * row_bytes * BROADCAST_COPIES <= BROADCAST_SHARE * driver_bytes


def item_side(spark: "SparkSession", df: "DataFrame", n_rows: int, row_bytes: int) -> "DataFrame":
    """``df`` as the build side of a join: unchanged (Spark may broadcast it) when :func:`can_broadcast`, else hinted
    ``merge`` so neither the planner nor adaptive execution broadcasts it."""
    return df if can_broadcast(n_rows, row_bytes, driver_memory_bytes(spark)) else df.hint("merge")
