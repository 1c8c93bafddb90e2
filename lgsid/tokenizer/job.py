"""The tokenizer job: items + embeddings -> fitted tokenizer, health metrics, SID model artifacts, ``sid_items`` rows.

The step that runs it, registers the model and writes ``sid_items`` is :mod:`lgsid.steps.tokenize_sids`.

The training set is collected to the driver (the tokenizer is a small model; 100k × 384 floats is
150 MB). The resulting SIDs are written keyed by the new registry version, beside earlier
versions' SIDs, so a retrain never overwrites the SIDs the champion serves.

Rerun: the step fingerprints (:mod:`lgsid.fingerprint`) the ``tokenizer``, ``prompts`` and
``encoder`` config sections with the Delta versions of ``items`` and ``item_embeddings`` and the
embedding version it trains on, and tags the registered version with it. When a version with the
same fingerprint exists and its ``sid_items`` rows are there, nothing is fitted, registered or
written: that version is reused (and holds ``candidate``), and the summary says so.

Registration and promotion are not this module's business: :mod:`lgsid.steps.tokenize_sids` calls the registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lgsid.config import LGSIDConfig
from lgsid.errors import ValidationError
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


HEADLINE = ("usage_l1", "collision_rate", "category_purity_l1", "geo_C_at_10", "perplexity_l1")


def model_tags(tok, embedding_model_version: str, fp: str | None = None) -> dict[str, str]:
    """The SID model-version tags: tokenizer kind, embedding version and dimension (read by ``write-sids``), codebook sizes, fingerprint."""
    import json

    from lgsid.fingerprint import TAG

    tags = {"lgsid.tokenizer_kind": tok.kind, "lgsid.embedding_model_version": embedding_model_version,
            "lgsid.embedding_dim": str(tok.dim), "lgsid.codebook_sizes": json.dumps(tok.codebook_sizes)}
    if fp:
        tags[TAG] = fp
    return tags
