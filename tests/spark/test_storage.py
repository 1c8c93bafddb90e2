"""Storage layer on the delta-rs backend: round trips, atomic failures, MERGE, CHECK constraints."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lgsid.errors import LGSIDError, ValidationError
from lgsid.storage import spark_schema, table_properties
from lgsid.tables import INTERACTIONS, ITEMS

pytestmark = pytest.mark.spark

ITEM_ROWS = [
    # item_id, name, brand, l1, l2, price, lat, lon, state, county, town, address, source
    ("a", "Joe's BBQ", None, "Food & Drink", "BBQ", 12.5, 39.8017, -89.6437, "Illinois", "Sangamon County", "Springfield", "1 Main St", "demo"),
    ("b", "Café Ünïcode", "Chain X", None, "Coffee Shop", None, 45.5234, -122.6762, "Oregon", "Multnomah County", "Portland", None, "demo"),
    ("c", "Maine Nails", "Maine Nails", "Beauty", "Nail Salon", 30.0, 43.6615, -70.2553, "Maine", "Cumberland County", "Portland", None, "files"),
]


def _items(spark, rows=ITEM_ROWS):
    return spark.createDataFrame(rows, ITEMS.schema)  # all columns nullable, so bad rows reach the store


def _sorted(pdf: pd.DataFrame, key: str) -> pd.DataFrame:
    return pdf.sort_values(key).reset_index(drop=True)


def test_deltars_table_reads_back_identically_through_spark_and_arrow(spark, store):
    res = store.write(_items(spark), "items")
    assert (res.table, res.rows) == ("items", 3)
    expected = pd.DataFrame(ITEM_ROWS, columns=[f.name for f in spark_schema(ITEMS).fields])
    via_spark = _sorted(store.read("items").toPandas(), "item_id")
    via_arrow = _sorted(pa.Table.from_batches(list(store.arrow_batches("items"))).to_pandas(), "item_id")
    pd.testing.assert_frame_equal(via_spark, expected, check_dtype=False)
    pd.testing.assert_frame_equal(via_arrow, expected, check_dtype=False)
    assert list(next(store.arrow_batches("items", columns=["item_id", "lat"])).schema.names) == ["item_id", "lat"]
    # timestamps survive the round trip as UTC instants
    ts = dt.datetime(2024, 3, 1, 12, 30, 5, tzinfo=dt.timezone.utc)
    store.write(spark.createDataFrame([("u1", "a", ts)], spark_schema(INTERACTIONS)), "interactions")
    back = store.read("interactions").collect()[0]["ts"]
    assert back.replace(tzinfo=dt.timezone.utc) == ts  # session time zone is UTC
    assert store.to_pandas("interactions")["ts"].iloc[0] == pd.Timestamp(ts)
    # primary key and description are recorded in the Delta metadata
    props = table_properties(store, "items")
    assert props["name"] == "items" and "primary key: item_id" in props["description"]


def test_injected_failure_after_files_are_written_keeps_previous_version(spark, store, monkeypatch):
    # The executors have written the new data files; the commit fails: no new version, files deleted.
    import deltalake

    store.write(_items(spark), "items")
    v = store.version("items")
    files_before = set(os.listdir(store.path("items")))

    def boom(*a, **k):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(deltalake.DeltaTable, "create_write_transaction", boom)
    with pytest.raises(LGSIDError, match=rf"writing Delta table 'items' failed; nothing was committed \(still at version {v}\).*injected"):
        store.write(_items(spark, ITEM_ROWS[:1]), "items")
    assert store.version("items") == v
    assert store.read("items").count() == 3
    assert set(os.listdir(store.path("items"))) == files_before  # the write's data files are deleted
    assert not os.path.exists(store.staging) or not os.listdir(store.staging)  # nothing left in staging


def test_failing_udf_mid_write_keeps_previous_version_and_creates_nothing(spark, store):
    from pyspark.sql import functions as F

    @F.udf("string")
    def explode_on_c(x):
        if x == "c":
            raise RuntimeError("bad row c (injected)")
        return x

    good = _items(spark).select("item_id", "name")
    store.write(good, "scratch")
    v = store.version("scratch")
    bad = _items(spark).select(explode_on_c("item_id").alias("item_id"), "name")
    with pytest.raises(LGSIDError, match=r"(?s)still at version .*bad row c \(injected\)"):
        store.write(bad, "scratch")
    assert store.version("scratch") == v and store.read("scratch").count() == 3
    with pytest.raises(LGSIDError, match="the table was not created"):
        store.write(bad, "scratch_new")
    assert not store.exists("scratch_new")
    assert not os.path.exists(store.staging) or not os.listdir(store.staging)


def test_merge_updates_inserts_keeps_and_is_idempotent(spark, store):
    store.write(_items(spark, ITEM_ROWS[:2]), "items")
    src = _items(spark, [(*ITEM_ROWS[1][:5], 99.0, *ITEM_ROWS[1][6:]), ITEM_ROWS[2]])  # b updated, c new
    r1 = store.merge(src, "items")
    after1 = _sorted(store.to_pandas("items"), "item_id")
    assert r1.rows == 3 and list(after1["item_id"]) == ["a", "b", "c"]
    assert after1.set_index("item_id").loc["b", "price"] == 99.0  # updated
    assert after1.set_index("item_id").loc["a", "price"] == 12.5  # target-only row kept
    r2 = store.merge(src, "items")
    assert r2.version == r1.version + 1
    pd.testing.assert_frame_equal(_sorted(store.to_pandas("items"), "item_id"), after1)
    with pytest.raises(ValidationError, match=r"duplicate keys \['item_id'\]"):
        store.merge(_items(spark, [ITEM_ROWS[0], ITEM_ROWS[0]]), "items")
    assert store.version("items") == r2.version


def test_check_constraint_violation_raises_and_writes_nothing(spark, store):
    store.write(_items(spark), "items")
    v, files_before = store.version("items"), set(os.listdir(store.path("items")))
    bad = list(ITEM_ROWS[0])
    bad[0], bad[6] = "z", 95.0
    with pytest.raises(ValidationError, match=r"table 'items': rows violate CHECK constraint\(s\) \{'lat_range'.*'item_id': 'z'"):
        store.write(_items(spark, ITEM_ROWS + [tuple(bad)]), "items")
    with pytest.raises(ValidationError, match="lat_range"):
        store.merge(_items(spark, [tuple(bad)]), "items")
    assert store.version("items") == v and store.read("items").count() == 3
    assert set(os.listdir(store.path("items"))) == files_before  # rejected before any data file is written
    # on a fresh table nothing is created at all
    with pytest.raises(ValidationError, match="CHECK"):
        store.write(
            spark.createDataFrame([("x", "c", "l", "p", None, None, None, 91.0, 0.0)],
                                  "item_id string, content_text string, location_text string, prompt string, state string, county string, town string, lat double, lon double"),
            "geo_prompts",
        )
    assert not store.exists("geo_prompts")


def test_not_null_violation_names_rows(spark, store):
    row = list(ITEM_ROWS[0])
    row[4] = None  # category_l2
    with pytest.raises(ValidationError, match=r"null in NOT NULL column\(s\) \['category_l2'\].*'item_id': 'a'"):
        store.write(_items(spark, [tuple(row)]), "items")
    assert not store.exists("items")


def test_to_pandas_after_merge_unifies_file_schemas(spark, store):
    # Files from the first write and from a MERGE differ in nullability / view types; the driver
    # read must still return one frame with the catalogue's columns.
    from lgsid.tables import ITEM_EMBEDDINGS

    ts = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    def f32(v):
        return np.asarray(v, "<f4").tobytes()

    rows = [("a", "m", "reference", [1.0, 0.0], 2, ts, f32([1, 0]), "x"), ("b", "m", "reference", [0.0, 1.0], 2, ts, f32([0, 1]), "y")]
    store.write(spark.createDataFrame(rows, spark_schema(ITEM_EMBEDDINGS)), "item_embeddings")
    new = [("c", "m", "aligned-1", [0.5, 0.5], 2, ts, f32([0.5, 0.5]), "z")]
    store.merge(spark.createDataFrame(new, spark_schema(ITEM_EMBEDDINGS)), "item_embeddings")
    pdf = _sorted(store.to_pandas("item_embeddings"), "item_id")
    assert list(pdf["item_id"]) == ["a", "b", "c"]
    assert list(pdf["model_version"]) == ["reference", "reference", "aligned-1"]
    assert [list(e) for e in pdf["embedding"]] == [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    assert [np.frombuffer(b, "<f4").tolist() for b in pdf["embedding_f32"]] == [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    sub = store.to_pandas("item_embeddings", columns=["item_id", "dim"])
    assert list(sub.columns) == ["item_id", "dim"] and sub["dim"].tolist() == [2, 2, 2]


def test_factory_picks_the_backend_class(spark, cfg):
    from lgsid.config import replace
    from lgsid.storage import DeltaRsStore, DeltaStore

    s = DeltaStore(spark, cfg.storage)
    assert type(s) is DeltaRsStore and isinstance(s, DeltaStore) and s.backend == "deltars"
    with pytest.raises(LGSIDError, match="storage.backend=spark but the Spark session has no Delta jars"):
        DeltaStore(spark, replace(cfg, storage={"backend": "spark"}).storage)


def test_merge_files_are_readable_by_pyarrow_and_deltalake(spark, store):
    # delta-rs' own MERGE writes Utf8View in the files' Arrow schema ("Unrecognized type: 24" in pyarrow 14)
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    store.write(_items(spark, ITEM_ROWS[:2]), "items")
    store.merge(_items(spark, [(*ITEM_ROWS[1][:5], 99.0, *ITEM_ROWS[1][6:]), ITEM_ROWS[2]]), "items")
    dt_ = DeltaTable(store.path("items"))
    assert sorted(dt_.to_pandas()["item_id"]) == ["a", "b", "c"]
    assert dt_.to_pyarrow_table().num_rows == 3 and store.count("items") == 3
    for f in dt_.file_uris():
        sch = pq.read_schema(f.replace("file://", ""))
        assert "view" not in str(sch).lower()
    hist = store.history("items", limit=1)[0]
    assert hist["lgsid.operation"] == "MERGE" and hist["lgsid.files_rewritten"] == 1


def test_overwrite_takes_the_catalogue_schema_over_an_older_stored_one(spark, store):
    # A store written by an older release: `negatives` once had a `search_ring` column. Rerunning the
    # step overwrites the table with today's catalogue schema instead of failing on the cast.
    from deltalake import DeltaTable, write_deltalake

    from lgsid.tables import NEGATIVES

    cols = [f.name for f in spark_schema(NEGATIVES).fields]
    store.write(spark.createDataFrame([], spark_schema(NEGATIVES)), "negatives")
    old = DeltaTable(store.path("negatives")).to_pyarrow_table().append_column("search_ring", pa.array([], pa.int32()))
    write_deltalake(store.path("negatives"), old, mode="overwrite", schema_mode="overwrite")
    assert "search_ring" in DeltaTable(store.path("negatives")).schema().to_arrow().names
    v = store.version("negatives")
    store.write(spark.createDataFrame([], spark_schema(NEGATIVES)), "negatives")
    assert store.version("negatives") == v + 1
    assert list(store.read("negatives").columns) == cols
