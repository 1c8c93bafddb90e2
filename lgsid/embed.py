"""Embedding (step ``embed``, :mod:`lgsid.steps.embed`): embed prompts with the encoder inside a Spark pandas UDF, into ``item_embeddings``.

The UDF is ``mapInPandas`` (Arrow batches in, Arrow batches out). Each Python worker loads the
encoder once (a module-level cache keyed by checkpoint, adapter and config) and embeds its rows in
batches of ``encoder.batch_size``. The same function embeds the items' true prompts (reference or
aligned) and the reward lists' mismatched prompts (:mod:`lgsid.reward`).

``item_embeddings`` is keyed by ``(item_id, model_version)``: ``"reference"`` for the frozen base
encoder, ``"aligned-<N>"`` for version N of the registered aligned encoder (its LoRA adapter,
which every Spark worker downloads from the model URI ``models:/<name>/<N>``: no step hands a
local directory to another). A rerun embeds and MERGEs only the rows whose input changed (new items,
changed prompts): each row stores ``input_sha``, the SHA-256 of its prompt and of the encoder
settings that shape the vector (:func:`input_sha`), and a row whose stored ``input_sha`` matches is
neither re-embedded nor rewritten, so it keeps its vector and its ``created_at``, a rerun on
unchanged inputs writes nothing, and other versions stay. Comparing inputs, not recomputed vectors,
keeps this exact under bf16 (CUDA, and CPU with ``encoder.cpu_bf16``), where a vector depends on
the batch it was padded in at ~5e-4 per component. Rows written before ``input_sha`` existed have
it null and are re-embedded once. Each row holds the vector twice:
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

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import Column, DataFrame, SparkSession

REFERENCE = "reference"
INPUT_SHA = "input_sha"

_WORKER_CACHE: dict = {}


def is_model_uri(adapter: str | None) -> bool:
    """Whether ``adapter`` is an MLflow URI (``models:/…``, ``runs:/…``) rather than a directory."""
    return bool(adapter) and adapter.split(":", 1)[0] in ("models", "runs")


def fetch_adapter(uri: str, dst: str | None = None) -> str:
    """Download the model at MLflow ``uri`` and return the directory holding its LoRA ``adapter_config.json``.

    Raises:
        ModelError: the model has no adapter.
    """
    import mlflow

    local = mlflow.artifacts.download_artifacts(uri, dst_path=dst)
    found = sorted(d for d, _, files in os.walk(local) if "adapter_config.json" in files)
    if not found:
        raise ModelError(f"model {uri} has no LoRA adapter (adapter_config.json) in its artifacts")
    return found[0]


def worker_encoder(enc_cfg: EncoderConfig, adapter: str | None, tracking_uri: str | None = None):
    """The encoder of this Python process, loaded on first use and kept for later batches/tasks.

    ``adapter`` is a local directory or an MLflow model URI; a URI is downloaded by this process
    (from ``tracking_uri``) into a scratch directory of its own, and the model's ONNX export (its
    artifact ``onnx``, when it has one) is handed to :func:`lgsid.encoder.load_encoder`, which runs
    it when ``encoder.runtime`` resolves to ONNX Runtime. The scratch directory is removed once the
    encoder is loaded (its weights, tokenizer and ONNX Runtime session are then in memory).
    """
    import shutil
    import tempfile

    import torch

    key = (repr(enc_cfg), adapter)
    enc = _WORKER_CACHE.get(key)
    if enc is None:
        from lgsid.encoder import load_encoder

        from lgsid.encoder_onnx import find_export

        adapter_dir, onnx_export, local = adapter, None, None
        try:
            if is_model_uri(adapter):
                if tracking_uri:
                    from lgsid.tracking import use_tracking_uri

                    use_tracking_uri(tracking_uri)
                local = tempfile.mkdtemp(prefix="lgsid-adapter-")
                adapter_dir = fetch_adapter(adapter, local)
                onnx_export = find_export(local)
            device = "cuda" if torch.cuda.is_available() else "cpu"
            enc = load_encoder(enc_cfg, adapter_dir=adapter_dir, device=device, onnx_export=onnx_export)
        finally:
            if local is not None:
                shutil.rmtree(local, ignore_errors=True)
        _WORKER_CACHE.clear()  # one model per worker
        _WORKER_CACHE[key] = enc
    return enc


def embed_dataframe(
    df: "DataFrame", text_col: str, enc_cfg: EncoderConfig, adapter: str | None = None, out_col: str = "embedding",
    f32_col: str | None = None, tracking_uri: str | None = None,
) -> "DataFrame":
    """``df`` plus an ``out_col`` ARRAY<FLOAT> column: the encoder's embedding of ``text_col``.

    A pure, lazy DataFrame -> DataFrame transform (``mapInPandas``); nothing runs until an action.
    The input is repartitioned round-robin into at least the session's default parallelism, so
    every task slot embeds an equal share (each Python worker runs ``spark.task.cpus`` torch threads).

    Args:
        df: Any DataFrame with a string column ``text_col``.
        text_col: Column holding the text to embed.
        enc_cfg: Encoder config (the worker loads this checkpoint, pooling, max length, batch size).
        adapter: LoRA adapter: an MLflow model URI (``models:/<name>/<N>``, downloaded by each
            worker from ``tracking_uri``) or a directory every worker can read; ``None`` = the
            frozen reference.
        out_col: Name of the new column.
        f32_col: If set, also add this BINARY column: the same vector as little-endian float32
            bytes (:func:`lgsid.embedding_f32.encode_f32`), the SID Spark UDF's input.
        tracking_uri: MLflow tracking URI the workers resolve a model URI against.
    """
    from pyspark.sql.types import ArrayType, BinaryType, FloatType, StructField, StructType

    if text_col not in df.columns:
        raise ConfigError(f"embed: column {text_col!r} not in DataFrame columns {df.columns}")
    fields = list(df.schema.fields) + [StructField(out_col, ArrayType(FloatType()), False)]
    if f32_col:
        fields.append(StructField(f32_col, BinaryType(), False))
    schema = StructType(fields)
    # Always a round-robin repartition (a shuffle of the text column only, cheap next to embedding):
    # the partition count of a file scan says nothing about its rows. One 7 MB Parquet file of 100k
    # prompts with one row group is split by bytes into 2 partitions, and all 100k rows fall into
    # the first, so one task embedded everything while the other slot idled (the 100k embed step).
    slots = df.sparkSession.sparkContext.defaultParallelism
    df = df.repartition(max(slots, df.rdd.getNumPartitions()))

    def udf(batches: Iterator["pd.DataFrame"]) -> Iterator["pd.DataFrame"]:
        from lgsid.embedding_f32 import encode_f32

        enc = worker_encoder(enc_cfg, adapter, tracking_uri)
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


def item_embedding_rows(
    prompts_df: "DataFrame", enc_cfg: EncoderConfig, model_version: str, adapter: str | None = None, tracking_uri: str | None = None,
    old: "DataFrame | None" = None,
) -> "DataFrame":
    """geo_prompts -> rows of ``item_embeddings`` (item_id, model_name, model_version, embedding, dim, created_at, embedding_f32, input_sha).

    ``adapter`` / ``tracking_uri`` as in :func:`embed_dataframe`. With ``old`` (the stored rows of
    ``model_version``), only the prompts whose ``input_sha`` ``old`` lacks are embedded
    (:func:`prompts_to_embed`).
    """
    from pyspark.sql import functions as F

    from lgsid.encoder import resolve_checkpoint

    resolve_checkpoint(enc_cfg.checkpoint)  # fail on the driver, not inside a task
    ck = enc_cfg.checkpoint
    model_name = ck[len("package:"):] if ck.startswith("package:") else os.path.basename(os.path.normpath(ck))
    todo = prompts_df.select("item_id", "prompt", input_sha(F.col("prompt"), encoder_key(enc_cfg, model_name, model_version)).alias(INPUT_SHA))
    todo = prompts_to_embed(todo, old)
    out = embed_dataframe(todo, "prompt", enc_cfg, adapter, f32_col=EMBEDDING_F32, tracking_uri=tracking_uri)
    return out.select(
        "item_id",
        F.lit(model_name).alias("model_name"),
        F.lit(model_version).alias("model_version"),
        "embedding",
        F.size("embedding").cast("int").alias("dim"),
        F.current_timestamp().alias("created_at"),
        EMBEDDING_F32,
        INPUT_SHA,
    )


def encoder_key(enc_cfg: EncoderConfig, model_name: str, model_version: str) -> str:
    """The encoder settings that shape a vector, as one string: model, version, pooling, length, normalisation.

    Precision (``cpu_bf16``), batch size, device and runtime (torch or ONNX Runtime) are left out:
    they move a vector by kernel noise only, and a rerun on another machine must not rewrite the table.
    """
    return f"{model_name}|{model_version}|pooling={enc_cfg.pooling}|max_length={enc_cfg.max_length}|normalize={enc_cfg.normalize}"


def input_sha(prompt: "Column", key: str) -> "Column":
    """``item_embeddings.input_sha``: hex SHA-256 of ``prompt`` + U+001F + ``key`` (:func:`encoder_key`), a Column."""
    from pyspark.sql import functions as F

    return F.sha2(F.concat(prompt, F.lit("\u001f" + key)), 256)


def prompts_to_embed(prompts: "DataFrame", old: "DataFrame | None") -> "DataFrame":
    """The rows of ``prompts`` (item_id, prompt, input_sha) whose input ``old`` does not hold, pure transform.

    A row is skipped when ``old`` (``item_embeddings`` rows of one model version) has its
    ``item_id`` with the same ``input_sha``; rows of ``old`` with a null ``input_sha`` (written
    before the column existed) never match, so they are embedded again once.
    """
    from pyspark.sql import functions as F

    if old is None or INPUT_SHA not in old.columns:
        return prompts
    o = old.select("item_id", F.col(INPUT_SHA).alias("_old_sha"))
    j = prompts.join(o, "item_id", "left")
    return j.where(F.col("_old_sha").isNull() | (F.col("_old_sha") != F.col(INPUT_SHA))).select(*prompts.columns)


def embed_items(spark: "SparkSession", cfg: LGSIDConfig, model_version: str = REFERENCE, adapter: str | None = None):
    """Embed the items' true prompts whose input changed and MERGE them into ``item_embeddings`` under ``model_version``.

    Args:
        spark: The session.
        cfg: Resolved config (``encoder``, ``storage``, ``mlflow.tracking_uri``).
        model_version: ``reference`` or ``aligned-<N>``.
        adapter: The aligned model's URI (``models:/<name>/<N>``); required unless ``reference``.

    Returns:
        The :class:`~lgsid.storage.WriteResult` (the current version and row count when no row
        changed and nothing was written).
    """
    from pyspark import StorageLevel

    from lgsid.storage import DeltaStore, WriteResult
    from lgsid.tracking import tracking_uri

    if model_version != REFERENCE and not adapter:
        raise ConfigError(f"embed: model_version {model_version!r} needs the aligned model URI")
    store = DeltaStore(spark, cfg.storage)
    prompts = store.read("geo_prompts")
    old = store.read("item_embeddings").where(f"model_version = '{model_version}'") if store.exists("item_embeddings") else None
    rows = item_embedding_rows(prompts, cfg.encoder, model_version, adapter, tracking_uri(cfg) if adapter else None, old)
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)  # embedded once: counted and merged from the cache
    try:
        # count(), not isEmpty(): isEmpty() is a limit(1) job that embeds the first partition alone
        # (one task while every other slot idles) before the MERGE embeds the rest; count() fills
        # the cache on every slot at once (a 2-partition toy on local[2]: 7.4 s -> 3.7 s).
        if store.exists("item_embeddings") and rows.count() == 0:
            return WriteResult("item_embeddings", store.version("item_embeddings"), store.count("item_embeddings"))
        return store.merge(rows, "item_embeddings", keys=["item_id", "model_version"])
    finally:
        rows.unpersist()


def aligned_model_uri(cfg: LGSIDConfig, which: str) -> tuple[str, str]:
    """``(model_version, model URI)`` for ``encoder.embed_version`` = ``aligned`` or ``aligned-<N>``.

    ``aligned`` is the newest registered version of ``mlflow.encoder_model_name``; the URI is
    ``models:/<name>/<N>``.
    """
    import mlflow
    from mlflow import MlflowClient

    from lgsid.tracking import setup_mlflow

    setup_mlflow(cfg)
    name = cfg.mlflow.encoder_model_name
    if which == "aligned":
        try:
            versions = MlflowClient().search_model_versions(f"name='{name}'")
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
    return f"aligned-{n}", f"models:/{name}/{n}"


def resolve_aligned(cfg: LGSIDConfig, which: str) -> tuple[str, str]:
    """``(model_version, local adapter dir)``: :func:`aligned_model_uri`, its adapter downloaded here.

    For packaging the adapter into another model on the driver (the SID model's cold start).
    """
    version, uri = aligned_model_uri(cfg, which)
    return version, fetch_adapter(uri)
