"""Writes on the delta-rs backend: executors write the data files, the driver commits their add actions."""

from __future__ import annotations

import datetime as dt
import json
import os
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from lgsid.errors import LGSIDError
from lgsid.storage import ConcurrentWriteError, DeltaStore, spark_schema
from lgsid.storage import delta as delta_mod
from lgsid.storage.delta import write_data_files
from lgsid.tables import ITEM_EMBEDDINGS

pytestmark = pytest.mark.spark


def _parquet_in(path) -> set[str]:
    return {f for f in os.listdir(path) if f.endswith(".parquet")}


def _adds(store, name) -> list[dict]:
    return pa.table(DeltaTable(store.path(name)).get_add_actions(flatten=True)).to_pylist()


def _ids(spark, lo, hi, parts):
    from pyspark.sql import functions as F

    return spark.range(lo, hi, 1, numPartitions=parts).select(F.format_string("k%03d", "id").alias("key"), F.col("id").alias("n"))


def test_write_data_files_row_groups_files_and_stats(tmp_path):
    schema = pa.schema([pa.field("key", pa.string(), False), pa.field("n", pa.int64()), pa.field("x", pa.float64())])
    keys = [f"k{i}" for i in range(10)]
    ns = [None, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    # batches in another column order (as Spark may hand them), of 4 rows each
    t = pa.table({"x": [float(i) for i in range(10)], "n": pa.array(ns, pa.int64()), "key": keys})
    files = list(write_data_files(iter(t.to_batches(max_chunksize=4)), str(tmp_path), schema, "w1",
                                  row_group_rows=3, max_rows_per_file=6, tag="t-"))
    assert [f["rows"] for f in files] == [6, 4]  # closed after the row group that reaches 6 rows
    assert all(re.fullmatch(r"part-w1-t-[0-9a-f]{16}-lgsid\.snappy\.parquet", f["path"]) for f in files)
    assert _parquet_in(tmp_path) == {f["path"] for f in files}
    first, second = (pq.ParquetFile(tmp_path / f["path"]) for f in files)
    assert [first.metadata.row_group(i).num_rows for i in range(first.num_row_groups)] == [3, 3]
    assert [second.metadata.row_group(i).num_rows for i in range(second.num_row_groups)] == [3, 1]
    assert first.metadata.row_group(0).column(0).compression == "SNAPPY"
    assert first.schema_arrow == pa.schema([f.with_nullable(True) for f in schema])
    assert [f["size"] for f in files] == [os.path.getsize(tmp_path / f["path"]) for f in files]
    assert json.loads(files[0]["stats"]) == {
        "numRecords": 6, "nullCount": {"key": 0, "n": 1, "x": 0},
        "minValues": {"key": "k0", "n": 1}, "maxValues": {"key": "k5", "n": 5},  # floats carry no range
    }
    assert json.loads(files[1]["stats"])["minValues"] == {"key": "k6", "n": 6}
    assert pq.read_table(tmp_path / files[1]["path"]).column("key").to_pylist() == keys[6:]


def test_write_data_files_deletes_its_files_when_the_input_fails(tmp_path):
    schema = pa.schema([("n", pa.int64())])

    def batches():
        yield pa.record_batch([pa.array([1, 2, 3], pa.int64())], names=["n"])
        yield pa.record_batch([pa.array([4, 5, 6], pa.int64())], names=["n"])
        raise RuntimeError("upstream failed (injected)")

    with pytest.raises(RuntimeError, match="injected"):
        list(write_data_files(batches(), str(tmp_path), schema, "w2", row_group_rows=2, max_rows_per_file=2))
    assert _parquet_in(tmp_path) == set()


def test_write_commits_the_files_the_executors_wrote(spark, store):
    res = store.write(_ids(spark, 0, 30, 3), "scratch")
    adds = _adds(store, "scratch")
    assert res.rows == 30 and len(adds) == 3  # one file per Spark task (partition)
    assert {a["path"] for a in adds} == _parquet_in(store.path("scratch"))
    write_id = adds[0]["path"].split("-")[1]
    assert sorted(re.sub(r"-[0-9a-f]{16}-", "-X-", a["path"]) for a in adds) == [
        f"part-{write_id}-p0000{p}-a0-X-lgsid.snappy.parquet" for p in range(3)]
    for a in adds:
        t = pq.read_table(os.path.join(store.path("scratch"), a["path"]))
        keys = t.column("key").to_pylist()
        assert (a["num_records"], a["min.key"], a["max.key"]) == (t.num_rows, min(keys), max(keys))
        assert (a["min.n"], a["max.n"], a["null_count.n"]) == (min(t.column("n").to_pylist()), max(t.column("n").to_pylist()), 0)
        assert a["size_bytes"] == os.path.getsize(os.path.join(store.path("scratch"), a["path"]))
    assert sorted(r["key"] for r in store.read("scratch").collect()) == [f"k{i:03d}" for i in range(30)]
    hist = store.history("scratch", limit=1)[0]
    assert hist["lgsid.table"] == "scratch" and hist["lgsid.write_id"] == write_id


def test_catalogue_table_files_hold_row_groups_of_row_group_rows(spark, store):
    from pyspark.sql import functions as F

    ts = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    n = ITEM_EMBEDDINGS.row_group_rows + 100
    df = spark.range(0, n, 1, numPartitions=1).select(
        F.format_string("i%05d", "id").alias("item_id"), F.lit("m").alias("model_name"), F.lit("reference").alias("model_version"),
        F.array(F.col("id").cast("float"), F.lit(1.0).cast("float")).alias("embedding"), F.lit(2).alias("dim"),
        F.lit(ts).alias("created_at"), F.lit(b"\x00" * 8).alias("embedding_f32"), F.lit(None).cast("string").alias("input_sha"))
    store.write(df, "item_embeddings")
    (add,) = _adds(store, "item_embeddings")
    f = pq.ParquetFile(os.path.join(store.path("item_embeddings"), add["path"]))
    assert [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)] == [ITEM_EMBEDDINGS.row_group_rows, 100]
    assert add["num_records"] == n and add["null_count.input_sha"] == n and add["min.item_id"] == "i00000"
    assert store.count("item_embeddings") == n


def test_overwrite_removes_old_files_and_append_adds(spark, store):
    store.write(_ids(spark, 0, 4, 2), "scratch")
    old = {a["path"] for a in _adds(store, "scratch")}
    v = store.version("scratch")
    res = store.write(_ids(spark, 10, 13, 1), "scratch")
    new = {a["path"] for a in _adds(store, "scratch")}
    assert res.version == v + 1 and res.rows == 3 and len(new) == 1 and not (new & old)
    assert sorted(r["n"] for r in store.read("scratch").collect()) == [10, 11, 12]
    assert {a["path"] for a in _adds(store, "scratch")} == new  # old files removed from the snapshot
    assert sorted(DeltaTable(store.path("scratch"), version=v).to_pandas()["n"]) == [0, 1, 2, 3]  # time travel intact
    store.write(_ids(spark, 20, 22, 1), "scratch", mode="append")
    assert sorted(r["n"] for r in store.read("scratch").collect()) == [10, 11, 12, 20, 21]
    assert len(_adds(store, "scratch")) == 2
    store.write(_ids(spark, 0, 0, 1), "scratch")  # an empty overwrite empties the table
    assert store.count("scratch") == 0 and _adds(store, "scratch") == []


def test_failure_in_an_executor_task_keeps_previous_version_and_deletes_the_files(spark, store, monkeypatch):
    from pyspark.sql import functions as F

    store.write(_ids(spark, 0, 3, 1), "scratch")
    v, files_before = store.version("scratch"), _parquet_in(store.path("scratch"))

    @F.udf("bigint")
    def fail_on_25(n):
        if n == 25:
            raise RuntimeError("bad row 25 (injected)")
        return n

    deleted = []
    real = delta_mod._delete_write_files
    monkeypatch.setattr(delta_mod, "_delete_write_files", lambda *a, **k: deleted.append(real(*a, **k)) or deleted[-1])
    bad = _ids(spark, 0, 30, 3).withColumn("n", fail_on_25("n"))  # tasks 0 and 1 write their files, task 2 fails
    with pytest.raises(LGSIDError, match=rf"(?s)nothing was committed \(still at version {v}\).*bad row 25 \(injected\)"):
        store.write(bad, "scratch")
    assert deleted == [2]  # the files of the two tasks that succeeded
    assert store.version("scratch") == v and _parquet_in(store.path("scratch")) == files_before
    assert sorted(r["n"] for r in store.read("scratch").collect()) == [0, 1, 2]
    with pytest.raises(LGSIDError, match="the table was not created"):
        store.write(bad, "scratch_new")
    assert not store.exists("scratch_new")
    assert not os.path.exists(store.path("scratch_new")) or not _parquet_in(store.path("scratch_new"))


def test_only_the_returned_files_are_committed_and_leftover_attempts_are_deleted(spark, store, monkeypatch):
    # A failed or speculative task attempt leaves a file named for the same write that no returned
    # row names: it is not committed, and it is deleted once the commit lands.
    store.write(_ids(spark, 0, 2, 1), "scratch")
    before = _parquet_in(store.path("scratch"))
    real = delta_mod._pause_at_commit
    planted = []

    def plant(name):
        (mine,) = {f for f in _parquet_in(store.path(name)) - before}
        orphan = mine.replace("-a0-", "-a1-").replace("-lgsid", "x-lgsid")
        pq.write_table(pa.table({"key": ["zzz"], "n": pa.array([99], pa.int64())}), os.path.join(store.path(name), orphan))
        planted.append(orphan)
        real(name)

    monkeypatch.setattr(delta_mod, "_pause_at_commit", plant)
    store.write(_ids(spark, 5, 7, 1), "scratch")
    assert planted and planted[0] not in _parquet_in(store.path("scratch"))
    assert sorted(r["n"] for r in store.read("scratch").collect()) == [5, 6]
    assert {a["path"] for a in _adds(store, "scratch")} == _parquet_in(store.path("scratch")) - before


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_concurrent_commit_fails_with_conflict_and_keeps_the_other_writers_rows(spark, store, monkeypatch, mode):
    store.write(_ids(spark, 0, 2, 1), "scratch")
    v0 = store.version("scratch")
    other = DeltaStore(spark, store.cfg)
    real = delta_mod._pause_at_commit
    calls = {"n": 0}

    def interleave(name):  # at this write's commit point, another writer appends and commits first
        calls["n"] += 1
        if calls["n"] == 1:
            other.write(_ids(spark, 100, 101, 1), "scratch", mode="append")
        real(name)

    monkeypatch.setattr(delta_mod, "_pause_at_commit", interleave)
    with pytest.raises(ConcurrentWriteError, match=rf"write to 'scratch' conflicts with a concurrent commit: read version {v0}, the table is now at version {v0 + 1}"):
        store.write(_ids(spark, 10, 12, 1), "scratch", mode=mode)
    monkeypatch.setattr(delta_mod, "_pause_at_commit", real)
    assert store.version("scratch") == v0 + 1
    assert sorted(r["n"] for r in store.read("scratch").collect()) == [0, 1, 100]
    assert {a["path"] for a in _adds(store, "scratch")} == _parquet_in(store.path("scratch"))  # the loser's files deleted
    store.write(_ids(spark, 10, 12, 1), "scratch", mode=mode)  # the rerun commits
    assert store.version("scratch") == v0 + 2
