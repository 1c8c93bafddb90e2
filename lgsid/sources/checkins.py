"""Real check-in import: Foursquare TSMC2014 TSV, or a pair of items + interactions files.

Readers return Spark DataFrames with typed columns plus the provenance columns of
:mod:`lgsid.validation` (line number, source row, parse error, raw row as JSON); nothing is
dropped while reading, so validation can account for every input row. The transforms after
validation (:func:`items_from_checkins`, :func:`filter_min_interactions`, :func:`users_from_interactions`,
:func:`geocode_items`) are pure DataFrame -> DataFrame functions.

Foursquare TSMC2014 (``dataset_TSMC2014_NYC.txt`` / ``_TKY.txt``) has eight tab-separated fields
and no header: user id, venue id, venue category id, venue category name, latitude, longitude,
timezone offset (minutes), UTC time (``Tue Apr 03 18:00:09 +0000 2012``). Venues become items
(name = :func:`synthetic_name`: category name + the venue id's last 6 characters, ``category_l2`` =
category name, ``category_l1`` = :func:`parent_category` of it, location = the venue's first check-in).

Items files without a ``name`` column, or with blank names (many public check-in sets have none),
get the same :func:`synthetic_name`.

Timestamps: every instant is stored in UTC. Parquet timestamps of any unit are read through pyarrow
when Spark cannot read them as they are (nanoseconds, which pandas' ``to_parquet`` writes by default,
or no time zone): they are cast to microseconds (sub-microsecond digits truncated and counted) and a
naive timestamp is taken as UTC. Strings may be ISO-8601 with ``Z`` or an offset (``+02:00``); a
string without a zone is taken as UTC; digits-only strings are epoch seconds.
"""

from __future__ import annotations

import os
import uuid

from lgsid.errors import ValidationError
from lgsid import fs
from lgsid.fs import is_uri

__all__ = [
    "FOURSQUARE_FIELDS",
    "parent_category",
    "synthetic_name",
    "read_foursquare",
    "read_items_file",
    "read_interactions_file",
    "items_from_checkins",
    "filter_min_interactions",
    "users_from_interactions",
    "geocode_items",
]

FOURSQUARE_FIELDS = ("user_id", "venue_id", "venue_category_id", "venue_category", "lat", "lon", "tz_offset", "utc_time")

# Parent (level-1) categories for free-text leaf categories, first matching regex wins.
# Order matters: "Coffee Shop" is a cafe before it is a shop.
PARENT_RULES: tuple[tuple[str, str], ...] = (
    ("Cafes & Desserts", r"(?i)caf[eé]|coffee|tea room|bakery|dessert|ice cream|donut|cupcake|bubble tea|juice"),
    ("Food & Drink", r"(?i)restaurant|joint|diner|pizza|burger|taco|sushi|ramen|noodle|bbq|steak|seafood|deli|bodega|food|breakfast|sandwich|bistro|hot pot|dim sum|fried chicken|vegan|buffet"),
    ("Nightlife", r"(?i)\bbar\b|pub|club|lounge|brewery|karaoke|nightlife|speakeasy|beer|wine|cocktail"),
    ("Beauty", r"(?i)salon|spa\b|barber|nail|massage|cosmetic|beauty"),
    ("Hotels", r"(?i)hotel|hostel|motel|bed & breakfast|resort"),
    ("Health", r"(?i)hospital|doctor|dentist|medical|clinic|pharmacy|drugstore"),
    ("Education", r"(?i)school|university|college|library|tutor|daycare|student"),
    ("Fitness & Sports", r"(?i)gym|fitness|yoga|stadium|field|court|pool|sport|climbing|bowling|golf"),
    ("Arts & Entertainment", r"(?i)theat|cinema|movie|museum|gallery|music|entertainment|arcade|casino|concert|escape room|zoo|aquarium"),
    ("Travel & Transport", r"(?i)station|airport|subway|bus\b|train|road|bridge|ferry|taxi|travel|parking|highway|platform|terminal|rail"),
    ("Outdoors", r"(?i)park|beach|plaza|outdoors|garden|trail|river|lake|scenic|playground|neighborhood"),
    ("Home & Work", r"(?i)office|building|home|residential|apartment|coworking|factory|city hall|government|bank"),
    ("Shopping", r"(?i)shop|store|market|mall|boutique|grocery|supermarket|florist|bookstore|convenience"),
    ("Services", r"(?i)laundry|dry clean|car wash|repair|service|post office|gas station|auto"),
)


def parent_category(col):
    """Spark Column: level-1 category of a free-text leaf category (``"Other"`` when no rule matches)."""
    from pyspark.sql import functions as F

    expr = None
    for parent, rx in PARENT_RULES:
        expr = F.when(col.rlike(rx), F.lit(parent)) if expr is None else expr.when(col.rlike(rx), F.lit(parent))
    return expr.otherwise(F.lit("Other"))


def synthetic_name(category, item_id):
    """Spark Column: the name of an item that has none: ``"<category> <last 6 characters of item_id>"``.

    Used by the Foursquare import (venues have no names) and by items files without a ``name``
    column or with a blank name on a row, so the prompt's content part still tells items of one category apart.
    """
    from pyspark.sql import functions as F

    return F.concat(category, F.lit(" "), F.substring(item_id, -6, 6))


def with_line_numbers(df, first: int = 1):
    """Add ``_line`` (LONG): ``first`` + the row's position in partition order, computed on the JVM.

    ``monotonically_increasing_id`` is ``partition << 33 | row-in-partition``; one small
    aggregation gives each partition's row count, and the running sum of those counts turns the id
    into a contiguous position. For a single input file Spark's partitions follow the file, so the
    position is the line (or row) number. The result is checkpointed so the ids stay fixed and the
    input is parsed once (validation, strict checks and the writes read it several times).
    """
    from pyspark.sql import functions as F

    df = df.withColumn("__mid", F.monotonically_increasing_id()).localCheckpoint(eager=True)
    counts = sorted((r["p"], r["count"]) for r in df.groupBy(F.shiftright("__mid", 33).alias("p")).count().collect())
    offset, start = {}, first
    for p, n in counts:
        offset[p] = start
        start += n
    row = F.col("__mid").bitwiseAND(F.lit((1 << 33) - 1))
    if len(offset) > 64:  # many partitions: a broadcast join instead of a long CASE expression
        offs = df.sparkSession.createDataFrame(list(offset.items()), "__p long, __off long")
        df = df.join(F.broadcast(offs), F.shiftright("__mid", 33) == F.col("__p"))
        return df.withColumn("_line", (F.col("__off") + row).cast("long")).drop("__mid", "__p", "__off")
    base = F.lit(first)
    for p, o in offset.items():
        base = F.when(F.shiftright("__mid", 33) == p, F.lit(o)).otherwise(base)
    return df.withColumn("_line", (base + row).cast("long")).drop("__mid")


def _indexed_lines(spark, path: str):
    """``(_line LONG 1-based, value STRING)`` for every line of a text file, in file order."""
    return with_line_numbers(spark.read.text(path), first=1).select("_line", "value")


def _number(raw_col: str, name: str):
    """(parsed DOUBLE, parse-error STRING or null) of a string column."""
    from pyspark.sql import functions as F

    raw = F.trim(F.col(raw_col).cast("string"))
    val = raw.try_cast("double")
    err = F.when(raw.isNotNull() & (raw != "") & val.isNull(), F.concat(F.lit(f"unparseable {name}: '"), raw, F.lit("'")))
    return F.when(raw == "", F.lit(None).cast("double")).otherwise(val), err


def read_foursquare(spark, path: str):
    """Parse a TSMC2014 file into check-in rows.

    Returns:
        DataFrame ``user_id, item_id, category_id, category_l2, lat, lon, ts`` + provenance, one row
        per non-blank input line (malformed lines carry ``_parse_error``).

    Raises:
        ValidationError: the file does not exist.
    """
    from pyspark.sql import functions as F

    if not _exists(path):
        raise ValidationError(f"ingest.foursquare_path: file not found: {path}")
    name = os.path.basename(path)
    df = _indexed_lines(spark, path).where(F.trim(F.col("value")) != "")
    parts = F.split(F.col("value"), "\t")
    df = df.withColumn("_n", F.size(parts))
    for i, f in enumerate(FOURSQUARE_FIELDS):
        df = df.withColumn(f"_r_{f}", F.when(F.col("_n") > i, F.trim(parts.getItem(i))))
    lat, lat_err = _number("_r_lat", "lat")
    lon, lon_err = _number("_r_lon", "lon")
    # "Tue Apr 03 18:00:09 +0000 2012": Spark cannot parse day-of-week names, so drop the first token.
    ts = F.try_to_timestamp(F.regexp_replace(F.col("_r_utc_time"), r"^\w+\s+", ""), F.lit("MMM dd HH:mm:ss Z yyyy"))
    ts_err = F.when(F.col("_r_utc_time").isNotNull() & ts.isNull(), F.concat(F.lit("unparseable utc_time (ts): '"), F.col("_r_utc_time"), F.lit("'")))
    field_err = F.when(
        F.col("_n") != len(FOURSQUARE_FIELDS),
        F.concat(F.lit(f"expected {len(FOURSQUARE_FIELDS)} tab-separated fields, got "), F.col("_n").cast("string")),
    )
    raw_json = F.to_json(F.struct(*[F.col(f"_r_{f}").alias(f) for f in FOURSQUARE_FIELDS]))
    return df.select(
        F.col("_r_user_id").alias("user_id"),
        F.col("_r_venue_id").alias("item_id"),
        F.col("_r_venue_category_id").alias("category_id"),
        F.col("_r_venue_category").alias("category_l2"),
        lat.alias("lat"),
        lon.alias("lon"),
        ts.alias("ts"),
        "_line",
        F.concat(F.lit(f"{name}:line "), F.col("_line").cast("string")).alias("_source_row"),
        F.coalesce(field_err, lat_err, lon_err, ts_err).alias("_parse_error"),
        raw_json.alias("_row_json"),
    )


def _exists(path: str) -> bool:
    return is_uri(path) or os.path.exists(path)


# Spark's CSV reader names: "latin-1" is the usual spelling, "iso-8859-1" Spark's.
CSV_ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "latin-1": "iso-8859-1", "latin1": "iso-8859-1", "iso-8859-1": "iso-8859-1",
                 "us-ascii": "us-ascii", "utf-16": "utf-16", "utf-16le": "utf-16le", "utf-16be": "utf-16be"}


def _is_parquet(path: str) -> bool:
    if path.endswith(".parquet"):
        return True
    return os.path.isdir(path) and any(f.endswith(".parquet") for f in os.listdir(path))


def _parquet_for_spark(path: str, staging_dir: str | None) -> tuple[str, str | None, dict]:
    """A Parquet input Spark reads correctly: ``(path to read, staged copy to delete or None, counts)``.

    Spark cannot read nanosecond timestamps (pandas' default ``to_parquet``) and reads a timestamp
    without a time zone as local wall-clock time. When the input has either, it is streamed through
    pyarrow into one staged file in which every such column is ``timestamp[us, UTC]``: nanoseconds are
    truncated to microseconds (the values that lose digits are counted in ``truncated_timestamps``)
    and a naive timestamp is taken as UTC. Row order is kept, so row numbers still name input rows.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    ds = pads.dataset(path, format="parquet")
    fix = {f.name for f in ds.schema if pa.types.is_timestamp(f.type) and (f.type.unit == "ns" or f.type.tz is None)}
    counts = {"truncated_timestamps": 0, "recast_timestamp_columns": sorted(fix)}
    if not fix:
        return path, None, counts
    target = pa.schema([pa.field(f.name, pa.timestamp("us", tz="UTC")) if f.name in fix else f for f in ds.schema])
    root = staging_dir or os.path.join(os.path.dirname(os.path.abspath(path)), ".lgsid-staging")
    staged = f"{root.rstrip('/')}/ingest-{uuid.uuid4().hex}.parquet"
    pfs, fpath = fs.resolve(staged)
    pfs.create_dir(fpath.rsplit("/", 1)[0], recursive=True)
    with pfs.open_output_stream(fpath) as out, pq.ParquetWriter(out, target) as w:
        for b in ds.to_batches():
            cols = []
            for f, col in zip(ds.schema, b.columns):
                if f.name in fix:
                    if f.type.unit == "ns":
                        ints = col.cast(pa.int64())
                        counts["truncated_timestamps"] += int(pc.sum(pc.not_equal(pc.multiply(pc.divide(ints, 1000), 1000), ints)).as_py() or 0)
                    us = col.cast(pa.timestamp("us", tz=f.type.tz), safe=False) if f.type.unit != "us" else col
                    col = us.view(pa.timestamp("us", tz="UTC"))  # same instants; naive -> UTC
                cols.append(col)
            w.write_batch(pa.RecordBatch.from_arrays(cols, schema=target))
    return staged, staged, counts


def _remove(path: str | None) -> None:
    if path:
        try:
            fs.delete_file(path)
        except OSError:
            pass


def _read_any(spark, path: str, delimiter: str, what: str, encoding: str = "utf-8", staging_dir: str | None = None, counts: dict | None = None):
    """Read a Parquet or CSV file (by extension / directory content) with 1-based ``_line`` and a source label.

    Line numbers come from :func:`with_line_numbers` (file order for a single file). CSV is read
    with RFC 4180 quoting (quoted delimiters and embedded newlines, CRLF or LF), a UTF-8 BOM is
    ignored, and a record whose field count differs from the header's gets a ``_parse_error``; the
    label is the record's first physical line. In UTF-8, a byte sequence that is not UTF-8 (e.g. a
    latin-1 file) is a ``_parse_error`` naming ``ingest.csv_encoding``.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    if not path:
        raise ValidationError(f"ingest.{what}_path is empty; set it to a Parquet or CSV file (source=files)")
    if not _exists(path):
        raise ValidationError(f"ingest.{what}_path: file not found: {path}")
    name = os.path.basename(path.rstrip("/"))
    counts = counts if counts is not None else {}
    if _is_parquet(path):
        try:
            read_path, staged, c = _parquet_for_spark(path, staging_dir)
        except Exception as e:  # pyarrow.ArrowInvalid and friends: not a Parquet file
            raise ValidationError(f"ingest.{what}_path: {name} is not a readable Parquet file: {e}") from None
        counts.update(c)
        try:
            df = with_line_numbers(spark.read.parquet(read_path), first=1)  # checkpointed: the staged copy can go
        finally:
            _remove(staged)
        cols = [c for c in df.columns if c != "_line"]
        unit = "row"
    else:
        enc = CSV_ENCODINGS.get(encoding.lower())
        if enc is None:
            raise ValidationError(f"ingest.csv_encoding: unsupported encoding {encoding!r}; valid: {', '.join(sorted(CSV_ENCODINGS))}")
        reader = (spark.read.option("header", True).option("sep", delimiter).option("encoding", enc).option("multiLine", True)
                  .option("quote", '"').option("escape", '"'))  # RFC 4180: "" inside quotes is one quote
        cols = reader.option("inferSchema", False).csv(path).columns
        if not cols:
            raise ValidationError(f"{what} file {name}: empty file (no header line); expected a CSV header naming the columns")
        corrupt = "__corrupt_record"
        schema = StructType([StructField(c, StringType()) for c in cols] + [StructField(corrupt, StringType())])
        df = reader.schema(schema).option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", corrupt).csv(path)
        df = with_line_numbers(df, first=2)  # line 1 is the header
        df = _physical_lines(df, cols)
        unit = "line"
        field_count = F.when(F.col(corrupt).isNotNull(), F.concat(
            F.lit(f"record does not have the header's {len(cols)} fields ({delimiter!r}-separated): '"),
            F.substring(F.col(corrupt), 1, 80), F.lit("'")))
        bad_bytes = F.coalesce(*[
            F.when(F.coalesce(F.col(c).contains("\ufffd"), F.lit(False)), F.lit(
                f"column {c}: bytes that are not valid {encoding} (shown as U+FFFD); set ingest.csv_encoding to the file's encoding, e.g. latin-1"))
            for c in cols
        ])
        df = df.withColumn("_file_error", F.coalesce(field_count, bad_bytes)).drop(corrupt)
    if "_file_error" not in df.columns:
        df = df.withColumn("_file_error", F.lit(None).cast("string"))
    df = df.withColumn("_source_row", F.concat(F.lit(f"{name}:{unit} "), F.col("_line").cast("string")))
    df = df.withColumn("_row_json", F.to_json(F.struct(*[F.col(c) for c in cols])))
    return df, cols, name


def _physical_lines(df, cols):
    """Correct ``_line`` (record number + 1) to the record's first physical line when earlier records hold newlines."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    nl = sum((F.coalesce(F.size(F.split(F.col(c), "\n")) - 1, F.lit(0)) for c in cols), F.lit(0))
    df = df.withColumn("__nl", nl)
    if not df.where(F.col("__nl") > 0).limit(1).count():
        return df.drop("__nl")
    w = Window.orderBy("_line").rowsBetween(Window.unboundedPreceding, -1)
    return df.withColumn("_line", (F.col("_line") + F.coalesce(F.sum("__nl").over(w), F.lit(0))).cast("long")).drop("__nl")


def _require_columns(cols, required, name: str, what: str) -> None:
    missing = [c for c in required if c not in cols]
    if missing:
        raise ValidationError(f"{what} file {name}: missing required column(s) {missing}; found {cols}")


def _id(df, c: str):
    """An id column as a trimmed string; integral floats (``123.0``, from a numeric column with gaps) as ``123``."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, FloatType

    col = F.col(c)
    if isinstance(df.schema[c].dataType, (DoubleType, FloatType)):
        return F.when(col == F.floor(col), col.cast("long").cast("string")).otherwise(col.cast("string"))
    return F.trim(col.cast("string"))


def read_items_file(spark, path: str, delimiter: str = ",", encoding: str = "utf-8", staging_dir: str | None = None, counts: dict | None = None):
    """Items file -> items columns (``source='files'``) + provenance.

    Required columns: ``item_id, lat, lon, category``; optional ``name`` (absent, or blank on a row:
    :func:`synthetic_name` of the category and id, as for Foursquare venues), ``parent_category`` (else
    :func:`parent_category`), ``brand`` (else the name), ``price``, ``address``.

    Args:
        spark: The SparkSession.
        path: Parquet or CSV file (or a directory of Parquet files).
        delimiter: CSV field delimiter.
        encoding: CSV encoding (``ingest.csv_encoding``).
        staging_dir: Where a Parquet file with nanosecond or naive timestamps is staged (see
            :func:`_parquet_for_spark`); default: next to the input.
        counts: Filled with ``name_column`` (``"present"``/``"absent"``), ``synthesised_names`` (input
            rows whose name was synthesised: all of them when the column is absent, the blank ones
            otherwise) and the timestamp counts.

    Raises:
        ValidationError: missing file or required column.
    """
    from pyspark.sql import functions as F

    counts = counts if counts is not None else {}
    df, cols, name = _read_any(spark, path, delimiter, "items", encoding, staging_dir, counts)
    _require_columns(cols, ("item_id", "lat", "lon", "category"), name, "items")
    lat, lat_err = _number("lat", "lat")
    lon, lon_err = _number("lon", "lon")
    if "price" in cols:
        price, price_err = _number("price", "price")
    else:
        price, price_err = F.lit(None).cast("double"), F.lit(None).cast("string")
    opt = lambda c: F.col(c).cast("string") if c in cols else F.lit(None).cast("string")  # noqa: E731
    cat = F.trim(F.col("category").cast("string"))
    item_id = _id(df, "item_id")
    # A blank name (null, empty or whitespace, as public check-in exports often have it) is treated
    # exactly like an absent name column: synthesised, and counted for the ingest summary.
    if "name" in cols:
        raw_name = F.col("name").cast("string")
        blank = raw_name.isNull() | (F.trim(raw_name) == "")
        item_name = F.when(blank, synthetic_name(cat, item_id)).otherwise(raw_name)
        counts["name_column"] = "present"
        counts["synthesised_names"] = df.filter(blank).count()
    else:
        item_name = synthetic_name(cat, item_id)
        counts["name_column"] = "absent"
        counts["synthesised_names"] = df.count()
    parent = F.coalesce(F.when(F.trim(opt("parent_category")) != "", F.trim(opt("parent_category"))), parent_category(F.coalesce(cat, F.lit(""))))
    return df.select(
        item_id.alias("item_id"),
        item_name.alias("name"),
        F.coalesce(F.when(F.trim(opt("brand")) != "", opt("brand")), item_name).alias("brand"),
        parent.alias("category_l1"),
        cat.alias("category_l2"),
        price.alias("price"),
        lat.alias("lat"),
        lon.alias("lon"),
        opt("address").alias("address"),
        F.lit("files").alias("source"),
        "_line",
        "_source_row",
        F.coalesce("_file_error", lat_err, lon_err, price_err).alias("_parse_error"),
        "_row_json",
    )


ZONE_SUFFIX = r"(?i)(z|[+-]\d{2}(:?\d{2})?|\s(utc|gmt)|\s[a-z_]+/[a-z_]+)$"
"""A timestamp string that ends in a zone: ``Z``, ``+02:00``, ``-0700``, `` UTC`` or a region id."""


def parse_timestamp(raw, session_tz: str = "UTC"):
    """Spark Column: an instant (TIMESTAMP) from a timestamp string, or null when it does not parse.

    ISO-8601 with ``T`` or a space, with or without fractional seconds, ending in ``Z``, an offset or a
    zone id; a string without a zone is taken as UTC (whatever the session time zone); a string of
    digits is epoch seconds.
    """
    from pyspark.sql import functions as F

    parsed = F.try_to_timestamp(raw)
    if session_tz.upper() not in ("UTC", "Z", "GMT", "ETC/UTC", "+00:00"):
        # a naive string was read as wall-clock time in the session zone; take it as UTC instead
        parsed = F.when(raw.rlike(ZONE_SUFFIX), parsed).otherwise(F.from_utc_timestamp(parsed, session_tz))
    return F.coalesce(parsed, F.when(raw.rlike(r"^-?\d+$"), F.timestamp_seconds(raw.try_cast("long"))))


def read_interactions_file(spark, path: str, delimiter: str = ",", encoding: str = "utf-8", staging_dir: str | None = None, counts: dict | None = None):
    """Interactions file -> ``user_id, item_id, ts`` + provenance.

    ``timestamp`` may be a timestamp column (Parquet; any unit, see :func:`_parquet_for_spark`), a
    string (:func:`parse_timestamp`), or epoch seconds.

    Raises:
        ValidationError: missing file or required column.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import NumericType, TimestampNTZType, TimestampType

    counts = counts if counts is not None else {}
    df, cols, name = _read_any(spark, path, delimiter, "interactions", encoding, staging_dir, counts)
    _require_columns(cols, ("user_id", "item_id", "timestamp"), name, "interactions")
    dtype = df.schema["timestamp"].dataType
    if isinstance(dtype, (TimestampType, TimestampNTZType)):
        ts, ts_err = F.col("timestamp").cast("timestamp"), F.lit(None).cast("string")
    elif isinstance(dtype, NumericType):
        ts, ts_err = F.timestamp_seconds(F.col("timestamp")), F.lit(None).cast("string")
    else:
        raw = F.trim(F.col("timestamp").cast("string"))
        ts = parse_timestamp(raw, spark.conf.get("spark.sql.session.timeZone", "UTC"))
        ts_err = F.when(raw.isNotNull() & (raw != "") & ts.isNull(), F.concat(F.lit("unparseable timestamp (ts): '"), raw, F.lit("'")))
    return df.select(
        _id(df, "user_id").alias("user_id"),
        _id(df, "item_id").alias("item_id"),
        ts.alias("ts"),
        "_line",
        "_source_row",
        F.coalesce("_file_error", ts_err).alias("_parse_error"),
        "_row_json",
    )


def items_from_checkins(checkins):
    """Venues of (valid) check-ins as items: location and category of each venue's first check-in.

    Args:
        checkins: Valid check-in rows (``user_id, item_id, category_l2, lat, lon, ts, _line``).

    Returns:
        Items without admin columns (``item_id, name, brand, category_l1, category_l2, price, lat,
        lon, address, source``), one row per venue.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    w = Window.partitionBy("item_id").orderBy("_line")
    first = checkins.withColumn("__rn", F.row_number().over(w)).where(F.col("__rn") == 1)
    name = synthetic_name(F.col("category_l2"), F.col("item_id"))
    return first.select(
        "item_id",
        name.alias("name"),
        name.alias("brand"),
        parent_category(F.col("category_l2")).alias("category_l1"),
        "category_l2",
        F.lit(None).cast("double").alias("price"),
        "lat",
        "lon",
        F.lit(None).cast("string").alias("address"),
        F.lit("foursquare").alias("source"),
    )


def filter_min_interactions(interactions, min_user: int, min_item: int, max_iter: int = 50):
    """Keep interactions of users with >= ``min_user`` and items with >= ``min_item`` interactions.

    Dropping users can push items below their minimum and vice versa, so the two filters repeat
    until nothing changes (a fixed point; the k-core of the user-item graph).

    Returns:
        (filtered interactions, number of passes).
    """
    from pyspark.sql import functions as F

    df = interactions.localCheckpoint(eager=True)
    n = df.count()
    if min_user <= 1 and min_item <= 1:
        return df, 0
    for it in range(1, max_iter + 1):
        if min_user > 1:
            uc = df.groupBy("user_id").count().where(F.col("count") >= min_user).select("user_id")
            df = df.join(uc, "user_id", "left_semi")
        if min_item > 1:
            ic = df.groupBy("item_id").count().where(F.col("count") >= min_item).select("item_id")
            df = df.join(ic, "item_id", "left_semi")
        df = df.localCheckpoint(eager=True)  # cut the lineage between passes
        m = df.count()
        if m == n:
            return df, it
        n = m
    return df, max_iter


def users_from_interactions(interactions, items):
    """Users as the centroid of the items they interacted with (``user_id, home_lat, home_lon``)."""
    from pyspark.sql import functions as F

    return (
        interactions.join(items.select("item_id", "lat", "lon"), "item_id")
        .groupBy("user_id")
        .agg(F.avg("lat").alias("home_lat"), F.avg("lon").alias("home_lon"))
    )


def geocode_items(items):
    """Add ``state, county, town`` to items by offline reverse geocoding (pandas UDF)."""
    from lgsid.sources.geocode import add_admin_columns

    return add_admin_columns(items, "lat", "lon")
