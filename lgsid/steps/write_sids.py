"""Step ``write-sids``: apply the registered SID model as a Spark UDF and MERGE into ``item_sid_features`` (:mod:`lgsid.sid_store`)."""

from __future__ import annotations

from lgsid.config import LGSIDConfig
from lgsid.embedding_f32 import COLUMN as EMBEDDING_F32
from lgsid.errors import ModelError
from lgsid.sid_store import (
    apply_sid_udf,
    assign_suffixes,
    broadcast_items,
    changed_rows,
    check_udf_input,
    level1_paths,
    model_uri,
    resolve_model_version,
    udf_input,
    version_uri,
)
from lgsid.sid_health import write_sid_health
from lgsid.steps.summary import StepSummary


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``write-sids`` (the steps are in :mod:`lgsid.sid_store`'s docstring)."""
    from mlflow.models import get_model_info
    from pyspark.sql import functions as F

    from lgsid.storage import DeltaStore
    from lgsid.tracking import setup_mlflow

    setup_mlflow(cfg)
    mv = resolve_model_version(cfg)  # the only alias lookup: everything below uses version N
    version = str(mv.version)
    uri = version_uri(cfg, version)
    tags = dict(mv.tags or {})
    emb_version = tags.get("lgsid.embedding_model_version")
    dim = tags.get("lgsid.embedding_dim")
    if emb_version is None or dim is None:
        raise ModelError(f"{cfg.mlflow.sid_model_name} version {version} lacks the lgsid.embedding_model_version/embedding_dim tags; re-run `lgsid tokenize`")
    signature = get_model_info(uri).signature
    names = signature.inputs.input_names() if signature is not None and signature.inputs is not None else []
    if EMBEDDING_F32 not in names:
        raise ModelError(f"{uri} has no '{EMBEDDING_F32}' input (inputs: {names}); `lgsid tokenize` + `lgsid promote` register one that has")
    store = DeltaStore(spark, cfg.storage)
    items, embeddings = store.read("items"), store.read("item_embeddings")
    check_udf_input(items, embeddings, emb_version, int(dim))
    items = udf_input(items, embeddings, emb_version, broadcast_items=broadcast_items(spark, cfg, items.count()))

    prev = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch", None)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.sid_store.batch_size))
    try:
        scored = apply_sid_udf(spark, items, uri, partitions=cfg.sid_store.udf_partitions)
        scored = scored.select("item_id", "sid_l1", "sid_l2", "sid_l3")
        scored = scored.localCheckpoint()  # run the UDF once for everything below
    finally:
        if prev is not None:
            spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", prev)
        else:
            spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    paths = spark.createDataFrame(list(enumerate(level1_paths(uri))), "sid_l1 INT, sid_path STRING")

    existing = store.read("sid_items").where(F.col("sid_model_version") == version) if store.exists("sid_items") else None
    if existing is None:
        existing = spark.createDataFrame([], "sid_model_version STRING, sid STRING, item_id STRING, sid_l1 INT, sid_l2 INT, sid_l3 INT, sid_suffix INT")
    final = assign_suffixes(scored, existing, paths).localCheckpoint()
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
    notes = [f"applied {uri} ({model_uri(cfg)} resolved once; embeddings {emb_version}, column {EMBEDDING_F32}) to {n_total:,} items"]
    if n_changed:
        tables.append(store.merge(delta, "item_sid_features"))
    else:
        notes.append("item_sid_features already up to date: nothing committed")
    health, note = write_sid_health(spark, store, cfg.mlflow.sid_model_name, mv, final)
    tables += [health] if health is not None else []
    notes.append(note)
    return StepSummary("write-sids", tables=tables, metrics={"items": n_total, "new_items": n_new, "rows_merged": n_changed}, notes=notes)
