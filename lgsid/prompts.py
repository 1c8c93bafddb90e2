"""Geo prompts: per item, a content part, a location part and the combined prompt (step ``prompts``).

Alignment pairs one item's content with *another* item's location (the mismatched prompts of the
reward lists), so the two parts are built and stored separately and combined by
:func:`combine_prompt`. The pure-Python formatters below are the single definition of a prompt,
and :func:`prompt_texts` (pandas rows -> content, location, prompt) the single function that
applies them: the Spark job calls it inside a pandas UDF and the SID model's cold start calls it on
a request's raw rows, with the location level and town origins resolved once per catalogue
(:func:`catalogue_location`) and recorded in the model. The negative miner uses
:func:`combine_prompt_col` (proven equal to :func:`combine_prompt` in the tests), and alignment
reuses the formatters directly.

Locations (:func:`location_level`): at the paper's scale a location is a town and its text names
town, county and state. At city scale (one county, a handful of GeoNames towns) the location is a
*district*: the item's H3 cell at ``prompts.district_resolution`` inside its town, named by the
cell centre's offset from the town's GeoNames point, e.g. ``"Phoenix district 2.1 km N 0.8 km E"``
(:func:`district_names`), and rendered with ``prompts.district_template``. Neighbouring districts
get neighbouring numbers, so the text itself carries distance; the negatives and pairs steps use the
same level (:func:`location_keys`).

Null fields: a missing ``brand`` renders as ``prompts.missing_brand`` ("independent"), any other
missing field as ``prompts.missing_value`` ("unknown"); a format spec such as ``{price:.0f}`` is
not applied to the placeholder.
"""

from __future__ import annotations

import math
import string
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from lgsid.config import PromptsConfig
from lgsid.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame


CONTENT_FIELDS = ("name", "brand", "category_l1", "category_l2", "price")
LOCATION_FIELDS = ("town", "county", "state")
DISTRICT_FIELDS = ("district", "town", "county", "state")


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


class _NullSafeFormatter(string.Formatter):
    """``str.format`` that renders a null field as a placeholder instead of failing on its spec."""

    def __init__(self, missing: str):
        super().__init__()
        self.missing = missing

    def format_field(self, value: Any, format_spec: str) -> str:
        if _is_null(value):
            return self.missing
        return super().format_field(value, format_spec)


def _render(template: str, values: Mapping[str, Any], missing: str, key: str) -> str:
    try:
        return _NullSafeFormatter(missing).vformat(template, (), dict(values))
    except KeyError as e:
        raise ConfigError(f"invalid value for '{key}': unknown field {e} in {template!r}") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"invalid value for '{key}': cannot format {template!r} with {dict(values)!r}: {e}") from None


def format_content(row: Mapping[str, Any], cfg: PromptsConfig) -> str:
    """The content part of an item's prompt (name, brand, category, price).

    Args:
        row: Mapping with at least the fields of ``cfg.content_template`` (items columns).
        cfg: Prompt templates.

    Returns:
        e.g. ``"Joe's BBQ (independent), Food / BBQ, price 25"``.
    """
    values = {f: row.get(f) for f in CONTENT_FIELDS}
    if _is_null(values["brand"]) or str(values["brand"]).strip() == "":
        values["brand"] = cfg.missing_brand
    return _render(cfg.content_template, values, cfg.missing_value, "prompts.content_template")


def format_location(row: Mapping[str, Any], cfg: PromptsConfig, level: str = "town") -> str:
    """The location part of an item's prompt.

    Args:
        row: Mapping with ``town, county, state`` (and ``district`` at district level).
        cfg: Prompt templates.
        level: ``"town"`` (``cfg.location_template``, e.g. ``"located in Austin, Travis, Texas"``) or
            ``"district"`` (``cfg.district_template``, e.g.
            ``"located in Phoenix district 2.1 km N 0.8 km E, Maricopa County, Arizona"``).
    """
    if level == "district":
        values = {f: row.get(f) for f in DISTRICT_FIELDS}
        return _render(cfg.district_template, values, cfg.missing_value, "prompts.district_template")
    values = {f: row.get(f) for f in LOCATION_FIELDS}
    return _render(cfg.location_template, values, cfg.missing_value, "prompts.location_template")


def district_name(town: str, north_km: float, east_km: float) -> str:
    """Readable name of a district from its centre's offset to the town's origin (0.1 km steps).

    Example: ``district_name("Phoenix", 2.14, -0.76) == "Phoenix district 2.1 km N 0.8 km W"``.
    Distinct H3 cells at resolution >= 7 have centres >= 0.8 km apart, so their names differ.
    """
    ns = "S" if round(north_km, 1) < 0 else "N"
    ew = "W" if round(east_km, 1) < 0 else "E"
    return f"{town} district {abs(north_km):.1f} km {ns} {abs(east_km):.1f} km {ew}"


def district_names(town, lat, lon, origin_lat, origin_lon, res: int) -> list[str]:
    """District name of each item: its H3 cell at ``res``, named relative to its town's origin.

    The cell centre (not the item's own point) is measured, so every item of a cell inside one town
    gets the same name; items of one cell in two towns get two districts (the town is in the name).

    Args:
        town: (N,) town names.
        lat, lon: (N,) item degrees.
        origin_lat, origin_lon: (N,) degrees of each item's town origin (GeoNames point or centroid).
        res: H3 resolution of a district.

    Returns:
        (N,) names (:func:`district_name`).
    """
    from lgsid.geo import cell_centres, latlng_to_cells, local_offsets_km

    clat, clon = cell_centres(latlng_to_cells(lat, lon, res))
    north, east = local_offsets_km(clat, clon, origin_lat, origin_lon)
    return [district_name(t, n, e) for t, n, e in zip(town, north, east)]


def location_level(df: "DataFrame", cfg: PromptsConfig) -> str:
    """The location level in force for a catalogue: ``cfg.location_level``, or the automatic choice.

    ``"auto"`` counts distinct qualified towns (``state|county|town``) and counties of ``df`` (items
    or geo_prompts, which hold the same names) and applies :func:`lgsid.geo.choose_location_level`,
    so the prompts, negatives and pairs steps agree on the same data.
    """
    if cfg.location_level != "auto":
        return cfg.location_level
    from pyspark.sql import functions as F

    from lgsid.geo import choose_location_level

    r = df.agg(
        F.countDistinct("state", "county", "town").alias("t"), F.countDistinct("state", "county").alias("c")
    ).first()
    return choose_location_level(int(r["t"]), int(r["c"]), cfg.auto_min_towns)


def location_keys(df: "DataFrame", level: str) -> "DataFrame":
    """Add ``loc_key`` (a location) and ``region_key`` (the level above it, for "far" and "outside").

    Town level (the paper): ``loc_key = state|county|town``, ``region_key = state|county``.
    District level: ``loc_key = state|county|town|location_text`` (the district's name is in its
    text), ``region_key = state|county|town``. ``df`` needs ``state, county, town`` (and
    ``location_text`` at district level).
    """
    from pyspark.sql import functions as F

    if level == "district":
        return df.withColumn("loc_key", F.concat_ws("|", "state", "county", "town", "location_text")).withColumn(
            "region_key", F.concat_ws("|", "state", "county", "town")
        )
    if level != "town":
        raise ConfigError(f"invalid value for 'prompts.location_level': {level!r}; valid: auto, town, district")
    return df.withColumn("loc_key", F.concat_ws("|", "state", "county", "town")).withColumn(
        "region_key", F.concat_ws("|", "state", "county")
    )


def combine_prompt(content: str, location: str, cfg: PromptsConfig) -> str:
    """The full prompt from a content part and a (possibly another item's) location part."""
    return _render(cfg.prompt_template, {"content": content, "location": location}, cfg.missing_value, "prompts.prompt_template")


def combine_prompt_col(content: "Column", location: "Column", cfg: PromptsConfig) -> "Column":
    """:func:`combine_prompt` as a Spark Column (``concat`` of the template's literal text and fields).

    Usable inside higher-order functions (``F.transform``). Only plain ``{content}``/``{location}``
    fields are supported here; a template with a format spec or conversion raises ConfigError.
    """
    from pyspark.sql import functions as F

    parts: list = []
    cols = {"content": content, "location": location}
    for literal, field, spec, conv in string.Formatter().parse(cfg.prompt_template):
        if literal:
            parts.append(F.lit(literal))
        if field is None:
            continue
        if spec or conv or field not in cols:
            raise ConfigError(
                f"invalid value for 'prompts.prompt_template': only plain {{content}} and {{location}} fields are supported, got {{{field}}}"
            )
        parts.append(F.coalesce(cols[field], F.lit(cfg.missing_value)))
    return F.concat(*parts) if parts else F.lit("")


def town_origins(df: "DataFrame") -> pd.DataFrame:
    """The origin of each town's district names (:func:`district_names`), one row per town of ``df``.

    A town's origin is its GeoNames point (:func:`lgsid.sources.geocode.place_coordinates`), or,
    when GeoNames has no place of that qualified name (a catalogue that brings its own admin names),
    the mean position of the town's rows of ``df``. The mean is a sum of nano-degrees in exact
    decimals, so it does not depend on how Spark partitions the rows: the ``prompts``
    step (on ``items``) and the ``tokenize`` step (on ``geo_prompts``, the same rows) get the same
    bits, and the table the SID model stores for cold start is the one the prompts were built with.

    Args:
        df: Rows with ``state, county, town, lat, lon`` (``items`` or ``geo_prompts``).

    Returns:
        pandas frame ``state, county, town, lat, lon`` (one row per town, sorted by name).
    """
    from pyspark.sql import functions as F

    from lgsid.sources.geocode import place_coordinates

    nano = lambda c: F.round(F.col(c) * 1e9).cast("decimal(12,0)")  # noqa: E731  (exact sums, no overflow)
    cen = (df.where(F.col("lat").isNotNull() & F.col("lon").isNotNull())
           .groupBy("state", "county", "town")
           .agg(F.sum(nano("lat")).alias("_slat"), F.sum(nano("lon")).alias("_slon"), F.count(F.lit(1)).alias("_n"))
           .toPandas())
    cen = cen.sort_values(["state", "county", "town"], na_position="first").reset_index(drop=True)
    n = cen["_n"].to_numpy(dtype=np.float64)
    lat = cen["_slat"].astype(float).to_numpy(dtype=np.float64) / n / 1e9  # (T,)
    lon = cen["_slon"].astype(float).to_numpy(dtype=np.float64) / n / 1e9  # (T,)
    glat, glon = place_coordinates(cen["state"], cen["county"], cen["town"])
    known = ~np.isnan(glat)
    lat[known], lon[known] = glat[known], glon[known]
    return pd.DataFrame({"state": cen["state"], "county": cen["county"], "town": cen["town"], "lat": lat, "lon": lon})


def catalogue_location(df: "DataFrame", cfg: PromptsConfig) -> tuple[str, pd.DataFrame | None]:
    """What the location part of a catalogue's prompts depends on besides the row: (level, town origins).

    The one resolution used by the ``prompts`` step (on ``items``) and by the ``tokenize`` step (on
    ``geo_prompts``, recorded in the SID model for cold start): :func:`location_level`, and at
    district level :func:`town_origins` (``None`` at town level).
    """
    level = location_level(df, cfg)
    return level, (town_origins(df) if level == "district" else None)


def prompt_texts(frame: pd.DataFrame, cfg: PromptsConfig, level: str, origins: pd.DataFrame | None = None) -> pd.DataFrame:
    """The prompt text of item rows: the one function behind ``geo_prompts`` and the SID model's cold start.

    :func:`build_prompts` calls it on each Arrow batch inside its pandas UDF;
    :meth:`lgsid.serving.sid_model.SIDModel.embed_raw` calls it on a request's raw rows with the
    level and origins recorded at tokenize time. At district level each row's district is named
    (:func:`district_names`) from its town's origin in ``origins``; a town absent from ``origins``
    (a new town at serving time) is measured from the row's own position, so its district reads
    ``"<town> district 0.x km N 0.y km E"`` (the offset of the row's H3 cell centre from the row).

    Args:
        frame: N rows with ``name, brand, category_l1, category_l2, price, town, county, state``
            (and ``lat, lon`` at district level).
        cfg: Prompt templates.
        level: ``"town"`` or ``"district"`` (resolved: never ``"auto"``).
        origins: At district level, ``state, county, town, lat, lon`` per town (:func:`town_origins`).

    Returns:
        N rows ``content_text, location_text, prompt`` (a fresh RangeIndex).
    """
    n = len(frame)
    if level == "district":
        lat = pd.to_numeric(frame["lat"], errors="coerce").to_numpy(dtype=np.float64)  # (N,)
        lon = pd.to_numeric(frame["lon"], errors="coerce").to_numpy(dtype=np.float64)  # (N,)
        table = {} if origins is None else {
            (s, c, t): (a, b) for s, c, t, a, b in zip(origins["state"], origins["county"], origins["town"], origins["lat"], origins["lon"])
        }
        olat, olon = lat.copy(), lon.copy()  # the rule for a town without an origin: the row's own position
        for i, key in enumerate(zip(frame["state"], frame["county"], frame["town"])):
            o = table.get(key)
            if o is not None:
                olat[i], olon[i] = o
        district = district_names(list(frame["town"]), lat, lon, olat, olon, cfg.district_resolution)
    elif level == "town":
        district = [None] * n
    else:
        raise ConfigError(f"invalid value for 'prompts.location_level': {level!r}; valid: auto, town, district")
    content, location, prompt = [], [], []
    cols = [frame[f] for f in CONTENT_FIELDS + LOCATION_FIELDS]
    for row in zip(*cols, district):
        r = dict(zip(CONTENT_FIELDS + LOCATION_FIELDS + ("district",), row))
        c, l = format_content(r, cfg), format_location(r, cfg, level)
        content.append(c)
        location.append(l)
        prompt.append(combine_prompt(c, l, cfg))
    return pd.DataFrame({"content_text": content, "location_text": location, "prompt": prompt})


def build_prompts(items_df: "DataFrame", cfg: PromptsConfig, level: str | None = None,
                  origins: pd.DataFrame | None = None) -> "DataFrame":
    """Items -> geo prompts (pure transform; geo_prompts schema).

    The text is produced by :func:`prompt_texts` (:func:`format_content`, :func:`format_location`,
    :func:`combine_prompt` and, at district level, :func:`district_names`) inside one pandas UDF, so
    Spark, Python and the SID model's cold start agree by construction.

    Args:
        items_df: Rows of the ``items`` table.
        cfg: Prompt templates.
        level: Location level; ``None`` = :func:`location_level` of ``items_df``.
        origins: Town origins at district level; ``None`` = :func:`town_origins` of ``items_df``.

    Returns:
        DataFrame ``item_id, content_text, location_text, prompt, state, county, town, lat, lon``.
    """
    from pyspark.sql import functions as F

    # Fail fast on the driver (a bad template would otherwise fail inside an executor).
    level = location_level(items_df, cfg) if level is None else level
    probe = format_content({"name": "n", "brand": None, "category_l1": "a", "category_l2": "b", "price": 1.0}, cfg)
    combine_prompt(probe, format_location({"district": "d", "town": "t", "county": "c", "state": "s"}, cfg, level), cfg)
    location_keys(items_df.limit(0).withColumn("location_text", F.lit("")), level)  # rejects an unknown level
    if level == "district" and origins is None:
        origins = town_origins(items_df)  # small: one row per town, shipped with the UDF

    fields = CONTENT_FIELDS + LOCATION_FIELDS + ("lat", "lon")

    @F.pandas_udf("content_text string, location_text string, prompt string")
    def _texts(*cols):  # each a pd.Series
        return prompt_texts(pd.DataFrame(dict(zip(fields, cols))), cfg, level, origins)

    t = _texts(*[F.col(c) for c in fields])
    return items_df.select(
        "item_id",
        t["content_text"].alias("content_text"),
        t["location_text"].alias("location_text"),
        t["prompt"].alias("prompt"),
        "state",
        "county",
        "town",
        "lat",
        "lon",
    )
