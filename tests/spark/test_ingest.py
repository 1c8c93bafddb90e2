"""Step ``ingest`` on tiny inputs the tests write: demo, Foursquare TSV, CSV/Parquet files; strict and quarantine."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from lgsid.config import load_config, replace
from lgsid.errors import ValidationError
from lgsid.steps.ingest import run
from lgsid.storage import DeltaStore

pytestmark = pytest.mark.spark

TABLES = ("items", "users", "interactions", "items_rejects", "interactions_rejects")

ITEMS_CSV = """item_id,lat,lon,name,category,parent_category,brand,price,address
a1,39.8017,-89.6437,Joe's BBQ,BBQ,Food & Drink,,12.5,1 Main St
a2,39.7900,-89.6500,Cafe One,Coffee Shop,,,4,
a3,45.5234,-122.6762,Rose Pizza,Pizza,,Pizza Co,15,
a4,43.6615,-70.2553,Maine Nails,Nail Salon,,,30,
"""
INTER_CSV = """user_id,item_id,timestamp
u1,a1,2024-01-01T10:00:00
u1,a2,2024-01-02 10:00:00
u2,a3,2024-01-03T11:00:00
u2,a4,1704280000
u3,a1,2024-01-05T10:00:00
"""
FSQ_LINES = [
    "470\tv00000000000000000000a1\t4bf58dd8d48988d1e0931735\tCoffee Shop\t40.7198\t-74.0025\t-240\tTue Apr 03 18:00:09 +0000 2012",
    "470\tv00000000000000000000b2\t4bf58dd8d48988d116941735\tBar\t40.7605\t-73.9840\t-240\tTue Apr 03 18:30:00 +0000 2012",
    "979\tv00000000000000000000a1\t4bf58dd8d48988d1e0931735\tCoffee Shop\t40.7199\t-74.0026\t-240\tWed Apr 04 09:00:00 +0000 2012",
    "979\tv00000000000000000000c3\t4bf58dd8d48988d1fa931735\tNail Salon\t35.6895\t139.6917\t540\tWed Apr 04 10:00:00 +0000 2012",
    "555\tv00000000000000000000a1\t4bf58dd8d48988d1e0931735\tCoffee Shop\t40.7198\t-74.0025\t-240\tThu Apr 05 09:00:00 +0000 2012",
]


def _cfg(root, **ingest):
    w = root
    return replace(
        load_config(None),
        storage={"root": str(w / "tables"), "staging_dir": str(w / "staging")},
        spark={"petastorm_cache_dir": str(w / "petastorm"), "shuffle_partitions": 1},
        ingest=ingest,
        demo={"n_items": 150, "n_users": 40, "n_interactions": 600, "n_towns": 30},
    )


def _versions(store):
    return {t: store.version(t) for t in TABLES}


def _write_files(tmp_path, items=ITEMS_CSV, inter=INTER_CSV):
    (tmp_path / "items.csv").write_text(items)
    (tmp_path / "interactions.csv").write_text(inter)
    return {"source": "files", "items_path": str(tmp_path / "items.csv"), "interactions_path": str(tmp_path / "interactions.csv")}


@pytest.fixture(scope="module")
def files_run(spark, tmp_path_factory):
    """One strict CSV ingest, shared: its tables must stay untouched by the failing ingests below."""
    root = tmp_path_factory.mktemp("files")
    cfg = _cfg(root, **_write_files(root))
    summary = run(spark, cfg)
    return cfg, DeltaStore(spark, cfg.storage), summary


def test_demo_ingest_writes_tables_and_rerun_is_idempotent(spark, tmp_path):
    cfg = _cfg(tmp_path)
    s1 = run(spark, cfg)
    store = DeltaStore(spark, cfg.storage)
    assert {r.table: r.rows for r in s1.tables} == {"items": 150, "users": 40, "interactions": 600}
    first = {t: store.to_pandas(t) for t in ("items", "users", "interactions")}
    v1 = _versions(store)
    s2 = run(spark, cfg)
    for t in ("items", "users", "interactions"):
        key = list(first[t].columns[:3]) if t == "interactions" else [first[t].columns[0]]
        pd.testing.assert_frame_equal(
            store.to_pandas(t).sort_values(key).reset_index(drop=True), first[t].sort_values(key).reset_index(drop=True)
        )
        assert store.version(t) == v1[t] + 1  # one commit per table per run
    assert s2.metrics["rejected_items"] == 0 and not store.exists("items_rejects")  # strict mode writes no rejects table
    assert first["items"]["source"].eq("demo").all()


def test_files_csv_import(files_run):
    cfg, store, summary = files_run
    items = store.to_pandas("items").set_index("item_id")
    assert list(items.index.sort_values()) == ["a1", "a2", "a3", "a4"]
    assert items.loc["a1", ["state", "county", "town"]].tolist() == ["Illinois", "Sangamon County", "Springfield"]
    assert items.loc["a3", ["state", "town"]].tolist() == ["Oregon", "Portland"]
    assert items.loc["a4", ["state", "town"]].tolist() == ["Maine", "Portland"]
    assert items.loc["a1", "category_l1"] == "Food & Drink" and items.loc["a2", "category_l1"] == "Cafes & Desserts"
    assert items.loc["a4", "category_l1"] == "Beauty" and items.loc["a3", "brand"] == "Pizza Co"
    assert items.loc["a1", "brand"] == "Joe's BBQ" and items.loc["a1", "address"] == "1 Main St"
    assert items["source"].eq("files").all() and items.loc["a2", "price"] == 4.0
    inter = store.to_pandas("interactions")
    assert sorted(inter["user_id"].unique()) == ["u1", "u2"]  # u3 has 1 interaction < min_user_interactions=2
    assert inter.set_index("item_id").loc["a4", "ts"] == pd.Timestamp(1704280000, unit="s", tz="UTC")
    users = store.to_pandas("users").set_index("user_id")
    assert users.loc["u1", "home_lat"] == pytest.approx((39.8017 + 39.79) / 2)
    assert users.loc["u1", "state"] == "Illinois"
    assert summary.metrics["input_items"] == 4 and summary.metrics["input_interactions"] == 5
    assert summary.metrics["rows_interactions"] == 4


def test_files_parquet_import_matches_csv(spark, tmp_path, files_run):
    _, csv_store, _ = files_run
    items = pd.read_csv(pd.io.common.StringIO(ITEMS_CSV))
    inter = pd.read_csv(pd.io.common.StringIO(INTER_CSV))
    inter["timestamp"] = [pd.Timestamp(x, tz="UTC") if not x.isdigit() else pd.Timestamp(int(x), unit="s", tz="UTC") for x in inter["timestamp"]]
    items.to_parquet(tmp_path / "items.parquet")
    inter.to_parquet(tmp_path / "interactions.parquet")  # pandas' default: nanosecond timestamps, which Spark cannot read
    assert str(pq.read_schema(tmp_path / "interactions.parquet").field("timestamp").type) == "timestamp[ns, tz=UTC]"
    cfg = _cfg(tmp_path, source="files", items_path=str(tmp_path / "items.parquet"), interactions_path=str(tmp_path / "interactions.parquet"))
    s = run(spark, cfg)
    assert s.metrics["truncated_timestamps"] == 0
    assert any("['timestamp'] read as microseconds UTC" in n for n in s.notes)
    assert not list((tmp_path / "staging").glob("ingest-*"))  # the staged microsecond copy is removed
    store = DeltaStore(spark, cfg.storage)
    for t, key in (("items", ["item_id"]), ("interactions", ["user_id", "item_id"]), ("users", ["user_id"])):
        a = store.to_pandas(t).sort_values(key).reset_index(drop=True)
        b = csv_store.to_pandas(t).sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_files_without_name_and_zoned_timestamps(spark, tmp_path):
    # Like ../shared/data/phoenix: no name column; ISO strings with Z, an offset, none (= UTC) and fractional seconds.
    items = "item_id,lat,lon,category\n4b196b3af964a52000dd23e3,39.8017,-89.6437,Rock Club\nx2,39.79,-89.65,Bar\n"
    inter = (
        "user_id,item_id,timestamp\n"
        "7,4b196b3af964a52000dd23e3,2012-04-03T18:09:00Z\n"
        "7,x2,2012-04-03T20:09:00+02:00\n"
        "8,x2,2012-04-03 18:09:00.25\n"
        "8,4b196b3af964a52000dd23e3,2012-04-03T18:09:00.123456789Z\n"
    )
    cfg = _cfg(tmp_path, **_write_files(tmp_path, items, inter))
    s = run(spark, cfg)
    store = DeltaStore(spark, cfg.storage)
    got = store.to_pandas("items").set_index("item_id")
    assert got.loc["4b196b3af964a52000dd23e3", "name"] == "Rock Club dd23e3"  # category + the id's last 6 characters
    assert got.loc["x2", ["name", "brand", "category_l1"]].tolist() == ["Bar x2", "Bar x2", "Nightlife"]
    assert any("no name column" in n for n in s.notes)
    assert s.metrics["synthesised_names"] == 2
    ts = store.to_pandas("interactions").sort_values(["user_id", "item_id"])["ts"].tolist()
    assert ts == [pd.Timestamp("2012-04-03 18:09:00", tz="UTC"), pd.Timestamp("2012-04-03 18:09:00", tz="UTC"),
                  pd.Timestamp("2012-04-03 18:09:00.123456", tz="UTC"), pd.Timestamp("2012-04-03 18:09:00.25", tz="UTC")]


def test_foursquare_import(spark, tmp_path):
    path = tmp_path / "dataset_TSMC2014_NYC.txt"
    path.write_text("\n".join(FSQ_LINES) + "\n")
    cfg = _cfg(tmp_path, source="foursquare", foursquare_path=str(path), min_user_interactions=1, min_item_interactions=1)
    s = run(spark, cfg)
    store = DeltaStore(spark, cfg.storage)
    items = store.to_pandas("items").set_index("item_id")
    assert sorted(items.index) == ["v00000000000000000000a1", "v00000000000000000000b2", "v00000000000000000000c3"]
    a1 = items.loc["v00000000000000000000a1"]
    assert (a1["name"], a1["category_l2"], a1["category_l1"]) == ("Coffee Shop 0000a1", "Coffee Shop", "Cafes & Desserts")
    assert (a1["lat"], a1["lon"]) == (40.7198, -74.0025)  # the venue's first check-in
    assert items.loc["v00000000000000000000b2", "category_l1"] == "Nightlife"
    c3 = items.loc["v00000000000000000000c3"]
    assert c3["state"] == "Tokyo" and c3["county"] == c3["town"]
    assert a1["state"] in ("New York", "New Jersey") and a1["source"] == "foursquare"
    inter = store.to_pandas("interactions")
    assert len(inter) == 5 and inter["ts"].min() == pd.Timestamp("2012-04-03 18:00:09", tz="UTC")
    users = store.to_pandas("users").set_index("user_id")
    assert users.loc["979", "home_lat"] == pytest.approx((40.7198 + 35.6895) / 2)  # centroid of the visited venues
    assert s.metrics["input_checkins"] == 5


def test_blank_names_are_synthesised_like_an_absent_column(spark, tmp_path):
    # A name column that is present but empty (as public check-in exports have it): empty, quoted-empty
    # and whitespace-only names are synthesised exactly as for an absent column; real names are kept.
    items = (
        "item_id,lat,lon,name,category\n"
        "4b196b3af964a52000dd23e3,39.8017,-89.6437,,Rock Club\n"
        'x2,39.79,-89.65,"",Bar\n'
        "x3,39.78,-89.66,   ,Bar\n"
        "x4,39.77,-89.67,Joe's,Bar\n"
    )
    inter = "user_id,item_id,timestamp\n7,4b196b3af964a52000dd23e3,2012-04-03T18:09:00Z\n7,x2,2012-04-03T19:09:00Z\n8,x3,2012-04-03T20:09:00Z\n8,x4,2012-04-03T21:09:00Z\n"
    cfg = _cfg(tmp_path, **_write_files(tmp_path, items, inter), min_user_interactions=0, min_item_interactions=0)
    s = run(spark, cfg)
    got = DeltaStore(spark, cfg.storage).to_pandas("items").set_index("item_id").sort_index()
    assert got["name"].to_dict() == {"4b196b3af964a52000dd23e3": "Rock Club dd23e3", "x2": "Bar x2", "x3": "Bar x3", "x4": "Joe's"}
    assert got["brand"].to_dict() == got["name"].to_dict()  # brand falls back to the (synthesised) name
    assert s.metrics["rejected_items"] == 0 and s.metrics["synthesised_names"] == 3
    assert "3 of 4 items have a blank name: name = '<category> <last 6 characters of item_id>' (as for Foursquare venues)" in s.notes


BAD_CASES = {
    # name: (items csv, interactions csv, expected message regex)
    "lat_out_of_range": (ITEMS_CSV.replace("a2,39.7900", "a2,123.0"), INTER_CSV, r"items\.csv:line 3: lat out of range \[-90, 90\]: 123\.0"),
    "null_lat": (ITEMS_CSV.replace("a2,39.7900", "a2,"), INTER_CSV, r"items\.csv:line 3: missing lat"),
    "unparseable_lon": (ITEMS_CSV.replace("-122.6762", "abc"), INTER_CSV, r"items\.csv:line 4: unparseable lon: 'abc'"),
    "duplicate_item_id": (ITEMS_CSV.replace("a2,39.7900", "a1,39.7900"), INTER_CSV, r"items\.csv:line 3: duplicate item_id a1 \(first at items\.csv:line 2\)"),
    "missing_category": (ITEMS_CSV.replace("Cafe One,Coffee Shop", "Cafe One,"), INTER_CSV, r"items\.csv:line 3: missing category"),
    "empty_items": (ITEMS_CSV.splitlines()[0] + "\n", INTER_CSV, r"empty input: ingest\.items_path .*items\.csv has no data rows"),
    "missing_column": (ITEMS_CSV.replace(",category,", ",kind,"), INTER_CSV, r"missing required column\(s\) \['category'\]"),
    "bad_timestamp": (ITEMS_CSV, INTER_CSV.replace("u1,a2,2024-01-02 10:00:00", "u1,a2,yesterday"), r"interactions\.csv:line 3: unparseable timestamp \(ts\): 'yesterday'"),
    "unknown_item": (ITEMS_CSV, INTER_CSV.replace("u2,a3,", "u2,a9,"), r"interactions\.csv:line 4: unknown item_id a9"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_fails_strict_and_writes_nothing(spark, tmp_path, files_run, case):
    cfg, store, _ = files_run
    before = _versions(store)
    items, inter, match = BAD_CASES[case]
    bad_cfg = replace(cfg, ingest=_write_files(tmp_path, items, inter))
    with pytest.raises(ValidationError, match=match):
        run(spark, bad_cfg)
    assert _versions(store) == before


@pytest.mark.parametrize(
    "line, match",
    [
        ("470\tv1\tc\tBar\t40.7\t-74.0\t-240", r"TSMC2014_NYC\.txt:line 2: expected 8 tab-separated fields, got 7"),
        ("470\tv1\tc\tBar\t40.7\t-74.0\t-240\tsometime", r"line 2: unparseable utc_time \(ts\): 'sometime'"),
    ],
)
def test_bad_foursquare_line_fails_strict(spark, tmp_path, files_run, line, match):
    cfg, store, _ = files_run
    before = _versions(store)
    path = tmp_path / "dataset_TSMC2014_NYC.txt"
    path.write_text(FSQ_LINES[0] + "\n" + line + "\n")
    with pytest.raises(ValidationError, match=match):
        run(spark, replace(cfg, ingest={"source": "foursquare", "foursquare_path": str(path)}))
    assert _versions(store) == before


def test_quarantine_keeps_good_rows_and_accounts_for_every_row(spark, tmp_path):
    items = ITEMS_CSV + "a5,95.0,0.0,Bad Lat,BBQ,,,1,\na2,39.0,-89.0,Dup,BBQ,,,1,\na6,40.0,-80.0,No Category,,,,1,\n"
    inter = INTER_CSV + "u1,a5,2024-02-01T00:00:00\nu2,a1,not a time\nu1,a1,2024-01-01T10:00:00\n"
    ing = _write_files(tmp_path, items, inter)
    cfg = _cfg(tmp_path, **ing, on_bad_rows="quarantine", min_user_interactions=0, min_item_interactions=0)
    s = run(spark, cfg)
    store = DeltaStore(spark, cfg.storage)
    irej = store.to_pandas("items_rejects").sort_values("source_row")
    assert [r.split(" (")[0] for r in irej["reject_reason"]] == ["lat out of range [-90, 90]: 95.0", "duplicate item_id a2", "missing category"]
    assert list(irej["source_row"]) == ["items.csv:line 6", "items.csv:line 7", "items.csv:line 8"]
    assert json.loads(irej["row_json"].iloc[0])["item_id"] == "a5"
    assert irej["rejected_at"].notna().all()
    xrej = store.to_pandas("interactions_rejects").sort_values("source_row")
    assert list(xrej["source_row"]) == ["interactions.csv:line 7", "interactions.csv:line 8", "interactions.csv:line 9"]
    assert xrej["reject_reason"].iloc[0] == "unknown item_id a5 (not among the valid items)"
    assert xrej["reject_reason"].iloc[1] == "unparseable timestamp (ts): 'not a time'"
    assert xrej["reject_reason"].iloc[2].startswith("duplicate interaction u1|a1|")
    # no row silently disappears: accepted + rejected = input
    assert s.metrics["input_items"] == 7 and s.metrics["input_interactions"] == 8
    assert store.count("items") + len(irej) == s.metrics["input_items"]
    assert store.count("interactions") + len(xrej) == s.metrics["input_interactions"]
