"""embed_dataframe balances rows over partitions whatever the input's file splits say."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from lgsid.config import EncoderConfig
from lgsid.embed import embed_dataframe

pytestmark = pytest.mark.spark


def _counts(df):
    return sorted(r["count"] for r in df.select(F.spark_partition_id().alias("p")).groupBy("p").count().collect())


def test_one_row_group_split_in_two_is_embedded_in_two_equal_tasks(spark, tmp_path):
    n = 40
    path = str(tmp_path / "prompts.parquet")
    pq.write_table(pa.table({"item_id": [f"i{i}" for i in range(n)], "prompt": [f"Shop {i}, Pizza; located in Austin, Texas" for i in range(n)]}),
                   path, row_group_size=n)  # one row group
    old = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "1k")  # several byte splits of one file, as a large file at scale
    try:
        df = spark.read.parquet(path)
        assert df.rdd.getNumPartitions() >= 2 and _counts(df)[-1] == n  # every row sits in one split
        out = embed_dataframe(df, "prompt", EncoderConfig(max_length=32, batch_size=16))
        counts = _counts(out)
        assert sum(counts) == n and len(counts) >= 2 and counts[-1] - counts[0] <= 1  # round-robin: equal shares
        assert out.where(F.size("embedding") != 384).count() == 0
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", old)
