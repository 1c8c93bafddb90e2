"""A small clustered toy catalogue for tests and benchmarks (no files, no downloads).

Items live in a few states/counties/towns; their embeddings are a town component + a category
component + noise, so a good tokenizer should find geographic and category structure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_STATES = {"Texas": (31.0, -99.0), "Ohio": (40.3, -82.8), "Oregon": (44.0, -120.5), "Maine": (45.3, -69.2)}
_CATS = {"Food": ["BBQ", "Pizza", "Cafe"], "Shops": ["Books", "Hardware"], "Services": ["Salon", "Gym"]}


def toy_catalogue(n: int, dim: int = 24, seed: int = 0, counties_per_state: int = 3, towns_per_county: int = 2) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` items with the ``items`` columns and (n, dim) float32 embeddings.

    Returns:
        (items frame sorted by item_id, embeddings aligned with it).
    """
    rng = np.random.default_rng(seed)
    towns = []
    for s, (lat0, lon0) in _STATES.items():
        for c in range(counties_per_state):
            for t in range(towns_per_county):
                # county names repeat across states on purpose (qualify state|county when comparing)
                towns.append((s, f"County{c}", f"Town{c}{t}", lat0 + rng.normal(0, 1.0), lon0 + rng.normal(0, 1.0)))
    cats = [(l1, l2) for l1, l2s in _CATS.items() for l2 in l2s]
    t_idx = rng.integers(0, len(towns), n)
    c_idx = rng.integers(0, len(cats), n)
    brands = np.array([None, "Acme", "Zed", "Nova"], dtype=object)
    town_vec = rng.standard_normal((len(towns), dim))
    cat_vec = rng.standard_normal((len(cats), dim))
    emb = (town_vec[t_idx] + 0.7 * cat_vec[c_idx] + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    tw = [towns[i] for i in t_idx]
    items = pd.DataFrame({
        "item_id": [f"item{i:06d}" for i in range(n)],
        "name": [f"Shop {i}" for i in range(n)],
        "brand": brands[rng.integers(0, len(brands), n)],
        "category_l1": [cats[i][0] for i in c_idx],
        "category_l2": [cats[i][1] for i in c_idx],
        "price": rng.uniform(5, 80, n).round(0),
        "lat": np.array([t[3] for t in tw]) + rng.normal(0, 0.05, n),
        "lon": np.array([t[4] for t in tw]) + rng.normal(0, 0.05, n),
        "state": [t[0] for t in tw],
        "county": [t[1] for t in tw],
        "town": [t[2] for t in tw],
        "address": [f"{i} Main St" for i in range(n)],
        "source": "toy",
    })
    return items, emb
