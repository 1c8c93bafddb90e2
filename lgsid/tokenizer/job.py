"""The tokenizer job: items + embeddings -> fitted tokenizer, health metrics, SID model artifacts, ``sid_items`` rows.

The step that runs it, registers the model and writes ``sid_items`` is :mod:`lgsid.steps.tokenize_sids`.

No item-scale rows are held on the driver. The tokenizer is fitted on a bounded, seeded sample
(``tokenizer.fit_sample`` items, :func:`fit_sample_frame`; the whole catalogue when it is smaller,
which gives the SIDs a fit on every item gives; the codebooks are sized for the whole catalogue,
``n_catalogue``), streamed to the driver in Arrow chunks
(:func:`read_sample`). Every item is then assigned on the executors by the SID pyfunc run as the
write-back's Spark UDF (:func:`assign_on_executors`, the same code the registered model runs);
collision suffixes are a Spark window (:func:`lgsid.tokenizer.dedup.dedup_suffix_df`), codebook
health is Spark aggregates (:func:`lgsid.tokenizer.health.codebook_health_df`), the geo coverage and
the health plots come from the sample. Before anything is read, :func:`check_fit_sample` fails when
the sample would not fit in ``spark.driver.memory`` or is too small for the catalogue's codebooks. The SIDs are written keyed by the new
registry version, beside earlier versions' SIDs, so a retrain never overwrites the SIDs the
champion serves. :func:`fit_and_assign` is the in-memory reference of the same assignment (tests,
evaluation).

Rerun: the step fingerprints (:mod:`lgsid.fingerprint`) the ``tokenizer``, ``prompts`` and
``encoder`` config sections with the Delta versions of ``items`` and ``item_embeddings``, the
embedding version it trains on and :data:`MODEL_FORMAT`, and tags the registered version with it. When a version with the
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


def fit_and_assign(cfg: LGSIDConfig, pdf: pd.DataFrame, progress: bool = True, reference=None):
    """Fit the configured tokenizer on ``pdf`` (sorted by item_id) and assign codes + suffixes, all in memory (the reference of the step's Spark path).

    Args:
        reference: the champion's tokenizer, kept stable as in :func:`fit_on_sample`.

    Returns:
        (tokenizer, embeddings (N, D), codes (N, L), suffix (N,), l1_paths).
    """
    from lgsid.tokenizer import build_tokenizer, dedup_suffix
    from lgsid.tokenizer.hgit import level1_paths

    emb = stack_embeddings(pdf["embedding"], pdf["item_id"])
    tok = build_tokenizer(cfg.tokenizer)
    fit_stable(cfg, tok, emb, pdf, reference, progress)
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


MODEL_FORMAT = 2
"""What a registered SID model holds; part of the tokenize fingerprint, so a version registered before a
change is refitted rather than reused (2: the resolved location level and town origins for cold start)."""


def input_fingerprint(cfg: LGSIDConfig, store: "DeltaStore", embedding_model_version: str) -> str:
    """The fingerprint of everything a tokenize run depends on (see the module docstring), and :data:`MODEL_FORMAT`."""
    from lgsid.fingerprint import fingerprint

    sections = cfg.to_dict()
    return fingerprint(
        {k: sections[k] for k in ("tokenizer", "prompts", "encoder")},
        {"items": store.version("items"), "item_embeddings": store.version("item_embeddings"),
         "embedding_model_version": embedding_model_version, "model_format": MODEL_FORMAT},
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


# ---------------------------------------------------------------------------------------------
# Driver-free tokenize: fit on a bounded sample, assign every item on the executors.

FIT_COPIES = 6
"""Copies of the sample's (n, D) float32 matrix the driver holds at the peak of a fit: the memory
check's factor, ``4 · D · FIT_COPIES`` bytes per sample row. They are the decoded matrix itself
(read into one array, :func:`read_sample`), one (n, D) residual (HGIT's dead-code reseeding), HGIT's
local deepest level, ``(K_L, K_1, D)`` float32 = 1 to 2 copies (K_1 ~ n / K_L), and about 130 MB
fixed (torch, scikit-learn and OpenMP on first use); everything else item-scale is processed in
row chunks (:data:`lgsid.tokenizer.base.CHUNK_BYTES`). Measured with ``fit_on_sample``
(conf/model.yaml, D = 384, synthetic catalogue, 2 threads), peak RSS over the process holding the
sample, plus the matrix: 3.5 copies at 200k items (1,013 MB), 4.1 at 100k, 5.7 at 66k (the
largest local level per row: 2,048 x 64 codes); 6 is the largest rounded up. Before the row
chunking it was 15.9 copies at 100k (a (n, K_1) float64 distance matrix and residual copies)."""
ROW_OVERHEAD_BYTES = 1024
"""Driver bytes per sample row besides the embedding: the item's attributes as pandas objects."""
MAX_CHUNK_BYTES = 16 << 20
"""Largest Arrow chunk the sample stream sends to the driver at once (and at most a quarter of
``spark.driver.maxResultSize``): the driver's JVM and Python each hold a few copies of one chunk."""


def check_training_input(items: "DataFrame", embeddings: "DataFrame", model_version: str) -> int:
    """The number of items, checked in one Spark aggregate: none empty, every one embedded.

    Only a per-item flag crosses the join, never the vectors (a join Spark chose to broadcast would
    otherwise send every embedding through the driver).

    Args:
        items: The ``items`` table. embeddings: The ``item_embeddings`` table (all versions).
        model_version: The ``item_embeddings.model_version`` tokenized.

    Returns:
        N, the number of items.

    Raises:
        ValidationError: no items, or items without an embedding (names the first five by item_id).
    """
    from pyspark.sql import functions as F

    from lgsid.embedding_f32 import COLUMN

    has = embeddings.where((F.col("model_version") == model_version) & F.col(COLUMN).isNotNull()).select("item_id", F.lit(True).alias("_has"))
    df = items.select("item_id").join(has, "item_id", "left")
    row = df.agg(F.count(F.lit(1)).alias("n"), F.count_if(F.col("_has").isNull()).alias("missing")).first()
    if row["n"] == 0:
        raise ValidationError("table 'items' is empty; run `lgsid ingest` first")
    if row["missing"]:
        ids = [r[0] for r in df.where(F.col("_has").isNull()).select("item_id").orderBy("item_id").limit(5).collect()]
        raise ValidationError(
            f"column 'embedding': {row['missing']} item(s) have no item_embeddings row of model_version "
            f"{model_version!r}, e.g. {ids}; run `lgsid embed` first"
        )
    return int(row["n"])


def embedding_dim(embeddings: "DataFrame", model_version: str) -> int:
    """D of ``model_version``'s embeddings, from one row's ``embedding_f32`` byte length (every row is checked when decoded)."""
    from pyspark.sql import functions as F

    from lgsid.embedding_f32 import COLUMN

    rows = embeddings.where((F.col("model_version") == model_version) & F.col(COLUMN).isNotNull()).select(F.octet_length(COLUMN)).limit(1).collect()
    return int(rows[0][0]) // 4


def check_fit_sample(cfg: LGSIDConfig, n_items: int, dim: int, driver_bytes: int) -> int:
    """The number of items the fit reads to the driver, after checking it can hold them and fit the codebooks.

    The codebooks are sized for the catalogue, :func:`lgsid.tokenizer.base.scaled_codebook_sizes`
    of ``N`` (what the fit uses, through ``n_catalogue``), not for the sample. Every codebook is
    fitted on the sample, so a true sample (``fit_sample < N``) must hold at least as many items as
    the largest of them has codes. HGIT's level 1 grows only while its clusters keep about ``K_L / 4``
    sampled rows each (its middle level grows instead), so its local codebooks, and the model, stay
    the size of the sample; clusters with fewer than ``K_L`` sampled items get shared shapes
    (:func:`lgsid.tokenizer.hgit.fill_shapes`).

    Args:
        cfg: Resolved config (``tokenizer.fit_sample``, ``codebook_sizes``, ``items_per_prefix``).
        n_items: N, items in the catalogue. dim: D, the embedding dimension.
        driver_bytes: ``spark.driver.memory`` in bytes (:func:`lgsid.spark.joins.driver_memory_bytes`).

    Returns:
        ``min(fit_sample, N)``.

    Raises:
        ValidationError: one line naming ``tokenizer.fit_sample``: the sample needs more than
            ``driver_bytes`` (``n · (4 · D · FIT_COPIES + ROW_OVERHEAD_BYTES)``), or it is a true
            sample smaller than the largest codebook the catalogue's N items need.
    """
    from lgsid.tokenizer import build_tokenizer
    from lgsid.tokenizer.base import scaled_codebook_sizes

    t = cfg.tokenizer
    n = min(t.fit_sample, n_items)
    need = n * (4 * dim * FIT_COPIES + ROW_OVERHEAD_BYTES)
    if need > driver_bytes:
        raise ValidationError(
            f"tokenizer.fit_sample={t.fit_sample}: a fit on {n:,} items of dimension {dim} needs about "
            f"{need / 2**30:.2f} GiB on the driver, more than spark.driver.memory ({driver_bytes / 2**30:.2f} GiB); "
            "lower tokenizer.fit_sample or raise spark.driver.memory"
        )
    sizes = scaled_codebook_sizes(t.codebook_sizes, n_items, t.items_per_prefix, local_last=build_tokenizer(t).local_last_level, n_fit=n)
    if n < n_items and n < max(sizes):
        raise ValidationError(f"tokenizer.fit_sample={t.fit_sample} is below the largest codebook ({max(sizes)} codes; sizes {sizes} "
                              f"for the catalogue's {n_items:,} items); raise it")
    return n


def fit_sample_condition(df: "DataFrame", n_items: int, fit_sample: int, seed: int):
    """The condition on ``item_id`` that keeps :func:`fit_sample_frame`'s items, or None (all of them).

    One Spark job finds the ``fit_sample``-th smallest ``(xxhash64(seed, item_id), item_id)`` (a
    top-``fit_sample`` per partition and their merge, on the executors; one row reaches the driver);
    the condition keeps the pairs up to it. Being a condition on ``item_id`` alone, it selects the
    same items from any table keyed by ``item_id`` (the embeddings too), so the sample is a filter,
    never a sort or a broadcast of the catalogue.
    """
    from pyspark.sql import functions as F

    if n_items <= fit_sample:
        return None
    h = F.xxhash64(F.lit(seed), F.col("item_id"))
    keyed = df.select(h.alias("_h"), "item_id").orderBy("_h", "item_id").limit(fit_sample)
    last = keyed.agg(F.max(F.struct("_h", "item_id")).alias("m")).first()["m"]
    return (h < F.lit(last["_h"])) | ((h == F.lit(last["_h"])) & (F.col("item_id") <= F.lit(last["item_id"])))


def fit_sample_frame(df: "DataFrame", n_items: int, fit_sample: int, seed: int) -> "DataFrame":
    """The items the tokenizer is fitted on: all of them when ``n_items <= fit_sample``, else the
    ``fit_sample`` items with the smallest ``xxhash64(seed, item_id)`` (ties by item_id), as a
    filter of ``df`` (:func:`fit_sample_condition`).

    The hash makes the sample a function of the item ids and the seed alone: the same on rerun,
    whatever the partitioning.
    """
    cond = fit_sample_condition(df, n_items, fit_sample, seed)
    return df if cond is None else df.where(cond)


def _arrow_ipc(batches):
    """mapInArrow body: each Arrow record batch -> one row holding it as an Arrow IPC stream (runs on executors)."""
    import pyarrow as pa

    for b in batches:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, b.schema) as w:
            w.write_batch(b)
        yield pa.RecordBatch.from_pydict({"arrow_ipc": [sink.getvalue().to_pybytes()]}, schema=pa.schema([("arrow_ipc", pa.binary())]))


def chunk_rows(spark, dim: int) -> int:
    """Rows per chunk of the sample stream: ``MAX_CHUNK_BYTES`` (or a quarter of ``spark.driver.maxResultSize``) of ``4 · D + 256``-byte rows."""
    limit = spark.sparkContext.getConf().get("spark.driver.maxResultSize", "1g")
    max_result = int(spark.sparkContext._jvm.org.apache.spark.network.util.JavaUtils.byteStringAsBytes(limit))
    budget = MAX_CHUNK_BYTES if max_result <= 0 else min(MAX_CHUNK_BYTES, max_result // 4)
    return max(1, budget // (4 * dim + 256))


def read_sample(spark, sample: "DataFrame", n: int, dim: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Stream :func:`fit_sample_frame`'s rows to the driver in Arrow chunks, sorted by item_id.

    The sample is range-partitioned by ``item_id`` into chunks of :func:`chunk_rows` rows; each
    partition is sent as Arrow IPC (``mapInArrow``) and fetched one at a time by
    ``toLocalIterator``, so no Spark job returns more than one chunk to the driver.

    Args:
        sample: item_id, FEATURE_COLUMNS, embedding_f32 (:func:`lgsid.sid_store.udf_input` over the
            sampled items). n: its row count. dim: D.

    Returns:
        (features frame: item_id + FEATURE_COLUMNS, sorted by item_id; (n, D) float32 embeddings aligned with it).
    """
    import math

    import pyarrow as pa

    from lgsid.embedding_f32 import COLUMN, decode_f32

    parts = max(1, math.ceil(n / chunk_rows(spark, dim)))
    stream = sample.repartitionByRange(parts, "item_id").sortWithinPartitions("item_id").mapInArrow(_arrow_ipc, "arrow_ipc BINARY")
    frames = []
    emb, pos = np.empty((n, dim), dtype=np.float32), 0  # filled chunk by chunk: the matrix exists once
    for row in stream.toLocalIterator():
        t = pa.ipc.open_stream(row[0]).read_all()
        ids = t.column("item_id").to_pylist()
        m = decode_f32(t.column(COLUMN).to_numpy(zero_copy_only=False), dim, ids)  # (n_chunk, D), a view of the chunk
        if pos + len(m) > len(emb):  # more rows than counted: grow
            grown = np.empty((pos + len(m), dim), dtype=np.float32)
            grown[:pos] = emb[:pos]
            emb = grown
        emb[pos:pos + len(m)] = m
        pos += len(m)
        frames.append(t.drop([COLUMN]))  # Arrow until the end: one pandas frame is built, not one per chunk and their concatenation
        del t, m
    emb = emb[:pos]
    pdf = pa.concat_tables(frames).to_pandas() if frames else pd.DataFrame(columns=["item_id", *FEATURE_COLUMNS])
    del frames
    order = np.argsort(pdf["item_id"].to_numpy(dtype=object), kind="stable")  # already sorted; guards the invariant
    if (order != np.arange(len(order))).any():
        return pdf.iloc[order].reset_index(drop=True), emb[order]
    return pdf.reset_index(drop=True), emb


def fit_on_sample(cfg: LGSIDConfig, pdf: pd.DataFrame, emb: np.ndarray, progress: bool = True, reference=None, n_items: int | None = None):
    """Fit the configured tokenizer on the sample and encode it (in memory; bounded by ``tokenizer.fit_sample``).

    Args:
        pdf: item_id + FEATURE_COLUMNS, sorted by item_id. emb: (n, D) float32 aligned with it.
        reference: the champion's tokenizer, or None: its codes are kept stable (:func:`fit_stable`).
        n_items: N, the catalogue the sample was drawn from: the codebooks are sized for it
            (``n_catalogue``); None or ``n``: the sample is the catalogue.

    Returns:
        (tokenizer, sample codes (n, L), l1_paths: K_1 readable level-1 paths).
    """
    from lgsid.tokenizer import build_tokenizer
    from lgsid.tokenizer.hgit import level1_paths
    from lgsid.train.runtime import release_memory

    tok = build_tokenizer(cfg.tokenizer)
    fit_stable(cfg, tok, emb, pdf, reference, progress, n_catalogue=n_items)
    release_memory()  # the fit's freed temporaries, back to the OS before the sample is encoded
    codes = tok.encode(emb, pdf)
    l1_paths = getattr(tok, "l1_paths", None) or level1_paths(pdf, codes[:, 0], tok.codebook_sizes[0])
    return tok, codes, l1_paths


def fit_stable(cfg: LGSIDConfig, tok, emb: np.ndarray, pdf: pd.DataFrame, reference=None, progress: bool = True,
               n_catalogue: int | None = None) -> None:
    """Fit ``tok`` keeping the champion's (``reference``) codes stable, per ``tokenizer.align_to_champion``,
    ``freeze_level1_from_champion`` and ``warm_start_from_champion`` (:func:`lgsid.tokenizer.align.fit_aligned`);
    what the alignment did is left in ``tok.alignment``. ``n_catalogue``: the catalogue size the
    codebooks are sized for when ``emb`` is a sample of it (None: ``emb`` is the catalogue)."""
    from lgsid.tokenizer.align import fit_aligned

    t = cfg.tokenizer
    tok.n_catalogue = n_catalogue
    tok.alignment = fit_aligned(tok, emb, pdf, reference, freeze_level1=t.freeze_level1_from_champion, align=t.align_to_champion,
                                warm_start=t.warm_start_from_champion, progress=progress)


def assign_on_executors(spark, df: "DataFrame", model_path: str, batch_size: int, partitions: int = 0) -> "DataFrame":
    """Codes of every row of ``df`` from the SID pyfunc at ``model_path``, run as the write-back's Spark UDF.

    The UDF is :func:`lgsid.sid_store.apply_sid_udf` (what ``write-sids`` applies to the registered
    model), over Arrow batches of ``batch_size`` rows; the result is checkpointed so the UDF runs once.

    Args:
        df: :func:`lgsid.sid_store.udf_input`'s rows.
        model_path: A saved SID pyfunc (:func:`lgsid.serving.sid_model.save_pyfunc`) or a model URI.

    Returns:
        item_id, sid_l1, sid_l2, sid_l3 (INT; null past the model's levels), category (category_l1,
        else category_l2), localCheckpointed.
    """
    from pyspark.sql import functions as F

    from lgsid.sid_store import apply_sid_udf

    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    prev = spark.conf.get(key, None)
    spark.conf.set(key, str(batch_size))
    try:
        out = apply_sid_udf(spark, df, model_path, partitions=partitions)
        out = out.select("item_id", "sid_l1", "sid_l2", "sid_l3", F.coalesce("category_l1", "category_l2").alias("category"))
        return out.localCheckpoint()
    finally:
        if prev is not None:
            spark.conf.set(key, prev)
        else:
            spark.conf.unset(key)


def sid_items_df(assigned: "DataFrame", version: str) -> "DataFrame":
    """The ``sid_items`` rows of ``version`` from :func:`assign_on_executors`' codes (pure; suffixes by :func:`lgsid.tokenizer.dedup.dedup_suffix_df`)."""
    from pyspark.sql import functions as F

    from lgsid.tokenizer.dedup import dedup_suffix_df

    d = dedup_suffix_df(assigned.select("item_id", "sid_l1", "sid_l2", "sid_l3"))
    return d.select(F.lit(version).alias("sid_model_version"), "sid", "item_id", "sid_l1", "sid_l2", "sid_l3", "sid_suffix")
