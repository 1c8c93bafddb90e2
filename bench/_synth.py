"""Synthetic geography for the data-plane benchmarks (not part of the library).

Points cluster around real city centres with Zipf city weights and heavy-tailed (Pareto) radii,
plus a uniform background over the contiguous US. Towns are the Voronoi cells of town seeds drawn
from the same mixture (so dense areas have many small towns, like real metro areas); counties
and states group towns the same way, with towns/county ~ 15 and counties/state ~ 20.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.neighbors import BallTree, KDTree

from lgsid.geo import haversine_km, unit_xyz

CITIES = [
    (40.71, -74.01), (34.05, -118.24), (41.88, -87.63), (29.76, -95.37), (33.45, -112.07),
    (39.95, -75.17), (29.42, -98.49), (32.72, -117.16), (32.78, -96.80), (37.34, -121.89),
    (30.27, -97.74), (39.74, -104.99), (47.61, -122.33), (25.76, -80.19), (42.36, -71.06),
    (33.75, -84.39), (44.98, -93.27), (45.52, -122.68), (36.17, -115.14), (35.23, -80.84),
    (38.63, -90.20), (39.10, -94.58), (36.16, -86.78), (35.47, -97.52), (43.04, -87.91),
]


def _points(n: int, rng: np.random.Generator, bg_share: float) -> tuple[np.ndarray, np.ndarray]:
    n_bg = int(round(n * bg_share))
    w = 1.0 / np.arange(1, len(CITIES) + 1)
    w /= w.sum()
    city = rng.choice(len(CITIES), size=n - n_bg, p=w)
    c = np.asarray(CITIES)[city]
    scale = 4.0 + 20.0 * np.sqrt(w[city] / w.max())  # bigger cities sprawl more
    r_km = np.minimum(scale * (rng.pareto(1.6, size=len(city)) + 0.05), 250.0)
    theta = rng.uniform(0, 2 * np.pi, size=len(city))
    lat = c[:, 0] + (r_km * np.cos(theta)) / 111.0
    lon = c[:, 1] + (r_km * np.sin(theta)) / (111.0 * np.cos(np.radians(c[:, 0])))
    blat = rng.uniform(25.0, 49.0, size=n_bg)
    blon = rng.uniform(-124.0, -67.0, size=n_bg)
    return np.concatenate([lat, blat]), np.concatenate([lon, blon])


def synth_items(n: int, seed: int = 0, bg_share: float = 0.1, items_per_town: int = 20) -> pd.DataFrame:
    """``n`` items with lat/lon, state/county/town and location_text (geo_prompts-like columns)."""
    rng = np.random.default_rng(seed)
    lat, lon = _points(n, rng, bg_share)
    n_towns = max(8, n // items_per_town)
    tlat, tlon = _points(n_towns, rng, bg_share)
    town = KDTree(unit_xyz(tlat, tlon)).query(unit_xyz(lat, lon), k=1)[1][:, 0]
    n_cty = max(4, n_towns // 15)
    cty_of_town = KDTree(unit_xyz(tlat[:n_cty], tlon[:n_cty])).query(unit_xyz(tlat, tlon), k=1)[1][:, 0]
    n_st = max(3, n_cty // 20)
    st_of_cty = KDTree(unit_xyz(tlat[:n_st], tlon[:n_st])).query(unit_xyz(tlat[:n_cty], tlon[:n_cty]), k=1)[1][:, 0]
    cty = cty_of_town[town]
    st = st_of_cty[cty]
    df = pd.DataFrame(
        {
            "item_id": [f"it{i:07d}" for i in range(n)],
            "lat": lat, "lon": lon,
            "state": [f"S{s}" for s in st], "county": [f"C{c}" for c in cty], "town": [f"T{t}" for t in town],
        }
    )
    df["location_text"] = "located in " + df.town + ", " + df.county + ", " + df.state
    df["content_text"] = "Shop " + df.item_id
    df["prompt"] = df.content_text + "; " + df.location_text
    return df


def representatives(df: pd.DataFrame) -> pd.DataFrame:
    """Town medoids (vectorised; same rule as lgsid.negatives.town_representatives)."""
    key = df.state + "|" + df.county + "|" + df.town
    codes, uniq = pd.factorize(key)
    xyz = unit_xyz(df.lat.to_numpy(), df.lon.to_numpy())
    s = np.zeros((len(uniq), 3))
    np.add.at(s, codes, xyz)
    cnt = np.bincount(codes, minlength=len(uniq))[:, None]
    m = s / cnt
    clat = np.degrees(np.arctan2(m[:, 2], np.hypot(m[:, 0], m[:, 1])))
    clon = np.degrees(np.arctan2(m[:, 1], m[:, 0]))
    d = np.round(haversine_km(df.lat.to_numpy(), df.lon.to_numpy(), clat[codes], clon[codes]), 6)
    t = pd.DataFrame({"loc": codes, "d": d, "item_id": df.item_id.to_numpy(), "lat": df.lat.to_numpy(), "lon": df.lon.to_numpy()})
    rep = t.sort_values(["loc", "d", "item_id"]).drop_duplicates("loc")
    return rep.assign(loc_key=np.asarray(uniq)[rep["loc"].to_numpy()]).reset_index(drop=True)


def balltree_near(df: pd.DataFrame, need: int) -> dict[str, list[str]]:
    """Exact near sets by sklearn BallTree(haversine) over town representatives, single process.

    The anchor's own town has exactly one representative, so querying need+1 and dropping it is exact.
    """
    reps = representatives(df)
    tree = BallTree(np.radians(reps[["lat", "lon"]].to_numpy()), metric="haversine")
    k = min(need + 1, len(reps))
    _, idx = tree.query(np.radians(df[["lat", "lon"]].to_numpy()), k=k)
    key = (df.state + "|" + df.county + "|" + df.town).to_numpy()
    rep_key = reps.loc_key.to_numpy()
    rep_id = reps.item_id.to_numpy()
    out = {}
    for a, row, ak in zip(df.item_id.to_numpy(), idx, key):
        out[a] = [rep_id[j] for j in row if rep_key[j] != ak][:need]
    return out


def kdtree_near(df: pd.DataFrame, need: int) -> dict[str, list[str]]:
    """The miner's own near search (:class:`lgsid.negatives.TownIndex` + :func:`lgsid.negatives.search_near`)
    over the same town representatives, single process and without Spark: the search the Spark job
    runs per partition, timed on the same footing as :func:`balltree_near`."""
    from lgsid.negatives import TownIndex, search_near

    reps = representatives(df)
    parts = reps.loc_key.str.split("|", expand=True)
    index = TownIndex(pd.DataFrame({
        "rep_id": reps.item_id.to_numpy(), "rep_lat": reps.lat.to_numpy(), "rep_lon": reps.lon.to_numpy(),
        "loc_key": reps.loc_key.to_numpy(), "county_key": (parts[0] + "|" + parts[1]).to_numpy(),
        "state": parts[0].to_numpy(), "county": parts[1].to_numpy(), "town": parts[2].to_numpy(), "location_text": parts[2].to_numpy(),
    }))
    import pyarrow as pa

    own = index.lookup(pa.array((df.state + "|" + df.county + "|" + df.town).to_numpy(dtype=object), pa.string()), "loc_key")
    pos, _ = search_near(index, df.lat.to_numpy(), df.lon.to_numpy(), own, need)
    rep_id = index.rep_id
    return {a: [rep_id[j] for j in row if j >= 0] for a, row in zip(df.item_id.to_numpy(), pos)}
