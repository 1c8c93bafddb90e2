"""Step ``embed``: embed prompts with the encoder inside a Spark pandas UDF, into ``item_embeddings``.

The UDF is ``mapInPandas`` (Arrow batches in, Arrow batches out). Each Python worker loads the
encoder once (a module-level cache keyed by checkpoint, adapter and config) and embeds its rows in
batches of ``encoder.batch_size``. The same function embeds the items' true prompts (reference or
aligned) and the reward lists' mismatched prompts (:mod:`lgsid.reward`).

``item_embeddings`` is keyed by ``(item_id, model_version)``: ``"reference"`` for the frozen base
encoder, ``"aligned-<N>"`` for version N of the registered aligned encoder (its LoRA adapter). A
rerun MERGEs, so other versions stay and reruns are idempotent. Each row holds the vector twice:
``embedding`` (ARRAY<FLOAT>, for training, tokenizer and evaluation) and ``embedding_f32`` (BINARY
little-endian float32, the SID Spark UDF's input; :mod:`lgsid.embedding_f32`). A table written
before ``embedding_f32`` existed gets the column on the next MERGE; rows of model versions not
re-embedded keep it null, and ``lgsid write-sids`` names them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterator

from lgsid.config import EncoderConfig, LGSIDConfig
from lgsid.embedding_f32 import COLUMN as EMBEDDING_F32
from lgsid.errors import ConfigError, ModelError
from lgsid.steps import StepSummary

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

REFERENCE = "reference"

_WORKER_CACHE: dict = {}


def worker_encoder(enc_cfg: EncoderConfig, adapter_dir: str | None):
    """The encoder of this Python process, loaded on first use and kept for later batches/tasks."""
    import torch

    key = (repr(enc_cfg), adapter_dir)
    enc = _WORKER_CACHE.get(key)
    if enc is None:
        from lgsid.encoder import load_encoder

        device = "cuda" if torch.cuda.is_available() else "cpu"
        enc = load_encoder(enc_cfg, adapter_dir=adapter_dir, device=device)
        _WORKER_CACHE.clear()  # one model per worker
        _WORKER_CACHE[key] = enc
    return enc


def embed_dataframe(
    df: "DataFrame", text_col: str, enc_cfg: EncoderConfig, adapter_dir: str | None = None, out_col: str = "embedding",
    f32_col: str | None = None,
) -> "DataFrame":
    """``df`` plus an ``out_col`` ARRAY<FLOAT> column: the encoder's embedding of ``text_col``.

    A pure, lazy DataFrame -> DataFrame transform (``mapInPandas``); nothing runs until an action.
    Input with fewer partitions than the session's default parallelism is repartitioned so every
    task slot embeds (each Python worker runs ``spark.task.cpus`` torch threads).

    Args:
        df: Any DataFrame with a string column ``text_col``.
        text_col: Column holding the text to embed.
        enc_cfg: Encoder config (the worker loads this checkpoint, pooling, max length, batch size).
        adapter_dir: LoRA adapter directory readable by the workers; ``None`` = the frozen reference.
        out_col: Name of the new column.
        f32_col: If set, also add this BINARY column: the same vector as little-endian float32
            bytes (:func:`lgsid.embedding_f32.encode_f32`), the SID Spark UDF's input.
    """
    from pyspark.sql.types import ArrayType, BinaryType, FloatType, StructField, StructType

    if text_col not in df.columns:
        raise ConfigError(f"embed: column {text_col!r} not in DataFrame columns {df.columns}")
    fields = list(df.schema.fields) + [StructField(out_col, ArrayType(FloatType()), False)]
    if f32_col:
        fields.append(StructField(f32_col, BinaryType(), False))
    schema = StructType(fields)
    slots = df.sparkSession.sparkContext.defaultParallelism
    if df.rdd.getNumPartitions() < slots:  # one Delta file would otherwise keep every core but one idle
        df = df.repartition(slots)

    def udf(batches: Iterator["pd.DataFrame"]) -> Iterator["pd.DataFrame"]:
        from lgsid.embedding_f32 import encode_f32

        enc = worker_encoder(enc_cfg, adapter_dir)
        for pdf in batches:
            if len(pdf) == 0:
                continue
            emb = enc.encode(pdf[text_col].astype(str).tolist())  # (n, D)
            pdf = pdf.copy()
            pdf[out_col] = list(emb)
            if f32_col:
                pdf[f32_col] = encode_f32(emb)
            yield pdf

    return df.mapInPandas(udf, schema)


def item_embedding_rows(prompts_df: "DataFrame", enc_cfg: EncoderConfig, model_version: str, adapter_dir: str | None = None) -> "DataFrame":
    """geo_prompts -> rows of ``item_embeddings`` (item_id, model_name, model_version, embedding, dim, created_at, embedding_f32)."""
    from pyspark.sql import functions as F

    from lgsid.encoder import resolve_checkpoint

    resolve_checkpoint(enc_cfg.checkpoint)  # fail on the driver, not inside a task
    ck = enc_cfg.checkpoint
    model_name = ck[len("package:"):] if ck.startswith("package:") else os.path.basename(os.path.normpath(ck))
    out = embed_dataframe(prompts_df.select("item_id", "prompt"), "prompt", enc_cfg, adapter_dir, f32_col=EMBEDDING_F32)
    return out.select(
        "item_id",
        F.lit(model_name).alias("model_name"),
        F.lit(model_version).alias("model_version"),
        "embedding",
        F.size("embedding").cast("int").alias("dim"),
        F.current_timestamp().alias("created_at"),
        EMBEDDING_F32,
    )


def embed_items(spark: "SparkSession", cfg: LGSIDConfig, model_version: str = REFERENCE, adapter_dir: str | None = None):
    """Embed every item's true prompt and MERGE into ``item_embeddings`` under ``model_version``.

    Returns the :class:`~lgsid.storage.WriteResult`.
    """
    from lgsid.storage import DeltaStore

    if model_version != REFERENCE and not adapter_dir:
        raise ConfigError(f"embed: model_version {model_version!r} needs the aligned adapter directory")
    store = DeltaStore(spark, cfg.storage)
    prompts = store.read("geo_prompts")
    rows = item_embedding_rows(prompts, cfg.encoder, model_version, adapter_dir)
    return store.merge(rows, "item_embeddings", keys=["item_id", "model_version"])


def resolve_aligned(cfg: LGSIDConfig, which: str) -> tuple[str, str]:
    """``(model_version, adapter_dir)`` for ``encoder.embed_version`` = ``aligned`` or ``aligned-<N>``.

    ``aligned`` is the newest registered version of ``mlflow.encoder_model_name``. The adapter is
    downloaded from the registered model's artifacts.
    """
    import mlflow
    from mlflow import MlflowClient

    from lgsid.tracking import setup_mlflow

    setup_mlflow(cfg)
    name = cfg.mlflow.encoder_model_name
    client = MlflowClient()
    if which == "aligned":
        try:
            versions = client.search_model_versions(f"name='{name}'")
        except mlflow.exceptions.MlflowException:
            versions = []
        if not versions:
            raise ModelError(f"encoder.embed_version=aligned but no version of registered model {name!r} exists; run `lgsid gdpo` first")
        n = max(int(v.version) for v in versions)
    else:
        try:
            n = int(which.split("-", 1)[1])
        except (IndexError, ValueError):
            raise ConfigError(f"invalid value for 'encoder.embed_version': {which!r} (expected reference, aligned or aligned-<N>)") from None
    local = mlflow.artifacts.download_artifacts(f"models:/{name}/{n}")
    found = [d for d, _, files in os.walk(local) if "adapter_config.json" in files]
    adapter = found[0] if found else ""
    if not adapter:
        raise ModelError(f"registered model {name!r} version {n} has no LoRA adapter (adapter_config.json) in its artifacts")
    return f"aligned-{n}", adapter


def run(spark: "SparkSession", cfg: LGSIDConfig) -> StepSummary:
    """Step ``embed``: embed items with the encoder chosen by ``encoder.embed_version``."""
    which = cfg.encoder.embed_version
    if which == REFERENCE:
        version, adapter = REFERENCE, None
    else:
        version, adapter = resolve_aligned(cfg, which)
    wr = embed_items(spark, cfg, version, adapter)
    return StepSummary("embed", tables=[wr], metrics={"model_version": version}, notes=[f"checkpoint: {cfg.encoder.checkpoint}"])
