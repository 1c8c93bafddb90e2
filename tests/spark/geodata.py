"""Tiny hand-made geographic catalogue shared by the data-plane Spark tests (not a test module)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lgsid.geo import haversine_km, unit_xyz

ITEM_COLS = ["item_id", "name", "brand", "category_l1", "category_l2", "price", "lat", "lon", "state", "county", "town", "address", "source"]


def tiny_items(seed: int = 0, n_towns: int = 14, per_town: tuple[int, int] = (2, 6)) -> pd.DataFrame:
    """Towns in 3 states / 6 counties: a dense cluster near (40, -100) and sparse outliers.

    Town names repeat across states ("Springfield") so qualification matters.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_towns):
        state = ["Alpha", "Beta", "Gamma"][t % 3]
        county = f"C{t % 2}"
        town = "Springfield" if t % 5 == 0 else f"T{t}"
        if t < n_towns - 3:  # dense cluster, towns a few km apart
            clat, clon = 40.0 + rng.uniform(-0.15, 0.15), -100.0 + rng.uniform(-0.2, 0.2)
        else:  # sparse outliers hundreds of km away
            clat, clon = 40.0 + rng.uniform(-4, 4), -100.0 + rng.uniform(-6, 6)
        for j in range(int(rng.integers(per_town[0], per_town[1] + 1))):
            rows.append(
                dict(
                    item_id=f"i{t:02d}_{j}", name=f"Shop {t}-{j}", brand=None if j % 2 else f"Brand{j}",
                    category_l1="Food", category_l2=["BBQ", "Hot pot", "Cafe"][j % 3], price=float(10 + j),
                    lat=clat + rng.normal(0, 0.01), lon=clon + rng.normal(0, 0.01),
                    state=state, county=county, town=town, address=None, source="test",
                )
            )
    return pd.DataFrame(rows, columns=ITEM_COLS)


def city_items(seed: int = 0, per_town: int = 30) -> pd.DataFrame:
    """A one-county city: two towns ~8 km apart, items spread over ~6 km around each (Phoenix-like)."""
    rng = np.random.default_rng(seed)
    rows = []
    for t, (town, clat, clon) in enumerate([("Alphaville", 33.45, -112.07), ("Betatown", 33.42, -111.99)]):
        for j in range(per_town):
            rows.append(
                dict(
                    item_id=f"c{t}_{j:02d}", name=f"Venue {t}-{j}", brand=None, category_l1="Food", category_l2="Cafe",
                    price=None, lat=clat + rng.uniform(-0.027, 0.027), lon=clon + rng.uniform(-0.032, 0.032),
                    state="Arizona", county="Testcounty", town=town, address=None, source="test",
                )
            )
    return pd.DataFrame(rows, columns=ITEM_COLS)


def representatives(items: pd.DataFrame) -> pd.DataFrame:
    """Brute-force location medoids: item nearest the mean unit vector of its location, ties by item_id.

    The location is ``state|county|town``, or ``items.loc_key`` when the frame has that column.
    """
    df = items if "loc_key" in items else items.assign(loc_key=items.state + "|" + items.county + "|" + items.town)
    out = []
    for key, g in df.groupby("loc_key"):
        x, y, z = unit_xyz(g.lat.to_numpy(), g.lon.to_numpy()).mean(axis=0)
        clat, clon = np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x))
        d = haversine_km(g.lat.to_numpy(), g.lon.to_numpy(), clat, clon)
        g = g.assign(_d=np.round(d, 6)).sort_values(["_d", "item_id"])
        out.append(g.iloc[0])
    return pd.DataFrame(out).reset_index(drop=True)


def brute_force_near(items: pd.DataFrame, need: int) -> dict[str, list[tuple[str, float]]]:
    """For every anchor: the ``need`` nearest other-town representatives as (cand_item_id, km)."""
    reps = representatives(items)
    res = {}
    for r in items.itertuples():
        key = r.loc_key if "loc_key" in items else f"{r.state}|{r.county}|{r.town}"
        cand = reps[reps.loc_key != key]
        d = haversine_km(r.lat, r.lon, cand.lat.to_numpy(), cand.lon.to_numpy())
        order = sorted(zip(d, cand.item_id), key=lambda t: (t[0], t[1]))[:need]
        res[r.item_id] = [(i, float(x)) for x, i in order]
    return res
