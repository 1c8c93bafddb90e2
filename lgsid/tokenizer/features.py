"""The level-1 clustering feature of HGIT (Eq. 9): admin regions, coordinates, categories, brand.

Id-valued attributes (state/county/town, category levels, brand) are turned into *fixed, seeded*
Gaussian vectors: the id string is hashed with BLAKE2b (stable across runs, processes and
machines, unlike Python's salted ``hash()``), the digest seeds a NumPy generator and the generator
draws a ``feature_dim`` vector scaled by ``1/sqrt(feature_dim)`` (unit norm in expectation). A
hierarchy (state > county > town) is embedded as the mean of the vectors of its qualified
prefixes (``"state"``, ``"state|county"``, ``"state|county|town"``), so two towns in the same
county share two thirds of their vector. No vocabulary is stored and unseen ids need no refit.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from lgsid.errors import ValidationError
from lgsid.geo import unit_xyz

FEATURE_COLUMNS = ("lat", "lon", "state", "county", "town", "category_l1", "category_l2", "brand")
"""Columns the tokenizer's ``features`` frame must hold (``brand``/``category_l1`` may be null)."""

_MISSING = "<none>"


def stable_id_vector(key: str, dim: int, salt: str = "") -> np.ndarray:
    """A fixed pseudo-random vector for an id string, identical in every process.

    Args:
        key: The id (e.g. ``"Texas|Travis"``).
        dim: Vector dimension D.
        salt: Namespace so that e.g. a brand and a town with the same name get different vectors.

    Returns:
        (D,) float64 vector ~ N(0, I/D).
    """
    digest = hashlib.blake2b(f"{salt}\x1f{key}".encode("utf-8"), digest_size=8).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "little"))
    return rng.standard_normal(dim) / np.sqrt(dim)


class IdEmbedder:
    """Caches :func:`stable_id_vector` per distinct id so a batch costs one hash per new value.

    Args:
        dim: Vector dimension.
        salt: Namespace of the ids.
    """

    def __init__(self, dim: int, salt: str):
        self.dim, self.salt = dim, salt
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, keys: Sequence[str]) -> np.ndarray:
        """(N,) id strings -> (N, D) vectors."""
        codes, uniques = pd.factorize(pd.Series(keys, dtype=object), use_na_sentinel=False)
        table = np.empty((len(uniques), self.dim))
        for i, u in enumerate(uniques):
            v = self._cache.get(u)
            if v is None:
                v = self._cache[u] = stable_id_vector(str(u), self.dim, self.salt)
            table[i] = v
        return table[codes]


def geo_unit_vector(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """f_geo: latitude/longitude (degrees) as a point on the unit sphere (:func:`lgsid.geo.unit_xyz`).

    Args:
        lat: (N,) degrees. lon: (N,) degrees.

    Returns:
        (N, 3) float64 unit vectors.
    """
    return unit_xyz(lat, lon)


def geo_extent(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and spatial scale of a catalogue on the unit sphere, for :func:`scaled_geo_vector`.

    ``c = mean_i xyz_i`` and ``s = sqrt(mean_i ||xyz_i - c||²)`` (the RMS chord distance of the items
    from their centroid, in Earth radii; ~1e-3 across a city, ~0.3 across the USA).

    Args:
        lat: (N,) degrees. lon: (N,) degrees.

    Returns:
        ``(c (3,), s)``; ``s`` is floored at 1e-9 (one km is ~1.6e-4) so a one-place catalogue stays finite.
    """
    xyz = unit_xyz(lat, lon)  # (N, 3)
    c = xyz.mean(axis=0)
    s = float(np.sqrt(((xyz - c) ** 2).sum(axis=1).mean()))
    return c, max(s, 1e-9)


def scaled_geo_vector(lat: np.ndarray, lon: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    """f_geo scaled to the catalogue's extent: ``(xyz(lat, lon) - c) / s`` (:func:`geo_extent`).

    Departure from a raw unit vector (``tokenizer.geo_scale: sphere``): across one city the unit
    vectors of two items differ by ~1e-3, against O(1) for the seeded id vectors of Eq. 9, so place
    barely enters the level-1 clustering whatever ``w_geo`` is. Scaled, the catalogue's items have
    RMS norm 1, like the other blocks, and ``w_geo`` weighs place against category on any extent
    (a city or a country).

    Args:
        lat: (N,) degrees. lon: (N,) degrees. centre: (3,) c. scale: s > 0.

    Returns:
        (N, 3) float64.
    """
    return (unit_xyz(lat, lon) - np.asarray(centre, dtype=np.float64)) / float(scale)


def hierarchy_keys(frame: pd.DataFrame, columns: Sequence[str]) -> list[list[str]]:
    """Qualified prefixes of a hierarchy: for columns (a, b, c) -> ["a", "a|b", "a|b|c"] per row.

    Returns:
        One list of N keys per level.
    """
    out, prefix = [], None
    for c in columns:
        vals = frame[c].astype(object).where(frame[c].notna(), _MISSING).astype(str)
        prefix = vals if prefix is None else prefix + "|" + vals
        out.append(prefix.tolist())
    return out


def composite_embedding(keys_per_level: list[list[str]], embedder: IdEmbedder) -> np.ndarray:
    """Mean of the fixed vectors of every hierarchy level's qualified key.

    Args:
        keys_per_level: H lists of N keys (see :func:`hierarchy_keys`).
        embedder: Vector source.

    Returns:
        (N, D) composite embeddings.
    """
    return np.mean([embedder(keys) for keys in keys_per_level], axis=0)


def check_features(features: pd.DataFrame, ids: Sequence | None = None) -> None:
    """Validate the tokenizer's feature frame at the boundary.

    Raises:
        ValidationError: a required column is missing, or lat/lon/state/county/town hold nulls
            or out-of-range values; the message names the column and the first offending items.
    """
    missing = [c for c in FEATURE_COLUMNS if c not in features.columns]
    if missing:
        raise ValidationError(f"tokenizer features: missing column(s) {missing}; got {list(features.columns)}")
    ids = np.asarray(ids if ids is not None else features.get("item_id", pd.Series(range(len(features)))), dtype=object)
    for c in ("lat", "lon", "state", "county", "town", "category_l2"):
        bad = features[c].isna().to_numpy()
        if bad.any():
            raise ValidationError(f"tokenizer features: null in column '{c}' for item(s) {list(ids[bad][:5])} ({int(bad.sum())} rows)")
    lat = features["lat"].to_numpy(dtype=np.float64)
    lon = features["lon"].to_numpy(dtype=np.float64)
    bad = ~((lat >= -90) & (lat <= 90) & (lon >= -180) & (lon <= 180))
    if bad.any():
        raise ValidationError(f"tokenizer features: lat/lon out of range for item(s) {list(ids[bad][:5])}")


class ClusteringFeaturizer:
    """Builds F (Eq. 9) with cached id vectors; holds the weights, the dimension and the geo extent.

    Args:
        weights: ``{"admin": w_admin, "geo": w_geo, "cat": w_cat, "brand": w_brand}``.
        feature_dim: Dimension of the admin/category/brand vectors.

    Attributes:
        geo_centre, geo_scale: the catalogue's extent (:func:`geo_extent`) once :meth:`fit_geo` ran;
            f_geo is then :func:`scaled_geo_vector`, else the raw unit vector :func:`geo_unit_vector`.
    """

    def __init__(self, weights: Mapping[str, float], feature_dim: int):
        self.weights = dict(weights)
        self.feature_dim = int(feature_dim)
        self.geo_centre: np.ndarray | None = None
        self.geo_scale: float | None = None
        self._admin = IdEmbedder(self.feature_dim, "admin")
        self._cat = IdEmbedder(self.feature_dim, "category")
        self._brand = IdEmbedder(self.feature_dim, "brand")

    def fit_geo(self, features: pd.DataFrame) -> "ClusteringFeaturizer":
        """Fix the geo extent on the fitting catalogue (``tokenizer.geo_scale: extent``); later calls reuse it."""
        self.geo_centre, self.geo_scale = geo_extent(features["lat"].to_numpy(np.float64), features["lon"].to_numpy(np.float64))
        return self

    @property
    def dim(self) -> int:
        """Width of F: 3 + 3 * feature_dim."""
        return 3 + 3 * self.feature_dim

    def __call__(self, features: pd.DataFrame) -> np.ndarray:
        """(N rows of FEATURE_COLUMNS) -> F, (N, 3 + 3·feature_dim) float64.

        The id vectors are built once per distinct (state, county, town, category_l1, category_l2,
        brand) combination of the batch, so strings are touched O(#distinct) times; F is filled in
        row chunks of :data:`lgsid.tokenizer.base.CHUNK_BYTES` (each chunk's rows gathered from the
        combinations and weighted by :func:`clustering_feature`), so F is the only (N, ·) array.
        """
        from lgsid.tokenizer.base import row_chunks

        id_cols = ["state", "county", "town", "category_l1", "category_l2", "brand"]
        group = features.groupby(id_cols, dropna=False, sort=False).ngroup().to_numpy()  # (N,)
        first = np.unique(group, return_index=True)[1]  # one representative row per combination
        u = features.iloc[first][id_cols]
        order = np.argsort(group[first])  # rows of u sorted by group id
        f_admin = composite_embedding(hierarchy_keys(u, ("state", "county", "town")), self._admin)[order]
        f_cat = composite_embedding(hierarchy_keys(u, ("category_l1", "category_l2")), self._cat)[order]
        f_brand = composite_embedding(hierarchy_keys(u, ("brand",)), self._brand)[order]
        lat, lon = features["lat"].to_numpy(np.float64), features["lon"].to_numpy(np.float64)
        weights = {f"w_{k}": v for k, v in self.weights.items()}
        out = np.empty((len(features), self.dim))
        for sl in row_chunks(len(features), 2 * self.dim * 8):  # the chunk's gathered blocks and its F rows
            g = group[sl]
            geo = geo_unit_vector(lat[sl], lon[sl]) if self.geo_centre is None else scaled_geo_vector(lat[sl], lon[sl], self.geo_centre, self.geo_scale)
            out[sl] = clustering_feature(f_admin[g], geo, f_cat[g], f_brand[g], **weights)
        return out


def clustering_feature(
    f_admin: np.ndarray, f_geo: np.ndarray, f_cat: np.ndarray, f_brand: np.ndarray,
    w_admin: float, w_geo: float, w_cat: float, w_brand: float,
) -> np.ndarray:
    """Level-1 clustering feature.

    ``F = [w_admin·f_admin, w_geo·f_geo, w_cat·f_cat, w_brand·f_brand]`` — Eq. 9, arXiv 2511.14221.
    The paper concatenates discrete attribute features; we use fixed seeded id vectors instead of
    one-hot codes (see module docstring) and a 3-D unit vector for lat/lon.

    Args:
        f_admin: (N, Da). f_geo: (N, 3). f_cat: (N, Dc). f_brand: (N, Db). w_*: scalar weights.

    Returns:
        (N, Da + 3 + Dc + Db) float64.
    """
    parts = [(w_admin, f_admin), (w_geo, f_geo), (w_cat, f_cat), (w_brand, f_brand)]
    dtype = np.result_type(*(w * f[:0] for w, f in parts))
    out = np.empty((len(f_admin), sum(f.shape[1] for _, f in parts)), dtype=dtype)
    o = 0
    for w, f in parts:  # each weighted block written in place: no weighted copies before a concatenation
        np.multiply(w, f, out=out[:, o:o + f.shape[1]])
        o += f.shape[1]
    return out
