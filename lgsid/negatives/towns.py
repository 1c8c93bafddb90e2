"""Locations and their representatives: the keys of a location and its region, and one medoid item per location."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lgsid.geo import haversine_km_col

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame


def with_keys(prompts_df: "DataFrame", level: str = "town") -> "DataFrame":
    """``loc_key`` and ``county_key`` (the *region* of :func:`lgsid.prompts.location_keys`: the county at
    town level, the town at district level) of geo_prompts rows."""
    from lgsid.prompts import location_keys

    return location_keys(prompts_df, level).withColumnRenamed("region_key", "county_key")


def town_representatives(prompts_df: "DataFrame", level: str = "town") -> "DataFrame":
    """One representative item per location (town or district medoid, see :mod:`lgsid.negatives`).

    Args:
        prompts_df: geo_prompts rows (item_id, location_text, state, county, town, lat, lon).
        level: Location level (:func:`lgsid.prompts.location_level`).

    Returns:
        DataFrame ``loc_key, county_key, rep_id, rep_lat, rep_lon, location_text, state, county, town,
        n_items`` (items in the town).
    """
    from pyspark.sql import functions as F

    df = with_keys(prompts_df, level)
    phi, lmb = F.radians("lat"), F.radians("lon")
    cen = df.groupBy("loc_key").agg(
        F.avg(F.cos(phi) * F.cos(lmb)).alias("x"), F.avg(F.cos(phi) * F.sin(lmb)).alias("y"), F.avg(F.sin(phi)).alias("z")
    )
    cen = cen.select(
        "loc_key",
        F.degrees(F.atan2("z", F.sqrt(F.col("x") ** 2 + F.col("y") ** 2))).alias("c_lat"),
        F.degrees(F.atan2("y", F.col("x"))).alias("c_lon"),
    )
    d = df.join(cen, "loc_key").withColumn("_d", haversine_km_col(F.col("lat"), F.col("lon"), F.col("c_lat"), F.col("c_lon")))
    # the smallest (distance, item_id) per town, distances rounded to 1 mm so float noise cannot flip
    # exact ties (two-item towns); a struct min is one hash aggregation, no sort
    best = F.min(F.struct(F.round("_d", 6).alias("d"), "item_id", "lat", "lon", "location_text", "state", "county", "town"))
    g = d.groupBy("loc_key", "county_key").agg(best.alias("m"), F.count(F.lit(1)).alias("n_items"))
    return g.select(
        "loc_key", "county_key", F.col("m.item_id").alias("rep_id"), F.col("m.lat").alias("rep_lat"), F.col("m.lon").alias("rep_lon"),
        "m.location_text", "m.state", "m.county", "m.town", "n_items",
    )
