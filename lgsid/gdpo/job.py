"""What the ``gdpo`` step (:mod:`lgsid.steps.gdpo`) does around the training loop: fingerprint, held-out geo check, plots, registration, re-embedding.

G-DPO is geographic DPO post-training of the encoder with LoRA (Eq. 6-8, arXiv 2511.14221).

Data is D_mix = D_dc ∪ D_gc from ``gdpo_pairs`` (:mod:`lgsid.gdpo.examples`). The frozen reward
model R — the ``reward_model`` artifact of the ``lgsid reward`` run trained on the current inputs —
scores policy and reference embeddings; L_sim keeps each item's embedding close to its own
reference and away from the other items' references (:mod:`lgsid.gdpo.losses`). Only the LoRA
parameters are trained (:mod:`lgsid.gdpo.loop`). Everything is logged to one MLflow run; the
aligned encoder is logged as a pyfunc, registered, tagged with the step's input fingerprint, and
the items are re-embedded as ``aligned-<version>`` from its model URI. A rerun whose fingerprint
matches a registered version trains and registers nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

import numpy as np

from lgsid.config import LGSIDConfig

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from lgsid.storage import DeltaStore


def input_fingerprint(spark: "SparkSession", cfg: LGSIDConfig, reward_run_id: str) -> str:
    """Fingerprint of what the aligned encoder depends on (:mod:`lgsid.fingerprint`).

    The config sections ``encoder``, ``gdpo``, ``prompts``, ``train`` (less ``checkpoint_dir`` and
    ``resume``, which do not change the result) and ``mlflow.log_base_weights``; the Delta versions
    of ``gdpo_pairs`` and ``geo_prompts`` (and of ``negatives`` with ``gdpo.near_pairs_per_anchor`` > 0); and the reward run.
    """
    from lgsid.fingerprint import fingerprint
    from lgsid.storage import DeltaStore

    store = DeltaStore(spark, cfg.storage)
    d = cfg.to_dict()
    train = {k: v for k, v in d["train"].items() if k not in ("checkpoint_dir", "resume")}
    conf = {"encoder": d["encoder"], "gdpo": d["gdpo"], "prompts": d["prompts"], "train": train,
            "mlflow.log_base_weights": cfg.mlflow.log_base_weights}
    inputs = {"gdpo_pairs": store.version("gdpo_pairs"), "geo_prompts": store.version("geo_prompts"), "reward_run": reward_run_id}
    if cfg.gdpo.near_pairs_per_anchor > 0:
        inputs["negatives"] = store.version("negatives")
    return fingerprint(conf, inputs)


def embed_missing(spark: "SparkSession", cfg: LGSIDConfig, store: "DeltaStore", version: str, adapter: str | None = None):
    """Embed ``version`` when some item of ``geo_prompts`` has no row of it (e.g. the reference after a re-ingest).

    ``adapter`` is the model URI of an aligned version. Only changed rows are written
    (:func:`lgsid.embed.embed_items`). Returns the :class:`~lgsid.storage.WriteResult`, or None
    when every item already has a row.
    """
    from lgsid.embed import embed_items

    if store.exists("item_embeddings"):
        have = store.read("item_embeddings").where(f"model_version = '{version}'").select("item_id")
        if store.read("geo_prompts").select("item_id").join(have, "item_id", "left_anti").limit(1).count() == 0:
            return None
    return embed_items(spark, cfg, version, adapter)


def coverage_frames(spark: "SparkSession", cfg: LGSIDConfig, before_version: str, after_version: str, sample: int = 0):
    """Embeddings of two model versions and the geography, aligned row by row on ``item_id``.

    Only items of ``geo_prompts`` with a row of both versions take part, ordered by ``item_id``.
    With ``sample`` > 0, only the ``sample`` of them with the smallest ``xxhash64(item_id)``: a
    fixed subset whatever the partitioning, chosen in Spark, so the driver never holds more than
    ``sample`` rows (the coverage check is quadratic in the rows it gets).

    Returns:
        ``(item_ids (N,), before (N, D), after (N, D), state (N,), county (N,), town (N,))``.
    """
    from pyspark.sql import functions as F

    from lgsid.storage import DeltaStore

    store = DeltaStore(spark, cfg.storage)
    emb = store.read("item_embeddings")
    b = emb.where(F.col("model_version") == before_version).select("item_id", F.col("embedding").alias("before"))
    a = emb.where(F.col("model_version") == after_version).select("item_id", F.col("embedding").alias("after"))
    geo = store.read("geo_prompts").select("item_id", "state", "county", "town")
    joined = geo.join(b, "item_id").join(a, "item_id")
    if sample > 0:
        joined = joined.orderBy(F.xxhash64("item_id"), "item_id").limit(sample)
    pdf = joined.orderBy("item_id").toPandas()
    stack = lambda c: np.stack(pdf[c].to_numpy()).astype(np.float32) if len(pdf) else np.zeros((0, 0), np.float32)  # noqa: E731
    return pdf["item_id"].to_numpy(), stack("before"), stack("after"), pdf["state"].to_numpy(), pdf["county"].to_numpy(), pdf["town"].to_numpy()


def heldout_geo_metrics(emb: np.ndarray, lat: np.ndarray, lon: np.ndarray, state, county, town, k: int = 10) -> dict[str, float]:
    """Geo quality of top-``k`` embedding neighbours among a set of (held-out) items.

    Returns ``{"within_1km": .., "within_5km": .., "km_median": .., "T@k": ..}``: the share of
    neighbours within 1 / 5 km and their median haversine distance (:func:`lgsid.metrics.neighbour_distances`),
    and the share in the same town (:func:`lgsid.metrics.geo_coverage`).

    Args:
        emb: (N, D) embeddings of the items' true prompts.
        lat, lon: (N,) degrees.
        state, county, town: (N,) geography labels.
        k: neighbours per item (clipped to N-1).
    """
    from lgsid.metrics import geo_coverage, neighbour_distances, topk_neighbours

    k = min(k, len(emb) - 1)
    idx, _ = topk_neighbours(emb, k)
    out = neighbour_distances(np.asarray(lat, float), np.asarray(lon, float), idx, radii_km=(1.0, 5.0))
    out[f"T@{k}"] = geo_coverage(emb, state, county, town, k=k)[f"T@{k}"]
    return out


def heldout_oracle(held, k: int) -> dict[str, float]:
    """The geographic oracle on the held-out items: their ``k`` nearest by distance (same keys as the evals)."""
    from lgsid.metrics import nearest_by_distance, neighbour_distances

    lat, lon = held["lat"].to_numpy(float), held["lon"].to_numpy(float)
    return neighbour_distances(lat, lon, nearest_by_distance(lat, lon, k), radii_km=(1.0, 5.0))


def heldout_split(spark: "SparkSession", cfg: LGSIDConfig, examples):
    """Hold ``gdpo.eval_items`` items (a seeded hash sample of ``geo_prompts``) out of the examples as anchors.

    Returns:
        ``(examples without those anchors, pandas frame of the held-out items: prompt, lat, lon,
        state, county, town)``.
    """
    from pyspark.sql import functions as F

    from lgsid.storage import DeltaStore

    gp = DeltaStore(spark, cfg.storage).read("geo_prompts").select("item_id", "prompt", "lat", "lon", "state", "county", "town")
    held = gp.orderBy(F.xxhash64("item_id", F.lit(cfg.gdpo.seed)), "item_id").limit(cfg.gdpo.eval_items)
    pdf = held.toPandas()
    ids = held.select(F.col("item_id").alias("anchor_item_id"))
    return examples.join(F.broadcast(ids), "anchor_item_id", "left_anti"), pdf


def plot_heldout(evals: list[dict], k: int, path: str) -> None:
    """PNG of the held-out within-1 km share and T@K (``evals`` keys ``step``, ``within_1km``, ``T``) against the G-DPO step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [e["step"] for e in evals]
    for key, label in (("within_1km", f"within 1 km @{k}"), ("T", f"T@{k}")):
        ax.plot(steps, [e[key] for e in evals], marker="o", label=f"held-out {label}")
    ax.set_xlabel("step")
    ax.set_ylabel("share of top-K neighbours")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_losses(history: list[dict], path: str) -> None:
    """PNG of total loss, L_align and L_sim per step."""
    from lgsid.plots import plot_curves

    plot_curves(history, ("loss", "l_align", "l_sim"), "step", path, figsize=(6, 3.5))


def plot_projection(before: np.ndarray, after: np.ndarray, states: np.ndarray, path: str, max_states: int = 10) -> None:
    """PNG: 2-D PCA of item embeddings before vs after alignment, coloured by state (top states by count)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    vals, counts = np.unique(states, return_counts=True)
    top = set(vals[np.argsort(-counts)[:max_states]])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, emb, title in ((axes[0], before, "reference"), (axes[1], after, "aligned")):
        xy = PCA(n_components=2, random_state=0).fit_transform(emb)
        for s in sorted(top):
            m = states == s
            ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.6, label=str(s))
        rest = ~np.isin(states, list(top))
        if rest.any():
            ax.scatter(xy[rest, 0], xy[rest, 1], s=4, alpha=0.3, c="lightgrey", label="other")
        ax.set_title(f"{title} (PCA)")
    axes[1].legend(fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def log_aligned_encoder(cfg: LGSIDConfig, adapter_dir: str, dim: int, register: bool = True, fingerprint: str | None = None):
    """Log the pyfunc "aligned encoder" (``lgsid/serving/encoder_model.py``) in the active run and register it.

    ``adapter_dir`` is a local (scratch) directory: its files become the model's ``adapter``
    artifact. ``fingerprint`` is set as the version's ``lgsid.input_fingerprint`` tag. Unless
    ``encoder.runtime`` is ``torch``, the LoRA-merged encoder's ONNX export
    (:mod:`lgsid.encoder_onnx`) becomes the artifact ``onnx``, so the embed workers and serving
    load it instead of exporting again.

    Returns the registered ``ModelVersion`` (or the ``ModelInfo`` when ``register`` is False).
    """
    import dataclasses

    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from lgsid.serving import PACKAGE_DIR, requirements

    pkg_dir = PACKAGE_DIR
    code_file = os.path.join(pkg_dir, "serving", "encoder_model.py")
    with tempfile.TemporaryDirectory() as tmp:
        conf_p = os.path.join(tmp, "encoder_config.json")
        with open(conf_p, "w") as f:
            json.dump(dataclasses.asdict(cfg.encoder), f, indent=2)
        artifacts = {"adapter": adapter_dir, "encoder_config": conf_p}
        if cfg.mlflow.log_base_weights:
            from lgsid.encoder import resolve_checkpoint

            artifacts["base"] = resolve_checkpoint(cfg.encoder.checkpoint)
        from lgsid.encoder import onnx_export_of

        # merged on CPU and exported (or found in encoder.onnx_cache_dir); None under runtime=torch, and
        # under runtime=auto when the export failed (a warning): the version is logged without it
        onnx_dir = onnx_export_of(cfg.encoder, adapter_dir)
        if onnx_dir:
            artifacts["onnx"] = shutil.copytree(onnx_dir, os.path.join(tmp, "onnx"))  # artifacts/onnx/{model.onnx,export.json}
        sig = infer_signature(pd.DataFrame({"prompt": ["a"]}), np.zeros((1, dim), dtype=np.float32), params={"batch_size": int(cfg.encoder.batch_size)})
        info = mlflow.pyfunc.log_model(
            name="aligned_encoder",
            python_model=code_file,
            artifacts=artifacts,
            code_paths=[pkg_dir],
            signature=sig,
            pip_requirements=requirements(),
            registered_model_name=cfg.mlflow.encoder_model_name if register else None,
        )
    if not register:
        return info
    from mlflow import MlflowClient

    client = MlflowClient()
    versions = client.search_model_versions(f"name='{cfg.mlflow.encoder_model_name}' and run_id='{mlflow.active_run().info.run_id}'")
    mv = max(versions, key=lambda v: int(v.version))
    if fingerprint:
        from lgsid.fingerprint import TAG

        client.set_model_version_tag(mv.name, mv.version, TAG, fingerprint)
    return mv
