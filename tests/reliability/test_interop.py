"""Reliability, interop: every catalogue table, after a write and a MERGE, reads back identically through
Spark, deltalake (to_pandas / to_pyarrow_table) and pyarrow.dataset; time travel; write-back under load."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from lgsid.storage import spark_schema
from lgsid.tables import CATALOGUE, ITEM_SID_FEATURES

pytestmark = pytest.mark.spark

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
FIXED = {  # values that satisfy the catalogue's CHECK constraints
    "lat": lambda i: 33.4 + i / 100, "lon": lambda i: -112.0 - i / 100, "rank": lambda i: i + 1,
    "distance_km": lambda i: 1.5 * i, "pair_type": lambda i: ("co_click", "geo_constrained")[i % 2],
    "embedding_f32": lambda i: np.asarray([i, 1.0], "<f4").tobytes(), "dim": lambda i: 2,
    "usage": lambda i: (i % 10) / 10, "collision_rate": lambda i: (i % 10) / 20, "churn": lambda i: (i % 10) / 10,  # sid_health shares
}


def _value(field, i: int):
    from pyspark.sql import types as T

    t = field.dataType
    if isinstance(t, T.ArrayType):
        return [_value(T.StructField(field.name, t.elementType), i + k) for k in range(2)]
    if field.name in FIXED:
        return FIXED[field.name](i)
    if isinstance(t, T.StringType):
        return f"{field.name}-{i}"
    if isinstance(t, (T.IntegerType, T.LongType)):
        return i
    if isinstance(t, (T.DoubleType, T.FloatType)):
        return float(i) / 2
    if isinstance(t, T.TimestampType):
        return T0 + dt.timedelta(hours=i)
    if isinstance(t, T.BinaryType):
        return bytes([i % 256]) * 4
    raise TypeError(f"no generator for {t}")


def _rows(ts, ids, salt: int = 0):
    """Rows of table ``ts`` whose primary key derives from ``ids``; ``salt`` changes the other columns."""
    sch = spark_schema(ts)
    rows = []
    for i in ids:
        row = {f.name: _value(f, i if f.name in ts.primary_key else i + salt) for f in sch.fields}
        rows.append(tuple(row[f.name] for f in sch.fields))
    return rows


def _norm(v):
    """One spelling per key value: timestamps as UTC instants (Spark's pandas gives naive session-time values)."""
    if isinstance(v, (pd.Timestamp, dt.datetime)):
        v = pd.Timestamp(v)
        return (v.tz_localize("UTC") if v.tzinfo is None else v.tz_convert("UTC")).isoformat()
    return str(v)


def _keys(pdf, ts):
    return sorted(tuple(_norm(v) for v in r) for r in pdf[list(ts.primary_key)].itertuples(index=False))


def _read_all_ways(spark, store, name, ts, version=None):
    """(Spark, deltalake to_pandas, deltalake to_pyarrow_table, pyarrow.dataset) frames of one version."""
    path = store.path(name)
    via_spark = store.read(name, version=version).toPandas()
    dtab = DeltaTable(path, version=version)
    via_pandas = dtab.to_pandas()
    via_arrow = dtab.to_pyarrow_table().to_pandas()
    via_dataset = pads.dataset(dtab.file_uris(), format="parquet").to_table().to_pandas()
    for f in dtab.file_uris():  # every data file's embedded Arrow schema is readable by pyarrow 14
        pq.read_schema(f.replace("file://", ""))
    return via_spark, via_pandas, via_arrow, via_dataset


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_catalogue_table_reads_back_everywhere(spark, store, case, name):
    case.expect("after write + MERGE: Spark, deltalake to_pandas/to_pyarrow_table and pyarrow.dataset agree on rows and keys")
    ts = CATALOGUE[name]
    sch = spark_schema(ts)
    store.write(spark.createDataFrame(_rows(ts, range(3)), sch), name)
    store.merge(spark.createDataFrame(_rows(ts, [2, 3], salt=10), sch), name)  # key 2 updated, key 3 inserted
    frames = _read_all_ways(spark, store, name, ts)
    expected_keys = _keys(spark.createDataFrame(_rows(ts, range(4)), sch).toPandas(), ts)
    lost = 0
    for pdf in frames:
        lost += len(set(expected_keys) - set(_keys(pdf, ts)))
        assert len(pdf) == 4 and _keys(pdf, ts) == expected_keys
        assert list(pdf.columns) == [f.name for f in sch.fields]
    case.rows_lost(lost)
    # the updated row carries the merged values in every reader
    probe = next((f.name for f in sch.fields if f.name not in ts.primary_key), None)
    if probe is None:  # every column is part of the key (interactions)
        return
    want = dict(zip([f.name for f in sch.fields], _rows(ts, [2], salt=10)[0]))[probe]
    for pdf in frames:
        got = pdf.set_index(list(ts.primary_key)).sort_index().iloc[2][probe]
        assert (list(got) if hasattr(got, "__len__") and not isinstance(got, (str, bytes)) else got) == want


def test_item_sid_features_as_of_earlier_version(spark, store, case):
    case.expect("item_sid_features read as of an earlier version (Spark and deltalake) returns that version's rows")
    ts, sch = ITEM_SID_FEATURES, spark_schema(ITEM_SID_FEATURES)
    v1 = store.write(spark.createDataFrame(_rows(ts, range(5)), sch), ts.name).version
    v2 = store.merge(spark.createDataFrame(_rows(ts, [0, 9], salt=100), sch), ts.name).version
    assert v2 > v1
    old = _read_all_ways(spark, store, ts.name, ts, version=v1)
    new = _read_all_ways(spark, store, ts.name, ts, version=v2)
    corrupted = 0
    for pdf in old:
        ok = len(pdf) == 5 and set(pdf.set_index("item_id").loc["item_id-0", ["sid_model_version"]]) == {"sid_model_version-0"}
        corrupted += not ok
    for pdf in new:
        ok = len(pdf) == 6 and set(pdf.set_index("item_id").loc["item_id-0", ["sid_model_version"]]) == {"sid_model_version-100"}
        corrupted += not ok
    case.corrupted_versions(corrupted)
    assert corrupted == 0


def test_write_back_under_load(spark, store, case):
    case.expect("MERGE 2k rows into 2k item_sid_features (10% changed, 10% new): rows = before + new, no duplicate keys")
    from pyspark.sql import functions as F

    n = 2000
    base = spark.range(n).select(
        F.format_string("i%05d", "id").alias("item_id"), (F.col("id") % 8).cast("int").alias("sid_l1"), (F.col("id") % 4).cast("int").alias("sid_l2"),
        F.lit(0).alias("sid_l3"), F.lit(0).alias("sid_suffix"), F.format_string("%d-%d", F.col("id") % 8, F.col("id") % 4).alias("sid"),
        F.lit("p").alias("sid_path"), F.lit("m").alias("sid_model_name"), F.lit("1").alias("sid_model_version"),
        F.lit(T0).cast("timestamp").alias("updated_at"),
    )
    store.write(base, "item_sid_features")
    changed = base.where(F.col("item_id") < "i00200").withColumn("sid_model_version", F.lit("2")).withColumn("sid_l1", F.lit(7))
    new = base.limit(n // 10).withColumn("item_id", F.concat(F.lit("new"), "item_id")).withColumn("sid_model_version", F.lit("2"))
    same = base.where(F.col("item_id") >= "i00200")
    store.merge(changed.unionByName(new).unionByName(same), "item_sid_features")
    out = DeltaTable(store.path("item_sid_features")).to_pandas()
    case.rows_lost(n + n // 10 - len(out))
    assert len(out) == n + n // 10 and out["item_id"].is_unique
    by = out.set_index("item_id")
    assert (by.loc[[f"i{i:05d}" for i in range(200)], "sid_model_version"] == "2").all()
    assert (by.loc[[f"i{i:05d}" for i in range(200)], "sid_l1"] == 7).all()
    assert (by.loc[[f"i{i:05d}" for i in range(200, n)], "sid_model_version"] == "1").all()
    assert (by.loc[[f"newi{i:05d}" for i in range(n // 10)], "sid_model_version"] == "2").all()
    assert store.count("item_sid_features") == len(out)
