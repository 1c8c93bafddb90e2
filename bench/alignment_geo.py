"""Distance geography of every embedding version in a run's ``item_embeddings``, on all its items.

For each ``model_version`` (reference, aligned-N) and the geographic oracle (the K nearest items):
the share of an item's K nearest embedding neighbours (cosine) within 1 km and 5 km, their median
haversine km (:func:`lgsid.metrics.neighbour_distances`), T@K (same town, :func:`lgsid.metrics.geo_coverage`)
and Similarity@K (reference-space cosine of the retrieved items, :func:`lgsid.evaluate.geo.similarity_at_k`).

Run: ``python bench/alignment_geo.py <tables dir> [K]`` (e.g. ``lgsid-work/phoenix/tables``). One
plain-text line per version, then a JSON line with every row; not a speed benchmark.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from deltalake import DeltaTable

from lgsid.evaluate.geo import similarity_at_k
from lgsid.metrics import geo_coverage, nearest_by_distance, neighbour_distances, topk_neighbours


def main(tables: str, k: int = 10) -> list[dict]:
    geo = DeltaTable(f"{tables}/geo_prompts").to_pandas(columns=["item_id", "lat", "lon", "state", "county", "town"]).sort_values("item_id")
    emb = DeltaTable(f"{tables}/item_embeddings").to_pandas(columns=["item_id", "model_version", "embedding"])
    lat, lon = geo["lat"].to_numpy(float), geo["lon"].to_numpy(float)
    versions = {}
    for v, g in emb.groupby("model_version"):
        g = g.set_index("item_id").reindex(geo["item_id"])
        if g["embedding"].isna().any():
            continue  # a version without every item of geo_prompts is not comparable
        versions[v] = np.stack(g["embedding"].to_numpy()).astype(np.float32)
    ref = versions.get("reference")
    rows = []

    def row(name: str, idx: np.ndarray, e: np.ndarray | None) -> dict:
        out = {"version": name, **neighbour_distances(lat, lon, idx, radii_km=(1.0, 5.0))}
        if e is not None:
            out[f"T@{k}"] = geo_coverage(e, geo["state"].to_numpy(), geo["county"].to_numpy(), geo["town"].to_numpy(), k=k)[f"T@{k}"]
        if ref is not None:
            out[f"Similarity@{k}"] = similarity_at_k(idx, ref)
        return out

    for v in sorted(versions, key=lambda s: (s != "reference", len(s), s)):
        idx, _ = topk_neighbours(versions[v], k)
        rows.append(row(v, idx, versions[v]))
    rows.append(row("oracle", nearest_by_distance(lat, lon, k), None))
    for r in rows:
        print("  ".join(f"{key} {val:.4f}" if isinstance(val, float) else f"{key} {val}" for key, val in r.items()))
    print(json.dumps({"tables": tables, "k": k, "n_items": len(geo), "rows": rows}))
    return rows


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10)
