"""Reliability, interop after a real tiny pipeline: the actual steps (ingest -> prompts -> negatives ->
pairs -> embed -> tokenize on the reference embeddings -> promote -> write-sids) run once on a tiny
demo, then every catalogue table they wrote reads back through Spark, deltalake (to_pandas,
to_pyarrow_table) and pyarrow.dataset with identical row counts and key sets; a second write-sids
is a no-op, and after a later MERGE ``item_sid_features`` reads as of each earlier version. Heavy marker (the run is minutes on 2 shared cores)."""

from __future__ import annotations

import pytest
from deltalake import DeltaTable
from test_interop import _keys, _read_all_ways

from lgsid.tables import CATALOGUE, ITEM_SID_FEATURES

pytestmark = [pytest.mark.spark, pytest.mark.reliability_heavy]

STEPS = ("ingest", "prompts", "negatives", "pairs", "embed", "tokenize", "promote", "write-sids")


@pytest.fixture(scope="module")
def pipeline(spark, tmp_path_factory):
    """One run of the real steps on a 150-item demo; returns (cfg, store, names of the tables written)."""
    from lgsid.config import load_config, replace
    from lgsid.steps import run_step
    from lgsid.storage import DeltaStore

    w = tmp_path_factory.mktemp("pipeline")
    cfg = replace(
        load_config(None),
        storage={"root": str(w / "tables"), "staging_dir": str(w / "staging")},
        spark={"petastorm_cache_dir": str(w / "petastorm"), "shuffle_partitions": 1},
        mlflow={"tracking_uri": f"sqlite:///{w}/mlflow.db", "artifact_root": str(w / "mlartifacts")},
        pipeline={"work_dir": str(w)},
        demo={"n_items": 150, "n_users": 60, "n_interactions": 1200},
        ingest={"min_user_interactions": 0, "min_item_interactions": 0},
        encoder={"batch_size": 64},
        tokenizer={"embedding_model_version": "reference", "codebook_sizes": [8, 4, 4], "epochs": 1, "batch_size": 64,
                   "geo_coverage_sample": 100, "bootstrap_champion": False},
        promote={"max_collision_rate": 1.0, "min_usage_l1": 0.0, "min_usage_deeper": 0.0, "min_county_coverage_at_10": 0.0},
        sid_store={"batch_size": 256},
    )
    written: set[str] = set()
    for step in STEPS:
        summary = run_step(step, spark, cfg)
        written |= {t.table for t in summary.tables}
    store = DeltaStore(spark, cfg.storage)
    written |= {name for name in CATALOGUE if store.exists(name)}
    return cfg, store, sorted(written)


def test_pipeline_tables_read_back_everywhere(spark, pipeline, case):
    case.expect("after a real tiny pipeline run, every catalogue table it wrote: Spark, deltalake and pyarrow.dataset agree on rows and keys")
    cfg, store, written = pipeline
    assert {"items", "interactions", "geo_prompts", "gdpo_pairs", "item_embeddings", "sid_items", "item_sid_features"} <= set(written), written
    lost, disagree = 0, []
    for name in written:
        ts = CATALOGUE[name]
        frames = _read_all_ways(spark, store, name, ts)
        n_spark, keys_spark = len(frames[0]), _keys(frames[0], ts)
        assert n_spark == store.count(name) > 0, name
        assert len(set(keys_spark)) == n_spark, f"{name}: duplicate primary keys {ts.primary_key}"
        for label, pdf in zip(("deltalake.to_pandas", "deltalake.to_pyarrow_table", "pyarrow.dataset"), frames[1:]):
            keys = _keys(pdf, ts)
            lost += len(set(keys_spark) - set(keys))
            if len(pdf) != n_spark or keys != keys_spark:
                disagree.append(f"{name} via {label}: {len(pdf)} rows vs Spark {n_spark}")
    case.rows_lost(lost)
    assert disagree == []


def test_pipeline_item_sid_features_as_of_earlier_versions(spark, pipeline, case):
    case.expect("pipeline's item_sid_features, then a later MERGE: each earlier version reads its own rows through Spark, deltalake and pyarrow.dataset")
    from pyspark.sql import functions as F

    from lgsid.steps import run_step

    cfg, store, _ = pipeline
    ts = ITEM_SID_FEATURES
    v1 = store.version(ts.name)
    before = _read_all_ways(spark, store, ts.name, ts)[0]
    assert len(before) == store.count("items")  # every item has its SID row after write-sids
    run_step("write-sids", spark, cfg)  # unchanged champion and items: a no-op, no new version
    assert store.version(ts.name) == v1
    later = store.read(ts.name).orderBy("item_id").limit(10).withColumn("sid_model_version", F.lit("later"))
    store.merge(later, ts.name)  # a later write-back of 10 rows on top of v1
    assert store.version(ts.name) == v1 + 1
    now = _read_all_ways(spark, store, ts.name, ts)
    assert all((f["sid_model_version"] == "later").sum() == 10 and len(f) == len(before) for f in now)
    corrupted = 0
    for v in range(v1 + 1):
        frames = _read_all_ways(spark, store, ts.name, ts, version=v)
        n = len(DeltaTable(store.path(ts.name), version=v).to_pandas())
        same = all(len(f) == n for f in frames) and (n == 0 or len({tuple(_keys(f, ts)) for f in frames}) == 1)
        if v == v1:  # the earlier version with rows: exactly the rows read before the second write
            same = same and _keys(frames[1], ts) == _keys(before, ts)
            same = same and sorted(frames[1]["sid"]) == sorted(before["sid"]) and "later" not in set(frames[1]["sid_model_version"])
        corrupted += not same
    case.corrupted_versions(corrupted)
    assert corrupted == 0
