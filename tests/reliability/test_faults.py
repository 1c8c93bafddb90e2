"""Reliability, faults: the previous table version stays current and readable, no partial version, and
the rerun succeeds with the same content. SIGKILL runs the step in a subprocess (heavy marker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from deltalake import DeltaTable

from lgsid.errors import LGSIDError
from lgsid.storage import ConcurrentWriteError, DeltaStore, spark_schema
from lgsid.storage import delta as delta_mod
from lgsid.tables import ITEMS
from reliability_data import wait_for_pause

pytestmark = pytest.mark.spark

ROWS = [
    ("a", "Joe's BBQ", None, "Food & Drink", "BBQ", 12.5, 33.4484, -112.074, "Arizona", "Maricopa County", "Phoenix", None, "files"),
    ("b", "Cafe One", None, "Cafes & Desserts", "Coffee Shop", 4.0, 33.45, -112.07, "Arizona", "Maricopa County", "Phoenix", None, "files"),
    ("c", "Rose Pizza", None, "Food & Drink", "Pizza", 15.0, 33.5, -112.1, "Arizona", "Maricopa County", "Phoenix", None, "files"),
]


def _df(spark, rows):
    return spark.createDataFrame(rows, spark_schema(ITEMS))


def _update(rows, price):
    return [(*r[:5], price, *r[6:]) for r in rows]


def _snapshot(store, name="items"):
    """Current content through deltalake and pyarrow (sorted), or raise if any reader fails."""
    pdf = DeltaTable(store.path(name)).to_pandas().sort_values("item_id").reset_index(drop=True)
    via_spark = store.read(name).toPandas().sort_values("item_id").reset_index(drop=True)
    assert via_spark["item_id"].tolist() == pdf["item_id"].tolist()
    return pdf


def _corrupted(store, name="items") -> int:
    """Versions of ``name`` that no longer read back (through deltalake) — 0 when every version is intact."""
    bad = 0
    for v in range(store.version(name) + 1):
        try:
            DeltaTable(store.path(name), version=v).to_pyarrow_table()
        except Exception:
            bad += 1
    return bad


def test_concurrent_merges_one_conflict_no_lost_update(spark, store, case, monkeypatch):
    case.expect("two MERGEs on one table at once: one commits, the other fails with a clear conflict error; no lost update")
    store.write(_df(spark, ROWS), "items")
    v0 = store.version("items")
    other = DeltaStore(spark, store.cfg)
    calls = {"n": 0}
    real = delta_mod._pause_at_commit

    def interleave(name):  # at A's commit point, B runs its whole MERGE and commits first
        calls["n"] += 1
        if calls["n"] == 1:
            other.merge(_df(spark, _update(ROWS[1:2], 99.0)), "items")
        real(name)

    monkeypatch.setattr(delta_mod, "_pause_at_commit", interleave)
    with pytest.raises(ConcurrentWriteError, match=rf"merge into 'items' conflicts with a concurrent commit: read version {v0}, the table is now at version {v0 + 1}"):
        store.merge(_df(spark, _update(ROWS[0:1], 42.0)), "items")
    monkeypatch.setattr(delta_mod, "_pause_at_commit", real)
    after = _snapshot(store).set_index("item_id")
    assert store.version("items") == v0 + 1 and after.loc["b", "price"] == 99.0 and after.loc["a", "price"] == 12.5
    store.merge(_df(spark, _update(ROWS[0:1], 42.0)), "items")  # the rerun merges into the new version
    final = _snapshot(store).set_index("item_id")
    assert final.loc[["a", "b", "c"], "price"].tolist() == [42.0, 99.0, 15.0]  # both updates kept
    case.rows_lost(3 - len(final))
    case.corrupted_versions(_corrupted(store))
    leftovers = {os.path.basename(f) for f in os.listdir(store.path("items")) if f.endswith(".parquet")}
    live = {os.path.basename(u) for u in DeltaTable(store.path("items")).file_uris()}
    history = {os.path.basename(p) for v in range(store.version("items") + 1) for p in DeltaTable(store.path("items"), version=v).file_uris()}
    assert leftovers <= history | live  # the loser's data files were deleted


def test_python_worker_dies_mid_task(spark, store, case):
    case.expect("a Python worker exits mid-task during a write: error says nothing committed; previous version intact")
    from pyspark.sql import functions as F

    store.write(_df(spark, ROWS), "items")
    v0, before = store.version("items"), _snapshot(store)

    @F.udf("string")
    def die_on_b(x):
        if x == "b":
            os._exit(3)
        return x

    bad = _df(spark, _update(ROWS, 1.0)).withColumn("item_id", die_on_b("item_id"))
    with pytest.raises(LGSIDError, match=rf"nothing was committed \(still at version {v0}\)"):
        store.merge(bad, "items")
    after = _snapshot(store)
    pd.testing.assert_frame_equal(after, before)
    case.rows_lost(len(before) - len(after))
    case.corrupted_versions(_corrupted(store))
    assert store.merge(_df(spark, _update(ROWS, 1.0)), "items").rows == 3  # the rerun succeeds


def test_unwritable_staging_dir(spark, cfg, case, tmp_path):
    case.expect("storage.staging_dir not writable: MERGE (stages its source) fails saying nothing committed; previous version intact; "
                "a write (executors write into the table, no staging) commits; rerun works")
    from lgsid.config import replace

    good = DeltaStore(spark, cfg.storage)
    good.write(_df(spark, ROWS), "items")
    v0, before = good.version("items"), _snapshot(good)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the staging directory should be")
    bad = DeltaStore(spark, replace(cfg, storage={"staging_dir": str(blocker / "staging")}).storage)
    files_before = set(os.listdir(good.path("items")))
    with pytest.raises(LGSIDError, match=rf"writing Delta table 'items' failed; nothing was committed \(still at version {v0}\)"):
        bad.merge(_df(spark, _update(ROWS, 1.0)), "items")
    pd.testing.assert_frame_equal(_snapshot(good), before)
    assert set(os.listdir(good.path("items"))) == files_before  # no data file left behind
    case.corrupted_versions(_corrupted(good))
    case.rows_lost(len(before) - len(_snapshot(good)))
    assert bad.write(_df(spark, _update(ROWS, 2.0)), "items").version == v0 + 1  # a write needs no staging
    assert good.merge(_df(spark, _update(ROWS, 1.0)), "items").version == v0 + 2
    assert _snapshot(good)["price"].tolist() == [1.0, 1.0, 1.0]


def test_failed_commit_leaves_no_files(spark, store, case, monkeypatch):
    case.expect("the commit itself raises (I/O error): version unchanged, new data files removed, rerun works")
    import deltalake

    store.write(_df(spark, ROWS), "items")
    v0 = store.version("items")
    files_before = set(os.listdir(store.path("items")))

    def boom(self, *a, **k):
        raise OSError("log write failed (injected)")

    monkeypatch.setattr(deltalake.DeltaTable, "create_write_transaction", boom)
    with pytest.raises(LGSIDError, match=rf"nothing was committed \(still at version {v0}\).*injected"):
        store.merge(_df(spark, _update(ROWS, 5.0)), "items")
    monkeypatch.undo()
    assert store.version("items") == v0 and set(os.listdir(store.path("items"))) == files_before
    case.corrupted_versions(_corrupted(store))
    assert store.merge(_df(spark, _update(ROWS, 5.0)), "items").version == v0 + 1


CHILD = textwrap.dedent('''
    import sys
    from pyspark.sql import SparkSession
    from lgsid.config import load_config, replace
    from lgsid.storage import DeltaStore, spark_schema
    from lgsid.tables import ITEMS
    import json
    root, staging, op = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = [tuple(r) for r in json.loads(sys.argv[4])]
    spark = (SparkSession.builder.master("local[1]").config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1").config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    store = DeltaStore(spark, replace(load_config(None), storage={"root": root, "staging_dir": staging}).storage)
    df = spark.createDataFrame(rows, spark_schema(ITEMS))
    (store.merge if op == "merge" else store.write)(df, "items")
    print("committed")
''')


@pytest.mark.reliability_heavy
@pytest.mark.parametrize("op", ["merge", "write"])
def test_sigkill_during_commit(spark, cfg, case, tmp_path, op):
    case.expect("SIGKILL at the Delta commit point (subprocess): previous version current and readable; rerun gives the same content")
    import json

    store = DeltaStore(spark, cfg.storage)
    store.write(_df(spark, ROWS), "items")
    v0, before = store.version("items"), _snapshot(store)
    flag = tmp_path / "at-commit"
    new_rows = _update(ROWS, 7.0)
    env = {**os.environ, delta_mod.PAUSE_ENV: str(flag), "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, store.root, store.staging, op, json.dumps(new_rows)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_pause(proc, flag, "the commit point", 240)
        os.killpg(proc.pid, signal.SIGKILL)  # the child and its JVM
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert store.version("items") == v0
    after = _snapshot(store)
    pd.testing.assert_frame_equal(after, before)
    case.rows_lost(len(before) - len(after))
    case.corrupted_versions(_corrupted(store))
    (store.merge if op == "merge" else store.write)(_df(spark, new_rows), "items")  # the rerun
    rerun = _snapshot(store)
    assert store.version("items") == v0 + 1 and rerun["price"].tolist() == [7.0, 7.0, 7.0]
