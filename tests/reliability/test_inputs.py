"""Reliability, inputs: each bad input is a one-line error naming file, line/row and column with nothing
written; each legitimate format is accepted and counted (every input row accepted or rejected)."""

from __future__ import annotations

import pandas as pd
import pytest
from reliability_data import INTER_CSV, ITEMS_CSV, config, versions, write_inputs

from lgsid.config import load_config
from lgsid.errors import ConfigError, LGSIDError, ValidationError
from lgsid.steps.ingest import run
from lgsid.sources.checkins import read_interactions_file, read_items_file
from lgsid.storage import DeltaStore
from lgsid.validation import validate_interactions, validate_items

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def baseline(spark, tmp_path_factory):
    """One strict ingest of the tiny dataset: the failing cases below must leave its tables as they are."""
    root = tmp_path_factory.mktemp("baseline")
    cfg = config(root, **write_inputs(root))
    run(spark, cfg)
    store = DeltaStore(spark, cfg.storage)
    return cfg, store, versions(store), store.count("items")


def _fails_and_writes_nothing(spark, baseline, tmp_path, case, match, items=ITEMS_CSV, inter=INTER_CSV, **ingest):
    """Run a strict ingest of bad input against the baseline's tables: one-line error, nothing written."""
    from lgsid.config import replace

    cfg, store, before, n_items = baseline
    bad = replace(cfg, ingest={**write_inputs(tmp_path, items, inter), "min_user_interactions": 0, "min_item_interactions": 0, **ingest})
    with pytest.raises(LGSIDError, match=match) as ei:
        run(spark, bad)
    msg = str(ei.value)
    assert "\n" not in msg and "Traceback" not in msg and "at org.apache" not in msg  # one line, no JVM trace
    after = versions(store)
    case.corrupted_versions(sum(after[t] != before[t] for t in before))
    case.rows_lost(n_items - store.count("items"))
    assert after == before


def _items(spark, tmp_path, data, name="items.csv", **kw):
    """Read + validate an items file: (good pandas, rejects pandas, counts)."""
    p = tmp_path / name
    if isinstance(data, bytes):
        p.write_bytes(data)
    elif isinstance(data, str):
        p.write_text(data)
    else:  # a pandas frame -> Parquet
        data.to_parquet(p, **kw.pop("parquet", {}))
    counts: dict = {}
    raw = read_items_file(spark, str(p), kw.get("delimiter", ","), kw.get("encoding", "utf-8"), str(tmp_path / "staging"), counts)
    good, rej = validate_items(raw)
    return good.toPandas(), rej.toPandas(), counts, raw.count()


def _inter(spark, tmp_path, data, name="interactions.csv", items=None, **kw):
    p = tmp_path / name
    if isinstance(data, str):
        p.write_text(data)
    else:
        data.to_parquet(p, **kw.pop("parquet", {}))
    counts: dict = {}
    raw = read_interactions_file(spark, str(p), ",", "utf-8", str(tmp_path / "staging"), counts)
    if items is None:
        items = spark.createDataFrame([(i,) for i in raw.toPandas()["item_id"].dropna().unique()], "item_id string")
    good, rej = validate_interactions(raw, items)
    good = good.toPandas()
    good["ts"] = good["ts"].dt.tz_localize("UTC")  # Spark's pandas gives naive values in the session zone (UTC)
    return good, rej.toPandas(), counts, raw.count()


def _accounted(case, n_in, good, rej):
    case.rows_lost(n_in - len(good) - len(rej))
    assert len(good) + len(rej) == n_in


# ----------------------------------------------------------------------------- timestamps
def _ts_frame(ts):
    return pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a1", "a2", "a3"], "timestamp": ts})


def test_parquet_ns_timestamps(spark, tmp_path, case):
    case.expect("pandas-default Parquet (ns): accepted, cast to us UTC, sub-us digits truncated and counted")
    ts = pd.to_datetime(["2024-01-01 10:00:00.123456789", "2024-01-02 10:00:00", "2024-01-03 11:00:00.5"], format="ISO8601").tz_localize("UTC")
    good, rej, counts, n = _inter(spark, tmp_path, _ts_frame(ts), "clicks.parquet")
    _accounted(case, n, good, rej)
    assert counts["truncated_timestamps"] == 1 and counts["recast_timestamp_columns"] == ["timestamp"]
    assert sorted(good["ts"]) == [pd.Timestamp("2024-01-01 10:00:00.123456", tz="UTC"),
                                  pd.Timestamp("2024-01-02 10:00:00", tz="UTC"), pd.Timestamp("2024-01-03 11:00:00.5", tz="UTC")]
    assert not list((tmp_path / "staging").glob("ingest-*"))


def test_parquet_ms_timestamps(spark, tmp_path, case):
    case.expect("Parquet with ms timestamps: accepted as is, same instants")
    ts = pd.to_datetime(["2024-01-01 10:00:00.123", "2024-01-02 10:00:00", "2024-01-03 11:00:00"], format="ISO8601").tz_localize("UTC")
    good, rej, counts, n = _inter(spark, tmp_path, _ts_frame(ts), "clicks.parquet", parquet={"coerce_timestamps": "ms"})
    _accounted(case, n, good, rej)
    assert counts["recast_timestamp_columns"] == [] and good["ts"].min() == pd.Timestamp("2024-01-01 10:00:00.123", tz="UTC")


def test_parquet_tz_aware_and_naive_timestamps(spark, tmp_path, case):
    case.expect("Parquet timestamps in a time zone keep their instant; naive ones are taken as UTC")
    local = pd.to_datetime(["2024-01-01 03:00:00", "2024-01-02 03:00:00", "2024-01-03 04:00:00"]).tz_localize("America/Phoenix")
    good, rej, _, n = _inter(spark, tmp_path, _ts_frame(local), "tz.parquet")
    _accounted(case, n, good, rej)
    assert sorted(good["ts"]) == sorted(local.tz_convert("UTC"))
    naive = pd.to_datetime(["2024-01-01 10:00:00", "2024-01-02 10:00:00", "2024-01-03 11:00:00"])
    good2, _, counts, _ = _inter(spark, tmp_path, _ts_frame(naive), "naive.parquet")
    assert counts["recast_timestamp_columns"] == ["timestamp"]
    assert sorted(good2["ts"]) == sorted(naive.tz_localize("UTC"))


def test_iso_strings_with_z_and_offsets(spark, tmp_path, case):
    case.expect("ISO strings with Z, +hh:mm, -hhmm, none (= UTC), fractions, epoch seconds: all one instant")
    csv = ("user_id,item_id,timestamp\n" "u1,a1,2024-01-01T10:00:00Z\n" "u1,a2,2024-01-01T12:00:00+02:00\n"
           "u2,a3,2024-01-01T03:00:00-0700\n" "u2,a1,2024-01-01 10:00:00\n" "u3,a1,2024-01-01T10:00:00.000000Z\n" "u3,a2,1704103200\n")
    good, rej, _, n = _inter(spark, tmp_path, csv)
    _accounted(case, n, good, rej)
    assert set(good["ts"]) == {pd.Timestamp("2024-01-01 10:00:00", tz="UTC")} and len(good) == 6


# ----------------------------------------------------------------------------- CSV dialects
def test_csv_latin1(spark, tmp_path, case):
    case.expect("latin-1 CSV with ingest.csv_encoding=latin-1: accepted, accents intact")
    data = ITEMS_CSV.replace("Cafe One", "Café Olé").encode("latin-1")
    good, rej, _, n = _items(spark, tmp_path, data, encoding="latin-1")
    _accounted(case, n, good, rej)
    assert "Café Olé" in set(good["name"])


def test_csv_latin1_read_as_utf8(spark, baseline, tmp_path, case):
    case.expect("latin-1 CSV read as UTF-8: error naming file, line, column and ingest.csv_encoding; nothing written")
    data = ITEMS_CSV.replace("Cafe One", "Café Olé").encode("latin-1")
    _fails_and_writes_nothing(spark, baseline, tmp_path, case,
                              r"items\.csv:line 3: column name: bytes that are not valid utf-8 .*ingest\.csv_encoding", items=data)


def test_csv_utf8_bom_and_crlf(spark, tmp_path, case):
    case.expect("UTF-8 BOM and CRLF line ends: header recognised, no stray \\ufeff or \\r in values")
    data = ("\ufeff" + ITEMS_CSV.replace("\n", "\r\n")).encode("utf-8")
    good, rej, _, n = _items(spark, tmp_path, data)
    _accounted(case, n, good, rej)
    assert len(good) == 3 and not good["category_l2"].str.contains("\r").any() and not good["item_id"].str.contains("\ufeff").any()


def test_csv_quoted_delimiter_and_embedded_newline(spark, tmp_path, case):
    case.expect("quoted delimiters and newlines in names: one record each; a later bad row named by its physical line")
    data = ('item_id,lat,lon,name,category\n'
            'a1,33.4484,-112.0740,"Joe\'s, ""the"" BBQ",BBQ\n'
            'a2,33.45,-112.07,"Cafe\nOne",Coffee Shop\n'
            'a3,999,-112.1,Rose Pizza,Pizza\n')
    good, rej, _, n = _items(spark, tmp_path, data)
    _accounted(case, n, good, rej)
    assert sorted(good["name"]) == ["Cafe\nOne", 'Joe\'s, "the" BBQ']
    assert rej["source_row"].tolist() == ["items.csv:line 5"]  # record 3, but its first physical line is 5


def test_csv_wrong_field_count(spark, baseline, tmp_path, case):
    case.expect("a record with more fields than the header: error naming file and line; nothing written")
    _fails_and_writes_nothing(spark, baseline, tmp_path, case, r"items\.csv:line 3: record does not have the header's 5 fields",
                              items=ITEMS_CSV.replace("Cafe One,Coffee Shop", "Cafe One,Coffee,Shop"))


# ----------------------------------------------------------------------------- columns & emptiness
def test_missing_name_synthesised(spark, tmp_path, case):
    case.expect("no name column: name = '<category> <last 6 of item_id>', as for Foursquare venues")
    data = "item_id,lat,lon,category\n4b196b3af964a52000dd23e3,33.4484,-112.0740,Rock Club\n"
    good, rej, counts, n = _items(spark, tmp_path, data)
    _accounted(case, n, good, rej)
    assert good["name"].tolist() == ["Rock Club dd23e3"] and counts["synthesised_names"]


def test_missing_optional_columns(spark, tmp_path, case):
    case.expect("only the required columns: brand = name, price/address null, parent category derived")
    data = "item_id,lat,lon,name,category\na1,33.4484,-112.0740,Joe's BBQ,BBQ Joint\n"
    good, rej, _, n = _items(spark, tmp_path, data)
    _accounted(case, n, good, rej)
    row = good.iloc[0]
    assert (row["brand"], row["category_l1"]) == ("Joe's BBQ", "Food & Drink") and pd.isna(row["price"]) and pd.isna(row["address"])


def test_empty_file(spark, baseline, tmp_path, case):
    case.expect("0-byte items file: error naming the file (no header line); nothing written")
    _fails_and_writes_nothing(spark, baseline, tmp_path, case, r"items file items\.csv: empty file \(no header line\)", items="")


def test_header_only_file(spark, baseline, tmp_path, case):
    case.expect("header-only interactions file: error naming ingest.interactions_path (no data rows); nothing written")
    _fails_and_writes_nothing(spark, baseline, tmp_path, case, r"empty input: ingest\.interactions_path .*interactions\.csv has no data rows",
                              inter="user_id,item_id,timestamp\n")


def test_missing_required_column(spark, baseline, tmp_path, case):
    case.expect("no lat column: error naming the file and the missing column; nothing written")
    _fails_and_writes_nothing(spark, baseline, tmp_path, case, r"items file items\.csv: missing required column\(s\) \['lat'\]",
                              items=ITEMS_CSV.replace("item_id,lat,", "item_id,latitude,"))


def test_unknown_csv_encoding(spark, baseline, tmp_path, case):
    case.expect("ingest.csv_encoding=klingon: error naming the key and the valid values; nothing written")
    _fails_and_writes_nothing(spark, baseline, tmp_path, case, r"ingest\.csv_encoding: unsupported encoding 'klingon'", csv_encoding="klingon")


# ----------------------------------------------------------------------------- values
def test_duplicate_item_conflicting_coordinates(spark, baseline, tmp_path, case):
    case.expect("one item id twice with different coordinates: error naming both lines; nothing written")
    _fails_and_writes_nothing(spark, baseline, tmp_path, case, r"items\.csv:line 3: duplicate item_id a1 \(first at items\.csv:line 2\)",
                              items=ITEMS_CSV.replace("a2,33.4500,-112.0700", "a1,40.7000,-74.0000"))


def test_lat_lon_swapped(spark, baseline, tmp_path, case):
    case.expect("lat/lon swapped (lat outside +-90): error naming line and column, with a swap hint; nothing written")
    _fails_and_writes_nothing(spark, baseline, tmp_path, case, r"items\.csv:line 3: lat out of range \[-90, 90\]: -112\.07 \(lat and lon swapped\?",
                              items=ITEMS_CSV.replace("a2,33.4500,-112.0700", "a2,-112.0700,33.4500"))


def test_zero_zero_coordinates(spark, baseline, tmp_path, case):
    case.expect("(0, 0) coordinates: rejected as a placeholder, naming the line; nothing written")
    _fails_and_writes_nothing(spark, baseline, tmp_path, case, r"items\.csv:line 4: lat/lon is \(0, 0\)",
                              items=ITEMS_CSV.replace("a3,33.5000,-112.1000", "a3,0,0.0"))


def test_nan_and_inf(spark, tmp_path, case):
    case.expect("NaN / inf lat or lon (CSV and Parquet): each row rejected naming the column and value")
    data = ITEMS_CSV.replace("a2,33.4500,", "a2,NaN,").replace("-112.1000", "inf")
    good, rej, _, n = _items(spark, tmp_path, data)
    _accounted(case, n, good, rej)
    assert rej.sort_values("_line")["reject_reason"].tolist() == ["lat out of range [-90, 90]: NaN", "lon out of range [-180, 180]: Infinity"]
    pdf = pd.DataFrame({"item_id": ["p1", "p2"], "lat": [float("nan"), 33.4], "lon": [-112.0, float("-inf")], "name": ["x", "y"], "category": ["Bar", "Bar"]})
    good, rej, _, n = _items(spark, tmp_path, pdf, "items.parquet")
    _accounted(case, n, good, rej)
    assert sorted(rej["source_row"]) == ["items.parquet:row 1", "items.parquet:row 2"] and good.empty


def test_mixed_id_types(spark, tmp_path, case):
    case.expect("numeric item ids in Parquet (int and float with gaps), strings in the CSV: the same ids, all matched")
    pdf = pd.DataFrame({"item_id": [101, 102], "lat": [33.4, 33.5], "lon": [-112.0, -112.1], "name": ["x", "y"], "category": ["Bar", "Pub"]})
    good_items, rej, _, n = _items(spark, tmp_path, pdf, "items.parquet")
    _accounted(case, n, good_items, rej)
    pdf_f = pdf.assign(item_id=[101.0, 102.0])
    good_f, _, _, _ = _items(spark, tmp_path, pdf_f, "items_f.parquet")
    assert sorted(good_items["item_id"]) == sorted(good_f["item_id"]) == ["101", "102"]
    items_df = spark.createDataFrame([(i,) for i in good_items["item_id"]], "item_id string")
    good, rej, _, n = _inter(spark, tmp_path, "user_id,item_id,timestamp\n7,101,2024-01-01T00:00:00Z\n8,102,2024-01-02T00:00:00Z\n", items=items_df)
    _accounted(case, n, good, rej)
    assert rej.empty and sorted(good["user_id"]) == ["7", "8"]


def test_unknown_items_fail(spark, baseline, tmp_path, case):
    case.expect("on_bad_rows=fail, interaction with an unknown item: error naming file, line and item_id; nothing written")
    _fails_and_writes_nothing(spark, baseline, tmp_path, case, r"interactions\.csv:line 4: unknown item_id a9",
                              inter=INTER_CSV.replace("u2,a3,", "u2,a9,"))


def test_unknown_items_quarantine(spark, tmp_path, case):
    case.expect("on_bad_rows=quarantine: unknown-item rows in interactions_rejects; accepted + rejected = input")
    cfg = config(tmp_path, **write_inputs(tmp_path, inter=INTER_CSV + "u3,zz,2024-01-05T00:00:00Z\nu3,a1,2024-01-06T00:00:00Z\n"),
                 on_bad_rows="quarantine")
    s = run(spark, cfg)
    store = DeltaStore(spark, cfg.storage)
    rej = store.to_pandas("interactions_rejects")
    assert rej["reject_reason"].tolist() == ["unknown item_id zz (not among the valid items)"]
    assert rej["source_row"].tolist() == ["interactions.csv:line 6"]
    case.rows_lost(s.metrics["input_interactions"] - store.count("interactions") - len(rej))
    assert store.count("interactions") + len(rej) == s.metrics["input_interactions"] == 6


def test_single_10mb_line(spark, tmp_path, case):
    case.expect("one 10 MB field on one line: that row rejected naming line and column (text limit); the rest accepted")
    data = ITEMS_CSV.replace("Rose Pizza", "R" * (10 * 1024 * 1024))
    good, rej, _, n = _items(spark, tmp_path, data)
    _accounted(case, n, good, rej)
    assert rej["source_row"].tolist() == ["items.csv:line 4"]
    assert rej["reject_reason"].tolist() == ["name is 10485760 characters long (limit 10,000)"]
    assert sorted(good["item_id"]) == ["a1", "a2"]


# ----------------------------------------------------------------------------- locations & config
@pytest.mark.parametrize("name", ["../escape", "a/b", "s3://bucket/t", ""])
def test_table_name_path_traversal(spark, baseline, case, name):
    case.expect("table name with ../, / or a URI: ValidationError before any I/O; nothing created")
    cfg, store, before, _ = baseline
    df = spark.createDataFrame([("x",)], "item_id string")
    with pytest.raises(ValidationError, match="invalid table name"):
        store.write(df, name)
    with pytest.raises(ValidationError, match="invalid table name"):
        store.merge(df, name, keys=["item_id"])
    import os

    assert not os.path.exists(os.path.join(os.path.dirname(store.root), "escape"))
    assert versions(store) == before


def test_unsupported_uri_scheme(spark, tmp_path, case):
    case.expect("storage.root with a URI scheme delta-rs cannot open (ftp://): ConfigError naming the key")
    from lgsid.config import StorageConfig

    with pytest.raises(ConfigError, match=r"'storage\.root': 'ftp://host/tables' uses URI scheme 'ftp'"):
        DeltaStore(spark, StorageConfig(root="ftp://host/tables", staging_dir=str(tmp_path)))


def test_config_unknown_key(case):
    case.expect("--set tokenizer.no_such_key=1: ConfigError naming the key")
    with pytest.raises(ConfigError, match=r"tokenizer\.no_such_key"):
        load_config(None, ["tokenizer.no_such_key=1"])


@pytest.mark.parametrize("value", ['["a",4]', "[8.7, 4]"])
def test_config_wrong_element_type(case, value):
    case.expect("--set tokenizer.codebook_sizes with a non-integer element: ConfigError naming the key")
    with pytest.raises(ConfigError, match=r"tokenizer\.codebook_sizes"):
        load_config(None, [f"tokenizer.codebook_sizes={value}"])
