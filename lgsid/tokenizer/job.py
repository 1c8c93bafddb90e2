"""Step ``tokenize``: items + embeddings -> fitted tokenizer, health metrics, registered SID model, ``sid_items``.

The training set is collected to the driver (the tokenizer is a small model; 100k × 384 floats is
150 MB). The resulting SIDs are written keyed by the new registry version, beside earlier
versions' SIDs, so a retrain never overwrites the SIDs the champion serves.

Rerun: the step fingerprints (:mod:`lgsid.fingerprint`) the ``tokenizer``, ``prompts`` and
``encoder`` config sections with the Delta versions of ``items`` and ``item_embeddings`` and the
embedding version it trains on, and tags the registered version with it. When a version with the
same fingerprint exists and its ``sid_items`` rows are there, nothing is fitted, registered or
written: that version is reused (and holds ``candidate``), and the summary says so.

Promotion is not this step's business: :func:`lgsid.lifecycle.tokenize` runs the bootstrap gate.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lgsid.config import LGSIDConfig
from lgsid.errors import ValidationError
from lgsid.steps import StepSummary
from lgsid.tokenizer.base import stack_embeddings
from lgsid.tokenizer.features import FEATURE_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

    from lgsid.storage import DeltaStore

REFERENCE = "reference"


def choose_embedding_version(store: "DeltaStore", requested: str = "") -> str:
    """``requested`` if set, else the newest ``aligned-<N>`` in item_embeddings, else ``reference``.

    Raises:
        ValidationError: the requested version has no rows (lists the versions present).
    """
    from pyspark.sql import functions as F

    versions = [r[0] for r in store.read("item_embeddings").select("model_version").distinct().collect()]
    if requested:
        if requested not in versions:
            raise ValidationError(f"tokenizer.embedding_model_version={requested!r} has no rows in item_embeddings; present: {sorted(versions)}")
        return requested
    aligned = [v for v in versions if v.startswith("aligned-") and v[8:].isdigit()]
    if aligned:
        return max(aligned, key=lambda v: int(v[8:]))
    if REFERENCE in versions:
        return REFERENCE
    raise ValidationError(f"item_embeddings has no 'reference' or 'aligned-<N>' rows (found {sorted(versions)}); run `lgsid embed`")


def items_with_embeddings(items: "DataFrame", embeddings: "DataFrame", model_version: str) -> "DataFrame":
    """Items left-joined to their embedding of ``model_version`` (pure transform; ``embedding`` null when missing)."""
    from pyspark.sql import functions as F

    emb = embeddings.where(F.col("model_version") == model_version).select("item_id", "embedding")
    return items.select("item_id", *FEATURE_COLUMNS).join(emb, "item_id", "left")


def check_training_frame(pdf: pd.DataFrame, model_version: str) -> None:
    """Every item needs an embedding of ``model_version``.

    Raises:
        ValidationError: names the first items without one.
    """
    missing = pdf["embedding"].isna().to_numpy()
    if missing.any():
        raise ValidationError(
            f"column 'embedding': {int(missing.sum())} item(s) have no item_embeddings row of model_version "
            f"{model_version!r}, e.g. {pdf['item_id'][missing].head(5).tolist()}; run `lgsid embed` first"
        )


def fit_and_assign(cfg: LGSIDConfig, pdf: pd.DataFrame, progress: bool = True):
    """Fit the configured tokenizer on ``pdf`` (sorted by item_id) and assign codes + suffixes.

    Returns:
        (tokenizer, embeddings (N, D), codes (N, L), suffix (N,), l1_paths).
    """
    from lgsid.tokenizer import build_tokenizer, dedup_suffix
    from lgsid.tokenizer.hgit import level1_paths

    emb = stack_embeddings(pdf["embedding"], pdf["item_id"])
    tok = build_tokenizer(cfg.tokenizer)
    tok.fit(emb, pdf, progress=progress)
    codes = tok.encode(emb, pdf)
    suffix = dedup_suffix(codes)
    l1_paths = getattr(tok, "l1_paths", None) or level1_paths(pdf, codes[:, 0], tok.codebook_sizes[0])
    return tok, emb, codes, suffix, l1_paths


def tokenizer_metrics(cfg: LGSIDConfig, tok, emb: np.ndarray, pdf: pd.DataFrame, codes: np.ndarray) -> dict[str, float]:
    """Codebook health + C@10 geo coverage of the quantised vectors (on a seeded sample)."""
    from lgsid.metrics import geo_coverage
    from lgsid.tokenizer import codebook_health

    m = codebook_health(codes, tok.codebook_sizes, pdf["category_l1"].fillna(pdf["category_l2"]).to_numpy())
    n = min(cfg.tokenizer.geo_coverage_sample, len(pdf))
    if n > 11:
        idx = np.sort(np.random.default_rng(cfg.tokenizer.seed).choice(len(pdf), n, replace=False))
        rec = tok.reconstruct(codes[idx], emb[idx])
        rec = rec + 1e-6 * np.random.default_rng(0).standard_normal(rec.shape)  # break exact ties deterministically
        cov = geo_coverage(rec, pdf["state"].to_numpy()[idx], pdf["county"].to_numpy()[idx], pdf["town"].to_numpy()[idx], k=10)
        m.update({"geo_P_at_10": cov["P@10"], "geo_C_at_10": cov["C@10"], "geo_T_at_10": cov["T@10"]})
    return m


def sid_items_frame(spark, version: str, item_ids, codes: np.ndarray, suffix: np.ndarray) -> "DataFrame":
    """The ``sid_items`` rows of one model version (Spark DataFrame)."""
    from lgsid.tokenizer import format_sid

    L = codes.shape[1]
    pdf = pd.DataFrame({
        "sid_model_version": version,
        "sid": format_sid(codes, suffix),
        "item_id": np.asarray(item_ids, dtype=object),
        **{f"sid_l{l + 1}": (codes[:, l].astype(np.int32) if l < L else np.full(len(codes), None)) for l in range(3)},
        "sid_suffix": suffix.astype(np.int32),
    })
    from lgsid.storage.delta import spark_schema
    from lgsid.tables import spec

    return spark.createDataFrame(pdf, schema=spark_schema(spec("sid_items")))


def input_fingerprint(cfg: LGSIDConfig, store: "DeltaStore", embedding_model_version: str) -> str:
    """The fingerprint of everything a tokenize run depends on (see the module docstring)."""
    from lgsid.fingerprint import fingerprint

    sections = cfg.to_dict()
    return fingerprint(
        {k: sections[k] for k in ("tokenizer", "prompts", "encoder")},
        {"items": store.version("items"), "item_embeddings": store.version("item_embeddings"),
         "embedding_model_version": embedding_model_version},
    )


def reusable_version(cfg: LGSIDConfig, store: "DeltaStore", fp: str):
    """The registered SID model version with fingerprint ``fp`` whose ``sid_items`` rows exist, or None."""
    from mlflow import MlflowClient
    from pyspark.sql import functions as F

    from lgsid.fingerprint import find_model_version

    mv = find_model_version(MlflowClient(), cfg.mlflow.sid_model_name, fp)
    if mv is None or not store.exists("sid_items"):
        return None
    if store.read("sid_items").where(F.col("sid_model_version") == str(mv.version)).limit(1).count() == 0:
        return None
    return mv


def reuse(cfg: LGSIDConfig, mv, fp: str) -> StepSummary:
    """Summary of a rerun that reuses version ``mv``; moves ``candidate`` back to it if another version holds it."""
    from mlflow import MlflowClient

    from lgsid.registry import CANDIDATE, version_by_alias

    client = MlflowClient()
    name, version = cfg.mlflow.sid_model_name, str(mv.version)
    notes = [f"inputs and config unchanged (fingerprint {fp}): reused {name} version {version} and its sid_items rows; "
             "nothing fitted, registered or written"]
    cand = version_by_alias(cfg, CANDIDATE)
    if cand is None or str(cand.version) != version:
        client.set_registered_model_alias(name, CANDIDATE, version)
        notes.append(f"alias {CANDIDATE} moved to version {version} (was {cand.version if cand else 'unset'})")
    metrics = dict(client.get_run(mv.run_id).data.metrics) if mv.run_id else {}
    headline = {k: metrics[k] for k in HEADLINE if k in metrics}
    headline["sid_model_version"] = version
    return StepSummary("tokenize", metrics=headline, notes=notes)


HEADLINE = ("usage_l1", "collision_rate", "category_purity_l1", "geo_C_at_10", "perplexity_l1")


def run_tokenize(spark, cfg: LGSIDConfig) -> StepSummary:
    """Fit the configured tokenizer, log its health, register it as ``candidate`` and write ``sid_items``.

    A rerun with unchanged inputs and config reuses the registered version (module docstring).
    """
    import mlflow

    from lgsid.fingerprint import TAG
    from lgsid.registry import log_sid_model
    from lgsid.serving.sid_model import save_artifacts, signature
    from lgsid.storage import DeltaStore
    from lgsid.tokenizer import health_plots
    from lgsid.tracking import setup_mlflow, stage_run

    store = DeltaStore(spark, cfg.storage)
    version_in = choose_embedding_version(store, cfg.tokenizer.embedding_model_version)
    fp = input_fingerprint(cfg, store, version_in)
    if cfg.tokenizer.log_model:
        setup_mlflow(cfg)
        mv = reusable_version(cfg, store, fp)
        if mv is not None:
            return reuse(cfg, mv, fp)
    pdf = items_with_embeddings(store.read("items"), store.read("item_embeddings"), version_in).toPandas()
    if pdf.empty:
        raise ValidationError("table 'items' is empty; run `lgsid ingest` first")
    pdf = pdf.sort_values("item_id", kind="stable").reset_index(drop=True)
    check_training_frame(pdf, version_in)
    adapter = None
    if version_in.startswith("aligned-"):
        from lgsid.embed import resolve_aligned

        _, adapter = resolve_aligned(cfg, version_in)

    tok, emb, codes, suffix, l1_paths = fit_and_assign(cfg, pdf)
    metrics = tokenizer_metrics(cfg, tok, emb, pdf, codes)
    notes = [f"tokenizer {tok.kind} on item_embeddings model_version={version_in} ({len(pdf):,} items, dim {tok.dim})"]
    tables = []
    sid_version = "unregistered"
    with stage_run(cfg, "tokenize") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"lgsid.embedding_model_version": version_in, "lgsid.tokenizer_kind": tok.kind, TAG: fp})
        for name, values in tok.history.items():
            for step, v in enumerate(values):
                mlflow.log_metric(f"train_{name}", float(v), step=step)
        for p in health_plots(codes, tok.codebook_sizes, os.path.join(tmp, "plots"), pdf["category_l1"].fillna(pdf["category_l2"]).to_numpy()):
            mlflow.log_artifact(p, "health")
        if cfg.tokenizer.log_model:
            sections = cfg.to_dict()
            art = save_artifacts(os.path.join(tmp, "sid_model"), tok, list(l1_paths), version_in, sections["encoder"], sections["prompts"], adapter)
            sid_version = log_sid_model(cfg, art, signature(int(tok.dim)), model_tags(tok, version_in, fp))
            notes.append(f"registered {cfg.mlflow.sid_model_name} version {sid_version} (alias candidate), run {run.info.run_id}")
    if cfg.tokenizer.log_model:
        tables.append(store.merge(sid_items_frame(spark, sid_version, pdf["item_id"], codes, suffix), "sid_items"))
    headline = {k: metrics[k] for k in HEADLINE if k in metrics}
    headline["sid_model_version"] = sid_version
    return StepSummary("tokenize", tables=tables, metrics=headline, notes=notes)


def model_tags(tok, embedding_model_version: str, fp: str | None = None) -> dict[str, str]:
    """The SID model-version tags: tokenizer kind, embedding version and dimension (read by ``write-sids``), codebook sizes, fingerprint."""
    import json

    from lgsid.fingerprint import TAG

    tags = {"lgsid.tokenizer_kind": tok.kind, "lgsid.embedding_model_version": embedding_model_version,
            "lgsid.embedding_dim": str(tok.dim), "lgsid.codebook_sizes": json.dumps(tok.codebook_sizes)}
    if fp:
        tags[TAG] = fp
    return tags
