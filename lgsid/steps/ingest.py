"""Step ``ingest``: validate the source (:mod:`lgsid.sources`), then write items, users, interactions."""

from __future__ import annotations

from lgsid.config import LGSIDConfig
from lgsid.sources import prepare
from lgsid.steps.summary import StepSummary
from lgsid.tables import spec


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``ingest``: validate the source, then write items, users, interactions (+ rejects in quarantine mode).

    Returns:
        StepSummary with one WriteResult per table and input/accepted/rejected counts.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from lgsid.storage import DeltaStore

    store = DeltaStore(spark, cfg.storage)
    p = prepare(spark, cfg)
    # Materialise everything before the first commit, so a failing transform cannot leave one table
    # rewritten and the next one not.
    frames = {}
    for name, df in (("items", p.items), ("users", p.users), ("interactions", p.interactions)):
        df = store.conform(df, spec(name)).persist(StorageLevel.MEMORY_AND_DISK)
        frames[name] = df  # NOT NULL / CHECK are guaranteed by validation; store.write re-checks them
        p.metrics[f"rows_{name}"] = df.count()
    p.notes = [n.format(kept_interactions=p.metrics["rows_interactions"], kept_items=p.metrics["rows_items"]) for n in p.notes]
    rejects = {}
    for table, rej in p.rejects.items():
        # quarantine: always; strict (no rejects, or we would have failed): only to replace a stale table
        if cfg.ingest.on_bad_rows == "quarantine" or store.exists(f"{table}_rejects"):
            rejects[f"{table}_rejects"] = rej.withColumn("rejected_at", F.current_timestamp()).drop("_line").persist()
    results = [store.write(frames[n], n, mode="overwrite") for n in ("items", "users", "interactions")]
    results += [store.write(df, name, mode="overwrite") for name, df in rejects.items()]
    for df in list(frames.values()) + list(rejects.values()):
        df.unpersist()
    return StepSummary(step="ingest", tables=results, metrics=p.metrics, notes=p.notes)
