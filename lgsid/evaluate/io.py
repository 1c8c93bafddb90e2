"""The ``evaluate`` step's reads (:mod:`lgsid.steps.evaluate`): the Delta tables, the registered candidate's codes, and
the downstream metrics of the variant that scored them (the values the step tags the candidate with)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lgsid.evaluate.variants import CANDIDATE, REFERENCE, VARIANTS, EvalInputs, SIDCodes, newest_aligned, registered_codes, variant_for

if TYPE_CHECKING:  # pragma: no cover
    from lgsid.config import LGSIDConfig

ITEM_COLUMNS = ["item_id", "lat", "lon", "state", "county", "town", "category_l1", "category_l2", "brand"]
#: Driver bytes per evaluated item beside its float32 vectors (item attributes, codes, per-item model tables).
ITEM_ROW_BYTES = 2048
#: Driver bytes per interaction row read (two id strings and a timestamp in pandas, the split's copies).
INTERACTION_ROW_BYTES = 400
#: Driver bytes per user read (its train sequence array, the split's and the ranker's per-user entries).
USER_BYTES = 1024


def check_caps(cfg: "LGSIDConfig", dim: int, n_versions: int, driver_bytes: int, n_items: int, n_interactions: int) -> None:
    """Fail before anything is read to the driver when the evaluated rows cannot fit it.

    The rows are ``min(cap, rows in the table)`` (all of them where the cap is 0) for
    ``evaluate.max_items``, ``evaluate.max_interactions`` and ``evaluate.max_read_users`` (users are at most
    the rows), as ``tokenizer.fit_sample`` is checked; the estimate is
    ``items · (4 · D · n_versions + ITEM_ROW_BYTES) + interactions · INTERACTION_ROW_BYTES + users · USER_BYTES``
    against ``spark.driver.memory``.

    Raises:
        ValidationError: one line naming the cap that takes the larger share.
    """
    from lgsid.errors import ValidationError

    ec = cfg.evaluate
    n_i = min(ec.max_items, n_items) if ec.max_items else n_items
    n_x = min(ec.max_interactions, n_interactions) if ec.max_interactions else n_interactions
    n_u = min(ec.max_read_users, n_x) if ec.max_read_users else n_x  # a user has at least one row
    parts = {"evaluate.max_items": n_i * (4 * dim * max(n_versions, 1) + ITEM_ROW_BYTES),
             "evaluate.max_interactions": n_x * INTERACTION_ROW_BYTES, "evaluate.max_read_users": n_u * USER_BYTES}
    total = sum(parts.values())
    if total > driver_bytes:
        key = max(parts, key=parts.get)
        raise ValidationError(
            f"{key}={getattr(ec, key.split('.')[1])}: evaluate would hold about {total / 2**30:.2f} GiB on the driver "
            f"({n_i:,} items x {n_versions} embedding versions of dimension {dim}, {n_x:,} interactions, up to {n_u:,} users), "
            f"more than spark.driver.memory ({driver_bytes / 2**30:.2f} GiB); lower {key} or raise spark.driver.memory"
        )


def sample_users(df, n_rows: int, cap: int, seed: int, n_users: int = 0, max_users: int = 0):
    """Whole users of interaction frame ``df`` (pure, lazy but counted): those whose ``pmod(xxhash64(seed, user_id), 2^20)``
    falls in the lowest share of the hash range, the share shrunk until at most ``cap`` rows and, when
    ``max_users`` > 0, at most ``max_users`` users remain (``n_users``: the users of ``df``).

    Keeping whole users keeps every kept user's sequence intact (the split needs it); the hash makes
    the sample a function of the user ids and the seed alone, the same on rerun.

    Returns:
        (the kept rows, their count, their users).
    """
    from pyspark.sql import functions as F

    buckets = 1 << 20
    h = F.pmod(F.xxhash64(F.lit(seed), F.col("user_id")), F.lit(buckets))
    share = min(cap / n_rows, max_users / n_users if max_users and n_users else 1.0)
    while True:
        kept = df.where(h < F.lit(int(share * buckets)))
        r = kept.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("user_id").alias("users")).first()
        m, u = int(r["rows"]), int(r["users"])
        over = max(m / cap, u / max_users if max_users else 0.0)
        if over <= 1.0:
            return kept, m, u
        share *= 0.98 / over


def load_inputs(store, cfg: "LGSIDConfig", notes: list[str]) -> EvalInputs:
    """Read items, interactions and item_embeddings (whatever exists) into :class:`EvalInputs`, bounded by caps.

    Items are restricted to those with an embedding in every model version the evaluation uses
    (reference and the newest aligned), sorted by item_id. Joins and samples run in Spark; what reaches
    the driver is bounded:

    - ``evaluate.max_items``: above it, the items with the smallest ``xxhash64(data_seed, item_id)``
      (:func:`lgsid.tokenizer.job.fit_sample_frame`) and only their interactions;
    - ``evaluate.max_interactions`` and ``evaluate.max_read_users``: above either, whole users by hash (:func:`sample_users`);
    - embeddings are streamed in Arrow chunks (:func:`lgsid.tokenizer.job.read_sample`), so no Spark job
      returns more than one chunk.

    Below both caps the inputs are the whole tables, as before. What was sampled goes to ``notes``.
    """
    from pyspark.sql import functions as F

    from lgsid.errors import TableNotFoundError
    from lgsid.spark.joins import can_broadcast, driver_memory_bytes
    from lgsid.tokenizer.job import embedding_dim, fit_sample_frame, read_sample

    ec = cfg.evaluate
    if not store.exists("items"):
        raise TableNotFoundError("evaluate needs the 'items' table; run `lgsid ingest` first")
    spark = store.spark
    items_df = store.read("items").select(*ITEM_COLUMNS).dropDuplicates(["item_id"])
    e, versions, dim = None, [], 0
    if store.exists("item_embeddings"):
        e = store.read("item_embeddings")
        versions = sorted(r[0] for r in e.select("model_version").distinct().collect())
    if versions:
        dim = embedding_dim(e, versions[0])
        n_all = items_df.count()
        for v in (REFERENCE, newest_aligned(versions)):
            if v is not None and v in versions:
                items_df = items_df.join(e.where(F.col("model_version") == v).select("item_id"), "item_id", "left_semi")
        n_items = items_df.count()
        if n_all - n_items:
            notes.append(f"{n_all - n_items} items without embeddings in every evaluated version were left out")
    else:
        n_items = items_df.count()
        notes.append("item_embeddings table missing: geo and SID sections skipped")
    n_total = store.read("interactions").count() if store.exists("interactions") else 0
    check_caps(cfg, dim, len(versions), driver_memory_bytes(spark), n_items, n_total)
    sampled = bool(ec.max_items) and n_items > ec.max_items
    if sampled:
        items_df = fit_sample_frame(items_df, n_items, ec.max_items, ec.data_seed).localCheckpoint()
        notes.append(f"{n_items:,} items > evaluate.max_items={ec.max_items:,}: evaluated on the {ec.max_items:,} items with the smallest "
                     f"xxhash64(evaluate.data_seed, item_id) and their interactions")
    items = items_df.toPandas().sort_values("item_id").reset_index(drop=True)

    inter = None
    if store.exists("interactions"):
        idf = store.read("interactions").select("user_id", "item_id", "ts")
        if sampled:
            idf = idf.join(items_df.select("item_id"), "item_id", "left_semi").select("user_id", "item_id", "ts")
        if ec.max_interactions or ec.max_read_users:
            if ec.max_read_users:  # rows and users in one Spark job
                r = idf.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("user_id").alias("users")).first()
                n_inter, n_users = int(r["rows"]), int(r["users"])
            else:
                n_inter, n_users = (idf.count() if sampled else n_total), 0
            over = [f"{n_inter:,} interactions > evaluate.max_interactions={ec.max_interactions:,}"] if 0 < ec.max_interactions < n_inter else []
            over += [f"{n_users:,} users > evaluate.max_read_users={ec.max_read_users:,}"] if 0 < ec.max_read_users < n_users else []
            if over:
                idf, kept, kept_users = sample_users(idf, n_inter, ec.max_interactions or n_inter, ec.data_seed, n_users, ec.max_read_users)
                notes.append(f"{' and '.join(over)}: evaluated on the {kept:,} interactions of the {kept_users:,} users with the smallest "
                             f"xxhash64(evaluate.data_seed, user_id)")
        inter = idf.toPandas()
    else:
        notes.append("interactions table missing: downstream sections skipped")

    embs: dict[str, np.ndarray] = {}
    ids = items["item_id"]
    keep = items_df.select("item_id")
    keep = F.broadcast(keep) if can_broadcast(len(items), 64, driver_memory_bytes(spark)) else keep.hint("merge")
    for v in versions:
        rows = e.where(F.col("model_version") == v).select("item_id", "embedding_f32")
        rows = rows.join(keep, "item_id", "left_semi")  # the vectors are not shuffled while the ids can be broadcast
        n_v = rows.count()
        if n_v != len(items):
            notes.append(f"embedding version {v!r} does not cover every evaluated item: left out of the geo table")
            continue
        pdf, emb = read_sample(spark, rows, n_v, embedding_dim(e, v))
        got = pd.Index(pdf["item_id"])
        if not got.equals(pd.Index(ids)):
            if not got.is_unique or not pd.Index(ids).isin(got).all():
                notes.append(f"embedding version {v!r} does not cover every evaluated item: left out of the geo table")
                continue
            emb = emb[got.get_indexer(ids)]
        embs[v] = np.ascontiguousarray(emb, dtype=np.float32)
    return EvalInputs(items=items, interactions=inter, embeddings=embs)


def version_rows(store, version: str, item_ids) -> pd.DataFrame:
    """``sid_items`` rows of ``sid_model_version`` = ``version`` for the evaluated ``item_ids`` only (filtered in Spark,
    so the driver holds at most ``evaluate.max_items`` rows)."""
    from pyspark.sql import functions as F

    ids = store.spark.createDataFrame(pd.DataFrame({"item_id": pd.Series(item_ids, dtype=object).astype(str)}), schema="item_id STRING")
    rows = store.read("sid_items").where(F.col("sid_model_version") == version)
    rows = rows.join(F.broadcast(ids), "item_id", "left_semi")
    return rows.select("sid_model_version", "item_id", "sid_l1", "sid_l2", "sid_l3", "sid_suffix").toPandas()


def candidate_codes(store, cfg: "LGSIDConfig", inp: EvalInputs, mv: Any, notes: list[str]) -> tuple[dict[str, SIDCodes], str | None]:
    """The codes of registered SID model version ``mv`` (its ``sid_items`` rows), as the variant it is.

    The codes are those ``tokenize`` wrote for that version. The variant is the matching row of
    :data:`VARIANTS` (same tokenizer kind on the same embedding version), else :data:`CANDIDATE`.

    Returns:
        (``{variant: codes}`` or ``{}``, the variant name or None); what happened is appended to ``notes``.
    """
    name = cfg.mlflow.sid_model_name
    kind, emb = str(mv.tags.get("lgsid.tokenizer_kind")), str(mv.tags.get("lgsid.embedding_model_version"))
    label = f"registered {name} v{mv.version}"
    if not store.exists("sid_items"):
        notes.append(f"{label} ({kind} on {emb}): no sid_items table, so its codes are unknown; not scored, no gate tags set")
        return {}, None
    try:
        sid_items = version_rows(store, str(mv.version), inp.items["item_id"])
        codes = registered_codes(sid_items, inp.items["item_id"], str(mv.version), emb, label)
    except ValueError as e:
        notes.append(f"{label}: {e}; not scored, no gate tags set")
        return {}, None
    variant = variant_for(kind, emb, inp.embeddings) or CANDIDATE
    base = VARIANTS[variant][2] if variant in VARIANTS else f"Candidate ({kind} on {emb})"
    codes.display = f"{base} [v{mv.version}]"
    notes.append(f"{label} ({kind} on {emb}) scored from its sid_items as variant '{variant}' (not refitted)")
    return {variant: codes}, variant


def downstream_metrics(metrics: dict, variant: str) -> dict[str, float]:
    """The gate's ``downstream.*`` values of one evaluated variant (plain beam decoding; DIN uniform-negative AUC).

    Returns:
        ``{"downstream.hit_at_10", "downstream.ndcg_at_10", "downstream.auc", "downstream.auc_exposure"}``
        for whatever was measured and finite.
    """
    out: dict[str, Any] = {}
    g = metrics.get("generative", {}).get("variants", {}).get(variant)
    if g:
        out["downstream.hit_at_10"] = g["summary"]["Hit@10"]["mean"]
        out["downstream.ndcg_at_10"] = g["summary"]["NDCG@10"]["mean"]
    d = metrics.get("discriminative", {}).get("variants", {}).get(variant)
    if d:
        out["downstream.auc"] = d["summary"]["AUC"]["mean"]
        if "AUC_exposure" in d["summary"]:
            out["downstream.auc_exposure"] = d["summary"]["AUC_exposure"]["mean"]
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}
