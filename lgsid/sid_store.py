"""Step ``write-sids``: apply the registered SID model as a Spark UDF and MERGE into ``item_sid_features``.

1. ``mlflow.pyfunc.spark_udf(spark, "models:/lgsid-sid-model@champion", result_type=<struct>)``
   over the items joined with their embeddings (of the model version's embedding space). Arrow
   batches of ``sid_store.batch_size`` rows feed the vectorised pyfunc.
2. Suffixes (:func:`assign_suffixes`): an item already in ``sid_items`` for this model version
   keeps its SID exactly (codes and suffix); a new item gets the next free suffix of its code
   tuple (existing maximum + 1, then by item_id). Nothing is ever renumbered.
3. Only rows that are new or whose SID/path/model changed are MERGEd (key ``item_id``), with
   ``updated_at`` = now; a rerun on unchanged input commits nothing (idempotent). New items are
   added to ``sid_items``. Delta history keeps every earlier snapshot for point-in-time joins.

Input is checked before anything is written: missing embeddings, wrong dimension and null
coordinates raise :class:`ValidationError` naming the items and the column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lgsid.config import LGSIDConfig
from lgsid.errors import ModelError, ValidationError
from lgsid.steps import StepSummary
from lgsid.tokenizer.features import FEATURE_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

SPARK_RESULT_TYPE = "sid_l1 INT, sid_l2 INT, sid_l3 INT, sid_codes STRING, sid_path STRING"
UDF_INPUT_COLUMNS = ("item_id", *FEATURE_COLUMNS, "embedding")


def model_uri(cfg: LGSIDConfig) -> str:
    """``sid_store.model_uri`` or ``models:/<sid_model_name>@<sid_store.model_alias>``."""
    return cfg.sid_store.model_uri or f"models:/{cfg.mlflow.sid_model_name}@{cfg.sid_store.model_alias}"


def resolve_model_version(cfg: LGSIDConfig):
    """The registry ModelVersion the write-back will apply.

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


def check_udf_input(df: "DataFrame", dim: int) -> None:
    """Fail before writing when an item lacks its embedding, has the wrong dimension or null coordinates.

    Raises:
        ValidationError: names the column and the first offending item_ids.
    """
    from pyspark.sql import functions as F

    checks = [
        ("embedding", F.col("embedding").isNull(), "has no embedding (column 'embedding' is null; run `lgsid embed`)"),
        ("embedding", F.size("embedding") != dim, f"has an embedding whose dimension differs from the model's {dim} (column 'embedding')"),
        ("lat", F.col("lat").isNull(), "has a null coordinate (column 'lat')"),
        ("lon", F.col("lon").isNull(), "has a null coordinate (column 'lon')"),
    ]
    for c in ("state", "county", "town", "category_l2"):
        checks.append((c, F.col(c).isNull(), f"has a null '{c}'"))
    problem = None
    for _, cond, msg in reversed(checks):  # first failing check wins
        problem = F.when(cond, F.lit(msg)) if problem is None else F.when(cond, F.lit(msg)).otherwise(problem)
    bad = df.select("item_id", problem.alias("problem")).where(F.col("problem").isNotNull()).limit(50).collect()
    if bad:
        first = bad[0]["problem"]
        ids = [r["item_id"] for r in bad if r["problem"] == first][:5]
        raise ValidationError(f"write-sids: item(s) {ids} {first}; nothing was written")


def apply_sid_udf(spark, df: "DataFrame", uri: str) -> "DataFrame":
    """``df`` plus the model's output columns, computed by ``mlflow.pyfunc.spark_udf`` (pure, lazy)."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type=SPARK_RESULT_TYPE, env_manager="local")
    out = df.withColumn("_sid", udf(F.struct(*[F.col(c) for c in UDF_INPUT_COLUMNS])))
    return out.select(*df.columns, *[F.col(f"_sid.{c}").alias(c) for c in ("sid_l1", "sid_l2", "sid_l3", "sid_codes", "sid_path")])


def assign_suffixes(assigned: "DataFrame", existing: "DataFrame") -> "DataFrame":
    """Final (codes, suffix) per item without renumbering anything (pure transform).

    Args:
        assigned: item_id, sid_l1, sid_l2, sid_l3, sid_path (the UDF's codes for every item).
        existing: ``sid_items`` rows of the same model version.

    Returns:
        item_id, sid_l1, sid_l2, sid_l3, sid_suffix, sid, sid_path, is_new. Existing items keep
        their stored codes and suffix; a new item gets ``max(existing suffix of its tuple) + 1 +
        rank among new items of the tuple by item_id`` (0-based when the tuple is unused).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = ["sid_l1", "sid_l2", "sid_l3"]
    ex = existing.select("item_id", *[F.col(k).alias(f"ex_{k}") for k in keys], F.col("sid_suffix").alias("ex_suffix"))
    j = assigned.join(ex, "item_id", "left")
    old = j.where(F.col("ex_suffix").isNotNull()).select(
        "item_id", *[F.col(f"ex_{k}").alias(k) for k in keys], F.col("ex_suffix").alias("sid_suffix"), "sid_path", F.lit(False).alias("is_new"))
    new = j.where(F.col("ex_suffix").isNull()).select("item_id", *keys, "sid_path")
    top = existing.groupBy(*keys).agg(F.max("sid_suffix").alias("max_suffix"))
    w = Window.partitionBy(*keys).orderBy("item_id")
    new = (
        new.join(top, [new[k].eqNullSafe(top[k]) for k in keys], "left")
        .select(*[new[k] for k in keys], "item_id", "sid_path", "max_suffix")
        .withColumn("sid_suffix", (F.coalesce(F.col("max_suffix"), F.lit(-1)) + F.row_number().over(w)).cast("int"))
        .select("item_id", *keys, "sid_suffix", "sid_path", F.lit(True).alias("is_new"))
    )
    both = old.unionByName(new)
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


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``write-sids`` (see module docstring)."""
    from pyspark.sql import functions as F

    from lgsid.storage import DeltaStore
    from lgsid.tokenizer.job import items_with_embeddings
    from lgsid.tracking import setup_mlflow

    setup_mlflow(cfg)
    mv = resolve_model_version(cfg)
    version = str(mv.version)
    tags = dict(mv.tags or {})
    emb_version = tags.get("lgsid.embedding_model_version")
    dim = tags.get("lgsid.embedding_dim")
    if emb_version is None or dim is None:
        raise ModelError(f"{cfg.mlflow.sid_model_name} version {version} lacks the lgsid.embedding_model_version/embedding_dim tags; re-run `lgsid tokenize`")
    store = DeltaStore(spark, cfg.storage)
    items = items_with_embeddings(store.read("items"), store.read("item_embeddings"), emb_version)
    check_udf_input(items, int(dim))

    prev = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch", None)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.sid_store.batch_size))
    try:
        scored = apply_sid_udf(spark, items, model_uri(cfg)).select("item_id", "sid_l1", "sid_l2", "sid_l3", "sid_path")
        scored = scored.localCheckpoint()  # run the UDF once for everything below
    finally:
        if prev is not None:
            spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", prev)
        else:
            spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")

    existing = store.read("sid_items").where(F.col("sid_model_version") == version) if store.exists("sid_items") else None
    if existing is None:
        existing = spark.createDataFrame([], "sid_model_version STRING, sid STRING, item_id STRING, sid_l1 INT, sid_l2 INT, sid_l3 INT, sid_suffix INT")
    final = assign_suffixes(scored, existing).localCheckpoint()
    n_total = final.count()
    new_items = final.where("is_new")
    n_new = new_items.count()
    tables = []
    if n_new:
        tables.append(store.merge(
            new_items.select(F.lit(version).alias("sid_model_version"), "sid", "item_id", "sid_l1", "sid_l2", "sid_l3", "sid_suffix"),
            "sid_items"))
    feats = final.select(
        "item_id", "sid_l1", "sid_l2", "sid_l3", "sid_suffix", "sid", "sid_path",
        F.lit(cfg.mlflow.sid_model_name).alias("sid_model_name"), F.lit(version).alias("sid_model_version"),
    )
    current = store.read("item_sid_features") if store.exists("item_sid_features") else None
    delta = changed_rows(feats, current).withColumn("updated_at", F.current_timestamp()).localCheckpoint()
    n_changed = delta.count()
    notes = [f"applied {model_uri(cfg)} (version {version}, embeddings {emb_version}) to {n_total:,} items"]
    if n_changed:
        tables.append(store.merge(delta, "item_sid_features"))
    else:
        notes.append("item_sid_features already up to date: nothing committed")
    return StepSummary("write-sids", tables=tables, metrics={"items": n_total, "new_items": n_new, "rows_merged": n_changed}, notes=notes)
