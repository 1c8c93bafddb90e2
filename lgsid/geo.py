"""Geography helpers: haversine distance (numpy and Spark), unit vectors, H3 cells, location levels.

All distances are great-circle distances on a sphere of radius :data:`EARTH_RADIUS_KM`. The
negative miner (:mod:`lgsid.negatives`) ranks candidate towns by :func:`haversine_km` and finds
them with a k-d tree over :func:`unit_xyz`; the district level of :mod:`lgsid.prompts` uses the H3
helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import h3.api.basic_int as h3i
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG), km."""

def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance by the haversine formula, vectorised over numpy broadcasting.

    ``d = 2 R asin(sqrt(sin²(Δφ/2) + cos φ1 cos φ2 sin²(Δλ/2)))``

    Args:
        lat1, lon1, lat2, lon2: Degrees; scalars or arrays that broadcast together.

    Returns:
        Distance in km, shape of the broadcast inputs (a 0-d array for scalars).
    """
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def unit_xyz(lat, lon) -> np.ndarray:
    """Latitude/longitude (degrees) as points on the unit sphere: ``[cos φ cos λ, cos φ sin λ, sin φ]``.

    Euclidean distance between two points is the chord length, monotone in great-circle distance
    (no wrap-around at ±180°), so k-d trees and dot products over these vectors rank by distance.

    Args:
        lat, lon: (N,) degrees.

    Returns:
        (N, 3) float64 unit vectors.
    """
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)


def haversine_km_col(lat1: "Column", lon1: "Column", lat2: "Column", lon2: "Column") -> "Column":
    """The same formula as :func:`haversine_km`, as a Spark Column built from SQL functions (no UDF)."""
    from pyspark.sql import functions as F

    p1, p2 = F.radians(lat1), F.radians(lat2)
    a = F.pow(F.sin((p2 - p1) / 2.0), 2) + F.cos(p1) * F.cos(p2) * F.pow(F.sin(F.radians(lon2 - lon1) / 2.0), 2)
    a = F.least(F.greatest(a, F.lit(0.0)), F.lit(1.0))
    return F.lit(2.0 * EARTH_RADIUS_KM) * F.asin(F.sqrt(a))


# ------------------------------------------------------------------------------------------ H3


def latlng_to_cells(lat: Sequence[float], lon: Sequence[float], res: int) -> np.ndarray:
    """H3 cell ids (int64) of points at resolution ``res``.

    Args:
        lat, lon: Degrees, shape (N,).
        res: H3 resolution 0..15.

    Returns:
        (N,) int64 cell ids.
    """
    f = h3i.latlng_to_cell
    return np.fromiter((f(float(a), float(b), res) for a, b in zip(lat, lon)), dtype=np.int64, count=len(lat))


# ------------------------------------------------------------------------------- locations

LOCATION_LEVELS = ("town", "district")
"""What a "location" is: a GeoNames town (the paper's town), or a district (an H3 cell inside a town)."""


def choose_location_level(n_towns: int, n_counties: int, min_towns: int) -> str:
    """The automatic location level of a catalogue from its geographic extent.

    ``"town"`` (the paper's province/city/town semantics: a location is a town, "far" means another
    county) when the catalogue spans at least 2 counties and ``min_towns`` towns; otherwise
    ``"district"`` (a location is an H3 cell inside a town, "far" means another town). A
    one-county city (e.g. Phoenix: 1 county, ~10 GeoNames towns) has too few towns to fill a
    reward list of K candidates and no other county to draw far negatives or geo-constrained
    pairs from, and town names cannot carry the 1-5 km distances that matter there.

    Example: ``choose_location_level(300, 250, 64) == "town"``; ``(10, 1, 64)`` and ``(40, 3, 64)``
    give ``"district"``.
    """
    return "town" if n_counties >= 2 and n_towns >= min_towns else "district"


def local_offsets_km(lat, lon, lat0, lon0) -> tuple[np.ndarray, np.ndarray]:
    """(north, east) offsets in km of points from an origin on the local tangent plane (equirectangular).

    ``north = R·(φ − φ0)``, ``east = R·(λ − λ0)·cos φ0`` (radians, R = :data:`EARTH_RADIUS_KM`);
    within a town (tens of km) this differs from the great-circle distance by well under 1%.

    Args:
        lat, lon: Degrees, (N,).
        lat0, lon0: Origin degrees, scalars or (N,).

    Returns:
        Two (N,) float64 arrays, km.
    """
    lat, lon, lat0, lon0 = (np.asarray(x, dtype=np.float64) for x in (lat, lon, lat0, lon0))
    north = EARTH_RADIUS_KM * np.radians(lat - lat0)
    dlon = (lon - lon0 + 180.0) % 360.0 - 180.0
    east = EARTH_RADIUS_KM * np.radians(dlon) * np.cos(np.radians(lat0))
    return north, east


def cell_centres(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) degrees of the centres of H3 cells (one h3 call per distinct cell)."""
    cells = np.asarray(cells, dtype=np.int64)
    if cells.size == 0:
        return np.empty(0), np.empty(0)
    u, inv = np.unique(cells, return_inverse=True)
    c = np.asarray([h3i.cell_to_latlng(int(x)) for x in u]).reshape(len(u), 2)
    return c[inv, 0], c[inv, 1]
