"""Row validation at ingest: pure ``DataFrame -> (good_df, rejects_df)`` functions.

Every input row carries provenance columns added by the reader (:func:`with_provenance` for
in-memory sources):

* ``_line`` (LONG): position in the input (file line number for text files, 1-based row for Parquet);
* ``_source_row`` (STRING): human-readable origin, e.g. ``items.csv:line 7``;
* ``_parse_error`` (STRING): set by the reader when a field could not be parsed (bad number,
  bad timestamp, wrong field count), naming the column and the raw value;
* ``_row_json`` (STRING): the raw row as JSON, kept in the rejects table.

A validator gives each row the *first* failing rule as ``reject_reason`` (a message naming the
column) and splits the rows: ``good`` keeps the input columns, ``rejects`` has
``reject_reason, source_row, row_json, _line``. Nothing is dropped: ``good + rejects = input``.
The caller decides what a reject means (``ingest.on_bad_rows``): :func:`raise_on_rejects` fails
naming the first offending rows; quarantine writes ``<table>_rejects``.
"""

from __future__ import annotations

from typing import Sequence

from lgsid.errors import ValidationError

__all__ = [
    "PROVENANCE",
    "with_provenance",
    "validate_items",
    "validate_interactions",
    "validate_checkins",
    "require_not_empty",
    "raise_on_rejects",
    "split_rejects",
]

PROVENANCE = ("_line", "_source_row", "_parse_error", "_row_json")


def with_provenance(df, source: str):
    """Add provenance columns to a DataFrame that has none (generated or in-memory data).

    ``_line`` is kept when present (e.g. numbered by the generator), else a 1-based row number in
    the DataFrame's partition order (a global window: fine for small in-memory inputs);
    ``_row_json`` is the row as JSON.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    cols = [c for c in df.columns if c not in PROVENANCE]
    out = df
    if "_line" not in df.columns:
        out = df.withColumn("_line", F.row_number().over(Window.orderBy(F.monotonically_increasing_id())).cast("long"))
    return (
        out.withColumn("_source_row", F.concat(F.lit(f"{source}:row "), F.col("_line").cast("string")))
        .withColumn("_parse_error", F.lit(None).cast("string"))
        .withColumn("_row_json", F.to_json(F.struct(*[F.col(c) for c in cols])))
    )


def _blank(c: str):
    from pyspark.sql import functions as F

    return F.col(c).isNull() | (F.trim(F.col(c).cast("string")) == "")


def _range_rule(c: str, lo: float, hi: float):
    from pyspark.sql import functions as F

    return (
        F.when(F.col(c).isNull(), F.lit(f"missing {c}"))
        .when(F.isnan(F.col(c)) | (F.col(c) < lo) | (F.col(c) > hi), F.concat(F.lit(f"{c} out of range [{lo:g}, {hi:g}]: "), F.col(c).cast("string")))
    )


MAX_TEXT_CHARS = 10_000
"""Longest accepted text field (name, brand, category, address): a longer one is a broken record
(e.g. a file whose line ends were lost), not a venue name, and would flood the prompt."""


def _location_rules(lat: str = "lat", lon: str = "lon") -> list:
    """lat/lon rules: missing, NaN/inf or out of range (with a hint when the two look swapped), and (0, 0)."""
    from pyspark.sql import functions as F

    swapped = (F.abs(F.col(lat)) > 90) & (F.abs(F.col(lat)) <= 180) & (F.abs(F.col(lon)) <= 90)
    return [
        F.when(swapped, F.concat(F.lit(f"{lat} out of range [-90, 90]: "), F.col(lat).cast("string"),
                                 F.lit(f" ({lat} and {lon} swapped? {lon} = "), F.col(lon).cast("string"), F.lit(")"))),
        _range_rule(lat, -90.0, 90.0),
        _range_rule(lon, -180.0, 180.0),
        F.when((F.col(lat) == 0) & (F.col(lon) == 0), F.lit(f"{lat}/{lon} is (0, 0), a placeholder for a missing location")),
    ]


def _length_rules(cols: Sequence[str]) -> list:
    from pyspark.sql import functions as F

    return [
        F.when(F.length(F.col(c)) > MAX_TEXT_CHARS, F.concat(F.lit(f"{c} is "), F.length(F.col(c)).cast("string"),
                                                              F.lit(f" characters long (limit {MAX_TEXT_CHARS:,})")))
        for c in cols
    ]


def _apply(df, rules: Sequence, unique: Sequence[str] | None = None, unique_name: str = "", known=None, known_col: str = ""):
    """Core splitter: first failing rule wins; then duplicates of ``unique`` and unknown ``known_col`` among the rest."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    missing = [c for c in PROVENANCE if c not in df.columns]
    if missing:
        raise ValueError(f"validation needs provenance columns {missing}; add them with with_provenance()")
    reason = F.coalesce(F.col("_parse_error"), *rules) if rules else F.col("_parse_error")
    out = df.withColumn("reject_reason", reason)
    if known is not None:
        ids = known.select(F.col(known_col).alias("__known_id")).distinct().withColumn("__known", F.lit(True))
        out = out.join(ids, out[known_col] == ids["__known_id"], "left").drop("__known_id")
        out = out.withColumn(
            "reject_reason",
            F.coalesce(F.col("reject_reason"), F.when(F.col("__known").isNull(), F.concat(F.lit(f"unknown {known_col} "), F.col(known_col).cast("string"), F.lit(" (not among the valid items)")))),
        ).drop("__known")
    if unique:
        w = Window.partitionBy(*[F.col(c) for c in unique], F.col("reject_reason").isNull()).orderBy("_line")
        out = (
            out.withColumn("__rn", F.row_number().over(w))
            .withColumn("__first", F.first("_source_row").over(w))
            .withColumn(
                "reject_reason",
                F.when(
                    F.col("reject_reason").isNull() & (F.col("__rn") > 1),
                    F.concat(F.lit(f"duplicate {unique_name} "), F.concat_ws("|", *[F.col(c).cast("string") for c in unique]), F.lit(" (first at "), F.col("__first"), F.lit(")")),
                ).otherwise(F.col("reject_reason")),
            )
            .drop("__rn", "__first")
        )
    return split_rejects(out)


def split_rejects(df):
    """Split a DataFrame with a ``reject_reason`` column into (good without it, rejects)."""
    from pyspark.sql import functions as F

    good = df.where(F.col("reject_reason").isNull()).drop("reject_reason")
    rejects = df.where(F.col("reject_reason").isNotNull()).select(
        "reject_reason", F.col("_source_row").alias("source_row"), F.col("_row_json").alias("row_json"), "_line"
    )
    return good, rejects


def validate_items(df):
    """Items rules: parse errors, missing item_id/name/category_l2, null, NaN/inf, out-of-range (or swapped) or
    (0, 0) lat/lon, text fields over :data:`MAX_TEXT_CHARS`, duplicate item_id.

    Args:
        df: Items with at least ``item_id, name, category_l2, lat, lon`` and the provenance columns.

    Returns:
        (good, rejects); of several rows with one item id the first (lowest ``_line``) is kept.
    """
    from pyspark.sql import functions as F

    rules = [
        F.when(_blank("item_id"), F.lit("missing item_id")),
        *_location_rules(),
        F.when(_blank("category_l2"), F.lit("missing category")),
        F.when(_blank("name"), F.lit("missing name")),
        *_length_rules([c for c in ("item_id", "name", "brand", "category_l1", "category_l2", "address") if c in df.columns]),
    ]
    return _apply(df, rules, unique=["item_id"], unique_name="item_id")


def validate_interactions(df, items):
    """Interactions rules: parse errors, missing user_id/item_id/ts, unknown item_id, duplicate (user_id, item_id, ts).

    Args:
        df: Interactions ``user_id, item_id, ts`` plus provenance columns.
        items: The *valid* items (column ``item_id``); interactions with other ids are rejected.
    """
    from pyspark.sql import functions as F

    rules = [
        F.when(_blank("user_id"), F.lit("missing user_id")),
        F.when(_blank("item_id"), F.lit("missing item_id")),
        F.when(F.col("ts").isNull(), F.lit("missing ts")),
        *_length_rules(["user_id", "item_id"]),
    ]
    return _apply(df, rules, unique=["user_id", "item_id", "ts"], unique_name="interaction", known=items, known_col="item_id")


def validate_checkins(df):
    """Check-in rules (Foursquare: each row is both a venue sighting and an interaction).

    Parse errors, missing user_id/item_id/ts/category, null, NaN/inf, out-of-range (or swapped) or (0, 0)
    lat/lon, ids or category over :data:`MAX_TEXT_CHARS`, duplicate (user_id, item_id, ts).
    """
    from pyspark.sql import functions as F

    rules = [
        F.when(_blank("user_id"), F.lit("missing user_id")),
        F.when(_blank("item_id"), F.lit("missing item_id (venue id)")),
        *_location_rules(),
        F.when(_blank("category_l2"), F.lit("missing category")),
        *_length_rules(["user_id", "item_id", "category_l2"]),
        F.when(F.col("ts").isNull(), F.lit("missing ts")),
    ]
    return _apply(df, rules, unique=["user_id", "item_id", "ts"], unique_name="check-in")


def require_not_empty(df, what: str) -> int:
    """Number of rows of ``df``; raises :class:`ValidationError` when it is 0 (``what`` names the input, e.g. its path)."""
    n = df.count()
    if n == 0:
        raise ValidationError(f"empty input: {what} has no data rows")
    return n


def raise_on_rejects(rejects, table: str, n_first: int = 3) -> None:
    """Strict mode: fail naming the first ``n_first`` offending rows (by input position) and their reasons.

    Raises:
        ValidationError: ``rejects`` is not empty.
    """
    first = rejects.orderBy("_line").limit(n_first).collect()
    if not first:
        return
    total = rejects.count()
    shown = "; ".join(f"{r['source_row']}: {r['reject_reason']}" for r in first)
    raise ValidationError(
        f"{table}: {total} bad input row(s); first: {shown}. Nothing was written. Fix the input, or set "
        f"ingest.on_bad_rows=quarantine to load the good rows and keep the bad ones in {table}_rejects."
    )
