"""The SID write-back (step ``write-sids``, :mod:`lgsid.steps.write_sids`): apply the registered SID model as a Spark UDF and MERGE into ``item_sid_features``.

1. The model is resolved once (:func:`resolve_model_version`: ``sid_store.model_uri`` or
   ``models:/<name>@champion`` -> version N); from then on everything (signature, level-1 paths,
   UDF) uses ``models:/<name>/<N>`` and every row written carries ``sid_model_version`` = N, so a
   promotion during the run cannot make the written version disagree with the model applied.
   ``mlflow.pyfunc.spark_udf(spark, "models:/<name>/<N>", result_type=<struct>)`` runs over the items joined with their ``embedding_f32`` (BINARY little-endian float32 bytes; see
   :mod:`lgsid.embedding_f32`) of the model version's embedding space. Arrow batches of
   ``sid_store.batch_size`` rows feed the vectorised pyfunc, which decodes a whole batch with one
   ``np.frombuffer``. BINARY rather than ARRAY<FLOAT>: Spark's JVM converts an array column to
   Arrow element by element, which alone caps a Python UDF over 384-d vectors at 60–80k rows/s on
   two cores, against ~200k rows/s for BINARY (``bench/sid_udf.py`` prints both transfer bounds).
   What keeps the UDF near Spark's own cost (:func:`apply_sid_udf`): the model's inputs go in as
   positional arguments in signature order (no ``struct``), the signature declares no row-wise
   enforced (``Any``/``Array``) column, the items' attributes are broadcast into the join
   (``sid_store.broadcast_items_rows``), and the input is coalesced to one partition per core
   (``sid_store.udf_partitions``).
2. Suffixes (:func:`assign_suffixes`): an item already in ``sid_items`` for this model version
   keeps its SID exactly (codes and suffix); a new item gets the next free suffix of its code
   tuple (existing maximum + 1, then by item_id). Nothing is ever renumbered. ``sid_path`` is the
   model's readable path of the row's final level-1 code, so it always matches the codes.
3. Only rows that are new or whose SID/path/model changed are MERGEd (key ``item_id``), with
   ``updated_at`` = now; a rerun on unchanged input commits nothing (idempotent). New items are
   added to ``sid_items``. Delta history keeps every earlier snapshot for point-in-time joins.
4. One ``sid_health`` row per level of the applied version (:mod:`lgsid.sid_health`): usage,
   perplexity, collision rate and churn against the previous version; unchanged rows commit nothing.

Input is checked before anything is written (:func:`check_udf_input`): a missing embedding, an
``embedding_f32`` that is not ``4 · dim`` bytes, and null coordinates/admin fields raise
:class:`ValidationError` naming the items and the column. The check reads only byte lengths, so it
moves no vectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lgsid.config import LGSIDConfig
from lgsid.embedding_f32 import COLUMN as EMBEDDING_F32
from lgsid.errors import ModelError, ValidationError
from lgsid.tokenizer.features import FEATURE_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

SPARK_RESULT_TYPE = "sid_l1 INT, sid_l2 INT, sid_l3 INT, sid_path STRING"
"""The model outputs the write-back reads (the model also returns ``sid_codes``; ``sid`` is built here with the suffix)."""


def model_uri(cfg: LGSIDConfig) -> str:
    """``sid_store.model_uri`` or ``models:/<sid_model_name>@<sid_store.model_alias>``."""
    return cfg.sid_store.model_uri or f"models:/{cfg.mlflow.sid_model_name}@{cfg.sid_store.model_alias}"


def resolve_model_version(cfg: LGSIDConfig):
    """The registry ModelVersion the write-back will apply (the alias resolved once; then use :func:`version_uri`).

    Raises:
        ModelError: the alias (or explicit version) does not exist.
    """
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    name = cfg.mlflow.sid_model_name
    uri = model_uri(cfg)
    try:
        if "@" in uri:
            return client.get_model_version_by_alias(name, uri.rsplit("@", 1)[1])
        return client.get_model_version(name, uri.rstrip("/").rsplit("/", 1)[1])
    except mlflow.exceptions.MlflowException:
        raise ModelError(f"no SID model at {uri}: run `lgsid tokenize` then `lgsid promote` (or set sid_store.model_uri)") from None


def version_uri(cfg: LGSIDConfig, version: str) -> str:
    """``models:/<sid_model_name>/<version>``: the URI of one fixed version (aliases can move, this cannot)."""
    return f"models:/{cfg.mlflow.sid_model_name}/{version}"


def level1_paths(uri: str) -> list[str]:
    """The readable path of each level-1 code of the SID model at ``uri`` (K_1 strings, from its artifacts)."""
    import mlflow.pyfunc

    return [str(p) for p in mlflow.pyfunc.load_model(uri).unwrap_python_model().l1_paths]


def _embed_command(model_version: str) -> str:
    return "lgsid embed" if model_version == "reference" else f"lgsid embed --set encoder.embed_version={model_version}"


def check_udf_input(items: "DataFrame", embeddings: "DataFrame", model_version: str, dim: int) -> None:
    """Fail before writing when an item lacks its embedding, has the wrong dimension or null coordinates.

    Only per-row facts (row present, null, byte length / array size) cross the join, never the
    vectors, so this pass is cheap next to the UDF.

    Args:
        items: The ``items`` table (item_id + FEATURE_COLUMNS).
        embeddings: The ``item_embeddings`` table (all versions; filtered to ``model_version`` here).
        model_version: ``item_embeddings.model_version`` the SID model was fitted on.
        dim: The model's embedding dimension D (``embedding_f32`` must hold 4·D bytes).

    Raises:
        ValidationError: names the column and the first offending item_ids.
    """
    from pyspark.sql import functions as F

    wrong_dim = F.octet_length(F.col(EMBEDDING_F32)) != 4 * dim
    dim_msg = f"(column '{EMBEDDING_F32}' must hold {4 * dim} bytes: float32 × {dim})"
    facts = embeddings.where(F.col("model_version") == model_version).select(
        "item_id", F.lit(True).alias("_has_row"), wrong_dim.alias("_wrong_dim"))
    df = items.select("item_id", *FEATURE_COLUMNS).join(facts, "item_id", "left")
    checks = [
        (F.col("_has_row").isNull(), f"has no embedding (no item_embeddings row of model_version '{model_version}'; run `{_embed_command(model_version)}`)"),
        (F.col("_wrong_dim"), f"has an embedding whose dimension differs from the model's {dim} {dim_msg}"),
        (F.col("lat").isNull(), "has a null coordinate (column 'lat')"),
        (F.col("lon").isNull(), "has a null coordinate (column 'lon')"),
    ]
    for col in ("state", "county", "town", "category_l2"):
        checks.append((F.col(col).isNull(), f"has a null '{col}'"))
    problem = None
    for cond, msg in reversed(checks):  # first failing check wins
        problem = F.when(cond, F.lit(msg)) if problem is None else F.when(cond, F.lit(msg)).otherwise(problem)
    bad = df.select("item_id", problem.alias("problem")).where(F.col("problem").isNotNull()).limit(50).collect()
    if bad:
        first = bad[0]["problem"]
        ids = [r["item_id"] for r in bad if r["problem"] == first][:5]
        raise ValidationError(f"write-sids: item(s) {ids} {first}; nothing was written")


#: Driver bytes of one item's attributes in the UDF input's broadcast (item id, lat/lon, geography, categories, brand).
ATTR_ROW_BYTES = 200


def broadcast_items(spark, cfg, n_items: int) -> bool:
    """Whether :func:`udf_input` broadcasts the items' attributes: at most ``sid_store.broadcast_items_rows`` items
    and what the driver holds (:func:`lgsid.spark.joins.can_broadcast`, ``ATTR_ROW_BYTES`` per item)."""
    from lgsid.spark.joins import can_broadcast, driver_memory_bytes

    limit = cfg.sid_store.broadcast_items_rows
    return limit > 0 and n_items <= limit and can_broadcast(n_items, ATTR_ROW_BYTES, driver_memory_bytes(spark))


def udf_input(items: "DataFrame", embeddings: "DataFrame", model_version: str, broadcast_items: bool = False) -> "DataFrame":
    """The UDF's input rows: item_id, FEATURE_COLUMNS and ``embedding_f32`` of ``model_version`` (pure, lazy).

    An inner join with the embeddings streamed and the items as the build side. With
    ``broadcast_items`` the items' attributes are broadcast (a hint), so the ``4 · dim``-byte vectors
    are never shuffled; without it Spark broadcasts them only below
    ``spark.sql.autoBroadcastJoinThreshold`` (10 MB: ~70k items) and otherwise sort-merge joins,
    shuffling every vector (1M items, 2 cores: a no-op over the joined rows took 12.2 s that way,
    8.5 s broadcast, 5.5 s for the embeddings alone). It drops items without an embedding, so run
    :func:`check_udf_input` first (it fails on any such item).
    """
    from pyspark.sql import functions as F

    emb = embeddings.where(F.col("model_version") == model_version).select("item_id", EMBEDDING_F32)
    attrs = items.select("item_id", *FEATURE_COLUMNS)
    if broadcast_items:
        attrs = F.broadcast(attrs)
    return emb.join(attrs, "item_id").select("item_id", *FEATURE_COLUMNS, EMBEDDING_F32)


def udf_arguments(input_schema, columns) -> list:
    """The UDF's arguments: one Column per model input, in the signature's order, up to ``embedding_f32``.

    MLflow names positional ``spark_udf`` arguments by the model's input schema and hands the model
    a pandas DataFrame of them, one Series per argument. That is cheaper than one ``struct``
    argument (which Spark builds row by row and pyspark flattens again per batch). Optional inputs
    the frame lacks (e.g. ``brand``) are typed null literals; the cold-start inputs after
    ``embedding_f32`` are not passed (MLflow fills them with nulls).

    Args:
        input_schema: The model's ``mlflow.types.Schema`` (named columns).
        columns: Columns available in the input DataFrame.

    Raises:
        ValidationError: the signature lacks ``embedding_f32``, or a required input is not in ``columns``.
    """
    from pyspark.sql import functions as F

    specs = list(input_schema.inputs)
    names = [c.name for c in specs]
    if EMBEDDING_F32 not in names:
        raise ValidationError(f"write-sids: the SID model's signature has no input '{EMBEDDING_F32}' (inputs: {names}); "
                              "`lgsid tokenize` + `lgsid promote` register one that has")
    out = []
    for spec in specs[: names.index(EMBEDDING_F32) + 1]:
        if spec.name in columns:
            out.append(F.col(spec.name))
        elif spec.required:
            raise ValidationError(f"write-sids: the SID model requires input column '{spec.name}', which the UDF input lacks")
        else:
            to_spark = getattr(spec.type, "to_spark", None)  # MLflow DataType -> Spark type; Any has none
            out.append(F.lit(None).cast(to_spark()) if to_spark else F.lit(None))
    return out


def apply_sid_udf(spark, df: "DataFrame", uri: str, result_type: str = SPARK_RESULT_TYPE, partitions: int = 0) -> "DataFrame":
    """``df`` plus the model's output columns ``result_type``, computed by ``mlflow.pyfunc.spark_udf`` (pure, lazy).

    ``uri`` should name one version (``models:/<name>/<N>``, :func:`version_uri`); see
    :func:`apply_udf` for the call.
    """
    import mlflow.pyfunc

    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type=result_type, env_manager="local")
    return apply_udf(spark, df, udf, udf.metadata.get_input_schema(), partitions)


def apply_udf(spark, df: "DataFrame", udf, input_schema, partitions: int = 0) -> "DataFrame":
    """``df`` plus the fields of ``udf``'s struct result, the UDF called as the write-back calls it (pure, lazy).

    The model's inputs go in by position (:func:`udf_arguments`). ``df`` is coalesced to
    ``partitions`` (0 = ``spark.sparkContext.defaultParallelism``) when it has more: every task of a
    ``spark_udf`` in local mode loads the model again (in a cluster MLflow caches it per Python
    worker), and fewer, longer tasks lose nothing while each core has one.
    """
    args = udf_arguments(input_schema, df.columns)
    n = partitions or spark.sparkContext.defaultParallelism
    return df.coalesce(n).withColumn("_sid", udf(*args)).select(*df.columns, "_sid.*")


def assign_suffixes(assigned: "DataFrame", existing: "DataFrame", l1_paths: "DataFrame") -> "DataFrame":
    """Final (codes, suffix, path) per item without renumbering anything (pure transform).

    Args:
        assigned: item_id, sid_l1, sid_l2, sid_l3 (the UDF's codes for every item; other columns ignored).
        existing: ``sid_items`` rows of the same model version.
        l1_paths: sid_l1, sid_path: the model's readable path of each level-1 code (small; broadcast).

    Returns:
        item_id, sid_l1, sid_l2, sid_l3, sid_suffix, sid, sid_path, is_new. Existing items keep
        their stored codes and suffix; a new item gets ``max(existing suffix of its tuple) + 1 +
        rank among new items of the tuple by item_id`` (0-based when the tuple is unused).
        ``sid_path`` is looked up from the final ``sid_l1``, so a kept SID keeps its own path.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = ["sid_l1", "sid_l2", "sid_l3"]
    ex = existing.select("item_id", *[F.col(k).alias(f"ex_{k}") for k in keys], F.col("sid_suffix").alias("ex_suffix"))
    j = assigned.join(ex, "item_id", "left")
    old = j.where(F.col("ex_suffix").isNotNull()).select(
        "item_id", *[F.col(f"ex_{k}").alias(k) for k in keys], F.col("ex_suffix").alias("sid_suffix"), F.lit(False).alias("is_new"))
    new = j.where(F.col("ex_suffix").isNull()).select("item_id", *keys)
    top = existing.groupBy(*keys).agg(F.max("sid_suffix").alias("max_suffix"))
    w = Window.partitionBy(*keys).orderBy("item_id")
    new = (
        new.join(top, [new[k].eqNullSafe(top[k]) for k in keys], "left")
        .select(*[new[k] for k in keys], "item_id", "max_suffix")
        .withColumn("sid_suffix", (F.coalesce(F.col("max_suffix"), F.lit(-1)) + F.row_number().over(w)).cast("int"))
        .select("item_id", *keys, "sid_suffix", F.lit(True).alias("is_new"))
    )
    both = old.unionByName(new).join(F.broadcast(l1_paths.select("sid_l1", "sid_path")), "sid_l1", "left")
    both = both.select("item_id", *keys, "sid_suffix", "sid_path", "is_new")
    return both.withColumn("sid", F.concat_ws("-", *[F.col(k).cast("string") for k in keys], F.col("sid_suffix").cast("string")))


def changed_rows(features: "DataFrame", current: "DataFrame | None") -> "DataFrame":
    """Rows of ``features`` that are new or differ from ``current`` in SID, path or model (pure)."""
    from pyspark.sql import functions as F

    if current is None:
        return features
    cols = ["sid", "sid_path", "sid_model_name", "sid_model_version"]
    cur = current.select("item_id", *[F.col(c).alias(f"cur_{c}") for c in cols])
    j = features.join(cur, "item_id", "left")
    same = None
    for c in cols:
        eq = F.col(c).eqNullSafe(F.col(f"cur_{c}"))
        same = eq if same is None else (same & eq)
    return j.where(~same).select(*features.columns)
