"""sql/ranking_join_example.sql runs on the embedded backend through lgsid.storage.as_of, as-of joins included."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lgsid.errors import LGSIDError

pytestmark = pytest.mark.spark

SQL = Path(__file__).resolve().parents[2] / "sql" / "ranking_join_example.sql"


def _frame(spark, table, rows):
    from lgsid.storage import spark_schema
    from lgsid.tables import spec as table_spec

    return spark.createDataFrame(rows, spark_schema(table_spec(table)))


def _now() -> datetime:
    time.sleep(0.05)  # commit timestamps are milliseconds: keep "now" strictly between two commits
    t = datetime.now(timezone.utc)
    time.sleep(0.05)
    return t


def _features(item, l1, version, when):
    return (item, l1, 1, 1, 0, f"{l1}-1-1-0", "S / C / cat", "lgsid-sid-model", version, when)


@pytest.fixture
def tables(spark, store):
    """interactions on two days; item_sid_features MERGEd once between them (i1 re-tokenised, i3 new)."""
    d1, d2 = datetime(2024, 3, 1, 12), datetime(2024, 3, 2, 12)
    store.write(_frame(spark, "interactions", [("u1", "i1", d1), ("u2", "i2", d1), ("u1", "i2", d2), ("u3", "i3", d2)]), "interactions")
    store.write(_frame(spark, "item_sid_features", [_features("i1", 1, "1", d1), _features("i2", 2, "1", d1)]), "item_sid_features")
    t1 = _now()
    store.merge(_frame(spark, "item_sid_features", [_features("i1", 9, "2", d2), _features("i3", 3, "2", d2)]), "item_sid_features")
    t2 = _now()
    sid_items = [("1", "1-1-1-0", "i1", 1, 1, 1, 0), ("1", "2-1-1-0", "i2", 2, 1, 1, 0),
                 ("2", "9-1-1-0", "i1", 9, 1, 1, 0), ("2", "2-1-1-0", "i2", 2, 1, 1, 0), ("2", "3-1-1-0", "i3", 3, 1, 1, 0)]
    store.write(_frame(spark, "sid_items", sid_items), "sid_items")
    spark.createDataFrame(
        [("1", datetime(2024, 1, 1), datetime(2024, 3, 2)), ("2", datetime(2024, 3, 2), None)],
        "sid_model_version STRING, live_from TIMESTAMP, live_to TIMESTAMP",
    ).createOrReplaceTempView("versions_live")
    return t1, t2


def _script(store, t1, t2) -> str:
    """The SQL file with its storage root and its two end-of-day instants set to this test's commits."""
    text = SQL.read_text()
    for literal in ("lgsid-work/tables", "'2024-03-01 23:59:59'", "'2024-03-02 23:59:59'"):
        assert literal in text, literal
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    return (text.replace("lgsid-work/tables", store.root)
            .replace("'2024-03-01 23:59:59'", f"'{t1.strftime(fmt)}'")
            .replace("'2024-03-02 23:59:59'", f"'{t2.strftime(fmt)}'"))


def _rows(df, *cols):
    return sorted(tuple(r[c] for c in cols) for r in df.collect())


def test_ranking_sql_runs_with_point_in_time_joins(store, tables):
    from lgsid.storage.as_of import run_sql

    t1, t2 = tables
    created, history, one_day, two_days, exact = run_sql(store, _script(store, t1, t2))
    assert created.count() == 0
    assert [r["version"] for r in history.collect()] == sorted((h["version"] for h in store.history("item_sid_features")), reverse=True)
    assert "MERGE" in {r["operation"] for r in history.collect()}
    # Day 1 sees the snapshot before the MERGE: i1 still has model 1's code.
    assert _rows(one_day, "user_id", "item_id", "sid", "sid_model_version") == [("u1", "i1", "1-1-1-0", "1"), ("u2", "i2", "2-1-1-0", "1")]
    # Day 2 sees the merged snapshot: i3 exists, i2 unchanged.
    assert _rows(two_days, "user_id", "item_id", "sid", "sid_model_version") == [
        ("u1", "i1", "1-1-1-0", "1"), ("u1", "i2", "2-1-1-0", "1"), ("u2", "i2", "2-1-1-0", "1"), ("u3", "i3", "3-1-1-0", "2")]
    # Row-exact alternative: each click joins the SIDs of the model version live at its ts.
    assert _rows(exact, "user_id", "item_id", "sid", "sid_model_version") == [
        ("u1", "i1", "1-1-1-0", "1"), ("u1", "i2", "2-1-1-0", "2"), ("u2", "i2", "2-1-1-0", "1"), ("u3", "i3", "3-1-1-0", "2")]


def test_register_as_of_by_timestamp_and_version(spark, store, tables):
    from lgsid.storage.as_of import register_as_of, run_sql, version_as_of

    t1, t2 = tables
    v_now = store.version("item_sid_features")
    assert version_as_of(store, "item_sid_features", t2) == v_now
    assert version_as_of(store, "item_sid_features", t1) == v_now - 1
    assert version_as_of(store, "item_sid_features", t1.replace(tzinfo=None).isoformat(" ")) == v_now - 1  # naive = UTC
    register_as_of(store, "item_sid_features", "isf_day1", timestamp=t1)
    assert _rows(spark.table("isf_day1"), "item_id", "sid") == [("i1", "1-1-1-0"), ("i2", "2-1-1-0")]
    (n,) = run_sql(store, f"SELECT count(*) AS n FROM delta.`{store.root}/item_sid_features` VERSION AS OF {v_now - 1}")
    assert n.first()["n"] == 2
    register_as_of(store, "item_sid_features", "isf_now", version=v_now)
    assert _rows(spark.table("isf_now"), "item_id", "sid") == [("i1", "9-1-1-0"), ("i2", "2-1-1-0"), ("i3", "3-1-1-0")]


def test_as_of_before_first_commit_is_an_error(store, tables):
    from lgsid.storage.as_of import run_sql, version_as_of

    with pytest.raises(LGSIDError, match=r"before the first commit of table 'item_sid_features'"):
        version_as_of(store, "item_sid_features", "2024-03-01 23:59:59")
    with pytest.raises(LGSIDError, match="not a table under storage.root"):
        run_sql(store, "SELECT * FROM delta.`/elsewhere/item_sid_features`")
    with pytest.raises(LGSIDError, match="is not 'YYYY-MM-DD"):
        version_as_of(store, "item_sid_features", "yesterday")


def test_statements_split_on_line_end_semicolons():
    from lgsid.storage.as_of import statements

    assert statements("-- a; comment\nSELECT 1;\nSELECT ';' AS x -- trailing\n;\n\n") == ["SELECT 1", "SELECT ';' AS x"]
