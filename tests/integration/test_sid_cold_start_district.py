"""Cold start at district level: a raw row of an existing item gets its ``geo_prompts`` prompt and its written codes.

A one-county toy city (``prompts.location_level=auto`` resolves to district): Phoenix and Tempe
Junction are GeoNames towns (origin: the GeoNames point), "Nowhereville" is not (origin: the mean
position of its items). Items spread over several H3 res-8 cells. The real ``prompts`` step writes
``geo_prompts``; the item embeddings are the packaged encoder's embeddings of those prompts; the real
``tokenize`` step registers the SID model and writes ``sid_items``. The registered model, loaded in
process (no server), must then build exactly ``geo_prompts.prompt`` from each item's raw row and give
the codes ``sid_items`` holds.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.spark

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

TOWNS = [("Phoenix", 33.4484, -112.0740), ("Tempe Junction", 33.4148, -111.9093), ("Nowhereville", 33.3000, -112.2000)]


def city(per_town: int = 10, seed: int = 3) -> pd.DataFrame:
    """Items of three towns of one county, each spread over ~3 km (several res-8 cells)."""
    rng = np.random.default_rng(seed)
    rows = []
    for t, (town, lat, lon) in enumerate(TOWNS):
        for j in range(per_town):
            rows.append(dict(item_id=f"v{t}_{j:02d}", name=f"Venue {t}-{j}", brand=[None, "Nova"][j % 2], category_l1=["Food", "Shops"][j % 2],
                             category_l2=["Cafe", "Books"][j % 2], price=[None, 12.0][j % 2], lat=lat + rng.uniform(-0.015, 0.015),
                             lon=lon + rng.uniform(-0.018, 0.018), state="Arizona", county="Maricopa County", town=town, address=None, source="test"))
    return pd.DataFrame(rows)


def test_cold_start_prompts_and_codes_equal_the_pipelines_at_district_level(spark, cfg):
    import mlflow
    import torch

    from lgsid.config import replace
    from lgsid.embedding_f32 import encode_f32
    from lgsid.encoder import load_encoder
    from lgsid.geo import latlng_to_cells
    from lgsid.serving.sid_model import RAW_COLUMNS
    from lgsid.sources.geocode import place_coordinates
    from lgsid.steps import run_step
    from lgsid.storage import DeltaStore

    torch.set_num_threads(1)
    cfg = replace(cfg, tokenizer={"codebook_sizes": [4, 3, 2], "epochs": 2, "batch_size": 16, "geo_coverage_sample": 20},
                  sid_store={"batch_size": 16})
    items = city()
    assert len(set(latlng_to_cells(items.lat, items.lon, cfg.prompts.district_resolution))) >= 9
    glat, _ = place_coordinates(items.state, items.county, items.town)
    assert set(items.town[np.isnan(glat)]) == {"Nowhereville"}  # the centroid fallback is exercised

    store = DeltaStore(spark, cfg.storage)
    store.write(spark.createDataFrame(items), "items")
    assert run_step("prompts", spark, cfg).metrics["location_level"] == "district"
    gp = store.to_pandas("geo_prompts").set_index("item_id").loc[items.item_id]
    assert gp.prompt.str.contains(" district ").all()
    emb = load_encoder(cfg.encoder).encode(gp.prompt.tolist())  # (N, D): what `embed` stores
    store.write(spark.createDataFrame(pd.DataFrame({
        "item_id": items.item_id.to_numpy(), "model_name": "toy", "model_version": "reference", "embedding": list(emb),
        "dim": emb.shape[1], "created_at": pd.Timestamp("2026-01-01", tz="UTC"), "embedding_f32": encode_f32(emb), "input_sha": "toy",
    })), "item_embeddings")
    version = run_step("tokenize", spark, cfg).metrics["sid_model_version"]
    written = store.to_pandas("sid_items").set_index("item_id").loc[items.item_id]

    model = mlflow.pyfunc.load_model(f"models:/{cfg.mlflow.sid_model_name}/{version}")
    sid_model = model.unwrap_python_model()
    level, origins = sid_model.prompt_location()  # recorded by tokenize: GeoNames points, and the centroid of Nowhereville
    o = origins.set_index("town")
    assert level == "district" and sorted(o.index) == sorted(t for t, _, _ in TOWNS)
    assert tuple(o.loc["Phoenix", ["lat", "lon"]]) == (33.44838, -112.07404)  # GeoNames' point, not the items' mean
    nw = items[items.town == "Nowhereville"]
    np.testing.assert_allclose(o.loc["Nowhereville", ["lat", "lon"]].to_numpy(dtype=float), [nw.lat.mean(), nw.lon.mean()], rtol=0, atol=1e-9)
    raw = items[["item_id", *RAW_COLUMNS]]
    assert sid_model.cold_start_prompts(raw) == gp.prompt.tolist()  # the served prompt is the stored one, exactly
    cold = model.predict(raw, params={"mode": "cold_start"})
    np.testing.assert_array_equal(cold[["sid_l1", "sid_l2", "sid_l3"]].to_numpy(dtype=np.int64),
                                  written[["sid_l1", "sid_l2", "sid_l3"]].to_numpy(dtype=np.int64))
